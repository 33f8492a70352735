//! `run`'s signals, as tini handles them: every signal a process can catch is blocked and
//! read from a signalfd, then forwarded to the child (or, with `--kill-group`, to its process
//! group), so none kills or stops pidbeat, whatever the parent blocked or ignored. Not
//! forwarded:
//!
//! - SIGCHLD: it tells pidbeat to reap (the child, and orphans as PID 1 or `--subreaper`).
//! - SIGTTIN and SIGTTOU, ignored as tini ignores them: the kernel sends them to a
//!   background process that touches its terminal, so they concern pidbeat (which may write a
//!   warning from the background once the child holds the foreground) and never the child,
//!   which gets its own from the kernel. Ignoring them keeps pidbeat from ever being stopped.
//! - SIGKILL and SIGSTOP, which no process can catch.
//! - 32 and 33, which glibc reserves for its threads and will not let anyone block.
//!
//! Synchronous faults (SIGSEGV, SIGBUS, …) raised by pidbeat's own code still kill it: the
//! kernel unblocks a fault's signal and applies the default action. Sent with kill(2), they
//! are forwarded like the rest.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::super::target::Target;
use crate::exitcode::{Result, runtime};
use crate::sys::{self, SigBits, sig_bit};

/// Signals `run` never takes over (see the module's comment).
const KEPT: [i32; 6] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    32,
    33,
];

/// The signals whose disposition pidbeat's process has changed from the inherited one (std's
/// start-up code ignores SIGPIPE; `take_over` sets the other three): the child's start sets
/// them back.
pub const CHANGED: SigBits = sig_bit(libc::SIGPIPE)
    | sig_bit(libc::SIGTTIN)
    | sig_bit(libc::SIGTTOU)
    | sig_bit(libc::SIGCHLD);

/// Every signal `run` reads and (except SIGCHLD) forwards.
pub fn taken() -> SigBits {
    let all = (1..=sys::SIG_MAX).fold(0, |b, s| b | sig_bit(s));
    KEPT.iter().fold(all, |b, &s| b & !sig_bit(s))
}

/// The signalfd of every taken signal.
pub struct Forwarded {
    fd: OwnedFd,
    /// `--kill-group`: forward to the child's process group.
    pub kill_group: bool,
}

/// Takes over the signals. Call it before spawning anything, so that no signal can arrive
/// while its default action (die, stop, or nothing as PID 1) is still in place.
pub fn take_over(kill_group: bool) -> Result<Forwarded> {
    let bits = taken();
    let fail = |what: &str, e: io::Error| runtime!("cannot take over signals ({what}): {e}");
    sys::mask_signals(bits, true).map_err(|e| fail("block", e))?;
    let fd = sys::signalfd(bits).map_err(|e| fail("signalfd", e))?;
    for (sig, ignore) in [
        (libc::SIGTTIN, true),
        (libc::SIGTTOU, true),
        // An inherited SIGCHLD ignore would make the kernel reap the child itself, and its
        // status would be lost.
        (libc::SIGCHLD, false),
    ] {
        sys::set_ignored(sig, ignore).map_err(|e| fail("sigaction", e))?;
    }
    Ok(Forwarded { fd, kill_group })
}

impl Forwarded {
    pub fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        reg.register(
            &mut SourceFd(&self.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Drains the signalfd (mio is edge-triggered): the signals that arrived, in order.
    pub fn pending(&mut self) -> Vec<i32> {
        let mut sigs = Vec::new();
        // struct signalfd_siginfo: 128 bytes, ssi_signo (u32) first.
        let mut buf = [0u8; 128];
        while let Ok(128) = rustix::io::read(&self.fd, &mut buf) {
            sigs.push(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as i32);
        }
        sigs
    }
}

/// Forwards `sig` to the child, or to its process group (`group`). If the group is gone (the
/// child left it, by setsid or setpgid), the child alone gets it.
/// Named signals go the typed way; real-time ones, which rustix will not name, the raw way.
pub fn forward(target: &Target, sig: i32, group: bool) {
    let fd = target.incarnation.pidfd();
    if group && sys::send_signal(fd, target.pid(), sig, true) {
        return;
    }
    match rustix::process::Signal::from_named_raw(sig) {
        Some(s) => target.signal(s),
        None => {
            sys::send_signal(fd, target.pid(), sig, false);
        }
    }
}
