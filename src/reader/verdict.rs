//! Judging one agent from its record (DESIGN.md's `ps` states). `ps` and `wait` both judge
//! through here, so both commands give one answer for the same agent.
//!
//! `lost` is only ever a proven verdict: the record says alive, and either the watcher is
//! gone (its flock is free, or its PID names no process or another incarnation) or the target
//! is gone while the watcher cannot write (it is stopped, or unknown). A target that died
//! under a running watcher is not yet lost: that watcher is about to write `dead`, so the
//! verdict is marked [`Unsettled::Dying`] and the caller gives it a short grace (see
//! `settle.rs`). Which `/proc` lines a judgement rests on, and when it is confirmed, is
//! `batch.rs`'s business.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::activity::{self, Judged, Thresholds};
use crate::clock::{self, Age};
use crate::incarnation::{Incarnation, Liveness};
use crate::pidns;
use crate::procfs::Stat;
use crate::record::{self, Key, Record, Status};
use crate::rundir::{self, EXIT_GRACE, Interval};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Alive,
    /// Alive, but the agent announced a watchdog and let it run out (`activity::hung`).
    Hung,
    Stale,
    Dead,
    Lost,
    Unwatched,
    Corrupt,
    /// Only from etcd (`ps --etcd`): the bridge published alive/stale, and its host's lease
    /// has expired since (DESIGN.md, "Multi-host").
    Unreachable,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Alive,
        State::Hung,
        State::Stale,
        State::Dead,
        State::Lost,
        State::Unwatched,
        State::Corrupt,
        State::Unreachable,
    ];

    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Hung => "hung",
            State::Stale => "stale",
            State::Dead => "dead",
            State::Lost => "lost",
            State::Unwatched => "unwatched",
            State::Corrupt => "corrupt",
            State::Unreachable => "unreachable",
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
    /// the record with the status within its grace (`rundir::EXIT_GRACE`).
    ExitPending,
}

impl Unsettled {
    pub fn grace(self) -> Duration {
        match self {
            // pidfd watchers write within milliseconds and poll ones within 250 ms; the rest
            // is room for the durable write's fsyncs on a busy disk.
            Unsettled::Dying => Duration::from_secs(1),
            Unsettled::ExitPending => EXIT_GRACE + Duration::from_millis(500),
        }
    }
}

/// What a reader concludes about one agent.
#[derive(Debug, Clone)]
pub struct AgentVerdict {
    pub agent: String,
    pub state: State,
    /// None when corrupt.
    pub record: Option<Record>,
    /// The record's own keys and values, in the file's order (for `--json`).
    pub fields: Vec<(Key, Value)>,
    /// Why the record is corrupt.
    pub error: Option<String>,
    /// The record could not be read at all (not: read, and found wrong).
    pub unreadable: bool,
    /// Milliseconds since the record was written (see `clock::age`); None when corrupt or
    /// unknown (a wall-clock `ts` in the future).
    pub age_ms: Option<u64>,
    /// The record's PIDs are of another PID namespace (a container's): not this reader's.
    pub foreign_pids: bool,
    pub unsettled: Option<Unsettled>,
    /// What a live agent does, judged with the default thresholds (`rejudge_activity` applies
    /// a command's own); `None` for ended agents and records without `progress`.
    pub activity: Option<Judged>,
}

impl AgentVerdict {
    pub fn corrupt(agent: &str, error: String) -> AgentVerdict {
        AgentVerdict {
            agent: agent.to_owned(),
            state: State::Corrupt,
            record: None,
            fields: Vec::new(),
            error: Some(error),
            unreadable: false,
            age_ms: None,
            foreign_pids: false,
            unsettled: None,
            activity: None,
        }
    }

    /// A record that exists but cannot be read (EACCES, EIO …): corrupt, and an error of the
    /// command that names the agent.
    pub fn unreadable(agent: &str, error: String) -> AgentVerdict {
        AgentVerdict {
            unreadable: true,
            ..AgentVerdict::corrupt(agent, error)
        }
    }

    /// Ends the agent without its record saying so, or may soon be overturned: worth a
    /// second look before it is reported.
    pub fn needs_confirming(&self) -> bool {
        self.state == State::Lost || self.unsettled.is_some()
    }

    /// Is the target running under its watcher (alive, hung, or stale)?
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Alive | State::Hung | State::Stale)
    }

    /// Judges the activity again with `t` (see `activity.rs`).
    pub fn rejudge_activity(&mut self, t: &Thresholds) {
        self.activity = activity_of(self.state, self.record.as_ref(), self.age_ms, t);
    }
}

