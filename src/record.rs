//! The `.hb` record: one line of compact JSON, keys in DESIGN.md's order.
//!
//! One struct serves the writer and every reader. The seed's three keys are required; the
//! rest are `Option`s (serde reads a missing one as `None`) so that `ps`/`wait` can still read
//! records from the shell baseline sidecar.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Alive,
    Dead,
    Unwatched,
}

/// How the runtime ended, decoded from a raw wait status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub core: bool,
    /// Killed by the kernel's OOM killer: SIGKILL while the OOM-kill counter of the target's
    /// own memory cgroup rose (`watcher/oom.rs`). Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom: bool,
}

impl ExitInfo {
    /// Decodes a `wait(2)`-style status word (what PIDFD_INFO_EXIT and waitpid report).
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitInfo {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
                core: libc::WCOREDUMP(status),
                oom: false,
            }
        } else {
            ExitInfo {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
                core: false,
                oom: false,
            }
        }
    }

    /// The shell convention: the code, or 128 + signal.
    pub fn shell_status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

/// `code 7` or `signal 9`, as `wait` prints it and `ps` starts its EXIT column.
impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    pub ts: u64,
    pub pid: i32,
    pub status: Status,
    pub ts_ms: Option<u64>,
    pub seq: Option<u64>,
    pub interval: Option<f64>,
    /// The writer's strings are its own constants, borrowed: a watcher builds its records
    /// without allocating (its death path allocates nothing). Read ones are owned.
    pub backend: Option<Cow<'static, str>>,
    pub watcher_pid: Option<i32>,
    pub start_time: Option<u64>,
    pub exit: Option<ExitInfo>,
    pub died_ms: Option<u64>,
    /// Not in the seed: the watcher's own start time, so that readers can tell the watcher
    /// from a process that later reused its PID.
    pub watcher_start_time: Option<u64>,
    /// The writer's boot (`/proc/sys/kernel/random/boot_id`): `boottime_ms` only compares
    /// with a clock of the same boot.
    pub boot_id: Option<Cow<'static, str>>,
    /// CLOCK_BOOTTIME in ms at this write: a reader on the same boot judges the record's age
    /// by it, so that no wall-clock step on either side changes a verdict.
    pub boottime_ms: Option<u64>,
    /// The inode of the writer's PID namespace (`/proc/self/ns/pid`): in any other namespace
    /// the record's PIDs name other processes, or none.
    pub pidns: Option<u64>,
    /// Not in the seed: on a `dead` record whose `exit` is null, why the status cannot be
    /// known (`reaped`, `hidden`); absent otherwise. Not in [`RECORD_KEYS`]: rarely written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_unknown: Option<Cow<'static, str>>,
    /// Not in the seed: the evidence of progress (`progress.rs`), absent when the watcher
    /// samples none. Not in [`RECORD_KEYS`]: a watcher with sampling off never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

mod check;
pub mod progress;
pub use progress::{Claim, Progress};

/// Records larger than this are not records: readers refuse them without reading them all.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Room for any record a watcher writes: every number at its widest, the longest boot id a
/// record may carry, the longest `exit` and `exit_unknown` (about 700 bytes in all), and the
/// widest `progress` (its `STATUS=` at most twice [`progress::STATUS_MAX`] once escaped).
pub const LINE_CAPACITY: usize = 2048;

impl Record {
    #[cfg(test)]
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(LINE_CAPACITY);
        self.write_line(&mut v);
        v
    }

    /// Replaces `line` with this record's line. Within [`LINE_CAPACITY`] (reserved once by
    /// the writer), this allocates nothing.
    pub fn write_line(&self, line: &mut Vec<u8>) {
        line.clear();
        serde_json::to_writer(&mut *line, self).expect("record serializes");
        line.push(b'\n');
    }

    /// Milliseconds of the last write: `ts_ms`, or `ts` for seed-format records.
    pub fn written_ms(&self) -> u64 {
        self.ts_ms.unwrap_or(self.ts.saturating_mul(1000))
    }
}

/// The record and its keys in the file's order (for `ps --json`, which passes unknown keys
/// through), from one pass over the bytes: the typed record is read from the parsed keys, not
/// parsed again.
pub fn parse(bytes: &[u8]) -> Result<(Record, Vec<(Key, Value)>), String> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(format!("record is over {MAX_RECORD_BYTES} bytes"));
    }
    std::str::from_utf8(bytes).map_err(|e| format!("record is not UTF-8: {e}"))?;
    // serde_json's default recursion limit (128) bounds deep nesting.
    let fields = serde_json::from_slice::<Ordered>(bytes)
        .map_err(|e| e.to_string())?
        .0;
    let entries = fields.iter().map(|(k, v)| (&**k, v));
    let record = Record::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries))
        .map_err(|e| culprit(&fields).unwrap_or_else(|| e.to_string()))?;
    Ok((record, fields))
}

/// Which key made a record fail to deserialize, and why: serde's message ("invalid value:
/// integer `-1`, expected u64") does not name it. Each of pidbeat's keys is tried alone, in a
/// record that is otherwise minimal and valid. Only on the error path.
fn culprit(fields: &[(Key, Value)]) -> Option<String> {
    let base = [
        ("ts", Value::from(0)),
        ("pid", Value::from(1)),
        ("status", Value::from("dead")),
    ];
    fields.iter().find_map(|(k, v)| {
        if !RECORD_KEYS.contains(&&**k) {
            return None;
        }
        let mut entries: Vec<(&str, &Value)> = base
            .iter()
            .filter(|(b, _)| b != k)
            .map(|(b, v)| (*b, v))
            .collect();
        entries.push((k, v));
        let alone = MapDeserializer::<_, serde_json::Error>::new(entries.into_iter());
        Record::deserialize(alone)
            .err()
            .map(|e| format!("`{k}`: {e}"))
    })
}

