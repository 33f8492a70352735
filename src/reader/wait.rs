//! `pidbeat wait`: block until every named agent is dead or lost, printing one line per agent
//! as it ends: `AGENT dead code 7`, `AGENT dead signal 9`, `AGENT dead` (exit unknown),
//! `AGENT lost`. Exit 0, or 124 on `--timeout` (with the agents still awaited on stderr).
//! `--any` and `--count N` return once the first or N of them have; `--until alive` waits for
//! each to be alive instead (printing `AGENT alive`), as a launcher waits for "up".
//!
//! It blocks in the reader's one loop (`follow.rs`), pinning the targets and watchers its
//! verdicts rest on, with the graces of unsettled verdicts and `--timeout` as deadlines.
//!
//! An agent without a record is waited for (it may be starting), with one note on stderr
//! once it has had none for [`NO_RECORD_NOTE`], since a typo would otherwise hang a script
//! silently; `--exists` refuses such an agent at once (exit 4). An `unwatched` agent ends
//! when its target is proven gone, reported as `lost`: nobody recorded that death (never for
//! a record from another PID namespace, whose target cannot be seen from here). A corrupt
//! record is warned about once and waited out (a watcher may replace it).

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::activity::{Activity, Thresholds};
use super::batch::Look;
use super::follow::{Follow, Wakeups};
use super::settle::Settler;
use super::text::printable;
use super::verdict::{AgentVerdict, State};
use crate::exitcode::{ExitCode, Result};
use crate::incarnation::Incarnation;
use crate::record::{ExitInfo, Record, Status};
use crate::rundir;

/// How long a named agent may have no record before `wait` says so.
pub const NO_RECORD_NOTE: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct WaitConfig {
    pub run_dir: PathBuf,
    pub untrusted: super::trust::Untrusted,
    pub timeout: Option<Duration>,
    pub agents: Vec<String>,
    pub until: Until,
    /// Return once this many agents are done (all when `None`).
    pub count: Option<usize>,
    /// Refuse (exit 4) an agent that has no record now.
    pub exists: bool,
    /// What live agents' activity is judged by.
    pub thresholds: Thresholds,
}

/// What each agent is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Ended,
    Alive,
    /// Live and in this activity for at least this long.
    Activity(Activity, Duration),
}

pub fn command(config: WaitConfig) -> Result<ExitCode> {
    let dir = config.run_dir;
    super::trust::vet(&dir, config.untrusted)?;
    let mut waiting: Vec<String> = Vec::new();
    for a in config.agents {
        if !waiting.contains(&a) {
            waiting.push(a);
        }
    }
    if config.exists {
        let mut look = Look::new(&dir);
        let unknown: Vec<&String> = waiting.iter().filter(|a| look.judge(a).is_none()).collect();
        for a in &unknown {
            eprintln!("pidbeat: wait: {a}: no record in {}", dir.display());
        }
        if !unknown.is_empty() {
            return Ok(ExitCode::NoRecord);
        }
    }
    // The CLI refuses a count over the number of agents; duplicates may still lower it.
    let wanted_done = config.count.unwrap_or(waiting.len()).min(waiting.len());
    let mut done = 0;
    let started = Instant::now();
    let mut noted = HashSet::new();
    let deadline = config.timeout.and_then(|t| Instant::now().checked_add(t));
    // The tick is the safety-net re-check where no event can tell.
    let wakeups = Wakeups {
        every_second: true,
        quit_on_signals: false,
    };
    let mut follow = Follow::new(&dir, wakeups)?;
    let mut settler = Settler::default();
    let mut warned = HashSet::new();
    loop {
        let now = Instant::now();
        let mut next_settle: Option<Instant> = None;
        let mut wanted = HashSet::new();
        let mut look = Look::new(&dir);
        waiting.retain(|agent| {
            let Some(mut v) = look.judge(agent) else {
                if started.elapsed() >= NO_RECORD_NOTE && noted.insert(agent.clone()) {
                    eprintln!(
                        "pidbeat: wait: {agent}: still no record in {}; waiting (a typo? \
                         --exists refuses unknown agents)",
                        dir.display()
                    );
                }
                return true;
            };
            let unsettled_until = settler.settle(&mut v, now);
            next_settle = next_settle.into_iter().chain(unsettled_until).min();
            let outcome = match config.until {
                Until::Ended => ended(&v, unsettled_until.is_some()),
                Until::Alive => (v.state == State::Alive && unsettled_until.is_none())
                    .then(|| "alive".to_owned()),
                Until::Activity(want, min) => {
                    v.rejudge_activity(&config.thresholds);
                    let (done, recheck) = in_activity(&v, want, min, &config.thresholds);
                    if unsettled_until.is_none() {
                        next_settle = next_settle
                            .into_iter()
                            .chain(recheck.and_then(|d| now.checked_add(d)))
                            .min();
                    }
                    (done && unsettled_until.is_none()).then(|| want.name().to_owned())
                }
            };
            if let Some(outcome) = outcome {
                // The reader of our stdout may be gone; the exit status still matters.
                let _ = writeln!(io::stdout(), "{agent} {outcome}");
                done += 1;
                return false;
            }
            if let Some(err) = &v.error {
                if warned.insert(agent.clone()) {
                    let err = printable(err);
                    eprintln!("pidbeat: warning: {agent}: corrupt record ({err}); still waiting");
                }
            }
            if let Some(r) = &v.record {
                wanted.extend(pins_for(r));
            }
            true
        });
        if waiting.is_empty() || done >= wanted_done {
            return Ok(ExitCode::Success);
        }
        follow.pin(&wanted);

        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "pidbeat: wait: timed out; still waiting for: {}",
                waiting.join(" ")
            );
            return Ok(ExitCode::TimedOut);
        }
        let wake = deadline.into_iter().chain(next_settle).min();
        let relevant = |n: &std::ffi::OsStr| waiting.iter().any(|a| rundir::is_agent_file(n, a));
        follow.next(relevant, wake)?;
    }
}

