//! Reading the run dir's records and judging each agent's state (DESIGN.md's `ps` states).
//! Shared by `ps` and `wait`, so both commands give one answer for the same agent.
//!
//! `lost` is only ever a proven verdict: the record says alive, and either the watcher is
//! gone (its flock is free, or its PID names no process or another incarnation) or the target
//! is gone while the watcher cannot write (it is stopped, or unknown). A target that died
//! under a running watcher is not yet lost: that watcher is about to write `dead`, so the
//! entry is marked [`Unsettled::Dying`] and the caller gives it a short grace (see
//! `settle.rs`).

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::procfs::{self, Liveness, Stat};
use crate::record::{MAX_RECORD_BYTES, Record, Status, now_ms};
use crate::rundir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Alive,
    Stale,
    Dead,
    Lost,
    Unwatched,
    Corrupt,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Alive,
        State::Stale,
        State::Dead,
        State::Lost,
        State::Unwatched,
        State::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Stale => "stale",
            State::Dead => "dead",
            State::Lost => "lost",
            State::Unwatched => "unwatched",
            State::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verdict that the next moments will most likely overturn without any new proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    /// The target is gone but its watcher runs: `dead` should land at once. Shown as what the
    /// record says (alive/stale) until the grace runs out, then `lost`.
    Dying,
    /// `dead` without an exit status while its watcher still lives: the watcher may rewrite
    /// the record with the status within its grace (`watch::EXIT_GRACE`).
    ExitPending,
}

impl Unsettled {
    pub fn grace(self) -> Duration {
        match self {
            // pidfd watchers write within milliseconds and poll ones within 250 ms; the rest
            // is room for the durable write's fsyncs on a busy disk.
            Unsettled::Dying => Duration::from_secs(1),
            Unsettled::ExitPending => crate::watch::EXIT_GRACE + Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub agent: String,
    pub state: State,
    /// None when corrupt.
    pub record: Option<Record>,
    /// The record's own keys and values, in the file's order (for `--json`).
    pub fields: Vec<(String, Value)>,
    /// Why the record is corrupt.
    pub error: Option<String>,
    /// Milliseconds since the record was written (never negative: a future `ts` counts as 0).
    pub age_ms: Option<u64>,
    pub unsettled: Option<Unsettled>,
}

impl Entry {
    fn corrupt(agent: &str, error: String) -> Entry {
        Entry {
            agent: agent.to_owned(),
            state: State::Corrupt,
            record: None,
            fields: Vec::new(),
            error: Some(error),
            age_ms: None,
            unsettled: None,
        }
    }
}

pub fn record_name(agent: &str) -> String {
    format!("{agent}.hb")
}

/// The agents with a record in `dir`, sorted. Files whose stem is not a valid agent name are
/// not records of ours and are skipped. NotFound means the run dir itself is missing.
pub fn list_agents(dir: &Path) -> io::Result<Vec<String>> {
    let mut agents = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let name = ent?.file_name();
        let Some(agent) = name.to_str().and_then(|n| n.strip_suffix(".hb")) else {
            continue;
        };
        if crate::cli::validate_agent(agent).is_ok() {
            agents.push(agent.to_owned());
        }
    }
    agents.sort();
    Ok(agents)
}

/// Reads a record without trusting the file: O_NOFOLLOW (a planted symlink is refused, not
/// followed), O_NONBLOCK (a FIFO cannot block the open), a type check before reading (nor the
/// read), and a bounded read (a huge or sparse file is refused from its size).
/// `Ok(None)`: no such record.
pub fn read_record_bytes(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rfs::open(path, flags | OFlags::NOCTTY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err("record is a symlink".into()),
        Err(e) => return Err(format!("cannot open record: {e}")),
    };
    let st = rfs::fstat(&fd).map_err(|e| format!("cannot stat record: {e}"))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(format!("record is not a regular file ({kind:?})"));
    }
    if st.st_size as u64 > MAX_RECORD_BYTES as u64 {
        return Err(format!(
            "record is {} bytes, over the {MAX_RECORD_BYTES}-byte limit",
            st.st_size
        ));
    }
    let mut bytes = Vec::new();
    // One byte over the limit tells a file that grew after fstat from one that fits.
    std::fs::File::from(fd)
        .take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read record: {e}"))?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("record is over the {MAX_RECORD_BYTES}-byte limit"));
    }
    Ok(Some(bytes))
}

