//! The record's `progress` object: the evidence a watcher samples about whether its live
//! target makes progress, and what the target said about itself over sd_notify. Readers
//! judge it (`reader/activity.rs`); the watcher only states facts and their times.

use serde::{Deserialize, Serialize};

/// What the agent claims it is doing (`X_PIDBEAT_ACTIVITY=`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Working,
    Waiting,
    Idle,
}

impl Claim {
    pub fn parse(s: &[u8]) -> Option<Claim> {
        match s {
            b"working" => Some(Claim::Working),
            b"waiting" => Some(Claim::Waiting),
            b"idle" => Some(Claim::Idle),
            _ => None,
        }
    }
}

/// The longest `STATUS=` text kept, in bytes (cut at a character boundary). With control
/// characters replaced, its JSON is at most twice as long, which bounds the record's line.
pub const STATUS_MAX: usize = 256;

/// Every time is wall-clock milliseconds (as `ts_ms`); `None` is "never seen".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// CPU time of the target's tree (utime+stime+cutime+cstime of the target and of its
    /// live descendants at the last walk), in ms.
    pub cpu_ms: Option<u64>,
    /// When a CPU counter of the tree was last seen to change (a sum can drop as children
    /// exit: any change is progress).
    pub cpu_at_ms: Option<u64>,
    /// When the current run of beats that each saw CPU progress began (`wait --until working
    /// --for`): a beat without progress ends the run.
    pub cpu_since_ms: Option<u64>,
    /// The target's terminal's mtime: its last output, to the kernel's 8 s stamp.
    pub output_ms: Option<u64>,
    /// The terminal's atime: its last input read, to 8 s.
    pub input_ms: Option<u64>,
    /// When an accepted sd_notify datagram last arrived.
    pub notify_ms: Option<u64>,
    /// The last `STATUS=` text.
    pub status_text: Option<String>,
    /// The last `X_PIDBEAT_ACTIVITY=` claim, and when it was made.
    pub claim: Option<Claim>,
    pub claim_ms: Option<u64>,
    /// `READY=1` and `STOPPING=1`, when last sent.
    pub ready_ms: Option<u64>,
    pub stopping_ms: Option<u64>,
    /// The watchdog the agent announced (`WATCHDOG_USEC=`, or `--watchdog`), in µs, and when
    /// it last sent `WATCHDOG=1` (or announced the watchdog, which starts the first period).
    pub watchdog_usec: Option<u64>,
    pub watchdog_ms: Option<u64>,
}

impl Progress {
    /// Keeps `text` as the `STATUS=`: cut to [`STATUS_MAX`] bytes, control characters as
    /// spaces, into the string already held (no allocation once it has grown to the cap).
    pub fn set_status(&mut self, text: &[u8]) {
        let s = self.status_text.get_or_insert_with(String::new);
        s.clear();
        let text = String::from_utf8_lossy(text);
        for c in text.chars() {
            if s.len() + c.len_utf8() > STATUS_MAX {
                break;
            }
            s.push(if c.is_control() { ' ' } else { c });
        }
    }

    /// Has the agent's watchdog expired as of `now_ms`?
    pub fn watchdog_expired(&self, now_ms: u64) -> bool {
        match (self.watchdog_usec, self.watchdog_ms) {
            (Some(usec), Some(at)) if usec > 0 => now_ms.saturating_sub(at) > usec / 1000,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_cut_and_cleaned() {
        let mut p = Progress::default();
        p.set_status(b"a\tb\n\x01c");
        assert_eq!(p.status_text.as_deref(), Some("a b  c"));
        p.set_status("é".repeat(200).as_bytes());
        let s = p.status_text.as_deref().unwrap();
        assert_eq!(s.len(), STATUS_MAX);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn watchdog_expiry() {
        let p = Progress {
            watchdog_usec: Some(2_000_000),
            watchdog_ms: Some(10_000),
            ..Progress::default()
        };
        assert!(!p.watchdog_expired(12_000));
        assert!(p.watchdog_expired(12_001));
        assert!(!Progress::default().watchdog_expired(u64::MAX));
    }
}
