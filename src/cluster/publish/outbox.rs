//! The latest verdict per agent, between the follower and the writer; a verdict is news
//! only when it differs in more than its volatile fields.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};

use serde_json::Value;

/// Fields of a verdict that change with every beat or every moment; two verdicts that differ
/// only in these are the same news. `started_ms` is derived anew by each look (from the start
/// time in clock ticks and the boot time) and can move by a millisecond; `pid` and
/// `start_time`, which it derives from, are compared. (A new per-write key in the record
/// belongs here, or every beat becomes an etcd write: `tests/cluster` counts them.) The
/// record's `progress` evidence and `idle_ms` move with every beat too; what is news of them is
/// judged into `activity`, `status_text` and `state` (`hung`), which are compared, so an
/// activity or `STATUS=` change is published, at most as often as the watcher writes one
/// (4 a second).
pub const VOLATILE: [&str; 8] = [
    "age_ms",
    "ts",
    "ts_ms",
    "seq",
    "boottime_ms",
    "started_ms",
    "idle_ms",
    "progress",
];

/// One agent's verdict as published: the bytes put to etcd, and what is compared (the same
/// object without the volatile fields, serialized with its keys sorted). Both are kept as
/// bytes, not as parsed maps: a thousand agents' verdicts are the bridge's memory.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub value: Box<[u8]>,
    stable: Box<[u8]>,
}

impl Verdict {
    /// From `ps --json`'s object for the agent, as `ps` writes it (its key order kept):
    /// `host` goes first, then the object's keys.
    pub fn new(host: &str, object: &[u8]) -> Result<Verdict, String> {
        let mut stable = match serde_json::from_slice(object) {
            Ok(Value::Object(m)) => m,
            _ => return Err("a verdict is a JSON object".into()),
        };
        let mut value = Vec::with_capacity(object.len() + host.len() + 12);
        value.extend_from_slice(b"{\"host\":");
        serde_json::to_writer(&mut value, host).expect("a string serializes");
        let rest = &object[object.iter().position(|&c| c == b'{').expect("an object") + 1..];
        if !rest.iter().all(|c| c.is_ascii_whitespace() || *c == b'}') {
            value.push(b',');
        }
        value.extend_from_slice(rest);
        for k in VOLATILE {
            stable.remove(k);
        }
        // serde_json's Map is sorted: equal objects serialize to equal bytes.
        let stable = serde_json::to_vec(&stable).expect("a map serializes");
        Ok(Verdict {
            value: value.into_boxed_slice(),
            stable: stable.into_boxed_slice(),
        })
    }

    /// Same news as `other`?
    pub fn same_as(&self, other: &Verdict) -> bool {
        self.stable == other.stable
    }
}

#[derive(Default)]
pub(super) struct Board {
    /// The latest verdict of every agent with a local record.
    pub(super) latest: BTreeMap<String, Verdict>,
    /// Agents whose latest verdict is not in etcd yet.
    pub(super) dirty: BTreeSet<String>,
    /// Agents whose record is gone: their keys go too.
    pub(super) gone: BTreeSet<String>,
    /// Agents in a transaction whose answer has not come yet.
    pub(super) inflight: BTreeSet<String>,
    pub(super) quit: bool,
    /// The lease the keep-alives renew (0: none yet); the writer's.
    pub(super) lease: i64,
    /// etcd said `lease` has expired: the keep-alive thread's news for the writer.
    pub(super) lease_lost: bool,
    /// The last `.bridge` values this bridge sent (the prefix watch knows its own writes by
    /// them), newest last.
    pub(super) bridge_sent: Vec<Box<[u8]>>,
    /// Agents whose keys the prefix watch saw changed by someone else, for the writer to
    /// check against etcd.
    pub(super) suspects: BTreeSet<String>,
    /// The prefix watch saw `.bridge` changed or deleted by someone else.
    pub(super) bridge_suspect: bool,
    /// Why the bridge stops (another bridge holds the host): the command's error.
    pub(super) fatal: Option<String>,
    /// The revision the prefix watch starts from: just after the read the claim began with.
    pub(super) watch_from: i64,
}

/// How many of its own `.bridge` values the bridge remembers for the prefix watch.
pub(super) const BRIDGE_SENT_KEPT: usize = 4;

impl Board {
    /// Is the agent's key about to be written (so whatever etcd shows for it now is moot)?
    pub(super) fn pending(&self, agent: &str) -> bool {
        self.dirty.contains(agent) || self.gone.contains(agent) || self.inflight.contains(agent)
    }

