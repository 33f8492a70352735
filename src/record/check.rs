//! [`Record::check`]: the range checks a parsed record passes before any verdict is judged.

use std::fmt;

use super::{Record, Status};
use crate::rundir::{Interval, IntervalError};

impl Record {
    /// Refuses values no honest writer can write: a record is untrusted input, and a value
    /// out of range would otherwise be judged as if it meant something. `pid_max` bounds the
    /// PIDs (the reader's `/proc/sys/kernel/pid_max`, or the kernel's limit for a record from
    /// another PID namespace). Types (integers, no negatives) were already checked by serde.
    pub fn check(&self, pid_max: i32) -> Result<(), CheckError> {
        // PIDs wrap before `pid_max`: the highest is one less.
        for (what, pid) in [("pid", Some(self.pid)), ("watcher_pid", self.watcher_pid)] {
            if let Some(pid) = pid.filter(|p| !(1..pid_max).contains(p)) {
                return Err(CheckError::Pid { what, pid, pid_max });
            }
        }
        if self.seq == Some(0) {
            return Err(CheckError::SeqZero);
        }
        if let Some(i) = self.interval {
            Interval::new(i, &i.to_string()).map_err(CheckError::Interval)?;
        }
        if let Some(x) = self.exit {
            match (x.code, x.signal) {
                (Some(c), _) if !(0..=255).contains(&c) => return Err(CheckError::ExitCode(c)),
                (_, Some(s)) if !(1..=64).contains(&s) => return Err(CheckError::ExitSignal(s)),
                (Some(_), Some(_)) => return Err(CheckError::CodeAndSignal),
                _ => {}
            }
        }
        if let Some(id) = &self.boot_id {
            let ok = (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if !ok {
                return Err(CheckError::BootId);
            }
        }
        if self.pidns == Some(0) {
            return Err(CheckError::PidnsZero);
        }
        if let Some(why) = &self.exit_unknown {
            if !matches!(why.as_ref(), "reaped" | "hidden") {
                return Err(CheckError::ExitUnknown(why.to_string()));
            }
            if self.status != Status::Dead || self.exit.is_some() {
                return Err(CheckError::ExitUnknownSet);
            }
        }
        Ok(())
    }
}

/// A value in a record that no honest writer writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// `pid` or `watcher_pid` (`what`) is outside `1..pid_max`.
    Pid {
        what: &'static str,
        pid: i32,
        pid_max: i32,
    },
    SeqZero,
    Interval(IntervalError),
    ExitCode(i32),
    ExitSignal(i32),
    CodeAndSignal,
    BootId,
    PidnsZero,
    /// Neither `reaped` nor `hidden`.
    ExitUnknown(String),
    /// `exit_unknown` on a record that is not dead with `exit` null.
    ExitUnknownSet,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Pid { what, pid, pid_max } => {
                write!(f, "{what} {pid} is outside 1..{pid_max} (pid_max)")
            }
            CheckError::SeqZero => f.write_str("seq is 0 (a watcher's beats count from 1)"),
            CheckError::Interval(e) => write!(f, "record's {e}"),
            CheckError::ExitCode(c) => write!(f, "exit code {c} is outside 0..=255"),
            CheckError::ExitSignal(s) => write!(f, "exit signal {s} is outside 1..=64"),
            CheckError::CodeAndSignal => f.write_str("exit has both a code and a signal"),
            CheckError::BootId => f.write_str("boot_id is not a boot id (hex digits and dashes)"),
            CheckError::PidnsZero => f.write_str("pidns is 0 (no namespace has inode 0)"),
            CheckError::ExitUnknown(why) => {
                write!(f, "exit_unknown {why:?} is not reaped or hidden")
            }
            CheckError::ExitUnknownSet => {
                f.write_str("exit_unknown is set but the record is not dead with exit null")
            }
        }
    }
}

impl std::error::Error for CheckError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(extra: &str) -> Record {
        let line = format!(r#"{{"ts":1,"pid":2,"status":"dead","exit":null{extra}}}"#);
        super::super::parse(line.as_bytes()).unwrap().0
    }

    #[test]
    fn exit_unknown_only_says_why_a_dead_exit_is_missing() {
        for why in ["reaped", "hidden"] {
            dead(&format!(r#","exit_unknown":"{why}""#))
                .check(100)
                .unwrap();
        }
        let e = dead(r#","exit_unknown":"lost""#)
            .check(100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit_unknown \"lost\""), "{e}");
        let mut r = dead(r#","exit_unknown":"reaped""#);
        r.exit = Some(crate::record::ExitInfo::from_wait_status(0));
        let e = r.check(100).unwrap_err();
        assert_eq!(e, CheckError::ExitUnknownSet);
        assert!(e.to_string().contains("not dead with exit null"), "{e}");
        let mut r = dead(r#","exit_unknown":"hidden""#);
        r.status = Status::Alive;
        assert_eq!(r.check(100), Err(CheckError::ExitUnknownSet));
        dead("").check(100).unwrap();
    }
}
