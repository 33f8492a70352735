//! `pidbeat wait`: block until every named agent is dead or lost, printing one line per agent
//! as it ends: `AGENT dead code 7`, `AGENT dead signal 9`, `AGENT dead` (exit unknown),
//! `AGENT lost`. Exit 0, or 124 on `--timeout` (with the agents still awaited on stderr).
//!
//! It blocks in the reader's one loop (`follow.rs`), pinning the targets and watchers its
//! verdicts rest on, with the graces of unsettled verdicts and `--timeout` as deadlines.
//!
//! An agent without a record is waited for (it may be starting). An `unwatched` agent ends
//! when its target is proven gone, reported as `lost`: nobody recorded that death (never for
//! a record from another PID namespace, whose target cannot be seen from here). A corrupt
//! record is warned about once and waited out (a watcher may replace it).

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::follow::{Follow, Wakeups};
use super::look::Look;
use super::pins::Pin;
use super::settle::Settler;
use super::text::printable;
use super::verdict::{AgentVerdict, State};
use crate::exit::{ExitCode, Result};
use crate::layout;
use crate::procfs;
use crate::record::{Record, Status};

#[derive(Debug)]
pub struct WaitConfig {
    pub run_dir: PathBuf,
    pub timeout: Option<Duration>,
    pub agents: Vec<String>,
}

pub fn command(config: WaitConfig) -> Result<ExitCode> {
    let dir = config.run_dir;
    let mut waiting: Vec<String> = Vec::new();
    for a in config.agents {
        if !waiting.contains(&a) {
            waiting.push(a);
        }
    }
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
                return true;
            };
            let unsettled_until = settler.settle(&mut v, now);
            next_settle = next_settle.into_iter().chain(unsettled_until).min();
            if let Some(outcome) = ended(&v, unsettled_until.is_some()) {
                // The reader of our stdout may be gone; the exit status still matters.
                let _ = writeln!(io::stdout(), "{agent} {outcome}");
                return false;
            }
            if let Some(err) = &v.error {
                if warned.insert(agent.clone()) {
                    let err = printable(err);
                    eprintln!("pidbeat: warning: {agent}: corrupt record ({err}); still waiting");
                }
            }
            // Pinning a container's PIDs would pin whatever has those numbers here; its
            // watcher's end shows as the lock's release instead.
            if let Some(r) = v.record.as_ref().filter(|_| !v.foreign_pids) {
                wanted.extend(pins_for(r));
            }
            true
        });
        if waiting.is_empty() {
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
        let relevant = |n: &std::ffi::OsStr| waiting.iter().any(|a| layout::is_agent_file(n, a));
        follow.next(relevant, wake)?;
    }
}

/// The line to print if the agent has ended, per `wait`'s contract.
fn ended(v: &AgentVerdict, unsettled: bool) -> Option<String> {
    let r = v.record.as_ref()?;
    match v.state {
        // A dying agent is shown as alive/stale while unsettled, so it falls through below.
        State::Dead if !unsettled => Some(match r.exit {
            Some(x) if x.code.is_some() || x.signal.is_some() => format!("dead {x}"),
            _ => "dead".into(),
        }),
        State::Lost => Some("lost".into()),
        // A container's PID names nothing here: such a target's end cannot be seen.
        State::Unwatched if !v.foreign_pids && !procfs::still_running(r.pid, r.start_time) => {
            Some("lost".into())
        }
        _ => None,
    }
}

/// The processes whose exit would change this agent's verdict.
fn pins_for(r: &Record) -> Vec<Pin> {
    let mut v = Vec::new();
    if matches!(r.status, Status::Alive | Status::Unwatched) {
        v.push(Pin {
            pid: r.pid,
            start_time: r.start_time,
        });
    }
    if let Some(pid) = r.watcher_pid.filter(|_| r.status != Status::Unwatched) {
        v.push(Pin {
            pid,
            start_time: r.watcher_start_time,
        });
    }
    v
}
