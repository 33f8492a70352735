//! Reading the /proc lines that process identity and state rest on. Judging them (is this
//! the same process, does it still run) is `incarnation.rs`'s.

use std::io;
use std::os::fd::OwnedFd;

/// What /proc says about one process: its state letter and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: u8,
    /// Field 22: clock ticks since boot. With the PID, names one incarnation.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and `)`, so fields
/// are counted after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // After the state (field 3), field 22 is the 19th further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// Reads `/proc/PID/stat`: one open and one read into a stack buffer (`ps` does this for a
/// whole fleet, and a watcher on its death path, where nothing is allocated). Parsed as
/// bytes, so a command name that is not UTF-8 cannot hide a live process (a false `dead`).
pub fn read_stat(pid: i32) -> io::Result<Stat> {
    read_stat_at(ProcPath::new(pid, "stat").as_str())
}

fn read_stat_at(path: &str) -> io::Result<Stat> {
    with_stat_line(path, parse_stat_bytes)
}

/// `/proc/PID/NAME`, formatted on the stack.
struct ProcPath {
    buf: [u8; 32],
    len: usize,
}

impl ProcPath {
    /// `name` is one of this module's few short names ("stat", "status").
    fn new(pid: i32, name: &str) -> ProcPath {
        use std::io::Write;
        let mut buf = [0u8; 32];
        let mut rest = &mut buf[..];
        // "/proc/-2147483648/status" is 24 bytes: it always fits.
        let _ = write!(rest, "/proc/{pid}/{name}");
        let len = 32 - rest.len();
        ProcPath { buf, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Reads the start of `path` into `buf`: the bytes read, as many as fit.
fn read_head<'b>(path: &str, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(read_fd_head(&fd, buf)?)
}

/// One read of `fd` into `buf` (retried on EINTR): a /proc file's whole text when it fits.
fn read_fd_head<'b>(fd: &OwnedFd, buf: &'b mut [u8]) -> rustix::io::Result<&'b [u8]> {
    let n = loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    Ok(&buf[..n])
}

/// Reads the one line of a `/proc/.../stat` file into a stack buffer and hands it to `parse`.
fn with_stat_line<T>(path: &str, parse: impl Fn(&[u8]) -> Option<T>) -> io::Result<T> {
    let mut buf = [0u8; 1024];
    let line = read_head(path, &mut buf)?;
    let parsed = if line.len() == 1024 {
        // Never seen (the line is a few hundred bytes), but never misparse a truncated line.
        parse(&std::fs::read(path)?)
    } else {
        parse(line)
    };
    parsed.ok_or_else(|| io::Error::other(format!("unparsable {path}")))
}

/// Reads `/proc/PID/stat` with field 52 (`exit_code`, Linux ≥ 3.5): the raw wait status a
/// zombie keeps until its parent reaps it. `None` when there is no such process, or when the
/// field says 0 to a reader the kernel hides it from (it shows 0, not the status, to anyone
/// without ptrace-read access: another uid, unless we are root). Whether the line is a zombie,
/// and of which incarnation, is the caller's to judge (`incarnation.rs`).
pub fn read_exit_code(pid: i32) -> Option<(Stat, i32)> {
    let (st, status) = with_stat_line(ProcPath::new(pid, "stat").as_str(), |line| {
        let st = parse_stat_bytes(line)?;
        let mut fields = after_comm(line)?.split_ascii_whitespace();
        // After the state (field 3), field 52 is the 49th further on.
        let status = fields.nth(49)?.parse::<i32>().ok()?;
        Some((st, status))
    })
    .ok()?;
    (status != 0 || may_read_exit_code(pid)).then_some((st, status))
}

/// Would the kernel show us `pid`'s exit code (ptrace-read access)? Root may; otherwise our
/// effective uid must be the target's real, effective and saved uid, and likewise the gids.
fn may_read_exit_code(pid: i32) -> bool {
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        return true;
    }
    let egid = rustix::process::getegid().as_raw();
    // The Uid and Gid lines come early: the head of the file holds them.
    let mut buf = [0u8; 4096];
    let Ok(head) = read_head(ProcPath::new(pid, "status").as_str(), &mut buf) else {
        return false;
    };
    // Bytes, not text: the Name line may not be UTF-8.
    let all = |key: &str, id: u32| {
        head.split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(key.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| {
                v.split_ascii_whitespace()
                    .take(3)
                    .all(|x| x.parse() == Ok(id))
            })
    };
    all("Uid:", euid) && all("Gid:", egid)
}

