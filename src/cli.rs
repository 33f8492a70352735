//! The command line, as DESIGN.md fixes it. The value parsers (`values.rs`) make every bad
//! flag or env value a clap usage error (exit 2) that names the flag. Each command's arguments
//! become that command's plain config (flags resolved against the environment), so no code
//! past this file sees clap; only `lib.rs` imports this module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod doc;
mod etcd;
mod lifecycle;
mod values;
pub use etcd::{PublishArgs, Source};
pub use lifecycle::{ForgetArgs, PruneArgs, StatusArgs};

use crate::exitcode::{Error, Result};
use crate::reader::ps::{Column, Format, Layout, PsConfig, View};
use crate::reader::wait::{Until, WaitConfig};
use crate::rundir::{self, Interval};
use crate::watcher::run::RunConfig;
use crate::watcher::{BackendPref, WatchConfig, WriterConfig};
use values::{parse_agent, parse_duration, parse_interval, parse_pid};

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

#[derive(Args, Debug, Clone)]
pub struct IntervalArg {
    /// Seconds between heartbeats, fractions allowed, 0.001 to 86400 [env: MOSAIC_HEARTBEAT_INTERVAL] [default: 15]
    #[arg(short = 'i', long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<Interval>,
}

const INTERVAL_ENV: &str = "MOSAIC_HEARTBEAT_INTERVAL";

impl IntervalArg {
    /// The flag, else `$MOSAIC_HEARTBEAT_INTERVAL`, else 15 s. The environment is read here
    /// rather than by clap so that, as for every other variable pidbeat and its scripts read,
    /// a set-but-empty value means unset, and a bad value is reported under its own name.
    fn resolve(&self) -> Result<Interval> {
        if let Some(i) = self.interval {
            return Ok(i);
        }
        match std::env::var(INTERVAL_ENV) {
            Ok(v) if !v.is_empty() => parse_interval(&v)
                .map_err(|e| Error::Usage(format!("invalid {INTERVAL_ENV}={v:?}: {e}"))),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Interval::DEFAULT),
            Err(std::env::VarError::NotUnicode(v)) => Err(Error::Usage(format!(
                "invalid {INTERVAL_ENV}={v:?}: not UTF-8"
            ))),
        }
    }
}

/// The flags of every command that writes a record (`watch`, `run`).
#[derive(Args, Debug)]
pub struct WriterArgs {
    /// Agent name: the record is <run-dir>/<agent>.hb
    #[arg(long, value_name = "NAME", value_parser = parse_agent, allow_hyphen_values = true)]
    pub agent: String,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub interval: IntervalArg,
}

impl WriterArgs {
    fn into_config(self) -> Result<WriterConfig> {
        // The run dir first, then the interval: the order their errors have always had.
        let run_dir = self.run_dir.resolve()?;
        Ok(WriterConfig {
            interval: self.interval.resolve()?,
            agent: self.agent,
            run_dir,
        })
    }
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// PID of the runtime to watch (in this PID namespace)
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub pid: i32,
    #[command(flatten)]
    pub writer: WriterArgs,
    /// How death is noticed: pidfd events, or /proc polling every 100 ms
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Go to the background once the first alive record is on disk, then print the detached watcher's PID (one line on stdout); exit 1 and stop it if that takes over 5 s
    #[arg(long)]
    pub detach: bool,
}

impl WatchArgs {
    pub fn into_config(self) -> Result<WatchConfig> {
        Ok(WatchConfig {
            pid: self.pid,
            writer: self.writer.into_config()?,
            backend: self.backend.into(),
            detach: self.detach,
        })
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub writer: WriterArgs,
    /// Forward signals to CMD's process group instead of CMD alone (tini's -g)
    #[arg(short = 'g', long)]
    pub kill_group: bool,
    /// Adopt and reap orphaned descendants even when not PID 1 (tini's -s)
    #[arg(short = 's', long)]
    pub subreaper: bool,
    /// Get SIG (and so forward it to CMD) when pidbeat's parent dies (tini's -p), e.g. TERM
    #[arg(short = 'p', long, value_name = "SIG", value_parser = values::parse_signal)]
    pub pdeathsig: Option<rustix::process::Signal>,
    /// The command to run, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
}

impl RunArgs {
    pub fn into_config(self) -> Result<RunConfig> {
        Ok(RunConfig {
            writer: self.writer.into_config()?,
            cmd: self.cmd,
            kill_group: self.kill_group,
            subreaper: self.subreaper,
            pdeathsig: self.pdeathsig,
        })
    }
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// One JSON array: the record's keys plus agent, state, age_ms
    #[arg(long, conflicts_with = "prom")]
    pub json: bool,
    /// Prometheus text exposition (node_exporter textfile collector)
    #[arg(long)]
    pub prom: bool,
    /// Redraw whenever a record changes (and every second for ages)
    #[arg(long)]
    pub watch: bool,
    /// Table columns, comma-separated: agent,state,pid,up,age,backend,exit,interval,seq,watcher
    #[arg(short = 'o', long = "fields", value_name = "FIELD,…", value_parser = parse_columns, conflicts_with_all = ["json", "prom"])]
    pub fields: Option<Columns>,
    /// Print the table without its header line
    #[arg(long, conflicts_with_all = ["json", "prom"])]
    pub no_header: bool,
    /// Replace FILE atomically (temp file, then rename) instead of writing to stdout; with --watch, on every change and every 5 s
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show AGENT's past deaths (the last 10), oldest first
    #[arg(long, value_name = "AGENT", value_parser = parse_agent, conflicts_with_all = ["prom", "watch", "agents", "fields", "no_header", "output"])]
    pub history: Option<String>,
    #[command(flatten)]
    pub etcd: etcd::EtcdArgs,
    /// Only these agents (HOST/AGENT with --etcd)
    #[arg(value_name = "AGENT", value_parser = etcd::parse_agent_arg)]
    pub agents: Vec<String>,
}

impl PsArgs {
    /// The table's columns and header, from `-o` and `--no-header`.
    fn layout(&self) -> Layout {
        let mut layout = Layout::default();
        if let Some(Columns(cols)) = &self.fields {
            layout.columns = cols.clone();
        }
        layout.header = !self.no_header;
        layout
    }

