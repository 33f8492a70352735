//! Reading process identity and state from /proc.

use std::io;

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
/// whole fleet). Parsed as bytes, so a command name that is not UTF-8 cannot hide a live
/// process (a false `dead`).
pub fn read_stat(pid: i32) -> io::Result<Stat> {
    read_stat_at(&format!("/proc/{pid}/stat"))
}

fn read_stat_at(path: &str) -> io::Result<Stat> {
    with_stat_line(path, parse_stat_bytes)
}

/// Reads the one line of a `/proc/.../stat` file into a stack buffer and hands it to `parse`.
fn with_stat_line<T>(path: &str, parse: impl Fn(&[u8]) -> Option<T>) -> io::Result<T> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut buf = [0u8; 1024];
    let n = loop {
        match rustix::io::read(&fd, &mut buf) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let parsed = if n == buf.len() {
        // Never seen (the line is a few hundred bytes), but never misparse a truncated line.
        parse(&std::fs::read(path)?)
    } else {
        parse(&buf[..n])
    };
    parsed.ok_or_else(|| io::Error::other(format!("unparsable {path}")))
}

/// The raw wait status of the zombie `(pid, start_time)`: field 52 of `/proc/PID/stat`
/// (`exit_code`, Linux ≥ 3.5), which the kernel keeps until the parent reaps. `None` when
/// the process is not that incarnation or not a zombie (running, or already reaped), or
/// when the field says 0 to a reader the kernel hides it from (it shows 0, not the status,
/// to anyone without ptrace-read access: another uid, unless we are root).
pub fn zombie_wait_status(pid: i32, start_time: u64) -> Option<i32> {
    let status = with_stat_line(&format!("/proc/{pid}/stat"), |line| {
        let mut fields = after_comm(line)?.split_ascii_whitespace();
        let zombie = fields.next()? == "Z" && fields.nth(18)?.parse().ok() == Some(start_time);
        // After field 22, field 52 is the 30th further on.
        zombie.then(|| fields.nth(29)?.parse::<i32>().ok())?
    })
    .ok()?;
    (status != 0 || may_read_exit_code(pid)).then_some(status)
}

/// Would the kernel show us `pid`'s exit code (ptrace-read access)? Root may; otherwise our
/// effective uid must be the target's real, effective and saved uid, and likewise the gids.
fn may_read_exit_code(pid: i32) -> bool {
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        return true;
    }
    let egid = rustix::process::getegid().as_raw();
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let all = |key: &str, id: u32| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
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

fn is_exited(state: u8) -> bool {
    state == b'Z' || state == b'X' || state == b'x'
}

/// The liveness verdict of the poll backend and of `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone, a zombie, or the PID now names another process.
    Dead,
}

/// Is the incarnation `(pid, start_time)` still running? A leader shows `Z` while its other
/// threads still run; the process is dead only when the whole thread group has exited.
pub fn probe(pid: i32, start_time: u64) -> Liveness {
    match read_stat(pid) {
        Ok(st) => liveness(pid, start_time, st),
        // Only "no such process" is death. EMFILE, ENOMEM … say nothing about the target, and
        // a `dead` record cannot be taken back: the next check will tell.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            Liveness::Dead
        }
        Err(_) => Liveness::Alive,
    }
}

/// [`probe`]'s verdict on a `/proc/PID/stat` already read.
pub fn liveness(pid: i32, start_time: u64, st: Stat) -> Liveness {
    if st.start_time != start_time {
        Liveness::Dead
    } else if !is_exited(st.state) || group_has_live_thread(pid) {
        Liveness::Alive
    } else {
        Liveness::Dead
    }
}

/// True if the process exists and is not a fully exited thread group.
pub fn is_running(pid: i32) -> Option<Stat> {
    let st = read_stat(pid).ok()?;
    (liveness(pid, st.start_time, st) == Liveness::Alive).then_some(st)
}

/// Is the incarnation of `pid` that started at `start_time` still running ([`probe`])?
/// Without a start time (seed-format records), whoever has the PID now counts.
pub fn still_running(pid: i32, start_time: Option<u64>) -> bool {
    match start_time {
        Some(st) => probe(pid, st) == Liveness::Alive,
        None => is_running(pid).is_some(),
    }
}

fn group_has_live_thread(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    dir.flatten().any(|t| {
        let path = t.path().join("stat");
        path.to_str()
            .and_then(|p| read_stat_at(p).ok())
            .is_some_and(|st| !is_exited(st.state))
    })
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
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let st = read_stat(pid).unwrap();
        assert_eq!(probe(pid, st.start_time), Liveness::Alive);
        assert_eq!(probe(pid, st.start_time + 1), Liveness::Dead);
        assert!(is_running(pid).is_some());
        // The state letter may change (R/S) between reads; the identity may not.
        assert_eq!(read_stat(pid).unwrap().start_time, st.start_time);
        assert!(read_stat(-1).is_err());
    }

    #[test]
    fn zombie_status_is_read_without_reaping() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let st = loop {
            let st = read_stat(pid).unwrap();
            if st.state == b'Z' {
                break st;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(zombie_wait_status(pid, st.start_time), Some(7 << 8));
        assert_eq!(zombie_wait_status(pid, st.start_time + 1), None);
        assert_eq!(child.wait().unwrap().code(), Some(7));
        assert_eq!(zombie_wait_status(pid, st.start_time), None);
        let me = std::process::id() as i32;
        assert_eq!(zombie_wait_status(me, self_start_time()), None, "running");
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
