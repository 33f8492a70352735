//! Bad input: usage errors that name the problem, a thread ID for a PID, hostile records.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::common::*;

#[test]
fn bad_input_is_a_usage_error_naming_the_problem() {
    let sb = Sandbox::new();
    let t = spawn_sleep();
    let pid = t.pid().to_string();
    let file = sb.path("a-file");
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
        let o = run_with_deadline(c, 5 * SEC);
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
    let o = run_with_deadline(sb.watch_cmd(gone, "ok"), 5 * SEC);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains(&gone.to_string()), "{}", o.stderr);
    drop(t);
    sb.assert_clean(&[]);
}

/// Needs `pidbeat ps`. Hostile record files: `corrupt`, quickly, without reading them whole.
#[test]
fn ps_corrupt_records_quickly() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
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
    let mk = Command::new("mkfifo").arg(run.join("fifo.hb")).finish();
    assert!(mk.status.success(), "mkfifo: {}", mk.stderr);
    std::os::unix::fs::symlink("/dev/zero", run.join("zero.hb")).unwrap();
    std::fs::create_dir(run.join("dir.hb")).unwrap();

    let o = run_with_deadline(sb.ps_cmd(&["--json"]), 10 * SEC);
    assert!(o.status.code().is_some(), "ps crashed: {}", o.status);
    assert!(o.status.success(), "ps failed ({}): {}", o.status, o.stderr);
    assert!(
        o.elapsed < Duration::from_millis(500),
        "ps took {:?}",
        o.elapsed
    );
    let m = parse_ps(&o.stdout);
    assert_eq!(m["good"]["state"], "dead", "{m:?}");
    // The files that are no records are listed too, as corrupt: a `<agent>.hb` name is an
    // agent, whatever stands there.
    for a in corrupt.into_iter().chain(["fifo", "zero", "dir"]) {
        let o = m
            .get(a)
            .unwrap_or_else(|| panic!("ps does not list {a}: {m:?}"));
        assert_eq!(o["state"], "corrupt", "{a}: {o}");
    }
    // Alone, and in the other formats, the huge one is quick too.
    for fmt in [&["--json"][..], &[], &["--prom"]] {
        let mut c = sb.ps_cmd(fmt);
        c.args(["huge", "deep"]);
        let o = run_with_deadline(c, 10 * SEC);
        assert!(o.status.success(), "ps {fmt:?}: {} {}", o.status, o.stderr);
        assert!(
            o.elapsed < Duration::from_millis(500),
            "ps {fmt:?} took {:?}",
            o.elapsed
        );
    }
    sb.assert_clean(&[]);
}

/// A thread ID is not a process. Every backend must refuse it (exit 1), naming the process it
/// belongs to: pidfd_open fails with ENOENT, which must not send the user to `--backend poll`,
/// and a poll watcher that accepted it would report `dead` when that one thread ends while the
/// process lives on: a false `dead`.
#[test]
fn thread_id_is_refused_not_watched() {
    if !python3() {
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
    for (_, a, backend) in &started {
        let rec = read_record(&sb.record_path(a));
        problems.push(format!(
            "{backend}: watched thread {tid} of process {pid}; process alive={}, record: {rec:?}",
            pid_running(pid)
        ));
    }
    p.kill();
    drop(started);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    sb.assert_clean(&[pid]);
}