/// The state of one agent now, or `None` if it has no record. Reads the record, judges it,
/// then reads it again: if the watcher wrote in between (say, its final `dead` just before
/// exiting and freeing its lock), the judgement is redone on the newer record, so a clean
/// death is never mistaken for `lost`.
pub fn classify(dir: &Path, agent: &str) -> Option<Entry> {
    let path = dir.join(record_name(agent));
    let mut bytes = match read_record_bytes(&path) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => return Some(Entry::corrupt(agent, e)),
    };
    let mut entry = judge(dir, agent, &bytes);
    // Bounded: a watcher beating every millisecond must not keep us here.
    for _ in 0..3 {
        let proven_by_liveness = entry
            .record
            .as_ref()
            .is_some_and(|r| r.status == Status::Alive || entry.unsettled.is_some());
        if !proven_by_liveness {
            break;
        }
        match read_record_bytes(&path) {
            Ok(Some(again)) if again == bytes => break,
            Ok(Some(again)) => bytes = again,
            Ok(None) => return None,
            Err(e) => return Some(Entry::corrupt(agent, e)),
        }
        entry = judge(dir, agent, &bytes);
    }
    Some(entry)
}

fn parse(bytes: &[u8]) -> Result<(Record, Vec<(String, Value)>), String> {
    std::str::from_utf8(bytes).map_err(|e| format!("record is not UTF-8: {e}"))?;
    let record = Record::parse(bytes)?;
    let fields = serde_json::from_slice::<Ordered>(bytes)
        .map_err(|e| e.to_string())?
        .0;
    Ok((record, fields))
}

fn judge(dir: &Path, agent: &str, bytes: &[u8]) -> Entry {
    let (record, fields) = match parse(bytes) {
        Ok(p) => p,
        Err(e) => return Entry::corrupt(agent, e),
    };
    let age_ms = now_ms().saturating_sub(record.written_ms());
    let (state, unsettled) = match record.status {
        Status::Dead => (State::Dead, exit_pending(dir, agent, &record)),
        Status::Unwatched => (State::Unwatched, None),
        Status::Alive => judge_alive(dir, agent, &record, age_ms),
    };
    Entry {
        agent: agent.to_owned(),
        state,
        record: Some(record),
        fields,
        error: None,
        age_ms: Some(age_ms),
        unsettled,
    }
}

/// DESIGN.md: alive while written within 2 × interval + 1 s.
pub fn is_fresh(record: &Record, age_ms: u64) -> bool {
    let interval = record
        .interval
        .filter(|i| i.is_finite() && *i > 0.0)
        .unwrap_or(15.0);
    age_ms as f64 <= (2.0 * interval + 1.0) * 1000.0
}

fn judge_alive(
    dir: &Path,
    agent: &str,
    record: &Record,
    age_ms: u64,
) -> (State, Option<Unsettled>) {
    let as_written = if is_fresh(record, age_ms) {
        State::Alive
    } else {
        State::Stale
    };
    match (watcher(dir, agent, record), target_alive(record)) {
        (Watcher::Gone, _) => (State::Lost, None),
        (_, true) => (as_written, None),
        (Watcher::Running, false) => (as_written, Some(Unsettled::Dying)),
        (Watcher::Stopped | Watcher::Unknown, false) => (State::Lost, None),
    }
}

