//! The shell sidecar (`hb-sidecar.sh`) on its own, against a child of the test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::common::tmux::TmuxSandbox;
use crate::common::*;

fn sidecar_cmd(h: &TmuxSandbox, args: &[&str]) -> Command {
    // The sandbox mark in its environment reaches the sidecar's `sleep` children too: the
    // sandbox's sweep and leak check find them.
    let mut c = h.scrubbed(SIDECAR);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn sidecar_beats_then_writes_dead() {
    let h = TmuxSandbox::new();
    let mut target = spawn_sleep();
    let tpid = target.pid();
    let run_dir = h.run_dir();
    let mut side = Guard::spawn(&mut sidecar_cmd(
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
    ));
    let hb = h.record_path("side");
    let v = wait_record(&hb, Duration::from_secs(5), |v| {
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
    let v = wait_record(&hb, Duration::from_secs(2), |v| status_is(v, "dead"));
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
    let h = TmuxSandbox::new();
    let target = spawn_sleep();
    let tpid = target.pid();
    let run_dir = h.run_dir();
    let mut c = sidecar_cmd(&h, &["--pid", &tpid.to_string(), "--agent", "side"]);
    // run dir and interval from the environment this time
    c.env("MOSAIC_HEARTBEAT_RUN_DIR", &run_dir)
        .env("MOSAIC_HEARTBEAT_INTERVAL", "30");
    let mut side = Guard::spawn(&mut c);
    let hb = h.record_path("side");
    let v = wait_record(&hb, Duration::from_secs(5), |v| status_is(v, "alive"));
    assert_eq!(v["interval"], 30.0);
    let text = std::fs::read_to_string(h.record_path("side")).unwrap();
    assert!(
        text.contains("\"interval\":30.0,"),
        "interval is a JSON float: {text}"
    );
    std::thread::sleep(Duration::from_millis(100)); // now inside its 30 s sleep
    let t = Instant::now();
    send_signal(side.pid(), Signal::TERM);
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
    let h = TmuxSandbox::new();
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
        let out = sidecar_cmd(&h, &args).finish();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", &out.stderr);
    }
    assert!(!run_dir.exists(), "a usage error writes nothing");
    h.finish();
}

/// A free lock file is an earlier pidbeat watcher's, not the sidecar's (it takes none): an
/// agent that moved from pidbeat to the sidecar is judged by the sidecar's own identity and
/// stays `alive`, and `prune` leaves it alone.
#[test]
fn sidecar_after_a_pidbeat_watcher_is_alive_not_lost() {
    let h = TmuxSandbox::new();
    let first = spawn_sleep();
    let mut w = h.sb.watch_alive(first.pid(), "moved", &[]);
    signal(w.pid(), rustix::process::Signal::TERM);
    assert!(
        w.wait_timeout(Duration::from_secs(5)).is_some(),
        "watcher stops on TERM"
    );
    assert!(
        h.run_dir().join(".moved.lock").exists(),
        "the lock file stays"
    );

    let mut target = spawn_sleep();
    let run_dir = h.run_dir();
    let mut side = Guard::spawn(&mut sidecar_cmd(
        &h,
        &[
            "--pid",
            &target.pid().to_string(),
            "--agent",
            "moved",
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--interval",
            "0.2",
        ],
    ));
    wait_record(&h.record_path("moved"), Duration::from_secs(5), |v| {
        v["backend"] == "shell" && v["pid"] == target.pid()
    });
    let all = h.sb.ps_json(&[]);
    assert_eq!(state_of(&all, "moved"), "alive", "{all:?}");
    let o =
        h.sb.pidbeat(&["prune", "--run-dir", run_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        h.record_path("moved").exists(),
        "prune removed a live agent"
    );
    target.kill();
    side.wait_timeout(Duration::from_secs(2))
        .expect("sidecar exits after dead");
    h.finish();
}
