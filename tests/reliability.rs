//! Issue 7: neither a false `alive` nor a false `dead` under real faults.
//!
//! Real processes, real signals, a private PID namespace for PID reuse, private mount
//! namespaces (tmpfs with a size limit, read-only bind mounts) for run-dir faults. Every test
//! works in its own `Sandbox`, kills and reaps what it starts (Drop guards), and ends by
//! checking that nothing it started still runs.
//!
//! Tests that need `pidbeat ps` are named `ps_*` or say so (a few others also ask `ps` once
//! for its verdict). Where the kernel or sandbox lacks a feature (PID or mount namespaces,
//! python3 for the thread cases) the test prints `SKIP <test>: <reason>` and passes.
//!
//! Helper: tests/reliability/pid_reuse.sh, the PID-1 script of the PID-reuse tests.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::{Pid, Signal, WaitOptions};
use serde_json::Value;

/// Small beats keep the file fast; 20 beats a second.
const IV: &str = "0.05";
const IV_SECS: f64 = 0.05;
const SEC: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
}

fn kill(pid: i32, sig: Signal) {
    let p = Pid::from_raw(pid).expect("pid > 0");
    rustix::process::kill_process(p, sig).unwrap_or_else(|e| panic!("kill {sig:?} {pid}: {e}"));
}

/// SIGSTOPs `pid` and waits until the kernel shows it stopped.
fn stop(pid: i32) {
    kill(pid, Signal::STOP);
    wait_stopped(pid, SEC);
}

fn cont(pid: i32) {
    kill(pid, Signal::CONT);
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// Waits until the record of every agent in `agents` has status `status`, each within
/// `timeout`.
fn wait_all(sb: &Sandbox, agents: &[&str], status: &str, timeout: Duration) {
    for a in agents {
        sb.wait_status(a, status, timeout);
    }
}

/// Waits (up to 3 s) for `beats` more beats at `path`, each of them `alive`: `what` names the
/// false death should any record say otherwise.
fn stays_alive(path: &Path, beats: u64, what: &str) {
    let s0 = seq(&read_record(path).unwrap());
    wait_record(path, 3 * SEC, |v| {
        assert!(status_is(v, "alive"), "{what}: {v}");
        seq(v) >= s0 + beats
    });
}

/// `pidbeat` with the sandbox's scrubbed environment, optionally entered into the mount
/// namespace of `ns` first (nsenter execs, so the child's PID is pidbeat's).
fn pidbeat(sb: &Sandbox, ns: Option<&MountNs>) -> Command {
    match ns {
        None => sb.cmd(),
        Some(ns) => {
            let mut c = sb.cmd_of("nsenter");
            c.arg("-t")
                .arg(ns.pid().to_string())
                .args(["-m", "--", BIN]);
            c
        }
    }
}

/// A foreground `pidbeat watch` whose stderr goes to a file (to count its warnings).
struct Watch {
    g: Guard,
    err: PathBuf,
}

impl Watch {
    fn pid(&self) -> i32 {
        self.g.pid()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    fn count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }
    /// Waits for a clean exit on its own.
    fn exits(&mut self, timeout: Duration) -> ExitStatus {
        let st = self.g.wait_timeout(timeout);
        st.unwrap_or_else(|| panic!("watcher {} still running after {timeout:?}", self.pid()))
    }
}

fn watch_in(
    sb: &Sandbox,
    ns: Option<&MountNs>,
    run_dir: &Path,
    pid: i32,
    agent: &str,
    backend: &str,
    iv: &str,
) -> Watch {
    let err = sb.dir.path().join(format!("{agent}.{backend}.stderr"));
    let child = watch_args(&mut pidbeat(sb, ns), pid, agent, run_dir)
        .args(["--interval", iv, "--backend", backend])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn pidbeat watch");
    Watch {
        g: Guard::new(child),
        err,
    }
}

fn watch(sb: &Sandbox, pid: i32, agent: &str, backend: &str) -> Watch {
    watch_in(sb, None, &sb.run_dir(), pid, agent, backend, IV)
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `cmd` to completion (and to EOF on its stdout/stderr), panicking after `timeout`.
fn run_timeout(mut cmd: Command, timeout: Duration) -> Out {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(o) => {
            let o = o.expect("wait_with_output");
            Out {
                status: o.status,
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                elapsed: start.elapsed(),
            }
        }
        Err(_) => {
            // Unreaped until the thread's wait returns, so the PID is still ours to kill.
            if pid_running(pid) {
                let _ = rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL);
            }
            panic!("{cmd:?} did not finish (or let go of its stdout/stderr) within {timeout:?}");
        }
    }
}

/// Running (non-zombie) processes whose command line mentions the sandbox dir.
fn sandbox_procs(sb: &Sandbox) -> Vec<(i32, String)> {
    let needle = sb.dir.path().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for pid in all_pids() {
        let cmd = cmdline(pid);
        if cmd.contains(&needle) && pid_running(pid) {
            found.push((pid, cmd));
        }
    }
    found
}

/// Nothing this test started is still running: its own PIDs, and anything naming the sandbox.
fn assert_clean(sb: &Sandbox, pids: &[i32]) {
    for &p in pids {
        wait_gone(p, 2 * SEC);
    }
    let mut left = sandbox_procs(sb);
    let deadline = Instant::now() + 2 * SEC;
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        left = sandbox_procs(sb);
    }
    assert!(left.is_empty(), "left running: {left:?}");
    sb.assert_home_untouched();
}

/// Creates the sandbox's run dir as pidbeat would (mode 0700) and returns it.
fn private_run_dir(sb: &Sandbox) -> PathBuf {
    let run = sb.run_dir();
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, PermissionsExt::from_mode(0o700)).unwrap();
    run
}

/// Dot-files other than the agents' lock files: temp files a watcher left behind.
fn stray_dot_files(dir: &Path) -> Vec<String> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && !n.ends_with(".lock"))
        .collect()
}

/// Waits for an adopted (or own) child `pid` to exit and reaps it.
fn reap_within(pid: i32, timeout: Duration) -> rustix::process::WaitStatus {
    let p = Pid::from_raw(pid).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => return st,
            Ok(None) => {}
            Err(e) => panic!("waitpid({pid}): {e} (not our child?)"),
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs and reaps an adopted process (a detached watcher, an orphaned zombie) on drop.
struct Adopted(i32);

impl Adopted {
    /// Waits for its own exit and reaps it; nothing is left for drop to signal (the PID may
    /// name another process by then).
    fn reap_within(self, timeout: Duration) -> rustix::process::WaitStatus {
        let st = reap_within(self.0, timeout);
        std::mem::forget(self);
        st
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if let Some(p) = Pid::from_raw(self.0) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
            let deadline = Instant::now() + 2 * SEC;
            while Instant::now() < deadline {
                match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    _ => break,
                }
            }
        }
    }
}

/// `pidbeat ps --json` for `dir`: agent → the object ps printed.
fn ps_json(sb: &Sandbox, dir: &Path, agents: &[&str]) -> BTreeMap<String, Value> {
    ps_json_in(sb, None, dir, agents)
}

fn ps_json_in(
    sb: &Sandbox,
    ns: Option<&MountNs>,
    dir: &Path,
    agents: &[&str],
) -> BTreeMap<String, Value> {
    let mut c = pidbeat(sb, ns);
    c.args(["ps", "--json", "--run-dir"]).arg(dir).args(agents);
    let o = run_timeout(c, 5 * SEC);
    assert!(
        o.status.success(),
        "pidbeat ps failed ({}): {}",
        o.status,
        o.stderr
    );
    parse_ps(&o.stdout)
}

fn ps_state(sb: &Sandbox, dir: &Path, agent: &str) -> String {
    let m = ps_json(sb, dir, &[agent]);
    let o = m
        .get(agent)
        .unwrap_or_else(|| panic!("ps does not list {agent}: {m:?}"));
    o["state"].as_str().expect("state").to_owned()
}

/// A private mount namespace held open by a sleeping process, with a size-limited tmpfs
/// at `<sandbox>/mnt`. Its files are reachable from the test through /proc/HOLDER/root.
struct MountNs {
    holder: Guard,
    mnt: PathBuf,
}

