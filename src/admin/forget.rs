//! `pidbeat forget AGENT…`: removes each ended agent's record, lock file and death history
//! (and its launcher log with `--logs`), printing `forgot AGENT (STATE)`. An agent that is
//! alive or stale, or whose watcher holds the lock while its target lives, is refused (exit
//! 1); one with nothing to remove is reported (exit 4). Each agent is done under its lock
//! (`remove.rs`), so a watcher starting at the same moment is never undone.

use std::path::{Path, PathBuf};

use super::remove::{Filter, Removed, remove};
use crate::exitcode::{ExitCode, Result, runtime};
use crate::reader::State;
use crate::rundir;

#[derive(Debug)]
pub struct ForgetConfig {
    pub run_dir: PathBuf,
    pub agents: Vec<String>,
    pub logs: bool,
}

pub fn command(config: ForgetConfig) -> Result<ExitCode> {
    let dir = &config.run_dir;
    let filter = Filter {
        states: &[State::Dead, State::Lost, State::Unwatched, State::Corrupt],
        older_than: None,
        logs: config.logs,
    };
    let mut code = ExitCode::Success;
    for agent in &config.agents {
        let removed = remove(dir, agent, &filter).map_err(|e| runtime!("forget {agent}: {e}"))?;
        match removed {
            Removed::Yes(state) => println!("forgot {agent} ({})", state_word(state)),
            Removed::NothingThere => {
                eprintln!("pidbeat: forget: {agent}: no record in {}", dir.display());
                if code == ExitCode::Success {
                    code = ExitCode::NoRecord;
                }
            }
            Removed::Skipped(why) => {
                eprintln!(
                    "pidbeat: forget: {agent}: refused: {why}{}",
                    holder(dir, agent)
                );
                code = ExitCode::Failure;
            }
            Removed::Busy(why) => {
                eprintln!("pidbeat: forget: {agent}: refused: {why}");
                code = ExitCode::Failure;
            }
        }
    }
    Ok(code)
}

/// Who keeps a refused agent alive, as a second `watch` names it: `; watched by pid N (lock
/// PATH)` while a watcher holds the agent's lock, else nothing.
fn holder(dir: &Path, agent: &str) -> String {
    let lock = dir.join(rundir::lock_name(agent));
    match rundir::lock_holder(&lock) {
        Some(pid) if rundir::lock_held(dir, agent) == Some(true) => {
            format!("; watched by pid {pid} (lock {})", lock.display())
        }
        _ => String::new(),
    }
}

/// The state shown for a removed agent (`files` when only other files of it were left).
pub fn state_word(state: Option<State>) -> &'static str {
    state.map_or("files", State::name)
}
