//! Deaths the watcher handles: its target's (the `dead` record is written first, then again
//! with the exit status once the kernel knows it) and, under `run` as a container's PID 1,
//! those of the orphans it inherits.
//!
//! From the pidfd event to the `dead` rename, and on to the rewrite with the status, nothing
//! is allocated: the record's line has its room reserved at start, and the writer's names and
//! paths are prepared or formatted on the stack (`store.rs`, `procfs.rs`). Running out of
//! memory at that moment cannot cost the record; a unit test below counts the allocations.

use std::time::{Duration, Instant};

use mio::{Events, Poll};
use rustix::process::WaitOptions;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::target::ExitQuery;
use super::{Mode, Outcome, Signals, Watcher, retry_period};
use crate::exitcode::Result;
use crate::record::{ExitInfo, Status, now_ms};
use crate::rundir::EXIT_GRACE;

impl Watcher {
    /// As a container's PID 1 we inherit every orphan; reap them all so none stays a zombie.
    /// Our own child's status is kept for its `dead` record. Any child, whatever its process
    /// group (`run`'s child has its own): rustix's `waitpid(None)` would ask only ours.
    pub(super) fn reap_orphans(&mut self) {
        while let Ok(Some((pid, st))) = rustix::process::wait(WaitOptions::NOHANG) {
            if pid.as_raw_nonzero().get() == self.target.pid() {
                self.child_exit = Some(ExitInfo::from_wait_status(st.as_raw()));
            }
        }
    }

