//! Records end: `forget` and `prune` remove ended agents (never a live one, never racing a
//! starting watcher), and the death history survives a new watcher of the same name.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
const DAY_MS: u64 = 86_400_000;

fn run(sb: &Sandbox, args: &[&str]) -> Out {
    let mut c = sb.cmd();
    c.args(args).arg("--run-dir").arg(sb.run_dir());
    run_with_deadline(c, 20 * SEC)
}

fn names(sb: &Sandbox) -> Vec<String> {
    dir_names(&sb.run_dir())
}

#[test]
fn forget_removes_ended_agents_and_refuses_live_ones() {
    let sb = Sandbox::new();
    let live = spawn_sleep();
    let _lw = sb.watch_alive(live.pid(), "live", &["--interval", "15"]);
    let mut doomed = spawn_sleep();
    let mut dw = sb.watch_alive(doomed.pid(), "gone", &["--interval", "15"]);
    std::fs::write(sb.run_dir().join("gone.log"), "launcher log\n").unwrap();
    doomed.kill();
    sb.wait_status("gone", "dead", 5 * SEC);
    assert!(dw.wait_timeout(5 * SEC).is_some(), "watcher should end");

    let o = run(&sb, &["forget", "live"]);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("live: refused") && o.stderr.contains("alive"),
        "{}",
        o.stderr
    );
    assert!(sb.record_path("live").exists());

    // Temp files a crashed watcher left (record and history) go with the agent.
    for tmp in [".gone.hb.4194303.tmp", ".gone.deaths.4194303.tmp"] {
        std::fs::write(sb.run_dir().join(tmp), "partial").unwrap();
    }
    let o = run(&sb, &["forget", "gone"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "forgot gone (dead)\n"),
        "{}",
        o.stderr
    );
    assert_eq!(
        names(&sb),
        [".live.lock", ".live.notify", "gone.log", "live.hb"]
    );
    // The log goes only with --logs.
    let o = run(&sb, &["forget", "--logs", "gone"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(names(&sb), [".live.lock", ".live.notify", "live.hb"]);
    // Nothing left of it: exit 4, as for `status`.
    let o = run(&sb, &["forget", "gone"]);
    assert_eq!(o.code(), Some(4));
    assert!(o.stderr.contains("gone: no record"), "{}", o.stderr);
    assert_eq!(
        names(&sb),
        [".live.lock", ".live.notify", "live.hb"],
        "no lock file made for it"
    );
    let mut c = sb.cmd();
    c.args(["forget", "x", "--run-dir"])
        .arg(sb.path("no-such-dir"));
    assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(4));

    // A SIGKILLed watcher leaves a lost agent: its lock is free, so it can be forgotten.
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "orphan", &["--interval", "15"]);
    w.kill();
    let o = run(&sb, &["forget", "orphan"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "forgot orphan (lost)\n"),
        "{}",
        o.stderr
    );
    assert!(!sb.record_path("orphan").exists());
}

#[test]
fn forget_waits_for_a_finishing_watcher_but_never_takes_a_held_lock() {
    let sb = Sandbox::new();
    // A dead record whose "watcher" (this test) still holds the lock, as a watcher waiting
    // for the exit status does: forget waits for the lock, and succeeds once it is let go.
    let mut r = record_at(Status::Dead, exited_pid(), now_ms());
    r.watcher_pid = Some(std::process::id() as i32);
    sb.plant("ending", &r);
    let lock = sb.hold_lock("ending");
    let mut c = sb.cmd();
    c.args(["forget", "ending", "--run-dir"]).arg(sb.run_dir());
    let mut forget = Guard::spawn(c.stdout(Stdio::null()).stderr(Stdio::null()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sb.record_path("ending").exists(),
        "removed under a held lock"
    );
    drop(lock);
    let st = forget.wait_timeout(5 * SEC).expect("forget ends");
    assert_eq!(st.code(), Some(0));
    assert!(!sb.record_path("ending").exists());

    // An alive record under a held lock is refused at once.
    let target = spawn_sleep();
    let mut r = record_at(Status::Alive, target.pid(), now_ms());
    r.start_time = Some(start_time(target.pid()).unwrap());
    r.watcher_pid = Some(std::process::id() as i32);
    sb.plant("held", &r);
    let _lock = sb.hold_lock("held");
    let o = run(&sb, &["forget", "held"]);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    assert!(sb.record_path("held").exists());
}

#[test]
fn forget_and_a_starting_watcher_never_overlap() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    for round in 0..8 {
        // A dead record to forget, and a new watcher for the same name starting at once.
        sb.plant("race", &record_at(Status::Dead, exited_pid(), now_ms()));
        let mut c = sb.cmd();
        c.args(["forget", "race", "--run-dir"]).arg(sb.run_dir());
        let mut forget = Guard::spawn(c.stdout(Stdio::null()).stderr(Stdio::null()));
        let w = sb.watch(target.pid(), "race", &["--interval", "15"]);
        // A new watcher holding the lock is refused at once, not waited for like a finishing one.
        let st = forget.wait_timeout(2 * SEC).expect("forget ends at once");
        assert!(
            st.code() == Some(0) || st.code() == Some(1),
            "round {round}: {st}"
        );
        // Whichever came first, the watcher runs with its record and a lock file that is
        // really locked (not an unlinked inode), so a second watcher is refused.
        let rec = sb.wait_status("race", "alive", 5 * SEC);
        assert_eq!(rec["watcher_pid"], w.pid(), "round {round}");
        let second = run_with_deadline(sb.watch_cmd(target.pid(), "race"), 10 * SEC);
        assert_eq!(second.code(), Some(1), "round {round}: {}", second.stderr);
        assert!(
            second.stderr.contains("already watched"),
            "{}",
            second.stderr
        );
        signal(w.pid(), Signal::TERM);
        sb.wait_status("race", "unwatched", 5 * SEC);
        w.reap_within(5 * SEC);
    }
}

