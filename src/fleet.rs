//! Reading the run dir's records and judging each agent's state (DESIGN.md's `ps` states).
//! Shared by `ps` and `wait`, so both commands give one answer for the same agent.
//!
//! `lost` is only ever a proven verdict: the record says alive, and either the watcher is
//! gone (its flock is free, or its PID names no process or another incarnation) or the target
//! is gone while the watcher cannot write (it is stopped, or unknown). A target that died
//! under a running watcher is not yet lost: that watcher is about to write `dead`, so the
//! entry is marked [`Unsettled::Dying`] and the caller gives it a short grace (see
//! `settle.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::de::value::MapDeserializer;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
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
    /// Only from etcd (`ps --etcd`): the bridge published alive/stale, and its host's lease
    /// has expired since (DESIGN.md, "Multi-host").
    Unreachable,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Alive,
        State::Stale,
        State::Dead,
        State::Lost,
        State::Unwatched,
        State::Corrupt,
        State::Unreachable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Stale => "stale",
            State::Dead => "dead",
            State::Lost => "lost",
            State::Unwatched => "unwatched",
            State::Corrupt => "corrupt",
            State::Unreachable => "unreachable",
        }
    }
}

impl State {
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
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
    pub fields: Vec<(Key, Value)>,
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

/// The agents with a record in `dir`, sorted. Files whose stem is not a valid agent name are
/// not records of ours and are skipped. NotFound means the run dir itself is missing.
pub fn list_agents(dir: &Path) -> io::Result<Vec<String>> {
    let mut agents = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let name = ent?.file_name();
        let Some(agent) = name.to_str().and_then(rundir::agent_of_record) else {
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
/// read), and a bounded read (a huge or sparse file is refused from its size). Reads into
/// `buf` (at least `MAX_RECORD_BYTES + 1` long, reused from record to record), relative to
/// `dirfd` when given; returns the record's length, `None` if there is no such record. A record
/// takes one read: more only if the kernel returns less than `fstat` promised. The one byte
/// over the limit tells a file that grew after `fstat` from one that fits.
fn read_record_at(
    dirfd: Option<&OwnedFd>,
    path: &Path,
    buf: &mut [u8],
) -> Result<Option<usize>, String> {
    debug_assert!(buf.len() > MAX_RECORD_BYTES);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opened = match dirfd {
        Some(d) => rfs::openat(d, path, flags | OFlags::NOCTTY, Mode::empty()),
        None => rfs::open(path, flags | OFlags::NOCTTY, Mode::empty()),
    };
    let fd = match opened {
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
    let buf = &mut buf[..=MAX_RECORD_BYTES];
    let mut len = 0;
    loop {
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot read record: {e}")),
        };
        len += n;
        if len > MAX_RECORD_BYTES {
            return Err(format!("record is over the {MAX_RECORD_BYTES}-byte limit"));
        }
        // A size of 0 may also be a file that does not know its size: read it to the end.
        if n == 0 || (st.st_size > 0 && len as u64 >= st.st_size as u64) {
            return Ok(Some(len));
        }
    }
}

/// The states of `agents` now, in their order (`None`: no record). A large fleet is split
/// over the CPUs, a [`Reader`] each: the work is mostly the kernel opening and reading small
/// files, which runs in parallel.
pub fn classify_all(dir: &Path, agents: &[String]) -> Vec<Option<Entry>> {
    /// Below this many agents per thread, a thread costs more than it saves.
    const PER_THREAD: usize = 1000;
    let threads = match agents.len() / PER_THREAD {
        0 | 1 => 1,
        most => std::thread::available_parallelism().map_or(1, |n| n.get().min(most)),
    };
    let classify_part = |part: &[String]| {
        let mut reader = Reader::new(dir);
        part.iter().map(|a| reader.classify(a)).collect::<Vec<_>>()
    };
    if threads == 1 {
        return classify_part(agents);
    }
    let mut parts = agents.chunks(agents.len().div_ceil(threads));
    // This thread takes the first part while the others run.
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || classify_part(part))
                    .map_err(|_| part)
            })
            .collect();
        let mut all = classify_part(first);
        for other in others {
            all.extend(match other {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread to be had (a process limit): do that part here.
                Err(part) => classify_part(part),
            });
        }
        all
    })
}

