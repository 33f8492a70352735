//! One process incarnation: a PID and the start time that tells it apart from any later
//! process given the same PID, optionally pinned by a pidfd. Every judgement of "is this the
//! process a record or a caller means, and does it still run" is made here, for the watcher
//! and the readers alike; `procfs.rs` only reads the lines it rests on.
//!
//! The rules it keeps:
//! - **Pinning** ([`Incarnation::open`]): the pidfd is opened first, then the start time is
//!   read (field 22 of `/proc/PID/stat`, counted after the last `)`), then the pidfd is
//!   checked not to be readable yet. A pidfd that is not readable names a process that has
//!   not exited, so the PID still named that process when its start time was read: the
//!   start time is the pidfd's process's, and no PID reuse can slip in between.
//! - **Thread groups**: a leader shows `Z` while its other threads still run; the process is
//!   dead only once the whole group has exited ([`Incarnation::judge`]).
//! - **PID namespaces**: a PID resolves in the reader's namespace, so a record written in
//!   another one names another process here, or none. Such a record yields no incarnation
//!   ([`Incarnation::in_record`]): it is judged by its lock, its beats and CLOCK_BOOTTIME.
//! - **No pidfd** (the poll backend; kernels without pidfd_open, or a seccomp filter that
//!   refuses it): the start time alone tells incarnations apart, read again at each check.
//! - **No start time** (records of the seed format): whoever has the PID now counts.

use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::procfs::{self, Stat};

/// Whether a process still runs, as /proc shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone, a zombie, or the PID now names another process.
    Dead,
}

/// A process incarnation: its PID, its start time (clock ticks since boot) and, once pinned,
/// a pidfd on it. Two values are equal when they name the same incarnation, pinned or not.
#[derive(Debug)]
pub struct Incarnation {
    pid: i32,
    /// `None` only for a record of the seed format: whoever has the PID now.
    start_time: Option<u64>,
    pidfd: Option<OwnedFd>,
}

/// Why [`Incarnation::open`] pinned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Zero or negative: no process can have it.
    NotAPid,
    /// No process has this PID in this PID namespace (or it was reaped meanwhile).
    NoSuchProcess,
    /// The PID is a thread's, not a process's (`/proc/TID` exists for every thread, hidden
    /// from listings); `tgid` is its process.
    Thread { tgid: i32 },
    /// pidfd_open failed for another reason than a missing process.
    Pidfd(Errno),
    /// It has already exited: a zombie waiting for its parent to reap it.
    Exited,
}

/// Whether [`Incarnation::open`] pins with a pidfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    Pidfd,
    /// /proc only: the start time, read again at each check.
    Proc,
}

impl Incarnation {
    /// Pins the process that has `pid` now (see the module's rules). A process that has
    /// already exited is refused: it is nothing to watch, and its PID is free for reuse the
    /// moment its parent reaps it.
    pub fn open(pid: i32, pinning: Pinning) -> Result<Incarnation, OpenError> {
        let inc = Incarnation::open_unchecked(pid, pinning)?;
        if inc.has_exited() {
            return Err(OpenError::Exited);
        }
        Ok(inc)
    }

    /// [`Incarnation::open`] for our own child, which may already have exited: until we reap
    /// it, its PID cannot name another process, so even a zombie is the one we started.
    pub fn open_child(pid: i32, pinning: Pinning) -> Result<Incarnation, OpenError> {
        Incarnation::open_unchecked(pid, pinning)
    }

    /// The pidfd and the start time, in that order; the caller checks for an exit.
    fn open_unchecked(pid: i32, pinning: Pinning) -> Result<Incarnation, OpenError> {
        let raw = Pid::from_raw(pid).ok_or(OpenError::NotAPid)?;
        if let Some(tgid) = procfs::tgid(pid).filter(|&t| t != pid) {
            return Err(OpenError::Thread { tgid });
        }
        let pidfd = match pinning {
            Pinning::Proc => None,
            Pinning::Pidfd => match rustix::process::pidfd_open(raw, PidfdFlags::NONBLOCK) {
                Ok(fd) => Some(fd),
                Err(Errno::SRCH) => return Err(OpenError::NoSuchProcess),
                Err(e) => return Err(OpenError::Pidfd(e)),
            },
        };
        let stat = procfs::read_stat(pid).map_err(|_| OpenError::NoSuchProcess)?;
        Ok(Incarnation {
            pid,
            start_time: Some(stat.start_time),
            pidfd,
        })
    }

    /// The incarnation a PID and start time name (a record's, say), not pinned.
    pub fn named(pid: i32, start_time: Option<u64>) -> Incarnation {
        Incarnation {
            pid,
            start_time,
            pidfd: None,
        }
    }

