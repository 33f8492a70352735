//! pidfds on the processes a reader's verdicts depend on, in the reader's epoll set.
//!
//! A target that dies under a SIGSTOPped watcher, or a shell sidecar that is SIGKILLed,
//! changes no file: only the process's own exit can say so. A pidfd turns that exit into an
//! event, so `wait` learns of it at once instead of on its next re-check.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::process::{Pid, PidfdFlags};

/// One process incarnation; without a start time, whoever has the PID now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin {
    pub pid: i32,
    pub start_time: Option<u64>,
}

pub struct Pins {
    next_token: usize,
    open: HashMap<Pin, OwnedFd>,
}

impl Pins {
    /// Tokens from `first_token` upward are this set's; any of them means "re-check".
    pub fn new(first_token: usize) -> Pins {
        Pins {
            next_token: first_token,
            open: HashMap::new(),
        }
    }

    /// Makes the pinned set equal `wanted`. A process that cannot be pinned (already gone,
    /// or no pidfd_open on this kernel) is skipped: the caller's periodic re-check covers it.
    pub fn sync(&mut self, registry: &Registry, wanted: &HashSet<Pin>) {
        self.open.retain(|pin, fd| {
            let keep = wanted.contains(pin);
            if !keep {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            keep
        });
        for pin in wanted {
            if self.open.contains_key(pin) {
                continue;
            }
            let Some(fd) = open(*pin) else { continue };
            let token = Token(self.next_token);
            self.next_token += 1;
            // An already exited process is readable at once: epoll reports it on registration.
            if registry
                .register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
                .is_ok()
            {
                self.open.insert(*pin, fd);
            }
        }
    }
}

/// pidfd first, then the start time: if it matches, the pidfd names that incarnation (a
/// reused PID would show another start time).
fn open(pin: Pin) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pin.pid)?;
    let fd = rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK).ok()?;
    if let Some(want) = pin.start_time {
        if crate::procfs::read_stat(pin.pid).ok()?.start_time != want {
            return None;
        }
    }
    Some(fd)
}