/// One look at a run dir: judges agents one after another, sharing what they have in common.
/// The dir is opened once (records are opened relative to it), the record buffer is reused,
/// and each PID's `/proc/PID/stat` is read once per look (a fleet's watchers and targets
/// often recur). A cached line is only trusted to keep an agent alive: every verdict that
/// would make it `lost` or dying is confirmed with fresh reads (see [`Reader::classify`]).
/// Make a new one for each look.
pub struct Reader<'a> {
    dir: &'a Path,
    dirfd: Option<OwnedFd>,
    buf: Vec<u8>,
    stats: HashMap<i32, Option<Stat>>,
    /// Read /proc afresh instead of from `stats` (confirming a verdict).
    fresh: bool,
    /// Whether the judgement under way used a cached `/proc` line.
    used_cache: bool,
}

impl<'a> Reader<'a> {
    pub fn new(dir: &'a Path) -> Reader<'a> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Reader {
            dir,
            // Without it (a missing dir, say), records are opened by path and fail as before.
            dirfd: rfs::open(dir, flags, Mode::empty()).ok(),
            buf: vec![0; MAX_RECORD_BYTES + 1],
            stats: HashMap::new(),
            fresh: false,
            used_cache: false,
        }
    }

    /// The state of one agent now, or `None` if it has no record. Reads the record and judges
    /// it. A verdict that would end the agent without the record saying so (`lost`) or that
    /// the next moments may overturn (dying, a pending exit) is confirmed: the record is read
    /// again and, if the watcher wrote in between (say, its final `dead` just before exiting
    /// and freeing its lock), judged again on the newer record, so a clean death is never
    /// mistaken for `lost`. A verdict that rests on a cached `/proc` line is judged again from
    /// fresh reads. Alive, stale, dead, unwatched and corrupt records are read once: they were
    /// true when judged.
    pub fn classify(&mut self, agent: &str) -> Option<Entry> {
        // Out of `self` while in use, so that judging (which takes `&mut self`) can borrow it.
        let mut buf = std::mem::take(&mut self.buf);
        let entry = self.classify_into(agent, &mut buf);
        self.buf = buf;
        self.fresh = false;
        entry
    }

