//! `pidbeat publish`: the bridge that puts one host's verdicts into etcd.
//!
//! Two threads meet at an [`Outbox`]. The follower (the reader's follow loop over the run
//! dir) judges agents as their records and processes change and offers each verdict; the
//! writer (this module's [`Writer`]) puts what changed into etcd and keeps the host's lease
//! alive. The outbox holds only the *latest* verdict per agent, so however long etcd is away,
//! memory is bounded by the number of agents, and a death during an outage is put on
//! reconnect (as the latest verdict) rather than lost.
//!
//! Writes happen only on change. A beat rewrites the record (`ts`, `ts_ms`, `seq`) and moves
//! the age, which are [`VOLATILE`]: verdicts are compared without them, so an idle fleet does
//! not move etcd's revision at all.
//!
//! One lease per host (`--ttl`), carried by `/pidbeat/<host>/.bridge` only; agent keys carry
//! none. Readers call an agent whose published state is `alive`/`stale` `unreachable` while
//! the bridge key is missing. That way a reader that starts after the lease expired still
//! knows which agents the host had (they were leased, they would simply be gone), and
//! `dead`/`lost`/`unwatched` survive the bridge as the proven verdicts they are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{Client, Error, MAX_TXN_OPS, Op};
use super::keys;

/// Fields of a verdict that change with every beat or every moment; two verdicts that differ
/// only in these are the same news. `started_ms` is derived anew by each look (from the start
/// time in clock ticks and the boot time) and can move by a millisecond; `pid` and
/// `start_time`, which it derives from, are compared. (A new per-write key in the record
/// belongs here, or every beat becomes an etcd write: `tests/cluster` counts them.)
pub const VOLATILE: [&str; 6] = ["age_ms", "ts", "ts_ms", "seq", "boottime_ms", "started_ms"];

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
struct Board {
    /// The latest verdict of every agent with a local record.
    latest: BTreeMap<String, Verdict>,
    /// Agents whose latest verdict is not in etcd yet.
    dirty: BTreeSet<String>,
    /// Agents whose record is gone: their keys go too.
    gone: BTreeSet<String>,
    quit: bool,
}

/// The verdicts between the follower and the writer.
#[derive(Default)]
pub struct Outbox {
    board: Mutex<Board>,
    wake: Condvar,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Board> {
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

    /// Tells the writer to stop.
    pub fn close(&self) {
        self.lock().quit = true;
        self.wake.notify_all();
    }

    /// Agents waiting to be written, and how many verdicts are held.
    #[cfg(test)]
    pub fn backlog(&self) -> (usize, usize) {
        let b = self.lock();
        (b.dirty.len() + b.gone.len(), b.latest.len())
    }
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub host: String,
    /// The lease's TTL.
    pub ttl: Duration,
}

/// Keep-alives go out every TTL/5: four can be lost before the lease is.
pub fn keepalive_every(ttl: Duration) -> Duration {
    ttl / 5
}

/// Each request may take at most TTL/6, so that one hung member cannot cost the lease: a
/// keep-alive that times out still leaves time for the next member within the TTL. And at
/// most [`REQUEST_TIMEOUT_MAX`]: with a long TTL, a hung member would otherwise hold every
/// put back for minutes.
pub fn request_timeout(ttl: Duration) -> Duration {
    (ttl / 6).min(REQUEST_TIMEOUT_MAX)
}

pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Puts verdicts and keeps the lease; see the module doc.
pub struct Writer<'a> {
    outbox: &'a Outbox,
    client: Client,
    opts: WriterOptions,
    /// 0: none yet, or etcd said it expired.
    lease: i64,
    next_keepalive: Instant,
    /// Since when etcd has been failing us (said once when it starts and when it ends).
    outage: Option<Instant>,
    backoff: Duration,
    /// Put the bridge key and clean up keys without records once, at start.
    cleaned: bool,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);