/// [`parse_stat`] on raw bytes: everything after the last `)` is ASCII.
fn parse_stat_bytes(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    parse_stat(std::str::from_utf8(&line[close..]).ok()?)
}

/// The fields after the command name (the state onwards), as text.
fn after_comm(line: &[u8]) -> Option<&str> {
    let close = line.iter().rposition(|&b| b == b')')?;
    std::str::from_utf8(&line[close + 1..]).ok()
}

/// Has the task in this state exited (a zombie, or dead)?
pub fn is_exited(state: u8) -> bool {
    state == b'Z' || state == b'X' || state == b'x'
}

/// Does some thread of `pid`'s group still run? A leader shows `Z` while its other threads
/// do. Reads `/proc/PID/task` with stack buffers only: the poll backend asks this on its
/// death path.
pub fn group_has_live_thread(pid: i32) -> bool {
    use rustix::fs::{Mode, OFlags, RawDir};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(task) = rustix::fs::open(ProcPath::new(pid, "task").as_str(), flags, Mode::empty())
    else {
        return false;
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut threads = RawDir::new(&task, &mut buf);
    // A failed read ends the walk: getdents would fail the same way again.
    while let Some(Ok(entry)) = threads.next() {
        let tid = entry.file_name().to_bytes();
        if tid.is_empty() || !tid.iter().all(u8::is_ascii_digit) {
            continue; // `.` and `..`
        }
        let mut stat = [0u8; 32];
        let Some(path) = task_stat_path(tid, &mut stat) else {
            continue;
        };
        let mut line = [0u8; 1024];
        let live = rustix::fs::openat(&task, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .ok()
            .and_then(|fd| read_fd_head(&fd, &mut line).ok())
            .and_then(parse_stat_bytes)
            .is_some_and(|st| !is_exited(st.state));
        if live {
            return true;
        }
    }
    false
}

/// `TID/stat`, NUL-terminated in `buf`: the path of a thread's stat file under its
/// `/proc/PID/task`.
fn task_stat_path<'b>(tid: &[u8], buf: &'b mut [u8; 32]) -> Option<&'b std::ffi::CStr> {
    const STAT: &[u8] = b"/stat\0";
    let len = tid.len() + STAT.len();
    if len > buf.len() {
        return None;
    }
    buf[..tid.len()].copy_from_slice(tid);
    buf[tid.len()..len].copy_from_slice(STAT);
    std::ffi::CStr::from_bytes_with_nul(&buf[..len]).ok()
}

/// The thread group (process) that thread `tid` belongs to, from /proc/TID/status.
pub fn tgid(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The running kernel's (major, minor) version, from /proc/sys/kernel/osrelease.
pub fn kernel_version() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = s.trim().split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

pub fn self_start_time() -> u64 {
    read_stat(std::process::id() as i32)
        .map(|s| s.start_time)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens_and_spaces() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_stat_and_a_zombies_exit_code() {
        let me = std::process::id() as i32;
        let st = read_stat(me).unwrap();
        // The state letter may change (R/S) between reads; the identity may not.
        assert_eq!(read_stat(me).unwrap().start_time, st.start_time);
        assert_eq!(self_start_time(), st.start_time);
        assert!(read_stat(-1).is_err());
        assert_eq!(
            ProcPath::new(i32::MIN, "status").as_str(),
            "/proc/-2147483648/status"
        );

        let mut child = crate::incarnation::tests::Reaped::spawn(
            std::process::Command::new("sh").args(["-c", "exit 7"]),
        );
        let pid = child.pid();
        child.await_zombie();
        let (zst, status) = read_exit_code(pid).unwrap();
        assert_eq!((zst.state, status), (b'Z', 7 << 8));
        assert!(may_read_exit_code(pid));
        assert_eq!(child.0.wait().unwrap().code(), Some(7));
        assert_eq!(read_exit_code(pid), None);
        assert_eq!(read_exit_code(me).map(|(_, s)| s), Some(0), "running: 0");
    }

    #[test]
    fn fast_parse_takes_names_that_are_not_utf8() {
        let line = b"42 (a\xff) b)) R 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 55 1 2\n";
        assert_eq!(
            parse_stat_bytes(line),
            Some(Stat {
                state: b'R',
                start_time: 55
            })
        );
        assert_eq!(parse_stat_bytes(b"42 (x"), None);
    }
}