    fn classify_into(&mut self, agent: &str, buf: &mut [u8]) -> Option<Entry> {
        let name = rundir::record_name(agent);
        let n = match self.read(&name, buf) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(e) => return Some(Entry::corrupt(agent, e)),
        };
        self.fresh = false;
        let mut entry = self.judge(agent, &buf[..n]);
        if !needs_confirming(&entry) {
            return Some(entry);
        }
        let mut bytes = buf[..n].to_vec();
        // Bounded: a watcher beating every millisecond must not keep us here.
        for _ in 0..3 {
            let again = match self.read(&name, buf) {
                Ok(Some(m)) => &buf[..m],
                Ok(None) => return None,
                Err(e) => return Some(Entry::corrupt(agent, e)),
            };
            if again == bytes && !self.used_cache {
                break;
            }
            bytes = again.to_vec();
            self.fresh = true;
            entry = self.judge(agent, &bytes);
            if !needs_confirming(&entry) {
                break;
            }
        }
        Some(entry)
    }

    fn read(&self, name: &str, buf: &mut [u8]) -> Result<Option<usize>, String> {
        match &self.dirfd {
            Some(d) => read_record_at(Some(d), Path::new(name), buf),
            None => read_record_at(None, &self.dir.join(name), buf),
        }
    }

    fn judge(&mut self, agent: &str, bytes: &[u8]) -> Entry {
        self.used_cache = false;
        let (record, fields) = match parse(bytes) {
            Ok(p) => p,
            Err(e) => return Entry::corrupt(agent, e),
        };
        let age_ms = now_ms().saturating_sub(record.written_ms());
        let (state, unsettled) = match record.status {
            Status::Dead => (State::Dead, self.exit_pending(agent, &record)),
            Status::Unwatched => (State::Unwatched, None),
            Status::Alive => self.judge_alive(agent, &record, age_ms),
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

    fn judge_alive(
        &mut self,
        agent: &str,
        record: &Record,
        age_ms: u64,
    ) -> (State, Option<Unsettled>) {
        let as_written = if is_fresh(record, age_ms) {
            State::Alive
        } else {
            State::Stale
        };
        let watcher = self.watcher(agent, record);
        if watcher == Watcher::Gone {
            return (State::Lost, None);
        }
        match (watcher, self.target_alive(record)) {
            (_, true) => (as_written, None),
            (Watcher::Running, false) => (as_written, Some(Unsettled::Dying)),
            (_, false) => (State::Lost, None),
        }
    }

    /// `/proc/PID/stat`, from this look's cache unless confirming.
    fn stat(&mut self, pid: i32) -> Option<Stat> {
        if !self.fresh {
            if let Some(&st) = self.stats.get(&pid) {
                self.used_cache = true;
                return st;
            }
        }
        let st = procfs::read_stat(pid).ok();
        self.stats.insert(pid, st);
        st
    }

    /// [`target_alive`], through the cache.
    fn target_alive(&mut self, record: &Record) -> bool {
        let pid = record.pid;
        let Some(st) = self.stat(pid) else {
            return false;
        };
        let start_time = record.start_time.unwrap_or(st.start_time);
        procfs::liveness(pid, start_time, st) == Liveness::Alive
    }

    /// The process `pid` if it still runs (zombies count as gone) and, when `start_time` is
    /// known, is still the same incarnation.
    fn running_incarnation(&mut self, pid: i32, start_time: Option<u64>) -> Option<Stat> {
        let st = self.stat(pid)?;
        if start_time.is_some_and(|s| s != st.start_time) {
            return None;
        }
        (procfs::liveness(pid, st.start_time, st) == Liveness::Alive).then_some(st)
    }

    /// Who writes this record? The per-agent flock is the proof for pidbeat's watchers (the
    /// kernel frees it the instant the watcher dies). Records without a lock file (the shell
    /// sidecar) or not written by pidbeat fall back to the `watcher_pid` they name.
    fn watcher(&mut self, agent: &str, record: &Record) -> Watcher {
        let lock = rundir::lock_held(self.dir, agent);
        // `watcher_start_time` is pidbeat's own key: such a writer always held this lock.
        if lock == Some(false) && record.watcher_start_time.is_some() {
            return Watcher::Gone;
        }
        let writer = record
            .watcher_pid
            .map(|pid| self.running_incarnation(pid, record.watcher_start_time));
        let stopped = |st: &Option<Stat>| st.is_some_and(|st| matches!(st.state, b'T' | b't'));
        match (lock, writer) {
            (Some(true), Some(st)) if stopped(&st) => Watcher::Stopped,
            // The holder may also be a newer watcher that has not written yet: it will.
            (Some(true), _) => Watcher::Running,
            (_, None) => Watcher::Unknown,
            (_, Some(None)) => Watcher::Gone,
            (_, Some(st)) if stopped(&st) => Watcher::Stopped,
            (_, Some(_)) => Watcher::Running,
        }
    }

    /// Only a `dead` record without its exit status can still change (the watcher rewrites
    /// it within its grace); the cheap checks come first.
    fn exit_pending(&mut self, agent: &str, record: &Record) -> Option<Unsettled> {
        let pid = record.watcher_pid.filter(|_| record.exit.is_none())?;
        let pending = rundir::lock_held(self.dir, agent) == Some(true)
            && self
                .running_incarnation(pid, record.watcher_start_time)
                .is_some();
        pending.then_some(Unsettled::ExitPending)
    }
}

/// Verdicts that end an agent without its record saying so, or that may soon be overturned.
fn needs_confirming(entry: &Entry) -> bool {
    entry.state == State::Lost || entry.unsettled.is_some()
}

/// The record and its keys in order, from one pass over the bytes: the typed record is read
/// from the parsed keys, not parsed again.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Record, Vec<(Key, Value)>), String> {
    std::str::from_utf8(bytes).map_err(|e| format!("record is not UTF-8: {e}"))?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("record is over {MAX_RECORD_BYTES} bytes"));
    }
    // serde_json's default recursion limit (128) bounds deep nesting.
    let fields = serde_json::from_slice::<Ordered>(bytes)
        .map_err(|e| e.to_string())?
        .0;
    let entries = fields.iter().map(|(k, v)| (&**k, v));
    let record = Record::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries))
        .map_err(|e| e.to_string())?;
    Ok((record, fields))
}

