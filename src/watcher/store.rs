//! The writer's side of the run dir: atomic record writes, each one checked against the
//! agent's lock (`lock.rs`) in the directory it lands in.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

use super::lock::{AgentLock, Superseded, Verified};
use crate::rundir::{agent_of_record, is_tmp_name, record_name, tmp_name};

/// Writes one agent's record.
///
/// The run dir is opened by path on every write, so a run dir that is deleted, recreated,
/// moved away or remounted read-only is noticed, and written again once it is back.
///
/// Each write also prepares the next one: an anonymous `O_TMPFILE` inode on the run dir's
/// filesystem. The next record (a death above all) then costs a write, a link and a rename,
/// and no inode allocation, which on some filesystems (ext4 without a journal skips recently
/// freed inodes) costs more than all the rest. Where `O_TMPFILE` is unsupported, or the
/// prepared inode cannot be linked into the dir as it is now (another mount: EXDEV), a named
/// temp file is created at write time instead.
///
/// A write allocates nothing (the names it passes to the kernel are prepared here, the
/// prepared inode is named through a path formatted on the stack): a death is recorded even
/// when memory has run out.
pub struct RecordWriter {
    dir: PathBuf,
    /// `dir`, `record_name` and `tmp_name` as the kernel takes them.
    dir_c: CString,
    record_c: CString,
    tmp_c: CString,
    record_name: String,
    tmp_name: String,
    /// An unnamed inode for the next record, created after the last one was visible.
    spare: Option<File>,
    /// A watcher's lock, verified in the dir of every write; `None` for a test's planted record.
    lock: Option<AgentLock>,
    /// Cleared before a write known to be the last (`run`'s `dead`, which exits next): no
    /// spare inode is made for a next one, which would only delay the exit.
    next: bool,
}

impl RecordWriter {
    pub fn new(dir: &Path, agent: &str) -> Self {
        let record_name = record_name(agent);
        let tmp_name = tmp_name(agent, std::process::id());
        // A valid agent name has no NUL; a path from the command line or the environment
        // cannot hold one either.
        let c = |b: &[u8]| CString::new(b).unwrap_or_default();
        RecordWriter {
            dir: dir.to_path_buf(),
            dir_c: c(dir.as_os_str().as_bytes()),
            record_c: c(record_name.as_bytes()),
            tmp_c: c(tmp_name.as_bytes()),
            record_name,
            tmp_name,
            spare: None,
            lock: None,
            next: true,
        }
    }

    /// No write follows the next one (see `next`).
    pub fn last_write(&mut self) {
        self.next = false;
    }

    /// A writer that only writes while `lock` is the agent's lock at the path.
    pub fn with_lock(mut self, lock: AgentLock) -> Self {
        self.lock = Some(lock);
        self
    }

    pub fn record_path(&self) -> PathBuf {
        self.dir.join(&self.record_name)
    }

    /// Unlinks the agent's temp names (`.<agent>.hb.<digits>.tmp` other than our own, and
    /// `.<agent>.deaths.<digits>.tmp`, see `rundir::is_tmp_name`) that a killed writer left.
    /// Only for a holder of the agent's lock, before the history is written. Exact shape only:
    /// `.<agent>.hb.x.hb.<N>.tmp` belongs to agent `<agent>.hb.x` and is left alone. unlink
    /// never follows a planted symlink.
    pub fn sweep_stale_tmps(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let agent = agent_of_record(&self.record_name).expect("built by record_name");
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name != self.tmp_name && is_tmp_name(agent, name) {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
        }
    }

