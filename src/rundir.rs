//! The run dir as both sides see it: where it is and that it is safe, what an agent may be
//! called, the names an agent owns in it, how a reader tells that a watcher holds an agent's
//! lock, and the timings both sides must agree on. The writer (`watcher/`) and the readers
//! (`reader/`) meet only here and in `record.rs`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::exitcode::{Error, Result, runtime};

pub const RUN_DIR_ENV: &str = "MOSAIC_HEARTBEAT_RUN_DIR";

/// How long a `dead` record waits for the kernel to learn a non-child's exit status (it
/// does once the parent reaps). Readers give a `dead` record without `exit` this long (and
/// a margin) before they stop expecting it.
pub const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Seconds between heartbeats, kept as the user gave them for the record's `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub secs: f64,
}

impl Interval {
    /// The watcher's default, and what readers assume for a record that states none.
    pub const DEFAULT: Interval = Interval { secs: 15.0 };
    const MIN_SECS: f64 = 0.001;
    const MAX_SECS: f64 = 86_400.0;

    /// `given` is the user's text, for the message.
    pub fn new(secs: f64, given: &str) -> std::result::Result<Interval, IntervalError> {
        let refused = |why| {
            Err(IntervalError {
                given: given.to_owned(),
                why,
            })
        };
        if secs <= 0.0 {
            return refused(IntervalRefusal::NotPositive);
        }
        if secs < Self::MIN_SECS {
            return refused(IntervalRefusal::BelowMinimum);
        }
        if secs > Self::MAX_SECS {
            return refused(IntervalRefusal::OverADay);
        }
        Ok(Interval { secs })
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

/// Why an interval is refused, with the user's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalError {
    given: String,
    why: IntervalRefusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntervalRefusal {
    NotPositive,
    /// A watcher would spin.
    BelowMinimum,
    OverADay,
}

impl fmt::Display for IntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = &self.given;
        match self.why {
            IntervalRefusal::NotPositive => write!(f, "interval must be positive, got {given}"),
            IntervalRefusal::BelowMinimum => write!(
                f,
                "interval {given} is below the 0.001 s minimum (a watcher would spin)"
            ),
            IntervalRefusal::OverADay => write!(f, "interval {given} is over one day (86400 s)"),
        }
    }
}

impl std::error::Error for IntervalError {}

/// DESIGN.md's rule: 1–128 bytes of `[A-Za-z0-9._@+-]`, not starting with `.`. This keeps
/// names safe as file names (no `/`, no `..`, no NUL, no hidden lock/temp collisions).
pub fn check_agent_name(s: &str) -> std::result::Result<(), AgentNameError> {
    let refused = |why| {
        Err(AgentNameError {
            name: s.to_owned(),
            why,
        })
    };
    if s.is_empty() {
        return refused(NameRefusal::Empty);
    }
    if s.len() > 128 {
        return refused(NameRefusal::TooLong);
    }
    if s.starts_with('.') {
        return refused(NameRefusal::LeadingDot);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._@+-".contains(*c)))
    {
        return refused(NameRefusal::Char(c));
    }
    Ok(())
}

/// [`check_agent_name`] with its message as text, for the etcd layer (`cluster/keys.rs`),
/// which rewords it for host names and speaks `String` errors.
pub fn validate_agent(s: &str) -> std::result::Result<(), String> {
    check_agent_name(s).map_err(|e| e.to_string())
}

/// Why a name is not an agent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentNameError {
    name: String,
    why: NameRefusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRefusal {
    Empty,
    TooLong,
    LeadingDot,
    Char(char),
}

impl fmt::Display for AgentNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match self.why {
            NameRefusal::Empty => write!(f, "agent name is empty"),
            NameRefusal::TooLong => {
                write!(f, "agent name is {} bytes, the limit is 128", name.len())
            }
            NameRefusal::LeadingDot => write!(f, "agent name `{name}` starts with `.`"),
            NameRefusal::Char(c) => write!(
                f,
                "agent name `{}` contains {c:?}; allowed: A-Z a-z 0-9 . _ @ + -",
                name.escape_debug()
            ),
        }
    }
}

impl std::error::Error for AgentNameError {}

/// A run dir named by the user (flag or environment): not empty, and a directory if it
/// exists.
pub fn parse_run_dir(s: &str) -> std::result::Result<PathBuf, RunDirError> {
    if s.is_empty() {
        return Err(RunDirError::Empty);
    }
    let p = PathBuf::from(s);
    if p.exists() && !p.is_dir() {
        return Err(RunDirError::NotADirectory(p));
    }
    Ok(p)
}

/// Why a run dir given by the user is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunDirError {
    Empty,
    NotADirectory(PathBuf),
}

