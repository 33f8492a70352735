//! Death history: before a new watcher replaces an agent's record, it appends the record it
//! replaces to `<agent>.deaths` if that record tells of an ended incarnation, so a restart
//! does not erase the last death (`ps --history` reads it).
//!
//! Why here and not in the dying watcher: its death path is the latency that matters (one
//! rename), and a watcher that is SIGKILLed or loses its host writes nothing at all; the
//! next watcher holds the agent's lock, so it is the one process that can append without a
//! race, and it sees what the dead one left. Bounded: the last [`HISTORY_LEN`] records of at
//! most [`HISTORY_LINE_MAX`] bytes each, replaced atomically like the record (a temp file,
//! then rename). Any failure is a warning: history never stops a watcher.

use std::io;
use std::path::Path;

use crate::incarnation::Incarnation;
use crate::record::{self, Status};
use crate::rundir::{HISTORY_LEN, HISTORY_LINE_MAX, deaths_name, record_name};
use crate::wholefile;

/// Call with the agent's lock held, before the first write of the new record.
pub fn archive_previous(dir: &Path, agent: &str) {
    if let Err(e) = archive(dir, agent) {
        eprintln!("pidbeat: warning: {agent}: the previous record is not kept in its history: {e}");
    }
}

fn archive(dir: &Path, agent: &str) -> io::Result<()> {
    let Some(line) = wholefile::read_small(&dir.join(record_name(agent)), HISTORY_LINE_MAX)? else {
        return Ok(());
    };
    let Ok((rec, _)) = record::parse(&line) else {
        // A corrupt record tells of no incarnation.
        return Ok(());
    };
    let ended = match rec.status {
        Status::Dead => true,
        // Its watcher is gone (we hold the lock) and nobody recorded the target's end.
        // (A PID of another PID namespace cannot be looked up here: not known to have ended.)
        Status::Alive | Status::Unwatched => {
            Incarnation::in_record(rec.pid, rec.start_time, rec.pidns)
                .is_some_and(|target| !target.is_running())
        }
    };
    if !ended {
        return Ok(());
    }
    let path = dir.join(deaths_name(agent));
    let old =
        wholefile::read_small(&path, HISTORY_LEN * (HISTORY_LINE_MAX + 1))?.unwrap_or_default();
    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
    let mut lines: Vec<&str> = std::str::from_utf8(&old)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    // A watcher that failed before replacing the record leaves it for the next one.
    if lines.last() == Some(&line.as_str()) {
        return Ok(());
    }
    lines.push(&line);
    let keep = &lines[lines.len().saturating_sub(HISTORY_LEN)..];
    let text = keep.join("\n") + "\n";
    wholefile::replace(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_line(pid: i32) -> String {
        format!(r#"{{"ts":1,"pid":{pid},"status":"dead","died_ms":1000}}"#)
    }

    #[test]
    fn keeps_the_last_deaths_once_each() {
        let t = tempfile::tempdir().unwrap();
        let rec = t.path().join("a.hb");
        for pid in 1..=HISTORY_LEN as i32 + 3 {
            std::fs::write(&rec, dead_line(pid) + "\n").unwrap();
            archive(t.path(), "a").unwrap();
            // The same record again (a watcher that never replaced it): not a new death.
            archive(t.path(), "a").unwrap();
        }
        let text = std::fs::read_to_string(t.path().join("a.deaths")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), HISTORY_LEN);
        assert_eq!(lines[0], dead_line(4));
        assert_eq!(lines[HISTORY_LEN - 1], dead_line(HISTORY_LEN as i32 + 3));
        let names = std::fs::read_dir(t.path()).unwrap().count();
        assert_eq!(names, 2, "a temp file was left");
    }

    #[test]
    fn a_live_target_or_corrupt_record_is_not_a_death() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let st = crate::procfs::self_start_time();
        let alive = format!(r#"{{"ts":1,"pid":{me},"status":"alive","start_time":{st}}}"#);
        std::fs::write(t.path().join("a.hb"), alive).unwrap();
        archive(t.path(), "a").unwrap();
        std::fs::write(t.path().join("b.hb"), "{not json").unwrap();
        archive(t.path(), "b").unwrap();
        assert!(!t.path().join("a.deaths").exists());
        assert!(!t.path().join("b.deaths").exists());
    }
}
