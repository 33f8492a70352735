//! The one loop a reader blocks in (`wait`, `ps --watch`, and one-shot `ps` waiting out a
//! dying agent's grace). Nothing here sleeps. One epoll set holds:
//! - inotify on the run dir (`dirwatch.rs`): a record lands by rename, and a watcher's death
//!   closes its lock file, so both a clean death and a SIGKILLed watcher are events.
//! - pidfds on the processes the caller's verdicts rest on (`pins.rs`): a target dying under
//!   a stopped watcher, or a sidecar being killed, changes no file.
//! - optionally a 1 s tick: `wait`'s safety net where neither can see (no pidfd_open, a PID
//!   from another namespace), and `ps --watch`'s ages;
//! - optionally SIGINT/SIGTERM, which end `ps --watch` cleanly;
//! - and the caller's next deadline (a grace, `--timeout`) as the poll timeout.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::dirwatch::DirWatch;
use super::pins::Pins;
use crate::eventloop;
use crate::exitcode::{Result, runtime};
use crate::incarnation::Incarnation;
use crate::timer::Timer;

const SIG: Token = Token(0);
const DIR: Token = Token(1);
const TICK: Token = Token(2);
const FIRST_PIN: usize = 16;

/// The tick's period; every expected change is an event.
const TICK_PERIOD: Duration = Duration::from_secs(1);

/// What wakes a [`Follow`] besides the run dir, pinned exits and deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wakeups {
    pub every_second: bool,
    /// SIGINT and SIGTERM end the follow ([`Woken::Quit`]) instead of the process.
    pub quit_on_signals: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Something may have changed, or a deadline is due: look again.
    Look,
    Quit,
}

pub struct Follow {
    poll: Poll,
    events: Events,
    dir: DirWatch,
    dir_path: std::path::PathBuf,
    tick: Option<Timer>,
    signals: Option<Signals>,
    pins: Pins,
}

impl Follow {
    pub fn new(dir: &Path, wakeups: Wakeups) -> Result<Follow> {
        // Before anything else: a SIGTERM must not find the default action (die) in place.
        let signals = match wakeups.quit_on_signals {
            true => Some(
                Signals::new([SIGINT, SIGTERM])
                    .map_err(|e| runtime!("cannot handle signals: {e}"))?,
            ),
            false => None,
        };
        let poll = Poll::new().map_err(|e| runtime!("epoll: {e}"))?;
        let watch = DirWatch::new(dir).map_err(|e| {
            // Only these two errnos mean a limit; EACCES, ENOTDIR … say what they say.
            let hint = match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENOSPC) => {
                    " (the inotify limit is reached: raise fs.inotify.max_user_instances or \
                     max_user_watches)"
                }
                _ => "",
            };
            runtime!("cannot watch {} with inotify: {e}{hint}", dir.display())
        })?;
        let tick = match wakeups.every_second {
            true => Some(Timer::periodic(TICK_PERIOD).map_err(|e| runtime!("timerfd: {e}"))?),
            false => None,
        };
        let mut f = Follow {
            poll,
            events: Events::with_capacity(16),
            dir: watch,
            dir_path: dir.to_path_buf(),
            tick,
            signals,
            pins: Pins::new(FIRST_PIN),
        };
        f.register().map_err(|e| runtime!("epoll register: {e}"))?;
        Ok(f)
    }

    fn register(&mut self) -> std::io::Result<()> {
        let reg = self.poll.registry();
        if let Some(s) = &mut self.signals {
            reg.register(s, SIG, Interest::READABLE)?;
        }
        reg.register(
            &mut SourceFd(&self.dir.as_raw_fd()),
            DIR,
            Interest::READABLE,
        )?;
        if let Some(t) = &self.tick {
            reg.register(&mut SourceFd(&t.as_raw_fd()), TICK, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Makes the pinned processes exactly `wanted`.
    pub fn pin(&mut self, wanted: &HashSet<Incarnation>) {
        self.pins.sync(self.poll.registry(), wanted);
    }

    /// Blocks until a run-dir entry that `relevant` accepts changes (or the run dir itself
    /// appears, goes or moves), a pinned process ends, the tick fires, `until` passes, or a
    /// quit signal arrives. Other agents' beats and temp files do not wake the caller.
    pub fn next(
        &mut self,
        relevant: impl Fn(&OsStr) -> bool,
        until: Option<Instant>,
    ) -> Result<Woken> {
        loop {
            let timeout = until.map(|t| t.saturating_duration_since(Instant::now()));
            if !eventloop::wait(&mut self.poll, &mut self.events, timeout)? {
                continue;
            }
            // No event: the deadline is due.
            let mut look = self.events.is_empty();
            for ev in self.events.iter() {
                match ev.token() {
                    SIG => {
                        let quit = |s| s == SIGINT || s == SIGTERM;
                        if self.signals.as_mut().is_some_and(|s| s.pending().any(quit)) {
                            return Ok(Woken::Quit);
                        }
                    }
                    DIR => {
                        look |= self
                            .dir
                            .drain(&relevant)
                            .map_err(|e| runtime!("inotify on {}: {e}", self.dir_path.display()))?;
                    }
                    TICK => {
                        if let Some(t) = &self.tick {
                            t.drain();
                        }
                        look = true;
                    }
                    // A pinned process ended; its pidfd stays readable but fires only once.
                    _ => look = true,
                }
            }
            if look {
                return Ok(Woken::Look);
            }
        }
    }
}
