//! inotify on the run dir, for readers that block until a record changes (`wait`,
//! `ps --watch`).
//!
//! Records are replaced by rename (IN_MOVED_TO); a watcher's death closes its lock file,
//! which it opened for writing, so even a SIGKILLed watcher shows up as IN_CLOSE_WRITE on
//! `.<agent>.lock`. A run dir that does not exist yet, or is deleted or moved away, is
//! followed by watching its nearest existing ancestor until it is back.

use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

pub struct DirWatch {
    fd: OwnedFd,
    dir: PathBuf,
    wd: Option<i32>,
    /// False while an ancestor stands in for a missing run dir.
    on_dir: bool,
    /// While an ancestor is watched: the name in it on the way to the run dir.
    next: Option<std::ffi::OsString>,
}

fn dir_mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

fn ancestor_mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

impl DirWatch {
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        let mut w = DirWatch {
            fd,
            dir: std::path::absolute(dir)?,
            wd: None,
            on_dir: false,
            next: None,
        };
        w.arm()?;
        Ok(w)
    }

    /// True while the run dir itself is watched (it exists).
    #[cfg(test)]
    pub fn on_dir(&self) -> bool {
        self.on_dir
    }

    /// Watches the run dir, or else its nearest existing ancestor. Retried when a path
    /// component appears between the failed watch and the ancestor's, which the ancestor's
    /// watch would otherwise never report.
    fn arm(&mut self) -> io::Result<()> {
        if let Some(wd) = self.wd.take() {
            let _ = inotify::remove_watch(&self.fd, wd);
        }
        let chain: Vec<&Path> = self.dir.ancestors().collect();
        'retry: for _ in 0..16 {
            for (i, p) in chain.iter().enumerate() {
                let mask = if i == 0 { dir_mask() } else { ancestor_mask() };
                match inotify::add_watch(&self.fd, *p, mask) {
                    Ok(wd) => {
                        self.wd = Some(wd);
                        self.on_dir = i == 0;
                        self.next = (i > 0)
                            .then(|| chain[i - 1].file_name().map(|n| n.to_owned()))
                            .flatten();
                        if i > 0 && chain[i - 1].is_dir() {
                            let _ = inotify::remove_watch(&self.fd, wd);
                            self.wd = None;
                            continue 'retry;
                        }
                        return Ok(());
                    }
                    Err(Errno::NOENT | Errno::NOTDIR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Err(io::Error::other(format!(
                "no ancestor of {} can be watched",
                self.dir.display()
            )));
        }
        Err(io::Error::other(format!(
            "{} keeps changing; cannot watch it",
            self.dir.display()
        )))
    }

    /// Consumes the pending events (mio is edge-triggered) and says whether any may change
    /// what a reader sees: an entry `relevant` accepts, a queue overflow, or the run dir
    /// appearing, going or moving (after which the watch is re-armed).
    pub fn drain(&mut self, relevant: impl Fn(&OsStr) -> bool) -> io::Result<bool> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut changed = false;
        let mut rearm = false;
        {
            let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut buf);
            loop {
                let ev = match reader.next() {
                    Ok(ev) => ev,
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                let flags = ev.events();
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    changed = true;
                } else if Some(ev.wd()) != self.wd {
                    // A watch we already replaced.
                } else if flags.intersects(
                    ReadFlags::IGNORED
                        | ReadFlags::DELETE_SELF
                        | ReadFlags::MOVE_SELF
                        | ReadFlags::UNMOUNT,
                ) {
                    rearm = true;
                    changed = true;
                } else if !self.on_dir {
                    // Only the next component on the way matters, not the rest of /tmp.
                    let name = ev.file_name().map(|n| OsStr::from_bytes(n.to_bytes()));
                    if name.is_none() || name == self.next.as_deref() {
                        rearm = true;
                        changed = true;
                    }
                } else if let Some(name) = ev.file_name() {
                    changed |= relevant(OsStr::from_bytes(name.to_bytes()));
                }
            }
        }
        if rearm {
            self.arm()?;
        }
        Ok(changed)
    }
}

impl AsRawFd for DirWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    impl DirWatch {
        /// Blocks up to `timeout` for events: the tests have no event loop.
        fn wait(&self, timeout: Duration) -> io::Result<bool> {
            crate::eventloop::readable_within(&self.fd, timeout)
        }
    }

    #[test]
    fn follows_a_dir_that_appears_and_goes() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b/run");
        let mut w = DirWatch::new(&dir).unwrap();
        assert!(!w.on_dir());
        std::fs::create_dir_all(&dir).unwrap();
        // Each level's creation is one event; keep draining until the dir itself is watched.
        for _ in 0..4 {
            if w.on_dir() {
                break;
            }
            assert!(w.wait(Duration::from_secs(2)).unwrap());
            w.drain(|_| false).unwrap();
        }
        assert!(w.on_dir());
        std::fs::write(dir.join("x.hb"), b"{}").unwrap();
        assert!(w.wait(Duration::from_secs(2)).unwrap());
        assert!(w.drain(crate::rundir::is_fleet_file).unwrap());
        std::fs::remove_dir_all(t.path().join("a")).unwrap();
        assert!(w.wait(Duration::from_secs(2)).unwrap());
        assert!(w.drain(|_| false).unwrap());
        assert!(!w.on_dir());
    }
}
