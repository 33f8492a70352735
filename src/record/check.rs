//! [`Record::check`]: the range checks a parsed record passes before any verdict is judged.

use super::{Record, Status};
use crate::rundir::Interval;

impl Record {
    /// Refuses values no honest writer can write: a record is untrusted input, and a value
    /// out of range would otherwise be judged as if it meant something. `pid_max` bounds the
    /// PIDs (the reader's `/proc/sys/kernel/pid_max`, or the kernel's limit for a record from
    /// another PID namespace). Types (integers, no negatives) were already checked by serde.
    pub fn check(&self, pid_max: i32) -> Result<(), String> {
        // PIDs wrap before `pid_max`: the highest is one less.
        for (what, pid) in [("pid", Some(self.pid)), ("watcher_pid", self.watcher_pid)] {
            if let Some(pid) = pid.filter(|p| !(1..pid_max).contains(p)) {
                return Err(format!("{what} {pid} is outside 1..{pid_max} (pid_max)"));
            }
        }
        if self.seq == Some(0) {
            return Err("seq is 0 (a watcher's beats count from 1)".into());
        }
        if let Some(i) = self.interval {
            Interval::new(i, &i.to_string()).map_err(|e| format!("record's {e}"))?;
        }
        if let Some(x) = self.exit {
            match (x.code, x.signal) {
                (Some(c), _) if !(0..=255).contains(&c) => {
                    return Err(format!("exit code {c} is outside 0..=255"));
                }
                (_, Some(s)) if !(1..=64).contains(&s) => {
                    return Err(format!("exit signal {s} is outside 1..=64"));
                }
                (Some(_), Some(_)) => return Err("exit has both a code and a signal".into()),
                _ => {}
            }
        }
        if let Some(id) = &self.boot_id {
            let ok = (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if !ok {
                return Err("boot_id is not a boot id (hex digits and dashes)".into());
            }
        }
        if self.pidns == Some(0) {
            return Err("pidns is 0 (no namespace has inode 0)".into());
        }
        if let Some(why) = &self.exit_unknown {
            if !matches!(why.as_ref(), "reaped" | "hidden") {
                return Err(format!("exit_unknown {why:?} is not reaped or hidden"));
            }
            if self.status != Status::Dead || self.exit.is_some() {
                return Err("exit_unknown is set but the record is not dead with exit null".into());
            }
        }
        Ok(())
    }
}

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
        let e = dead(r#","exit_unknown":"lost""#).check(100).unwrap_err();
        assert!(e.contains("exit_unknown \"lost\""), "{e}");
        let mut r = dead(r#","exit_unknown":"reaped""#);
        r.exit = Some(crate::record::ExitInfo::from_wait_status(0));
        let e = r.check(100).unwrap_err();
        assert!(e.contains("not dead with exit null"), "{e}");
        let mut r = dead(r#","exit_unknown":"hidden""#);
        r.status = Status::Alive;
        assert!(r.check(100).unwrap_err().contains("exit_unknown"));
        dead("").check(100).unwrap();
    }
}
