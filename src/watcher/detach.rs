//! `--detach`: fork into a new session, and let the parent return only once the child has
//! put its first `alive` record on disk (or failed, with the child's own exit code).

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, WaitOptions};

use crate::exit::{Result, runtime};
use crate::sys::{self, Fork};

const READY: u8 = b'R';

/// Held by the detached child until it is ready.
pub struct Detached {
    ready_tx: OwnedFd,
}

/// Forks. Only the child returns; the parent exits with 0 once the child says ready, or with
/// the child's exit status if it dies first (the child has already printed why).
pub fn detach() -> Result<Detached> {
    let (rx, tx) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| runtime!("pipe: {e}"))?;
    match sys::fork().map_err(|e| runtime!("fork: {e}"))? {
        Fork::Parent(child) => {
            drop(tx);
            let mut buf = [0u8; 1];
            let n = loop {
                match rustix::io::read(&rx, &mut buf) {
                    Err(Errno::INTR) => continue,
                    r => break r.unwrap_or(0),
                }
            };
            if n == 1 && buf[0] == READY {
                std::process::exit(0);
            }
            let code = Pid::from_raw(child)
                .and_then(|p| rustix::process::waitpid(Some(p), WaitOptions::empty()).ok())
                .flatten()
                .and_then(|(_, st)| st.exit_status())
                .filter(|&c| c != 0)
                .unwrap_or_else(|| {
                    eprintln!("pidbeat: error: the detached watcher died before its first record");
                    1
                });
            std::process::exit(code);
        }
        Fork::Child => {
            drop(rx);
            sys::close_inherited_fds(tx.as_fd());
            // A new session: no controlling terminal, no SIGHUP from the caller's shell.
            let _ = rustix::process::setsid();
            Ok(Detached { ready_tx: tx })
        }
    }
}

impl Detached {
    /// Lets go of the caller's stdio (so `out=$(pidbeat watch --detach …)` returns at once),
    /// then releases the parent. stderr is kept when it is a regular file: that is a log the
    /// caller asked for (the launcher's `<agent>.log`), not a terminal or pipe to hold open.
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
        // A parent that is gone (Ctrl-C, a launcher's timeout) is no reason to stop watching:
        // the record is on disk, which is what it waited for.
        let _ = rustix::io::write(self.ready_tx.as_fd(), &[READY]);
        Ok(())
    }
}
