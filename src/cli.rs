//! The command line, as DESIGN.md fixes it, grouped by who runs it: the writers' arguments
//! (`writer.rs`: `watch`, `run`), the readers' (`reader.rs`: `ps`, `wait`, `status`), the
//! admin commands' (`admin.rs`: `forget`, `prune`), the etcd ones (`etcd.rs`: `publish`,
//! `--etcd`), and the value parsers they share (`values.rs`), which make every bad flag or
//! env value a clap usage error (exit 2) that names the flag. Each command's arguments become
//! that command's plain config (flags resolved against the environment), so no code past
//! this module sees clap; only `lib.rs` imports it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod admin;
pub mod doc;
mod etcd;
mod notify;
mod reader;
mod values;
mod writer;
pub use admin::{ForgetArgs, PruneArgs};
pub use etcd::{PublishArgs, Source};
pub use notify::NotifyArgs;
pub use reader::{PsArgs, StatusArgs, WaitArgs};
pub use writer::{RunArgs, WatchArgs};

use crate::exitcode::Result;
use crate::rundir;

#[derive(Parser, Debug)]
#[command(
    name = "pidbeat",
    version,
    about = "Liveness watcher for agent runtimes: a pidfd heartbeat that records death the instant it happens",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Watch a running PID and keep <run-dir>/<agent>.hb up to date until it dies.
    Watch(WatchArgs),
    /// Spawn CMD, watch it like `watch`, and exit with its status (container entrypoint).
    Run(RunArgs),
    /// Show the fleet: one line per agent record in the run dir.
    Ps(PsArgs),
    /// Block until every named agent is dead or lost.
    Wait(WaitArgs),
    /// Publish this host's verdicts to etcd (one bridge per host; see the README's multi-host section).
    Publish(PublishArgs),
    /// Print each agent's state; exit 0 if all are alive, 3 if any is not, 4 if any has no record.
    Status(StatusArgs),
    /// Remove ended agents' records, lock files and death histories.
    Forget(ForgetArgs),
    /// Forget every ended agent that matches (by state, by age).
    Prune(PruneArgs),
    /// Tell an agent's watcher something over sd_notify (a systemd-notify that never blocks).
    Notify(NotifyArgs),
    /// Print a shell completion script to stdout (see --help for how to install it).
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page pidbeat(1) (roff) to stdout, or write every page into a directory.
    Man {
        /// Write pidbeat.1 and pidbeat-SUB.1 for every subcommand into DIR (created if missing)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunDirArg {
    /// Directory holding the records [env: MOSAIC_HEARTBEAT_RUN_DIR] [default: $XDG_CONFIG_HOME/mosaic/fleet/run or ~/.config/mosaic/fleet/run]
    #[arg(short = 'd', long, value_name = "DIR", value_parser = rundir::parse_run_dir)]
    pub run_dir: Option<PathBuf>,
}

impl RunDirArg {
    /// The flag, else the environment (see `rundir::resolve`).
    fn resolve(&self) -> Result<PathBuf> {
        rundir::resolve(self.run_dir.as_deref())
    }
}
