//! The command line, as DESIGN.md fixes it. Value parsers live here so that every bad flag or
//! env value is a clap usage error (exit 2) that names the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    #[arg(long, value_name = "DIR", value_parser = parse_run_dir)]
    pub run_dir: Option<PathBuf>,
}

impl RunDirArg {
    /// The flag, else the environment (see `rundir::resolve`).
    pub fn resolve(&self) -> crate::error::Result<PathBuf> {
        crate::rundir::resolve(self.run_dir.as_deref())
    }
}

#[derive(Args, Debug, Clone)]
pub struct IntervalArg {
    /// Seconds between heartbeats, fractions allowed, 0.001 to 86400 [env: MOSAIC_HEARTBEAT_INTERVAL] [default: 15]
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<Interval>,
}

pub const INTERVAL_ENV: &str = "MOSAIC_HEARTBEAT_INTERVAL";
pub const DEFAULT_INTERVAL_SECS: f64 = 15.0;

impl IntervalArg {
    /// The flag, else `$MOSAIC_HEARTBEAT_INTERVAL`, else 15 s. The environment is read here
    /// rather than by clap so that, as for every other variable pidbeat and its scripts read,
    /// a set-but-empty value means unset, and a bad value is reported under its own name.
    pub fn resolve(&self) -> crate::error::Result<Interval> {
        if let Some(i) = self.interval {
            return Ok(i);
        }
        match std::env::var(INTERVAL_ENV) {
            Ok(v) if !v.is_empty() => parse_interval(&v).map_err(|e| {
                crate::error::Error::Usage(format!("invalid {INTERVAL_ENV}={v:?}: {e}"))
            }),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Interval {
                secs: DEFAULT_INTERVAL_SECS,
            }),
            Err(std::env::VarError::NotUnicode(v)) => Err(crate::error::Error::Usage(format!(
                "invalid {INTERVAL_ENV}={v:?}: not UTF-8"
            ))),
        }
    }
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// PID of the runtime to watch (in this PID namespace)
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub pid: i32,
    /// Agent name: the record is <run-dir>/<agent>.hb
    #[arg(long, value_name = "NAME", value_parser = parse_agent, allow_hyphen_values = true)]
    pub agent: String,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub interval: IntervalArg,
    /// How death is noticed: pidfd events, or /proc polling every 100 ms
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Go to the background once the first alive record is on disk
    #[arg(long)]
    pub detach: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Agent name: the record is <run-dir>/<agent>.hb
    #[arg(long, value_name = "NAME", value_parser = parse_agent, allow_hyphen_values = true)]
    pub agent: String,
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub interval: IntervalArg,
    /// The command to run, after `--`
    #[arg(required = true, last = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
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

/// How long a reader gives one etcd request (a member that takes longer is passed over).
pub const READER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `ps`/`wait` agents: HOST/AGENT exactly when reading from etcd.
fn split_agents(agents: Vec<String>, etcd: bool) -> crate::error::Result<Vec<String>> {
    for a in &agents {
        match (a.contains('/'), etcd) {
            (true, false) => {
                return Err(crate::error::Error::Usage(format!(
                    "`{a}`: HOST/AGENT names an agent in etcd; add --etcd URLS"
                )));
            }
            (false, true) => {
                return Err(crate::error::Error::Usage(format!(
                    "`{a}`: with --etcd, name agents as HOST/AGENT"
                )));
            }
            _ => {}
        }
    }
    Ok(agents)
}

fn names(agents: Vec<String>) -> Vec<crate::cluster::remote::Name> {
    agents
        .iter()
        .filter_map(|a| crate::cluster::keys::parse_host_agent(a).ok())
        .collect()
}

impl PsArgs {
    /// With `--etcd`, the remote reader's config (and `self` is not used); without it, `self`
    /// for the local `ps` (checked: no HOST/AGENT names).
    pub fn split(mut self) -> crate::error::Result<Result<crate::cluster::RemotePsConfig, PsArgs>> {
        let etcd = std::mem::take(&mut self.etcd);
        let agents = std::mem::take(&mut self.agents);
        let Some(client) = etcd.into_config(READER_REQUEST_TIMEOUT)? else {
            self.agents = split_agents(agents, false)?;
            return Ok(Err(self));
        };
        if self.run_dir.run_dir.is_some() {
            return Err(crate::error::Error::Usage(
                "--run-dir and --etcd: ps reads one or the other".into(),
            ));
        }
        use crate::cluster::RemoteFormat;
        Ok(Ok(crate::cluster::RemotePsConfig {
            client,
            format: match (self.json, self.prom) {
                (true, _) => RemoteFormat::Json,
                (_, true) => RemoteFormat::Prom,
                _ => RemoteFormat::Table,
            },
            watch: self.watch,
            agents: names(split_agents(agents, true)?),
        }))
    }
}

