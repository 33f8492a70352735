//! The arguments of the commands that read records: `ps`, `wait` and `status`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::RunDirArg;
use super::etcd::{EtcdArgs, Source};
use super::values::{ValueError, parse_agent, parse_agent_arg, parse_duration};
use crate::cluster::{RemoteFormat, RemotePsConfig, RemoteWaitConfig};
use crate::exitcode::{Error, Result};
use crate::reader::activity::{Activity, Thresholds};
use crate::reader::ps::{Column, Format, Layout, PsConfig, View};
use crate::reader::status::StatusConfig;
use crate::reader::trust::Untrusted;
use crate::reader::wait::{Until, WaitConfig};

/// The thresholds a reader judges a live agent's activity by (see `reader/activity.rs`).
#[derive(Args, Debug, Clone)]
pub struct ThresholdArgs {
    /// A live agent without CPU progress or a `working` claim for this long is idle (90s, 2m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub idle_after: Duration,
    /// An agent whose last claim was `working` and whose process tree used no CPU for this long is stuck
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub stuck_after: Duration,
}

impl ThresholdArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            idle_after: self.idle_after,
            stuck_after: self.stuck_after,
        }
    }
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// One JSON array: the record's keys plus agent, state, age_ms
    #[arg(long, conflicts_with = "prom")]
    pub json: bool,
    /// Prometheus text exposition (node_exporter textfile collector)
    #[arg(long)]
    pub prom: bool,
    /// Redraw whenever a record changes (and every second for ages)
    #[arg(long)]
    pub watch: bool,
    /// Table columns, comma-separated: agent,state,pid,up,age,backend,exit,interval,seq,watcher,activity,idle,status
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
    pub etcd: EtcdArgs,
    /// Only these agents (HOST/AGENT with --etcd)
    #[arg(value_name = "AGENT", value_parser = parse_agent_arg)]
    pub agents: Vec<String>,
}

impl PsArgs {
    /// The table's columns and header, from `-o` and `--no-header`.
    pub(super) fn layout(&self) -> Layout {
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
            thresholds: self.thresholds.thresholds(),
        })
    }
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Give up after SECS and exit 124
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Return once the first named agent is done
    #[arg(long, conflicts_with = "count")]
    pub any: bool,
    /// Return once N of the named agents are done
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// What each agent is waited for: ended (dead or lost), alive, or an activity of a live agent (working, idle, waiting)
    #[arg(long, value_enum, value_name = "STATE", default_value_t = UntilChoice::Ended)]
    pub until: UntilChoice,
    /// With --until working|idle|waiting: each agent must have been in it for at least this long
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<Duration>,
    /// Refuse at once (exit 4) a named agent that has no record
    #[arg(long)]
    pub exists: bool,
    #[command(flatten)]
    pub trust: TrustArg,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Agents to wait for (HOST/AGENT with --etcd)
    #[arg(required = true, value_name = "AGENT", value_parser = parse_agent_arg)]
    pub agents: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntilChoice {
    /// Dead or lost
    Ended,
    /// Alive (its watcher has written an alive record and the target runs)
    Alive,
    /// Live and working (CPU progress of its tree, or a fresh working claim)
    Working,
    /// Live and idle (no sign of progress for --idle-after)
    Idle,
    /// Live and waiting for its user (its own claim)
    Waiting,
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
            untrusted: self.trust.policy(),
            timeout: self.timeout,
            agents: self.agents,
            until: match (self.until, self.for_) {
                (UntilChoice::Ended, None) => Until::Ended,
                (UntilChoice::Alive, None) => Until::Alive,
                (UntilChoice::Working, f) => {
                    Until::Activity(Activity::Working, f.unwrap_or_default())
                }
                (UntilChoice::Idle, f) => Until::Activity(Activity::Idle, f.unwrap_or_default()),
                (UntilChoice::Waiting, f) => {
                    Until::Activity(Activity::Waiting, f.unwrap_or_default())
                }
                (_, Some(_)) => {
                    return Err(Error::Usage(
                        "--for goes with --until working, idle or waiting".into(),
                    ));
                }
            },
            thresholds: self.thresholds.thresholds(),
            count,
            exists: self.exists,
        })
    }
}