    /// Replaces the record atomically. `durable` also fsyncs the file and then the dir after
    /// the rename: the record is visible first, then safe from a crash. With a lock, the
    /// write happens only while it is the agent's lock at the path ([`Written::Superseded`]
    /// otherwise: nothing was written).
    pub fn write(&mut self, bytes: &[u8], durable: bool) -> io::Result<Written> {
        let dirfd = rfs::open(
            self.dir_c.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Checked in the dir the rename goes to, so a run dir swapped meanwhile is seen.
        if let Some(lock) = &mut self.lock {
            if let Verified::Superseded(s) = lock.verify(dirfd.as_fd())? {
                return Ok(Written::Superseded(s));
            }
        }
        let file = self.place(&dirfd, bytes).inspect_err(|_| {
            // Never leave a partial temp file behind (ENOSPC, EIO …).
            let _ = rfs::unlinkat(&dirfd, self.tmp_c.as_c_str(), rfs::AtFlags::empty());
        })?;
        if durable {
            // A reader woken by the rename is usually queued on this CPU (wake-affine): let it
            // run before the fsyncs and our exit, which would otherwise delay it (~0.1 ms).
            rustix::thread::sched_yield();
            // After the rename, so readers see the death without waiting on the disk.
            file.sync_all()?;
            rfs::fsync(&dirfd)?;
        }
        if !self.next {
            return Ok(Written::Done);
        }
        self.spare = rfs::openat(
            &dirfd,
            c".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .ok()
        .map(File::from);
        Ok(Written::Done)
    }

    /// Writes `bytes` to a fresh inode and renames it over the record.
    fn place(&mut self, dirfd: &OwnedFd, bytes: &[u8]) -> io::Result<File> {
        let tmp = self.tmp_c.as_c_str();
        let spare = self.spare.take().and_then(|mut f| {
            f.write_all(bytes).ok()?;
            link_tmpfile(&f, dirfd, tmp).ok()?;
            Some(f)
        });
        let file = match spare {
            Some(f) => f,
            None => {
                let mut f = File::from(create_tmp(dirfd, tmp)?);
                f.write_all(bytes)?;
                f
            }
        };
        rfs::renameat(dirfd, tmp, dirfd, self.record_c.as_c_str())?;
        Ok(file)
    }
}

/// What became of a record write that did not fail.
#[derive(Debug)]
pub enum Written {
    /// The record is in place (and, if durable, on disk).
    Done,
    /// Another watcher holds the agent's lock at the path now: it writes the record, and this
    /// writer wrote nothing.
    Superseded(Superseded),
}

/// O_EXCL|O_NOFOLLOW: a planted file or symlink at the temp name is never written through;
/// it is unlinked (the link itself, never its target) and the create retried.
fn create_tmp(dirfd: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o644);
    match rfs::openat(dirfd, name, flags, mode) {
        Err(Errno::EXIST) => {
            rfs::unlinkat(dirfd, name, rfs::AtFlags::empty())?;
            Ok(rfs::openat(dirfd, name, flags, mode)?)
        }
        r => Ok(r?),
    }
}

/// Gives an `O_TMPFILE` inode the temp name. linkat never replaces: a planted file or symlink
/// there is unlinked first (never followed). `/proc/self/fd` is the unprivileged way to name
/// the inode (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH).
fn link_tmpfile(file: &File, dirfd: &OwnedFd, name: &CStr) -> io::Result<()> {
    let src = FdPath::new(file.as_raw_fd());
    let link = || {
        rfs::linkat(
            rfs::CWD,
            src.as_c_str(),
            dirfd,
            name,
            rfs::AtFlags::SYMLINK_FOLLOW,
        )
    };
    match link() {
        Err(Errno::EXIST) => {
            rfs::unlinkat(dirfd, name, rfs::AtFlags::empty())?;
            Ok(link()?)
        }
        r => Ok(r?),
    }
}

/// `/proc/self/fd/N`, NUL-terminated, on the stack.
struct FdPath([u8; 32]);

impl FdPath {
    fn new(fd: i32) -> FdPath {
        let mut buf = [0u8; 32];
        // "/proc/self/fd/-2147483648" and its NUL take 26 bytes: it always fits, and the
        // zeroes after it end the string.
        let _ = write!(&mut buf[..31], "/proc/self/fd/{fd}");
        FdPath(buf)
    }

    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_and_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let mut w = RecordWriter::new(t.path(), "a");
        w.write(b"one\n", false).unwrap();
        w.write(b"two\n", true).unwrap();
        assert_eq!(FdPath::new(7).as_c_str(), c"/proc/self/fd/7");
        assert_eq!(
            FdPath::new(i32::MIN).as_c_str(),
            c"/proc/self/fd/-2147483648"
        );
        assert_eq!(std::fs::read(t.path().join("a.hb")).unwrap(), b"two\n");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn planted_symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let mut w = RecordWriter::new(t.path(), "a");
        std::os::unix::fs::symlink(&victim, t.path().join("a.hb")).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join(&w.tmp_name)).unwrap();
        w.write(b"rec\n", false).unwrap();
        // The second write names a prepared O_TMPFILE inode: plant at the temp name again.
        std::os::unix::fs::symlink(&victim, t.path().join(&w.tmp_name)).unwrap();
        w.write(b"rec\n", false).unwrap();
        assert!(!t.path().join(&w.tmp_name).exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(t.path().join("a.hb")).unwrap(), b"rec\n");
        assert!(!t.path().join("a.hb").is_symlink());
    }

    #[test]
    fn follows_the_run_dir_path_when_it_is_replaced() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("run");
        std::fs::create_dir(&d).unwrap();
        let mut w = RecordWriter::new(&d, "a");
        w.write(b"1\n", false).unwrap();
        // Moved away: the record must land at the path, not in the old directory.
        std::fs::rename(&d, t.path().join("old")).unwrap();
        std::fs::create_dir(&d).unwrap();
        w.write(b"3\n", false).unwrap();
        assert_eq!(std::fs::read(d.join("a.hb")).unwrap(), b"3\n");
        assert_eq!(std::fs::read(t.path().join("old/a.hb")).unwrap(), b"1\n");
        // Deleted and recreated.
        std::fs::remove_dir_all(&d).unwrap();
        assert!(w.write(b"4\n", false).is_err());
        std::fs::create_dir(&d).unwrap();
        w.write(b"5\n", true).unwrap();
        assert_eq!(std::fs::read(d.join("a.hb")).unwrap(), b"5\n");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temp files");
    }
}