impl MountNs {
    fn new(sb: &Sandbox, size: &str) -> Result<MountNs, String> {
        let mnt = sb.dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs -o size=\"$1\",mode=0755 pidbeat-test \"$2\" || exit 1; \
                 echo ready; exec sleep 1000",
            )
            .args(["sh", size])
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut holder = Guard::new(child);
        let mut line = String::new();
        let out = holder.child().stdout.take().unwrap();
        let _ = BufReader::new(out).read_line(&mut line);
        if line.trim() != "ready" {
            let st = holder.kill();
            let mut err = String::new();
            let _ =
                std::io::Read::read_to_string(holder.child().stderr.as_mut().unwrap(), &mut err);
            return Err(format!("private tmpfs unavailable ({st}): {}", err.trim()));
        }
        Ok(MountNs { holder, mnt })
    }
    fn pid(&self) -> i32 {
        self.holder.pid()
    }
    /// The path as the test process reaches it: through the holder's root.
    fn host(&self, p: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(p.strip_prefix("/").unwrap())
    }
    fn sh(&self, script: &str) -> Out {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--", "sh", "-c", script]);
        run_timeout(c, 10 * SEC)
    }
    /// Makes `dir` read-only with a read-only bind mount of itself on top.
    fn bind_read_only(&self, dir: &Path) {
        let r = dir.display();
        let o = self.sh(&format!(
            "mount --bind '{r}' '{r}' && mount -o remount,bind,ro '{r}'"
        ));
        assert!(o.status.success(), "ro bind mount: {}", o.stderr);
    }
}

/// Pauses every watcher (SIGSTOP) at a moment none of them has a temp file open, so a fault
/// injected now lands between two writes. Callers `cont` them afterwards.
fn pause_between_writes(watchers: &[i32], dir: &Path) {
    for _ in 0..200 {
        for &w in watchers {
            stop(w);
        }
        let tmp = dir_names(dir).into_iter().any(|n| n.ends_with(".tmp"));
        if !tmp {
            return;
        }
        for &w in watchers {
            cont(w);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("watchers always had a temp file open");
}

// ------------------------------------------------------------------------------------------
// PID reuse in a private PID namespace
// ------------------------------------------------------------------------------------------

const ROUNDS: usize = 20;

fn pidns_available(test: &str) -> bool {
    let ok = unshare_pid_ns_works(&["--kill-child"]);
    if !ok {
        skip(
            test,
            "`unshare --pid --fork --mount-proc` does not work here",
        );
    }
    ok
}

/// Runs tests/reliability/pid_reuse.sh as PID 1 of a new PID namespace; returns its `@`
/// lines, after checking that every process of that namespace is gone.
fn run_pid_reuse_script(sb: &Sandbox, with_ps: bool) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reliability/pid_reuse.sh");
    let out = sb.dir.path().join("ns.out");
    let err = sb.dir.path().join("ns.err");
    let child = sb
        .cmd_of("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "bash"])
        .arg(&script)
        .arg(BIN)
        .arg(sb.run_dir())
        .arg(ROUNDS.to_string())
        .arg(if with_ps { "1" } else { "0" })
        .arg("0.2")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("unshare");
    let mut g = Guard::new(child);
    // Judged by progress, not by the wall clock: the script prints at least every few
    // seconds, and a pause of the whole machine must not read as a hang.
    let mut stalled = Duration::ZERO;
    let mut last_len = 0;
    let mut last_poll = Instant::now();
    let st = loop {
        if let Some(st) = g.child().try_wait().unwrap() {
            break Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
        let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let gap = last_poll.elapsed();
        last_poll = Instant::now();
        if len != last_len {
            last_len = len;
            stalled = Duration::ZERO;
        } else {
            stalled += gap.min(Duration::from_millis(200));
        }
        if stalled > Duration::from_secs(30) {
            break None;
        }
    };
    let text = std::fs::read_to_string(&out).unwrap();
    let errs = std::fs::read_to_string(&err).unwrap();
    let st = st.unwrap_or_else(|| {
        let ns = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        panic!(
            "namespace script made no progress for 30 s; output so far:\n{text}\n{errs}\n\
             processes of {ns}:\n{}",
            describe_pidns(ns)
        )
    });
    assert!(
        st.success(),
        "namespace script failed ({st}):\n{text}\n{errs}"
    );
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('@'))
        .map(String::from)
        .collect();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("@done"),
        "script did not finish:\n{text}\n{errs}"
    );
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("@error")).collect();
    assert!(
        errors.is_empty(),
        "{errors:#?}\nfull output:\n{text}\nstderr:\n{errs}"
    );

    // Every process of the namespace died with its PID 1.
    let ns = lines[0]
        .split_whitespace()
        .nth(1)
        .expect("@ns line")
        .to_owned();
    let left: Vec<i32> = pidns_members(&ns)
        .into_iter()
        .filter(|&p| pid_running(p))
        .collect();
    assert!(
        left.is_empty(),
        "processes of the PID namespace still run: {left:?}"
    );
    lines
}

/// Every process (zombies too) of PID namespace `ns` (`pid:[N]`).
fn pidns_members(ns: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect()
}

/// State, kernel wait channel and command line of every process of PID namespace `ns`
/// (`pid:[N]`), for the message of a hung namespace test.
fn describe_pidns(ns: &str) -> String {
    let mut out = String::new();
    for pid in pidns_members(ns) {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        out += &format!(
            "  {pid} state={:?} wchan={wchan} cmd={}\n",
            proc_state(pid),
            cmdline(pid)
        );
    }
    out
}

/// (round, target pid, impostor pid, impostor start time) of every `@round` line.
fn rounds(lines: &[String]) -> Vec<(usize, i32, i32, u64)> {
    let v: Vec<_> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("@round "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(v.len(), ROUNDS, "rounds run: {lines:#?}");
    v
}

#[test]
fn pid_reuse_both_backends_record_dead() {
    if !pidns_available("pid_reuse_both_backends_record_dead") {
        return;
    }
    let sb = Sandbox::new();
    let lines = run_pid_reuse_script(&sb, false);
    for (r, target, impostor, impostor_start) in rounds(&lines) {
        assert_eq!(
            impostor, target,
            "round {r}: the impostor did not get the PID"
        );
        for backend in ["pidfd", "poll"] {
            let rec = read_record(&sb.record_path(&format!("{backend}-{r}")))
                .unwrap_or_else(|| panic!("round {r}: no {backend} record"));
            assert_eq!(rec["status"], "dead", "round {r} {backend}: {rec}");
            assert_eq!(rec["pid"], target, "round {r} {backend}: {rec}");
            assert_eq!(rec["backend"], backend, "round {r}: {rec}");
            assert_ne!(
                rec["start_time"], impostor_start,
                "round {r} {backend}: the record pinned the impostor: {rec}"
            );
            let exit = format!("@exit {r} {backend} 0");
            assert!(
                lines.contains(&exit),
                "round {r}: {backend} watcher did not exit 0: {lines:#?}"
            );
        }
    }
    assert_clean(&sb, &[]);
}

/// Needs `pidbeat ps`. The poll watcher is SIGSTOPped before the target dies, so its record
/// still says `alive` while the impostor holds the PID: ps must see through that.
#[test]
fn ps_pid_reuse_never_calls_the_impostor_alive() {
    if !pidns_available("ps_pid_reuse_never_calls_the_impostor_alive") {
        return;
    }
    let sb = Sandbox::new();
    let lines = run_pid_reuse_script(&sb, true);
    let ps_of = |tag: &str| -> Vec<BTreeMap<String, Value>> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("@ps {tag} ")))
            .map(parse_ps)
            .collect()
    };
    for (r, target, impostor, _) in rounds(&lines) {
        assert_eq!(
            impostor, target,
            "round {r}: the impostor did not get the PID"
        );
        let (pf, pl) = (format!("pidfd-{r}"), format!("poll-{r}"));
        for m in ps_of(&format!("before {r}")) {
            assert_eq!(m[&pf]["state"], "alive", "round {r} before the kill: {m:?}");
            assert_eq!(m[&pl]["state"], "alive", "round {r} before the kill: {m:?}");
        }
        let rec_line = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("@poll-record-in-window {r} ")))
            .unwrap();
        assert!(
            rec_line.contains("\"status\":\"alive\""),
            "round {r}: window record {rec_line}"
        );
        let window = ps_of(&format!("window {r}"));
        assert_eq!(window.len(), 3, "round {r}");
        for m in window {
            let (a, b) = (&m[&pf]["state"], &m[&pl]["state"]);
            assert!(
                a == "dead" || a == "lost",
                "round {r}: pidfd agent is {a} while an impostor holds PID {target}: {m:?}"
            );
            assert_eq!(
                b, "lost",
                "round {r}: poll agent (record alive, PID reused) is {b}: {m:?}"
            );
        }
        let after = ps_of(&format!("after {r}"));
        assert_eq!(after.len(), 1, "round {r}");
        for m in after {
            assert_eq!(m[&pf]["state"], "dead", "round {r} after: {m:?}");
            assert_eq!(m[&pl]["state"], "dead", "round {r} after: {m:?}");
        }
    }
    assert_clean(&sb, &[]);
}

