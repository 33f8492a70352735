//! `pidbeat watch` end to end: real targets, real pidfds, temp run dirs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Waits (up to 5 s) until `agent`'s record has status `status`.
fn wait_status(sb: &Sandbox, agent: &str, status: &str) -> Value {
    sb.wait_status(agent, status, Duration::from_secs(5))
}

/// Waits (up to 5 s) for `agent`'s `dead` record, one that carries the exit status.
fn wait_dead_with_exit(sb: &Sandbox, agent: &str) -> Value {
    wait_record(&sb.record_path(agent), Duration::from_secs(5), |v| {
        status_is(v, "dead") && !v["exit"].is_null()
    })
}

#[test]
fn first_alive_record_is_immediate_and_complete() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let t0 = Instant::now();
    let mut w = sb.watch(target.pid(), "a", &[]);
    let rec = wait_status(&sb, "a", "alive");
    let took = t0.elapsed();
    eprintln!("first alive record after {took:?}");
    assert!(
        took < Duration::from_millis(100),
        "first record took {took:?}"
    );
    let text = std::fs::read_to_string(sb.record_path("a")).unwrap();
    assert_contract_keys_in_order(&text);
    assert_eq!(rec["pid"], target.pid());
    assert_eq!(rec["seq"], 1);
    assert_eq!(rec["interval"], 15.0);
    assert_eq!(rec["backend"], "pidfd");
    assert_eq!(rec["watcher_pid"], w.pid());
    assert_eq!(rec["start_time"], start_time(target.pid()).unwrap());
    assert!(rec["exit"].is_null() && rec["died_ms"].is_null());
    let ts_ms = rec["ts_ms"].as_u64().unwrap();
    assert_eq!(rec["ts"].as_u64().unwrap(), ts_ms / 1000);
    // Compact JSON, one line.
    assert!(
        !text.contains(' ') && text.matches('\n').count() == 1,
        "{text}"
    );
    // Nothing but the record, the lock and the sd_notify socket in the run dir, and it is private.
    assert_eq!(dir_names(&sb.run_dir()), [".a.lock", ".a.notify", "a.hb"]);
    assert_eq!(mode(&sb.run_dir()) & 0o777, 0o700);
    w.kill();
    sb.assert_home_untouched();
}

#[test]
fn beats_count_up_on_schedule() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "b", &["--interval", "0.1"]);
    let path = sb.record_path("b");
    let first = wait_record(&path, Duration::from_secs(5), |v| v["seq"] == 1);
    let mut last = 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while last < 8 {
        assert!(Instant::now() < deadline, "stuck at seq {last}");
        let v = read_record(&path).unwrap();
        let seq = v["seq"].as_u64().unwrap();
        assert!(seq >= last, "seq went back: {seq} < {last}");
        assert_eq!(v["status"], "alive");
        last = seq;
        std::thread::sleep(Duration::from_millis(10));
    }
    let v = wait_record(&path, Duration::from_secs(5), |v| v["seq"] == 8);
    let span = v["ts_ms"].as_u64().unwrap() - first["ts_ms"].as_u64().unwrap();
    // Seven periods of 100 ms: the timerfd keeps the grid, so no drift piles up.
    assert!((650..=900).contains(&span), "7 beats took {span} ms");
    assert_eq!(v["interval"], 0.1);
    w.kill();
}

#[test]
fn sigkill_of_a_non_child_is_dead_with_signal_9() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "k", &["--interval", "15"]);
    wait_status(&sb, "k", "alive");
    let killed_ms = now_ms();
    target.kill(); // SIGKILL and reap: we are the parent, the watcher is not.
    let v = wait_dead_with_exit(&sb, "k");
    assert_eq!(v["exit"]["signal"], 9);
    assert!(v["exit"]["code"].is_null());
    assert_eq!(v["exit"]["core"], false);
    let died = v["died_ms"].as_u64().unwrap();
    assert!(
        died >= killed_ms && died - killed_ms < 1000,
        "died_ms {died} vs {killed_ms}"
    );
    let st = w
        .wait_timeout(Duration::from_secs(5))
        .expect("watcher exits after death");
    assert!(st.success(), "watcher exit {st:?}");
}

#[test]
fn exit_code_of_a_non_child_is_recorded() {
    let sb = Sandbox::new();
    let mut target = spawn_target(&["sh", "-c", "sleep 0.4; exit 7"]);
    let mut w = sb.watch(target.pid(), "c", &[]);
    wait_status(&sb, "c", "alive");
    let st = target.wait_timeout(Duration::from_secs(5)).unwrap(); // reaps
    assert_eq!(st.code(), Some(7));
    let v = wait_dead_with_exit(&sb, "c");
    assert_eq!(v["exit"]["code"], 7);
    assert!(v["exit"]["signal"].is_null());
    assert!(w.wait_timeout(Duration::from_secs(5)).unwrap().success());
}