/// `status` and `wait` refuse a run dir others could write to, unless told to trust it.
#[derive(Args, Debug)]
pub struct TrustArg {
    /// Read the run dir even if it is writable by group or others or owned by someone else (anyone who can write there can forge records)
    #[arg(long)]
    pub trust_run_dir: bool,
}

impl TrustArg {
    fn policy(&self) -> Untrusted {
        if self.trust_run_dir {
            Untrusted::Accept
        } else {
            Untrusted::Refuse
        }
    }
}

/// `ps -o`'s list, one value (a bare `Vec` would make clap expect the flag repeated).
#[derive(Debug, Clone)]
pub struct Columns(Vec<Column>);

fn parse_columns(s: &str) -> std::result::Result<Columns, ValueError> {
    Column::parse_list(s)
        .map(Columns)
        .map_err(ValueError::Columns)
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Print nothing; only the exit status tells
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub trust: TrustArg,
    /// Agents to report, one line each in this order
    #[arg(required = true, value_name = "AGENT", value_parser = parse_agent)]
    pub agents: Vec<String>,
}

impl StatusArgs {
    pub fn into_config(self) -> Result<StatusConfig> {
        Ok(StatusConfig {
            run_dir: self.run_dir.resolve()?,
            untrusted: self.trust.policy(),
            agents: self.agents,
            quiet: self.quiet,
        })
    }
}

/// A flag the etcd readers do not take, if it was given.
fn refuse(given: bool, flag: &str) -> Result<()> {
    if given {
        return Err(Error::Usage(format!(
            "{flag} reads the run dir; it cannot be combined with --etcd"
        )));
    }
    Ok(())
}

impl PsArgs {
    /// `ps` on the run dir, or with `--etcd` on the fleet in etcd.
    pub fn into_source(mut self) -> Result<Source<PsConfig, RemotePsConfig>> {
        let agents = std::mem::take(&mut self.agents);
        let (client, agents) = match EtcdArgs::split(&mut self.etcd, &self.run_dir, agents)? {
            Source::Local(agents) => {
                self.agents = agents;
                return self.into_config().map(Source::Local);
            }
            Source::Etcd(remote) => remote,
        };
        refuse(self.output.is_some(), "--output")?;
        refuse(self.history.is_some(), "--history")?;
        if self.watch && self.prom {
            return Err(Error::Usage(
                "--watch cannot be combined with --prom".into(),
            ));
        }
        Ok(Source::Etcd(RemotePsConfig {
            client,
            format: match (self.json, self.prom) {
                (true, _) => RemoteFormat::Json,
                (_, true) => RemoteFormat::Prom,
                _ => RemoteFormat::Table,
            },
            watch: self.watch,
            layout: self.layout(),
            agents,
        }))
    }
}

impl WaitArgs {
    /// `wait` on the run dir, or with `--etcd` on the fleet in etcd.
    pub fn into_source(mut self) -> Result<Source<WaitConfig, RemoteWaitConfig>> {
        let agents = std::mem::take(&mut self.agents);
        match EtcdArgs::split(&mut self.etcd, &self.run_dir, agents)? {
            Source::Local(agents) => {
                self.agents = agents;
                self.into_config().map(Source::Local)
            }
            Source::Etcd((client, agents)) => {
                refuse(self.any, "--any")?;
                refuse(self.count.is_some(), "--count")?;
                refuse(self.exists, "--exists")?;
                refuse(self.until != UntilChoice::Ended, "--until other than ended")?;
                Ok(Source::Etcd(RemoteWaitConfig {
                    client,
                    timeout: self.timeout,
                    agents,
                }))
            }
        }
    }
}
