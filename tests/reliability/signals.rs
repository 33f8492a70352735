//! Signals to the watcher, and the states `ps` gives stopped, zombie and unwatched targets.

use super::*;
use crate::common::*;

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
        send_signal(w.pid(), sig);
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
    sb.assert_clean(&[pid]);
}

/// Needs `pidbeat ps`: states of targets that are odd but alive, dead zombies, unwatched.
#[test]
fn ps_states_for_stopped_zombie_and_unwatched_targets() {
    become_subreaper();
    let sb = Sandbox::new();
    let mut stopped = spawn_sleep();
    let (mut parent, c) = zombie_family(&sb.path("zpid"));
    let _c = Guard::adopt(c);
    let unw = spawn_sleep();
    let mut w1 = watch(&sb, stopped.pid(), "stopped", "pidfd");
    let mut w2 = watch(&sb, c, "zombie", "poll");
    let mut w3 = watch(&sb, unw.pid(), "unwatched", "pidfd");
    wait_all(&sb, &["stopped", "zombie", "unwatched"], "alive", 3 * SEC);
    stop(stopped.pid());
    send_signal(c, Signal::KILL);
    send_signal(w3.pid(), Signal::TERM);
    sb.wait_status("zombie", "dead", SEC);
    sb.wait_status("unwatched", "unwatched", SEC);
    std::thread::sleep(Duration::from_millis(300));
    let m = sb.ps_json(&[]);
    assert_eq!(m["stopped"]["state"], "alive", "{m:?}");
    assert_eq!(m["zombie"]["state"], "dead", "{m:?}");
    assert_eq!(m["unwatched"]["state"], "unwatched", "{m:?}");
    for o in m.values() {
        assert!(o["age_ms"].as_u64().is_some(), "age_ms: {o}");
    }
    stopped.kill();
    parent.kill();
    drop(unw);
    // Each ends as a watcher does: after writing `dead` (the stopped target killed, the
    // zombie's parent gone), or on the SIGTERM that made the record `unwatched`.
    for (w, a) in [
        (&mut w1, "stopped"),
        (&mut w2, "zombie"),
        (&mut w3, "unwatched"),
    ] {
        let st = w.exits(3 * SEC);
        assert!(st.success(), "{a}: watcher exit {st}: {}", w.stderr());
    }
    drop(_c);
    sb.assert_clean(&[c]);
}