#[test]
fn sigterm_writes_unwatched_and_leaves_the_target_alone() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "u", &["--interval", "0.05"]);
    wait_record(&sb.record_path("u"), Duration::from_secs(5), |v| {
        v["seq"] == 2
    });
    send_signal(w.pid(), Signal::TERM);
    let st = w.wait_timeout(Duration::from_secs(5)).unwrap();
    assert!(st.success(), "{st:?}");
    let v = read_record(&sb.record_path("u")).unwrap();
    assert_eq!(v["status"], "unwatched");
    assert!(pid_running(target.pid()));
}

#[test]
fn sigint_also_writes_unwatched() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "i", &[]);
    wait_status(&sb, "i", "alive");
    send_signal(w.pid(), Signal::INT);
    assert!(w.wait_timeout(Duration::from_secs(5)).unwrap().success());
    assert_eq!(
        read_record(&sb.record_path("i")).unwrap()["status"],
        "unwatched"
    );
}

#[test]
fn second_watcher_for_an_agent_is_refused_naming_the_holder() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let w = sb.watch(target.pid(), "dup", &[]);
    wait_status(&sb, "dup", "alive");
    let out = sb.watch_cmd(target.pid(), "dup").finish();
    assert_eq!(out.status.code(), Some(1));
    let err = &out.stderr;
    assert!(err.contains(&format!("pid {}", w.pid())), "{err}");
    // The first watcher is untouched.
    assert_eq!(
        read_record(&sb.record_path("dup")).unwrap()["watcher_pid"],
        w.pid()
    );
}

#[test]
fn refuses_missing_own_and_zombie_pids() {
    let sb = Sandbox::new();
    // A PID that existed and is gone.
    let gone_pid = exited_pid();
    // A zombie: the exec'd `sleep 1000` never reaps its background child.
    let (_parent, zpid) = spawn_zombie_parent("sleep 0.1", &sb.path("zpid"));
    wait_gone(zpid, Duration::from_secs(5));
    for backend in ["pidfd", "poll"] {
        for (pid, what) in [(gone_pid, "no process"), (zpid, "already exited")] {
            let out = sb.watch_cmd(pid, "r").args(["--backend", backend]).finish();
            let err = &out.stderr;
            assert_eq!(out.status.code(), Some(1), "{backend} {pid}: {err}");
            assert!(err.contains(what), "{backend}: {err}");
        }
    }
    // Its own PID: `exec` makes the shell's $$ pidbeat's PID.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            r#"exec "$0" watch --pid $$ --agent r --run-dir "$1""#,
            BIN,
        ])
        .arg(sb.run_dir())
        .env("HOME", sb.home())
        .finish();
    let err = &out.stderr;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("own PID"), "{err}");
    assert!(read_record(&sb.record_path("r")).is_none());
}

#[test]
fn poll_backend_sees_death_fast_and_zombies_as_dead() {
    let sb = Sandbox::new();
    // Death of a reaped target.
    let mut target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "p", &["--backend", "poll"]);
    let v = wait_status(&sb, "p", "alive");
    assert_eq!(v["backend"], "poll");
    let t0 = Instant::now();
    target.kill();
    wait_status(&sb, "p", "dead");
    let took = t0.elapsed();
    eprintln!("poll backend: death visible after {took:?}");
    assert!(
        took <= Duration::from_millis(250),
        "poll death took {took:?}"
    );
    assert!(w.wait_timeout(Duration::from_secs(5)).unwrap().success());

    // A zombie (exited, never reaped by its parent) is dead too.
    let (_parent, zpid) = spawn_zombie_parent("sleep 0.5", &sb.path("zpid"));
    let mut wz = sb.watch(zpid, "z", &["--backend", "poll"]);
    wait_status(&sb, "z", "alive");
    wait_status(&sb, "z", "dead");
    // Read from the zombie, which its parent never reaps (no kernel would report it).
    let v = wait_record(&sb.record_path("z"), Duration::from_secs(3), |v| {
        !v["exit"].is_null()
    });
    assert_eq!(v["exit"]["code"], 0, "{v}");
    assert!(
        std::fs::read_to_string(format!("/proc/{zpid}/stat"))
            .unwrap()
            .contains(") Z")
    );
    assert!(wz.wait_timeout(Duration::from_secs(5)).unwrap().success());
}