/// Has `v` been live and in `want` for `min`? If not, when its verdict may change with time
/// alone (no record written), so the wait looks again then.
fn in_activity(
    v: &AgentVerdict,
    want: Activity,
    min: Duration,
    t: &Thresholds,
) -> (bool, Option<Duration>) {
    let Some(j) = v.activity.filter(|_| v.is_live()) else {
        return (false, None);
    };
    let min_ms = min.as_millis() as u64;
    if j.activity == want {
        if j.for_ms >= min_ms {
            return (true, None);
        }
        return (false, Some(Duration::from_millis(min_ms - j.for_ms)));
    }
    // A working agent turns idle, or stuck, once the time passes without progress.
    let idle_after = t.idle_after.as_millis() as u64;
    let at = match j.activity {
        Activity::Working => idle_after.saturating_sub(j.idle_ms) + 1,
        _ => return (false, None),
    };
    (false, Some(Duration::from_millis(at)))
}

/// The line to print if the agent has ended, per `wait`'s contract.
fn ended(v: &AgentVerdict, unsettled: bool) -> Option<String> {
    let r = v.record.as_ref()?;
    match v.state {
        // A dying agent is shown as alive/stale while unsettled, so it falls through below.
        State::Dead if !unsettled => Some(dead_line(r.exit)),
        State::Lost => Some("lost".into()),
        // A container's PID names nothing here: such a target's end cannot be seen.
        State::Unwatched
            if Incarnation::in_record(r.pid, r.start_time, r.pidns)
                .is_some_and(|target| !target.is_running()) =>
        {
            Some("lost".into())
        }
        _ => None,
    }
}

/// `wait`'s line for a dead agent: `dead code N` or `dead signal N` when the record says,
/// else `dead` (local and `--etcd` alike).
pub(crate) fn dead_line(exit: Option<ExitInfo>) -> String {
    match exit {
        Some(x) if x.code.is_some() || x.signal.is_some() => format!("dead {x}"),
        _ => "dead".into(),
    }
}

/// The processes whose exit would change this agent's verdict. None for a record of another
/// PID namespace: pinning a container's PIDs would pin whatever has those numbers here; its
/// watcher's end shows as the lock's release instead.
fn pins_for(r: &Record) -> Vec<Incarnation> {
    let mut v = Vec::new();
    if matches!(r.status, Status::Alive | Status::Unwatched) {
        v.extend(Incarnation::in_record(r.pid, r.start_time, r.pidns));
    }
    if let Some(pid) = r.watcher_pid.filter(|_| r.status != Status::Unwatched) {
        v.extend(Incarnation::in_record(pid, r.watcher_start_time, r.pidns));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_line_names_the_exit_when_known() {
        assert_eq!(
            dead_line(Some(ExitInfo::from_wait_status(7 << 8))),
            "dead code 7"
        );
        assert_eq!(
            dead_line(Some(ExitInfo::from_wait_status(9))),
            "dead signal 9"
        );
        let unknown = ExitInfo {
            code: None,
            signal: None,
            core: false,
            oom: false,
        };
        assert_eq!(dead_line(Some(unknown)), "dead");
        assert_eq!(dead_line(None), "dead");
    }
}
