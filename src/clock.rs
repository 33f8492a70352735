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
pub fn age(record: &Record) -> Result<Age, String> {
    if let (Some(id), Some(at)) = (record.boot_id.as_deref(), record.boottime_ms) {
        if boot_id() == Some(id) {
            let now = boottime_ms();
            return match now.checked_sub(at) {
                Some(ms) => Ok(Age::Boottime(ms)),
                None => Err(format!(
                    "boottime_ms {at} is later than this boot's clock ({now})"
                )),
            };
        }
    }
    Ok(match now_ms().checked_sub(record.written_ms()) {
        Some(ms) => Age::Wall(ms),
        None => Age::Unknown,
    })
}