    pub(super) fn on_death(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        signals: &mut Signals,
    ) -> Result<Outcome> {
        let died_ms = now_ms();
        let mut query = if self.target.is_child {
            match self.child_exit.or_else(|| self.target.reap_child()) {
                Some(e) => ExitQuery::Known(e),
                None => ExitQuery::Unknowable,
            }
        } else {
            self.target.query_exit()
        };
        let known = |q: ExitQuery| match q {
            ExitQuery::Known(e) => Some(e),
            _ => None,
        };
        // The death is written first, whatever we know of the exit: a reader must not wait.
        // `watch` exists to record it, so it retries until the run dir takes it (or SIGTERM);
        // `run` must hand back the child's status at once, so it tries once more, no longer.
        let mut retries = (self.mode == Mode::Run).then_some(1);
        while self
            .write(Status::Dead, known(query), Some(died_ms), true)?
            .is_err()
        {
            if let Some(n @ 1..) = retries {
                retries = Some(n - 1);
                continue;
            }
            if retries.is_some() {
                self.warn_unrecorded_death();
                return Ok(Outcome::Dead(known(query)));
            }
            let _ = poll.poll(events, Some(retry_period(self.interval)));
            if signals.pending().any(|s| s == SIGTERM || s == SIGINT) {
                return Ok(Outcome::Dead(known(query)));
            }
        }
        let first = known(query);
        if first.is_none() && !self.target.is_child {
            // The zombie itself may still hold its status (its parent has not reaped it):
            // no wait at all, whoever the parent is. Once reaped, only the kernel may know.
            query = match self.target.zombie_exit() {
                Some(e) => ExitQuery::Known(e),
                None => self.target.query_exit(),
            };
        }
        if query == ExitQuery::Pending {
            // A non-child's status exists only after its parent reaps it; the pidfd fires
            // again then (EPOLLHUP). Wait for that, bounded, re-asking on every wakeup.
            let deadline = Instant::now() + EXIT_GRACE;
            while query == ExitQuery::Pending {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = poll.poll(events, Some(left.min(Duration::from_millis(50))));
                if signals.pending().any(|s| s == SIGTERM || s == SIGINT) {
                    break;
                }
                query = self.target.query_exit();
            }
        }
        match query {
            ExitQuery::Known(e) if first.is_none() => {
                let _ = self.write(Status::Dead, Some(e), Some(died_ms), true)?;
            }
            ExitQuery::Known(_) => {}
            // Say why, so that `ps` can: still unreaped, its status is hidden from us (another
            // user's zombie); reaped, the kernel keeps no status for a non-child here.
            _ if !self.target.is_child => {
                let unreaped = self.target.is_unreaped_zombie();
                self.exit_unknown = Some(if unreaped { "hidden" } else { "reaped" });
                let _ = self.write(Status::Dead, None, Some(died_ms), true)?;
            }
            _ => {}
        }
        Ok(Outcome::Dead(known(query)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::process::Command;

    use mio::Interest;
    use mio::unix::SourceFd;

    use super::*;
    use crate::incarnation::tests::Reaped;
    use crate::rundir::Interval;
    use crate::sys::counting::allocations_in;
    use crate::watcher::lock::AgentLock;
    use crate::watcher::target::{BackendPref, Target};
    use crate::watcher::{TARGET, WriterConfig};

    /// From the pidfd event to the `dead` rename, and on to the rewrite with the exit status,
    /// the watcher allocates nothing: against a real process, in a real run dir. The target
    /// is not reaped (its status comes from the zombie, then the record is rewritten), or
    /// reaped before the event is handled (PIDFD_INFO_EXIT has it at once, on 6.15+).
    #[test]
    fn the_death_path_allocates_nothing() {
        for reaped in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let config = WriterConfig {
                agent: "a".into(),
                run_dir: dir.path().to_path_buf(),
                interval: Interval::DEFAULT,
                progress: true,
                watchdog: None,
            };
            let mut child = Reaped::spawn(Command::new("sleep").arg("30"));
            let target = Target::open(child.pid(), BackendPref::Pidfd, false).unwrap();
            let pidfd = target.incarnation.pidfd().unwrap().as_raw_fd();
            let lock = AgentLock::acquire(dir.path(), "a").unwrap();
            let mut watcher = Watcher::new(target, &config, Mode::Watch, Some(lock));
            let mut poll = Poll::new().unwrap();
            poll.registry()
                .register(&mut SourceFd(&pidfd), TARGET, Interest::READABLE)
                .unwrap();
            let mut events = Events::with_capacity(8);
            let mut signals = Signals::Watch(signal_hook_mio::v1_0::Signals::new([0; 0]).unwrap());
            watcher
                .write(Status::Alive, None, None, false)
                .unwrap()
                .unwrap();

            // Evidence of every kind, the STATUS= text among it, rides in the dead record.
            let p = watcher.progress.as_mut().expect("progress is sampled");
            crate::watcher::notify::apply(
                b"STATUS=compiling\nX_PIDBEAT_ACTIVITY=working\nWATCHDOG_USEC=1000000",
                p,
                crate::record::now_ms(),
            );
            watcher.sample();
            watcher.target.signal(rustix::process::Signal::KILL);
            if reaped {
                child.0.wait().unwrap();
            }
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "the pidfd event");

            let (outcome, allocations) =
                allocations_in(|| watcher.on_death(&mut poll, &mut events, &mut signals));
            let exit = match outcome {
                Ok(Outcome::Dead(exit)) => exit,
                other => panic!("{other:?}"),
            };
            let kernel_knows = crate::procfs::kernel_version().is_some_and(|v| v >= (6, 15));
            if !reaped || kernel_knows {
                assert_eq!(exit.and_then(|e| e.signal), Some(9), "reaped: {reaped}");
            }
            assert_eq!(allocations, 0, "reaped: {reaped}");
            let line = std::fs::read_to_string(dir.path().join("a.hb")).unwrap();
            let (record, _) = crate::record::parse(line.as_bytes()).unwrap();
            assert_eq!((record.status, record.exit), (Status::Dead, exit), "{line}");
            let p = record.progress.expect("the evidence is in the dead record");
            assert_eq!(p.status_text.as_deref(), Some("compiling"), "{line}");
        }
    }
}
