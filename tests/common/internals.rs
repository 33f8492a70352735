//! The only place the tests reach into pidbeat's library rather than run its binary: to plant
//! records and hold locks exactly the way a watcher does (for states real processes cannot
//! hold still for), and to watch the run dir the way the readers do.

use std::os::fd::OwnedFd;

pub use pidbeat::testing::{DirWatch, ExitInfo, Record, Status};

use super::Sandbox;

/// The start time pidbeat itself reads for `pid` (its `watcher_start_time`, `start_time`).
pub fn read_start_time(pid: i32) -> u64 {
    pidbeat::testing::read_stat(pid).unwrap().start_time
}

/// A record as a pidfd watcher writes it, written at `written_ms` (dead ones died then), with
/// no watcher named: for planting.
pub fn record_at(status: Status, pid: i32, written_ms: u64) -> Record {
    Record {
        ts: written_ms / 1000,
        pid,
        status,
        ts_ms: Some(written_ms),
        seq: Some(1),
        interval: Some(15.0),
        backend: Some("pidfd".into()),
        watcher_pid: None,
        start_time: Some(1),
        exit: None,
        died_ms: (status == Status::Dead).then_some(written_ms),
        watcher_start_time: None,
        boot_id: None,
        boottime_ms: None,
        pidns: None,
        exit_unknown: None,
        progress: None,
    }
}

impl Sandbox {
    /// Writes `r` as `agent`'s record the way a watcher does (creating the run dir): for
    /// states real processes cannot hold still for.
    pub fn plant(&self, agent: &str, r: &Record) {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        pidbeat::testing::RecordWriter::new(&self.run_dir(), agent)
            .write(&r.to_line(), false)
            .unwrap();
    }

    /// Takes `agent`'s lock (creating the run dir) the way its watcher does: this test process
    /// then stands for a running watcher until the returned fd is dropped.
    pub fn hold_lock(&self, agent: &str) -> OwnedFd {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        pidbeat::testing::AgentLock::acquire(&self.run_dir(), agent)
            .unwrap()
            .into_fd()
    }
}
