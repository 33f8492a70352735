//! Integration tests for `scripts/start-agent-session.sh` and `scripts/hb-sidecar.sh`.
//!
//! Three kinds of test:
//! * shim tests put a fake `tmux` and a fake `setsid` (tiny scripts that log their argv) first on
//!   PATH and check the exact commands the launcher runs, without starting anything;
//! * sidecar tests drive `hb-sidecar.sh` directly against a child of the test;
//! * real tests start a real tmux server on a private `TMUX_TMPDIR` and real watchers
//!   (`pidbeat watch` for pidfd/poll, the sidecar for shell). They run one at a time.
//!
//! Every test has its own sandbox (temp HOME, run dir, tmux socket dir). Every process the
//! launcher starts inherits `TMUX_TMPDIR=<sandbox>/tmux`, so the harness finds them all by
//! scanning `/proc/*/environ` for it, and its cleanup (also run from `Drop` when an assertion
//! fails) kills the tmux server and every such process and reaps them: the test process is a
//! child subreaper, because PID 1 in the sandbox does not reap orphans.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use common::{
    BIN, Sandbox, all_pids, become_subreaper, cmdline, dir_names, mode, pid_running, read_pid_file,
    read_record, reap, start_time, stat_field, status_is, wait_gone, wait_record_with,
};
use serde_json::Value;

const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/start-agent-session.sh"
);
const SIDECAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hb-sidecar.sh");
const WARN: &str = "start-agent-session: warning: ";

// ---- harness ---------------------------------------------------------------------------------

/// Real-tmux tests run one at a time: the pidfd latency bound is tight on a 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn real_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
}

fn session_id(pid: i32) -> Option<i32> {
    stat_field(pid, 6)?.parse().ok()
}

