//! The host's lease: its timing against the TTL, and a new one (the bridge key on it, every
//! verdict put again, and with the first, this host's keys without a record deleted).

use std::time::{Duration, Instant};

use super::Writer;
use crate::cluster::keys;
use etcd_gateway::{Error, MAX_TXN_OPS, Op};

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

impl<'a> Writer<'a> {
    /// Grants a lease, puts the bridge key on it, and marks every verdict for putting again
    /// (if the old lease expired, readers may have marked this host unreachable meanwhile; and
    /// at start, etcd may hold anything).
    pub(super) fn new_lease(&mut self) -> Result<(), Error> {
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
        let end = etcd_gateway::prefix_end(prefix.as_bytes());
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