// ------------------------------------------------------------------------------------------
// Zombies, dying leaders, exec, stopped targets
// ------------------------------------------------------------------------------------------

/// A parent that never reaps: `C` is its child, the parent then execs `sleep` and never waits.
fn zombie_family(sb: &Sandbox) -> (Guard, i32) {
    let (parent, c) = spawn_zombie_parent("sleep 1000", &sb.dir.path().join("zpid"));
    wait_until(SEC, "parent exec'd sleep", || {
        std::fs::read_to_string(format!("/proc/{}/comm", parent.pid()))
            .is_ok_and(|c| c.trim() == "sleep")
    });
    (parent, c)
}

#[test]
fn zombie_target_is_dead_and_cannot_be_watched() {
    become_subreaper();
    let sb = Sandbox::new();
    let (mut parent, c) = zombie_family(&sb);
    let _c = Adopted(c);
    let mut wf = watch(&sb, c, "zf", "pidfd");
    let mut wp = watch(&sb, c, "zp", "poll");
    wait_all(&sb, &["zf", "zp"], "alive", 3 * SEC);

    kill(c, Signal::KILL);
    wait_until(SEC, "C is a zombie", || proc_state(c) == Some('Z'));
    let t0 = Instant::now();
    for a in ["zf", "zp"] {
        let v = sb.wait_status(a, "dead", SEC);
        assert_eq!(v["pid"], c, "{v}");
        assert!(v["died_ms"].as_u64().is_some(), "{v}");
    }
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "death of a zombie took {:?}",
        t0.elapsed()
    );
    assert!(wf.exits(3 * SEC).success());
    assert!(wp.exits(3 * SEC).success());
    assert_eq!(proc_state(c), Some('Z'), "still an unreaped zombie");

    // A watcher refuses a PID that is already a zombie: exit 1, saying why.
    for backend in ["pidfd", "poll", "auto"] {
        let mut cmd = sb.watch_cmd(c, "late");
        cmd.args(["--interval", IV, "--backend", backend]);
        let o = run_timeout(cmd, 5 * SEC);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{backend}: {} {}",
            o.status,
            o.stderr
        );
        let e = o.stderr.to_lowercase();
        assert!(
            (e.contains("zombie") || e.contains("exited")) && e.contains(&c.to_string()),
            "{backend}: unclear refusal: {}",
            o.stderr
        );
    }
    assert!(
        read_record(&sb.record_path("late")).is_none(),
        "a refused watcher wrote a record"
    );

    parent.kill();
    drop(_c); // reaped by us: we are the subreaper it is reparented to
    assert_clean(&sb, &[parent.pid(), c]);
}

fn python3(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import ctypes, threading"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(test, "python3 with ctypes is not available");
    }
    ok
}

