//! The one-writer-per-agent lock: an exclusive flock on `<run-dir>/.<agent>.lock`, held for
//! the watcher's life (the kernel drops it when the watcher dies, even as a zombie).
//!
//! A flock belongs to an inode, not to a path. If the lock file is deleted, or the run dir is
//! deleted and recreated or renamed away, the watcher still holds a lock that nobody else can
//! see, and a newcomer would lock a fresh file at the path. So the lock is verified before
//! every record write (the beat, `dead`, `unwatched`): the inode at the path must be the one
//! held (`statat` against the dev+ino kept from the held fd, one syscall). If it is not, the
//! watcher takes the lock at the path again; if another process holds it there, that one is
//! the agent's writer and this watcher stops without writing. A newcomer, for its part,
//! refuses while the record at the path says `alive` and names a live watcher other than
//! itself, even if the lock file it found was free: that watcher takes the lock back at its
//! next beat. Together: exactly one watcher goes on, and no record is written by a watcher
//! that does not hold the lock at the path at the moment it checks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::exitcode::{Result, runtime};
use crate::incarnation::Incarnation;
use crate::procfs;
use crate::record::{self, Status};
use crate::rundir::{
    LockHold, LockRefusal, lock_exclusive_at, lock_holder, lock_name, record_name,
};
use crate::wholefile;

pub struct AgentLock {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    agent: String,
    /// `.<agent>.lock`, kept so that the check before every write allocates nothing.
    name: String,
    path: PathBuf,
}

/// The lock at the path is held by another watcher: it writes the record from now on, and
/// this one stops writing it.
#[derive(Debug)]
pub struct Superseded {
    agent: String,
    path: PathBuf,
    /// As the lock file names it.
    holder: Option<i32>,
}

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "agent {}: the lock file {} was deleted or replaced, and pid {} now holds it; that \
             watcher writes the record, this one (pid {}) stops writing it",
            self.agent,
            self.path.display(),
            Holder(self.holder),
            std::process::id()
        )
    }
}

/// The outcome of [`AgentLock::verify`].
#[derive(Debug)]
pub enum Verified {
    /// The lock at the path is ours (again, if it had to be taken again).
    Held,
    Superseded(Superseded),
}

/// The lock file at the path is a hard link or a special file: no watcher locks it.
#[derive(Debug)]
pub struct NotPlain(PathBuf);

impl std::fmt::Display for NotPlain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lock {} is not a plain file of its own",
            self.0.display()
        )
    }
}

impl std::error::Error for NotPlain {}

/// A lock holder's PID as its lock file gives it, `?` when it gives none.
struct Holder(Option<i32>);

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("?"),
        }
    }
}

impl AgentLock {
    /// A newcomer's lock (`watch`, `run`): refused while a live watcher holds the lock, or
    /// the record names a live watcher whose lock file was deleted or replaced.
    pub fn acquire(dir: &Path, agent: &str) -> Result<AgentLock> {
        let path = dir.join(lock_name(agent));
        if let Some(pid) = live_writer_in_record(dir, agent) {
            // Usually that watcher simply holds the lock: say so plainly.
            if crate::rundir::lock_held(dir, agent) == Some(true) {
                return Err(held(agent, Some(pid), &path));
            }
            return Err(runtime!(
                "agent {agent} is already watched by pid {pid}: its record says so, though the \
                 lock file {} was deleted or replaced (that watcher takes it back at its next \
                 beat); stop that watcher first",
                path.display()
            ));
        }
        let dirfd = rfs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| runtime!("cannot open run dir {}: {e}", dir.display()))?;
        match take(dirfd.as_fd(), agent, &path) {
            Ok(LockHold { fd, dev, ino }) => Ok(AgentLock {
                fd,
                dev,
                ino,
                agent: agent.to_owned(),
                name: lock_name(agent),
                path,
            }),
            Err(Refused::Held(holder)) => Err(held(agent, holder, &path)),
            Err(Refused::NotPlain) => Err(runtime!(
                "lock {} is not a plain file of its own (a hard link or special file); remove it",
                path.display()
            )),
            Err(Refused::Io(e)) => Err(runtime!("cannot lock {}: {e}", path.display())),
        }
    }

    /// Before a write into `dirfd` (the run dir as the path names it now): is the lock file
    /// there still the one we hold? If not, take the lock there again; if another watcher
    /// holds it there, [`Verified::Superseded`]: write nothing, stop.
    pub fn verify(&mut self, dirfd: BorrowedFd<'_>) -> io::Result<Verified> {
        match rfs::statat(dirfd, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            // Our fd keeps the inode alive, so its number cannot name another file meanwhile.
            Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => return Ok(Verified::Held),
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        match take(dirfd, &self.agent, &self.path) {
            Ok(LockHold { fd, dev, ino }) => {
                (self.fd, self.dev, self.ino) = (fd, dev, ino);
                eprintln!(
                    "pidbeat: agent {}: the lock file {} was deleted or replaced; took the lock again",
                    self.agent,
                    self.path.display()
                );
                Ok(Verified::Held)
            }
            Err(Refused::Held(holder)) => Ok(Verified::Superseded(Superseded {
                agent: self.agent.clone(),
                path: self.path.clone(),
                holder,
            })),
            Err(Refused::NotPlain) => Err(io::Error::other(NotPlain(self.path.clone()))),
            Err(Refused::Io(e)) => Err(e.into()),
        }
    }
}