/// DESIGN.md: alive while written within 2 × interval + 1 s.
pub fn is_fresh(record: &Record, age_ms: u64) -> bool {
    let interval = record
        .interval
        .filter(|i| i.is_finite() && *i > 0.0)
        .unwrap_or(15.0);
    age_ms as f64 <= (2.0 * interval + 1.0) * 1000.0
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

/// A record's key. pidbeat's own keys borrow a static name: a fleet's records repeat them
/// tens of thousands of times.
pub type Key = Cow<'static, str>;

const RECORD_KEYS: [&str; 12] = [
    "ts",
    "pid",
    "status",
    "ts_ms",
    "seq",
    "interval",
    "backend",
    "watcher_pid",
    "start_time",
    "exit",
    "died_ms",
    "watcher_start_time",
];

/// A JSON object's entries in the order the file has them (serde_json's `Map` sorts them,
/// since `preserve_order` is off).
struct Ordered(Vec<(Key, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                // Room for a pidbeat record's keys without growing.
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(RECORD_KEYS.len()));
                while let Some(k) = m.next_key_seed(KeySeed)? {
                    v.push((k, m.next_value()?));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
        Ok(match RECORD_KEYS.iter().find(|k| **k == s) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(s.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_record_bytes(path: &Path) -> Result<Option<Vec<u8>>, String> {
        let mut buf = vec![0; MAX_RECORD_BYTES + 1];
        Ok(read_record_at(None, path, &mut buf)?.map(|n| buf[..n].to_vec()))
    }

    #[test]
    fn keeps_key_order_and_refuses_junk() {
        let (_, fields) = parse(br#"{"ts":1,"pid":2,"status":"dead","zz":1,"aa":2}"#).unwrap();
        let keys: Vec<&str> = fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["ts", "pid", "status", "zz", "aa"]);
        assert!(parse(b"\xff\xfe").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(br#"{"ts":1,"pid":2,"status":"alive","ts":3}"#).is_err());
    }

    #[test]
    fn one_pass_parse_agrees_with_the_record_parser() {
        let cases: [&[u8]; 16] = [
            br#"{"ts":1,"pid":2,"status":"alive","ts_ms":1000,"seq":1,"interval":15.0,"backend":"pidfd","watcher_pid":3,"start_time":4,"exit":null,"died_ms":null,"watcher_start_time":5}"#,
            br#"{"ts":1,"pid":2,"status":"dead","exit":{"code":null,"signal":9,"core":false},"died_ms":7}"#,
            br#"{"ts":5,"pid":9,"status":"alive"}"#,
            br#" { "pid" : 9 , "status" : "unwatched" , "ts" : 5 , "x" : [1, {"y": null}] } "#,
            br#"{"ts":5,"pid":9,"status":"alive","interval":1}"#,
            br#"{"ts":5,"pid":9}"#,
            br#"{"ts":5,"pid":9,"status":"zombie"}"#,
            br#"{"ts":"5","pid":9,"status":"alive"}"#,
            br#"{"ts":5.0,"pid":9,"status":"alive"}"#,
            br#"{"ts":-5,"pid":9,"status":"alive"}"#,
            br#"{"ts":5,"pid":3000000000,"status":"alive"}"#,
            br#"{"ts":5,"pid":9,"status":"alive","seq":null,"backend":7}"#,
            br#"{"ts":5,"pid":9,"status":"dead","exit":{"code":1}}"#,
            br#"{"ts":5,"pid":9,"status":"dead","status":"alive"}"#,
            br#"[1,2,3]"#,
            br#"{"ts":5,"pid":9,"status":"alive"} trailing"#,
        ];
        for c in cases {
            let text = String::from_utf8_lossy(c);
            match (parse(c), Record::parse(c)) {
                (Ok((a, _)), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{text}: one pass {a:?}, record parser {b:?}"),
            }
        }
    }

    #[test]
    fn a_cached_proc_line_never_makes_an_agent_lost() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let start = procfs::read_stat(me).unwrap().start_time;
        let line = format!(
            r#"{{"ts":{},"pid":{me},"status":"alive","ts_ms":{},"interval":15.0,"watcher_pid":{me},"start_time":{start},"watcher_start_time":{start}}}"#,
            now_ms() / 1000,
            now_ms()
        );
        std::fs::write(t.path().join("a.hb"), line).unwrap();
        let mut reader = Reader::new(t.path());
        // As if this PID had been seen gone earlier in the same look.
        reader.stats.insert(me, None);
        let e = reader.classify("a").unwrap();
        assert_eq!((e.state, e.unsettled), (State::Alive, None));
        // The fresh line replaced the stale one.
        assert!(reader.stats[&me].is_some());
        assert_eq!(reader.classify("b").map(|e| e.state), None);
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
