//! One owner per host name: the claim on `/pidbeat/<host>/.bridge`, who holds it, and what a
//! bridge does when someone else does (as etcd's own election, on the key's revisions).
//!
//! The `.bridge` value names its holder: the bridge's PID and start time, its machine (the
//! kernel's host name and boot id), since when it holds the host, and how many transactions
//! it has written (`seq`: each of its transactions rewrites `.bridge`, which is how a
//! transaction whose answer was lost is known to have committed). A bridge takes the key only
//! when it is absent (or not on a live lease), in a transaction on its mod revision; while
//! the key is on another lease, that bridge owns the host and this one writes nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Fault, Writer};
use crate::cluster::keys;
use crate::incarnation::{Incarnation, Liveness};
use etcd_gateway::{Error, KeyValue};

/// The `.bridge` value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// The host name in etcd (`--host`).
    pub host: String,
    pub pid: u32,
    /// The bridge's start time (clock ticks after boot, `/proc/PID/stat` field 22): with the
    /// boot id, it tells a live holder from a PID reused since.
    #[serde(default)]
    pub start_time: u64,
    /// The machine's kernel host name.
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The inode of its PID namespace: `pid` means that process only in that namespace.
    #[serde(default)]
    pub pidns: Option<u64>,
    /// Since when (Unix ms) this bridge holds the host.
    #[serde(default)]
    pub since_ms: u64,
    /// The lease's TTL in seconds.
    pub ttl: i64,
    /// When this value was written (Unix ms).
    pub ts_ms: u64,
    /// The bridge's transactions so far.
    #[serde(default)]
    pub seq: u64,
}

impl Holder {
    /// This process, as a `.bridge` value would name it.
    pub fn me(host: &str, ttl: Duration) -> Holder {
        Holder {
            host: host.to_owned(),
            pid: std::process::id(),
            start_time: crate::procfs::self_start_time(),
            hostname: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            boot_id: crate::clock::boot_id().map(str::to_owned),
            pidns: crate::pidns::own(),
            since_ms: 0,
            ttl: ttl.as_secs().max(1) as i64,
            ts_ms: 0,
            seq: 0,
        }
    }

    /// `PID 4242 on machine m1 (boot id 5f3c…), holding it for 12 s`.
    pub fn describe(&self) -> String {
        let boot = self.boot_id.as_deref().unwrap_or("unknown");
        let held = crate::record::now_ms().saturating_sub(self.since_ms) / 1000;
        format!(
            "PID {} on machine {} (boot id {boot}), holding it for {held} s (since_ms {})",
            self.pid,
            if self.hostname.is_empty() {
                "?"
            } else {
                &self.hostname
            },
            self.since_ms
        )
    }