fn held(agent: &str, holder: Option<i32>, path: &Path) -> crate::exitcode::Error {
    runtime!(
        "agent {agent} is already watched by pid {} (lock {}); stop that watcher first",
        Holder(holder),
        path.display()
    )
}

/// Locks the agent's lock file in `dirfd` and writes our PID and start time into it, so a
/// refused watcher can name us.
fn take(dirfd: BorrowedFd<'_>, agent: &str, path: &Path) -> std::result::Result<LockHold, Refused> {
    let hold = lock_exclusive_at(dirfd, agent).map_err(|e| match e {
        LockRefusal::Held => Refused::Held(lock_holder(path)),
        LockRefusal::NotPlain => Refused::NotPlain,
        LockRefusal::Io(e) => Refused::Io(e),
    })?;
    let line = format!("{} {}\n", std::process::id(), procfs::self_start_time());
    let _ = rfs::ftruncate(&hold.fd, 0);
    let _ = rustix::io::pwrite(&hold.fd, line.as_bytes(), 0);
    Ok(hold)
}

/// Why the lock at the path could not be taken.
enum Refused {
    /// Another process holds it; its PID as the lock file says.
    Held(Option<i32>),
    NotPlain,
    Io(Errno),
}

/// The PID of a live watcher, not us, that the agent's record says is writing it (`alive`,
/// with `watcher_pid` and `watcher_start_time` naming a running process). Anything else
/// (no record, unreadable, corrupt, older format) names nobody: the lock alone decides.
fn live_writer_in_record(dir: &Path, agent: &str) -> Option<i32> {
    let bytes =
        wholefile::read_small(&dir.join(record_name(agent)), record::MAX_RECORD_BYTES).ok()??;
    let (r, _) = record::parse(&bytes).ok()?;
    let pid = r.watcher_pid?;
    let alive = r.status == Status::Alive
        && pid != std::process::id() as i32
        && Incarnation::named(pid, Some(r.watcher_start_time?)).is_running();
    alive.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::lock_held;

    #[test]
    fn lock_is_exclusive_and_visible() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(lock_held(t.path(), "a"), None);
        let fd = AgentLock::acquire(t.path(), "a").unwrap();
        assert_eq!(lock_held(t.path(), "a"), Some(true));
        drop(fd);
        assert_eq!(lock_held(t.path(), "a"), Some(false));
    }

    #[test]
    fn verify_takes_a_deleted_lock_again_and_yields_to_a_holder() {
        let t = tempfile::tempdir().unwrap();
        let dirfd =
            || rfs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut l = AgentLock::acquire(t.path(), "a").unwrap();
        assert!(matches!(l.verify(dirfd().as_fd()), Ok(Verified::Held)));
        std::fs::remove_file(t.path().join(".a.lock")).unwrap();
        assert_eq!(lock_held(t.path(), "a"), None);
        assert!(matches!(l.verify(dirfd().as_fd()), Ok(Verified::Held)));
        assert_eq!(
            lock_held(t.path(), "a"),
            Some(true),
            "taken again at the path"
        );

        // Replaced by a file someone else locks: we are superseded.
        std::fs::remove_file(t.path().join(".a.lock")).unwrap();
        let other = rfs::open(
            t.path().join(".a.lock"),
            OFlags::RDWR | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rfs::flock(&other, rfs::FlockOperation::NonBlockingLockExclusive).unwrap();
        let v = l.verify(dirfd().as_fd()).unwrap();
        assert!(matches!(v, Verified::Superseded(_)), "{v:?}");
    }
}
