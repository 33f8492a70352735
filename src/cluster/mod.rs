//! The multi-host layer on etcd v3 (DESIGN.md, "Multi-host"): `pidbeat publish` (one bridge
//! per host), and the readers `ps --etcd` and `wait --etcd`.
//!
//! Nothing here is reachable from `watch` or `run`: per-agent watchers never talk to etcd,
//! so no network or TLS code sits in a death's path, and local records keep working whatever
//! etcd does. Nor is it linked into `pidbeat` at all: `pidbeat` execs `pidbeat-etcd` for these
//! commands (see `lib.rs`), so no watcher pays for this code's relocations.

pub mod keys;
pub mod publish;
pub mod remote;

use std::path::PathBuf;
use std::time::Duration;

/// An etcd command, as the command line asked for it.
#[derive(Debug)]
pub enum Command {
    Publish(PublishConfig),
    Ps(RemotePsConfig),
    Wait(RemoteWaitConfig),
}

/// Runs an etcd command (in `pidbeat-etcd`).
pub fn run(cmd: Command) -> crate::exitcode::Result<crate::exitcode::ExitCode> {
    match cmd {
        Command::Publish(c) => publish::command(c),
        Command::Ps(c) => remote::ps_command(c),
        Command::Wait(c) => remote::wait_command(c),
    }
}

/// `pidbeat publish`.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub run_dir: PathBuf,
    pub host: String,
    pub ttl: Duration,
    pub client: etcd_gateway::Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteFormat {
    Table,
    Json,
    Prom,
}

/// `pidbeat ps --etcd`.
#[derive(Debug, Clone)]
pub struct RemotePsConfig {
    pub client: etcd_gateway::Config,
    pub format: RemoteFormat,
    pub watch: bool,
    /// The table's columns and header (`-o`, `--no-header`).
    pub layout: crate::reader::ps::Layout,
    /// Only these (all when empty).
    pub agents: Vec<remote::Name>,
}

/// `pidbeat wait --etcd`.
#[derive(Debug, Clone)]
pub struct RemoteWaitConfig {
    pub client: etcd_gateway::Config,
    pub timeout: Option<Duration>,
    pub agents: Vec<remote::Name>,
}