#[test]
fn prune_by_state_and_age() {
    let sb = Sandbox::new();
    let now = now_ms();
    sb.plant("old-dead", &record_at(Status::Dead, 1001, now - 3 * DAY_MS));
    sb.plant("new-dead", &record_at(Status::Dead, 1002, now - 60_000));
    sb.plant(
        "old-unwatched",
        &record_at(Status::Unwatched, exited_pid(), now - 3 * DAY_MS),
    );
    std::fs::write(sb.record_path("junk"), "{not json").unwrap();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "live", &["--interval", "15"]);

    let o = run(&sb, &["prune", "--older-than", "2d", "--dry-run"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(
        o.stdout,
        "would forget old-dead (dead)\nwould forget old-unwatched (unwatched)\n"
    );
    assert!(sb.record_path("old-dead").exists());

    let o = run(&sb, &["prune", "--older-than", "2d", "--state", "dead"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(0), "forgot old-dead (dead)\n")
    );
    let o = run(&sb, &["prune", "--older-than", "90s"]);
    assert_eq!(o.stdout, "forgot old-unwatched (unwatched)\n");
    let o = run(&sb, &["prune", "--state", "corrupt"]);
    assert_eq!(o.stdout, "forgot junk (corrupt)\n");
    let o = run(&sb, &["prune"]);
    assert_eq!(o.stdout, "forgot new-dead (dead)\n");
    // The live agent is never pruned, whatever the filters.
    assert_eq!(names(&sb), [".live.lock", ".live.notify", "live.hb"]);
    let o = run(&sb, &["prune", "--state", "alive"]);
    assert_eq!(o.code(), Some(2));
    assert!(o.stderr.contains("--state"), "{}", o.stderr);
}

fn history(sb: &Sandbox, agent: &str) -> Vec<Value> {
    let o = run(sb, &["ps", "--json", "--history", agent]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    serde_json::from_str::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_new_watcher_keeps_the_previous_death() {
    let sb = Sandbox::new();
    let mut first = spawn_sleep();
    let mut w1 = sb.watch_alive(first.pid(), "h", &["--interval", "15"]);
    first.kill();
    sb.wait_status("h", "dead", 5 * SEC);
    assert!(w1.wait_timeout(5 * SEC).is_some());

    let mut second = spawn_sleep();
    let mut w2 = sb.watch_alive(second.pid(), "h", &["--interval", "15"]);
    let deaths = std::fs::read_to_string(sb.run_dir().join("h.deaths")).unwrap();
    assert_eq!(deaths.lines().count(), 1, "{deaths}");
    let h = history(&sb, "h");
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0]["pid"].as_i64(), h[0]["state"].as_str()),
        (Some(first.pid().into()), Some("dead"))
    );
    assert_eq!(h[0]["exit"]["signal"], 9);

    // Its watcher SIGKILLed and then its target gone: nobody recorded that end, so the next
    // watcher keeps it as `lost`.
    w2.kill();
    second.kill();
    let third = spawn_sleep();
    let _w3 = sb.watch_alive(third.pid(), "h", &["--interval", "15"]);
    let h = history(&sb, "h");
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[1]["pid"].as_i64(), h[1]["state"].as_str()),
        (Some(second.pid().into()), Some("lost"))
    );

    let o = run(&sb, &["ps", "--history", "h"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ENDED", "AGO", "STATE", "PID", "RAN", "EXIT"]
    );
    assert!(
        lines[1].contains(" dead ") && lines[1].contains("signal 9 (KILL)"),
        "{}",
        o.stdout
    );
    assert!(lines[2].contains(" lost "), "{}", o.stdout);
    let o = run(&sb, &["ps", "--history", "nobody"]);
    assert_eq!(o.code(), Some(1));
}

#[test]
fn the_history_is_bounded() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    for i in 0..12 {
        sb.plant("b", &record_at(Status::Dead, 100_000 + i, now_ms()));
        if i == 0 {
            // A history temp file a crashed watcher left: the next watcher sweeps it.
            std::fs::write(sb.run_dir().join(".b.deaths.4194303.tmp"), "partial").unwrap();
        }
        let w = sb.watch_alive(target.pid(), "b", &["--interval", "15"]);
        signal(w.pid(), Signal::TERM);
        sb.wait_status("b", "unwatched", 5 * SEC);
        w.reap_within(5 * SEC);
    }
    let h = history(&sb, "b");
    let pids: Vec<i64> = h.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    assert_eq!(pids, (100_002..100_012).collect::<Vec<i64>>());
    // The file holds only complete lines; no temp file is left, nor the crashed one's.
    assert_eq!(names(&sb), [".b.lock", "b.deaths", "b.hb"]);
}
