//! What every epoll loop of pidbeat (watch, wait, ps --watch) shares.

use std::io;
use std::time::Duration;

use mio::{Events, Poll};

use crate::error::Result;
use crate::runtime;

/// Waits for events. `Ok(false)` when a signal interrupted the wait: the caller loops, so that
/// it recomputes its timeout and sees the signal through its own source.
pub fn wait(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> Result<bool> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(runtime!("epoll_wait: {e}")),
    }
}
