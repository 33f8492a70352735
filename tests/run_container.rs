//! `pidbeat run` as a container's PID 1, held to what tini does (issue 19): every catchable
//! signal forwarded and none stopping pidbeat, the terminal's Ctrl-C reaching the child once,
//! the child's inherited signal state, orphans (`--subreaper`, `--pdeathsig`), a run dir that
//! cannot be used never keeping CMD from running, and a prompt exit on a full disk.
//!
//! Real processes on the host and as PID 1 of `unshare --pid`, a real pty through `script`,
//! a private tmpfs for the full disk. The Docker engine cases are tests/docker/.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// `pidbeat run --agent AGENT FLAGS… --run-dir <run dir> -- CMD…`.
fn run_cmd(sb: &Sandbox, agent: &str, flags: &[&str], cmd: &[&str]) -> Command {
    let mut c = sb.cmd();
    c.args(["run", "--agent", agent])
        .args(flags)
        .arg("--run-dir")
        .arg(sb.run_dir())
        .arg("--")
        .args(cmd);
    c
}

/// The signals `run` forwards: all but KILL, STOP (uncatchable), CHLD (reaping), TTIN,
/// TTOU (ignored, as tini does) and glibc's 32 and 33.
fn forwarded() -> Vec<i32> {
    (1..=64)
        .filter(|s| ![9, 17, 19, 21, 22, 32, 33].contains(s))
        .collect()
}

/// A bash child that traps every forwarded signal and prints `got N` for each, `ready` once
/// set up, and exits 7 at EOF on stdin (its `read -t` returns often so traps run at once).
fn trap_all_script() -> String {
    let traps: String = forwarded()
        .iter()
        .map(|s| format!("trap 'echo got {s}' {s}\n"))
        .collect();
    format!(
        "{traps}echo ready\nwhile :; do read -r -t 0.02 _; r=$?; [ $r -gt 128 ] || break; done\nexit 7\n"
    )
}

fn wait_line(rx: &Receiver<String>, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l == want => return seen,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no {want:?} within {timeout:?}; saw {seen:?}"),
        }
    }
}

/// `kill -N PID`, by number (real-time signals included).
fn kill_n(pid: i32, sig: i32) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .finish();
    assert!(st.status.success(), "kill -{sig} {pid}: {}", st.stderr);
}

/// Sends every forwarded signal, and TTIN/TTOU, to `pidbeat` one at a time: each forwarded
/// one reaches the child exactly once, and after each pidbeat runs on, never stopped.
fn every_signal_reaches_the_child(pidbeat: i32, rx: &Receiver<String>) {
    for sig in forwarded().into_iter().chain([21, 22]) {
        kill_n(pidbeat, sig);
        if sig == 21 || sig == 22 {
            std::thread::sleep(Duration::from_millis(50));
        } else {
            let extra = wait_line(rx, &format!("got {sig}"), 3 * SEC);
            assert!(extra.is_empty(), "before `got {sig}`: {extra:?}");
        }
        let state = proc_state(pidbeat);
        assert!(
            matches!(state, Some('S' | 'R')),
            "after signal {sig} pidbeat is {state:?}"
        );
    }
    // Nothing doubled, and TTIN/TTOU never forwarded.
    std::thread::sleep(Duration::from_millis(100));
    let late: Vec<String> = rx.try_iter().collect();
    assert!(late.is_empty(), "unexpected: {late:?}");
}

