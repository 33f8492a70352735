//! The `.hb` record: one line of compact JSON, keys in DESIGN.md's order.
//!
//! One struct serves the writer and every reader. The seed's three keys are required; the
//! rest default so that `ps`/`wait` can still read records from the shell baseline sidecar.

use serde::{Deserialize, Serialize};

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
}

impl ExitInfo {
    /// Decodes a `wait(2)`-style status word (what PIDFD_INFO_EXIT and waitpid report).
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitInfo {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
                core: libc::WCOREDUMP(status),
            }
        } else {
            ExitInfo {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
                core: false,
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
impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    #[serde(default)]
    pub ts_ms: Option<u64>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub interval: Option<f64>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub watcher_pid: Option<i32>,
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    #[serde(default)]
    pub died_ms: Option<u64>,
    /// Not in the seed: the watcher's own start time, so that readers can tell the watcher
    /// from a process that later reused its PID.
    #[serde(default)]
    pub watcher_start_time: Option<u64>,
}

/// Records larger than this are not records: readers refuse them without reading them all.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

impl Record {
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("record serializes");
        v.push(b'\n');
        v
    }

    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(format!("record is over {MAX_RECORD_BYTES} bytes"));
        }
        // serde_json's default recursion limit (128) bounds deep nesting.
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Milliseconds of the last write: `ts_ms`, or `ts` for seed-format records.
    pub fn written_ms(&self) -> u64 {
        self.ts_ms.unwrap_or(self.ts.saturating_mul(1000))
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
                core: false
            }
        );
        assert_eq!(
            ExitInfo::from_wait_status(9),
            ExitInfo {
                code: None,
                signal: Some(9),
                core: false
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
        };
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"ts\":1,\"pid\":2,\"status\":\"alive\",\"ts_ms\":1000,\"seq\":1,\"interval\":15.0,\
             \"backend\":\"pidfd\",\"watcher_pid\":3,\"start_time\":4,\"exit\":null,\
             \"died_ms\":null,\"watcher_start_time\":5}\n"
        );
        assert_eq!(Record::parse(line.as_bytes()).unwrap(), r);
    }

    #[test]
    fn seed_records_parse() {
        let r = Record::parse(br#"{"ts":5,"pid":9,"status":"alive"}"#).unwrap();
        assert_eq!(r.written_ms(), 5000);
        assert!(Record::parse(b"{\"ts\":5").is_err());
        assert!(Record::parse(br#"{"ts":5,"pid":9,"status":"zombie"}"#).is_err());
    }
}
