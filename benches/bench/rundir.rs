//! Run dirs and their records as a reader sees them: an inotify watch on the directory, and
//! the two fields the bench reads from a record.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify;
use rustix::io::Errno;

use crate::procs::Proc;

/// How long a watcher may take from its start to its first `alive` record.
pub const ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

fn has_status(rec: &str, status: &str) -> bool {
    rec.contains(&format!("\"status\":\"{status}\""))
}

pub fn seq_of(rec: &str) -> Option<u64> {
    let i = rec.find("\"seq\":")? + 6;
    let digits: String = rec[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn mkdir_private(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

/// A reader of one run dir: IN_MOVED_TO events, i.e. every record replaced by rename.
pub struct DirWatch {
    fd: OwnedFd,
    dir: PathBuf,
    buf: Vec<MaybeUninit<u8>>,
}

impl DirWatch {
    pub fn new(dir: &Path) -> io::Result<DirWatch> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, dir, inotify::WatchFlags::MOVED_TO)?;
        Ok(DirWatch {
            fd,
            dir: dir.to_path_buf(),
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Reads every queued event; true if one names `name` (or the queue overflowed).
    fn take_events(&mut self, name: &str) -> io::Result<bool> {
        let mut hit = false;
        let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut self.buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    if ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW)
                        || ev
                            .file_name()
                            .is_some_and(|n| n.to_bytes() == name.as_bytes())
                    {
                        hit = true;
                    }
                }
                Err(Errno::AGAIN) => return Ok(hit),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Forgets queued events (beats written before the measurement starts).
    pub fn drain(&mut self) -> Result<(), String> {
        self.take_events("").map(|_| ()).map_err(inotify_error)
    }

    pub fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name)).ok()
    }

    /// Blocks until the record `name` is read with `"status":"<status>"`, and returns the
    /// instant it was read; `None` after `timeout`. With `look_first` the file is read once
    /// before waiting (for states that may already be on disk).
    pub fn wait_for(
        &mut self,
        name: &str,
        status: &str,
        timeout: Duration,
        look_first: bool,
    ) -> Result<Option<Instant>, String> {
        let deadline = Instant::now() + timeout;
        if look_first && self.read(name).is_some_and(|r| has_status(&r, status)) {
            return Ok(Some(Instant::now()));
        }
        loop {
            if self.take_events(name).map_err(inotify_error)?
                && self.read(name).is_some_and(|r| has_status(&r, status))
            {
                return Ok(Some(Instant::now()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(inotify_error(e.into())),
            }
        }
    }

    /// Kills and reaps `target`, then blocks until the record `name` reads `dead`: the death
    /// latency in ms as this reader sees it, `None` after `timeout`.
    pub fn time_death(
        &mut self,
        target: &mut Proc,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<f64>, String> {
        // Beats written before the kill must not count as its answer.
        self.drain()?;
        let t0 = Instant::now();
        target.kill_reap();
        let t1 = self.wait_for(name, "dead", timeout, false)?;
        Ok(t1.map(|t1| (t1 - t0).as_secs_f64() * 1e3))
    }
}

fn inotify_error(e: io::Error) -> String {
    format!("inotify: {e}")
}

/// Records (`*.hb`, not the dot-named temp files) in `dir`.
pub fn count_records(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && n.ends_with(".hb")
                })
                .count()
        })
        .unwrap_or(0)
}
