//! The command line, as DESIGN.md fixes it. Value parsers live here so that every bad flag or
//! env value is a clap usage error (exit 2) that names the flag. Each command's arguments
//! become that command's plain config (flags resolved against the environment), so no code
//! past this file sees clap; only `lib.rs` imports this module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::client::{Config as EtcdConfig, Credentials, Tls};
use crate::cluster::remote::Name;
use crate::cluster::{PublishConfig, RemoteFormat, RemotePsConfig, RemoteWaitConfig};
use crate::exit::{Error, Result, runtime};
use crate::layout::{self, Interval};
use crate::reader::ps::{Format, PsConfig, View};
use crate::reader::wait::WaitConfig;
use crate::watcher::run::RunConfig;
use crate::watcher::{BackendPref, WatchConfig, WriterConfig};

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
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct RunDirArg {
    /// Directory holding the records [env: MOSAIC_HEARTBEAT_RUN_DIR] [default: $XDG_CONFIG_HOME/mosaic/fleet/run or ~/.config/mosaic/fleet/run]
    #[arg(long, value_name = "DIR", value_parser = layout::parse_run_dir)]
    pub run_dir: Option<PathBuf>,
}

impl RunDirArg {
    /// The flag, else the environment (see `layout::resolve`).
    fn resolve(&self) -> Result<PathBuf> {
        layout::resolve(self.run_dir.as_deref())
    }
}

#[derive(Args, Debug, Clone)]
pub struct IntervalArg {
    /// Seconds between heartbeats, fractions allowed, 0.001 to 86400 [env: MOSAIC_HEARTBEAT_INTERVAL] [default: 15]
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
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
    /// The command to run, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
}

impl RunArgs {
    pub fn into_config(self) -> Result<RunConfig> {
        Ok(RunConfig {
            writer: self.writer.into_config()?,
            cmd: self.cmd,
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
    #[arg(long, conflicts_with = "prom")]
    pub watch: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Only these agents (HOST/AGENT with --etcd)
    #[arg(value_name = "AGENT", value_parser = parse_agent_arg)]
    pub agents: Vec<String>,
}

/// Where a reader reads: the run dir, or etcd (`--etcd`).
#[derive(Debug)]
pub enum Source<L, R> {
    Local(L),
    Etcd(R),
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
            agents,
        }))
    }

    pub fn into_config(self) -> Result<PsConfig> {
        let run_dir = self.run_dir.resolve()?;
        // clap refuses `--watch --prom` and `--json --prom`.
        let view = match (self.watch, self.json, self.prom) {
            (true, json, _) => View::Watch { json },
            (false, true, _) => View::Once(Format::Json),
            (false, false, true) => View::Once(Format::Prom),
            (false, false, false) => View::Once(Format::Table),
        };
        Ok(PsConfig {
            run_dir,
            view,
            agents: self.agents,
        })
    }
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    /// Give up after SECS and exit 124
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Agents to wait for (HOST/AGENT with --etcd)
    #[arg(required = true, value_name = "AGENT", value_parser = parse_agent_arg)]
    pub agents: Vec<String>,
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
            Source::Etcd((client, agents)) => Ok(Source::Etcd(RemoteWaitConfig {
                client,
                timeout: self.timeout,
                agents,
            })),
        }
    }

    pub fn into_config(self) -> Result<WaitConfig> {
        Ok(WaitConfig {
            run_dir: self.run_dir.resolve()?,
            timeout: self.timeout,
            agents: self.agents,
        })
    }
}

/// How long a reader gives one etcd request (a member that takes longer is passed over).
const READER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `ps`/`wait` agents: HOST/AGENT exactly when reading from etcd.
fn check_names(agents: Vec<String>, etcd: bool) -> Result<Vec<String>> {
    if let Some(a) = agents.iter().find(|a| a.contains('/') != etcd) {
        return Err(Error::Usage(if etcd {
            format!("`{a}`: with --etcd, name agents as HOST/AGENT")
        } else {
            format!("`{a}`: HOST/AGENT names an agent in etcd; add --etcd URLS")
        }));
    }
    Ok(agents)
}

fn host_agents(agents: Vec<String>) -> Vec<Name> {
    agents
        .iter()
        .filter_map(|a| crate::cluster::keys::parse_host_agent(a).ok())
        .collect()
}

/// Where etcd is and how to log in: `publish`, `ps --etcd`, `wait --etcd`.
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated (http://10.0.0.1:2379,…): read the fleet from etcd instead of the run dir
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// CA certificate (PEM) that signed the etcd members' certificates
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), with --key
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "key"])]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with --cert
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "cert"])]
    pub key: Option<PathBuf>,
    /// etcd user; the password comes from --password-file or $PIDBEAT_ETCD_PASSWORD, never from the command line
    #[arg(long, value_name = "NAME", requires = "etcd")]
    pub user: Option<String>,
    /// File holding the etcd user's password (one line)
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
}

const PASSWORD_ENV: &str = "PIDBEAT_ETCD_PASSWORD";

/// What an etcd reader needs from the command line: the client and the HOST/AGENT names.
type EtcdReader = (EtcdConfig, Vec<Name>);

