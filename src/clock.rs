//! The clocks a record's age is told by. Wall-clock time (`ts`, `ts_ms`) is for people and
//! for other hosts, but it steps: NTP at boot, a VM's resume, a container's own view of time.
//! CLOCK_BOOTTIME never steps, counts suspend, and is one clock for every process (and every
//! PID namespace) of a boot, so the writer stamps each record with it and its boot id, and a
//! reader on the same boot measures the age on it. Records without the stamp (older watchers,
//! the shell sidecar) or from another boot fall back to wall-clock time.
//!
//! CLOCK_BOOTTIME is read through rustix (vDSO or raw syscall, never libc): a preloaded
//! libfaketime cannot move it even when asked to fake the monotonic clocks.

use std::sync::OnceLock;

use rustix::time::{ClockId, clock_gettime};

use crate::record::{Record, now_ms};

/// CLOCK_BOOTTIME in milliseconds.
pub fn boottime_ms() -> u64 {
    let t = clock_gettime(ClockId::Boottime);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Unix milliseconds at which a process with `start_time` (clock ticks since boot,
/// `/proc/PID/stat` field 22, counted on CLOCK_BOOTTIME) started: the wall clock now minus the
/// time since then. Good to a tick (10 ms), unlike `/proc/stat`'s whole-second `btime`, and
/// as true as the wall clock is now. `None` for a start time in this boot's future (a record
/// from before a reboot).
pub fn start_unix_ms(start_time: u64) -> Option<u64> {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let started_after_boot_ms = start_time.checked_mul(1000)? / hz;
    let ago = boottime_ms().checked_sub(started_after_boot_ms)?;
    now_ms().checked_sub(ago)
}

/// Unix milliseconds of this boot (see [`start_unix_ms`]).
pub fn boot_unix_ms() -> u64 {
    start_unix_ms(0).unwrap_or(0)
}

/// This boot's id, read once (`None` without /proc: then records carry no monotonic stamp and
/// are judged by wall-clock time).
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(s.trim().to_owned()).filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// How a record's age was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// Milliseconds since the write, on CLOCK_BOOTTIME (same boot): exact, whatever the wall
    /// clocks did.
    Boottime(u64),
    /// Milliseconds since the write by wall-clock time (no stamp, or another boot): true
    /// only while neither clock has stepped.
    Wall(u64),
    /// The wall-clock `ts` is in the future: the writer's clock is ahead or ours stepped back.
    /// That proves nothing about the record's freshness, either way.
    Unknown,
}

impl Age {
    pub fn ms(self) -> Option<u64> {
        match self {
            Age::Boottime(ms) | Age::Wall(ms) => Some(ms),
            Age::Unknown => None,
        }
    }
}

/// The age of `record` now. Err: it claims a write on this boot later than now, which no
/// writer can do (CLOCK_BOOTTIME only moves forward), so it is forged or broken. Read the
/// record before calling this, so that "now" is later than any honest write.
pub fn age(record: &Record) -> Result<Age, FutureWrite> {
    if let (Some(id), Some(at)) = (record.boot_id.as_deref(), record.boottime_ms) {
        if boot_id() == Some(id) {
            let now = boottime_ms();
            return match now.checked_sub(at) {
                Some(ms) => Ok(Age::Boottime(ms)),
                None => Err(FutureWrite { boottime_ms: at }),
            };
        }
    }
    Ok(match now_ms().checked_sub(record.written_ms()) {
        Some(ms) => Age::Wall(ms),
        None => Age::Unknown,
    })
}

/// A record stamped later on this boot's clock than now: forged or broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureWrite {
    boottime_ms: u64,
}

/// No `now` in the text: a verdict's error must stay the same from one look to the next
/// (publish writes to etcd when a verdict changes).
impl std::fmt::Display for FutureWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "boottime_ms {} is later than this boot's clock",
            self.boottime_ms
        )
    }
}

impl std::error::Error for FutureWrite {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_is_in_the_recent_past() {
        let started = start_unix_ms(crate::procfs::self_start_time()).unwrap();
        let now = now_ms();
        // This test process started at most an hour ago, and not after now (a tick's slack).
        assert!(
            started <= now + 10 && now - started < 3_600_000,
            "{started} vs {now}"
        );
        assert!(boot_unix_ms() <= started);
        assert_eq!(start_unix_ms(u64::MAX / 1000), None);
    }

    fn record(ts_ms: u64, boot_id: Option<&str>, boottime_ms: Option<u64>) -> Record {
        let line = serde_json::json!({"ts": ts_ms / 1000, "pid": 1, "status": "alive",
            "ts_ms": ts_ms, "boot_id": boot_id, "boottime_ms": boottime_ms});
        crate::record::parse(line.to_string().as_bytes()).unwrap().0
    }

    #[test]
    fn the_boot_clock_wins_on_its_own_boot_only() {
        let id = boot_id().expect("/proc is mounted");
        let (wall, boot) = (now_ms(), boottime_ms());
        // An hour off on the wall clock, 500 ms ago on the boot clock.
        let r = record(wall + 3_600_000, Some(id), Some(boot - 500));
        assert!(matches!(age(&r), Ok(Age::Boottime(ms)) if (500..5_000).contains(&ms)));
        // Another boot's stamp means nothing here: the wall clock tells, and a future `ts`
        // gives no age.
        let other = record(wall - 2_000, Some("0-1"), Some(boot - 500));
        assert!(matches!(age(&other), Ok(Age::Wall(ms)) if (2_000..7_000).contains(&ms)));
        assert_eq!(age(&record(wall + 60_000, None, None)), Ok(Age::Unknown));
        // A write later than now on this boot's clock cannot have happened.
        assert!(age(&record(wall, Some(id), Some(boot + 60_000))).is_err());
    }
}