/// Spawns `python3 -c CODE`; CODE prints its PID first. Returns the guard and that PID.
fn spawn_python(code: &str) -> (Guard, i32, std::process::ChildStdin) {
    let mut g = Guard::new(
        Command::new("python3")
            .args(["-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdin = g.child().stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(g.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.trim().parse().expect("python pid");
    assert_eq!(pid, g.pid(), "python3 forked instead of exec'ing (a shim?)");
    (g, pid, stdin)
}

/// The main thread exits (pthread_exit) while another thread runs on: /proc shows the leader
/// as `Z`, yet the process is alive. Neither backend may call it dead, and `watch` must not
/// refuse it as a zombie.
#[test]
fn leader_exited_but_threads_run_is_alive() {
    if !python3("leader_exited_but_threads_run_is_alive") {
        return;
    }
    let sb = Sandbox::new();
    let (mut t, pid, _stdin) = spawn_python(
        "import threading, time, ctypes, os, sys\n\
         threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n\
         print(os.getpid(), flush=True)\n\
         ctypes.CDLL(None).pthread_exit(None)\n",
    );
    wait_until(2 * SEC, "leader shows Z", || proc_state(pid) == Some('Z'));
    assert!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
            >= 2
    );

    let mut wf = watch(&sb, pid, "tf", "pidfd");
    let mut wp = watch(&sb, pid, "tp", "poll");
    let mut last = BTreeMap::new();
    for a in ["tf", "tp"] {
        let v = sb.wait_status(a, "alive", 3 * SEC);
        last.insert(a, seq(&v));
    }
    for a in ["tf", "tp"] {
        let s0 = last[a];
        let v = wait_record(&sb.record_path(a), 3 * SEC, |v| {
            assert!(
                status_is(v, "alive"),
                "false death of a live thread group: {v}"
            );
            seq(v) >= s0 + 5
        });
        assert_eq!(v["status"], "alive");
    }
    let m = ps_json(&sb, &sb.run_dir(), &["tf", "tp"]);
    for a in ["tf", "tp"] {
        assert_eq!(m[a]["state"], "alive", "ps: live thread group: {m:?}");
    }
    t.kill();
    wait_all(&sb, &["tf", "tp"], "dead", SEC);
    assert!(wf.exits(3 * SEC).success());
    assert!(wp.exits(3 * SEC).success());
    assert_clean(&sb, &[pid]);
}

/// exec is not death: neither from the main thread (bash → sleep) nor from a non-leader
/// thread (the kernel hands that thread the leader's PID).
#[test]
fn exec_is_not_death() {
    let sb = Sandbox::new();
    let mut targets: Vec<(Guard, i32, std::process::ChildStdin, &str)> = Vec::new();
    let mut g = Guard::new(
        Command::new("bash")
            .args(["-c", "read x; exec sleep 1000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdin = g.child().stdin.take().unwrap();
    let p = g.pid();
    targets.push((g, p, stdin, "main"));
    if python3("exec_is_not_death (thread exec part)") {
        let (g, p, stdin) = spawn_python(
            "import os, sys, threading\n\
             print(os.getpid(), flush=True)\n\
             sys.stdin.readline()\n\
             t = threading.Thread(target=os.execv, args=('/bin/sleep', ['sleep', '1000']))\n\
             t.start(); t.join()\n",
        );
        targets.push((g, p, stdin, "thread"));
    }
    let mut watchers = Vec::new();
    for (_, pid, _, kind) in &targets {
        for backend in ["pidfd", "poll"] {
            let a = format!("exec-{kind}-{backend}");
            watchers.push((watch(&sb, *pid, &a, backend), a));
        }
    }
    for (_, a) in &watchers {
        sb.wait_status(a, "alive", 3 * SEC);
    }
    let starts: Vec<String> = targets
        .iter()
        .map(|t| stat_field(t.1, 22).unwrap())
        .collect();
    for (_, pid, stdin, _) in targets.iter_mut() {
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        let pid = *pid;
        wait_until(3 * SEC, "exec'd into sleep", || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
    }
    for (i, t) in targets.iter().enumerate() {
        assert_eq!(
            stat_field(t.1, 22).unwrap(),
            starts[i],
            "exec changed the start time"
        );
        assert!(pid_running(t.1));
    }
    for (_, a) in &watchers {
        stays_alive(&sb.record_path(a), 4, &format!("{a}: exec taken for death"));
    }
    let m = ps_json(&sb, &sb.run_dir(), &[]);
    for (_, a) in &watchers {
        assert_eq!(m[a.as_str()]["state"], "alive", "ps after exec: {m:?}");
    }
    let pids: Vec<i32> = targets.iter().map(|t| t.1).collect();
    for t in targets.iter_mut() {
        t.0.kill();
    }
    for (w, a) in watchers.iter_mut() {
        sb.wait_status(a, "dead", SEC);
        assert!(w.exits(3 * SEC).success());
    }
    assert_clean(&sb, &pids);
}

#[test]
fn stopped_target_stays_alive() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wf = watch(&sb, pid, "sf", "pidfd");
    let mut wp = watch(&sb, pid, "sp", "poll");
    wait_all(&sb, &["sf", "sp"], "alive", 3 * SEC);
    stop(pid);
    for a in ["sf", "sp"] {
        stays_alive(
            &sb.record_path(a),
            5,
            &format!("{a}: stopped taken for dead"),
        );
    }
    assert_eq!(proc_state(pid), Some('T'));
    cont(pid);
    wait_until(SEC, "running again", || proc_state(pid) == Some('S'));
    for a in ["sf", "sp"] {
        stays_alive(
            &sb.record_path(a),
            3,
            &format!("{a}: continued taken for dead"),
        );
    }
    // Stopped, then killed while stopped: that is a death.
    stop(pid);
    t.kill();
    wait_all(&sb, &["sf", "sp"], "dead", SEC);
    assert!(wf.exits(3 * SEC).success());
    assert!(wp.exits(3 * SEC).success());
    assert_clean(&sb, &[pid]);
}

// ------------------------------------------------------------------------------------------
// Watcher death
// ------------------------------------------------------------------------------------------

#[test]
fn killed_watcher_frees_its_lock() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let path = sb.record_path("wd");
    let mut w1 = watch(&sb, pid, "wd", "pidfd");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));

    // While it lives, a second watcher for the agent is refused.
    let mut c = sb.watch_cmd(pid, "wd");
    c.args(["--interval", IV]);
    let o = run_timeout(c, 5 * SEC);
    assert_eq!(
        o.status.code(),
        Some(1),
        "second watcher: {} {}",
        o.status,
        o.stderr
    );
    assert!(
        o.stderr.contains(&w1.pid().to_string()),
        "refusal should name the holder: {}",
        o.stderr
    );

    let w1pid = w1.pid();
    w1.g.kill();
    let mut w2 = watch(&sb, pid, "wd", "pidfd");
    let v = wait_record(&path, 3 * SEC, |v| v["watcher_pid"] == w2.pid());
    assert_eq!(v["status"], "alive");
    assert_eq!(seq(&v), 1, "a new watcher counts from 1: {v}");
    let v = wait_record(&path, 3 * SEC, |v| seq(v) >= 4);
    assert_eq!(v["status"], "alive");
    assert!(
        w2.count("warning") == 0 && w2.count("error") == 0,
        "{}",
        w2.stderr()
    );
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    assert!(w2.exits(3 * SEC).success());
    assert_clean(&sb, &[pid, w1pid]);
}

/// A watcher SIGKILLed between creating its temp file and renaming it leaves
/// `.<agent>.hb.<pid>.tmp` behind (seen 4 times in 30 kills at --interval 0.001). Nobody
/// ever removes it, so crashes pile them up. The next watcher of the agent holds the agent's
/// exclusive lock, so every other `.<agent>.hb.<N>.tmp` is garbage it can sweep.
#[test]
fn new_watcher_sweeps_temp_files_of_a_killed_watcher() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let run = private_run_dir(&sb);

    // Real crashes first: SIGKILL fast watchers; collect whatever they leave.
    for _ in 0..10 {
        let mut w = watch_in(&sb, None, &run, pid, "sw", "pidfd", "0.001");
        wait_record(&sb.record_path("sw"), 3 * SEC, |v| {
            v["watcher_pid"] == w.pid()
        });
        std::thread::sleep(Duration::from_millis(7));
        w.g.kill();
    }
    // Then, deterministically, what such a crash leaves: a partial temp of a dead watcher.
    let dead = exited_pid();
    std::fs::write(run.join(format!(".sw.hb.{dead}.tmp")), b"{\"ts\":17").unwrap();
    // Another agent's temp file is not ours to touch, even though its name starts alike.
    std::fs::write(run.join(format!(".sw.hb.x.hb.{dead}.tmp")), b"other").unwrap();

    let mut w = watch_in(&sb, None, &run, pid, "sw", "pidfd", IV);
    let v = wait_record(&sb.record_path("sw"), 3 * SEC, |v| {
        v["watcher_pid"] == w.pid()
    });
    let s0 = seq(&v);
    wait_record(&sb.record_path("sw"), 3 * SEC, |v| seq(v) >= s0 + 2);
    let stray = stray_dot_files(&run);
    t.kill();
    sb.wait_status("sw", "dead", SEC);
    assert!(w.exits(3 * SEC).success());
    assert_eq!(
        stray,
        vec![format!(".sw.hb.x.hb.{dead}.tmp")],
        "temp files of dead watchers left in the run dir"
    );
    assert_clean(&sb, &[pid]);
}

/// Needs `pidbeat ps`. A SIGKILLed watcher: `lost` (or `stale`), never `alive` past
/// 2 × interval + 1 s. A stalled (SIGSTOPped) watcher: `stale` once its record ages.
#[test]
fn ps_killed_or_stalled_watcher_is_never_alive() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let run = sb.run_dir();
    let iv = 0.2;
    let mut w = watch_in(&sb, None, &run, pid, "k", "pidfd", "0.2");
    let mut s = watch_in(&sb, None, &run, pid, "s", "pidfd", "0.2");
    wait_all(&sb, &["k", "s"], "alive", 3 * SEC);
    assert_eq!(ps_state(&sb, &run, "k"), "alive");
    assert_eq!(ps_state(&sb, &run, "s"), "alive");

    let wpid = w.pid();
    w.g.kill();
    stop(s.pid());
    let limit = Duration::from_secs_f64(2.0 * iv + 1.0);
    let deadline = Instant::now() + limit + Duration::from_millis(700);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        // `now` before ps runs: our age of a record is at most the age ps judged.
        let now = now_ms();
        let m = ps_json(&sb, &run, &["k", "s"]);
        for a in ["k", "s"] {
            let o = &m[a];
            let written = read_record(&sb.record_path(a)).unwrap()["ts_ms"]
                .as_u64()
                .unwrap();
            let age = Duration::from_millis(now.saturating_sub(written));
            let st = o["state"].as_str().unwrap().to_owned();
            if a == "k" {
                assert!(
                    st == "lost" || st == "stale" || (st == "alive" && age <= limit),
                    "killed watcher's agent is {st} at age {age:?}: {o}"
                );
            } else if age > limit + Duration::from_millis(100) {
                assert_eq!(st, "stale", "stalled watcher's agent at age {age:?}: {o}");
            }
            seen.push((a, st, age));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let last_k = seen.iter().rev().find(|x| x.0 == "k").unwrap();
    assert!(last_k.1 == "lost" || last_k.1 == "stale", "{seen:?}");
    assert!(
        seen.iter().any(|x| x.0 == "s" && x.1 == "stale"),
        "stalled watcher never stale: {seen:?}"
    );
    cont(s.pid());
    wait_record(&sb.record_path("s"), 2 * SEC, |v| {
        Duration::from_millis(now_ms() - v["ts_ms"].as_u64().unwrap()) < limit
    });
    assert_eq!(ps_state(&sb, &run, "s"), "alive");
    t.kill();
    sb.wait_status("s", "dead", SEC);
    assert!(s.exits(3 * SEC).success());
    assert_eq!(ps_state(&sb, &run, "s"), "dead");
    assert_eq!(
        ps_state(&sb, &run, "k"),
        "lost",
        "target and watcher both gone"
    );
    assert_clean(&sb, &[pid, wpid]);
}

// ------------------------------------------------------------------------------------------
// Run-dir faults
// ------------------------------------------------------------------------------------------

/// Shared checks while the fault lasts: the watcher runs, has warned exactly once, the
/// record is the last complete one and there is no temp file.
fn during_outage(
    ns: &MountNs,
    run: &Path,
    w: &[(&Watch, &str)],
    seq_at: &BTreeMap<String, u64>,
    what: &str,
) {
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for (w, a) in w {
        assert!(
            pid_running(w.pid()),
            "{what}: watcher {a} died: {}",
            w.stderr()
        );
        assert_eq!(
            w.count("warning"),
            1,
            "{what}: {a} must warn once:\n{}",
            w.stderr()
        );
        let rec = read_record(&ns.host(&run.join(format!("{a}.hb"))));
        if let Some(rec) = rec {
            assert_eq!(
                seq(&rec),
                seq_at[*a],
                "{what}: {a} wrote during the outage?"
            );
        }
    }
}

fn fault_scenario(
    test: &str,
    inject: impl Fn(&MountNs, &Path),
    heal: impl Fn(&MountNs, &Path),
    err_text: &str,
) {
    let sb = Sandbox::new();
    let ns = match MountNs::new(&sb, "64k") {
        Ok(ns) => ns,
        Err(e) => return skip(test, &e),
    };
    let run = ns.mnt.join("run");
    let hrun = ns.host(&run);
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wf = watch_in(&sb, Some(&ns), &run, pid, "ff", "pidfd", IV);
    let mut wp = watch_in(&sb, Some(&ns), &run, pid, "fp", "poll", IV);
    for (w, a) in [(&wf, "ff"), (&wp, "fp")] {
        let v = wait_record(&hrun.join(format!("{a}.hb")), 3 * SEC, |v| {
            status_is(v, "alive")
        });
        assert_eq!(v["watcher_pid"], w.pid(), "nsenter must exec the watcher");
    }

    // Phase 1: the fault, the target alive. Phase 2: the target dies during the fault.
    pause_between_writes(&[wf.pid(), wp.pid()], &hrun);
    inject(&ns, &run);
    let mut seq_at = BTreeMap::new();
    for a in ["ff", "fp"] {
        seq_at.insert(
            a.to_owned(),
            seq(&read_record(&hrun.join(format!("{a}.hb"))).unwrap()),
        );
    }
    cont(wf.pid());
    cont(wp.pid());
    let both = [(&wf, "ff"), (&wp, "fp")];
    during_outage(&ns, &run, &both, &seq_at, test);
    for (w, _) in both {
        assert!(
            w.stderr().contains(err_text),
            "{test}: warning should say {err_text:?}: {}",
            w.stderr()
        );
    }
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files during the fault"
    );

    t.kill();
    during_outage(&ns, &run, &both, &seq_at, &format!("{test}, target dead"));
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files during the fault"
    );
    // The records still say alive and cannot change: ps must not believe them.
    let m = ps_json_in(&sb, Some(&ns), &run, &["ff", "fp"]);
    for a in ["ff", "fp"] {
        assert_eq!(
            m[a]["state"], "lost",
            "{test}: target dead, record stuck at alive: {m:?}"
        );
    }

    heal(&ns, &run);
    for (w, a) in [(&mut wf, "ff"), (&mut wp, "fp")] {
        let v = wait_record(&hrun.join(format!("{a}.hb")), 2 * SEC, |v| {
            status_is(v, "dead")
        });
        assert_eq!(v["pid"], pid);
        assert!(w.exits(3 * SEC).success(), "{test}: {a}: {}", w.stderr());
        assert_eq!(w.count("warning"), 1, "{test}: {a}:\n{}", w.stderr());
    }
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files after the fault"
    );
    let ns_pid = ns.pid();
    drop(ns);
    assert_clean(&sb, &[pid, ns_pid]);
}