fn fd_target(pid: i32, fd: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if pid > 0
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Reaps only PIDs we know; never `waitpid(-1)`, which would steal other tests' children.
fn reap_known(pid: i32) {
    if pid > 0 {
        reap(pid);
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
    /// Exactly one line on stderr, and it is a launcher warning.
    fn assert_one_warning(&self, mentions: &str) {
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected one warning line, got {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with(WARN), "not a warning: {:?}", lines[0]);
        assert!(
            lines[0].contains(mentions),
            "warning {:?} lacks {mentions:?}",
            lines[0]
        );
    }
}

/// Runs a command with piped stdout/stderr and a deadline. Once it has exited, both pipes must
/// reach EOF promptly: a detached process that kept the launcher's stdout or stderr open would
/// hang every `out=$(start-agent-session.sh …)`.
/// Its stdin is a pipe we never write to (like a terminal nobody types into), so a watcher that
/// inherited it instead of reading /dev/null shows up in `/proc/PID/fd/0`.
fn run(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn launcher");
    let stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for (i, mut p) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within 30 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    drop(stdin);
    let mut out = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let (i, buf) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the launcher exited but something it started still holds its stdout/stderr");
        out[i] = buf;
    }
    let [stdout, stderr] = out.map(|b| String::from_utf8_lossy(&b).into_owned());
    Run {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// One log record per invocation of a shim: its argv and the environment it saw.
#[derive(Debug, Clone)]
struct Call {
    argv: Vec<String>,
    env: Vec<String>,
}

impl Call {
    fn env(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.env
            .iter()
            .find_map(|e| e.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("shim did not log {key}"))
    }
}

const FAKE_TMUX: &str = r#"#!/bin/sh
# fake tmux: logs argv (fields end in \037, a call ends in \036), answers list-panes.
{ printf '%s\037' "$@" ENV "TMUX=${TMUX-<unset>}" "TMUX_TMPDIR=${TMUX_TMPDIR-<unset>}"; printf '\036'; } >>"$SHIM_LOG/tmux.log"
case "$1" in
new-session)
	if [ -n "${FAKE_NEW_SESSION_FAIL-}" ]; then echo "duplicate session: fake" >&2; exit 1; fi ;;
list-panes)
	if [ -n "${FAKE_PANE_PID-}" ]; then echo "$FAKE_PANE_PID"; fi ;;
esac
exit 0
"#;

const FAKE_SETSID: &str = r#"#!/bin/sh
# fake setsid: logs argv, where its stdio points and the watcher env; starts nothing.
fd0=$(readlink /proc/$$/fd/0) fd1=$(readlink /proc/$$/fd/1) fd2=$(readlink /proc/$$/fd/2)
{ printf '%s\037' "$@" ENV "FD0=$fd0" "FD1=$fd1" "FD2=$fd2" \
	"MOSAIC_HEARTBEAT_RUN_DIR=${MOSAIC_HEARTBEAT_RUN_DIR-<unset>}" \
	"MOSAIC_HEARTBEAT_INTERVAL=${MOSAIC_HEARTBEAT_INTERVAL-<unset>}"; printf '\036'; } >>"$SHIM_LOG/setsid.log"
exit "${FAKE_SETSID_RC:-0}"
"#;

struct Harness {
    sb: Sandbox,
    /// PIDs seen in this sandbox (alive at some point); reaped at cleanup.
    seen: BTreeSet<i32>,
    finished: bool,
    _serial: Option<MutexGuard<'static, ()>>,
}

impl Harness {
    fn new() -> Self {
        become_subreaper();
        let sb = Sandbox::new();
        for d in ["tmux", "shims", "shimlog"] {
            std::fs::create_dir(sb.dir.path().join(d)).unwrap();
        }
        Harness {
            sb,
            seen: BTreeSet::new(),
            finished: false,
            _serial: None,
        }
    }

    /// A harness for a test that starts a real tmux server and real watchers.
    fn real() -> Self {
        let guard = serial();
        let mut h = Harness::new();
        h._serial = Some(guard);
        h
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.sb.dir.path().join(rel)
    }
    fn tmux_dir(&self) -> PathBuf {
        self.path("tmux")
    }
    fn run_dir(&self) -> PathBuf {
        self.sb.run_dir()
    }
    fn record_path(&self, agent: &str) -> PathBuf {
        self.sb.record_path(agent)
    }

    /// Installs the fake tmux and setsid; `shim_env` then puts them first on PATH.
    fn install_shims(&self) {
        for (name, text) in [("tmux", FAKE_TMUX), ("setsid", FAKE_SETSID)] {
            let p = self.path("shims").join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// `program` with nothing of the test's environment but PATH, and this sandbox's HOME and
    /// TMUX_TMPDIR (which marks every process for `sandbox_procs`).
    fn scrubbed(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", real_path())
            .env("HOME", self.sb.home())
            .env("TMUX_TMPDIR", self.tmux_dir());
        c
    }

    /// The launcher with a scrubbed environment: temp HOME, private TMUX_TMPDIR, the sandbox
    /// run dir, `PIDBEAT` = the built binary, and a bogus inherited `TMUX` that must be ignored.
    fn launcher(&self, args: &[&str]) -> Command {
        let mut c = self.scrubbed(LAUNCHER);
        c.args(args)
            .env(
                "TMUX",
                format!("{}/no-such-socket,1,0", self.path("tmux").display()),
            )
            .env("MOSAIC_HEARTBEAT_RUN_DIR", self.run_dir())
            .env("PIDBEAT", BIN)
            .env("SHIM_LOG", self.path("shimlog"))
            .current_dir(self.sb.dir.path());
        c
    }

    /// Runs a launcher command, then notes every process it left in the sandbox (so that
    /// cleanup can reap them even if they exit, e.g. a tmux server whose last session ends,
    /// before cleanup runs).
    fn launch(&mut self, c: Command) -> Run {
        let r = run(c);
        self.sandbox_procs();
        r
    }

    /// The launcher with the fake tmux and setsid first on PATH.
    fn shim_launcher(&self, args: &[&str]) -> Command {
        self.install_shims();
        let mut c = self.launcher(args);
        c.env(
            "PATH",
            format!("{}:{}", self.path("shims").display(), real_path()),
        );
        c
    }

    fn calls(&self, shim: &str) -> Vec<Call> {
        let text = match std::fs::read_to_string(self.path("shimlog").join(format!("{shim}.log"))) {
            Ok(t) => t,
            Err(_) => return Vec::new(),
        };
        text.split('\x1e')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut fields: Vec<String> = r.split('\x1f').map(str::to_owned).collect();
                assert_eq!(
                    fields.pop().as_deref(),
                    Some(""),
                    "malformed shim log {r:?}"
                );
                let at = fields.iter().position(|f| f == "ENV").expect("ENV marker");
                let env = fields.split_off(at + 1);
                fields.pop();
                Call { argv: fields, env }
            })
            .collect()
    }

    /// Real tmux on this sandbox's socket dir (never the shims).
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        self.scrubbed("tmux")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn pane_pid(&self, agent: &str) -> Option<i32> {
        let out = self.tmux(&[
            "list-panes",
            "-t",
            &format!("={agent}:"),
            "-F",
            "#{pane_pid}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Live processes carrying this sandbox's TMUX_TMPDIR: the tmux server, panes, watchers.
    fn sandbox_procs(&mut self) -> Vec<i32> {
        let needle = format!("TMUX_TMPDIR={}", self.tmux_dir().display()).into_bytes();
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for pid in all_pids() {
            if pid == me {
                continue;
            }
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|&b| b == 0).any(|v| v == needle.as_slice()) && pid_running(pid) {
                found.push(pid);
            }
        }
        self.seen.extend(&found);
        found
    }

    fn describe(pids: &[i32]) -> String {
        pids.iter()
            .map(|p| format!("{p}: {}", cmdline(*p)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Kills the tmux server and everything else the test started; reaps what we adopted.
    fn cleanup(&mut self) {
        let _ = self.sandbox_procs();
        let _ = self.tmux(&["kill-server"]);
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut termed = false;
        let mut killed = false;
        loop {
            let left = self.sandbox_procs();
            for &p in &self.seen {
                reap_known(p);
            }
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            let waited = Duration::from_secs(4) - (deadline - Instant::now());
            if !termed && waited > Duration::from_millis(300) {
                // SIGTERM first: a stopped sidecar kills its own `sleep` and a pidbeat
                // watcher writes `unwatched`; SIGKILL would orphan the sidecar's sleep.
                left.iter()
                    .for_each(|&p| signal(p, rustix::process::Signal::TERM));
                termed = true;
            } else if !killed && waited > Duration::from_secs(2) {
                left.iter()
                    .for_each(|&p| signal(p, rustix::process::Signal::KILL));
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for &p in &self.seen {
            reap_known(p);
        }
    }

    /// Cleans up, then asserts that nothing survived and nothing reached `$HOME/.config`.
    fn finish(self) {
        self.finish_inner(true)
    }
    fn finish_allowing_home(self) {
        self.finish_inner(false)
    }
    fn finish_inner(mut self, home_untouched: bool) {
        self.finished = true;
        self.cleanup();
        let left = self.sandbox_procs();
        assert!(
            left.is_empty(),
            "processes left running: {}",
            Self::describe(&left)
        );
        if home_untouched {
            assert!(
                !self.sb.home().join(".config/mosaic").exists(),
                "something wrote under $HOME/.config/mosaic"
            );
            self.sb.assert_home_untouched();
        }
        let sock = self
            .tmux_dir()
            .join(format!("tmux-{}", rustix::process::getuid().as_raw()));
        let out = self.tmux(&["ls"]);
        assert!(
            !out.status.success(),
            "tmux server still answers on {}",
            sock.display()
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !self.finished {
            self.cleanup();
        }
    }
}

/// Polls the record until `pred` holds, reaping `reap_pid` meanwhile (a runtime whose tmux
/// server died reparents to us; `kill -0` in the shell sidecar sees a zombie as alive).
fn wait_record_reaping(
    path: &Path,
    timeout: Duration,
    reap_pid: i32,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let every = Duration::from_millis(1);
    wait_record_with(path, timeout, every, || reap_known(reap_pid), pred)
}

fn wait_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_gone_reaping(pid: i32, timeout: Duration) {
    wait_gone(pid, timeout);
    reap_known(pid);
}

/// No temp files next to the record: the dir holds exactly `names`.
fn assert_dir_holds(dir: &Path, names: &[&str]) {
    let got = dir_names(dir);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "contents of {}", dir.display());
}

// ---- the scripts themselves --------------------------------------------------------------------

#[test]
fn scripts_are_executable_and_shellcheck_clean() {
    for s in [LAUNCHER, SIDECAR] {
        assert_eq!(mode(Path::new(s)) & 0o111, 0o111, "{s} is not executable");
        let text = std::fs::read_to_string(s).unwrap();
        assert!(text.starts_with("#!/usr/bin/env bash\n"), "{s}: shebang");
        assert!(text.contains("set -euo pipefail"), "{s}: strict mode");
    }
    match Command::new("shellcheck").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let out = Command::new("shellcheck")
                .args([LAUNCHER, SIDECAR])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => eprintln!("shellcheck not installed: skipping the lint half of this test"),
    }
}

// ---- shim tests: the exact commands, nothing started ------------------------------------------

fn assert_new_session(call: &Call, h: &Harness, agent: &str, cmd: &[&str]) {
    let a = &call.argv;
    assert_eq!(
        a[..5],
        ["new-session", "-d", "-s", agent, "--"],
        "new-session argv {a:?}"
    );
    assert!(
        a[5].starts_with('/') && a[5].ends_with("bash"),
        "pane runs bash by absolute path: {a:?}"
    );
    assert_eq!(a[6], "-c");
    assert!(
        a[7].contains("exec \"$@\""),
        "pane script must exec: {:?}",
        a[7]
    );
    assert_eq!(a[8], "start-agent-session");
    assert_eq!(
        a[9],
        format!("{}:{}", h.path("shims").display(), real_path()),
        "PATH baked in"
    );
    assert_eq!(a[10..], *cmd, "CMD after the PATH");
    assert_eq!(call.env("TMUX"), "<unset>", "inherited TMUX must be unset");
    assert_eq!(call.env("TMUX_TMPDIR"), h.tmux_dir().to_str().unwrap());
}

fn assert_list_panes(calls: &[Call], agent: &str) {
    assert!(!calls.is_empty());
    for c in calls {
        assert_eq!(
            c.argv,
            [
                "list-panes",
                "-t",
                &format!("={agent}:"),
                "-F",
                "#{pane_pid}"
            ]
        );
    }
}

/// `stdout_to_launcher`: pidbeat's stdout is the pipe the launcher reads its PID from
/// (`watch --detach` prints it); the shell sidecar's goes to the log.
fn assert_setsid_stdio(call: &Call, h: &Harness, agent: &str, stdout_to_launcher: bool) {
    let log = h.run_dir().join(format!("{agent}.log"));
    assert_eq!(call.env("FD0"), "/dev/null", "watcher stdin");
    if stdout_to_launcher {
        assert!(call.env("FD1").starts_with("pipe:"), "watcher stdout");
    } else {
        assert_eq!(call.env("FD1"), log.to_str().unwrap(), "watcher stdout");
    }
    assert_eq!(call.env("FD2"), log.to_str().unwrap(), "watcher stderr");
    assert_eq!(
        call.env("MOSAIC_HEARTBEAT_RUN_DIR"),
        h.run_dir().to_str().unwrap()
    );
}

/// Runs the launcher with the fake tmux and setsid, and `env` on top.
fn run_shim(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = h.shim_launcher(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(c)
}

fn shim_pidbeat_backend(backend: &str, args: &[&str], env: &[(&str, &str)]) {
    let h = Harness::new();
    let agent = "agent-1";
    let base = [
        ("FAKE_PANE_PID", "4242"),
        ("MOSAIC_HEARTBEAT_INTERVAL", "0.5"),
    ];
    let r = run_shim(&h, args, &[&base[..], env].concat());
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "", "a clean launch is silent");
    assert_eq!(r.stdout, "");

    let tmux = h.calls("tmux");
    assert_new_session(&tmux[0], &h, agent, &["sleep", "1000"]);
    assert_list_panes(&tmux[1..], agent);
    assert_eq!(tmux.len(), 2, "pane found at the first try: {tmux:?}");

    let setsid = h.calls("setsid");
    assert_eq!(setsid.len(), 1, "{setsid:?}");
    assert_eq!(
        setsid[0].argv,
        [
            "-w",
            BIN,
            "watch",
            "--pid",
            "4242",
            &format!("--agent={agent}"),
            "--backend",
            backend,
            "--detach"
        ]
    );
    assert_setsid_stdio(&setsid[0], &h, agent, true);
    assert_eq!(
        setsid[0].env("MOSAIC_HEARTBEAT_INTERVAL"),
        "0.5",
        "interval passes through"
    );
    assert_eq!(mode(&h.run_dir()), 0o700, "run dir mode");
    h.finish();
}

#[test]
fn shim_default_backend_is_pidfd() {
    shim_pidbeat_backend("pidfd", &["agent-1", "--", "sleep", "1000"], &[]);
}

#[test]
fn shim_pidfd_flag() {
    shim_pidbeat_backend(
        "pidfd",
        &["agent-1", "--hb-backend", "pidfd", "--", "sleep", "1000"],
        &[],
    );
}

#[test]
fn shim_poll_flag() {
    shim_pidbeat_backend(
        "poll",
        &["agent-1", "--hb-backend=poll", "--", "sleep", "1000"],
        &[],
    );
}

#[test]
fn shim_backend_from_env_and_flag_wins() {
    shim_pidbeat_backend(
        "poll",
        &["agent-1", "--", "sleep", "1000"],
        &[("MOSAIC_HB_BACKEND", "poll")],
    );
    shim_pidbeat_backend(
        "pidfd",
        &["agent-1", "--hb-backend", "pidfd", "--", "sleep", "1000"],
        &[("MOSAIC_HB_BACKEND", "shell")],
    );
}

#[test]
fn shim_shell_backend_runs_sidecar_under_setsid() {
    let h = Harness::new();
    let r = run_shim(
        &h,
        &["agent-1", "--hb-backend", "shell", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242")],
    );
    // The fake setsid starts nothing, so no record appears: that is a failed start.
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning("wrote no record");
    let setsid = h.calls("setsid");
    assert_eq!(setsid.len(), 1, "{setsid:?}");
    let sidecar = std::fs::canonicalize(SIDECAR).unwrap();
    assert_eq!(
        setsid[0].argv,
        [
            "nohup",
            sidecar.to_str().unwrap(),
            "--pid",
            "4242",
            "--agent=agent-1"
        ]
    );
    assert_setsid_stdio(&setsid[0], &h, "agent-1", false);
    assert!(
        r.elapsed < Duration::from_secs(3),
        "gave up in {:?}",
        r.elapsed
    );
    h.finish();
}

#[test]
fn shim_empty_pane_pid_warns_and_starts_nothing() {
    let h = Harness::new();
    let r = run(h.shim_launcher(&["agent-1", "--", "sleep", "1000"])); // no FAKE_PANE_PID
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning("pane PID");
    let tmux = h.calls("tmux");
    assert_list_panes(&tmux[1..], "agent-1");
    assert_eq!(tmux.len(), 1 + 20, "20 list-panes tries: {tmux:?}");
    assert!(
        h.calls("setsid").is_empty(),
        "no watcher without a pane PID"
    );
    assert!(
        r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_secs(5),
        "bounded retry took {:?}",
        r.elapsed
    );
    h.finish();
}

#[test]
fn shim_watcher_failure_is_a_warning() {
    let h = Harness::new();
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242"), ("FAKE_SETSID_RC", "1")],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning("failed to start (exit 1)");
    assert_eq!(h.calls("setsid").len(), 1);
    h.finish();
}

#[test]
fn shim_missing_pidbeat_is_a_warning() {
    let h = Harness::new();
    let missing = h.path("no-such-pidbeat");
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[
            ("FAKE_PANE_PID", "4242"),
            ("PIDBEAT", missing.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning(missing.to_str().unwrap());
    assert_eq!(
        h.calls("tmux").len(),
        1,
        "session started, no pane lookup needed"
    );
    assert!(h.calls("setsid").is_empty());

    // Without PIDBEAT the launcher looks for `pidbeat` on PATH (not there in the sandbox PATH).
    let r = run({
        let mut c = h.shim_launcher(&["agent-2", "--", "sleep", "1000"]);
        c.env_remove("PIDBEAT").env("FAKE_PANE_PID", "4242").env(
            "PATH",
            format!("{}:/usr/bin:/bin", h.path("shims").display()),
        );
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning("'pidbeat'");
    assert!(h.calls("setsid").is_empty());
    h.finish();
}

#[test]
fn shim_none_backend_starts_nothing() {
    let h = Harness::new();
    let r = run_shim(
        &h,
        &["agent-1", "--hb-backend", "none", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242")],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    assert_eq!(h.calls("tmux").len(), 1, "only new-session");
    assert!(h.calls("setsid").is_empty());
    assert!(!h.run_dir().exists(), "`none` touches no run dir");
    h.finish();
}

#[test]
fn shim_tmux_failure_is_an_error_and_starts_no_watcher() {
    let h = Harness::new();
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242"), ("FAKE_NEW_SESSION_FAIL", "1")],
    );
    assert_eq!(r.code(), Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("start-agent-session: error:"),
        "{}",
        r.stderr
    );
    assert_eq!(h.calls("tmux").len(), 1);
    assert!(h.calls("setsid").is_empty());
    assert!(!h.run_dir().exists());
    h.finish();
}

#[test]
fn shim_usage_errors_exit_2_and_run_nothing() {
    let h = Harness::new();
    let long = "a".repeat(129);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (vec![], vec![]),
        (vec!["agent"], vec![]),
        (vec!["agent", "--"], vec![]),
        (vec!["agent", "sleep", "1"], vec![]),
        (vec!["agent", "--hb-backend", "bogus", "--", "true"], vec![]),
        (vec!["agent", "--hb-backend=", "--", "true"], vec![]),
        (vec!["agent", "--hb-backend"], vec![]),
        (
            vec!["agent", "--", "true"],
            vec![("MOSAIC_HB_BACKEND", "bogus")],
        ),
        (vec!["--hb-backend", "pidfd", "agent", "--", "true"], vec![]),
        (vec!["", "--", "true"], vec![]),
        (vec![".hidden", "--", "true"], vec![]),
        (vec!["a/b", "--", "true"], vec![]),
        (vec!["a b", "--", "true"], vec![]),
        (vec!["a:b", "--", "true"], vec![]),
        (vec!["a\nb", "--", "true"], vec![]),
        (vec!["é", "--", "true"], vec![]),
        (vec![&long, "--", "true"], vec![]),
        // valid for pidbeat, but tmux would rename the session to a_b
        (vec!["a.b", "--", "true"], vec![]),
    ];
    for (args, env) in cases {
        let r = run_shim(&h, &args, &env);
        assert_eq!(r.code(), Some(2), "{args:?} {env:?}: stderr {}", r.stderr);
        assert!(
            r.stderr.contains("usage: start-agent-session.sh"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(h.calls("tmux").is_empty(), "{args:?} reached tmux");
    }
    let r = run(h.shim_launcher(&["--help"]));
    assert_eq!(r.code(), Some(0));
    assert!(r.stdout.starts_with("usage:"));
    h.finish();
}

#[test]
fn shim_accepts_edge_agent_names() {
    let h = Harness::new();
    let long = "a".repeat(128);
    for agent in [long.as_str(), "-x", "a@b+c_d-1", "123", "A"] {
        let r = run(h.shim_launcher(&[agent, "--hb-backend", "none", "--", "true"]));
        assert_eq!(r.code(), Some(0), "{agent}: {}", r.stderr);
        let last = h.calls("tmux").pop().unwrap();
        assert_eq!(last.argv[..4], ["new-session", "-d", "-s", agent]);
    }
    h.finish();
}

#[test]
fn shim_run_dir_resolution() {
    let h = Harness::new();
    let check = |c: Command, want: &Path| {
        let r = run(c);
        assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
        let call = h.calls("setsid").pop().expect("setsid called");
        assert_eq!(call.env("MOSAIC_HEARTBEAT_RUN_DIR"), want.to_str().unwrap());
        // The log is the watcher's stderr (its stdout is the PID pipe).
        assert_eq!(call.env("FD2"), want.join("agent-1.log").to_str().unwrap());
        assert_eq!(mode(want), 0o700, "{} mode", want.display());
    };
    let base = || {
        let mut c = h.shim_launcher(&["agent-1", "--", "sleep", "1000"]);
        c.env("FAKE_PANE_PID", "4242")
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR");
        c
    };
    // XDG_CONFIG_HOME
    let xdg = h.path("xdg");
    let mut c = base();
    c.env("XDG_CONFIG_HOME", &xdg);
    check(c, &xdg.join("mosaic/fleet/run"));
    // a relative MOSAIC_HEARTBEAT_RUN_DIR is taken from the launcher's cwd, made absolute
    let mut c = base();
    c.env("MOSAIC_HEARTBEAT_RUN_DIR", "rel/run")
        .env("XDG_CONFIG_HOME", &xdg);
    check(c, &h.path("rel/run"));
    // a relative XDG_CONFIG_HOME is ignored (XDG base dir spec); then ~/.config
    let mut c = base();
    c.env("XDG_CONFIG_HOME", "relative-xdg");
    check(c, &h.sb.home().join(".config/mosaic/fleet/run"));
    assert!(!h.path("relative-xdg").exists());
    h.finish_allowing_home();
}

// ---- the shell sidecar on its own -------------------------------------------------------------

fn sidecar_cmd(h: &Harness, args: &[&str]) -> Command {
    // TMUX_TMPDIR is the marker the harness scans for: the sidecar's `sleep` children carry it too
    let mut c = h.scrubbed(SIDECAR);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn sidecar_beats_then_writes_dead() {
    let h = Harness::new();
    let mut target = common::spawn_sleep();
    let tpid = target.pid();
    let run_dir = h.run_dir();
    let mut side = common::Guard::new(
        sidecar_cmd(
            &h,
            &[
                "--pid",
                &tpid.to_string(),
                "--agent",
                "side",
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--interval",
                "0.1",
            ],
        )
        .spawn()
        .unwrap(),
    );
    let hb = h.record_path("side");
    let v = common::wait_record(&hb, Duration::from_secs(5), |v| {
        v["seq"].as_u64() >= Some(3)
    });
    assert_eq!(v["pid"], tpid);
    assert_eq!(v["status"], "alive");
    assert_eq!(v["backend"], "shell");
    assert_eq!(v["watcher_pid"], side.pid());
    assert_eq!(v["interval"], 0.1);
    assert_eq!(v["start_time"].as_u64(), start_time(tpid));
    assert!(v["died_ms"].is_null());
    assert_eq!(
        v["ts"].as_i64().unwrap(),
        v["ts_ms"].as_i64().unwrap() / 1000
    );
    assert_eq!(mode(&run_dir), 0o700);
    let text = std::fs::read_to_string(&hb).unwrap();
    assert!(!text.contains(' '), "compact JSON: {text:?}");
    assert!(text.starts_with("{\"ts\":"), "{text:?}");

    target.kill(); // SIGKILL and reap: kill -0 now fails
    let killed = Instant::now();
    let v = common::wait_record(&hb, Duration::from_secs(2), |v| status_is(v, "dead"));
    assert!(
        killed.elapsed() < Duration::from_millis(1000),
        "dead after {:?}",
        killed.elapsed()
    );
    assert!(v["died_ms"].is_i64(), "{v}");
    let st = side
        .wait_timeout(Duration::from_secs(2))
        .expect("sidecar exits after dead");
    assert_eq!(st.code(), Some(0));
    assert_dir_holds(&run_dir, &["side.hb"]);
    h.finish();
}

#[test]
fn sidecar_sigterm_writes_unwatched_promptly() {
    let h = Harness::new();
    let target = common::spawn_sleep();
    let tpid = target.pid();
    let run_dir = h.run_dir();
    let mut c = sidecar_cmd(&h, &["--pid", &tpid.to_string(), "--agent", "side"]);
    // run dir and interval from the environment this time
    c.env("MOSAIC_HEARTBEAT_RUN_DIR", &run_dir)
        .env("MOSAIC_HEARTBEAT_INTERVAL", "30");
    let mut side = common::Guard::new(c.spawn().unwrap());
    let hb = h.record_path("side");
    let v = common::wait_record(&hb, Duration::from_secs(5), |v| status_is(v, "alive"));
    assert_eq!(v["interval"], 30.0);
    let text = std::fs::read_to_string(h.record_path("side")).unwrap();
    assert!(
        text.contains("\"interval\":30.0,"),
        "interval is a JSON float: {text}"
    );
    std::thread::sleep(Duration::from_millis(100)); // now inside its 30 s sleep
    let t = Instant::now();
    common::send_signal(side.pid(), 15);
    let st = side
        .wait_timeout(Duration::from_secs(3))
        .expect("sidecar stops on SIGTERM");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "SIGTERM took {:?}: trap waited for sleep",
        t.elapsed()
    );
    assert_eq!(st.code(), Some(0));
    let v = read_record(&hb).unwrap();
    assert_eq!(v["status"], "unwatched", "{v}");
    assert!(pid_running(tpid), "the target is untouched");
    assert_dir_holds(&run_dir, &["side.hb"]);
    drop(target);
    h.finish(); // asserts the sidecar's own `sleep 30` did not outlive it
}

#[test]
fn sidecar_usage_errors() {
    let h = Harness::new();
    let run_dir = h.run_dir();
    let rd = run_dir.to_str().unwrap();
    // Valid arguments followed by `extra`.
    let valid_and = |extra: &[&'static str]| {
        [&["--pid", "1", "--agent", "x", "--run-dir", rd][..], extra].concat()
    };
    for args in [
        vec!["--agent", "x", "--run-dir", rd],
        vec!["--pid", "0", "--agent", "x", "--run-dir", rd],
        vec!["--pid", "abc", "--agent", "x", "--run-dir", rd],
        vec!["--pid", "1", "--run-dir", rd],
        vec!["--pid", "1", "--agent", ".x", "--run-dir", rd],
        vec!["--pid", "1", "--agent", "a/b", "--run-dir", rd],
        valid_and(&["--interval", "0"]),
        valid_and(&["--interval", "-1"]),
        valid_and(&["--interval", "NaN"]),
        valid_and(&["--interval", "86401"]),
        valid_and(&["--bogus"]),
    ] {
        let out = sidecar_cmd(&h, &args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!run_dir.exists(), "a usage error writes nothing");
    h.finish();
}

// ---- real tmux --------------------------------------------------------------------------------

/// The runtime writes its own PID and execs: its PID must be the pane PID and the record's pid.
fn real_backend(backend: &str, dead_within: Duration) {
    let mut h = Harness::real();
    let agent = format!("agent-{backend}");
    let pidfile = h.path("runtime.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let r = h.launch({
        let mut c = h.launcher(&[&agent, "--hb-backend", backend, "--", "sh", "-c", &script]);
        c.env(
            "MOSAIC_HEARTBEAT_INTERVAL",
            if backend == "shell" { "0.2" } else { "1" },
        );
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "", "a clean launch is silent");

    let pane = h.pane_pid(&agent).expect("pane pid");
    let runtime = read_pid_file(&pidfile, Duration::from_secs(5));
    assert_eq!(
        pane, runtime,
        "the pane execs the runtime: no wrapper in between"
    );
    assert!(
        cmdline(pane).starts_with("sleep 1000"),
        "pane runs {:?}",
        cmdline(pane)
    );

    let hb = h.record_path(&agent);
    // pidfd/poll: --detach returned only after the first record; shell: the launcher waited.
    let v = read_record(&hb).expect("record on disk when the launcher returns");
    assert_eq!(v["status"], "alive", "{v}");
    assert_eq!(v["pid"], pane, "{v}");
    assert_eq!(v["backend"], backend, "{v}");
    let watcher = v["watcher_pid"].as_i64().expect("watcher_pid") as i32;
    assert!(pid_running(watcher), "watcher {watcher} runs");
    assert_ne!(
        session_id(watcher),
        session_id(std::process::id() as i32),
        "watcher detached"
    );
    assert_eq!(
        fd_target(watcher, 0),
        Some(PathBuf::from("/dev/null")),
        "watcher stdin"
    );
    for fd in [1, 2] {
        let t = fd_target(watcher, fd).unwrap_or_default();
        assert!(
            !t.to_string_lossy().starts_with("pipe:"),
            "watcher fd {fd} holds the caller's pipe"
        );
    }
    assert!(
        h.sandbox_procs().contains(&watcher),
        "cleanup can find the watcher"
    );
    assert!(
        h.run_dir().join(format!("{agent}.log")).exists(),
        "log file"
    );
    assert_eq!(mode(&h.run_dir()), 0o700);

    let out = h.tmux(&["kill-session", "-t", &format!("={agent}")]);
    assert!(
        out.status.success(),
        "kill-session: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed = Instant::now();
    let v = wait_record_reaping(&hb, Duration::from_secs(5), pane, |v| status_is(v, "dead"));
    let took = killed.elapsed();
    assert!(
        took <= dead_within,
        "{backend}: dead after {took:?} (bound {dead_within:?})"
    );
    assert_eq!(v["pid"], pane);
    assert!(v["died_ms"].is_i64(), "{v}");
    eprintln!("{backend}: kill-session -> dead record in {took:?}");

    // The watcher exits on its own once the target is dead (pidbeat after its exit grace).
    wait_gone_reaping(watcher, Duration::from_secs(5));
    h.finish();
}

#[test]
fn real_pidfd_backend() {
    real_backend("pidfd", Duration::from_millis(100));
}

#[test]
fn real_poll_backend() {
    real_backend("poll", Duration::from_secs(2));
}

#[test]
fn real_shell_backend() {
    real_backend("shell", Duration::from_secs(2));
}

#[test]
fn real_none_backend_has_no_watcher() {
    let mut h = Harness::real();
    let r = h.launch(h.launcher(&["quiet", "--hb-backend", "none", "--", "sleep", "1000"]));
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    let pane = h.pane_pid("quiet").expect("pane");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!h.run_dir().exists(), "no run dir, no record, no log");
    let server = String::from_utf8_lossy(&h.tmux(&["display", "-p", "#{pid}"]).stdout)
        .trim()
        .parse::<i32>()
        .unwrap();
    let mut procs = h.sandbox_procs();
    procs.sort();
    let mut want = vec![server, pane];
    want.sort();
    assert_eq!(
        procs,
        want,
        "only the tmux server and the pane: {}",
        Harness::describe(&procs)
    );
    h.finish();
}

#[test]
fn real_missing_pidbeat_still_launches() {
    let mut h = Harness::real();
    let missing = h.path("missing/pidbeat");
    let r = h.launch({
        let mut c = h.launcher(&["nobeat", "--", "sleep", "1000"]);
        c.env("PIDBEAT", &missing);
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    r.assert_one_warning(missing.to_str().unwrap());
    let pane = h.pane_pid("nobeat").expect("pane still there");
    assert!(pid_running(pane), "runtime runs");
    assert!(!h.record_path("nobeat").exists());
    h.finish();
}

#[test]
fn real_existing_session_is_an_error_without_second_watcher() {
    let mut h = Harness::real();
    let r = h.launch(h.launcher(&["twice", "--hb-backend", "shell", "--", "sleep", "1000"]));
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    let first = read_record(&h.record_path("twice")).expect("record");
    let watcher = first["watcher_pid"].as_i64().unwrap() as i32;
    let pane = h.pane_pid("twice").unwrap();
    let before = h
        .sandbox_procs()
        .into_iter()
        .filter(|p| cmdline(*p).contains("hb-sidecar"))
        .count();
    assert_eq!(before, 1);

    for backend in ["shell", "pidfd"] {
        let r = h.launch(h.launcher(&["twice", "--hb-backend", backend, "--", "sleep", "1000"]));
        assert_eq!(
            r.code(),
            Some(1),
            "second launch must fail; stderr: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("duplicate session"),
            "tmux's reason shown: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("start-agent-session: error:"),
            "{}",
            r.stderr
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let procs = h.sandbox_procs();
    let sidecars = procs
        .iter()
        .filter(|p| cmdline(**p).contains("hb-sidecar"))
        .count();
    let pidbeats = procs
        .iter()
        .filter(|p| cmdline(**p).contains(" watch "))
        .count();
    assert_eq!(
        (sidecars, pidbeats),
        (1, 0),
        "no second watcher: {}",
        Harness::describe(&procs)
    );
    let v = read_record(&h.record_path("twice")).unwrap();
    assert_eq!(v["watcher_pid"], watcher);
    assert_eq!(v["pid"], pane);
    assert_eq!(h.pane_pid("twice"), Some(pane), "first session untouched");
    h.finish();
}

#[test]
fn real_arguments_and_path_reach_the_runtime_unchanged() {
    let mut h = Harness::real();
    // Start the tmux server first with a PATH that lacks bin2: the pane must get the
    // launcher's PATH baked in, not the server's.
    let out = h
        .scrubbed("tmux")
        .args(["new-session", "-d", "-s", "other", "sleep", "1000"])
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.sandbox_procs();

    let bin2 = h.path("bin2");
    std::fs::create_dir(&bin2).unwrap();
    let argv_file = h.path("argv");
    let pid_file = h.path("runtime.pid");
    let rt = bin2.join("myruntime");
    std::fs::write(
        &rt,
        format!(
            "#!/bin/sh\necho $$ > '{pid}'\nprintf '%s\\0' \"$@\" > '{argv}.tmp' && mv '{argv}.tmp' '{argv}'\nexec sleep 1000\n",
            pid = pid_file.display(),
            argv = argv_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();

    let pwned = h.path("pwned");
    let subst = format!("$(touch {})", pwned.display());
    let backtick = format!("`touch {}`", pwned.display());
    let args: Vec<&str> = vec![
        "a b",
        "",
        "it's",
        "say \"hi\"",
        "$HOME",
        "${PATH}",
        "a;b",
        ";",
        "ends;",
        "ends\\;",
        "&& echo x",
        "| cat",
        &subst,
        &backtick,
        "*",
        "~",
        "back\\slash",
        "tab\there",
        "new\nline",
        "-n",
        "--",
        "-e",
        "%s",
        "#{pane_pid}",
        "#S",
        "'",
        "\"",
        "ünïcödé",
        "  lead",
        "trail  ",
    ];
    let mut launch = vec!["quoted", "--hb-backend", "none", "--", "myruntime"];
    launch.extend(&args);
    let r = h.launch({
        let mut c = h.launcher(&launch);
        c.env("PATH", format!("{}:{}", bin2.display(), real_path()));
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    let got = wait_file(&argv_file, Duration::from_secs(5));
    let got: Vec<&str> = got.strip_suffix('\0').unwrap_or(&got).split('\0').collect();
    assert_eq!(got, args, "argv as the runtime saw it");
    assert!(!pwned.exists(), "an argument was run by a shell");
    let runtime = read_pid_file(&pid_file, Duration::from_secs(5));
    assert_eq!(
        h.pane_pid("quoted"),
        Some(runtime),
        "pane PID is the runtime's PID"
    );
    h.finish();
}

#[test]
fn real_agent_name_starting_with_a_hyphen() {
    // Valid per DESIGN.md; the watcher must not mistake it for an option.
    let mut h = Harness::real();
    for (agent, backend) in [("-pidfd", "pidfd"), ("-shell", "shell")] {
        let r = h.launch(h.launcher(&[agent, "--hb-backend", backend, "--", "sleep", "1000"]));
        assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
        assert_eq!(r.stderr, "", "{agent}");
        let pane = h.pane_pid(agent).expect("pane");
        let v = read_record(&h.record_path(agent)).expect("record");
        assert_eq!(
            (v["pid"].as_i64(), v["backend"].as_str()),
            (Some(pane as i64), Some(backend)),
            "{v}"
        );
    }
    h.finish();
}
