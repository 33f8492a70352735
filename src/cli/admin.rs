//! The arguments of the commands that forget ended agents: `forget` and `prune`.

use std::time::Duration;

use clap::Args;

use super::RunDirArg;
use super::values::{ValueError, parse_agent, parse_duration};
use crate::admin::forget::ForgetConfig;
use crate::admin::prune::PruneConfig;
use crate::exitcode::Result;
use crate::reader::State;

#[derive(Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Also remove the launcher's log, <run-dir>/<agent>.log
    #[arg(long)]
    pub logs: bool,
    /// Agents to forget (each must have ended)
    #[arg(required = true, value_name = "AGENT", value_parser = parse_agent)]
    pub agents: Vec<String>,
}

impl ForgetArgs {
    pub fn into_config(self) -> Result<ForgetConfig> {
        Ok(ForgetConfig {
            run_dir: self.run_dir.resolve()?,
            agents: self.agents,
            logs: self.logs,
        })
    }
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Only agents whose record was last written at least this long ago (90s, 2h, 7d, 1h30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Only agents in these states, comma-separated [default: dead,lost,unwatched,corrupt]
    #[arg(long, value_name = "STATE,…", value_parser = parse_ended_states)]
    pub state: Option<States>,
    /// Also remove the launcher's logs, <run-dir>/<agent>.log
    #[arg(long)]
    pub logs: bool,
    /// Print what would be forgotten, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl PruneArgs {
    pub fn into_config(self) -> Result<PruneConfig> {
        Ok(PruneConfig {
            run_dir: self.run_dir.resolve()?,
            older_than: self.older_than,
            states: self.state.map_or_else(|| ENDED.to_vec(), |States(s)| s),
            logs: self.logs,
            dry_run: self.dry_run,
        })
    }
}

/// `prune --state`'s list, one value.
#[derive(Debug, Clone)]
pub struct States(Vec<State>);

/// The states an agent can be forgotten in.
const ENDED: [State; 4] = [State::Dead, State::Lost, State::Unwatched, State::Corrupt];

fn parse_ended_states(s: &str) -> std::result::Result<States, ValueError> {
    let mut v = Vec::new();
    for name in s.split(',') {
        let name = name.trim();
        match ENDED.iter().find(|st| st.name() == name) {
            Some(st) if !v.contains(st) => v.push(*st),
            Some(_) => return Err(ValueError::StateTwice(name.to_owned())),
            None if matches!(name, "alive" | "stale") => {
                return Err(ValueError::StateRunning(name.to_owned(), &ENDED));
            }
            None => return Err(ValueError::UnknownState(name.to_owned(), &ENDED)),
        }
    }
    Ok(States(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_states() {
        assert_eq!(
            parse_ended_states("dead,lost").unwrap().0,
            [State::Dead, State::Lost]
        );
        for bad in ["alive", "dead,dead", "", "zombie"] {
            assert!(parse_ended_states(bad).is_err(), "{bad:?} accepted");
        }
    }
}