    /// The incarnation a record names with `pid` and `start_time`, if it names one in this
    /// reader's PID namespace: `None` for a record written in another (`pidns`), whose PIDs
    /// name other processes here, or none.
    pub fn in_record(pid: i32, start_time: Option<u64>, pidns: Option<u64>) -> Option<Incarnation> {
        (!crate::pidns::is_foreign(pidns)).then(|| Incarnation::named(pid, start_time))
    }

    /// A pidfd on this incarnation, for a reader that wants its exit as an event: `None` if
    /// it cannot be had (no such process, or no pidfd_open here) or the PID now names a
    /// later process. An exited one that is not yet reaped is pinned: its pidfd is readable
    /// at once, which is the news the reader waits for.
    pub fn pin(&self) -> Option<Incarnation> {
        let fd =
            rustix::process::pidfd_open(Pid::from_raw(self.pid)?, PidfdFlags::NONBLOCK).ok()?;
        let now = procfs::read_stat(self.pid).ok()?.start_time;
        if self.start_time.is_some_and(|want| want != now) {
            return None;
        }
        Some(Incarnation {
            pid: self.pid,
            start_time: self.start_time,
            pidfd: Some(fd),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Judges a `/proc/PID/stat` line of this PID already read: another start time is
    /// another process; a leader in `Z` lives on while a thread of its group runs.
    pub fn judge(&self, st: &Stat) -> Liveness {
        if self.start_time.is_some_and(|s| s != st.start_time) {
            Liveness::Dead
        } else if !procfs::is_exited(st.state) || procfs::group_has_live_thread(self.pid) {
            Liveness::Alive
        } else {
            Liveness::Dead
        }
    }

    /// Reads /proc and judges ([`Incarnation::judge`]). Only "no such process" is death:
    /// EMFILE, ENOMEM … say nothing about the target, and a `dead` record cannot be taken
    /// back, so with a start time a failed read counts as alive (the next check will tell).
    /// Without one, only a line that was read keeps the PID's holder running.
    pub fn probe(&self) -> Liveness {
        match procfs::read_stat(self.pid) {
            Ok(st) => self.judge(&st),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
                Liveness::Dead
            }
            Err(_) if self.start_time.is_some() => Liveness::Alive,
            Err(_) => Liveness::Dead,
        }
    }

    pub fn is_running(&self) -> bool {
        self.probe() == Liveness::Alive
    }

    /// Has it ended, right now? A pidfd says so by being readable; without one, /proc.
    pub fn has_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                crate::eventloop::readable_within(fd, std::time::Duration::ZERO).unwrap_or(false)
            }
            None => self.probe() == Liveness::Dead,
        }
    }

    /// Is it a zombie its parent has not reaped yet?
    pub fn is_unreaped_zombie(&self) -> bool {
        procfs::read_stat(self.pid).is_ok_and(|st| self.is(&st) && st.state == b'Z')
    }

    /// The raw wait status this incarnation's zombie holds for its parent (see
    /// [`procfs::read_exit_code`]): `None` unless it is an unreaped zombie, or when the
    /// kernel hides the status from us.
    pub fn zombie_wait_status(&self) -> Option<i32> {
        let (st, status) = procfs::read_exit_code(self.pid)?;
        (self.is(&st) && st.state == b'Z').then_some(status)
    }

    /// Sends `sig`, through the pidfd where there is one: once ours is reaped, the PID alone
    /// may name another process.
    pub fn signal(&self, sig: Signal) {
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

    /// Does the line `st` of this PID show this incarnation (its start time, if known)?
    fn is(&self, st: &Stat) -> bool {
        self.start_time.is_none_or(|s| s == st.start_time)
    }
}

impl PartialEq for Incarnation {
    fn eq(&self, other: &Incarnation) -> bool {
        (self.pid, self.start_time) == (other.pid, other.start_time)
    }
}

impl Eq for Incarnation {}

