//! pidfds on the processes a reader's verdicts depend on, in the reader's epoll set.
//!
//! A target that dies under a SIGSTOPped watcher, or a shell sidecar that is SIGKILLed,
//! changes no file: only the process's own exit can say so. A pidfd turns that exit into an
//! event, so `wait` learns of it at once instead of on its next re-check.

use std::collections::HashSet;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::incarnation::Incarnation;

pub struct Pins {
    next_token: usize,
    /// Each with its pidfd.
    open: HashSet<Incarnation>,
}

impl Pins {
    /// Tokens from `first_token` upward are this set's; any of them means "re-check".
    pub fn new(first_token: usize) -> Pins {
        Pins {
            next_token: first_token,
            open: HashSet::new(),
        }
    }

    /// Makes the pinned set equal `wanted` ([`Incarnation::pin`]). A process that cannot be pinned (already gone,
    /// or no pidfd_open on this kernel) is skipped: the caller's periodic re-check covers it.
    pub fn sync(&mut self, registry: &Registry, wanted: &HashSet<Incarnation>) {
        self.open.retain(|pinned| {
            let keep = wanted.contains(pinned);
            if let Some(fd) = pinned.pidfd().filter(|_| !keep) {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            keep
        });
        for want in wanted {
            if self.open.contains(want) {
                continue;
            }
            let Some(pinned) = want.pin() else { continue };
            let Some(fd) = pinned.pidfd().map(|fd| fd.as_raw_fd()) else {
                continue;
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            // An already exited process is readable at once: epoll reports it on registration.
            if registry
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
                .is_ok()
            {
                self.open.insert(pinned);
            }
        }
    }
}
