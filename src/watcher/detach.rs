//! `--detach`: fork into a new session, and let the parent return only once the child has
//! put its first `alive` record on disk (then it prints the child's PID), or failed (then with
//! the child's own exit code), or missed the ready deadline (then the child is stopped).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::eventloop;
use crate::exitcode::{ExitCode, Result, runtime};
use crate::sys::{self, Fork};

const READY: u8 = b'R';

/// How long the parent waits for the first record. The first record takes milliseconds; a
/// watcher that takes longer is wedged (a hung filesystem, say), and its caller would rather
/// hear so than hang. Below the launcher's own 10 s timeout, so pidbeat reports it first.
const READY_DEADLINE: Duration = Duration::from_secs(5);

pub enum Detach {
    /// In the parent, once the child is ready: the status to exit with.
    Parent(ExitCode),
    /// In the child, which goes on to watch.
    Child(Detached),
}

/// Held by the detached child until it is ready.
pub struct Detached {
    ready_tx: OwnedFd,
}

/// Forks. The parent waits for the child's first record: `Ok(Parent)` once it is on disk
/// (its PID printed), an error if the child dies first without a status of its own to pass on
/// (a child that fails has already printed why, and its status is passed on) or misses
/// [`READY_DEADLINE`].
pub fn detach() -> Result<Detach> {
    let (rx, tx) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| runtime!("pipe: {e}"))?;
    // SAFETY: `watch --detach` forks first thing, before pidbeat has started any thread
    // (signal-hook-mio and mio start none, and the signal handlers are installed after this),
    // so the process is single-threaded.
    #[allow(unsafe_code)]
    let forked = unsafe { sys::fork() };
    match forked.map_err(|e| runtime!("fork: {e}"))? {
        Fork::Parent(child) => {
            drop(tx);
            await_ready(&rx, child).map(Detach::Parent)
        }
        Fork::Child => {
            drop(rx);
            // SAFETY: right after the fork, the only descriptors >= 3 that pidbeat has opened
            // are the ready pipe's ends: `rx` is closed just above, `tx` is kept. Everything
            // else above 2 was inherited from the caller, and no object of ours owns it.
            #[allow(unsafe_code)]
            unsafe {
                sys::close_inherited_fds(tx.as_fd())
            };
            // A new session: no controlling terminal, no SIGHUP from the caller's shell.
            let _ = rustix::process::setsid();
            Ok(Detach::Child(Detached { ready_tx: tx }))
        }
    }
}

fn await_ready(rx: &OwnedFd, child: i32) -> Result<ExitCode> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // `false` is the deadline or a signal's interruption: the loop tells them apart.
        if eventloop::readable_within(rx, left).map_err(|e| runtime!("poll: {e}"))? {
            break;
        }
        if left.is_zero() {
            // SIGTERM, not SIGKILL: a watcher that got as far as its loop records `unwatched`.
            if let Some(p) = Pid::from_raw(child) {
                let _ = rustix::process::kill_process(p, Signal::TERM);
            }
            return Err(runtime!(
                "the detached watcher (pid {child}) wrote no first record within {} s; stopped it",
                READY_DEADLINE.as_secs()
            ));
        }
    }
    let mut buf = [0u8; 1];
    let n = loop {
        match rustix::io::read(rx, &mut buf) {
            Err(Errno::INTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    if n == 1 && buf[0] == READY {
        // The caller's way to the watcher (`wpid=$(pidbeat watch --detach …)`). A caller that
        // does not read it is no failure: the watcher runs.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{child}").and_then(|()| out.flush());
        return Ok(ExitCode::Success);
    }
    // The child ended before its first record: pass its status on.
    Pid::from_raw(child)
        .and_then(|p| rustix::process::waitpid(Some(p), WaitOptions::empty()).ok())
        .flatten()
        .and_then(|(_, st)| st.exit_status())
        .filter(|&c| c != 0)
        .map(ExitCode::Child)
        .ok_or_else(|| runtime!("the detached watcher died before its first record"))
}

impl Detached {
    /// Lets go of the caller's stdio (so `wpid=$(pidbeat watch --detach …)` returns as soon as
    /// the parent has printed the PID), then releases the parent. stderr is kept when it is a
    /// regular file: that is a log the caller asked for (the launcher's `<agent>.log`), not a
    /// terminal or pipe to hold open. An error means nobody waits for this watcher any more
    /// (its parent missed the deadline, or was killed by a caller's timeout or Ctrl-C): it was
    /// reported as not started, so it must not watch.
    pub fn ready(self) -> Result<()> {
        let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| runtime!("/dev/null: {e}"))?;
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let stderr_is_file = rustix::fs::fstat(rustix::stdio::stderr())
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
            .unwrap_or(false);
        if !stderr_is_file {
            let _ = rustix::stdio::dup2_stderr(&null);
        }
        // Rust ignores SIGPIPE: a parent that is gone makes this EPIPE, not our death.
        match rustix::io::write(self.ready_tx.as_fd(), &[READY]) {
            Ok(_) => Ok(()),
            Err(e) => Err(runtime!(
                "nobody waits for this detached watcher any more ({e}); stopping"
            )),
        }
    }
}
