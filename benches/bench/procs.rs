//! The bench's children and what /proc says about them. Every child is killed and reaped when
//! its guard drops, and dies with the bench (PR_SET_PDEATHSIG) even if the bench itself is
//! killed.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

pub struct Proc {
    child: Option<Child>,
    pub pid: i32,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: &fs::File) -> io::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone()?)
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .env_remove("MOSAIC_HEARTBEAT_INTERVAL");
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe, and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Proc {
            pid: child.id() as i32,
            child: Some(child),
        })
    }

    pub fn target(log: &fs::File) -> io::Result<Proc> {
        Proc::spawn(Command::new("sleep").arg("100000"), log)
    }

    pub fn signal(&self, sig: Signal) {
        if self.child.is_some()
            && let Some(p) = Pid::from_raw(self.pid)
        {
            let _ = rustix::process::kill_process(p, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill_reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; reaps it. `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    return Some(st);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => return None,
            }
        }
    }

    /// Polite stop (SIGTERM), then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.signal(Signal::TERM);
        if self.wait_exit(grace).is_none() {
            self.kill_reap();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_reap();
    }
}

/// Kills and reaps anything still below the bench (orphans adopted as subreaper included).
/// Returns how many there were.
pub fn sweep_children() -> usize {
    let mut left = 0;
    for _ in 0..50 {
        let kids = children_of(std::process::id() as i32);
        if kids.is_empty() {
            break;
        }
        for k in &kids {
            if let Some(p) = Pid::from_raw(*k) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        left += kids.len();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
    }
    while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
    left
}

pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out
}

// --- /proc readers

/// Fields of /proc/PID/stat after the command name: index 0 is field 3 (state).
pub fn stat_fields(pid: i32) -> Option<Vec<u64>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(
        rest.split_ascii_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// The process's own CPU time: schedstat (ns-exact) when the kernel keeps it, else ticks.
    self_ns: u64,
    /// utime + stime in ticks.
    self_ticks: u64,
    /// cutime + cstime in ticks: children it has reaped (the shell's date, mv, sleep).
    child_ticks: u64,
}

impl Cpu {
    pub fn read(pid: i32, tick_ns: u64) -> Option<Cpu> {
        let f = stat_fields(pid)?;
        // utime=14 stime=15 cutime=16 cstime=17 → indices 11..=14.
        let self_ticks = f.get(11)? + f.get(12)?;
        let child_ticks = f.get(13)? + f.get(14)?;
        let sched = fs::read_to_string(format!("/proc/{pid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .filter(|&ns| ns > 0);
        Some(Cpu {
            self_ns: sched.unwrap_or(self_ticks * tick_ns),
            self_ticks,
            child_ticks,
        })
    }

    pub fn total_ns(&self, tick_ns: u64) -> u64 {
        self.self_ns + self.child_ticks * tick_ns
    }

    pub fn ticks_ns(&self, tick_ns: u64) -> u64 {
        (self.self_ticks + self.child_ticks) * tick_ns
    }
}

pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    proc_value(&format!("/proc/{pid}/status"), key)
}

/// The number after `key` on the first line of `path` that starts with `key`.
pub fn proc_value(path: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn pss_kib(pid: i32) -> Option<u64> {
    proc_value(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}