#[test]
fn pidfd_backend_sees_a_zombie_as_dead() {
    let sb = Sandbox::new();
    let (_parent, zpid) = spawn_zombie_parent("(sleep 0.4; exit 5)", &sb.path("zpid"));
    let mut w = sb.watch(zpid, "zp", &[]);
    wait_status(&sb, "zp", "alive");
    wait_status(&sb, "zp", "dead");
    // Nobody reaps it, so the kernel cannot report it (PIDFD_INFO_EXIT): the zombie can.
    let v = wait_record(&sb.record_path("zp"), Duration::from_secs(3), |v| {
        !v["exit"].is_null()
    });
    assert_eq!(v["exit"]["code"], 5, "{v}");
    assert_eq!(v["status"], "dead", "{v}");
    assert!(w.wait_timeout(Duration::from_secs(5)).unwrap().success());
}

#[test]
fn a_command_name_that_is_not_utf8_is_still_alive() {
    let sb = Sandbox::new();
    let fifo = sb.path("block");
    // bash renames itself (comm "a\xff") and blocks on a FIFO it holds open read-write.
    let target = spawn_target(&[
        "bash",
        "-c",
        r#"printf 'a\xff' > /proc/self/comm; mkfifo "$0"; exec 3<>"$0"; read -r -u 3 _"#,
        fifo.to_str().unwrap(),
    ]);
    let stat = format!("/proc/{}/stat", target.pid());
    wait_until(Duration::from_secs(5), "comm renamed", || {
        std::fs::read(&stat).is_ok_and(|b| b.windows(4).any(|w| w == b"(a\xff)"))
    });
    for backend in ["poll", "pidfd"] {
        let agent = format!("u8-{backend}");
        let mut w = sb.watch(
            target.pid(),
            &agent,
            &["--backend", backend, "--interval", "0.05"],
        );
        let v = wait_record(&sb.record_path(&agent), Duration::from_secs(5), |v| {
            v["seq"].as_u64() >= Some(6)
        });
        assert_eq!(v["status"], "alive", "{backend}: {v}");
        w.kill();
    }
}

#[test]
fn sigterm_with_a_dead_target_records_dead_not_unwatched() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "race", &[]);
    wait_record(&sb.record_path("race"), Duration::from_secs(5), |v| {
        status_is(v, "alive")
    });
    // The death and the SIGTERM reach the watcher in one batch of events.
    send_signal(w.pid(), Signal::STOP); // SIGSTOP
    wait_stopped(w.pid(), Duration::from_secs(5));
    target.kill();
    send_signal(w.pid(), Signal::TERM);
    send_signal(w.pid(), Signal::CONT); // SIGCONT
    let st = w
        .wait_timeout(Duration::from_secs(5))
        .expect("watcher exits");
    assert!(st.success(), "{st:?}");
    let v = read_record(&sb.record_path("race")).unwrap();
    assert_eq!(
        v["status"], "dead",
        "a dead target must never be recorded unwatched: {v}"
    );

    // The poll backend learns of a death only at its next check (100 ms): a SIGTERM right
    // after the death must still look before writing `unwatched`.
    let mut target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "race-poll", &["--backend", "poll"]);
    wait_record(&sb.record_path("race-poll"), Duration::from_secs(5), |v| {
        status_is(v, "alive")
    });
    target.kill();
    send_signal(w.pid(), Signal::TERM);
    let st = w
        .wait_timeout(Duration::from_secs(5))
        .expect("watcher exits");
    assert!(st.success(), "{st:?}");
    let v = read_record(&sb.record_path("race-poll")).unwrap();
    assert_eq!(v["status"], "dead", "poll: {v}");
}

#[test]
fn a_reader_probing_the_lock_does_not_refuse_a_new_watcher() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.run_dir()).unwrap();
    std::fs::set_permissions(
        sb.run_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // What `ps` and `wait` do, held long enough to overlap the watcher's start.
    let lock = sb.run_dir().join(".probe.lock");
    let mut reader = spawn_target(&["flock", "-s", lock.to_str().unwrap(), "sleep", "0.05"]);
    wait_until(Duration::from_secs(5), "reader holds the lock", || {
        lock.exists()
    });
    let target = spawn_sleep();
    let mut w = sb.watch(target.pid(), "probe", &[]);
    wait_record(&sb.record_path("probe"), Duration::from_secs(5), |v| {
        status_is(v, "alive")
    });
    assert!(w.child().try_wait().unwrap().is_none(), "watcher refused");
    reader.wait_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn empty_environment_values_mean_unset() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = Guard::spawn(
        sb.cmd()
            .args([
                "watch",
                "--pid",
                &target.pid().to_string(),
                "--agent",
                "env",
            ])
            .env("MOSAIC_HEARTBEAT_INTERVAL", "")
            .env("MOSAIC_HEARTBEAT_RUN_DIR", "")
            .env("XDG_CONFIG_HOME", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let path = sb.home().join(".config/mosaic/fleet/run/env.hb");
    let v = wait_record(&path, Duration::from_secs(5), |v| status_is(v, "alive"));
    assert_eq!(v["interval"], 15.0);
}
