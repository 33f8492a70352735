//! `pidbeat run -- CMD`: the child's exact status, passed through; PID 1 duties.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn run(sb: &Sandbox, agent: &str, cmd: &[&str]) -> Out {
    sb.run_cmd(agent, &[], cmd).finish()
}

#[test]
fn exit_codes_pass_through_and_are_recorded_exactly() {
    let sb = Sandbox::new();
    for (agent, script, want_code, want_exit) in [
        (
            "zero",
            "exit 0",
            0,
            serde_json::json!({"code":0,"signal":null,"core":false}),
        ),
        (
            "three",
            "exit 3",
            3,
            serde_json::json!({"code":3,"signal":null,"core":false}),
        ),
        (
            "killed",
            "kill -9 $$",
            137,
            serde_json::json!({"code":null,"signal":9,"core":false}),
        ),
        (
            "termed",
            "kill -15 $$",
            143,
            serde_json::json!({"code":null,"signal":15,"core":false}),
        ),
    ] {
        let out = run(&sb, agent, &["sh", "-c", script]);
        assert_eq!(out.status.code(), Some(want_code), "{agent}: {out:?}");
        let v = read_record(&sb.record_path(agent)).expect("record");
        assert_eq!(v["status"], "dead", "{agent}");
        assert_eq!(v["exit"], want_exit, "{agent}");
        assert!(v["died_ms"].is_u64());
    }
}

#[test]
fn the_child_is_watched_while_it_runs() {
    let sb = Sandbox::new();
    let mut r = Guard::spawn(
        sb.run_cmd("live", &["--interval", "0.05"], &["sleep", "1000"])
            .stdout(Stdio::null()),
    );
    let v = wait_record(&sb.record_path("live"), Duration::from_secs(5), |v| {
        v["seq"].as_u64() >= Some(3)
    });
    assert_eq!(v["status"], "alive");
    assert_eq!(v["watcher_pid"], r.pid());
    let child = v["pid"].as_i64().unwrap() as i32;
    assert!(pid_running(child));
    // SIGTERM is forwarded, and run reports the child's death by it.
    send_signal(r.pid(), Signal::TERM);
    let st = r.wait_timeout(Duration::from_secs(5)).expect("run exits");
    assert_eq!(st.code(), Some(143));
    let v = read_record(&sb.record_path("live")).unwrap();
    assert_eq!(v["status"], "dead");
    assert_eq!(v["exit"]["signal"], 15);
    assert!(!pid_running(child));
}

#[test]
fn missing_command_is_127() {
    let sb = Sandbox::new();
    let out = run(&sb, "nope", &["/nonexistent/binary"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stderr.contains("cannot run"));
}

#[test]
fn as_pid_1_it_reaps_orphans() {
    let sb = Sandbox::new();
    if !unshare_pid_ns_works(&[]) {
        return skip("unshare --pid --fork --mount-proc does not work here");
    }
    // The subshell orphans `sleep 0.1` to PID 1 (pidbeat). Once it has exited, count zombies
    // in the namespace: the exit status is that count, so 0 means pidbeat reaped it.
    let script = r#"
        (sleep 0.1 &)
        sleep 0.6
        n=0
        for s in /proc/[0-9]*/stat; do
            read -r line < "$s" 2>/dev/null || continue
            case "${line##*) }" in Z*) n=$((n+1));; esac
        done
        echo "pid1=$(cat /proc/1/comm) zombies=$n"
        exit "$n"
    "#;
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            BIN,
            "run",
            "--agent",
            "init",
            "--run-dir",
        ])
        .arg(sb.run_dir())
        .args(["--", "bash", "-c", script])
        .env("HOME", sb.home())
        .finish();
    let stdout = &out.stdout;
    assert!(stdout.contains("pid1=pidbeat"), "{stdout} {out:?}");
    assert_eq!(out.status.code(), Some(0), "zombies left: {stdout}");
    let v = read_record(&sb.record_path("init")).unwrap();
    assert_eq!(v["status"], "dead");
    assert_eq!(v["exit"]["code"], 0);
    assert_eq!(v["watcher_pid"], 1);
}

/// `run` whose lock is taken over (its lock file and record deleted, another watcher started
/// for the agent) stops writing but still supervises CMD and exits with its status.
#[test]
fn superseded_run_still_returns_its_childs_status() {
    let sb = Sandbox::new();
    let mut r = Guard::spawn(
        sb.run_cmd(
            "over",
            &["--interval", "30"],
            &["sh", "-c", "sleep 1.5; exit 7"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    sb.wait_status("over", "alive", Duration::from_secs(5));
    std::fs::remove_file(sb.run_dir().join(".over.lock")).unwrap();
    std::fs::remove_file(sb.record_path("over")).unwrap();
    let target = spawn_sleep();
    let newcomer = sb.watch_alive(target.pid(), "over", &[]);
    let st = r
        .wait_timeout(Duration::from_secs(10))
        .expect("run exits once CMD has");
    assert_eq!(st.code(), Some(7), "the child's status");
    let mut err = String::new();
    std::io::Read::read_to_string(r.child().stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("stops writing it"), "{err}");
    let rec = read_record(&sb.record_path("over")).unwrap();
    assert_eq!(rec["watcher_pid"], newcomer.pid(), "{rec}");
    assert_eq!(rec["status"], "alive", "{rec}");
}