#[test]
fn rundir_full_enospc() {
    fault_scenario(
        "rundir_full_enospc",
        |ns, run| {
            let fill = ns.host(&ns.mnt.join("fill"));
            let mut f = std::fs::File::create(&fill).unwrap();
            let chunk = vec![0u8; 4096];
            let e = loop {
                if let Err(e) = f.write_all(&chunk) {
                    break e;
                }
            };
            assert_eq!(e.raw_os_error(), Some(libc_enospc()), "fill stopped by {e}");
            // Really full: not even a one-byte file fits.
            let probe = std::fs::write(ns.host(&run.join("probe")), b"x");
            assert!(probe.is_err(), "tmpfs not full");
            let _ = std::fs::remove_file(ns.host(&run.join("probe")));
        },
        |ns, _| std::fs::remove_file(ns.host(&ns.mnt.join("fill"))).unwrap(),
        "No space left on device",
    );
}

fn libc_enospc() -> i32 {
    28
}

/// `mount -o remount,ro` of the tmpfs itself fails with EBUSY while a watcher holds its lock
/// file open for writing, so the run dir is made read-only with a read-only bind mount of
/// itself on top (the watcher opens the dir by path on every write, so it meets the ro mount).
#[test]
fn rundir_read_only() {
    fault_scenario(
        "rundir_read_only",
        |ns, run| {
            ns.bind_read_only(run);
            assert!(
                std::fs::write(ns.host(&run.join("probe")), b"x").is_err(),
                "not read-only"
            );
        },
        |ns, run| {
            let o = ns.sh(&format!("umount -l '{}'", run.display()));
            assert!(o.status.success(), "umount: {}", o.stderr);
        },
        "Read-only file system",
    );
}

#[test]
fn rundir_deleted_and_recreated() {
    let sb = Sandbox::new();
    let run = sb.run_dir();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wf = watch(&sb, pid, "df", "pidfd");
    let mut wp = watch(&sb, pid, "dp", "poll");
    wait_all(&sb, &["df", "dp"], "alive", 3 * SEC);

    // Outage 1, target alive: beats resume once the dir is back.
    pause_between_writes(&[wf.pid(), wp.pid()], &run);
    std::fs::remove_dir_all(&run).unwrap();
    cont(wf.pid());
    cont(wp.pid());
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for w in [&wf, &wp] {
        assert!(pid_running(w.pid()), "watcher died: {}", w.stderr());
        assert_eq!(
            w.count("warning"),
            1,
            "warn once per outage:\n{}",
            w.stderr()
        );
        assert!(
            w.stderr().contains("No such file or directory"),
            "{}",
            w.stderr()
        );
    }
    private_run_dir(&sb);
    wait_all(&sb, &["df", "dp"], "alive", 2 * SEC);

    // Outage 2: the target dies while there is no dir; `dead` lands once it is back.
    pause_between_writes(&[wf.pid(), wp.pid()], &run);
    std::fs::remove_dir_all(&run).unwrap();
    cont(wf.pid());
    cont(wp.pid());
    t.kill();
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for w in [&wf, &wp] {
        assert!(pid_running(w.pid()), "watcher gave up: {}", w.stderr());
    }
    private_run_dir(&sb);
    for (w, a) in [(&mut wf, "df"), (&mut wp, "dp")] {
        let v = sb.wait_status(a, "dead", 2 * SEC);
        assert_eq!(v["pid"], pid);
        assert!(w.exits(3 * SEC).success());
        assert_eq!(
            w.count("warning"),
            2,
            "one warning per outage:\n{}",
            w.stderr()
        );
    }
    assert_eq!(stray_dot_files(&run), Vec::<String>::new());
    assert_clean(&sb, &[pid]);
}

/// SIGTERM while the run dir cannot be written (and the target lives on) must still stop
/// the watcher within a bounded time; today it retries the `unwatched` write forever.
#[test]
fn sigterm_during_outage_still_stops_the_watcher() {
    let sb = Sandbox::new();
    let ns = match MountNs::new(&sb, "64k") {
        Ok(ns) => ns,
        Err(e) => return skip("sigterm_during_outage_still_stops_the_watcher", &e),
    };
    let run = ns.mnt.join("run");
    let hrun = ns.host(&run);
    let t = spawn_sleep();
    let mut w = watch_in(&sb, Some(&ns), &run, t.pid(), "st", "pidfd", IV);
    wait_record(&hrun.join("st.hb"), 3 * SEC, |v| status_is(v, "alive"));
    pause_between_writes(&[w.pid()], &hrun);
    ns.bind_read_only(&run);
    cont(w.pid());
    std::thread::sleep(Duration::from_millis(200));
    kill(w.pid(), Signal::TERM);
    let st = w.g.wait_timeout(5 * SEC);
    let wpid = w.pid();
    assert!(
        st.is_some(),
        "SIGTERMed watcher {wpid} still running 5 s later (run dir read-only, target alive):\n{}",
        w.stderr()
    );
    assert!(pid_running(t.pid()), "the watcher must not harm the target");
    drop(t);
    drop(w);
    let ns_pid = ns.pid();
    drop(ns);
    assert_clean(&sb, &[ns_pid, wpid]);
}

// ------------------------------------------------------------------------------------------
// Atomicity
// ------------------------------------------------------------------------------------------

#[test]
fn records_are_atomic_under_100k_reads() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let path = sb.record_path("at");
    let mut w = watch_in(&sb, None, &sb.run_dir(), pid, "at", "pidfd", "0.001");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));
    let mut last = 0u64;
    let mut distinct = 0u64;
    for i in 0..100_000 {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {i}: {e}"));
        assert!(
            bytes.ends_with(b"\n"),
            "read {i}: partial record {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(
            bytes.iter().filter(|&&b| b == b'\n').count(),
            1,
            "read {i}: {bytes:?}"
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "read {i}: unparsable ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(v["status"], "alive", "read {i}: {v}");
        let s = seq(&v);
        assert!(s >= last, "read {i}: seq went back {last} -> {s}");
        if s != last {
            distinct += 1;
        }
        last = s;
    }
    assert!(
        distinct > 100,
        "only {distinct} distinct beats seen: the reads did not race the writes"
    );
    assert!(pid_running(w.pid()));
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    assert!(w.exits(3 * SEC).success());
    assert_eq!(w.count("warning"), 0, "{}", w.stderr());
    assert_eq!(stray_dot_files(&sb.run_dir()), Vec::<String>::new());
    assert_clean(&sb, &[pid]);
}

// ------------------------------------------------------------------------------------------
// Hostile run dir
// ------------------------------------------------------------------------------------------

/// A file of ours (`keep`, mode 0600) for links in the run dir to point at.
fn victim(sb: &Sandbox, name: &str) -> PathBuf {
    let v = sb.dir.path().join(name);
    std::fs::write(&v, b"keep").unwrap();
    std::fs::set_permissions(&v, PermissionsExt::from_mode(0o600)).unwrap();
    v
}

fn assert_victim(v: &Path) {
    assert_eq!(
        std::fs::read(v).unwrap(),
        b"keep",
        "the symlink's target was written"
    );
    assert_eq!(mode(v), 0o600, "target's mode changed");
}

