//! The arguments of the commands that scripts and operators run around the fleet: `status`
//! (exit codes to branch on), `forget` and `prune` (records end). Part of `cli.rs`; kept
//! apart only so that no file grows past its limit.

use std::time::Duration;

use clap::Args;

use super::{RunDirArg, parse_agent, parse_duration};
use crate::admin::forget::ForgetConfig;
use crate::admin::prune::PruneConfig;
use crate::exitcode::Result;
use crate::reader::State;
use crate::reader::status::StatusConfig;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Print nothing; only the exit status tells
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Agents to report, one line each in this order
    #[arg(required = true, value_name = "AGENT", value_parser = parse_agent)]
    pub agents: Vec<String>,
}

impl StatusArgs {
    pub fn into_config(self) -> Result<StatusConfig> {
        Ok(StatusConfig {
            run_dir: self.run_dir.resolve()?,
            agents: self.agents,
            quiet: self.quiet,
        })
    }
}

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

fn parse_ended_states(s: &str) -> std::result::Result<States, String> {
    let names = || ENDED.map(State::name).join(",");
    let mut v = Vec::new();
    for name in s.split(',') {
        let name = name.trim();
        match ENDED.iter().find(|st| st.name() == name) {
            Some(st) if !v.contains(st) => v.push(*st),
            Some(_) => return Err(format!("state `{name}` is given twice")),
            None if matches!(name, "alive" | "stale") => {
                return Err(format!(
                    "`{name}` agents are still running and cannot be pruned; states: {}",
                    names()
                ));
            }
            None => return Err(format!("unknown state `{name}`; states: {}", names())),
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