/// A record's key. pidbeat's own keys borrow a static name: a fleet's records repeat them
/// tens of thousands of times.
pub type Key = Cow<'static, str>;

/// [`Record`]'s keys in the order it writes them (a test holds the two together).
pub const RECORD_KEYS: [&str; 15] = [
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
    "boot_id",
    "boottime_ms",
    "pidns",
];

/// A JSON object's entries in the order the file has them (serde_json's `Map` sorts them,
/// since `preserve_order` is off: it cost `ps` over 10,000 records 5-15 % more CPU).
/// Objects nested in the values are sorted.
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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_wait_status() {
        assert_eq!(
            ExitInfo::from_wait_status(7 << 8),
            ExitInfo {
                code: Some(7),
                signal: None,
                core: false,
                oom: false
            }
        );
        assert_eq!(
            ExitInfo::from_wait_status(9),
            ExitInfo {
                code: None,
                signal: Some(9),
                core: false,
                oom: false
            }
        );
        assert!(ExitInfo::from_wait_status(0x80 | 11).core);
        assert_eq!(ExitInfo::from_wait_status(9).shell_status(), 137);
    }

    #[test]
    fn compact_line_in_contract_order() {
        let r = Record {
            ts: 1,
            pid: 2,
            status: Status::Alive,
            ts_ms: Some(1000),
            seq: Some(1),
            interval: Some(15.0),
            backend: Some("pidfd".into()),
            watcher_pid: Some(3),
            start_time: Some(4),
            exit: None,
            died_ms: None,
            watcher_start_time: Some(5),
            boot_id: Some("b".into()),
            boottime_ms: Some(6),
            pidns: Some(7),
            exit_unknown: None,
            progress: None,
        };
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"ts\":1,\"pid\":2,\"status\":\"alive\",\"ts_ms\":1000,\"seq\":1,\"interval\":15.0,\
             \"backend\":\"pidfd\",\"watcher_pid\":3,\"start_time\":4,\"exit\":null,\
             \"died_ms\":null,\"watcher_start_time\":5,\"boot_id\":\"b\",\"boottime_ms\":6,\
             \"pidns\":7}\n"
        );
        let (parsed, fields) = parse(line.as_bytes()).unwrap();
        assert_eq!(parsed, r);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, RECORD_KEYS, "RECORD_KEYS is the order to_line writes");
    }

    #[test]
    fn the_widest_record_fits_the_line_capacity() {
        let r = Record {
            ts: u64::MAX,
            pid: i32::MIN,
            status: Status::Unwatched,
            ts_ms: Some(u64::MAX),
            seq: Some(u64::MAX),
            interval: Some(-f64::MIN_POSITIVE),
            backend: Some("pidfd".into()),
            watcher_pid: Some(i32::MIN),
            start_time: Some(u64::MAX),
            exit: Some(ExitInfo {
                code: Some(i32::MIN),
                signal: Some(i32::MIN),
                core: false,
                oom: true,
            }),
            died_ms: Some(u64::MAX),
            watcher_start_time: Some(u64::MAX),
            boot_id: Some("f".repeat(64).into()),
            boottime_ms: Some(u64::MAX),
            pidns: Some(u64::MAX),
            exit_unknown: Some("reaped".into()),
            progress: Some(Progress {
                cpu_ms: Some(u64::MAX),
                cpu_at_ms: Some(u64::MAX),
                cpu_since_ms: Some(u64::MAX),
                output_ms: Some(u64::MAX),
                input_ms: Some(u64::MAX),
                notify_ms: Some(u64::MAX),
                status_text: Some("\"".repeat(progress::STATUS_MAX)),
                claim: Some(Claim::Waiting),
                claim_ms: Some(u64::MAX),
                ready_ms: Some(u64::MAX),
                stopping_ms: Some(u64::MAX),
                watchdog_usec: Some(u64::MAX),
                watchdog_ms: Some(u64::MAX),
            }),
        };
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        r.write_line(&mut line);
        assert!(line.len() <= LINE_CAPACITY, "{}", line.len());
        assert_eq!(line.capacity(), LINE_CAPACITY, "no growth");
    }

    #[test]
    fn size_is_checked_before_utf8() {
        let e = parse(&vec![0xff; MAX_RECORD_BYTES + 1]).unwrap_err();
        assert!(e.contains("over"), "{e}");
    }

    #[test]
    fn seed_records_parse() {
        let (r, _) = parse(br#"{"ts":5,"pid":9,"status":"alive"}"#).unwrap();
        assert_eq!(r.written_ms(), 5000);
        assert!(parse(b"{\"ts\":5").is_err());
        assert!(parse(br#"{"ts":5,"pid":9,"status":"zombie"}"#).is_err());
    }

    #[test]
    fn a_wrong_type_is_named_by_its_key() {
        let e = parse(br#"{"ts":1,"pid":2,"status":"alive","start_time":-1}"#).unwrap_err();
        assert!(e.starts_with("`start_time`: "), "{e}");
        let e = parse(br#"{"ts":1,"pid":2,"status":"alive","seq":1.5}"#).unwrap_err();
        assert!(e.starts_with("`seq`: "), "{e}");
        let e = parse(br#"{"pid":2,"status":"alive"}"#).unwrap_err();
        assert!(e.contains("missing field `ts`"), "{e}");
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

    /// The one-pass parse reads the typed record from parsed keys; it must accept and refuse
    /// exactly what serde_json reading the record directly would.
    #[test]
    fn one_pass_parse_agrees_with_serde_json() {
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
            match (parse(c), serde_json::from_slice::<Record>(c)) {
                (Ok((a, _)), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{text}: one pass {a:?}, serde_json {b:?}"),
            }
        }
    }
}