    /// Does this holder run on this machine? Only a holder of this boot and this PID
    /// namespace can be looked up (its PID and start time); for any other, only its lease
    /// can tell.
    fn here(&self) -> Here {
        let (Some(ours), Some(ns)) = (crate::clock::boot_id(), crate::pidns::own()) else {
            return Here::Unknown;
        };
        let same = self.boot_id.as_deref() == Some(ours) && self.pidns == Some(ns);
        if !same || self.start_time == 0 || self.pid == std::process::id() {
            return Here::Unknown;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return Here::Unknown;
        };
        match Incarnation::named(pid, Some(self.start_time)).probe() {
            Liveness::Alive => Here::Running,
            Liveness::Dead => Here::Gone,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Here {
    Running,
    /// It ran here and has ended: its lease outlives it by up to a TTL, holding nothing.
    Gone,
    Unknown,
}

/// While a claim is being made: what etcd held when it began.
pub(super) struct Claiming {
    /// `.bridge`'s mod revision then (0: absent): every transaction of the claim compares it.
    pub(super) bridge_rev: i64,
    /// The mod revision of each of this host's agent keys (each claim transaction compares
    /// its first key's: that is how a transaction whose answer was lost is known to have
    /// committed, and why it cannot commit twice).
    pub(super) revs: HashMap<String, i64>,
}

/// How often a bridge that waits for another's lease looks again.
const WAIT_POLL: Duration = Duration::from_millis(250);

impl Writer<'_> {
    /// Starts a claim: reads what this host has in etcd (keys only). If another lease holds
    /// `.bridge`, that bridge owns the host: at start, wait until it is proven alive (exit 1)
    /// or its lease expired (take over); later, stop. Else marks every verdict for putting and
    /// every agent key without a record for deleting, all before `.bridge` (see
    /// [`Writer::flush`]).
    pub(super) fn begin_claim(&mut self) -> Result<(), Fault> {
        let prefix = keys::host_prefix(&self.opts.host);
        let end = etcd_gateway::prefix_end(prefix.as_bytes());
        let bridge_key = keys::bridge_key(&self.opts.host);
        loop {
            self.set_write_timeout();
            // Keys only: the values of a thousand agents would be the bridge's peak memory.
            let existing =
                self.measured(|c| c.range_with(prefix.as_bytes(), Some(&end), 0, true))?;
            let bridge = existing.kvs.iter().find(|kv| kv.key == bridge_key);
            let mut bridge_rev = bridge.map_or(0, |b| b.mod_revision);
            match bridge {
                Some(b) if b.lease != 0 && b.lease != self.lease => {
                    let holder = self.read_holder(&bridge_key)?;
                    let Some((kv, holder)) = holder else {
                        // It went meanwhile: read again.
                        continue;
                    };
                    if let Some(h) = holder.as_ref().filter(|h| h.here() == Here::Gone) {
                        // A bridge of this machine that has ended (a restart after a crash):
                        // its claim is taken over at once, in the transactions that compare
                        // `.bridge` as read here, rather than after its lease.
                        eprintln!(
                            "pidbeat publish: {bridge_key} is held by PID {} of this machine, \
                             which has ended; taking the host over",
                            h.pid
                        );
                        bridge_rev = kv.mod_revision;
                    } else if self.claimed_once {
                        return Err(Fault::Held(format!(
                            "another bridge now holds {bridge_key}: {}; stopping, so that this \
                             host has one writer",
                            describe(&holder)
                        )));
                    } else {
                        self.wait_for_holder(&bridge_key, &kv, holder)?;
                        continue;
                    }
                }
                _ => {}
            }
            if self.claimed_once && !self.lease_expired {
                // Our lease may have been revoked, and `.bridge` with it: no key can be put on
                // it any more.
                self.set_write_timeout();
                let lease = self.lease;
                if self.measured(|c| c.time_to_live(lease))? <= 0 {
                    eprintln!(
                        "pidbeat publish: lease {lease:x} is gone (revoked, or expired while etcd \
                         could not be reached), and {bridge_key} with it; granting a new one and \
                         putting every verdict back, .bridge last"
                    );
                    self.lease = 0;
                    self.grant()?;
                } else {
                    eprintln!(
                        "pidbeat publish: {bridge_key} was deleted or changed by someone else; \
                         claiming it again and putting every verdict back, .bridge last"
                    );
                }
            }
            let revs: HashMap<String, i64> = existing
                .kvs
                .iter()
                .filter_map(|kv| match keys::parse(&kv.key) {
                    Some(keys::Key::Agent { agent, .. }) => {
                        Some((agent.to_owned(), kv.mod_revision))
                    }
                    _ => None,
                })
                .collect();
            {
                let mut b = self.outbox.lock();
                let all: Vec<String> = b.latest.keys().cloned().collect();
                b.dirty.extend(all);
                let stale: Vec<String> = revs
                    .keys()
                    .filter(|a| !b.latest.contains_key(*a))
                    .cloned()
                    .collect();
                b.gone.extend(stale);
                b.watch_from = existing.revision + 1;
            }
            self.claiming = Some(Claiming { bridge_rev, revs });
            return Ok(());
        }
    }

    /// `.bridge`'s key-value and holder, if it exists.
    fn read_holder(&mut self, key: &str) -> Result<Option<(KeyValue, Option<Holder>)>, Fault> {
        self.set_write_timeout();
        let r = self.measured(|c| c.range(key.as_bytes(), None, 0))?;
        Ok(r.kvs.into_iter().next().map(|kv| {
            let h = serde_json::from_slice(&kv.value).ok();
            (kv, h)
        }))
    }

    /// At start, another lease holds `.bridge`. A holder on this machine that runs is alive:
    /// exit 1 at once. Otherwise only the lease can tell: its holder renews it every TTL/5,
    /// so if the time it has left goes up, or it is still there a TTL and a second later, the
    /// holder is alive (exit 1); if it expires, this bridge takes over (`Ok`).
    fn wait_for_holder(
        &mut self,
        key: &str,
        kv: &KeyValue,
        holder: Option<Holder>,
    ) -> Result<(), Fault> {
        let live = |h: &Option<Holder>| {
            Fault::Held(format!(
                "{key} is held by a live bridge: {}; stop it, or give this bridge another --host",
                describe(h)
            ))
        };
        if holder.as_ref().is_some_and(|h| h.here() == Here::Running) {
            return Err(live(&holder));
        }
        let lease = kv.lease;
        self.set_write_timeout();
        let first = self.measured(|c| c.time_to_live(lease))?;
        let ttl = holder.as_ref().map_or(first, |h| h.ttl.max(first));
        let deadline = Instant::now() + Duration::from_secs(ttl.max(0) as u64 + 1);
        eprintln!(
            "pidbeat publish: {key} is held by {}, which does not run here; waiting up to {} s \
             for its lease to expire (a live holder renews it)",
            describe(&holder),
            ttl + 1
        );
        let mut last = first;
        loop {
            if first < 0 || last < 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(live(&holder));
            }
            std::thread::sleep(WAIT_POLL);
            self.set_write_timeout();
            let left = match self.measured(|c| c.time_to_live(lease)) {
                Ok(l) => l,
                Err(Fault::Etcd(Error::Unavailable(_))) => continue,
                Err(e) => return Err(e),
            };
            if left > last {
                return Err(live(&holder));
            }
            last = left;
        }
    }
}

fn describe(h: &Option<Holder>) -> String {
    h.as_ref().map_or_else(
        || "a holder whose value is not a bridge's".into(),
        Holder::describe,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_value_names_its_holder() {
        let mut me = Holder::me("h1", Duration::from_secs(10));
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.ttl, 10);
        me.since_ms = 1;
        let v = serde_json::to_string(&me).unwrap();
        assert!(v.starts_with(r#"{"host":"h1","pid":"#), "{v}");
        let back: Holder = serde_json::from_str(&v).unwrap();
        assert_eq!(back, me);
        assert!(me.describe().contains(&format!("PID {}", me.pid)));
        // This very process is not another holder; a process of this machine that has ended is
        // gone, one elsewhere unknown.
        assert_eq!(me.here(), Here::Unknown);
        let gone = Holder {
            pid: 1,
            start_time: u64::MAX,
            ..me.clone()
        };
        let expect = if me.boot_id.is_some() && me.pidns.is_some() {
            Here::Gone
        } else {
            Here::Unknown
        };
        assert_eq!(gone.here(), expect);
        let elsewhere = Holder {
            boot_id: Some("another".into()),
            ..gone
        };
        assert_eq!(elsewhere.here(), Here::Unknown);
        // A value of the older shape still parses.
        let old: Holder =
            serde_json::from_str(r#"{"host":"h","pid":7,"ttl":3,"ts_ms":9}"#).unwrap();
        assert_eq!(old.here(), Here::Unknown);
    }
}
