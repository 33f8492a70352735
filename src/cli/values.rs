//! The value parsers: every bad flag or env value becomes a clap usage error (exit 2) that
//! names the flag.

use std::time::Duration;

use crate::duration;
use crate::rundir::{self, Interval};

pub fn parse_secs(s: &str) -> std::result::Result<f64, String> {
    duration::parse_secs(s)
}

pub fn parse_interval(s: &str) -> std::result::Result<Interval, String> {
    Interval::new(parse_secs(s)?, s)
}

/// `--timeout`, `--older-than`: humane, not negative.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let v = parse_secs(s)?;
    if v < 0.0 {
        return Err(format!("a duration must not be negative, got {s}"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s}: {e}"))
}

pub fn parse_pid(s: &str) -> std::result::Result<i32, String> {
    let v: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a PID (a positive integer)"))?;
    if v <= 0 {
        return Err(format!("PID must be positive, got {v}"));
    }
    // PIDs run from 1 to pid_max - 1.
    let max = i64::from(crate::pidns::pid_max());
    if v >= max {
        return Err(format!("PID {v} is not below pid_max ({max})"));
    }
    Ok(v as i32)
}

pub fn parse_agent(s: &str) -> std::result::Result<String, String> {
    rundir::validate_agent(s).map(|()| s.to_owned())
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