#[test]
fn symlink_at_record_path_is_replaced_not_followed() {
    let sb = Sandbox::new();
    let run = private_run_dir(&sb);
    let v = victim(&sb, "victim");
    let ghost = sb.dir.path().join("ghost");
    std::os::unix::fs::symlink(&v, run.join("ra.hb")).unwrap();
    std::os::unix::fs::symlink(&ghost, run.join("rb.hb")).unwrap();
    // A hard link is no better: the record must replace the name, not write the inode.
    let v2 = victim(&sb, "victim2");
    std::fs::hard_link(&v2, run.join("rc.hb")).unwrap();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wa = watch(&sb, pid, "ra", "pidfd");
    let mut wb = watch(&sb, pid, "rb", "poll");
    let mut wc = watch(&sb, pid, "rc", "pidfd");
    let v2_ino = std::fs::metadata(&v2).unwrap().ino();
    for a in ["ra", "rb", "rc"] {
        let p = sb.record_path(a);
        wait_until(3 * SEC, "record replaced the link", || {
            std::fs::symlink_metadata(&p)
                .is_ok_and(|m| m.file_type().is_file() && m.ino() != v2_ino)
        });
        wait_record(&p, SEC, |v| status_is(v, "alive"));
    }
    t.kill();
    for (w, a) in [(&mut wa, "ra"), (&mut wb, "rb"), (&mut wc, "rc")] {
        sb.wait_status(a, "dead", SEC);
        assert!(w.exits(3 * SEC).success());
    }
    assert_victim(&v);
    assert_victim(&v2);
    assert!(
        !ghost.exists(),
        "a dangling symlink was followed and its target created"
    );
    assert_clean(&sb, &[pid]);
}

#[test]
fn symlink_at_temp_name_is_never_followed() {
    let sb = Sandbox::new();
    let run = private_run_dir(&sb);
    let v = victim(&sb, "victim");
    let ghost = sb.dir.path().join("ghost");
    let mut t = spawn_sleep();
    let pid = t.pid();

    // Before start: plant links at the temp names of the next few hundred PIDs.
    let last: i32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let planted: Vec<i32> = (last + 1..last + 400).collect();
    for p in &planted {
        std::os::unix::fs::symlink(&v, run.join(format!(".ta.hb.{p}.tmp"))).unwrap();
    }
    let mut w = watch(&sb, pid, "ta", "pidfd");
    let hit = planted.contains(&w.pid());
    if !hit {
        eprintln!(
            "note: watcher PID {} fell outside the pre-planted range",
            w.pid()
        );
    }
    let path = sb.record_path("ta");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));
    assert_victim(&v);

    // After start: plant at its exact temp name between two beats, and wait for more beats.
    for target in [&v, &ghost] {
        let tmp = run.join(format!(".ta.hb.{}.tmp", w.pid()));
        wait_until(3 * SEC, "planted", || {
            std::os::unix::fs::symlink(target, &tmp).is_ok()
        });
        let s0 = seq(&read_record(&path).unwrap());
        wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 3);
        assert!(
            std::fs::symlink_metadata(&tmp)
                .map(|m| !m.file_type().is_symlink())
                .unwrap_or(true),
            "the planted link survived several beats"
        );
    }
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    assert!(w.exits(3 * SEC).success());
    assert_victim(&v);
    assert!(
        !ghost.exists(),
        "a dangling symlink at the temp name was followed"
    );
    assert!(
        !std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(w.count("warning"), 0, "{}", w.stderr());
    assert_clean(&sb, &[pid]);
}

#[test]
fn symlink_at_lock_path_is_never_followed() {
    let sb = Sandbox::new();
    let run = private_run_dir(&sb);
    let v = victim(&sb, "victim");
    let ghost = sb.dir.path().join("ghost");
    std::os::unix::fs::symlink(&v, run.join(".la.lock")).unwrap();
    std::os::unix::fs::symlink(&ghost, run.join(".lb.lock")).unwrap();
    let mut t = spawn_sleep();
    let pid = t.pid();
    for a in ["la", "lb"] {
        let mut c = sb.watch_cmd(pid, a);
        c.args(["--interval", IV]);
        // Refusing is fine (exit 1, naming the lock); writing through the link is not.
        let o = run_timeout(c, 5 * SEC);
        assert_eq!(o.status.code(), Some(1), "{a}: {} {}", o.status, o.stderr);
        assert!(
            o.stderr.contains(&format!(".{a}.lock")),
            "{a}: message should name the lock: {}",
            o.stderr
        );
    }
    assert_victim(&v);
    assert!(!ghost.exists(), "a dangling lock symlink was followed");
    t.kill();
    assert_clean(&sb, &[pid]);
}

/// A hard link planted at `.<agent>.lock` (to any file of ours on the same filesystem) is
/// opened O_RDWR, truncated and overwritten with the watcher's PID: O_NOFOLLOW does not help
/// against links that are not symlinks. The record and temp names are safe (rename, O_EXCL);
/// the lock must be too.
#[test]
fn hardlink_at_lock_path_is_never_written_through() {
    let sb = Sandbox::new();
    let run = private_run_dir(&sb);
    let v = victim(&sb, "victim");
    std::fs::hard_link(&v, run.join(".hl.lock")).unwrap();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut w = watch(&sb, pid, "hl", "pidfd");
    // Either refused at start, or running: in both cases the victim must be intact.
    let refused = w.g.wait_timeout(Duration::from_millis(500));
    let after = std::fs::read(&v).unwrap();
    match refused {
        None => {
            t.kill();
            let _ = w.exits(3 * SEC);
        }
        Some(st) => {
            assert_eq!(st.code(), Some(1), "{}", w.stderr());
            assert!(
                w.stderr().contains(".hl.lock"),
                "name the lock: {}",
                w.stderr()
            );
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&after),
        "keep",
        "the watcher wrote its lock line into a hard-linked file outside the run dir"
    );
    drop(t);
    assert_clean(&sb, &[pid]);
}

/// A thread ID is not a process. pidfd_open refuses it (ENOENT) but the message sends the
/// user to `--backend poll`, and the poll backend accepts it and then reports `dead` when
/// that one thread ends while the process lives on: a false `dead`.
#[test]
fn thread_id_is_refused_not_watched() {
    if !python3("thread_id_is_refused_not_watched") {
        return;
    }
    let sb = Sandbox::new();
    let (mut p, pid, mut stdin) = spawn_python(
        "import os, sys, threading\n\
         t = threading.Thread(target=sys.stdin.readline)\n\
         t.start()\n\
         while t.native_id is None: pass\n\
         print(os.getpid(), flush=True)\n\
         t.join()\n\
         threading.Event().wait()\n",
    );
    let tid: i32 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .find(|&t| t != pid)
        .expect("a second thread");
    let mut problems = Vec::new();
    let mut started = Vec::new();
    for backend in ["auto", "pidfd", "poll"] {
        let a = format!("tid-{backend}");
        let mut w = watch(&sb, tid, &a, backend);
        match w.g.wait_timeout(Duration::from_millis(700)) {
            Some(st) => {
                let e = w.stderr();
                if st.code() != Some(1) || !e.contains("thread") || !e.contains(&pid.to_string()) {
                    problems.push(format!(
                        "{backend}: exit {st}, message should say {tid} is a thread of process {pid}: {}",
                        e.trim()
                    ));
                }
            }
            None => started.push((w, a, backend)),
        }
    }
    // Whatever was accepted: end the thread and see what the record claims.
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    wait_until(2 * SEC, "thread ended", || {
        !Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
    });
    std::thread::sleep(Duration::from_millis(400));
    for (w, a, backend) in &started {
        let rec = read_record(&sb.record_path(a));
        problems.push(format!(
            "{backend}: watched thread {tid} of process {pid}; process alive={}, record: {rec:?}",
            pid_running(pid)
        ));
        let _ = w;
    }
    p.kill();
    drop(started);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_clean(&sb, &[pid]);
}

