//! The bridge's side of the run dir: the reader's verdicts (`reader::look`, with `settle`'s
//! graces), followed in the reader's one loop (`reader::follow`) as records and locks change,
//! offered to the [`Outbox`].
//!
//! Only the agents whose files changed are judged again (a fleet of 1000 beats 67 times a
//! second at 15 s); every [`FULL_LOOK`] all are, for what no file shows: a record ageing into
//! `stale`, a target dying under a stopped watcher, a dying agent's grace running out. A
//! `dead` verdict whose exit status is still on its way (the watcher waits up to a second for
//! it) is held back within its grace, as local `wait` does, so that remote readers get the
//! exit code with the death.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Outbox, Verdict};
use crate::exitcode::Result;
use crate::reader::batch::Look;
use crate::reader::file::list_agents;
use crate::reader::follow::{Follow, Wakeups, Woken};
use crate::reader::ps::json;
use crate::reader::settle::Settler;
use crate::reader::verdict::Unsettled;
use crate::rundir;

/// How often every agent is judged again, for changes no file shows (the follow loop's
/// tick is the clock).
pub const FULL_LOOK: Duration = Duration::from_secs(1);

pub struct Local<'a> {
    dir: &'a Path,
    host: &'a str,
    follow: Follow,
    settler: Settler,
    /// When the first running grace ends.
    next_settle: Option<Instant>,
    buf: Vec<u8>,
}

impl<'a> Local<'a> {
    /// The follow loop (signals, inotify, a 1 s tick) first, so nothing that happens after
    /// the first look is missed.
    pub fn new(dir: &'a Path, host: &'a str) -> Result<Local<'a>> {
        let wakeups = Wakeups {
            every_second: true,
            quit_on_signals: true,
        };
        Ok(Local {
            dir,
            host,
            follow: Follow::new(dir, wakeups)?,
            settler: Settler::default(),
            next_settle: None,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Judges every agent with a record, and drops the verdicts of those without one.
    pub fn look_all(&mut self, outbox: &Outbox) {
        let agents = match list_agents(self.dir) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                eprintln!("pidbeat publish: cannot list {}: {e}", self.dir.display());
                return;
            }
        };
        for gone in outbox.agents() {
            if agents.binary_search(&gone).is_err() {
                outbox.remove(&gone);
            }
        }
        self.next_settle = None;
        self.judge(agents.iter(), outbox);
    }

    /// Judges `agents` now and offers their verdicts.
    fn judge<'n>(&mut self, agents: impl Iterator<Item = &'n String>, outbox: &Outbox) {
        let mut look = Look::new(self.dir);
        let now = Instant::now();
        for agent in agents {
            let Some(mut v) = look.judge(agent) else {
                outbox.remove(agent);
                continue;
            };
            let until = self.settler.settle(&mut v, now);
            self.next_settle = self.next_settle.into_iter().chain(until).min();
            if until.is_some() && v.unsettled == Some(Unsettled::ExitPending) {
                // The exit status is on its way: publish the death with it.
                continue;
            }
            self.buf.clear();
            json::object(&mut self.buf, &v);
            match Verdict::new(self.host, &self.buf) {
                Ok(v) => {
                    outbox.offer(agent, v);
                }
                Err(err) => eprintln!("pidbeat publish: {agent}: {err}"),
            }
        }
    }

    /// Follows the run dir until SIGINT/SIGTERM.
    pub fn run(&mut self, outbox: &Outbox) -> Result<()> {
        let mut next_full = Instant::now() + FULL_LOOK;
        loop {
            // The names of changed records and locks say whose verdict may have changed.
            let changed = RefCell::new(BTreeSet::new());
            let relevant = |name: &std::ffi::OsStr| {
                let agent = name
                    .to_str()
                    .filter(|_| rundir::is_fleet_file(name))
                    .and_then(|n| rundir::agent_of_record(n).or_else(|| rundir::agent_of_lock(n)))
                    .filter(|a| rundir::validate_agent(a).is_ok());
                if let Some(a) = agent {
                    changed.borrow_mut().insert(a.to_owned());
                }
                agent.is_some()
            };
            if self.follow.next(relevant, self.next_settle)? == Woken::Quit {
                return Ok(());
            }
            let changed = changed.into_inner();
            let now = Instant::now();
            // No names: the tick, a grace's end, or a change inotify could not name (a queue
            // overflow, the run dir itself).
            if changed.is_empty() || now >= next_full {
                self.look_all(outbox);
                next_full = Instant::now() + FULL_LOOK;
            } else {
                self.judge(changed.iter(), outbox);
            }
        }
    }
}
