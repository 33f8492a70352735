//! The run dir: where it is, that it is safe, atomic record writes, and the per-agent lock.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::runtime;

pub const RUN_DIR_ENV: &str = "MOSAIC_HEARTBEAT_RUN_DIR";

/// DESIGN.md's search order: `--run-dir`, `$MOSAIC_HEARTBEAT_RUN_DIR`, then
/// `$XDG_CONFIG_HOME/mosaic/fleet/run`, then `~/.config/mosaic/fleet/run`. A set-but-empty
/// variable counts as unset, as in the launcher and the shell sidecar.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(v) = nonempty(RUN_DIR_ENV) {
        let s = v
            .to_str()
            .ok_or_else(|| Error::Usage(format!("invalid {RUN_DIR_ENV}={v:?}: not UTF-8")))?;
        return crate::cli::parse_run_dir(s)
            .map_err(|e| Error::Usage(format!("invalid {RUN_DIR_ENV}={s:?}: {e}")));
    }
    // XDG says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if let Some(x) = nonempty("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(Path::new(&x).join("mosaic/fleet/run"));
    }
    match nonempty("HOME") {
        Some(h) => Ok(Path::new(&h).join(".config/mosaic/fleet/run")),
        None => Err(Error::Usage(
            "no run dir: pass --run-dir or set MOSAIC_HEARTBEAT_RUN_DIR (HOME is unset)".into(),
        )),
    }
}

/// Creates the run dir (mode 0700) if missing and refuses one that others could write to:
/// whoever can write there could forge records or plant symlinks.
pub fn prepare(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::Usage(format!(
                "run dir {} exists and is not a directory",
                dir.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| runtime!("cannot create run dir {}: {e}", dir.display()))?,
        Err(e) => return Err(runtime!("cannot stat run dir {}: {e}", dir.display())),
    }
    check_safe(dir)
}

