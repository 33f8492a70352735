//! The watched process: which backend pins it (`incarnation.rs` does the pinning) and how its
//! death and exit status are learnt.

use rustix::io::Errno;
use rustix::process::{Pid, WaitId, WaitIdOptions};

use crate::exitcode::{Error, Result, runtime};
use crate::incarnation::{Incarnation, Liveness, OpenError, Pinning};
use crate::procfs;
use crate::record::ExitInfo;
use crate::sys::{self, PidfdExit};

/// Which backend the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendPref {
    /// pidfd, falling back to poll where pidfd_open is unavailable (ENOSYS/EPERM).
    Auto,
    Pidfd,
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Pidfd,
    Poll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Pidfd => "pidfd",
            Backend::Poll => "poll",
        }
    }
}

/// What the kernel can say about the exit right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitQuery {
    Known(ExitInfo),
    /// Not yet: may arrive when the parent reaps.
    Pending,
    /// Never on this kernel / for this target.
    Unknowable,
}

pub struct Target {
    /// The watched process; pinned by a pidfd for the pidfd backend, by /proc for poll.
    pub incarnation: Incarnation,
    pub backend: Backend,
    /// Our own child (`pidbeat run`): its exit status is exact, by waitid.
    pub is_child: bool,
    /// Linux ≥ 6.15: PIDFD_INFO_EXIT reports a non-child's exit once it is reaped.
    exit_info_kernel: bool,
}

impl Target {
    /// Pins `pid` (see `incarnation.rs` for why that proves who it is). An own child that
    /// already exited is still ours to report (its status is waiting for us); anyone else's
    /// zombie is nothing to watch.
    pub fn open(pid: i32, choice: BackendPref, is_child: bool) -> Result<Target> {
        if pid == std::process::id() as i32 {
            return Err(Error::Usage(format!(
                "--pid {pid} is pidbeat's own PID; give the runtime's PID"
            )));
        }
        let open = |pinning| match is_child {
            true => Incarnation::open_child(pid, pinning),
            false => Incarnation::open(pid, pinning),
        };
        let incarnation = match choice {
            BackendPref::Poll => open(Pinning::Proc),
            _ => match open(Pinning::Pidfd) {
                Err(OpenError::Pidfd(e @ (Errno::NOSYS | Errno::PERM)))
                    if choice == BackendPref::Auto =>
                {
                    eprintln!("pidbeat: pidfd_open unavailable ({e}); using the poll backend");
                    open(Pinning::Proc)
                }
                r => r,
            },
        }
        .map_err(|e| match e {
            OpenError::NotAPid => Error::Usage(format!("bad PID {pid}")),
            OpenError::NoSuchProcess => runtime!(
                "no process with PID {pid} (in this PID namespace); is the runtime running?"
            ),
            // Watching a thread would report `dead` when that one thread ends while its
            // process lives on.
            OpenError::Thread { tgid } => runtime!(
                "{pid} is a thread of process {tgid}, not a process; watch --pid {tgid}"
            ),
            OpenError::Pidfd(e) => runtime!("pidfd_open({pid}) failed: {e}; try --backend poll"),
            OpenError::Exited => runtime!(
                "PID {pid} has already exited (a zombie waiting for its parent to reap it); nothing to watch"
            ),
        })?;
        Ok(Target {
            backend: match incarnation.pidfd() {
                Some(_) => Backend::Pidfd,
                None => Backend::Poll,
            },
            incarnation,
            is_child,
            exit_info_kernel: procfs::kernel_version().is_some_and(|v| v >= (6, 15)),
        })
    }

    pub fn pid(&self) -> i32 {
        self.incarnation.pid()
    }

    /// The poll backend's check: has the pinned incarnation ended (gone, zombie, reused)?
    pub fn poll_dead(&self) -> bool {
        self.incarnation.probe() == Liveness::Dead
    }

    /// Has the target ended, right now? (Not waiting for the next event or check.)
    pub fn is_dead_now(&self) -> bool {
        self.incarnation.has_exited()
    }

    /// Sends `sig` (through the pidfd where there is one).
    pub fn signal(&self, sig: rustix::process::Signal) {
        self.incarnation.signal(sig);
    }

    /// For a non-child: PIDFD_INFO_EXIT. Own children are reaped by the caller instead.
    pub fn query_exit(&self) -> ExitQuery {
        match self.incarnation.pidfd() {
            Some(fd) => match sys::pidfd_exit(fd) {
                PidfdExit::Status(s) => ExitQuery::Known(ExitInfo::from_wait_status(s)),
                // 6.13 and 6.14 answer the ioctl but never fill in the exit: waiting out the
                // grace there would only delay the watcher's exit.
                PidfdExit::NotYet if self.exit_info_kernel => ExitQuery::Pending,
                PidfdExit::NotYet => ExitQuery::Unknowable,
                PidfdExit::Unsupported => ExitQuery::Unknowable,
            },
            None => ExitQuery::Unknowable,
        }
    }

    /// A non-child's exit status without waiting for its parent: the zombie's own
    /// `exit_code` in /proc (see [`Incarnation::zombie_wait_status`]). It covers what
    /// PIDFD_INFO_EXIT cannot: a parent that never reaps (tmux that lost a SIGCHLD), one that
    /// reaps late (PID 1 after the tmux server exited), kernels before 6.15, the poll backend.
    /// `None` once the zombie is reaped: the kernel then knows the status only by
    /// [`Target::query_exit`] (6.15+).
    pub fn zombie_exit(&self) -> Option<ExitInfo> {
        self.incarnation
            .zombie_wait_status()
            .map(ExitInfo::from_wait_status)
    }

    /// Is the target still a zombie its parent has not reaped?
    pub fn is_unreaped_zombie(&self) -> bool {
        self.incarnation.is_unreaped_zombie()
    }

    /// Reaps our own exited child without blocking: `Some` once it is reaped.
    pub fn reap_child(&self) -> Option<ExitInfo> {
        let id = match self.incarnation.pidfd() {
            Some(fd) => WaitId::PidFd(fd),
            None => WaitId::Pid(Pid::from_raw(self.pid())?),
        };
        match rustix::process::waitid(id, WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    Some(ExitInfo {
                        code: Some(code),
                        signal: None,
                        core: false,
                        oom: false,
                    })
                } else {
                    st.terminating_signal().map(|sig| ExitInfo {
                        code: None,
                        signal: Some(sig),
                        core: st.dumped(),
                        oom: false,
                    })
                }
            }
            _ => None,
        }
    }
}