impl fmt::Display for RunDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunDirError::Empty => f.write_str("run dir is empty"),
            RunDirError::NotADirectory(p) => {
                write!(f, "`{}` exists and is not a directory", p.display())
            }
        }
    }
}

impl std::error::Error for RunDirError {}

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
        return parse_run_dir(s)
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
    match distrust(dir, &m) {
        Some(why) => Err(runtime!("{why}")),
        None => Ok(()),
    }
}

/// Why nobody should trust what `dir` (whose metadata is `m`) holds, if anyone but this user
/// could have written it: another owner, or write permission for group or others. The one
/// rule for the writers, who refuse such a dir, and the readers, who say so.
pub fn distrust(dir: &Path, m: &std::fs::Metadata) -> Option<String> {
    let euid = rustix::process::geteuid().as_raw();
    if m.uid() != euid {
        return Some(format!(
            "run dir {} is owned by uid {}, not by you (uid {euid}); use a run dir of your own",
            dir.display(),
            m.uid()
        ));
    }
    let mode = m.mode() & 0o7777;
    (mode & 0o022 != 0).then(|| {
        format!(
            "run dir {} is writable by group or others (mode {mode:04o}); fix with: chmod go-w {}",
            dir.display(),
            dir.display()
        )
    })
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

/// Past deaths: one record per line, oldest first, at most [`HISTORY_LEN`] lines of at most
/// [`HISTORY_LINE_MAX`] bytes each. Written by the next watcher of the agent before it
/// replaces the record (`watcher/history.rs`), read by `ps --history`.
pub fn deaths_name(agent: &str) -> String {
    format!("{agent}.deaths")
}

/// How many deaths an agent's history keeps.
pub const HISTORY_LEN: usize = 10;
/// A record longer than this is not kept in the history (pidbeat's are about 300 bytes).
pub const HISTORY_LINE_MAX: usize = 4096;

/// The launcher's log for the agent (`scripts/start-agent-session.sh`).
pub fn log_name(agent: &str) -> String {
    format!("{agent}.log")
}

pub fn lock_name(agent: &str) -> String {
    format!(".{agent}.lock")
}

/// The agent's sd_notify socket, bound by its watcher while it runs and removed when it
/// ends (`forget` removes one a killed watcher left).
pub fn notify_name(agent: &str) -> String {
    format!(".{agent}.notify")
}

/// The agent whose lock `file_name` would be (not yet checked as a valid name).
pub fn agent_of_lock(file_name: &str) -> Option<&str> {
    file_name.strip_prefix('.')?.strip_suffix(".lock")
}

/// Unique per watcher, so two watchers of one agent (one refused by the lock) never share one.
pub fn tmp_name(agent: &str, watcher_pid: u32) -> String {
    format!(".{agent}.hb.{watcher_pid}.tmp")
}

/// Is `name` a temp file of `agent`'s: what [`tmp_name`] gives for some watcher, or the temp
/// file of its death history (`.<agent>.deaths.<N>.tmp`, from `wholefile::replace`)? Exact
/// shape only: `.<agent>.hb.x.hb.<N>.tmp` belongs to agent `<agent>.hb.x`.
pub fn is_tmp_name(agent: &str, name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|r| r.strip_prefix(agent))
        .and_then(|r| {
            r.strip_prefix(".hb.")
                .or_else(|| r.strip_prefix(".deaths."))
        })
        .and_then(|r| r.strip_suffix(".tmp"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Names that matter to a reader of `agent`: its record and its lock file.
pub fn is_agent_file(name: &OsStr, agent: &str) -> bool {
    name.to_str()
        .is_some_and(|n| n == record_name(agent) || n == lock_name(agent))
}

/// Any record or lock file (temp files `.<agent>.hb.<pid>.tmp` are not).
pub fn is_fleet_file(name: &OsStr) -> bool {
    let n = name.as_bytes();
    if let Some(lock) = n.strip_prefix(b".") {
        lock.ends_with(b".lock")
    } else {
        n.ends_with(b".hb")
    }
}

/// An exclusive hold on an agent's lock file, with the file's identity (to check later that
/// the path still names it).
pub struct LockHold {
    pub fd: OwnedFd,
    pub dev: u64,
    pub ino: u64,
}

/// Why an agent's lock could not be taken.
pub enum LockRefusal {
    /// Another process holds it.
    Held,
    /// A hard link or a special file: its holder writes its PID into it, so it is never
    /// locked (and then truncated and written).
    NotPlain,
    Io(Errno),
}

/// Takes the agent's lock in the run dir `dirfd` exclusively. Used by the watcher for its
/// life and by `forget`/`prune` while they remove the agent's files (so a starting watcher
/// and a removal never overlap). The lock file is created if missing. `forget` unlinks the
/// lock file while holding it, so after locking, the path must still name the locked inode,
/// else the lock is on a file nobody else will find and it is taken again on the new one.
/// Readers test the lock by taking it shared for microseconds; a real holder keeps it, so
/// contention is retried for [`LOCK_CONTENTION_WAIT`].
pub fn lock_exclusive_at(
    dirfd: BorrowedFd<'_>,
    agent: &str,
) -> std::result::Result<LockHold, LockRefusal> {
    lock_exclusive_within(dirfd, agent, LOCK_CONTENTION_WAIT)
}

/// How long a lock held by a reader's shared test is retried: readers hold it for
/// microseconds.
pub const LOCK_CONTENTION_WAIT: Duration = Duration::from_millis(100);

/// [`lock_exclusive_at`], retrying contention for `wait`: every millisecond for the first
/// [`LOCK_CONTENTION_WAIT`] (a reader's test ends within it), then every 50 ms (a holder
/// still there by then is a watcher, which lets go on its own time).
fn lock_exclusive_within(
    dirfd: BorrowedFd<'_>,
    agent: &str,
    wait: Duration,
) -> std::result::Result<LockHold, LockRefusal> {
    let name = lock_name(agent);
    loop {
        let fd = rfs::openat(
            dirfd,
            &name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(LockRefusal::Io)?;
        // O_NOFOLLOW stops symlinks, not hard links (a planted link to a file outside the run
        // dir).
        let st = rfs::fstat(&fd).map_err(LockRefusal::Io)?;
        if st.st_nlink == 0 {
            // A `forget` unlinked it between our open and fstat: lock the current file.
            continue;
        }
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile || st.st_nlink > 1
        {
            return Err(LockRefusal::NotPlain);
        }
        let current = || match rfs::statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(now) => Ok((now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(LockRefusal::Io(e)),
        };
        let start = std::time::Instant::now();
        let locked = loop {
            match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break current()?,
                Err(Errno::WOULDBLOCK) if start.elapsed() < wait => {
                    let step = match start.elapsed() < LOCK_CONTENTION_WAIT {
                        true => Duration::from_millis(1),
                        false => Duration::from_millis(50),
                    };
                    std::thread::sleep(step.min(wait.saturating_sub(start.elapsed())));
                    // Its holder was a `forget` that is done: no use waiting on this inode.
                    if !current()? {
                        break false;
                    }
                }
                Err(Errno::WOULDBLOCK) => return Err(LockRefusal::Held),
                Err(e) => return Err(LockRefusal::Io(e)),
            }
        };
        if locked {
            return Ok(LockHold {
                fd,
                dev: st.st_dev,
                ino: st.st_ino,
            });
        }
        // Unlinked (or replaced) by a `forget` that held it: lock the current file.
    }
}

/// [`lock_exclusive_at`] by path, for `forget`/`prune`, retrying contention for `wait`:
/// `Ok(None)` if another process still holds the lock then.
pub fn lock_exclusive(
    dir: &Path,
    agent: &str,
    wait: Duration,
) -> std::result::Result<Option<OwnedFd>, LockError> {
    let dirfd = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LockError::RunDir(dir.to_path_buf(), e))?;
    let lock = || dir.join(lock_name(agent));
    match lock_exclusive_within(dirfd.as_fd(), agent, wait) {
        Ok(hold) => Ok(Some(hold.fd)),
        Err(LockRefusal::Held) => Ok(None),
        Err(LockRefusal::NotPlain) => Err(LockError::NotPlain(lock())),
        Err(LockRefusal::Io(e)) => Err(LockError::Io(lock(), e)),
    }
}

/// Why [`lock_exclusive`] could not lock (a lock held by another process is not an error).
#[derive(Debug)]
pub enum LockError {
    /// The run dir cannot be opened.
    RunDir(PathBuf, Errno),
    /// The lock file is a hard link or a special file.
    NotPlain(PathBuf),
    Io(PathBuf, Errno),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::RunDir(dir, e) => write!(f, "cannot open run dir {}: {e}", dir.display()),
            LockError::NotPlain(lock) => write!(
                f,
                "lock {} is not a plain file of its own (a hard link or special file); remove it",
                lock.display()
            ),
            LockError::Io(lock, e) => write!(f, "cannot lock {}: {e}", lock.display()),
        }
    }
}

impl std::error::Error for LockError {}

/// The PID the lock's holder wrote into the lock file (`watcher::lock`), to name it in a
/// refusal. Opened like a record (no symlink followed, a FIFO never waited on), and only its
/// first bytes are read.
pub fn lock_holder(lock_path: &Path) -> Option<i32> {
    let fd = rfs::open(
        lock_path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// For readers: is some live process holding the agent's lock? `None` if there is no lock
/// file (a record from the shell baseline, or a deleted file). The lock itself is taken by
/// the writer (`watcher::lock`); the kernel frees it when the holder dies.
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
mod tests;
