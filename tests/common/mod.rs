//! Shared helpers for the integration tests: real processes, temp run dirs, and guards that
//! kill and reap everything a test starts (so nothing outlives a failing assertion).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pidbeat");

/// A fresh temp dir for one test, with a private `HOME` inside it so that nothing can ever
/// land under the real `~/.config/mosaic`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pidbeat-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    /// The run dir tests pass explicitly (`--run-dir`); created by pidbeat itself.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn record_path(&self, agent: &str) -> PathBuf {
        self.run_dir().join(format!("{agent}.hb"))
    }

    /// `pidbeat` with a scrubbed environment: no inherited MOSAIC_* or XDG settings.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("NO_COLOR", "1");
        c
    }

    /// Asserts no pidbeat ever wrote under the sandbox's fake home.
    pub fn assert_home_untouched(&self) {
        assert!(
            !self.home().join(".config").exists(),
            "something wrote under $HOME/.config"
        );
    }
}

/// A child process that is SIGKILLed and reaped when dropped, even if the test panics.
pub struct Guard {
    pub child: Option<Child>,
}

impl Guard {
    pub fn new(child: Child) -> Self {
        Guard { child: Some(child) }
    }
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }
    /// Waits for the child to exit on its own within `timeout`; returns its status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    /// SIGKILLs and reaps now; returns the status.
    pub fn kill(&mut self) -> std::process::ExitStatus {
        let c = self.child();
        let _ = c.kill();
        c.wait().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a target process (a child of the test, never of the watcher).
pub fn spawn_target(argv: &[&str]) -> Guard {
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn target");
    Guard::new(child)
}

pub fn spawn_sleep() -> Guard {
    spawn_target(&["sleep", "1000"])
}

pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY-free: the `kill` binary keeps the tests off libc.
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Reads and parses a record; `None` if it is missing. Panics on a partial record, which
/// atomic replacement must make impossible.
pub fn read_record(path: &Path) -> Option<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    assert!(
        text.ends_with('\n'),
        "record not newline-terminated: {text:?}"
    );
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad record {text:?}: {e}")))
}

/// Polls (test side only) until the record satisfies `pred`, or panics after `timeout`.
pub fn wait_record(path: &Path, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_record(path) {
            if pred(&v) {
                return v;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting on {}; last: {:?}",
                path.display(),
                read_record(path)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn status_is(v: &Value, s: &str) -> bool {
    v["status"] == s
}

/// True if `pid` names a live, non-zombie process. A zombie counts as gone.
pub fn pid_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = &s[s.rfind(')').unwrap() + 2..];
            !after.starts_with('Z') && !after.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Waits until `pid` is gone (or a zombie), panicking after `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pid_running(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps `pid` if it is our (possibly adopted) child; ignores ECHILD.
pub fn reap(pid: i32) {
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::NOHANG,
    );
}
