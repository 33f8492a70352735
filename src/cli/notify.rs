//! The arguments of `pidbeat notify`.

use clap::Args;

use super::RunDirArg;
use super::values::parse_agent;
use crate::exitcode::{Error, Result};
use crate::notify::{NOTIFY_SOCKET_ENV, NotifyConfig};
use crate::rundir;

#[derive(Args, Debug)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// The agent to notify (its watcher's socket, <run-dir>/.<agent>.notify); without it, $NOTIFY_SOCKET
    #[arg(long, value_name = "NAME", value_parser = parse_agent, allow_hyphen_values = true)]
    pub agent: Option<String>,
    /// KEY=VALUE lines to send: READY=1, STATUS=…, WATCHDOG=1, WATCHDOG_USEC=…, STOPPING=1, X_PIDBEAT_ACTIVITY=working|waiting|idle
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub assignments: Vec<String>,
}

impl NotifyArgs {
    pub fn into_config(self) -> Result<NotifyConfig> {
        let socket = match &self.agent {
            Some(agent) => self.run_dir.resolve()?.join(rundir::notify_name(agent)),
            None => match std::env::var_os(NOTIFY_SOCKET_ENV) {
                Some(s) if !s.is_empty() => s.into(),
                _ => {
                    return Err(Error::Usage(format!(
                        "give --agent NAME, or set {NOTIFY_SOCKET_ENV}"
                    )));
                }
            },
        };
        Ok(NotifyConfig {
            socket,
            assignments: self.assignments,
        })
    }
}
