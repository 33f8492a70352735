//! Judging a live agent's activity from the evidence its record carries (`progress`, see
//! `record/progress.rs`), as readers judge `stale`: the watcher states facts and their times,
//! the reader applies its thresholds (`--idle-after`, `--stuck-after`).
//!
//! - `waiting`: the agent said so (`X_PIDBEAT_ACTIVITY=waiting`) and nothing since contradicts
//!   it: no CPU progress seen by a beat that began after the claim. `idle` claimed likewise.
//! - `working`: CPU progress of the tree, or a fresh `working` claim, within `--idle-after`.
//! - `stuck`: the last claim was `working` and the tree has made no CPU progress for
//!   `--stuck-after` since the claim (or its last renewal). Output, such as a
//!   spinner, is no progress here. Without a claim an agent is never `stuck`: the evidence
//!   alone cannot tell a hung call from a user's long think.
//! - `idle`: nothing for `--idle-after`.
//!
//! Every time is compared on the writer's clock: "now" is the record's write time plus its
//! age (which `clock::age` measures on the boot clock where it can).

use std::fmt;
use std::time::Duration;

use crate::record::{Claim, Progress, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Working,
    Idle,
    Waiting,
    Stuck,
}

impl Activity {
    pub const ALL: [Activity; 4] = [
        Activity::Working,
        Activity::Idle,
        Activity::Waiting,
        Activity::Stuck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activity::Working => "working",
            Activity::Idle => "idle",
            Activity::Waiting => "waiting",
            Activity::Stuck => "stuck",
        }
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub idle_after: Duration,
    pub stuck_after: Duration,
}

impl Thresholds {
    pub const DEFAULT: Thresholds = Thresholds {
        idle_after: Duration::from_secs(60),
        stuck_after: Duration::from_secs(600),
    };
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds::DEFAULT
    }
}

/// A reader's verdict on what a live agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub activity: Activity,
    /// Since the last sign of progress (CPU of the tree, a `working` claim); for `waiting`
    /// and a claimed `idle`, since the claim.
    pub idle_ms: u64,
    /// Since the agent has been in this activity, as far as the evidence shows (for
    /// `wait --until ACTIVITY --for`).
    pub for_ms: u64,
}

/// `now_ms` is the writer's wall clock now (the record's write time plus its age).
pub fn judge(record: &Record, now_ms: u64, t: &Thresholds) -> Option<Judged> {
    let p = record.progress.as_ref()?;
    let interval_ms = record
        .interval
        .filter(|i| i.is_finite() && *i > 0.0)
        .unwrap_or(15.0)
        * 1000.0;
    Some(judge_progress(p, now_ms, interval_ms as u64, t))
}

fn judge_progress(p: &Progress, now: u64, interval_ms: u64, t: &Thresholds) -> Judged {
    let since = |at: u64| now.saturating_sub(at);
    let cpu_at = p.cpu_at_ms.unwrap_or(0);
    let idle_after = t.idle_after.as_millis() as u64;
    if let (Some(claim @ (Claim::Waiting | Claim::Idle)), Some(at)) = (p.claim, p.claim_ms) {
        // A beat compares its counters with the last beat's: a change it saw is after the
        // claim only if that beat began after it.
        let contradicted = cpu_at.saturating_sub(interval_ms) > at;
        if !contradicted {
            let activity = match claim {
                Claim::Waiting => Activity::Waiting,
                _ => Activity::Idle,
            };
            let ms = since(at);
            return Judged {
                activity,
                idle_ms: ms,
                for_ms: ms,
            };
        }
    }
    let working_claim = (p.claim == Some(Claim::Working))
        .then_some(p.claim_ms)
        .flatten();
    let last = working_claim.map_or(cpu_at, |c| c.max(cpu_at));
    let idle_ms = since(last);
    if idle_ms <= idle_after {
        // Working since the start of the CPU run that is still going, or since the claim.
        let cpu_run = p.cpu_since_ms.filter(|_| since(cpu_at) <= idle_after);
        let start = match (cpu_run, working_claim) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(last),
        };
        return Judged {
            activity: Activity::Working,
            idle_ms,
            for_ms: since(start),
        };
    }
    let stuck_after = t.stuck_after.as_millis() as u64;
    if working_claim.is_some() && idle_ms >= stuck_after {
        return Judged {
            activity: Activity::Stuck,
            idle_ms,
            for_ms: idle_ms - stuck_after,
        };
    }
    Judged {
        activity: Activity::Idle,
        idle_ms,
        for_ms: idle_ms - idle_after,
    }
}

