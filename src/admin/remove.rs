//! Removing one agent's files, under its lock, if it has ended.

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::reader::{AgentVerdict, Look, State, read_record};
use crate::rundir::{self, EXIT_GRACE};

/// Which agents a removal may take.
pub struct Filter<'a> {
    /// Ended states to take (`forget`: all of them).
    pub states: &'a [State],
    /// Only agents whose record was last written at least this long ago.
    pub older_than: Option<Duration>,
    /// Also remove `<agent>.log`.
    pub logs: bool,
}

#[derive(Debug)]
pub enum Removed {
    /// Gone, with the state it had (`None`: no record, only other files of it).
    Yes(Option<State>),
    /// Nothing of the agent's was there.
    NothingThere,
    /// Not taken, and why (not ended, not matching).
    Skipped(String),
    /// Its watcher holds the lock.
    Busy(String),
}

/// An agent whose watcher still holds the lock is only waited for when its target is dead (or
/// dying): the watcher is then finishing (the exit-status grace) and will let go.
const BUSY_WAIT: Duration = Duration::from_secs(3);

pub fn remove(dir: &Path, agent: &str, filter: &Filter) -> io::Result<Removed> {
    // A record that changes between the judgement and the lock is judged again.
    for _ in 0..3 {
        let before = read_record(dir, agent);
        let verdict = Look::new(dir).judge(agent);
        if let Some(v) = &verdict {
            if let Some(why) = refuse(dir, v, filter) {
                return Ok(Removed::Skipped(why));
            }
        }
        if verdict.is_none() && !any_file(dir, agent, filter.logs) {
            return Ok(Removed::NothingThere);
        }
        // Worth waiting for only if the holder is the record's own watcher finishing (it
        // waits for the exit status); a new watcher of the name keeps the lock for its life.
        let holder = rundir::lock_holder(&dir.join(rundir::lock_name(agent)));
        let ending = verdict.as_ref().is_some_and(|v| {
            let own = holder.is_some() && v.record.as_ref().and_then(|r| r.watcher_pid) == holder;
            (v.state == State::Dead && own) || v.unsettled.is_some()
        });
        let Some(_lock) = lock(dir, agent, ending)? else {
            let holder = rundir::lock_holder(&dir.join(rundir::lock_name(agent)))
                .map_or("?".into(), |p| p.to_string());
            let state = verdict.map_or("no record".into(), |v| v.state.name().to_owned());
            return Ok(Removed::Busy(format!(
                "its watcher (pid {holder}) still holds the lock and the agent is {state}; \
                 stop the watcher first"
            )));
        };
        if read_record(dir, agent) != before {
            continue;
        }
        let mut names = vec![
            rundir::record_name(agent),
            rundir::deaths_name(agent),
            rundir::notify_name(agent),
        ];
        if filter.logs {
            names.push(rundir::log_name(agent));
        }
        // Temp files a crashed watcher left (we hold the lock: no watcher of it lives).
        names.extend(tmps(dir, agent));
        let mut any = false;
        for n in names {
            any |= unlink(&dir.join(n))?;
        }
        // Last, while we hold it: a watcher waiting on this inode then finds it unlinked and
        // locks a new lock file (`rundir::lock_exclusive_at`). An empty lock file that we
        // created ourselves does not count as something that was there.
        let lock_path = dir.join(rundir::lock_name(agent));
        let had_holder = std::fs::metadata(&lock_path).is_ok_and(|m| m.len() > 0);
        unlink(&lock_path)?;
        return Ok(match verdict {
            Some(v) => Removed::Yes(Some(v.state)),
            None if any || had_holder => Removed::Yes(None),
            None => Removed::NothingThere,
        });
    }
    Ok(Removed::Skipped(
        "its record keeps changing: a watcher is writing it".into(),
    ))
}

/// Would `v` be removed (were its lock free)?
pub fn matches(dir: &Path, v: &AgentVerdict, filter: &Filter) -> bool {
    refuse(dir, v, filter).is_none()
}

/// Why `v` is not to be removed, if it is not.
fn refuse(dir: &Path, v: &AgentVerdict, filter: &Filter) -> Option<String> {
    // A target that died a moment ago under its watcher: about to be `dead`.
    let dying = v.unsettled.is_some();
    if v.is_live() && !dying {
        return Some(format!("it is {} (stop its watcher first)", v.state));
    }
    let state = if dying { State::Dead } else { v.state };
    if !filter.states.contains(&state) {
        return Some(format!("it is {state}"));
    }
    // A corrupt record has no time of its own: the file's is used.
    let age = v.age_ms.map(Duration::from_millis).or_else(|| {
        let m = std::fs::symlink_metadata(dir.join(rundir::record_name(&v.agent))).ok()?;
        m.modified().ok()?.elapsed().ok()
    });
    match (filter.older_than, age) {
        (Some(min), Some(age)) if age < min => {
            Some(format!("its record was written {}s ago", age.as_secs()))
        }
        _ => None,
    }
}

fn lock(dir: &Path, agent: &str, ending: bool) -> io::Result<Option<std::os::fd::OwnedFd>> {
    let wait = match ending {
        true => BUSY_WAIT.max(EXIT_GRACE),
        false => rundir::LOCK_CONTENTION_WAIT,
    };
    rundir::lock_exclusive(dir, agent, wait).map_err(io::Error::other)
}

/// Is anything of the agent's there to remove? (Checked before the lock is taken, which
/// would create the lock file, or fail in a missing run dir.)
fn any_file(dir: &Path, agent: &str, logs: bool) -> bool {
    let mut names = vec![
        rundir::record_name(agent),
        rundir::deaths_name(agent),
        rundir::lock_name(agent),
        rundir::notify_name(agent),
    ];
    if logs {
        names.push(rundir::log_name(agent));
    }
    names
        .iter()
        .any(|n| std::fs::symlink_metadata(dir.join(n)).is_ok())
        || !tmps(dir, agent).is_empty()
}

/// The agent's temp file names in `dir` (see [`rundir::is_tmp_name`]).
fn tmps(dir: &Path, agent: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| rundir::is_tmp_name(agent, n))
        .collect()
}

/// Removes `path`; false if it was not there. unlink never follows a symlink.
fn unlink(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}
