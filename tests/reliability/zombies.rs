//! Zombies, dying leaders, exec and stopped targets: odd but true process states.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::common::*;

#[test]
fn zombie_target_is_dead_and_cannot_be_watched() {
    become_subreaper();
    let sb = Sandbox::new();
    let (mut parent, c) = zombie_family(&sb.path("zpid"));
    let _c = Guard::adopt(c);
    let mut wf = watch(&sb, c, "zf", "pidfd");
    let mut wp = watch(&sb, c, "zp", "poll");
    wait_all(&sb, &["zf", "zp"], "alive", 3 * SEC);

    send_signal(c, Signal::KILL);
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
        let o = run_with_deadline(cmd, 5 * SEC);
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
    sb.assert_clean(&[parent.pid(), c]);
}

/// The main thread exits (pthread_exit) while another thread runs on: /proc shows the leader
/// as `Z`, yet the process is alive. Neither backend may call it dead, and `watch` must not
/// refuse it as a zombie.
#[test]
fn leader_exited_but_threads_run_is_alive() {
    if !python3() {
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
    let m = sb.ps_json(&["tf", "tp"]);
    for a in ["tf", "tp"] {
        assert_eq!(m[a]["state"], "alive", "ps: live thread group: {m:?}");
    }
    t.kill();
    wait_all(&sb, &["tf", "tp"], "dead", SEC);
    assert!(wf.exits(3 * SEC).success());
    assert!(wp.exits(3 * SEC).success());
    sb.assert_clean(&[pid]);
}

/// exec is not death: neither from the main thread (bash → sleep) nor from a non-leader
/// thread (the kernel hands that thread the leader's PID).
#[test]
fn exec_is_not_death() {
    let sb = Sandbox::new();
    let mut targets: Vec<(Guard, i32, std::process::ChildStdin, &str)> = Vec::new();
    let mut g = Guard::spawn(
        Command::new("bash")
            .args(["-c", "read x; exec sleep 1000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    );
    let stdin = g.child().stdin.take().unwrap();
    let p = g.pid();
    targets.push((g, p, stdin, "main"));
    if python3() {
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
    let m = sb.ps_json(&[]);
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
    sb.assert_clean(&pids);
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
    sb.assert_clean(&[pid]);
}
