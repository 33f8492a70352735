//! The arguments of the commands that write a record: `watch` and `run`.

use clap::{Args, ValueEnum};

use super::RunDirArg;
use super::values::{parse_agent, parse_duration, parse_interval, parse_pid};
use crate::exitcode::{Error, Result};
use crate::rundir::Interval;
use crate::watcher::run::RunConfig;
use crate::watcher::{BackendPref, WatchConfig, WriterConfig};

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
    /// The agent promises WATCHDOG=1 over sd_notify at least this often (as WATCHDOG_USEC= would); past it without one, readers call it hung
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub watchdog: Option<std::time::Duration>,
    /// Sample no evidence of progress (CPU, terminal) and bind no sd_notify socket: the record has no `progress`
    #[arg(long)]
    pub no_progress: bool,
}

impl WriterArgs {
    fn into_config(self) -> Result<WriterConfig> {
        // The run dir's error before the interval's, when both are wrong.
        let run_dir = self.run_dir.resolve()?;
        Ok(WriterConfig {
            interval: self.interval.resolve()?,
            agent: self.agent,
            run_dir,
            progress: !self.no_progress,
            watchdog: self.watchdog,
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
    #[arg(short = 'p', long, value_name = "SIG", value_parser = super::values::parse_signal)]
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
