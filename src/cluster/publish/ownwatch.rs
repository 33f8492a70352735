//! The bridge follows its own prefix, `/pidbeat/<host>/`, on its own connection: a key that
//! someone else deleted or changed (`etcdctl del --prefix`, a put, a revoked lease) is
//! noticed within a watch event's delay, not at the next local change.
//!
//! The watch does not judge: it knows the bridge's own writes by their values (the latest
//! verdicts, the `.bridge` values it sent) and hands anything else to the writer as a
//! suspect, which the writer checks against etcd as it is now (a stale event of its own is
//! then harmless: it costs a read, never a write).

use std::time::Duration;

use super::outbox::Outbox;
use crate::cluster::keys::{self, Key};
use etcd_gateway::{Client, Error, EventKind, WatchResponse};

/// How long the watch waits before opening again after it failed (the client has moved on
/// to the next member).
const REOPEN: Duration = Duration::from_millis(200);

/// An answer with more events than this (a claim's batch, not a verdict changing) is
/// followed by a heap trim.
const TRIM_AFTER_EVENTS: usize = 16;

/// Starts the watch from `Board::watch_from`. The thread is never joined: it blocks on its
/// stream until the process ends.
pub(super) fn spawn(
    outbox: &'static Outbox,
    client: Client,
    host: &str,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let host = host.to_owned();
    std::thread::Builder::new()
        .name("etcd-own-prefix".into())
        .spawn(move || follow(outbox, client, &host))
}

fn follow(outbox: &Outbox, mut client: Client, host: &str) {
    let prefix = keys::host_prefix(host);
    let end = etcd_gateway::prefix_end(prefix.as_bytes());
    let mut from = outbox.lock().watch_from;
    loop {
        if outbox.lock().quit {
            return;
        }
        let mut w = match client.watch_with(prefix.as_bytes(), &end, from, false) {
            Ok(w) => w,
            Err(Error::Compacted(_)) => {
                // History this watch needed is gone: every key is a suspect, from now on.
                match client.range(keys::bridge_key(host).as_bytes(), None, 0) {
                    Ok(r) => {
                        from = r.revision + 1;
                        suspect_all(outbox);
                    }
                    Err(_) => std::thread::sleep(REOPEN),
                }
                continue;
            }
            Err(_) => {
                std::thread::sleep(REOPEN);
                continue;
            }
        };
        while let Ok(resp) = w.recv() {
            from = from.max(next_revision(&resp));
            check(outbox, &resp);
            if resp.events.len() > TRIM_AFTER_EVENTS {
                // A claim's batch of a hundred values passed through this thread's arena:
                // its pages go back, or they would stay the bridge's for good.
                drop(resp);
                crate::sys::trim_heap();
            }
        }
        std::thread::sleep(REOPEN);
    }
}

/// The revision to watch from after `resp`.
fn next_revision(resp: &WatchResponse) -> i64 {
    match resp.events.last() {
        Some(e) => e.kv.mod_revision + 1,
        // A progress notice: everything up to its revision has been sent.
        None => resp.revision + 1,
    }
}

/// Hands the events the bridge cannot tell for its own to the writer.
fn check(outbox: &Outbox, resp: &WatchResponse) {
    let mut b = outbox.lock();
    let mut news = false;
    for e in &resp.events {
        match keys::parse(&e.kv.key) {
            Some(Key::Bridge { .. }) => {
                let ours = match e.kind {
                    EventKind::Put => b.bridge_sent.iter().any(|v| **v == *e.kv.value),
                    // The bridge's own revoke, on the way out.
                    EventKind::Delete => b.quit,
                };
                if !ours {
                    b.bridge_suspect = true;
                    news = true;
                }
            }
            Some(Key::Agent { agent, .. }) => {
                if b.pending(agent) {
                    continue;
                }
                let ours = match (e.kind, b.latest.get(agent)) {
                    (EventKind::Put, Some(v)) => *v.value == *e.kv.value,
                    (EventKind::Put, None) => false,
                    (EventKind::Delete, latest) => latest.is_none(),
                };
                if !ours {
                    b.suspects.insert(agent.to_owned());
                    news = true;
                }
            }
            None => {}
        }
    }
    drop(b);
    if news {
        outbox.wake.notify_all();
    }
}

fn suspect_all(outbox: &Outbox) {
    let mut b = outbox.lock();
    let all: Vec<String> = b.latest.keys().cloned().collect();
    b.suspects.extend(all);
    b.bridge_suspect = true;
    drop(b);
    outbox.wake.notify_all();
}