/// Is the record's target incarnation still running? Without a `start_time` (seed-format
/// records) the PID alone has to do.
pub fn target_alive(record: &Record) -> bool {
    match record.start_time {
        Some(st) => procfs::probe(record.pid, st) == Liveness::Alive,
        None => procfs::is_running(record.pid).is_some(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watcher {
    /// Proven gone: nobody will write this record again.
    Gone,
    /// Alive but SIGSTOPped: it holds its lock yet cannot write.
    Stopped,
    Running,
    /// The record names no watcher and there is no lock: nothing can be proven.
    Unknown,
}

/// Who writes this record? The per-agent flock is the proof for pidbeat's watchers (the kernel
/// frees it the instant the watcher dies). Records without a lock file (the shell sidecar) or
/// not written by pidbeat fall back to the `watcher_pid` they name.
fn watcher(dir: &Path, agent: &str, record: &Record) -> Watcher {
    let writer = record
        .watcher_pid
        .map(|pid| running_incarnation(pid, record.watcher_start_time));
    let stopped = |st: &Option<Stat>| st.is_some_and(|st| matches!(st.state, b'T' | b't'));
    match rundir::lock_held(dir, agent) {
        Some(true) => match writer {
            Some(st) if stopped(&st) => Watcher::Stopped,
            // The holder may also be a newer watcher that has not written yet: it will.
            _ => Watcher::Running,
        },
        // `watcher_start_time` is pidbeat's own key: such a writer always held this lock.
        Some(false) if record.watcher_start_time.is_some() => Watcher::Gone,
        _ => match writer {
            None => Watcher::Unknown,
            Some(None) => Watcher::Gone,
            Some(st) if stopped(&st) => Watcher::Stopped,
            Some(_) => Watcher::Running,
        },
    }
}

/// The process `pid` if it still runs (zombies count as gone) and, when `start_time` is
/// known, is still the same incarnation.
fn running_incarnation(pid: i32, start_time: Option<u64>) -> Option<Stat> {
    let st = procfs::read_stat(pid).ok()?;
    if start_time.is_some_and(|s| s != st.start_time) {
        return None;
    }
    (procfs::probe(pid, st.start_time) == Liveness::Alive).then_some(st)
}

fn exit_pending(dir: &Path, agent: &str, record: &Record) -> Option<Unsettled> {
    let writer_lives = record
        .watcher_pid
        .is_some_and(|pid| running_incarnation(pid, record.watcher_start_time).is_some());
    (record.exit.is_none() && writer_lives && rundir::lock_held(dir, agent) == Some(true))
        .then_some(Unsettled::ExitPending)
}

/// A JSON object's entries in the order the file has them (serde_json's `Map` sorts them,
/// since `preserve_order` is off).
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry::<String, Value>()? {
                    v.push(kv);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_refuses_junk() {
        let (_, fields) = parse(br#"{"ts":1,"pid":2,"status":"dead","zz":1,"aa":2}"#).unwrap();
        let keys: Vec<_> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ts", "pid", "status", "zz", "aa"]);
        assert!(parse(b"\xff\xfe").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(br#"{"ts":1,"pid":2,"status":"alive","ts":3}"#).is_err());
    }

    #[test]
    fn freshness_follows_the_interval() {
        let mut r = Record::parse(br#"{"ts":0,"pid":1,"status":"alive"}"#).unwrap();
        assert!(is_fresh(&r, 31_000));
        assert!(!is_fresh(&r, 31_001));
        r.interval = Some(0.1);
        assert!(is_fresh(&r, 1_200));
        assert!(!is_fresh(&r, 1_201));
        r.interval = Some(-3.0);
        assert!(is_fresh(&r, 31_000));
    }

    #[test]
    fn hostile_files_are_corrupt_not_read() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.hb");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        assert!(read_record_bytes(&big).unwrap_err().contains("limit"));
        let link = t.path().join("link.hb");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(read_record_bytes(&link).unwrap_err().contains("symlink"));
        let fifo = t.path().join("fifo.hb");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read_record_bytes(&fifo).unwrap_err().contains("regular"));
        assert_eq!(read_record_bytes(&t.path().join("none.hb")), Ok(None));
    }
}