    pub fn into_config(self) -> Result<PsConfig> {
        let run_dir = self.run_dir.resolve()?;
        if self.watch && self.prom && self.output.is_none() {
            return Err(Error::Usage(
                "--watch --prom needs --output FILE: the exposition is kept in a file \
                 (for node_exporter's textfile collector)"
                    .into(),
            ));
        }
        let format = match (self.json, self.prom) {
            (true, _) => Format::Json,
            (false, true) => Format::Prom,
            (false, false) => Format::Table,
        };
        let layout = self.layout();
        // clap refuses `--json --prom` and `--history` with --watch, --prom, -o, --output.
        let view = match (self.history, self.watch) {
            (Some(agent), _) => View::History {
                agent,
                json: self.json,
            },
            (None, true) => View::Watch(format),
            (None, false) => View::Once(format),
        };
        Ok(PsConfig {
            run_dir,
            view,
            agents: self.agents,
            layout,
            output: self.output,
        })
    }
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Give up after SECS and exit 124
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Return once the first named agent is done
    #[arg(long, conflicts_with = "count")]
    pub any: bool,
    /// Return once N of the named agents are done
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// What each agent is waited for: ended (dead or lost), or alive
    #[arg(long, value_enum, value_name = "STATE", default_value_t = UntilChoice::Ended)]
    pub until: UntilChoice,
    /// Refuse at once (exit 4) a named agent that has no record
    #[arg(long)]
    pub exists: bool,
    #[command(flatten)]
    pub etcd: etcd::EtcdArgs,
    /// Agents to wait for (HOST/AGENT with --etcd)
    #[arg(required = true, value_name = "AGENT", value_parser = etcd::parse_agent_arg)]
    pub agents: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntilChoice {
    /// Dead or lost
    Ended,
    /// Alive (its watcher has written an alive record and the target runs)
    Alive,
}

impl WaitArgs {
    pub fn into_config(self) -> Result<WaitConfig> {
        let count = match (self.any, self.count) {
            (true, _) => Some(1),
            (false, Some(n)) if n as usize > self.agents.len() => {
                return Err(Error::Usage(format!(
                    "--count {n} is more than the {} agents named",
                    self.agents.len()
                )));
            }
            (false, n) => n.map(|n| n as usize),
        };
        Ok(WaitConfig {
            run_dir: self.run_dir.resolve()?,
            timeout: self.timeout,
            agents: self.agents,
            until: match self.until {
                UntilChoice::Ended => Until::Ended,
                UntilChoice::Alive => Until::Alive,
            },
            count,
            exists: self.exists,
        })
    }
}

/// `ps -o`'s list, one value (a bare `Vec` would make clap expect the flag repeated).
#[derive(Debug, Clone)]
pub struct Columns(Vec<Column>);

fn parse_columns(s: &str) -> std::result::Result<Columns, String> {
    Column::parse_list(s).map(Columns)
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// pidfd, falling back to poll where pidfd_open is unavailable (ENOSYS/EPERM)
    Auto,
    /// pidfd_open + epoll: death is an event
    Pidfd,
    /// /proc polling every 100 ms (kernels before 5.3, seccomp'd containers)
    Poll,
}

impl From<BackendChoice> for BackendPref {
    fn from(c: BackendChoice) -> BackendPref {
        match c {
            BackendChoice::Auto => BackendPref::Auto,
            BackendChoice::Pidfd => BackendPref::Pidfd,
            BackendChoice::Poll => BackendPref::Poll,
        }
    }
}