impl Hash for Incarnation {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.pid, self.start_time).hash(h);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::Duration;

    /// A unit test's child: killed and reaped when the test ends, however it ends.
    pub(crate) struct Reaped(pub Child);

    impl Reaped {
        pub fn spawn(cmd: &mut Command) -> Reaped {
            Reaped(cmd.spawn().unwrap())
        }

        pub fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        /// Waits (at most 10 s) until the child is a zombie.
        pub fn await_zombie(&self) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while procfs::read_stat(self.pid()).unwrap().state != b'Z' {
                assert!(std::time::Instant::now() < deadline, "no zombie after 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn me() -> i32 {
        std::process::id() as i32
    }

    #[test]
    fn own_process_is_alive_and_another_start_time_is_not() {
        let st = procfs::read_stat(me()).unwrap();
        let inc = Incarnation::named(me(), Some(st.start_time));
        assert_eq!(inc.probe(), Liveness::Alive);
        assert!(Incarnation::named(me(), None).is_running());
        let later = Incarnation::named(me(), Some(st.start_time + 1));
        assert_eq!(later.probe(), Liveness::Dead);
        assert_eq!(later.judge(&st), Liveness::Dead);
        assert_ne!(inc, later);
        assert_eq!(Incarnation::named(-1, None).probe(), Liveness::Dead);
    }

    #[test]
    fn open_pins_a_running_child_and_refuses_threads_and_bad_pids() {
        let mut child = Reaped::spawn(Command::new("sleep").arg("30"));
        let pid = child.pid();
        let inc = Incarnation::open(pid, Pinning::Pidfd).unwrap();
        assert!(inc.pidfd().is_some());
        assert_eq!(inc, Incarnation::named(pid, inc.start_time()));
        assert!(!inc.has_exited());
        let proc_only = Incarnation::open(pid, Pinning::Proc).unwrap();
        assert!(proc_only.pidfd().is_none());
        assert_eq!(proc_only, inc);
        assert_eq!(
            Incarnation::open(0, Pinning::Pidfd),
            Err(OpenError::NotAPid)
        );

        // A thread of this test process.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            let _ = stop_rx.recv_timeout(Duration::from_secs(30));
        });
        let tid = rx.recv().unwrap();
        assert_eq!(
            Incarnation::open(tid, Pinning::Pidfd),
            Err(OpenError::Thread { tgid: me() })
        );
        stop_tx.send(()).unwrap();
        t.join().unwrap();

        inc.signal(Signal::KILL);
        child.0.wait().unwrap();
        assert_eq!(
            Incarnation::open(pid, Pinning::Pidfd),
            Err(OpenError::NoSuchProcess)
        );
    }

    #[test]
    fn a_zombie_is_refused_unless_it_is_our_child_and_its_status_is_read() {
        let mut child = Reaped::spawn(Command::new("sh").args(["-c", "exit 7"]));
        let pid = child.pid();
        child.await_zombie();
        assert_eq!(
            Incarnation::open(pid, Pinning::Pidfd),
            Err(OpenError::Exited)
        );
        let inc = Incarnation::open_child(pid, Pinning::Pidfd).unwrap();
        assert!(inc.has_exited());
        assert!(inc.is_unreaped_zombie());
        assert_eq!(inc.probe(), Liveness::Dead);
        assert_eq!(inc.zombie_wait_status(), Some(7 << 8));
        let later = Incarnation::named(pid, inc.start_time().map(|s| s + 1));
        assert_eq!(later.zombie_wait_status(), None);
        assert!(inc.pin().is_some(), "an unreaped zombie is pinned");
        assert!(later.pin().is_none(), "another start time is not");
        assert_eq!(child.0.wait().unwrap().code(), Some(7));
        assert_eq!(inc.zombie_wait_status(), None);
        assert!(!inc.is_unreaped_zombie());
        assert!(inc.pin().is_none());
        let st = procfs::self_start_time();
        assert_eq!(
            Incarnation::named(me(), Some(st)).zombie_wait_status(),
            None
        );
    }

    /// The main thread exits (pthread_exit) while another runs on: /proc shows the leader as
    /// `Z`, yet the process lives. The check, the poll backend's on every period, reads the
    /// group's threads without allocating.
    #[test]
    fn a_zombie_leader_with_a_running_thread_is_alive() {
        let script = "import threading, time, ctypes\n\
                      threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n\
                      ctypes.CDLL(None).pthread_exit(None)\n";
        let Ok(child) = Command::new("python3").args(["-c", script]).spawn() else {
            assert!(
                std::env::var_os("PIDBEAT_REQUIRE_TOOLS").is_none(),
                "python3 is required (PIDBEAT_REQUIRE_TOOLS)"
            );
            eprintln!("SKIPPED a_zombie_leader_with_a_running_thread_is_alive: no python3");
            return;
        };
        let mut child = Reaped(child);
        let inc = Incarnation::open(child.pid(), Pinning::Proc).unwrap();
        child.await_zombie();
        let ((liveness, exited), allocations) =
            crate::sys::counting::allocations_in(|| (inc.probe(), inc.has_exited()));
        assert_eq!((liveness, exited), (Liveness::Alive, false));
        assert_eq!(allocations, 0);
        inc.signal(Signal::KILL);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while inc.probe() == Liveness::Alive {
            assert!(
                std::time::Instant::now() < deadline,
                "alive 10 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        child.0.wait().unwrap();
    }

    #[test]
    fn records_of_another_pid_namespace_name_no_incarnation() {
        let ours = crate::pidns::own();
        assert!(Incarnation::in_record(1, None, ours).is_some());
        assert!(Incarnation::in_record(1, None, None).is_some());
        let theirs = ours.map(|n| n + 1);
        assert_eq!(
            Incarnation::in_record(1, None, theirs).is_some(),
            ours.is_none()
        );
    }
}