fn activity_of(
    state: State,
    record: Option<&Record>,
    age_ms: Option<u64>,
    t: &Thresholds,
) -> Option<Judged> {
    let r = record.filter(|_| matches!(state, State::Alive | State::Hung | State::Stale))?;
    // A hostile record's times may be anything: saturate, never overflow.
    activity::judge(r, r.written_ms().saturating_add(age_ms.unwrap_or(0)), t)
}

/// What is known of the process that writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Proven gone: nobody will write this record again.
    Gone,
    /// Alive but SIGSTOPped: it holds its lock yet cannot write.
    Stopped,
    Running,
    /// The record names no watcher and there is no lock: nothing can be proven.
    Unknown,
}

/// Where a judgement gets `/proc/PID/stat` lines (`None`: no such process, or unreadable).
pub trait ProcStats {
    fn stat(&mut self, pid: i32) -> Option<Stat>;
}

/// Judges the record `bytes` of `agent` in the run dir `dir`.
pub fn judge(dir: &Path, agent: &str, bytes: &[u8], procs: &mut impl ProcStats) -> AgentVerdict {
    let (record, fields) = match record::parse(bytes) {
        Ok(p) => p,
        Err(e) => return AgentVerdict::corrupt(agent, e),
    };
    let foreign = pidns::is_foreign(record.pidns);
    // A foreign namespace's `pid_max` is not ours to read; the kernel's limit bounds all.
    let pid_max = match foreign {
        true => pidns::PID_MAX_LIMIT,
        false => pidns::pid_max(),
    };
    // Here the refusals become the verdict's text (`ps` shows it, `publish` puts it).
    let age = match record.check(pid_max) {
        Ok(()) => clock::age(&record).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let age = match age {
        Ok(age) => age,
        Err(e) => return AgentVerdict::corrupt(agent, e),
    };
    let (state, unsettled) = match record.status {
        Status::Dead => (
            State::Dead,
            exit_pending(dir, agent, &record, foreign, procs),
        ),
        Status::Unwatched => (State::Unwatched, None),
        Status::Alive => match judge_alive(dir, agent, &record, age, foreign, procs) {
            (State::Alive, None) if activity::hung(&record) => (State::Hung, None),
            judged => judged,
        },
    };
    let activity = activity_of(state, Some(&record), age.ms(), &Thresholds::DEFAULT);
    AgentVerdict {
        agent: agent.to_owned(),
        state,
        record: Some(record),
        fields,
        error: None,
        unreadable: false,
        age_ms: age.ms(),
        foreign_pids: foreign,
        unsettled,
        activity,
    }
}

/// `alive` needs proof that a watcher keeps the record: a live watcher holds the lock, or,
/// without a lock file, the record's `watcher_pid` and `watcher_start_time` name a live
/// process. And it needs a beat on time; an age that cannot be known (a wall-clock `ts` in
/// the future) proves nothing, so then a running watcher decides. A record from another PID
/// namespace is judged by its lock and its age alone: its PIDs mean nothing here.
fn judge_alive(
    dir: &Path,
    agent: &str,
    record: &Record,
    age: Age,
    foreign: bool,
    procs: &mut impl ProcStats,
) -> (State, Option<Unsettled>) {
    let writer = match foreign {
        true => match rundir::lock_held(dir, agent) {
            Some(true) => WriterState::Running,
            Some(false) => WriterState::Gone,
            None => WriterState::Unknown,
        },
        false => writer_state(dir, agent, record, procs),
    };
    let on_time = match age.ms() {
        Some(ms) => written_on_time(record, ms),
        None => writer == WriterState::Running,
    };
    let as_written = match writer {
        WriterState::Running | WriterState::Stopped if on_time => State::Alive,
        WriterState::Gone => return (State::Lost, None),
        _ => State::Stale,
    };
    if foreign {
        // The watcher writes `dead` the moment its target dies; if it cannot (stopped), its
        // beats stop too and the age tells.
        return (as_written, None);
    }
    match (writer, target_running(record, procs)) {
        (_, true) => (as_written, None),
        (WriterState::Running, false) => (as_written, Some(Unsettled::Dying)),
        (_, false) => (State::Lost, None),
    }
}

/// DESIGN.md: alive while written within 2 × interval + 1 s.
fn written_on_time(record: &Record, age_ms: u64) -> bool {
    let interval = record
        .interval
        .filter(|i| i.is_finite() && *i > 0.0)
        .unwrap_or(Interval::DEFAULT.secs);
    age_ms as f64 <= (2.0 * interval + 1.0) * 1000.0
}

/// Is the record's target incarnation still running? Without a `start_time` (seed-format
/// records) whoever has the PID now counts.
fn target_running(record: &Record, procs: &mut impl ProcStats) -> bool {
    running_incarnation(record.pid, record.start_time, procs).is_some()
}

/// The `/proc` line of the incarnation `pid` + `start_time` if it still runs (zombies count
/// as gone); without a start time, of whoever has the PID now.
fn running_incarnation(
    pid: i32,
    start_time: Option<u64>,
    procs: &mut impl ProcStats,
) -> Option<Stat> {
    let st = procs.stat(pid)?;
    (Incarnation::named(pid, start_time).judge(&st) == Liveness::Alive).then_some(st)
}

/// Who writes this record? The per-agent flock is the proof for pidbeat's watchers (the
/// kernel frees it the instant the watcher dies). Records without a lock file (the shell
/// sidecar) or not written by pidbeat fall back to the `watcher_pid` they name.
fn writer_state(
    dir: &Path,
    agent: &str,
    record: &Record,
    procs: &mut impl ProcStats,
) -> WriterState {
    let lock = rundir::lock_held(dir, agent);
    // A pidbeat watcher holds this lock for its whole life, so a free lock proves it gone.
    // The shell sidecar takes no lock: a free lock file beside its record is an earlier
    // watcher's, and its own `watcher_pid` + `watcher_start_time` decide below.
    if lock == Some(false)
        && record.watcher_start_time.is_some()
        && record.backend.as_deref() != Some("shell")
    {
        return WriterState::Gone;
    }
    let writer = record
        .watcher_pid
        .map(|pid| running_incarnation(pid, record.watcher_start_time, procs));
    let stopped = |st: &Option<Stat>| st.is_some_and(|st| matches!(st.state, b'T' | b't'));
    match (lock, writer) {
        (Some(true), Some(st)) if stopped(&st) => WriterState::Stopped,
        // The holder may also be a newer watcher that has not written yet: it will.
        (Some(true), _) => WriterState::Running,
        (_, None) => WriterState::Unknown,
        (_, Some(None)) => WriterState::Gone,
        // A PID alone may be anyone's by now: only with its start time is it the writer.
        (_, Some(_)) if record.watcher_start_time.is_none() => WriterState::Unknown,
        (_, Some(st)) if stopped(&st) => WriterState::Stopped,
        (_, Some(_)) => WriterState::Running,
    }
}

/// Only a `dead` record without its exit status can still change (the watcher rewrites
/// it within its grace); the cheap checks come first. `exit_unknown` is the watcher's final
/// word: the status will never come, so there is nothing to wait for.
fn exit_pending(
    dir: &Path,
    agent: &str,
    record: &Record,
    foreign: bool,
    procs: &mut impl ProcStats,
) -> Option<Unsettled> {
    if record.exit.is_some() || record.exit_unknown.is_some() {
        return None;
    }
    let held = || rundir::lock_held(dir, agent) == Some(true);
    let pending = match foreign {
        // Only the lock crosses namespaces: while it is held, the watcher may still write.
        true => held(),
        false => {
            let pid = record.watcher_pid?;
            held() && running_incarnation(pid, record.watcher_start_time, procs).is_some()
        }
    };
    pending.then_some(Unsettled::ExitPending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_the_interval() {
        let (mut r, _) = record::parse(br#"{"ts":0,"pid":1,"status":"alive"}"#).unwrap();
        assert!(written_on_time(&r, 31_000));
        assert!(!written_on_time(&r, 31_001));
        r.interval = Some(0.1);
        assert!(written_on_time(&r, 1_200));
        assert!(!written_on_time(&r, 1_201));
        r.interval = Some(-3.0);
        assert!(written_on_time(&r, 31_000));
    }

    struct NoProcs;
    impl ProcStats for NoProcs {
        fn stat(&mut self, _: i32) -> Option<Stat> {
            None
        }
    }

    /// While the lock is held a dead record without `exit` waits for it, unless the watcher
    /// said the status will never come.
    #[test]
    fn exit_unknown_is_not_pending() {
        let dir = tempfile::tempdir().unwrap();
        let _hold = rundir::lock_exclusive(dir.path(), "a", Duration::ZERO)
            .unwrap()
            .unwrap();
        let line = br#"{"ts":1,"pid":2,"status":"dead","exit":null}"#;
        let (mut r, _) = record::parse(line).unwrap();
        let pending = |r: &Record| exit_pending(dir.path(), "a", r, true, &mut NoProcs);
        assert_eq!(pending(&r), Some(Unsettled::ExitPending));
        r.exit_unknown = Some("reaped".into());
        assert_eq!(pending(&r), None);
    }
}
