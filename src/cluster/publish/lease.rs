//! The host's lease, kept alive by its own thread on its own connections: a slow transaction
//! (a hundred verdicts over a slow link) never holds a keep-alive back, and a keep-alive's
//! bound follows its own round trips (see [`timing`](super::timing)).

use std::time::{Duration, Instant};

use super::outbox::Outbox;
use super::timing::{RoundTrips, keepalive_every};
use etcd_gateway::Client;

/// How soon a keep-alive that failed is tried again (the client has moved on to the next
/// member already).
const RETRY: Duration = Duration::from_millis(100);

/// Renews the writer's lease (`Board::lease`) every TTL/5 until the outbox is closed. When
/// etcd says the lease expired, tells the writer (`Board::lease_lost`), which grants another.
pub(super) fn keep_alive(outbox: &Outbox, mut client: Client, ttl: Duration) {
    let mut rt = RoundTrips::default();
    let mut next = Instant::now() + keepalive_every(ttl);
    let mut renewing = 0;
    let mut failing_since: Option<Instant> = None;
    loop {
        let lease = {
            let mut b = outbox.lock();
            loop {
                if b.quit {
                    return;
                }
                if b.lease != renewing {
                    // A new lease was just granted: its first renewal is a period away.
                    renewing = b.lease;
                    next = Instant::now() + keepalive_every(ttl);
                }
                let now = Instant::now();
                if b.lease != 0 && now >= next {
                    break b.lease;
                }
                let wait = if b.lease == 0 {
                    keepalive_every(ttl)
                } else {
                    next - now
                };
                b = outbox
                    .wake_keepalive
                    .wait_timeout(b, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        client.set_timeout(rt.keepalive_timeout(ttl));
        let answer = client.keepalive(lease);
        if let Some(d) = client.take_round_trip() {
            rt.add(d);
        }
        match answer {
            Ok(left) if left > 0 => {
                if let Some(since) = failing_since.take() {
                    eprintln!(
                        "pidbeat publish: lease keep-alives go through again (via {}) after \
                         {:.1}s",
                        client.member(),
                        since.elapsed().as_secs_f64()
                    );
                }
                next = Instant::now() + keepalive_every(ttl);
            }
            Ok(_) => {
                let mut b = outbox.lock();
                if b.lease == lease {
                    b.lease = 0;
                    b.lease_lost = true;
                    renewing = 0;
                }
                drop(b);
                outbox.wake.notify_all();
            }
            Err(e) => {
                rt.timed_out();
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    eprintln!(
                        "pidbeat publish: a lease keep-alive failed ({e}); retrying on the next \
                         member"
                    );
                }
                next = Instant::now() + RETRY;
            }
        }
    }
}
