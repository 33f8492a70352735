//! What every epoll loop of pidbeat (watch, wait, ps --watch) shares.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use mio::{Events, Poll};

use crate::exitcode::{Result, runtime};

/// Waits for events. `Ok(false)` when a signal interrupted the wait: the caller loops, so that
/// it recomputes its timeout and sees the signal through its own source.
pub fn wait(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> Result<bool> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(runtime!("epoll_wait: {e}")),
    }
}

/// Is `fd` readable within `timeout` (zero: right now)? For the few places that ask about
/// one fd outside an epoll set. A signal's interruption counts as "not yet".
pub fn readable_within(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut fds, Some(&crate::timer::timespec(timeout))) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
