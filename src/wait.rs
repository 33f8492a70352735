//! `pidbeat wait`: block until every named agent is dead or lost, printing one line per agent
//! as it ends: `AGENT dead code 7`, `AGENT dead signal 9`, `AGENT dead` (exit unknown),
//! `AGENT lost`. Exit 0, or 124 on `--timeout` (with the agents still awaited on stderr).
//!
//! Nothing here sleeps. One epoll set holds:
//! - inotify on the run dir: a `dead` record lands by rename, and a watcher's death closes
//!   its lock file (IN_CLOSE_WRITE), so both a clean death and a SIGKILLed watcher are events.
//!   A run dir that is missing or deleted is waited for through its nearest ancestor.
//! - pidfds on the targets and watchers the verdicts rest on: a target dying under a stopped
//!   watcher, or a sidecar being killed, changes no file.
//! - a 1 s re-check, as a safety net where neither can see (no pidfd_open, a PID from
//!   another namespace); and the graces of unsettled verdicts and `--timeout` as the poll
//!   timeout.
//!
//! An agent without a record is waited for (it may be starting). An `unwatched` agent ends
//! when its target is proven gone, reported as `lost`: nobody recorded that death. A corrupt
//! record is warned about once and waited out (a watcher may replace it).

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use std::path::PathBuf;

use crate::dirwatch::DirWatch;
use crate::exit::{ExitCode, Result, runtime};
use crate::fleet::{self, Entry, State};
use crate::layout;
use crate::pins::{Pin, Pins};
use crate::record::{Record, Status};
use crate::settle::Settler;
use crate::timer::Timer;

const DIR: Token = Token(0);
const TICK: Token = Token(1);
const FIRST_PIN: usize = 16;

/// The safety-net re-check; every expected change is an event.
const RECHECK: Duration = Duration::from_secs(1);

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

    let mut poll = Poll::new().map_err(|e| runtime!("epoll: {e}"))?;
    let mut watch = DirWatch::new(&dir).map_err(|e| {
        runtime!(
            "cannot watch {} with inotify: {e} (if the limit is reached, raise \
             fs.inotify.max_user_instances or max_user_watches)",
            dir.display()
        )
    })?;
    let tick = Timer::periodic(RECHECK).map_err(|e| runtime!("timerfd: {e}"))?;
    let reg = poll.registry();
    (|| {
        reg.register(&mut SourceFd(&watch.as_raw_fd()), DIR, Interest::READABLE)?;
        reg.register(&mut SourceFd(&tick.as_raw_fd()), TICK, Interest::READABLE)
    })()
    .map_err(|e| runtime!("epoll register: {e}"))?;

    let mut pins = Pins::new(FIRST_PIN);
    let mut settler = Settler::default();
    let mut warned = HashSet::new();
    let mut events = Events::with_capacity(16);
    let mut next_settle: Option<Instant> = None;
    let mut recheck = true;
    loop {
        if recheck {
            let now = Instant::now();
            next_settle = None;
            let mut wanted = HashSet::new();
            let mut reader = fleet::Reader::new(&dir);
            waiting.retain(|agent| {
                let Some(mut e) = reader.classify(agent) else {
                    return true;
                };
                let unsettled_until = settler.settle(&mut e, now);
                next_settle = next_settle.into_iter().chain(unsettled_until).min();
                if let Some(outcome) = ended(&e, unsettled_until.is_some()) {
                    // The reader of our stdout may be gone; the exit status still matters.
                    let _ = writeln!(io::stdout(), "{agent} {outcome}");
                    return false;
                }
                if let Some(err) = &e.error {
                    if warned.insert(agent.clone()) {
                        eprintln!(
                            "pidbeat: warning: {agent}: corrupt record ({err}); still waiting"
                        );
                    }
                }
                if let Some(r) = &e.record {
                    wanted.extend(pins_for(r));
                }
                true
            });
            if waiting.is_empty() {
                return Ok(ExitCode::Success);
            }
            pins.sync(poll.registry(), &wanted);
        }

        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            eprintln!(
                "pidbeat: wait: timed out; still waiting for: {}",
                waiting.join(" ")
            );
            return Ok(ExitCode::TimedOut);
        }
        let wake = deadline.into_iter().chain(next_settle).min();
        let timeout = wake.map(|w| w.saturating_duration_since(now));
        if !crate::eventloop::wait(&mut poll, &mut events, timeout)? {
            continue;
        }
        // No event: a grace (or the deadline) is due.
        recheck = events.is_empty();
        for ev in events.iter() {
            match ev.token() {
                DIR => {
                    // Other agents' beats and temp files are not worth a look.
                    let relevant =
                        |n: &std::ffi::OsStr| waiting.iter().any(|a| layout::is_agent_file(n, a));
                    recheck |= watch
                        .drain(relevant)
                        .map_err(|e| runtime!("inotify on {}: {e}", dir.display()))?;
                }
                TICK => {
                    tick.drain();
                    recheck = true;
                }
                // A pinned process ended; its pidfd stays readable but fires only once.
                _ => recheck = true,
            }
        }
    }
}

/// The line to print if the agent has ended, per `wait`'s contract.
fn ended(e: &Entry, unsettled: bool) -> Option<String> {
    let r = e.record.as_ref()?;
    match e.state {
        // A dying agent is shown as alive/stale while unsettled, so it falls through below.
        State::Dead if !unsettled => Some(match r.exit {
            Some(x) if x.code.is_some() || x.signal.is_some() => format!("dead {x}"),
            _ => "dead".into(),
        }),
        State::Lost => Some("lost".into()),
        State::Unwatched if !fleet::target_alive(r) => Some("lost".into()),
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