impl WaitArgs {
    /// As [`PsArgs::split`].
    pub fn split(
        mut self,
    ) -> crate::error::Result<Result<crate::cluster::RemoteWaitConfig, WaitArgs>> {
        let etcd = std::mem::take(&mut self.etcd);
        let agents = std::mem::take(&mut self.agents);
        let Some(client) = etcd.into_config(READER_REQUEST_TIMEOUT)? else {
            self.agents = split_agents(agents, false)?;
            return Ok(Err(self));
        };
        if self.run_dir.run_dir.is_some() {
            return Err(crate::error::Error::Usage(
                "--run-dir and --etcd: wait reads one or the other".into(),
            ));
        }
        Ok(Ok(crate::cluster::RemoteWaitConfig {
            client,
            timeout: self.timeout,
            agents: names(split_agents(agents, true)?),
        }))
    }
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

pub const PASSWORD_ENV: &str = "PIDBEAT_ETCD_PASSWORD";

impl EtcdArgs {
    /// The client configuration, or `None` without `--etcd`. Each request is bounded by
    /// `timeout`. The password is read here: from the file, else the environment (a
    /// set-but-empty variable counts as unset, as everywhere in pidbeat).
    pub fn into_config(
        self,
        timeout: Duration,
    ) -> crate::error::Result<Option<crate::cluster::client::Config>> {
        use crate::cluster::client::{Config, Credentials, Tls};
        use crate::error::Error;
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
                        .map_err(|e| {
                            crate::runtime!("cannot read --password-file {}: {e}", f.display())
                        })?
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
        Ok(Some(Config {
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
    pub fn into_config(self) -> crate::error::Result<crate::cluster::PublishConfig> {
        let ttl = self.ttl;
        let client = self
            .etcd
            .into_config(crate::cluster::publish::request_timeout(ttl))?
            .ok_or_else(|| crate::error::Error::Usage("publish needs --etcd URLS".into()))?;
        let host = match self.host {
            Some(h) => h,
            None => {
                let h = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
                crate::cluster::keys::validate_host(&h).map_err(|e| {
                    crate::error::Error::Usage(format!(
                        "the kernel's host name cannot name this host in etcd ({e}); give --host"
                    ))
                })?;
                h
            }
        };
        Ok(crate::cluster::PublishConfig {
            run_dir: self.run_dir.resolve()?,
            host,
            ttl,
            client,
        })
    }
}

fn parse_host(s: &str) -> Result<String, String> {
    crate::cluster::keys::validate_host(s).map(|()| s.to_owned())
}

/// Whole seconds (etcd leases are), at least 2 (etcd's shortest with default timing).
fn parse_ttl(s: &str) -> Result<Duration, String> {
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
fn parse_agent_arg(s: &str) -> Result<String, String> {
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

/// A validated heartbeat interval, kept with the seconds the user gave for the record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub secs: f64,
}

impl Interval {
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

pub const MAX_INTERVAL_SECS: f64 = 86_400.0;
pub const MIN_INTERVAL_SECS: f64 = 0.001;

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number of seconds"));
    }
    Ok(v)
}

pub fn parse_interval(s: &str) -> Result<Interval, String> {
    let v = parse_secs(s)?;
    if v <= 0.0 {
        return Err(format!("interval must be positive, got {s}"));
    }
    if v < MIN_INTERVAL_SECS {
        return Err(format!(
            "interval {s} is below the 0.001 s minimum (a watcher would spin)"
        ));
    }
    if v > MAX_INTERVAL_SECS {
        return Err(format!("interval {s} is over one day (86400 s)"));
    }
    Ok(Interval { secs: v })
}

pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let v = parse_secs(s)?;
    if v < 0.0 {
        return Err(format!("timeout must not be negative, got {s}"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("timeout {s}: {e}"))
}

pub fn parse_pid(s: &str) -> Result<i32, String> {
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

/// DESIGN.md's rule: 1–128 bytes of `[A-Za-z0-9._@+-]`, not starting with `.`. This keeps
/// names safe as file names (no `/`, no `..`, no NUL, no hidden lock/temp collisions).
pub fn validate_agent(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("agent name is empty".into());
    }
    if s.len() > 128 {
        return Err(format!("agent name is {} bytes, the limit is 128", s.len()));
    }
    if s.starts_with('.') {
        return Err(format!("agent name `{s}` starts with `.`"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._@+-".contains(*c)))
    {
        return Err(format!(
            "agent name `{}` contains {c:?}; allowed: A-Z a-z 0-9 . _ @ + -",
            s.escape_debug()
        ));
    }
    Ok(())
}

fn parse_agent(s: &str) -> Result<String, String> {
    validate_agent(s).map(|()| s.to_owned())
}

pub fn parse_run_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("run dir is empty".into());
    }
    let p = PathBuf::from(s);
    if p.exists() && !p.is_dir() {
        return Err(format!("`{s}` exists and is not a directory"));
    }
    Ok(p)
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
    fn agents() {
        for ok in ["pi", "claude-1", "a.b", "x@host", "c++", "A_9"] {
            validate_agent(ok).unwrap();
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a\0b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(validate_agent(bad).is_err(), "{bad:?} accepted");
        }
        validate_agent(&"a".repeat(128)).unwrap();
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("1").unwrap(), 1);
        for bad in ["0", "-5", "x", "1.5", "99999999999"] {
            assert!(parse_pid(bad).is_err(), "{bad} accepted");
        }
    }
}
