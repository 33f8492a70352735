//! Timeouts that fit the link: each of the bridge's connections measures its round trips
//! (RFC 6298's smoothed mean and variation) and bounds its requests by them and by the TTL.
//!
//! A fixed share of the TTL does not fit a slow link: at 200 ms each way with TCP resending
//! lost segments, requests take 1–2 s, and a bound below that turns every answer into a
//! timeout and a retry. A bound from the measured round trips follows the link, and backs
//! off (doubles) after each timeout, as TCP's own does.

use std::time::Duration;

/// No request is given less: a member that answers within a second is not hung.
pub const TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// A write is given at most this (or half the TTL if that is shorter): a member that takes
/// longer is taken for hung and the next one tried. A guarded transaction may be sent again
/// safely (it commits at most once), so this bounds only how long a write waits on one member.
pub const WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(10);

/// Keep-alives go out every TTL/5: four can be lost before the lease is.
pub fn keepalive_every(ttl: Duration) -> Duration {
    ttl / 5
}

/// The round trips of one connection, smoothed.
#[derive(Debug, Clone, Default)]
pub struct RoundTrips {
    /// The smoothed round trip; `None` before the first answer.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Timeouts in a row since the last answer: each doubles the bound.
    timeouts: u32,
}

impl RoundTrips {
    /// One answer took `rtt`.
    pub fn add(&mut self, rtt: Duration) {
        self.timeouts = 0;
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// A request got no answer within its bound.
    pub fn timed_out(&mut self) {
        self.timeouts = (self.timeouts + 1).min(8);
    }

    /// The bound for the next request: twice the retransmission timeout (mean + 4 × variation)
    /// of the round trips seen, doubled per timeout since, within `[TIMEOUT_MIN, cap]`. Before
    /// anything was measured, [`TIMEOUT_MIN`] (RFC 6298's first timeout), doubled likewise.
    fn bound(&self, cap: Duration) -> Duration {
        let rto = match self.srtt {
            Some(srtt) => (srtt + self.rttvar * 4) * 2,
            None => TIMEOUT_MIN,
        };
        rto.saturating_mul(1 << self.timeouts)
            .max(TIMEOUT_MIN)
            .min(cap)
    }

    /// A keep-alive's bound: at most TTL/3, so that after a keep-alive that timed out two
    /// more (on other members) fit before the lease runs out.
    pub fn keepalive_timeout(&self, ttl: Duration) -> Duration {
        self.bound(ttl / 3)
    }

    /// A write's bound (a transaction, a read, a lease grant): at most half the TTL and
    /// [`WRITE_TIMEOUT_MAX`]. Writes do not keep the lease alive, so a long one costs only the
    /// time to give up on a hung member.
    pub fn write_timeout(&self, ttl: Duration) -> Duration {
        self.bound((ttl / 2).min(WRITE_TIMEOUT_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn bounds_follow_the_link_and_the_ttl() {
        let ttl = Duration::from_secs(10);
        let mut rt = RoundTrips::default();
        // Nothing measured: the floor, doubled per timeout.
        assert_eq!(rt.keepalive_timeout(ttl), TIMEOUT_MIN);
        rt.timed_out();
        assert_eq!(rt.write_timeout(ttl), 2 * TIMEOUT_MIN);
        // Loopback: the floor.
        for _ in 0..20 {
            rt.add(2 * MS);
        }
        assert_eq!(rt.keepalive_timeout(ttl), TIMEOUT_MIN);
        // 200 ms each way, answers in 0.4–1.6 s: well above a fixed TTL/6 (1.67 s)…
        let mut slow = RoundTrips::default();
        for k in 0..40 {
            slow.add([400, 1600, 700, 1200][k % 4] * MS);
        }
        let w = slow.write_timeout(ttl);
        assert!(
            w > Duration::from_millis(1670) && w <= Duration::from_secs(5),
            "{w:?}"
        );
        // …and a timeout backs off, up to the cap.
        let before = slow.keepalive_timeout(ttl);
        slow.timed_out();
        assert!(slow.keepalive_timeout(ttl) >= before);
        for _ in 0..10 {
            slow.timed_out();
        }
        assert_eq!(slow.keepalive_timeout(ttl), ttl / 3);
        // A short TTL caps below the floor: the lease comes first.
        let mut rt = RoundTrips::default();
        for _ in 0..10 {
            rt.timed_out();
        }
        assert_eq!(rt.write_timeout(ttl), ttl / 2);
        assert_eq!(
            RoundTrips::default().keepalive_timeout(Duration::from_secs(2)),
            Duration::from_secs(2) / 3
        );
        assert_eq!(keepalive_every(ttl), Duration::from_secs(2));
    }
}
