//! Shared helpers for the integration tests: real processes, temp run dirs, and guards that
//! kill and reap everything a test starts (so nothing outlives a failing assertion).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pidbeat");

/// The keys of a record, in the order the record contract fixes.
pub const RECORD_KEYS: [&str; 11] = [
    "ts",
    "pid",
    "status",
    "ts_ms",
    "seq",
    "interval",
    "backend",
    "watcher_pid",
    "start_time",
    "exit",
    "died_ms",
];

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
        self.cmd_of(BIN)
    }

    /// `program` with the environment of `cmd` (for wrappers such as nsenter or unshare that
    /// exec pidbeat).
    pub fn cmd_of(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("NO_COLOR", "1");
        c
    }

    /// `pidbeat watch --pid PID --agent AGENT --run-dir <run dir>`, for more flags and a run.
    pub fn watch_cmd(&self, pid: i32, agent: &str) -> Command {
        let mut c = self.cmd();
        watch_args(&mut c, pid, agent, &self.run_dir());
        c
    }

    /// A foreground watcher (`watch_cmd` then `extra`), stdio on /dev/null, killed on drop.
    pub fn watch(&self, pid: i32, agent: &str, extra: &[&str]) -> Guard {
        let child = self
            .watch_cmd(pid, agent)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watcher");
        Guard::new(child)
    }

    /// `watch`, then waits (up to 5 s) for this watcher's first `alive` record.
    pub fn watch_alive(&self, pid: i32, agent: &str, extra: &[&str]) -> Guard {
        let g = self.watch(pid, agent, extra);
        let wpid = g.pid();
        wait_record(&self.record_path(agent), Duration::from_secs(5), |v| {
            status_is(v, "alive") && v["watcher_pid"] == wpid
        });
        g
    }

    /// `pidbeat ps --run-dir <run dir> ARGS…`.
    pub fn ps_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.arg("ps").arg("--run-dir").arg(self.run_dir()).args(args);
        c
    }

    /// Runs `ps_cmd(args)` to completion.
    pub fn ps(&self, args: &[&str]) -> Output {
        self.ps_cmd(args).output().expect("run ps")
    }

    /// Writes `r` as `agent`'s record the way a watcher does (creating the run dir): for
    /// states real processes cannot hold still for.
    pub fn plant(&self, agent: &str, r: &pidbeat::testing::Record) {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        pidbeat::testing::RecordWriter::new(&self.run_dir(), agent)
            .write(&r.to_line(), false)
            .unwrap();
    }

    /// Takes `agent`'s lock (creating the run dir) the way its watcher does: this test process
    /// then stands for a running watcher until the returned fd is dropped.
    pub fn hold_lock(&self, agent: &str) -> std::os::fd::OwnedFd {
        std::fs::create_dir_all(self.run_dir()).unwrap();
        pidbeat::testing::acquire_lock(&self.run_dir(), agent).unwrap()
    }

    /// Waits until `agent`'s record has status `status`, panicking after `timeout`.
    pub fn wait_status(&self, agent: &str, status: &str, timeout: Duration) -> Value {
        wait_record(&self.record_path(agent), timeout, |v| status_is(v, status))
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

/// Adds `watch --pid PID --agent AGENT --run-dir DIR` to `c` (pidbeat itself, or a wrapper
/// that execs it).
pub fn watch_args<'c>(
    c: &'c mut Command,
    pid: i32,
    agent: &str,
    run_dir: &Path,
) -> &'c mut Command {
    c.args(["watch", "--pid", &pid.to_string(), "--agent", agent])
        .arg("--run-dir")
        .arg(run_dir)
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

/// A target that exits with `code` once its stdin, a pipe, reaches EOF: drop
/// `child().stdin` to end it.
pub fn spawn_exit_on_eof(code: i32) -> Guard {
    let child = Command::new("sh")
        .args(["-c", &format!("read _; exit {code}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn target");
    Guard::new(child)
}

/// The PID of a process that existed and is gone (exited and reaped).
pub fn exited_pid() -> i32 {
    let mut g = spawn_target(&["true"]);
    g.child().wait().unwrap();
    g.pid()
}

/// A parent that never reaps: `sh` starts `child` (a shell command) in the background, writes
/// its PID to `pidfile` and execs `sleep 1000`, which never waits. Returns the parent and the
/// child's PID; once the child exits it stays a zombie for as long as the parent lives.
pub fn spawn_zombie_parent(child: &str, pidfile: &Path) -> (Guard, i32) {
    let parent = spawn_target(&[
        "sh",
        "-c",
        &format!("{child} & echo $! > {}; exec sleep 1000", pidfile.display()),
    ]);
    let pid = read_pid_file(pidfile, Duration::from_secs(5));
    (parent, pid)
}

/// Waits for `path` to hold a whole line (`echo $$ > path`) and parses it as a PID, panicking
/// after `timeout`.
pub fn read_pid_file(path: &Path, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}: no PID in {s:?}: {e}", path.display()));
        }
        assert!(
            Instant::now() < deadline,
            "{} held no PID after {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
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
    wait_record_with(path, timeout, Duration::from_millis(2), || {}, pred)
}

/// `wait_record`, looking every `every` and calling `each` before each look.
pub fn wait_record_with(
    path: &Path,
    timeout: Duration,
    every: Duration,
    mut each: impl FnMut(),
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        each();
        if let Some(v) = read_record(path)
            && pred(&v)
        {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting on {}; last: {:?}",
                path.display(),
                read_record(path)
            );
        }
        std::thread::sleep(every);
    }
}

pub fn status_is(v: &Value, s: &str) -> bool {
    v["status"] == s
}

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

/// The command line of `pid`, arguments joined by spaces; empty if unreadable.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
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
    let deadline = Instant::now() + timeout;
    while pid_running(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} ({}) still running after {timeout:?}",
            cmdline(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` (every 2 ms) until it holds, panicking after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the kernel shows `pid` stopped (`T`), panicking after `timeout`.
pub fn wait_stopped(pid: i32, timeout: Duration) {
    wait_until(timeout, &format!("pid {pid} stopped"), || {
        proc_state(pid) == Some('T')
    });
}

/// Makes this test process the reaper of orphans (PID 1 in the sandbox reaps nothing), so
/// that it can reap them by PID. Process-wide; we only ever reap specific PIDs, never
/// `waitpid(-1)`, which would steal other tests' children.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Whether `unshare --pid --fork --mount-proc FLAGS… true` works here (it needs privileges
/// some sandboxes lack).
pub fn unshare_pid_ns_works(flags: &[&str]) -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .args(flags)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Delivers the lines of `r` (a child's stdout) through a channel as they come, from a
/// thread that ends at EOF or once the receiver is gone.
pub fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

/// `ps --json` output as agent → the object ps printed.
pub fn parse_ps(text: &str) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("ps --json is not JSON ({e}): {text:?}"));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("ps --json is not an array: {text}"));
    arr.iter()
        .map(|o| {
            let a = o["agent"]
                .as_str()
                .unwrap_or_else(|| panic!("no agent in {o}"));
            (a.to_owned(), o.clone())
        })
        .collect()
}

/// The names in `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Permission bits (with setuid, setgid, sticky) of `p`.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Milliseconds since the epoch, by the test's own clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Reaps `pid` if it is our (possibly adopted) child; ignores ECHILD.
pub fn reap(pid: i32) {
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::NOHANG,
    );
}
