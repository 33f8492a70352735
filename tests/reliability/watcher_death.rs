//! A watcher that dies or stalls: its lock, its temp files, and what `ps` makes of it.

use std::time::{Duration, Instant};

use super::*;
use crate::common::*;

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
    let o = run_with_deadline(c, 5 * SEC);
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
    sb.assert_clean(&[pid, w1pid]);
}

/// A watcher SIGKILLed between creating its temp file and renaming it leaves
/// `.<agent>.hb.<pid>.tmp` behind (seen 4 times in 30 kills at --interval 0.001). The next
/// watcher of the agent holds the agent's exclusive lock, so every other
/// `.<agent>.hb.<N>.tmp` is garbage it sweeps at start: crashes must not pile them up, and
/// another agent's temp files, however alike their names, are left alone.
#[test]
fn new_watcher_sweeps_temp_files_of_a_killed_watcher() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let run = sb.private_run_dir();

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
    sb.assert_clean(&[pid]);
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
    assert_eq!(sb.ps_state("k"), "alive");
    assert_eq!(sb.ps_state("s"), "alive");

    let wpid = w.pid();
    w.g.kill();
    stop(s.pid());
    let limit = Duration::from_secs_f64(2.0 * iv + 1.0);
    let deadline = Instant::now() + limit + Duration::from_millis(700);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        // `now` before ps runs: our age of a record is at most the age ps judged.
        let now = now_ms();
        let m = sb.ps_json(&["k", "s"]);
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
    assert_eq!(sb.ps_state("s"), "alive");
    t.kill();
    sb.wait_status("s", "dead", SEC);
    assert!(s.exits(3 * SEC).success());
    assert_eq!(sb.ps_state("s"), "dead");
    assert_eq!(sb.ps_state("k"), "lost", "target and watcher both gone");
    sb.assert_clean(&[pid, wpid]);
}