#[test]
fn every_catchable_signal_reaches_the_child_and_none_stops_pidbeat() {
    let sb = Sandbox::new();
    let script = trap_all_script();
    let mut g = Guard::spawn(
        run_cmd(&sb, "sigs", &[], &["bash", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let rx = line_channel(g.child().stdout.take().unwrap());
    wait_line(&rx, "ready", 5 * SEC);
    every_signal_reaches_the_child(g.pid(), &rx);
    drop(g.child().stdin.take());
    let st = g.wait_timeout(5 * SEC).expect("run exits with its child");
    assert_eq!(st.code(), Some(7));
    assert_eq!(
        read_record(&sb.record_path("sigs")).unwrap()["exit"]["code"],
        7
    );
}

#[test]
fn as_pid_1_every_catchable_signal_reaches_the_child() {
    if !unshare_pid_ns_works(&[]) {
        return skip("unshare --pid --fork --mount-proc is not available");
    }
    let sb = Sandbox::new();
    let script = trap_all_script();
    let mut c = sb.cmd_of("unshare");
    c.args([
        "--pid",
        "--fork",
        "--mount-proc",
        BIN,
        "run",
        "--agent",
        "init",
    ])
    .arg("--run-dir")
    .arg(sb.run_dir())
    .args(["--", "bash", "-c", &script]);
    let mut g = Guard::spawn(
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let rx = line_channel(g.child().stdout.take().unwrap());
    wait_line(&rx, "ready", 5 * SEC);
    // unshare --fork: pidbeat is its only child, PID 1 inside.
    let unshare = g.pid();
    let pidbeat: i32 = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap()
        .trim()
        .parse()
        .expect("unshare's one child");
    let v = sb.wait_status("init", "alive", 5 * SEC);
    assert_eq!(v["watcher_pid"], 1);
    every_signal_reaches_the_child(pidbeat, &rx);
    drop(g.child().stdin.take());
    let st = g.wait_timeout(5 * SEC).expect("run exits with its child");
    assert_eq!(st.code(), Some(7));
}

/// The SigBlk and SigIgn lines in `out`, in order.
fn sig_lines(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == "SigBlk" || k == "SigIgn")
                .then(|| (k.to_owned(), u64::from_str_radix(v.trim(), 16).unwrap()))
        })
        .collect()
}

const fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// tini's sigconf test: the child's mask and ignored set (/proc/CHILD/status) are exactly
/// those pidbeat's parent gave it: nothing pidbeat added (its blocked signalfd set, its
/// TTIN/TTOU ignores, std's SIGPIPE ignore) and nothing it dropped. Once as started plainly,
/// once with a parent that blocked SIGTERM, SIGUSR1, SIGTTIN and a real-time signal, and
/// ignored SIGINT, SIGPIPE, SIGHUP, SIGCHLD, SIGTTOU and another real-time signal. No shell in between: pidbeat is
/// exec'd from the test's fork, and the child is grep itself.
#[test]
fn the_child_inherits_exactly_the_parents_signal_mask_and_ignores() {
    let sb = Sandbox::new();
    // glibc's own 32 and 33 are whatever the test process has (a fork keeps them).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_ign = sig_lines(&own)
        .into_iter()
        .find(|(k, _)| k == "SigIgn")
        .unwrap()
        .1;
    let glibc = own_ign & (bit(32) | bit(33));
    for (agent, blocked, ignored) in [
        ("plain", 0, 0),
        (
            "set",
            bit(libc::SIGTERM) | bit(libc::SIGUSR1) | bit(libc::SIGTTIN) | bit(40),
            // SIGCHLD ignored too: pidbeat still learns the child's status (it resets it for
            // itself), and hands the ignore on.
            bit(libc::SIGINT)
                | bit(libc::SIGPIPE)
                | bit(libc::SIGHUP)
                | bit(libc::SIGCHLD)
                | bit(libc::SIGTTOU)
                | bit(45),
        ),
    ] {
        let mut c = run_cmd(
            &sb,
            agent,
            &[],
            &["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
        );
        set_signal_state(&mut c, blocked, ignored);
        let out = run_with_deadline(c, 10 * SEC);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        assert_eq!(
            sig_lines(&out.stdout),
            [
                ("SigBlk".to_owned(), blocked),
                ("SigIgn".to_owned(), ignored | glibc)
            ],
            "{agent}:\n{}",
            out.stdout
        );
    }
}

/// Makes `c` start with `blocked` as its signal mask and `ignored` set to SIG_IGN, as a
/// parent (a shell's `trap '' …`, nohup, a supervisor) would leave them.
fn set_signal_state(c: &mut Command, blocked: u64, ignored: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions
    // (sigemptyset, sigaddset, pthread_sigmask, signal) on a stack-local sigset_t.
    unsafe {
        c.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in 1..=64 {
                if blocked & bit(s) != 0 {
                    libc::sigaddset(&mut set, s);
                }
                if ignored & bit(s) != 0 {
                    libc::signal(s, libc::SIG_IGN);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// A parent that blocked SIGTERM does not make `run` deaf: `docker stop`'s SIGTERM is
/// forwarded. The child inherited the same mask (as under tini), so there it waits pending,
/// which /proc shows.
#[test]
fn sigterm_blocked_by_the_parent_is_still_forwarded() {
    let sb = Sandbox::new();
    let mut c = run_cmd(&sb, "deaf", &[], &["sleep", "1000"]);
    set_signal_state(&mut c, bit(libc::SIGTERM), 0);
    let mut g = Guard::spawn(c.stdin(Stdio::null()).stdout(Stdio::null()));
    let v = sb.wait_status("deaf", "alive", 5 * SEC);
    let child = v["pid"].as_i64().unwrap() as i32;
    send_signal(g.pid(), Signal::TERM);
    let pending = |pid: i32| {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        st.lines()
            .filter_map(|l| {
                l.strip_prefix("ShdPnd:")
                    .or_else(|| l.strip_prefix("SigPnd:"))
            })
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .fold(0, |a, b| a | b)
    };
    wait_until(3 * SEC, "SIGTERM pending in the child", || {
        pending(child) & bit(libc::SIGTERM) != 0
    });
    assert!(pid_running(g.pid()), "pidbeat died of SIGTERM");
    signal(child, Signal::KILL);
    let st = g.wait_timeout(5 * SEC).expect("run exits");
    assert_eq!(st.code(), Some(128 + 9));
}

/// tini's `-g`: a child that catches SIGTERM (a shell waiting for its own child) does not
/// pass it on; with `--kill-group` the whole group gets it and the run ends at once.
#[test]
fn kill_group_signals_the_childs_whole_process_group() {
    let sb = Sandbox::new();
    let script = "trap 'echo caught' TERM; echo ready; sleep 1000; echo done";
    for (flags, ends) in [(&["--kill-group"][..], true), (&[][..], false)] {
        let agent = if ends { "grp" } else { "nogrp" };
        let mut g = Guard::spawn(
            run_cmd(&sb, agent, flags, &["sh", "-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let rx = line_channel(g.child().stdout.take().unwrap());
        wait_line(&rx, "ready", 5 * SEC);
        std::thread::sleep(Duration::from_millis(50));
        send_signal(g.pid(), Signal::TERM);
        let st = g.wait_timeout(if ends { 3 * SEC } else { SEC / 2 });
        if ends {
            let st = st.expect("--kill-group: sleep got SIGTERM, sh went on and exited");
            assert_eq!(st.code(), Some(0));
        } else {
            assert!(st.is_none(), "without --kill-group sh waits for its sleep");
            // End it: the group, as --kill-group would have.
            let child = read_record(&sb.record_path(agent)).unwrap()["pid"]
                .as_i64()
                .unwrap() as i32;
            let group = rustix::process::Pid::from_raw(child).unwrap();
            rustix::process::kill_process_group(group, Signal::KILL).unwrap();
            g.wait_timeout(3 * SEC).expect("run exits");
        }
    }
}

/// tini's `-s`: an orphan of the child is adopted by a non-PID-1 `run` and reaped at once.
#[test]
fn subreaper_adopts_and_reaps_orphans() {
    let sb = Sandbox::new();
    let pidfile = sb.path("orphan.pid");
    let script = format!("(sleep 0.3 & echo $! > '{}'); sleep 1.2", pidfile.display());
    let g = Guard::spawn(
        run_cmd(&sb, "reaper", &["--subreaper"], &["sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let orphan = read_pid_file(&pidfile, 5 * SEC);
    let ppid = stat_field(orphan, 4).map(|p| p.parse::<i32>().unwrap());
    assert_eq!(ppid, Some(g.pid()), "the orphan's parent is pidbeat");
    // Reaped, not left a zombie: gone from /proc altogether.
    wait_until(3 * SEC, "the orphan is reaped", || {
        proc_state(orphan).is_none()
    });
    g.reap_within(5 * SEC);
}

/// tini's `-p`: pidbeat gets the signal when its parent dies, and forwards it.
#[test]
fn pdeathsig_forwards_the_signal_when_the_parent_dies() {
    let sb = Sandbox::new();
    become_subreaper();
    let pidfile = sb.path("run.pid");
    let run = sb.run_dir();
    let script = format!(
        "'{BIN}' run --agent orphaned --pdeathsig TERM --run-dir '{}' -- sleep 1000 \
         </dev/null >/dev/null 2>&1 & echo $! > '{}'; sleep 0.3",
        run.display(),
        pidfile.display()
    );
    let mut parent = Guard::spawn(sb.cmd_of("sh").args(["-c", &script]));
    let pidbeat = read_pid_file(&pidfile, 5 * SEC);
    let mut g = Guard::adopt(pidbeat);
    sb.wait_status("orphaned", "alive", 5 * SEC);
    parent.wait_timeout(5 * SEC).expect("the parent exits");
    let v = sb.wait_status("orphaned", "dead", 5 * SEC);
    assert_eq!(v["exit"]["signal"], 15, "{v}");
    let st = g.wait_timeout(5 * SEC).expect("pidbeat exits");
    assert_eq!(st.code(), Some(128 + 15));
}

/// On a terminal the child runs in its own foreground process group, as under tini, so one
/// Ctrl-C is one SIGINT for it (not one from the terminal and one forwarded). 25 of 25.
#[test]
fn ctrl_c_through_script_reaches_the_child_exactly_once() {
    if !have("script", "util-linux") {
        return;
    }
    let sb = Sandbox::new();
    // Counts SIGINTs; once one came, waits 0.3 s more for a second, then reports.
    let child = sb.path("count.sh");
    std::fs::write(
        &child,
        "n=0; trap 'n=$((n+1))' INT; echo ready; i=0\n\
         while [ $i -lt 300 ]; do read -r -t 0.01 _; i=$((i+1))\n\
         if [ $n -eq 0 ]; then i=0; fi; [ $i -gt 30 ] && break; done; echo sigints=$n\n",
    )
    .unwrap();
    for round in 0..25 {
        let cmd = format!(
            "'{BIN}' run --agent tty --run-dir '{}' -- bash '{}'",
            sb.run_dir().display(),
            child.display()
        );
        let mut g = Guard::spawn(
            sb.cmd_of("script")
                .args(["-qec", &cmd, "/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let rx = line_channel(g.child().stdout.take().unwrap());
        let mut stdin = g.child().stdin.take().unwrap();
        let deadline = Instant::now() + 5 * SEC;
        while !rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("round {round}: no ready"))
            .contains("ready")
        {}
        stdin.write_all(b"\x03").unwrap();
        stdin.flush().unwrap();
        let line = loop {
            let l = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("round {round}: no count"));
            if let Some(i) = l.find("sigints=") {
                break l[i..].trim().to_owned();
            }
        };
        assert_eq!(line, "sigints=1", "round {round}");
        drop(stdin);
        g.wait_timeout(5 * SEC).expect("script exits");
    }
}

/// A run dir that cannot be created (here: under a regular file; in a container, a
/// read-only root or a HOME it may not write) warns once; CMD runs and its status is the
/// exit status; the record appears once the dir can be made, without a second warning.
#[test]
fn an_unusable_run_dir_warns_once_runs_cmd_and_is_retried() {
    let sb = Sandbox::new();
    let blocker = sb.path("blocker");
    std::fs::write(&blocker, b"not a dir").unwrap();
    let run = blocker.join("run");
    let mut c = sb.cmd();
    c.args(["run", "--agent", "late", "--interval", "0.1", "--run-dir"])
        .arg(&run)
        .args(["--", "sh", "-c", "echo started; sleep 1; exit 5"]);
    let mut w = sb.spawn_logged(&mut c, "late");
    std::thread::sleep(Duration::from_millis(400));
    assert!(pid_running(w.pid()));
    assert_eq!(w.count("warning"), 1, "{}", w.stderr());
    // The volume arrives.
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    let v = wait_record(&run.join("late.hb"), 2 * SEC, |v| status_is(v, "alive"));
    assert_eq!(v["watcher_pid"], w.pid());
    let st = w.exits(5 * SEC);
    assert_eq!(st.code(), Some(5));
    let v = read_record(&run.join("late.hb")).unwrap();
    assert_eq!(v["status"], "dead");
    assert_eq!(v["exit"]["code"], 5);
    assert_eq!(w.count("warning"), 1, "{}", w.stderr());

    // Never usable: CMD's status all the same, one warning, nothing left.
    let file = sb.path("file");
    std::fs::write(&file, b"x").unwrap();
    let mut c = sb.cmd();
    c.args(["run", "--agent", "never", "--interval", "0.05", "--run-dir"])
        .arg(file.join("run"))
        .args(["--", "sh", "-c", "sleep 0.3; exit 4"]);
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(out.code(), Some(4), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one warning: {}", out.stderr);
}

/// A run dir anyone could plant records in (world-writable, as a 0777 volume or a 1777
/// tmpfs) is never written: `run` says so and runs CMD without records; `watch` refuses.
#[test]
fn an_untrusted_run_dir_runs_cmd_without_records_and_watch_refuses_it() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    for mode in [0o777, 0o1777] {
        let run = sb.path(&format!("open{mode:o}"));
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut c = sb.cmd();
        c.args(["run", "--agent", "a", "--interval", "0.05", "--run-dir"])
            .arg(&run)
            .args(["--", "sh", "-c", "sleep 0.3; exit 6"]);
        let out = run_with_deadline(c, 10 * SEC);
        assert_eq!(out.code(), Some(6), "{}", out.stderr);
        assert!(out.stderr.contains("without records"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert_eq!(dir_names(&run), Vec::<String>::new(), "nothing written");

        let target = spawn_sleep();
        let mut c = sb.cmd();
        c.args(["watch", "--pid", &target.pid().to_string(), "--agent", "a"])
            .arg("--run-dir")
            .arg(&run);
        let out = run_with_deadline(c, 10 * SEC);
        assert_eq!(out.code(), Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("writable by group or others"),
            "{}",
            out.stderr
        );
    }
}

/// A CMD that cannot start leaves no run dir and no lock file behind (issue 21).
#[test]
fn a_failed_start_leaves_nothing() {
    let sb = Sandbox::new();
    let out = run_with_deadline(
        run_cmd(&sb, "k", &[], &["/nonexistent/nosuchcmd"]),
        10 * SEC,
    );
    assert_eq!(out.code(), Some(127), "{}", out.stderr);
    assert!(!sb.run_dir().exists(), "the run dir was created");
    // In an existing run dir: no lock, no record.
    sb.private_run_dir();
    let out = run_with_deadline(run_cmd(&sb, "k", &[], &["nosuchcmd-pidbeat"]), 10 * SEC);
    assert_eq!(out.code(), Some(127), "{}", out.stderr);
    assert_eq!(dir_names(&sb.run_dir()), Vec::<String>::new());
}

/// A full disk never delays the exit: the dead record is tried once more, then `run` exits
/// with CMD's status.
#[test]
fn a_full_run_dir_does_not_delay_the_exit() {
    let sb = Sandbox::new();
    let ns = match MountNs::new(&sb, "64k") {
        Ok(ns) => ns,
        Err(e) => {
            return skip(&e);
        }
    };
    let run = ns.mnt.join("run");
    let hrun = ns.host(&run);
    let flag = sb.path("go");
    let mut c = ns.pidbeat(&sb);
    c.args(["run", "--agent", "full", "--interval", "30", "--run-dir"])
        .arg(&run)
        .args([
            "--",
            "sh",
            "-c",
            &format!(
                "while [ ! -e '{}' ]; do sleep 0.01; done; exit 9",
                flag.display()
            ),
        ]);
    let mut w = sb.spawn_logged(&mut c, "full");
    sb_wait(&hrun.join("full.hb"));
    // Fill the tmpfs to the last byte.
    let o = ns.sh(&format!(
        "dd if=/dev/zero of='{}/fill' bs=4k 2>/dev/null; dd if=/dev/zero of='{}/fill2' bs=1 2>/dev/null; true",
        ns.mnt.display(),
        ns.mnt.display()
    ));
    assert!(o.status.success(), "{}", o.stderr);
    let start = Instant::now();
    std::fs::write(&flag, b"").unwrap();
    let st = w.exits(5 * SEC);
    let took = start.elapsed();
    assert_eq!(st.code(), Some(9), "{}", w.stderr());
    assert!(
        took < Duration::from_millis(500),
        "run took {took:?} to exit on a full disk (the child polls every 10 ms)"
    );
    assert!(w.stderr().contains("not recorded"), "{}", w.stderr());
    let ns_pid = ns.pid();
    drop(ns);
    sb.assert_clean(&[ns_pid]);
}

fn sb_wait(record: &std::path::Path) {
    wait_record(record, 5 * SEC, |v| status_is(v, "alive"));
}

/// A private memory cgroup (v1, or v2 with the memory controller) under the test's own,
/// removed on drop. `None` where neither can be made here.
struct MemCgroup {
    dir: std::path::PathBuf,
}

impl MemCgroup {
    fn new(name: &str, limit: u64) -> Result<MemCgroup, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let v1 = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|c| c == "memory").then(|| p.to_owned())
        });
        let (dir, limit_file) = match v1 {
            Some(p) => (
                std::path::PathBuf::from(format!("/sys/fs/cgroup/memory{p}")).join(name),
                "memory.limit_in_bytes",
            ),
            None => {
                let p = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no cgroup")?;
                (
                    std::path::PathBuf::from(format!("/sys/fs/cgroup{p}")).join(name),
                    "memory.max",
                )
            }
        };
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = MemCgroup { dir };
        std::fs::write(cg.dir.join(limit_file), limit.to_string())
            .map_err(|e| format!("{limit_file}: {e}"))?;
        // No swap to escape to (v1 with swap accounting, v2).
        let _ = std::fs::write(
            cg.dir.join("memory.memsw.limit_in_bytes"),
            limit.to_string(),
        );
        let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        Ok(cg)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Empty by now (every test process has been reaped); rmdir needs that.
        let _ = poll_for(2 * SEC, Duration::from_millis(10), || {
            std::fs::remove_dir(&self.dir).ok()
        });
    }
}

/// A memory cgroup's OOM kill is named: `"oom": true` in `exit`, `signal 9 (KILL, oom)` in
/// `ps`, `pidbeat_agent_exit_oom 1` in `--prom`; a plain SIGKILL in the same cgroup is not.
#[test]
fn an_oom_kill_is_named_and_a_plain_sigkill_is_not() {
    let sb = Sandbox::new();
    let cg = match MemCgroup::new(&format!("pidbeat-test-{}", std::process::id()), 32 << 20) {
        Ok(cg) => cg,
        Err(e) => {
            return skip(&e);
        }
    };
    let procs = cg.dir.join("cgroup.procs");
    for (agent, cmd) in [
        // tail keeps a line with no end in memory: it grows until the limit.
        ("hog", "exec tail /dev/zero"),
        ("shot", "kill -9 $$"),
    ] {
        let script = format!(
            "echo $$ > '{}' && exec '{BIN}' run --agent {agent} --run-dir '{}' -- sh -c '{cmd}'",
            procs.display(),
            sb.run_dir().display()
        );
        let out = run_with_deadline(
            {
                let mut c = sb.cmd_of("sh");
                c.args(["-c", &script]);
                c
            },
            30 * SEC,
        );
        assert_eq!(out.code(), Some(137), "{agent}: {}", out.stderr);
    }
    let hog = read_record(&sb.record_path("hog")).unwrap();
    assert_eq!(
        hog["exit"],
        serde_json::json!({"code":null,"signal":9,"core":false,"oom":true}),
        "{hog}"
    );
    let shot = read_record(&sb.record_path("shot")).unwrap();
    assert_eq!(
        shot["exit"],
        serde_json::json!({"code":null,"signal":9,"core":false}),
        "{shot}"
    );
    let ps = run_with_deadline(sb.ps_cmd(&[]), 10 * SEC);
    let line = |a: &str| {
        ps.stdout
            .lines()
            .find(|l| l.starts_with(a))
            .unwrap_or_else(|| panic!("no {a} in {}", ps.stdout))
            .to_owned()
    };
    assert!(
        line("hog").contains("signal 9 (KILL, oom)"),
        "{}",
        ps.stdout
    );
    assert!(line("shot").contains("signal 9 (KILL)"), "{}", ps.stdout);
    let prom = run_with_deadline(sb.ps_cmd(&["--prom"]), 10 * SEC);
    assert!(
        prom.stdout
            .contains("pidbeat_agent_exit_oom{agent=\"hog\"} 1"),
        "{}",
        prom.stdout
    );
    assert!(
        prom.stdout
            .contains("pidbeat_agent_exit_oom{agent=\"shot\"} 0"),
        "{}",
        prom.stdout
    );
    let json = run_with_deadline(sb.ps_cmd(&["--json"]), 10 * SEC);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let hog_entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["agent"] == "hog")
        .unwrap();
    assert_eq!(hog_entry["exit"]["oom"], true, "{hog_entry}");
    for (schema, doc) in [
        ("record.schema.json", &hog),
        ("ps-entry.schema.json", hog_entry),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(schema);
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let v = jsonschema::options()
            .with_base_uri(format!("file://{}", path.display()))
            .build(&s)
            .unwrap();
        let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{schema}: {doc}\n{errors:#?}");
    }
    drop(cg);
}

/// `prune` removes lock files that have no record and no holder (issue 21), and leaves one
/// that a watcher holds.
#[test]
fn prune_removes_ownerless_lock_files() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    std::fs::write(run.join(".orphan.lock"), "12345 678\n").unwrap();
    let held = std::fs::File::create(run.join(".held.lock")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let mut c = sb.cmd();
    c.args(["prune", "--dry-run", "--run-dir"]).arg(&run);
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(
        out.stdout, "would forget orphan (a lock file with no record)\n",
        "{}",
        out.stderr
    );
    assert_eq!(dir_names(&run), [".held.lock", ".orphan.lock"]);
    let mut c = sb.cmd();
    c.args(["prune", "--run-dir"]).arg(&run);
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "forgot orphan (a lock file with no record)\n");
    assert_eq!(dir_names(&run), [".held.lock"]);
}

/// `watch` too unblocks the signals it handles: a parent that blocked SIGTERM does not make it
/// deaf (it records `unwatched` and exits).
#[test]
fn watch_unblocks_sigterm_its_parent_blocked() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut c = sb.watch_cmd(target.pid(), "w");
    set_signal_state(&mut c, bit(libc::SIGTERM) | bit(libc::SIGINT), 0);
    let mut g = Guard::spawn(c.stdin(Stdio::null()).stdout(Stdio::null()));
    sb.wait_status("w", "alive", 5 * SEC);
    send_signal(g.pid(), Signal::TERM);
    sb.wait_status("w", "unwatched", 5 * SEC);
    let st = g.wait_timeout(5 * SEC).expect("watch exits on SIGTERM");
    assert_eq!(st.code(), Some(0));
}
