//! The watched process: how it is pinned (pidfd or /proc identity) and how its death and exit
//! status are learnt.

use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};

use crate::exitcode::{Error, Result, runtime};
use crate::procfs::{self, Liveness};
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
    pub pid: i32,
    pub start_time: u64,
    pub backend: Backend,
    /// Present for the pidfd backend; the poll backend never holds one.
    pub pidfd: Option<OwnedFd>,
    /// Our own child (`pidbeat run`): its exit status is exact, by waitid.
    pub is_child: bool,
    /// Linux ≥ 6.15: PIDFD_INFO_EXIT reports a non-child's exit once it is reaped.
    exit_info_kernel: bool,
}

fn is_readable(fd: &OwnedFd) -> bool {
    crate::eventloop::readable_within(fd, std::time::Duration::ZERO).unwrap_or(false)
}

impl Target {
    /// Pins `pid`: pidfd first, then the start time, then "pidfd not yet readable". That order
    /// proves the start time belongs to the process the pidfd names (no PID-reuse window).
    pub fn open(pid: i32, choice: BackendPref, is_child: bool) -> Result<Target> {
        if pid == std::process::id() as i32 {
            return Err(Error::Usage(format!(
                "--pid {pid} is pidbeat's own PID; give the runtime's PID"
            )));
        }
        let raw = Pid::from_raw(pid).ok_or_else(|| Error::Usage(format!("bad PID {pid}")))?;
        // /proc/TID exists for every thread (hidden from listings): watching a thread would
        // report `dead` when that one thread ends while its process lives on.
        if let Some(tgid) = procfs::tgid(pid).filter(|&t| t != pid) {
            return Err(runtime!(
                "{pid} is a thread of process {tgid}, not a process; watch --pid {tgid}"
            ));
        }
        let pidfd = match choice {
            BackendPref::Poll => None,
            _ => match rustix::process::pidfd_open(raw, PidfdFlags::NONBLOCK) {
                Ok(fd) => Some(fd),
                Err(Errno::SRCH) => return Err(no_such_process(pid)),
                Err(e @ (Errno::NOSYS | Errno::PERM)) if choice == BackendPref::Auto => {
                    eprintln!("pidbeat: pidfd_open unavailable ({e}); using the poll backend");
                    None
                }
                Err(e) => {
                    return Err(runtime!(
                        "pidfd_open({pid}) failed: {e}; try --backend poll"
                    ));
                }
            },
        };
        let stat = procfs::read_stat(pid).map_err(|_| no_such_process(pid))?;
        let target = Target {
            pid,
            start_time: stat.start_time,
            backend: if pidfd.is_some() {
                Backend::Pidfd
            } else {
                Backend::Poll
            },
            pidfd,
            is_child,
            exit_info_kernel: procfs::kernel_version().is_some_and(|v| v >= (6, 15)),
        };
        // An own child that already exited is still ours to report (its status is waiting for
        // us); anyone else's zombie is nothing to watch.
        if !is_child && target.is_dead_now() {
            return Err(runtime!(
                "PID {pid} has already exited (a zombie waiting for its parent to reap it); nothing to watch"
            ));
        }
        Ok(target)
    }

    /// The poll backend's check: has the pinned incarnation ended (gone, zombie, reused)?
    pub fn poll_dead(&self) -> bool {
        procfs::probe(self.pid, self.start_time) == Liveness::Dead
    }

    /// Has the target ended, right now? (Not waiting for the next event or check.)
    pub fn is_dead_now(&self) -> bool {
        match &self.pidfd {
            Some(fd) => is_readable(fd),
            None => self.poll_dead(),
        }
    }

    /// Sends `sig` through the pidfd where there is one: a PID alone may already name
    /// another process once ours was reaped.
    pub fn signal(&self, sig: rustix::process::Signal) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, sig);
            }
            None => {
                if let Some(pid) = Pid::from_raw(self.pid) {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
    }

    /// For a non-child: PIDFD_INFO_EXIT. Own children are reaped by the caller instead.
    pub fn query_exit(&self) -> ExitQuery {
        match &self.pidfd {
            Some(fd) => match sys::pidfd_exit(fd.as_fd()) {
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
    /// `exit_code` in /proc (see [`procfs::zombie_wait_status`]). It covers what
    /// PIDFD_INFO_EXIT cannot: a parent that never reaps (tmux that lost a SIGCHLD), one that
    /// reaps late (PID 1 after the tmux server exited), kernels before 6.15, the poll backend.
    /// `None` once the zombie is reaped: the kernel then knows the status only by
    /// [`Target::query_exit`] (6.15+).
    pub fn zombie_exit(&self) -> Option<ExitInfo> {
        procfs::zombie_wait_status(self.pid, self.start_time).map(ExitInfo::from_wait_status)
    }

    /// Is the target still a zombie its parent has not reaped?
    pub fn is_unreaped_zombie(&self) -> bool {
        procfs::read_stat(self.pid)
            .is_ok_and(|s| s.start_time == self.start_time && s.state == b'Z')
    }

    /// Reaps our own exited child without blocking: `Some` once it is reaped.
    pub fn reap_child(&self) -> Option<ExitInfo> {
        let id = match &self.pidfd {
            Some(fd) => WaitId::PidFd(fd.as_fd()),
            None => WaitId::Pid(Pid::from_raw(self.pid)?),
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

fn no_such_process(pid: i32) -> Error {
    runtime!("no process with PID {pid} (in this PID namespace); is the runtime running?")
}