#[test]
fn unsafe_run_dirs_are_refused() {
    let sb = Sandbox::new();
    let t = spawn_sleep();
    let pid = t.pid();
    let cases: [(&str, u32, Option<u32>, &[&str]); 5] = [
        ("other-owner", 0o700, Some(65534), &["owned by uid 65534"]),
        ("world-writable", 0o777, None, &["writable", "chmod go-w"]),
        ("group-writable", 0o770, None, &["writable", "chmod go-w"]),
        ("sticky-tmp-like", 0o1777, None, &["writable", "chmod go-w"]),
        (
            "others-write-only",
            0o702,
            None,
            &["writable", "chmod go-w"],
        ),
    ];
    for (name, mode, owner, must) in cases {
        let d = sb.dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, PermissionsExt::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
        }
        for how in ["flag", "env"] {
            let mut c = sb.cmd();
            c.args([
                "watch",
                "--pid",
                &pid.to_string(),
                "--agent",
                "u",
                "--interval",
                IV,
            ]);
            if how == "flag" {
                c.arg("--run-dir").arg(&d);
            } else {
                c.env("MOSAIC_HEARTBEAT_RUN_DIR", &d);
            }
            let o = run_timeout(c, 5 * SEC);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{name} via {how}: {} {}",
                o.status,
                o.stderr
            );
            assert!(
                o.stderr.contains(&d.display().to_string()),
                "{name}: name the dir: {}",
                o.stderr
            );
            for m in must {
                assert!(
                    o.stderr.contains(m),
                    "{name} via {how}: message lacks {m:?}: {}",
                    o.stderr
                );
            }
            assert!(
                dir_names(&d).is_empty(),
                "{name}: something was written into a refused dir: {:?}",
                dir_names(&d)
            );
        }
    }
    drop(t);
    assert_clean(&sb, &[pid]);
}

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

