//! States real processes cannot hold still for, made the way a watcher makes them, from the
//! contract alone (docs/DESIGN.md, docs/record.schema.json): a record planted as the exact
//! bytes a watcher writes (a temp file renamed over `<agent>.hb`), and an agent's lock held as
//! a watcher holds it (an exclusive flock on `.<agent>.lock`, which names its holder).

use std::os::fd::OwnedFd;

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::Serialize;

use super::{Sandbox, assert_contract_keys_in_order, start_time};

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Alive,
    Dead,
    Unwatched,
}

/// The record's `exit`: how the target ended.
#[derive(Serialize, Clone, Copy, Debug)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub core: bool,
    /// Written only when true, as a watcher writes it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom: bool,
}

/// A record with every key a watcher writes, in the contract's order (`RECORD_KEYS`); a
/// `None` is written as `null`, as a watcher writes it, except `exit_unknown`, which a
/// watcher writes only on a `dead` record whose status cannot be known.
#[derive(Serialize, Clone, Debug)]
pub struct Record {
    pub ts: u64,
    pub pid: i32,
    pub status: Status,
    pub ts_ms: Option<u64>,
    pub seq: Option<u64>,
    pub interval: Option<f64>,
    pub backend: Option<String>,
    pub watcher_pid: Option<i32>,
    pub start_time: Option<u64>,
    pub exit: Option<ExitInfo>,
    pub died_ms: Option<u64>,
    pub watcher_start_time: Option<u64>,
    pub boot_id: Option<String>,
    pub boottime_ms: Option<u64>,
    pub pidns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_unknown: Option<String>,
}

impl Record {
    /// The file's bytes: one line of compact JSON.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a record serializes");
        line.push(b'\n');
        line
    }
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
    }
}

impl Sandbox {
    /// Writes `r` as `agent`'s record the way a watcher does (creating the run dir): the
    /// bytes go to a temp file that is then renamed over the record, so a reader sees the
    /// old record or the new one, never part of one.
    pub fn plant(&self, agent: &str, r: &Record) {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        let tmp = self
            .run_dir()
            .join(format!(".{agent}.hb.{}.tmp", std::process::id()));
        std::fs::write(&tmp, r.to_line()).unwrap();
        std::fs::rename(&tmp, self.record_path(agent)).unwrap();
    }

    /// Takes `agent`'s lock (creating the run dir) the way its watcher does, an exclusive
    /// flock on `.<agent>.lock` that holds the holder's PID and start time: this test process
    /// then stands for a running watcher until the returned fd is dropped.
    pub fn hold_lock(&self, agent: &str) -> OwnedFd {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        let path = self.run_dir().join(format!(".{agent}.lock"));
        let fd = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
            .unwrap_or_else(|e| panic!("{} is locked already: {e}", path.display()));
        // What a watcher writes there, for the readers that name the holder.
        let me = std::process::id() as i32;
        let line = format!("{me} {}\n", start_time(me).unwrap());
        rustix::fs::ftruncate(&fd, 0).unwrap();
        rustix::io::pwrite(&fd, line.as_bytes(), 0).unwrap();
        fd
    }
}

/// A planted record is a watcher's: every key of the contract, in its order.
#[test]
fn planted_records_have_the_contracts_keys_in_order() {
    let line = String::from_utf8(record_at(Status::Dead, 1, 1000).to_line()).unwrap();
    assert_contract_keys_in_order(&line);
}
