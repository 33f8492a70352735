//! `pidbeat prune [--older-than DURATION] [--state STATE,…] [--logs] [--dry-run]`: `forget`
//! for every agent in the run dir that has ended in one of the states (default: dead, lost,
//! unwatched, corrupt) and, with `--older-than`, whose record was last written at least that
//! long ago (a corrupt one: the file's mtime). Prints `forgot AGENT (STATE)` per agent. An
//! agent that does not match is left alone silently; one that matched but whose watcher
//! still holds the lock is reported and makes the exit status 1.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::forget::state_word;
use super::remove::{Filter, Removed, remove};
use crate::exitcode::{ExitCode, Result, runtime};
use crate::reader::{Look, State, list_agents};

#[derive(Debug)]
pub struct PruneConfig {
    pub run_dir: PathBuf,
    pub older_than: Option<Duration>,
    pub states: Vec<State>,
    pub logs: bool,
    /// Say what would go, remove nothing.
    pub dry_run: bool,
}

pub fn command(config: PruneConfig) -> Result<ExitCode> {
    let dir = &config.run_dir;
    let agents = match list_agents(dir) {
        Ok(a) => a,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!(
                "pidbeat: prune: no run dir at {}, nothing to do",
                dir.display()
            );
            return Ok(ExitCode::Success);
        }
        Err(e) => return Err(runtime!("cannot read run dir {}: {e}", dir.display())),
    };
    let filter = Filter {
        states: &config.states,
        older_than: config.older_than,
        logs: config.logs,
    };
    let mut code = ExitCode::Success;
    for agent in &agents {
        if config.dry_run {
            if let Some(v) = Look::new(dir).judge(agent) {
                if super::remove::matches(dir, &v, &filter) {
                    println!("would forget {agent} ({})", v.state);
                }
            }
            continue;
        }
        match remove(dir, agent, &filter).map_err(|e| runtime!("prune {agent}: {e}"))? {
            Removed::Yes(state) => println!("forgot {agent} ({})", state_word(state)),
            Removed::NothingThere | Removed::Skipped(_) => {}
            Removed::Busy(why) => {
                eprintln!("pidbeat: prune: {agent}: left: {why}");
                code = ExitCode::Failure;
            }
        }
    }
    // Lock files with no record, which nobody holds: left by a watcher killed before its
    // first record (or by a `run` whose CMD could not start, before pidbeat started CMD
    // first). One that is held belongs to a watcher that has not written yet: left alone.
    for agent in ownerless_locks(dir) {
        if config.dry_run {
            if !crate::rundir::lock_held(dir, &agent).unwrap_or(false) {
                println!("would forget {agent} (a lock file with no record)");
            }
            continue;
        }
        let r = remove(dir, &agent, &filter).map_err(|e| runtime!("prune {agent}: {e}"))?;
        if let Removed::Yes(None) = r {
            println!("forgot {agent} (a lock file with no record)");
        }
    }
    Ok(code)
}

/// Agents with a lock file (`.<agent>.lock`) and no record (`<agent>.hb`).
fn ownerless_locks(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let agent = name.strip_prefix('.')?.strip_suffix(".lock")?;
            crate::rundir::validate_agent(agent).ok()?;
            let record = dir.join(crate::rundir::record_name(agent));
            (std::fs::symlink_metadata(record).is_err()).then(|| agent.to_owned())
        })
        .collect();
    v.sort();
    v
}