#[test]
fn bad_input_is_a_usage_error_naming_the_problem() {
    let sb = Sandbox::new();
    let t = spawn_sleep();
    let pid = t.pid().to_string();
    let file = sb.dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let file = file.display().to_string();
    let run = sb.run_dir().display().to_string();
    let pid_max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let above = (pid_max + 1).to_string();
    let long = "a".repeat(129);

    // (what, args after `watch`-or-other, env, words the message must contain)
    type Case = (
        String,
        Vec<String>,
        Vec<(&'static str, String)>,
        Vec<String>,
    );
    let mut cases: Vec<Case> = Vec::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let watch_with = |flag: &str, val: &str| -> Vec<String> {
        let mut a = s(&["watch"]);
        for (f, v) in [
            ("--run-dir", run.as_str()),
            ("--interval", IV),
            ("--pid", pid.as_str()),
            ("--agent", "ok"),
        ] {
            if f != flag {
                a.extend(s(&[f, v]));
            }
        }
        a.push(format!("{flag}={val}"));
        a
    };
    for bad in [
        "0",
        "-1",
        "abc",
        "1.5",
        above.as_str(),
        "",
        " ",
        "0x10",
        "99999999999999999999",
    ] {
        cases.push((
            format!("--pid {bad:?}"),
            watch_with("--pid", bad),
            vec![],
            s(&["--pid", bad]),
        ));
    }
    // The `--pid -1` spelling (no `=`) must be refused too.
    cases.push((
        "--pid -1 (separate)".into(),
        s(&["watch", "--agent", "ok", "--run-dir", &run, "--pid", "-1"]),
        vec![],
        s(&["-1"]),
    ));
    for bad in [
        "",
        ".x",
        "a/b",
        "..",
        long.as_str(),
        "a b",
        "é",
        "a\nb",
        "*",
    ] {
        let mut must = s(&["--agent"]);
        if bad.len() > 128 {
            must.push("128".into());
        }
        cases.push((
            format!("--agent {bad:?}"),
            watch_with("--agent", bad),
            vec![],
            must,
        ));
    }
    for bad in [
        "0", "-1", "NaN", "nan", "inf", "-inf", "86401", "abc", "", "1e400", "0.0001",
    ] {
        cases.push((
            format!("--interval {bad:?}"),
            watch_with("--interval", bad),
            vec![],
            s(&["--interval", bad]),
        ));
        if bad.is_empty() {
            continue; // an empty variable means unset, as for XDG_CONFIG_HOME
        }
        let a = s(&["watch", "--run-dir", &run, "--pid", &pid, "--agent", "ok"]);
        cases.push((
            format!("MOSAIC_HEARTBEAT_INTERVAL={bad:?}"),
            a,
            vec![("MOSAIC_HEARTBEAT_INTERVAL", bad.to_string())],
            s(&[bad]),
        ));
    }
    cases.push((
        "--backend bogus".into(),
        watch_with("--backend", "bogus"),
        vec![],
        s(&["--backend", "bogus"]),
    ));
    cases.push((
        "--run-dir FILE".into(),
        watch_with("--run-dir", &file),
        vec![],
        s(&["--run-dir", &file, "not a directory"]),
    ));
    cases.push((
        "MOSAIC_HEARTBEAT_RUN_DIR=FILE".into(),
        s(&["watch", "--pid", &pid, "--agent", "ok", "--interval", IV]),
        vec![("MOSAIC_HEARTBEAT_RUN_DIR", file.clone())],
        s(&[&file, "not a directory"]),
    ));
    cases.push((
        "missing --pid".into(),
        s(&["watch", "--agent", "ok", "--run-dir", &run]),
        vec![],
        s(&["--pid"]),
    ));
    cases.push((
        "missing --agent".into(),
        s(&["watch", "--pid", &pid, "--run-dir", &run]),
        vec![],
        s(&["--agent"]),
    ));
    // The same parsers guard the other subcommands.
    cases.push((
        "run MOSAIC_HEARTBEAT_INTERVAL=0".into(),
        s(&["run", "--agent", "ok", "--run-dir", &run, "--", "true"]),
        vec![("MOSAIC_HEARTBEAT_INTERVAL", "0".into())],
        s(&["0"]),
    ));
    cases.push((
        "ps --run-dir FILE".into(),
        s(&["ps", "--run-dir", &file]),
        vec![],
        s(&["not a directory"]),
    ));
    cases.push((
        "ps bad agent".into(),
        s(&["ps", "--run-dir", &run, "a/b"]),
        vec![],
        s(&["a/b"]),
    ));

    let mut failures = Vec::new();
    for (what, args, env, must) in &cases {
        let mut c = sb.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = run_timeout(c, 5 * SEC);
        let code = o.status.code();
        let missing: Vec<&String> = must
            .iter()
            .filter(|m| !o.stderr.contains(m.as_str()))
            .collect();
        if code != Some(2) || !missing.is_empty() || o.stderr.trim().is_empty() {
            failures.push(format!(
                "{what}: exit {code:?}, missing {missing:?} in: {}",
                o.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad inputs mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        !sb.run_dir().exists(),
        "a rejected invocation created the run dir"
    );

    // A well-formed PID of no process is a runtime error (1), not a usage error.
    let gone = exited_pid();
    let o = run_timeout(sb.watch_cmd(gone, "ok"), 5 * SEC);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains(&gone.to_string()), "{}", o.stderr);
    drop(t);
    assert_clean(&sb, &[]);
}

/// Needs `pidbeat ps`. Hostile record files: `corrupt`, quickly, without reading them whole.
#[test]
fn ps_corrupt_records_quickly() {
    let sb = Sandbox::new();
    let run = private_run_dir(&sb);
    let now = now_ms();
    std::fs::write(
        run.join("good.hb"),
        format!("{{\"ts\":{},\"pid\":1,\"status\":\"dead\"}}\n", now / 1000),
    )
    .unwrap();
    std::fs::write(run.join("garbage.hb"), b"this is not json\n").unwrap();
    std::fs::write(run.join("empty.hb"), b"").unwrap();
    std::fs::write(run.join("partial.hb"), b"{\"ts\":17,\"pid\":").unwrap();
    std::fs::write(
        run.join("badutf.hb"),
        b"{\"ts\":1,\"pid\":1,\"status\":\"al\xffive\"}\n",
    )
    .unwrap();
    std::fs::write(run.join("nul.hb"), b"\0\0\0\0").unwrap();
    std::fs::write(
        run.join("wrongtype.hb"),
        b"{\"ts\":\"x\",\"pid\":\"y\",\"status\":\"alive\"}\n",
    )
    .unwrap();
    std::fs::write(
        run.join("badstatus.hb"),
        b"{\"ts\":1,\"pid\":1,\"status\":\"zombie\"}\n",
    )
    .unwrap();
    std::fs::write(run.join("deep.hb"), "[".repeat(100_000)).unwrap();
    std::fs::write(run.join("deep60k.hb"), "[".repeat(60_000)).unwrap();
    std::fs::write(run.join("deepobj.hb"), "{\"a\":".repeat(10_000)).unwrap();
    std::fs::File::create(run.join("huge.hb"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let corrupt = [
        "garbage",
        "empty",
        "partial",
        "badutf",
        "nul",
        "wrongtype",
        "badstatus",
        "deep",
        "deep60k",
        "deepobj",
        "huge",
    ];
    // Not regular files: a reader must neither block (FIFO) nor read forever (/dev/zero).
    assert!(
        Command::new("mkfifo")
            .arg(run.join("fifo.hb"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/zero", run.join("zero.hb")).unwrap();
    std::fs::create_dir(run.join("dir.hb")).unwrap();

    let o = run_timeout(sb.ps_cmd(&["--json"]), 10 * SEC);
    assert!(o.status.code().is_some(), "ps crashed: {}", o.status);
    assert!(o.status.success(), "ps failed ({}): {}", o.status, o.stderr);
    assert!(
        o.elapsed < Duration::from_millis(500),
        "ps took {:?}",
        o.elapsed
    );
    let m = parse_ps(&o.stdout);
    assert_eq!(m["good"]["state"], "dead", "{m:?}");
    for a in corrupt {
        let o = m
            .get(a)
            .unwrap_or_else(|| panic!("ps does not list {a}: {m:?}"));
        assert_eq!(o["state"], "corrupt", "{a}: {o}");
    }
    for a in ["fifo", "zero", "dir"] {
        if let Some(o) = m.get(a) {
            assert_eq!(o["state"], "corrupt", "{a}: {o}");
        }
    }
    // Alone, and in the other formats, the huge one is quick too.
    for fmt in [&["--json"][..], &[], &["--prom"]] {
        let mut c = sb.ps_cmd(fmt);
        c.args(["huge", "deep"]);
        let o = run_timeout(c, 10 * SEC);
        assert!(o.status.success(), "ps {fmt:?}: {} {}", o.status, o.stderr);
        assert!(
            o.elapsed < Duration::from_millis(500),
            "ps {fmt:?} took {:?}",
            o.elapsed
        );
    }
    assert_clean(&sb, &[]);
}

// ------------------------------------------------------------------------------------------
// Signals
// ------------------------------------------------------------------------------------------

#[test]
fn signals_hup_and_pipe_are_survived_term_and_int_unwatch() {
    let sb = Sandbox::new();
    let t = spawn_sleep();
    let pid = t.pid();
    let mut ws = Vec::new();
    for (a, backend) in [
        ("hup", "pidfd"),
        ("pipe", "poll"),
        ("term", "pidfd"),
        ("int", "poll"),
        ("term-poll", "poll"),
    ] {
        ws.push((watch(&sb, pid, a, backend), a));
    }
    for (_, a) in &ws {
        sb.wait_status(a, "alive", 3 * SEC);
    }
    for (w, a) in &ws {
        let sig = match *a {
            "hup" => Signal::HUP,
            "pipe" => Signal::PIPE,
            "int" => Signal::INT,
            _ => Signal::TERM,
        };
        kill(w.pid(), sig);
    }
    for (w, a) in ws.iter_mut() {
        let p = sb.record_path(a);
        match *a {
            "hup" | "pipe" => {
                stays_alive(&p, 4, a);
                assert!(pid_running(w.pid()), "SIG{a} killed the watcher");
            }
            _ => {
                let st = w.exits(3 * SEC);
                assert!(st.success(), "{a}: watcher exit {st}: {}", w.stderr());
                let v = read_record(&p).unwrap();
                assert_eq!(v["status"], "unwatched", "{a}: {v}");
                assert_eq!(v["pid"], pid);
            }
        }
    }
    assert!(
        pid_running(pid),
        "stopping watchers must not touch the target"
    );
    drop(t);
    for (w, a) in ws.iter_mut() {
        if *a == "hup" || *a == "pipe" {
            sb.wait_status(a, "dead", SEC);
            assert!(w.exits(3 * SEC).success());
        }
    }
    assert_clean(&sb, &[pid]);
}

/// Needs `pidbeat ps`: states of targets that are odd but alive, dead zombies, unwatched.
#[test]
fn ps_states_for_stopped_zombie_and_unwatched_targets() {
    become_subreaper();
    let sb = Sandbox::new();
    let run = sb.run_dir();
    let mut stopped = spawn_sleep();
    let (mut parent, c) = zombie_family(&sb);
    let _c = Adopted(c);
    let unw = spawn_sleep();
    let mut w1 = watch(&sb, stopped.pid(), "stopped", "pidfd");
    let mut w2 = watch(&sb, c, "zombie", "poll");
    let mut w3 = watch(&sb, unw.pid(), "unwatched", "pidfd");
    wait_all(&sb, &["stopped", "zombie", "unwatched"], "alive", 3 * SEC);
    stop(stopped.pid());
    kill(c, Signal::KILL);
    kill(w3.pid(), Signal::TERM);
    sb.wait_status("zombie", "dead", SEC);
    sb.wait_status("unwatched", "unwatched", SEC);
    std::thread::sleep(Duration::from_millis(300));
    let m = ps_json(&sb, &run, &[]);
    assert_eq!(m["stopped"]["state"], "alive", "{m:?}");
    assert_eq!(m["zombie"]["state"], "dead", "{m:?}");
    assert_eq!(m["unwatched"]["state"], "unwatched", "{m:?}");
    for o in m.values() {
        assert!(o["age_ms"].as_u64().is_some(), "age_ms: {o}");
    }
    stopped.kill();
    parent.kill();
    drop(unw);
    for w in [&mut w1, &mut w2, &mut w3] {
        w.exits(3 * SEC);
    }
    drop(_c);
    assert_clean(&sb, &[c]);
}

// ------------------------------------------------------------------------------------------
// --detach
// ------------------------------------------------------------------------------------------

#[test]
fn detach_returns_at_once_with_the_record_on_disk() {
    become_subreaper();
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let path = sb.record_path("dt");
    let mut c = sb.watch_cmd(pid, "dt");
    c.args(["--detach", "--interval", IV]);
    let o = run_timeout(c, 10 * SEC);
    // The record exists the moment the caller gets control back.
    let rec = read_record(&path);
    let wpid = rec
        .as_ref()
        .and_then(|r| r["watcher_pid"].as_i64())
        .map(|p| p as i32);
    let adopted = wpid.map(Adopted);
    assert_eq!(
        o.status.code(),
        Some(0),
        "detach: {} {}",
        o.status,
        o.stderr
    );
    assert!(
        o.elapsed < 2 * SEC,
        "`$(pidbeat watch --detach …)` took {:?}",
        o.elapsed
    );
    let rec = rec.expect("no record on disk when --detach returned");
    assert_eq!(rec["status"], "alive", "{rec}");
    let wpid = wpid.unwrap();
    // Its one line of output is the watcher's PID, as the record names it.
    assert!(
        o.stdout == format!("{wpid}\n") && o.stderr.is_empty(),
        "{o:?}",
        o = (&o.stdout, &o.stderr)
    );
    assert!(pid_running(wpid), "detached watcher {wpid} is not running");
    assert_eq!(
        stat_field(wpid, 6).unwrap(),
        wpid.to_string(),
        "not a session leader"
    );
    assert_eq!(
        stat_field(wpid, 4).unwrap(),
        std::process::id().to_string(),
        "not reparented to us"
    );
    for fd in 0..3 {
        let l = std::fs::read_link(format!("/proc/{wpid}/fd/{fd}")).unwrap();
        assert_eq!(l, Path::new("/dev/null"), "fd {fd} of the detached watcher");
    }
    let s0 = seq(&rec);
    wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 3);
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    let st = adopted.unwrap().reap_within(3 * SEC);
    assert_eq!(st.exit_status(), Some(0), "detached watcher: {st:?}");
    assert_clean(&sb, &[pid, wpid]);
}

#[test]
fn detach_failure_reports_and_exits_nonzero() {
    become_subreaper();
    let sb = Sandbox::new();
    let gone = exited_pid();
    let run = sb.run_dir();
    let detach = |pid: i32, agent: &str, run: &Path| {
        let mut c = sb.cmd();
        watch_args(&mut c, pid, agent, run).args(["--detach", "--interval", IV]);
        run_timeout(c, 10 * SEC)
    };
    let o = detach(gone, "nope", &run);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(
        o.stderr.contains(&gone.to_string()) && o.stderr.contains("no process"),
        "{}",
        o.stderr
    );
    assert!(o.elapsed < 2 * SEC, "{:?}", o.elapsed);
    assert!(read_record(&sb.record_path("nope")).is_none());

    // The lock is held: the detached child's refusal reaches the caller.
    let mut t = spawn_sleep();
    let mut w = watch(&sb, t.pid(), "held", "pidfd");
    sb.wait_status("held", "alive", 3 * SEC);
    let o = detach(t.pid(), "held", &run);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(o.stderr.contains("already watched"), "{}", o.stderr);

    // An unsafe run dir.
    let bad = sb.dir.path().join("open");
    std::fs::create_dir(&bad).unwrap();
    std::fs::set_permissions(&bad, PermissionsExt::from_mode(0o777)).unwrap();
    let o = detach(t.pid(), "x", &bad);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(o.stderr.contains("writable"), "{}", o.stderr);

    t.kill();
    assert!(w.exits(3 * SEC).success());
    assert_clean(&sb, &[t.pid()]);
}