fn check_safe(dir: &Path) -> Result<()> {
    let m = std::fs::metadata(dir).map_err(|e| runtime!("run dir {}: {e}", dir.display()))?;
    let euid = rustix::process::geteuid().as_raw();
    if m.uid() != euid {
        return Err(runtime!(
            "run dir {} is owned by uid {}, not by you (uid {euid}); use a run dir of your own",
            dir.display(),
            m.uid()
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(runtime!(
            "run dir {} is writable by group or others (mode {mode:04o}); fix with: chmod go-w {}",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

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
pub struct RecordWriter {
    dir: PathBuf,
    record_name: String,
    tmp_name: String,
    /// An unnamed inode for the next record, created after the last one was visible.
    spare: Option<File>,
}

impl RecordWriter {
    pub fn new(dir: &Path, agent: &str) -> Self {
        RecordWriter {
            dir: dir.to_path_buf(),
            record_name: record_name(agent),
            // Unique per watcher.
            tmp_name: tmp_name(agent, std::process::id()),
            spare: None,
        }
    }

    pub fn record_path(&self) -> PathBuf {
        self.dir.join(&self.record_name)
    }

    /// Unlinks `.<agent>.hb.<digits>.tmp` names other than our own. Only for a holder of the
    /// agent's lock. Exact shape only: `.<agent>.hb.x.hb.<N>.tmp` belongs to agent
    /// `<agent>.hb.x` and is left alone. unlink never follows a planted symlink.
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
    /// the rename: the record is visible first, then safe from a crash.
    pub fn write(&mut self, bytes: &[u8], durable: bool) -> io::Result<()> {
        let dirfd = rfs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = self.place(&dirfd, bytes).inspect_err(|_| {
            // Never leave a partial temp file behind (ENOSPC, EIO …).
            let _ = rfs::unlinkat(&dirfd, &self.tmp_name, rfs::AtFlags::empty());
        })?;
        if durable {
            // A reader woken by the rename is usually queued on this CPU (wake-affine): let it
            // run before the fsyncs and our exit, which would otherwise delay it (~0.1 ms).
            rustix::thread::sched_yield();
            // After the rename, so readers see the death without waiting on the disk.
            file.sync_all()?;
            rfs::fsync(&dirfd)?;
        }
        self.spare = rfs::openat(
            &dirfd,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .ok()
        .map(File::from);
        Ok(())
    }

    /// Writes `bytes` to a fresh inode and renames it over the record.
    fn place(&mut self, dirfd: &OwnedFd, bytes: &[u8]) -> io::Result<File> {
        let spare = self.spare.take().and_then(|mut f| {
            f.write_all(bytes).ok()?;
            link_tmpfile(&f, dirfd, &self.tmp_name).ok()?;
            Some(f)
        });
        let file = match spare {
            Some(f) => f,
            None => {
                let mut f = File::from(create_tmp(dirfd, &self.tmp_name)?);
                f.write_all(bytes)?;
                f
            }
        };
        rfs::renameat(dirfd, &self.tmp_name, dirfd, &self.record_name)?;
        Ok(file)
    }
}

/// O_EXCL|O_NOFOLLOW: a planted file or symlink at the temp name is never written through;
/// it is unlinked (the link itself, never its target) and the create retried.
fn create_tmp(dirfd: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
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
fn link_tmpfile(file: &File, dirfd: &OwnedFd, name: &str) -> io::Result<()> {
    let src = format!("/proc/self/fd/{}", file.as_raw_fd());
    let link = || rfs::linkat(rfs::CWD, &src, dirfd, name, rfs::AtFlags::SYMLINK_FOLLOW);
    match link() {
        Err(Errno::EXIST) => {
            rfs::unlinkat(dirfd, name, rfs::AtFlags::empty())?;
            Ok(link()?)
        }
        r => Ok(r?),
    }
}

// The names an agent owns in the run dir: its record, its lock, its watchers' temp names.
// Agents never start with `.`, so the dot-names can never be another agent's record.

pub fn record_name(agent: &str) -> String {
    format!("{agent}.hb")
}

/// The agent whose record `file_name` would be (not yet checked as a valid name).
pub fn agent_of_record(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(".hb")
}

pub fn lock_name(agent: &str) -> String {
    format!(".{agent}.lock")
}

/// The agent whose lock `file_name` would be (not yet checked as a valid name).
pub fn agent_of_lock(file_name: &str) -> Option<&str> {
    file_name.strip_prefix('.')?.strip_suffix(".lock")
}

fn tmp_name(agent: &str, watcher_pid: u32) -> String {
    format!(".{agent}.hb.{watcher_pid}.tmp")
}

/// Is `name` what [`tmp_name`] gives for `agent` and some watcher? Exact shape only:
/// `.<agent>.hb.x.hb.<N>.tmp` belongs to agent `<agent>.hb.x`.
fn is_tmp_name(agent: &str, name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|r| r.strip_prefix(agent))
        .and_then(|r| r.strip_prefix(".hb."))
        .and_then(|r| r.strip_suffix(".tmp"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The one-writer-per-agent lock: an exclusive flock on `<run-dir>/.<agent>.lock`, held for
/// the watcher's life (the kernel drops it when the watcher dies, even as a zombie). The file
/// holds the holder's PID so a refused watcher can name it. It is never deleted: deleting a
/// lock file lets two holders lock two different inodes.
pub fn acquire_lock(dir: &Path, agent: &str) -> Result<OwnedFd> {
    let path = dir.join(lock_name(agent));
    let fd = rfs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| runtime!("cannot open lock {}: {e}", path.display()))?;
    // O_NOFOLLOW stops symlinks, not hard links: never truncate and write an inode that has
    // another name (a planted link to a file outside the run dir) or is no regular file.
    let st = rfs::fstat(&fd).map_err(|e| runtime!("cannot stat lock {}: {e}", path.display()))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile || st.st_nlink != 1 {
        return Err(runtime!(
            "lock {} is not a plain file of its own (a hard link or special file); remove it",
            path.display()
        ));
    }
    // Readers (`ps`, `wait`) test the lock by taking it shared for a few microseconds; do
    // not mistake one of them for another watcher. A real holder keeps it for its life.
    let mut tries = 0;
    let locked = loop {
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Err(Errno::WOULDBLOCK) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            r => break r,
        }
    };
    match locked {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.split_whitespace().next().unwrap_or("?");
            return Err(runtime!(
                "agent {agent} is already watched by pid {holder} (lock {}); stop that watcher first",
                path.display()
            ));
        }
        Err(e) => return Err(runtime!("cannot lock {}: {e}", path.display())),
    }
    let line = format!(
        "{} {}\n",
        std::process::id(),
        crate::procfs::self_start_time()
    );
    let _ = rfs::ftruncate(&fd, 0);
    let _ = rustix::io::pwrite(&fd, line.as_bytes(), 0);
    Ok(fd)
}

/// For readers: is some live process holding the agent's lock? `None` if there is no lock
/// file (a record from the shell baseline, or a deleted file).
pub fn lock_held(dir: &Path, agent: &str) -> Option<bool> {
    let fd = rfs::open(
        dir.join(lock_name(agent)),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    match rfs::flock(fd.as_fd(), FlockOperation::NonBlockingLockShared) {
        Ok(()) => Some(false),
        Err(Errno::WOULDBLOCK) => Some(true),
        Err(_) => None,
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

    #[test]
    fn lock_is_exclusive_and_visible() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(lock_held(t.path(), "a"), None);
        let fd = acquire_lock(t.path(), "a").unwrap();
        assert_eq!(lock_held(t.path(), "a"), Some(true));
        drop(fd);
        assert_eq!(lock_held(t.path(), "a"), Some(false));
    }

    #[test]
    fn unsafe_dirs_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("run");
        prepare(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(matches!(prepare(&d), Err(Error::Runtime(_))));
        let f = t.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(prepare(&f), Err(Error::Usage(_))));
    }
}