impl<'a> Writer<'a> {
    pub fn new(outbox: &'a Outbox, client: Client, opts: WriterOptions) -> Writer<'a> {
        Writer {
            outbox,
            client,
            opts,
            lease: 0,
            next_keepalive: Instant::now(),
            outage: None,
            backoff: BACKOFF_MIN,
            cleaned: false,
        }
    }

    /// The longest pause between retries: a recovered etcd is in use within it.
    fn backoff_max(&self) -> Duration {
        keepalive_every(self.opts.ttl).min(Duration::from_secs(1))
    }

    /// Runs until the outbox is closed. Revokes the lease on the way out (a clean stop
    /// makes the host unreachable at once, rather than after a TTL).
    pub fn run(&mut self) {
        loop {
            let outcome = self.step();
            if self.outbox.lock().quit {
                if self.lease != 0 {
                    let _ = self.client.revoke(self.lease);
                }
                return;
            }
            let until = self.account(&outcome);
            self.sleep_until_work(until);
        }
    }

    /// The first round, in the caller's thread: its outcome, said as [`Writer::run`] would.
    pub fn first_round(&mut self) -> Result<(), Error> {
        let outcome = self.step();
        // A refusal is the caller's to report.
        if !matches!(outcome, Err(Error::Refused { .. })) {
            self.account(&outcome);
        }
        outcome
    }

    /// Says when an outage starts and ends (once each) and paces retries; returns until when
    /// to back off (`None`: the round went through).
    fn account(&mut self, outcome: &Result<(), Error>) -> Option<Instant> {
        match outcome {
            Ok(()) => {
                if let Some(since) = self.outage.take() {
                    eprintln!(
                        "pidbeat publish: etcd answers again (via {}) after {:.1}s; \
                         everything held meanwhile is published",
                        self.client.member(),
                        since.elapsed().as_secs_f64()
                    );
                }
                self.backoff = BACKOFF_MIN;
                None
            }
            Err(e) => {
                if self.outage.is_none() {
                    self.outage = Some(Instant::now());
                    eprintln!(
                        "pidbeat publish: {e}; local records are unaffected, the latest \
                         verdict of each agent is held and retried"
                    );
                }
                let pause = self.backoff;
                self.backoff = (self.backoff * 2).min(self.backoff_max());
                Some(Instant::now() + pause)
            }
        }
    }

    /// Sleeps until there is something to write, the keep-alive is due, or `until`.
    fn sleep_until_work(&self, until: Option<Instant>) {
        let mut b = self.outbox.lock();
        loop {
            let now = Instant::now();
            let deadline = until
                .unwrap_or(self.next_keepalive)
                .min(self.next_keepalive);
            // While backing off, new verdicts wait for the pause to end.
            let work = until.is_none() && (!b.dirty.is_empty() || !b.gone.is_empty());
            if b.quit || work || now >= deadline {
                return;
            }
            b = self
                .outbox
                .wake
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One round: a lease (and everything again) if there is none, the keep-alive if due,
    /// then what changed.
    fn step(&mut self) -> Result<(), Error> {
        if self.lease == 0 {
            self.new_lease()?;
        }
        if Instant::now() >= self.next_keepalive {
            let ttl = self.client.keepalive(self.lease)?;
            if ttl <= 0 {
                eprintln!(
                    "pidbeat publish: etcd let lease {:x} expire; granting a new one and \
                     publishing every verdict again",
                    self.lease
                );
                self.lease = 0;
                self.new_lease()?;
            }
            self.next_keepalive = Instant::now() + keepalive_every(self.opts.ttl);
        }
        self.flush()
    }

    /// Grants a lease, puts the bridge key on it, and marks every verdict for putting again
    /// (if the old lease expired, readers may have marked this host unreachable meanwhile; and
    /// at start, etcd may hold anything).
    fn new_lease(&mut self) -> Result<(), Error> {
        let ttl = self.opts.ttl.as_secs().max(1) as i64;
        let lease = self.client.grant(ttl)?;
        self.next_keepalive = Instant::now() + keepalive_every(self.opts.ttl);
        if !self.cleaned {
            self.clean_up()?;
            self.cleaned = true;
        }
        let bridge = serde_json::json!({
            "host": self.opts.host,
            "pid": std::process::id(),
            "ttl": ttl,
            "ts_ms": crate::record::now_ms(),
        });
        self.client.put(
            keys::bridge_key(&self.opts.host).as_bytes(),
            bridge.to_string().as_bytes(),
            lease,
        )?;
        self.lease = lease;
        let mut b = self.outbox.lock();
        let all: Vec<String> = b.latest.keys().cloned().collect();
        b.dirty.extend(all);
        Ok(())
    }

    /// At start: deletes this host's agent keys that have no local record (agents forgotten
    /// while the bridge was down).
    fn clean_up(&mut self) -> Result<(), Error> {
        let prefix = keys::host_prefix(&self.opts.host);
        let end = keys::prefix_end(prefix.as_bytes());
        // Keys only: the values of a thousand agents would be the bridge's peak memory.
        let existing = self
            .client
            .range_with(prefix.as_bytes(), Some(&end), 0, true)?;
        let stale: Vec<Op> = {
            let b = self.outbox.lock();
            existing
                .kvs
                .iter()
                .filter(|kv| match keys::parse(&kv.key) {
                    Some(keys::Key::Agent { agent, .. }) => !b.latest.contains_key(agent),
                    _ => false,
                })
                .map(|kv| Op::Delete {
                    key: kv.key.clone(),
                })
                .collect()
        };
        for chunk in stale.chunks(MAX_TXN_OPS) {
            self.client.txn(chunk)?;
        }
        Ok(())
    }

    /// Puts the dirty verdicts and deletes the gone keys, a transaction per batch. What
    /// fails stays dirty (unless a newer verdict replaced it meanwhile, which is then put).
    fn flush(&mut self) -> Result<(), Error> {
        loop {
            let (ops, names) = {
                let mut b = self.outbox.lock();
                let mut ops = Vec::new();
                let mut names = Vec::new();
                while ops.len() < MAX_TXN_OPS {
                    if let Some(agent) = b.gone.pop_first() {
                        ops.push(Op::Delete {
                            key: keys::agent_key(&self.opts.host, &agent),
                        });
                        names.push((agent, true));
                    } else if let Some(agent) = b.dirty.pop_first() {
                        let Some(v) = b.latest.get(&agent) else {
                            continue;
                        };
                        ops.push(Op::Put {
                            key: keys::agent_key(&self.opts.host, &agent),
                            value: v.value.to_vec(),
                            lease: 0,
                        });
                        names.push((agent, false));
                    } else {
                        break;
                    }
                }
                (ops, names)
            };
            if ops.is_empty() {
                return Ok(());
            }
            if let Err(e) = self.client.txn(&ops) {
                let mut b = self.outbox.lock();
                for (agent, gone) in names {
                    if gone {
                        // Unless it came back meanwhile.
                        if !b.latest.contains_key(&agent) {
                            b.gone.insert(agent);
                        }
                    } else if b.latest.contains_key(&agent) {
                        b.dirty.insert(agent);
                    }
                }
                return Err(e);
            }
        }
    }
}

/// `pidbeat publish`: follows the run dir and keeps etcd's `/pidbeat/<host>/` equal to it
/// until SIGINT/SIGTERM; then revokes the lease (the host shows unreachable at once) and
/// exits 0.
pub fn command(cfg: super::PublishConfig) -> crate::exit::Result<crate::exit::ExitCode> {
    let client = Client::new(&cfg.client).map_err(|e| crate::exit::runtime!("{e}"))?;
    let outbox = Outbox::default();
    let mut local = super::local::Local::new(&cfg.run_dir, &cfg.host)?;
    // The first look completes before the writer starts, so that the writer's clean-up at
    // start knows every agent that has a record.
    local.look_all(&outbox);
    let opts = WriterOptions {
        host: cfg.host.clone(),
        ttl: cfg.ttl,
    };
    let mut writer = Writer::new(&outbox, client, opts);
    // What etcd refuses at the first try (no permission on this prefix, a wrong password) is
    // a mistake in the invocation: said at once, not retried forever. An etcd that does not
    // answer is not: the writer keeps trying, and local records do not care.
    if let Err(e @ Error::Refused { .. }) = writer.first_round() {
        return Err(crate::exit::runtime!(
            "{e}; check --user and --password-file, and that this host's etcd role may write \
             {}",
            super::keys::host_prefix(&cfg.host)
        ));
    }
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("etcd-writer".into())
            .spawn_scoped(s, move || writer.run())
            .map_err(|e| crate::exit::runtime!("cannot start the etcd writer thread: {e}"))?;
        let followed = local.run(&outbox);
        outbox.close();
        let _ = writer.join();
        followed.map(|()| crate::exit::ExitCode::Success)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> &[u8] {
        json.as_bytes()
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

    #[test]
    fn lease_timing_follows_the_ttl() {
        let ttl = Duration::from_secs(3);
        assert_eq!(keepalive_every(ttl), Duration::from_millis(600));
        assert_eq!(request_timeout(ttl), Duration::from_millis(500));
        assert_eq!(
            request_timeout(Duration::from_secs(30)),
            REQUEST_TIMEOUT_MAX
        );
        assert_eq!(
            request_timeout(Duration::from_secs(3600)),
            REQUEST_TIMEOUT_MAX
        );
    }
}