impl EtcdArgs {
    /// A reader's source: without `--etcd` its AGENT names (checked: no HOST/AGENT); with
    /// it the client config and the HOST/AGENT names (and no `--run-dir`).
    fn split(
        etcd: &mut EtcdArgs,
        run_dir: &RunDirArg,
        agents: Vec<String>,
    ) -> Result<Source<Vec<String>, EtcdReader>> {
        let Some(client) = std::mem::take(etcd).into_config(READER_REQUEST_TIMEOUT)? else {
            return check_names(agents, false).map(Source::Local);
        };
        if run_dir.run_dir.is_some() {
            return Err(Error::Usage(
                "--run-dir and --etcd: read one or the other".into(),
            ));
        }
        Ok(Source::Etcd((
            client,
            host_agents(check_names(agents, true)?),
        )))
    }

    /// The client configuration, or `None` without `--etcd`. Each request is bounded by
    /// `timeout`. The password is read here: from the file, else the environment (a
    /// set-but-empty variable counts as unset, as everywhere in pidbeat).
    fn into_config(self, timeout: Duration) -> Result<Option<EtcdConfig>> {
        if self.etcd.is_empty() {
            return Ok(None);
        }
        if self.etcd.iter().any(|u| u.trim().is_empty()) {
            return Err(Error::Usage("--etcd: an empty URL in the list".into()));
        }
        let credentials = match self.user {
            None => None,
            Some(user) => {
                let password = match (&self.password_file, std::env::var(PASSWORD_ENV)) {
                    (Some(f), _) => std::fs::read_to_string(f)
                        .map_err(|e| runtime!("cannot read --password-file {}: {e}", f.display()))?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned(),
                    (None, Ok(p)) if !p.is_empty() => p,
                    (None, _) => {
                        return Err(Error::Usage(format!(
                            "--user {user} needs a password: --password-file FILE or \
                             ${PASSWORD_ENV} (never on the command line)"
                        )));
                    }
                };
                Some(Credentials { user, password })
            }
        };
        Ok(Some(EtcdConfig {
            endpoints: self.etcd,
            tls: Tls {
                cacert: self.cacert,
                cert: self.cert,
                key: self.key,
            },
            credentials,
            timeout,
        }))
    }
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// This host's name in etcd (/pidbeat/HOST/…) [default: the kernel's host name]
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    pub host: Option<String>,
    /// The host's lease: readers call its live agents unreachable this long after the bridge, the host or its network is gone
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_ttl)]
    pub ttl: Duration,
}

impl PublishArgs {
    pub fn into_config(self) -> Result<PublishConfig> {
        let ttl = self.ttl;
        let client = self
            .etcd
            .into_config(crate::cluster::publish::request_timeout(ttl))?
            .ok_or_else(|| Error::Usage("publish needs --etcd URLS".into()))?;
        let host = match self.host {
            Some(h) => h,
            None => {
                let h = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
                crate::cluster::keys::validate_host(&h).map_err(|e| {
                    Error::Usage(format!(
                        "the kernel's host name cannot name this host in etcd ({e}); give --host"
                    ))
                })?;
                h
            }
        };
        Ok(PublishConfig {
            run_dir: self.run_dir.resolve()?,
            host,
            ttl,
            client,
        })
    }
}

fn parse_host(s: &str) -> std::result::Result<String, String> {
    crate::cluster::keys::validate_host(s).map(|()| s.to_owned())
}

/// Whole seconds (etcd leases are), at least 2 (etcd's shortest with default timing).
fn parse_ttl(s: &str) -> std::result::Result<Duration, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number of seconds"))?;
    if !(2..=86_400).contains(&v) {
        return Err(format!("--ttl must be 2 to 86400 seconds, got {v}"));
    }
    Ok(Duration::from_secs(v))
}

/// `AGENT`, or `HOST/AGENT` for the etcd readers (which one is allowed is checked once it is
/// known whether `--etcd` was given).
fn parse_agent_arg(s: &str) -> std::result::Result<String, String> {
    if s.contains('/') {
        crate::cluster::keys::parse_host_agent(s).map(|_| s.to_owned())
    } else {
        parse_agent(s)
    }
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

fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number of seconds"));
    }
    Ok(v)
}

fn parse_interval(s: &str) -> std::result::Result<Interval, String> {
    Interval::new(parse_secs(s)?, s)
}

fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let v = parse_secs(s)?;
    if v < 0.0 {
        return Err(format!("timeout must not be negative, got {s}"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("timeout {s}: {e}"))
}

fn parse_pid(s: &str) -> std::result::Result<i32, String> {
    let v: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a PID (a positive integer)"))?;
    if v <= 0 {
        return Err(format!("PID must be positive, got {v}"));
    }
    let max = crate::procfs::pid_max();
    if v > max {
        return Err(format!("PID {v} is above pid_max ({max})"));
    }
    Ok(v as i32)
}

fn parse_agent(s: &str) -> std::result::Result<String, String> {
    layout::validate_agent(s).map(|()| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("0.05").unwrap().secs, 0.05);
        assert_eq!(parse_interval("86400").unwrap().secs, 86400.0);
        for bad in [
            "0", "-1", "NaN", "inf", "-inf", "86400.5", "", "abc", "0.0001",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("1").unwrap(), 1);
        for bad in ["0", "-5", "x", "1.5", "99999999999"] {
            assert!(parse_pid(bad).is_err(), "{bad} accepted");
        }
    }
}