/// `hung`: the agent announced a watchdog and had sent no `WATCHDOG=1` within it when the
/// record was written (its watcher writes the moment the period runs out). Judged at the
/// write, not now: `WATCHDOG=1` rides on the beats, so the record's `watchdog_ms` is only as
/// fresh as the record.
pub fn hung(record: &Record) -> bool {
    record
        .progress
        .as_ref()
        .is_some_and(|p| p.watchdog_expired(record.written_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        idle_after: Duration::from_secs(60),
        stuck_after: Duration::from_secs(600),
    };

    fn p(cpu_at: u64, claim: Option<(Claim, u64)>) -> Progress {
        Progress {
            cpu_at_ms: Some(cpu_at),
            claim: claim.map(|c| c.0),
            claim_ms: claim.map(|c| c.1),
            ..Progress::default()
        }
    }

    fn act(p: &Progress, now: u64) -> Activity {
        judge_progress(p, now, 15_000, &T).activity
    }

    #[test]
    fn the_model() {
        let m = 60_000;
        // CPU progress within idle_after: working; then idle, never stuck without a claim.
        assert_eq!(act(&p(10 * m, None), 10 * m + 59_000), Activity::Working);
        assert_eq!(act(&p(10 * m, None), 11 * m + 1), Activity::Idle);
        assert_eq!(act(&p(10 * m, None), 100 * m), Activity::Idle);
        // A working claim and no CPU: working while fresh, idle, then stuck.
        let w = p(0, Some((Claim::Working, 10 * m)));
        assert_eq!(act(&w, 10 * m + 30_000), Activity::Working);
        assert_eq!(act(&w, 10 * m + 2 * m), Activity::Idle);
        assert_eq!(act(&w, 10 * m + 2 * m), Activity::Idle);
        let stuck = judge_progress(&w, 10 * m + 11 * m, 15_000, &T);
        assert_eq!(stuck.activity, Activity::Stuck);
        assert_eq!(stuck.idle_ms, 11 * m);
        // Waiting holds until a beat that began after the claim saw CPU.
        let wait = p(10 * m + 10_000, Some((Claim::Waiting, 10 * m)));
        assert_eq!(act(&wait, 20 * m), Activity::Waiting);
        let wait = p(10 * m + 16_000, Some((Claim::Waiting, 10 * m)));
        assert_eq!(act(&wait, 10 * m + 20_000), Activity::Working);
        // A claimed idle likewise.
        assert_eq!(act(&p(0, Some((Claim::Idle, 5))), 10), Activity::Idle);
    }

    #[test]
    fn hostile_times_saturate() {
        let line = br#"{"ts":1,"pid":2,"status":"alive","ts_ms":18446744073709551615,"interval":0.001,"progress":{"cpu_at_ms":18446744073709551615,"claim":"waiting","claim_ms":0,"watchdog_usec":18446744073709551615,"watchdog_ms":18446744073709551615}}"#;
        let (r, _) = crate::record::parse(line).unwrap();
        for now in [0, u64::MAX] {
            judge(&r, now, &T).unwrap();
        }
        assert!(!hung(&r));
    }

    #[test]
    fn hung_is_judged_at_the_write() {
        let line = br#"{"ts":10,"pid":2,"status":"alive","ts_ms":10000,"progress":{"watchdog_usec":1000000,"watchdog_ms":8500}}"#;
        let (r, _) = crate::record::parse(line).unwrap();
        assert!(hung(&r));
        let line = br#"{"ts":10,"pid":2,"status":"alive","ts_ms":9000,"progress":{"watchdog_usec":1000000,"watchdog_ms":8500}}"#;
        let (r, _) = crate::record::parse(line).unwrap();
        assert!(!hung(&r));
    }
}
