//! The value parsers: every bad flag or env value becomes a clap usage error (exit 2) that
//! names the flag. Each refusal is a [`ValueError`], whose text clap prints after the flag.

use std::fmt;
use std::time::Duration;

use crate::duration::{self, DurationError};
use crate::reader::State;
use crate::reader::ps::ColumnError;
use crate::rundir::{self, AgentNameError, Interval, IntervalError};

/// Why a flag's (or an environment variable's) value is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueError {
    Duration(DurationError),
    Interval(IntervalError),
    /// A negative duration, as given.
    Negative(String),
    /// A duration too long to hold, as given.
    TooLong(String, std::time::TryFromFloatSecsError),
    /// Not an integer at all, as given.
    NotAPid(String),
    NotPositive(i64),
    /// Not below `pid_max` (the second value).
    OverPidMax(i64, i32),
    AgentName(AgentNameError),
    Columns(ColumnError),
    /// `prune --state`: a state named twice, one of running agents, an unknown one (with the
    /// states that may be named).
    StateTwice(String),
    StateRunning(String, &'static [State]),
    UnknownState(String, &'static [State]),
    /// `publish --ttl`: not whole seconds, or out of 2..=86400.
    TtlNotWhole(String),
    TtlRange(u64),
    /// A host or HOST/AGENT name, refused by the etcd layer's key rules.
    KeyName(String),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Duration(e) => e.fmt(f),
            ValueError::Interval(e) => e.fmt(f),
            ValueError::Negative(s) => write!(f, "a duration must not be negative, got {s}"),
            ValueError::TooLong(s, e) => write!(f, "{s}: {e}"),
            ValueError::NotAPid(s) => write!(f, "`{s}` is not a PID (a positive integer)"),
            ValueError::NotPositive(v) => write!(f, "PID must be positive, got {v}"),
            ValueError::OverPidMax(v, max) => write!(f, "PID {v} is not below pid_max ({max})"),
            ValueError::AgentName(e) => e.fmt(f),
            ValueError::Columns(e) => e.fmt(f),
            ValueError::KeyName(m) => f.write_str(m),
            ValueError::StateTwice(s) => write!(f, "state `{s}` is given twice"),
            ValueError::StateRunning(s, states) => write!(
                f,
                "`{s}` agents are still running and cannot be pruned; states: {}",
                names(states)
            ),
            ValueError::UnknownState(s, states) => {
                write!(f, "unknown state `{s}`; states: {}", names(states))
            }
            ValueError::TtlNotWhole(s) => write!(f, "`{s}` is not a whole number of seconds"),
            ValueError::TtlRange(v) => write!(f, "--ttl must be 2 to 86400 seconds, got {v}"),
        }
    }
}

impl std::error::Error for ValueError {}

fn names(states: &[State]) -> String {
    states
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(",")
}

impl From<DurationError> for ValueError {
    fn from(e: DurationError) -> ValueError {
        ValueError::Duration(e)
    }
}

pub fn parse_interval(s: &str) -> Result<Interval, ValueError> {
    Interval::new(duration::parse_secs(s)?, s).map_err(ValueError::Interval)
}

/// `--timeout`, `--older-than`: humane, not negative.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let v = duration::parse_secs(s)?;
    if v < 0.0 {
        return Err(ValueError::Negative(s.to_owned()));
    }
    Duration::try_from_secs_f64(v).map_err(|e| ValueError::TooLong(s.to_owned(), e))
}

pub fn parse_pid(s: &str) -> Result<i32, ValueError> {
    let v: i64 = s
        .trim()
        .parse()
        .map_err(|_| ValueError::NotAPid(s.to_owned()))?;
    if v <= 0 {
        return Err(ValueError::NotPositive(v));
    }
    // PIDs run from 1 to pid_max - 1.
    let max = crate::pidns::pid_max();
    if v >= i64::from(max) {
        return Err(ValueError::OverPidMax(v, max));
    }
    Ok(v as i32)
}

pub fn parse_agent(s: &str) -> Result<String, ValueError> {
    rundir::check_agent_name(s)
        .map(|()| s.to_owned())
        .map_err(ValueError::AgentName)
}
/// `AGENT`, or `HOST/AGENT` for the etcd readers (which one is allowed is checked once it is
/// known whether `--etcd` was given).
pub fn parse_agent_arg(s: &str) -> std::result::Result<String, ValueError> {
    if s.contains('/') {
        crate::cluster::keys::parse_host_agent(s)
            .map(|_| s.to_owned())
            .map_err(ValueError::KeyName)
    } else {
        parse_agent(s)
    }
}

/// `--pdeathsig`: a signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(s: &str) -> std::result::Result<rustix::process::Signal, String> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match t.parse::<i32>() {
        Ok(n) => n,
        Err(_) => (1..32)
            .find(|&n| crate::reader::ps::table::signal_name(n) == Some(name))
            .ok_or_else(|| format!("`{s}` is not a signal name (TERM, HUP, USR1 …)"))?,
    };
    rustix::process::Signal::from_named_raw(n)
        .ok_or_else(|| format!("`{s}` is not a standard signal (1 to 31)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("0.05").unwrap().secs, 0.05);
        assert_eq!(parse_interval("2m").unwrap().secs, 120.0);
        assert_eq!(parse_interval("1d").unwrap().secs, 86400.0);
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
