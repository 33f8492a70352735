//! PID namespaces. A record written inside a container names PIDs of the container's
//! namespace; to a reader in another namespace they name other processes, or none. The writer
//! records its namespace, and a reader elsewhere judges such a record only by what crosses
//! namespaces: the watcher's flock, its beats, CLOCK_BOOTTIME.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// The kernel's hard limit on `pid_max` (PID_MAX_LIMIT on 64-bit): no namespace exceeds it.
pub const PID_MAX_LIMIT: i32 = 4 * 1024 * 1024;

/// The inode of this process's PID namespace, read once (`None` without /proc).
pub fn own() -> Option<u64> {
    static NS: OnceLock<Option<u64>> = OnceLock::new();
    *NS.get_or_init(|| std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino()))
}

/// Is a record written in namespace `pidns` from another one than ours? Unknown on either
/// side (a record without `pidns`, such as the shell sidecar's; no /proc here) counts as
/// ours: nothing then says its PIDs are not ours.
pub fn is_foreign(pidns: Option<u64>) -> bool {
    matches!((pidns, own()), (Some(theirs), Some(ours)) if theirs != ours)
}

/// One more than the highest PID of this namespace (`/proc/sys/kernel/pid_max`), read once.
pub fn pid_max() -> i32 {
    static MAX: OnceLock<i32> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|m| (1..=PID_MAX_LIMIT).contains(m))
            .unwrap_or(PID_MAX_LIMIT)
    })
}
