//! What /proc says about a process, read by the test itself (never through pidbeat).

use std::path::PathBuf;
use std::time::Duration;

use super::{poll, wait_until};

/// /proc/PID/stat after the command name (which may hold spaces and parentheses).
fn stat_tail(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(s[s.rfind(')')? + 2..].to_owned())
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, `None` if the process is gone.
pub fn stat_field(pid: i32, n: usize) -> Option<String> {
    stat_tail(pid)?
        .split_ascii_whitespace()
        .nth(n - 3)
        .map(str::to_owned)
}

/// The state letter of /proc/PID/stat (`R`, `S`, `T`, `Z` …), `None` if gone.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_tail(pid)?.chars().next()
}

/// The start time (field 22 of /proc/PID/stat, in clock ticks since boot).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 22)?.parse().ok()
}

/// The session ID (field 6 of /proc/PID/stat).
pub fn session_id(pid: i32) -> Option<i32> {
    stat_field(pid, 6)?.parse().ok()
}

/// Where file descriptor `fd` of `pid` points.
pub fn fd_target(pid: i32, fd: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// The command line of `pid`, arguments joined by spaces; empty if unreadable.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether the environment of `pid` holds the entry `var` (`KEY=value`); false if unreadable.
pub fn environ_has(pid: i32, var: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == var))
}

/// Every PID listed in /proc (zombies included).
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// True if `pid` names a live, non-zombie process. A zombie counts as gone.
pub fn pid_running(pid: i32) -> bool {
    !matches!(proc_state(pid), None | Some('Z' | 'X'))
}

/// Waits until `pid` is gone (or a zombie), panicking after `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) {
    poll(
        timeout,
        Duration::from_millis(5),
        || (!pid_running(pid)).then_some(()),
        || {
            format!(
                "pid {pid} ({}) still running after {timeout:?}",
                cmdline(pid)
            )
        },
    )
}

/// Waits until the kernel shows `pid` stopped (`T`), panicking after `timeout`.
pub fn wait_stopped(pid: i32, timeout: Duration) {
    wait_until(timeout, &format!("pid {pid} stopped"), || {
        proc_state(pid) == Some('T')
    });
}

/// `pid` and its command line, for messages about processes left running.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| format!("{p}: {}", cmdline(*p)))
        .collect::<Vec<_>>()
        .join("; ")
}