    /// Remembers a `.bridge` value about to be sent.
    pub(super) fn sent_bridge(&mut self, value: &[u8]) {
        if self.bridge_sent.len() >= BRIDGE_SENT_KEPT {
            self.bridge_sent.remove(0);
        }
        self.bridge_sent.push(value.into());
    }
}

/// The verdicts between the follower and the writer, and the writer's news from the
/// keep-alive thread and the prefix watch.
#[derive(Default)]
pub struct Outbox {
    board: Mutex<Board>,
    /// The writer waits on it.
    pub(super) wake: Condvar,
    /// The keep-alive thread waits on it.
    pub(super) wake_keepalive: Condvar,
}

impl Outbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent's verdict now. Returns whether it is news (and will be put).
    pub fn offer(&self, agent: &str, v: Verdict) -> bool {
        let mut b = self.lock();
        if b.latest.get(agent).is_some_and(|old| old.same_as(&v)) {
            return false;
        }
        b.gone.remove(agent);
        b.dirty.insert(agent.to_owned());
        b.latest.insert(agent.to_owned(), v);
        drop(b);
        self.wake.notify_one();
        true
    }

    /// The agent's record is gone (removed by its operator): its key goes too.
    pub fn remove(&self, agent: &str) {
        let mut b = self.lock();
        if b.latest.remove(agent).is_none() {
            return;
        }
        b.dirty.remove(agent);
        b.gone.insert(agent.to_owned());
        drop(b);
        self.wake.notify_one();
    }

    /// The agents with a verdict, for the follower to notice removals.
    pub fn agents(&self) -> Vec<String> {
        self.lock().latest.keys().cloned().collect()
    }

    /// Tells the writer and the keep-alive thread to stop.
    pub fn close(&self) {
        self.lock().quit = true;
        self.wake.notify_all();
        self.wake_keepalive.notify_all();
    }

    /// Why the bridge had to stop, if it had to.
    pub fn fatal(&self) -> Option<String> {
        self.lock().fatal.clone()
    }

    /// Agents waiting to be written, and how many verdicts are held.
    #[cfg(test)]
    pub fn backlog(&self) -> (usize, usize) {
        let b = self.lock();
        (b.dirty.len() + b.gone.len(), b.latest.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> &[u8] {
        json.as_bytes()
    }

    #[test]
    fn progress_is_news_only_as_activity_or_status() {
        let v = |activity: &str, status: &str, cpu: u64| {
            let o = format!(
                r#"{{"agent":"a","state":"alive","activity":"{activity}","idle_ms":{cpu},"status_text":"{status}","pid":7,"progress":{{"cpu_ms":{cpu},"cpu_at_ms":{cpu}}}}}"#
            );
            Verdict::new("h1", o.as_bytes()).unwrap()
        };
        assert!(v("working", "x", 1).same_as(&v("working", "x", 2)));
        assert!(!v("working", "x", 1).same_as(&v("idle", "x", 1)));
        assert!(!v("working", "x", 1).same_as(&v("working", "y", 1)));
    }

    #[test]
    fn beats_are_not_news() {
        let a = Verdict::new(
            "h1",
            obj(r#"{"agent":"a","state":"alive","age_ms":5,"ts":1,"pid":7,"ts_ms":1000,"seq":1,"boottime_ms":10}"#),
        )
        .unwrap();
        let b = Verdict::new(
            "h1",
            obj(
                r#"{"agent":"a","state":"alive","age_ms":900,"ts":2,"pid":7,"ts_ms":2000,"seq":2}"#,
            ),
        )
        .unwrap();
        assert!(a.same_as(&b));
        let dead =
            Verdict::new("h1", obj(r#"{"agent":"a","state":"dead","pid":7,"seq":3}"#)).unwrap();
        assert_eq!(
            &*Verdict::new("h", b"{}").unwrap().value,
            br#"{"host":"h"}"#
        );
        assert!(Verdict::new("h", b"[1]").is_err());
        assert!(!a.same_as(&dead));
        assert!(
            String::from_utf8(a.value.to_vec())
                .unwrap()
                .starts_with(r#"{"host":"h1","agent":"a","#)
        );

        let out = Outbox::default();
        assert!(out.offer("a", a));
        assert!(!out.offer("a", b));
        assert!(out.offer("a", dead));
        assert_eq!(out.backlog(), (1, 1));
        out.remove("a");
        assert_eq!(out.backlog(), (1, 0));
        out.remove("never-seen");
        assert_eq!(out.backlog(), (1, 0));
    }
}
