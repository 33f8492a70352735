//! The bridge's side of the run dir: the reader's verdicts (`fleet`, with `settle`'s graces),
//! followed through inotify as records and locks change, offered to the [`Outbox`].
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
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::publish::{Outbox, Verdict};
use crate::dirwatch::{self, DirWatch};
use crate::error::Result;
use crate::fleet::{self, Unsettled};
use crate::rundir;
use crate::runtime;
use crate::settle::Settler;

/// How often every agent is judged again, for changes no file shows.
pub const FULL_LOOK: Duration = Duration::from_secs(1);

const SIG: Token = Token(0);
const DIR: Token = Token(1);

pub struct Local<'a> {
    dir: &'a Path,
    host: &'a str,
    poll: Poll,
    events: Events,
    watch: DirWatch,
    signals: Signals,
    settler: Settler,
    /// Agents with a grace running, and when the first ends.
    next_settle: Option<Instant>,
    buf: Vec<u8>,
}

impl<'a> Local<'a> {
    /// Signals and inotify first, so nothing that happens after the first look is missed.
    pub fn new(dir: &'a Path, host: &'a str) -> Result<Local<'a>> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|e| runtime!("cannot handle signals: {e}"))?;
        let poll = Poll::new().map_err(|e| runtime!("epoll: {e}"))?;
        let watch = DirWatch::new(dir).map_err(|e| {
            runtime!(
                "cannot watch {} with inotify: {e} (if the limit is reached, raise \
                 fs.inotify.max_user_instances or max_user_watches)",
                dir.display()
            )
        })?;
        let reg = poll.registry();
        (|| {
            reg.register(&mut signals, SIG, Interest::READABLE)?;
            reg.register(&mut SourceFd(&watch.as_raw_fd()), DIR, Interest::READABLE)
        })()
        .map_err(|e| runtime!("epoll register: {e}"))?;
        Ok(Local {
            dir,
            host,
            poll,
            events: Events::with_capacity(16),
            watch,
            signals,
            settler: Settler::default(),
            next_settle: None,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Judges every agent with a record, and drops the verdicts of those without one.
    pub fn look_all(&mut self, outbox: &Outbox) {
        let agents = match fleet::list_agents(self.dir) {
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
        let mut reader = fleet::Reader::new(self.dir);
        let now = Instant::now();
        for agent in agents {
            let Some(mut e) = reader.classify(agent) else {
                outbox.remove(agent);
                continue;
            };
            let until = self.settler.settle(&mut e, now);
            self.next_settle = self.next_settle.into_iter().chain(until).min();
            if until.is_some() && e.unsettled == Some(Unsettled::ExitPending) {
                // The exit status is on its way: publish the death with it.
                continue;
            }
            self.buf.clear();
            crate::ps::json::object(&mut self.buf, &e);
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
            let wake = self.next_settle.map_or(next_full, |s| s.min(next_full));
            let timeout = wake.saturating_duration_since(Instant::now());
            if !crate::eventloop::wait(&mut self.poll, &mut self.events, Some(timeout))? {
                continue;
            }
            let changed = RefCell::new(BTreeSet::new());
            let mut overflow = false;
            for ev in self.events.iter() {
                match ev.token() {
                    SIG if self.signals.pending().any(|s| s == SIGINT || s == SIGTERM) => {
                        return Ok(());
                    }
                    DIR => {
                        // The names say whose verdict may have changed; a queue overflow or the
                        // run dir itself changing (names unknown) asks for a full look.
                        let any = self
                            .watch
                            .drain(|name| {
                                let agent = name.to_str().and_then(|n| {
                                    rundir::agent_of_record(n).or_else(|| rundir::agent_of_lock(n))
                                });
                                match agent {
                                    Some(a) if dirwatch::is_fleet_file(name) => {
                                        changed.borrow_mut().insert(a.to_owned());
                                        false
                                    }
                                    _ => false,
                                }
                            })
                            .map_err(|e| runtime!("inotify on {}: {e}", self.dir.display()))?;
                        overflow |= any;
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if overflow || now >= next_full || self.next_settle.is_some_and(|s| now >= s) {
                self.look_all(outbox);
                next_full = Instant::now() + FULL_LOOK;
            } else {
                let changed = changed.into_inner();
                let valid = changed
                    .iter()
                    .filter(|a| crate::cli::validate_agent(a).is_ok());
                self.judge(valid, outbox);
            }
        }
    }
}
