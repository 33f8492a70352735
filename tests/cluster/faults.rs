//! The multi-host contract under faults, with its numbers: remote
//! death latency, a SIGKILLed bridge, a SIGKILLed leader, a SIGSTOPped member, lost quorum,
//! and the cost (no etcd write per beat, the bridge's memory).
//!
//! Each test prints what it measured on stderr (`cargo test --test integration -- cluster:: --nocapture`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd_fixture::{Cluster, MEMBERS};
use super::hosts::*;
use super::serial;
use crate::common::*;
use crate::require_etcd;

const SEC: Duration = Duration::from_secs(1);

/// How many `kill -9`s the latency test measures (100 by default).
fn deaths() -> usize {
    std::env::var("PIDBEAT_CLUSTER_DEATHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// The line `wait` prints for a death the local record describes.
fn expected_line(h: &Host, agent: &str) -> String {
    let r = wait_record(&h.sb.record_path(agent), 5 * SEC, |v| status_is(v, "dead"));
    match (&r["exit"]["code"], &r["exit"]["signal"]) {
        (Value::Number(c), _) => format!("{} dead code {c}", h.key(agent)),
        (_, Value::Number(s)) => format!("{} dead signal {s}", h.key(agent)),
        _ => format!("{} dead", h.key(agent)),
    }
}

#[test]
fn remote_death_reaches_wait_within_50ms_p99_with_its_exit() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let n = deaths();
    let mut hosts: Vec<Host> = (0..MEMBERS).map(|i| Host::new(&format!("h{i}"))).collect();
    for (i, h) in hosts.iter_mut().enumerate() {
        // Bridge i on member i.
        h.publish(&c.urls_from(i), 10);
    }
    let agents: Vec<(usize, String)> = (0..n).map(|k| (k % MEMBERS, format!("a{k}"))).collect();
    for (i, a) in &agents {
        hosts[*i].add_agent(a, "15");
    }
    // A reader per host, each on a different member than that host's bridge.
    let readers: Vec<Reader> = (0..MEMBERS)
        .map(|i| {
            let urls = c.urls_from((i + 1) % MEMBERS);
            let mut args = vec!["wait".to_owned(), "--etcd".into(), urls];
            args.extend(
                agents
                    .iter()
                    .filter(|(h, _)| *h == i)
                    .map(|(_, a)| hosts[i].key(a)),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Reader::spawn(&hosts[i].sb, &args, "wait")
        })
        .collect();
    // Everyone alive in etcd before the first kill.
    poll_ps_etcd(
        &hosts[0].sb,
        &c.urls_from(0),
        20 * SEC,
        "all agents alive",
        |v| v.len() == n && v.values().all(|o| o["state"] == "alive"),
    );

    let mut latencies = Vec::new();
    for (i, a) in &agents {
        let killed = hosts[*i].kill9(a);
        let (at, line) = readers[*i]
            .line(5 * SEC)
            .unwrap_or_else(|| panic!("no line for {} within 5 s", hosts[*i].key(a)));
        latencies.push(at - killed);
        assert_eq!(line, expected_line(&hosts[*i], a));
        // The next kill once this death is fully recorded, so that each is measured alone.
        std::thread::sleep(Duration::from_millis(10));
    }
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let max = percentile(&mut latencies, 100.0);
    eprintln!("remote death latency over {n} kill -9s: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(
        p99 <= Duration::from_millis(50),
        "p99 {p99:?} over 50 ms (p50 {p50:?})"
    );
    for mut r in readers {
        assert_eq!(r.g.wait_timeout(5 * SEC).and_then(|s| s.code()), Some(0));
    }
}

#[test]
fn a_killed_bridge_makes_its_agents_unreachable_then_alive_again() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut h = Host::new("h1");
    h.add_agent("live", "1");
    h.add_agent("killed", "1");
    h.add_target("exits", "1", spawn_exit_on_eof(3));
    h.publish(&c.urls_from(0), 3);
    let other = c.urls_from(1);
    poll_ps_etcd(&h.sb, &other, 5 * SEC, "all alive", |v| {
        v.len() == 3 && v.values().all(|o| o["state"] == "alive")
    });

    let killed_at = Instant::now();
    h.bridge.as_mut().unwrap().kill();
    // Deaths while the bridge is gone.
    std::thread::sleep(Duration::from_millis(300));
    h.kill9("killed");
    let exits = &mut h.agents.get_mut("exits").unwrap().target;
    drop(exits.child().stdin.take());
    // Reaped by its parent (us): only then can the kernel tell the watcher its status.
    assert_eq!(exits.wait_timeout(2 * SEC).and_then(|s| s.code()), Some(3));
    let (v, at) = poll_ps_etcd(&h.sb, &other, 6 * SEC, "unreachable", |v| {
        v.values().any(|o| o["state"] == "unreachable")
    });
    let after = at - killed_at;
    eprintln!("bridge SIGKILL -> unreachable after {after:?} (--ttl 3)");
    assert!(
        (Duration::from_secs(2)..=Duration::from_secs(4)).contains(&after),
        "unreachable after {after:?}"
    );
    // All three were alive when the bridge died: all three are unreachable now.
    assert!(
        v.values().all(|o| o["state"] == "unreachable"),
        "{:?}",
        states(&v)
    );
    assert_entry_schema(&v);

    let restarted = Instant::now();
    h.publish(&c.urls_from(2), 3);
    let (v, at) = poll_ps_etcd(&h.sb, &other, 3 * SEC, "the truth again", |v| {
        v["h1/live"]["state"] == "alive"
            && v["h1/killed"]["state"] == "dead"
            && v["h1/exits"]["state"] == "dead"
    });
    let back = at - restarted;
    eprintln!("bridge restart -> alive/dead again after {back:?}");
    assert!(back <= SEC, "back after {back:?}");
    assert_eq!(v["h1/killed"]["exit"]["signal"], 9, "{}", v["h1/killed"]);
    assert_eq!(v["h1/exits"]["exit"]["code"], 3, "{}", v["h1/exits"]);
}

/// Frames of `ps --etcd --watch --json` seen so far: (when, HOST/AGENT → state).
fn frames(r: &Reader) -> Vec<(Instant, BTreeMap<String, String>)> {
    r.lines
        .try_iter()
        .map(|(at, line)| {
            let v: Value = serde_json::from_str(&line).expect("a JSON frame per line");
            let states = v
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    (
                        format!(
                            "{}/{}",
                            o["host"].as_str().unwrap(),
                            o["agent"].as_str().unwrap()
                        ),
                        o["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (at, states)
        })
        .collect()
}

fn assert_never_unreachable(frames: &[(Instant, BTreeMap<String, String>)], what: &str) {
    for (_, f) in frames {
        let bad: Vec<_> = f.iter().filter(|(_, s)| *s == "unreachable").collect();
        assert!(bad.is_empty(), "{what}: false unreachable: {bad:?}");
    }
}

#[test]
fn a_killed_leader_causes_no_false_unreachable_and_loses_no_death() {
    require_etcd!();
    let _s = serial();
    let mut c = Cluster::start();
    let leader = c.wait_leader(5 * SEC);
    let follower = (leader + 1) % MEMBERS;
    let mut h = Host::new("h1");
    for k in 0..50 {
        h.add_agent(&format!("a{k}"), "15");
    }
    // The bridge starts on the leader: the worst place to be when it dies.
    h.publish(&c.urls_from(leader), 3);
    poll_ps_etcd(&h.sb, &c.urls_from(follower), 10 * SEC, "50 alive", |v| {
        v.len() == 50 && v.values().all(|o| o["state"] == "alive")
    });
    let watch = Reader::spawn(
        &h.sb,
        &["ps", "--etcd", &c.urls_from(follower), "--watch", "--json"],
        "ps-watch",
    );
    let wait = Reader::spawn(
        &h.sb,
        &["wait", "--etcd", &c.urls_from(follower), "h1/a0"],
        "wait",
    );
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    c.kill(leader);
    std::thread::sleep(Duration::from_millis(200));
    let killed = h.kill9("a0");
    let (at, line) = wait
        .line(5 * SEC)
        .expect("the death during failover reaches wait within 5 s");
    eprintln!(
        "leader SIGKILL: a death 200 ms later reached wait --etcd after {:?}",
        at - killed
    );
    assert_eq!(line, expected_line(&h, "a0"));
    while t0.elapsed() < 10 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = frames(&watch);
    assert!(!seen.is_empty());
    assert_never_unreachable(&seen, "after the leader's SIGKILL");
    let last = &seen.last().unwrap().1;
    assert_eq!(
        last.values().filter(|s| *s == "alive").count(),
        49,
        "{last:?}"
    );
    assert_eq!(last["h1/a0"], "dead");
    assert!(c.leader().is_some_and(|l| l != leader));
}

#[test]
fn a_stopped_member_causes_no_false_unreachable_and_its_readers_move() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    // The leader is stopped: the bridge and the readers that start on it must all move.
    let stopped = c.wait_leader(5 * SEC);
    let urls = c.urls_from(stopped);
    let mut h = Host::new("h1");
    for k in 0..10 {
        h.add_agent(&format!("a{k}"), "15");
    }
    h.publish(&urls, 3);
    poll_ps_etcd(&h.sb, &urls, 10 * SEC, "10 alive", |v| {
        v.len() == 10 && v.values().all(|o| o["state"] == "alive")
    });
    let watch = Reader::spawn(
        &h.sb,
        &["ps", "--etcd", &urls, "--watch", "--json"],
        "ps-watch",
    );
    let wait = Reader::spawn(&h.sb, &["wait", "--etcd", &urls, "h1/a0"], "wait");
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    c.stop(stopped);
    let said = poll_for(5 * SEC, Duration::from_millis(20), || {
        (watch.stderr().contains(&c.url(stopped)) && wait.stderr().contains(&c.url(stopped)))
            .then(Instant::now)
    });
    let said = said.unwrap_or_else(|| {
        panic!(
            "readers did not move off the stopped member within 5 s:\n{}\n{}",
            watch.stderr(),
            wait.stderr()
        )
    });
    eprintln!(
        "member SIGSTOP: readers moved after {:?}: {}",
        said - t0,
        wait.stderr().trim()
    );
    let killed = h.kill9("a0");
    let (at, line) = wait
        .line(5 * SEC)
        .expect("a death while the member is stopped reaches wait");
    eprintln!(
        "member SIGSTOP: a death reached wait --etcd after {:?}",
        at - killed
    );
    assert_eq!(line, expected_line(&h, "a0"));
    while t0.elapsed() < 10 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    c.cont(stopped);
    let seen = frames(&watch);
    assert_never_unreachable(&seen, "while a member was stopped");
    assert_eq!(seen.last().unwrap().1["h1/a0"], "dead");
    std::thread::sleep(SEC);
    assert_never_unreachable(&frames(&watch), "after the member came back");
}

#[test]
fn lost_quorum_leaves_local_readers_alone_and_the_remote_view_catches_up() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let kept = c.wait_leader(5 * SEC);
    let mut h = Host::new("h1");
    for k in 0..10 {
        h.add_agent(&format!("a{k}"), "1");
    }
    h.publish(&c.urls_from(kept), 3);
    poll_ps_etcd(&h.sb, &c.urls_from(kept), 10 * SEC, "10 alive", |v| {
        v.len() == 10 && v.values().all(|o| o["state"] == "alive")
    });
    let (rss_before, _) = rss_kib(h.bridge_pid());

    // The two others hang: no quorum.
    let lost: Vec<usize> = (0..MEMBERS).filter(|&i| i != kept).collect();
    for &i in &lost {
        c.stop(i);
    }
    let t0 = Instant::now();
    // Local readers do not notice: a death is still seen by local wait at once.
    let local_wait = Reader::spawn(
        &h.sb,
        &["wait", "--run-dir", h.sb.run_dir().to_str().unwrap(), "a0"],
        "local-wait",
    );
    std::thread::sleep(Duration::from_millis(200));
    let killed = h.kill9("a0");
    let (at, line) = local_wait.line(5 * SEC).expect("local wait line");
    let local_latency = at - killed;
    eprintln!("quorum lost: local death latency {local_latency:?}");
    assert!(
        local_latency < Duration::from_millis(100),
        "{local_latency:?}"
    );
    assert!(line.starts_with("a0 dead"), "{line}");
    let t = Instant::now();
    let o = h.sb.ps(&["--json"]);
    assert!(
        o.status.success() && t.elapsed() < SEC,
        "local ps took {:?}",
        t.elapsed()
    );
    // Churn while etcd is away: agents come and go, deaths pile up. Only the latest verdict
    // per agent is held, so the bridge's memory stays put.
    for k in 10..30 {
        h.add_agent(&format!("a{k}"), "1");
    }
    for k in 10..20 {
        h.kill9(&format!("a{k}"));
    }
    h.kill9("a1");
    while t0.elapsed() < 10 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (rss_during, hwm) = rss_kib(h.bridge_pid());
    eprintln!(
        "quorum lost: bridge VmRSS {rss_before} KiB before, {rss_during} KiB after 10 s (VmHWM {hwm} KiB)"
    );
    assert!(
        rss_during <= rss_before + 1024,
        "bridge grew from {rss_before} to {rss_during} KiB"
    );

    for &i in &lost {
        c.cont(i);
    }
    // Recovery is etcd's: the members elect a leader again (measured 1-4 s with etcd's
    // default timing). From then on the bridge has to make the view right.
    let resumed = Instant::now();
    let back = poll(
        15 * SEC,
        Duration::from_millis(20),
        || (0..MEMBERS).all(|i| c.healthy(i)).then(Instant::now),
        || "etcd healthy again".into(),
    );
    eprintln!(
        "quorum back: etcd healthy {:?} after SIGCONT",
        back - resumed
    );
    let (v, at) = poll_ps_etcd(
        &h.sb,
        &c.urls_from(kept),
        10 * SEC,
        "the remote view right",
        |v| {
            v.len() == 30
                && (0..30).all(|k| {
                    let want = if k < 2 || (10..20).contains(&k) {
                        "dead"
                    } else {
                        "alive"
                    };
                    v[&format!("h1/a{k}")]["state"] == want
                })
        },
    );
    let took = at - back;
    eprintln!("quorum back: remote view right {took:?} after etcd was healthy again");
    assert_eq!(v["h1/a1"]["exit"]["signal"], 9, "{}", v["h1/a1"]);
    assert!(took <= 2 * SEC, "remote view right only after {took:?}");
    assert!(
        h.bridge_log().contains("local records are unaffected"),
        "{}",
        h.bridge_log()
    );
}

#[test]
fn beats_cost_no_etcd_write() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut h = Host::new("h1");
    for k in 0..100 {
        h.add_agent(&format!("a{k}"), "0.5");
    }
    h.publish(&c.urls_from(0), 3);
    poll_ps_etcd(&h.sb, &c.urls_from(1), 10 * SEC, "100 alive", |v| {
        v.len() == 100 && v.values().all(|o| o["state"] == "alive")
    });
    // Lease keep-alives are not writes: they do not move the revision.
    std::thread::sleep(SEC);
    let seq = |h: &Host| {
        read_record(&h.sb.record_path("a0")).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let (rev, seq0) = (c.revision(), seq(&h));
    std::thread::sleep(10 * SEC);
    let (rev1, seq1) = (c.revision(), seq(&h));
    eprintln!(
        "100 agents beating every 0.5 s for 10 s (about {} beats): etcd revision {rev} -> {rev1}",
        100 * (seq1 - seq0)
    );
    assert!(
        seq1 - seq0 >= 15,
        "agents did not beat: seq {seq0} -> {seq1}"
    );
    assert_eq!(rev, rev1, "beats moved the etcd revision");
}

#[test]
fn publish_with_1000_agents_stays_under_8_mib() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut h = Host::new("h1");
    // Planted records: the bridge judges and publishes 1000 agents (dead ones here; what it
    // holds per agent is the same object whatever the state).
    let me = std::process::id() as i32;
    for k in 0..1000 {
        let ms = now_ms();
        let line = format!(
            r#"{{"ts":{},"pid":{me},"status":"dead","ts_ms":{ms},"seq":7,"interval":15.0,"backend":"pidfd","watcher_pid":{me},"start_time":1,"exit":{{"code":{},"signal":null,"core":false}},"died_ms":{ms},"watcher_start_time":1}}"#,
            ms / 1000,
            k % 256
        );
        std::fs::write(h.sb.record_path(&format!("agent-{k:04}")), line + "\n").unwrap();
    }
    h.publish(&c.urls_from(0), 10);
    let mut cl = super::client::client(&c, 1, SEC);
    let prefix = String::from("/pidbeat/h1/");
    let end = etcd_gateway::prefix_end(prefix.as_bytes());
    let t = Instant::now();
    poll(
        20 * SEC,
        Duration::from_millis(100),
        || {
            (cl.range(prefix.as_bytes(), Some(&end), 0)
                .unwrap()
                .kvs
                .len()
                == 1001)
                .then_some(())
        },
        || "1000 agents and the bridge key in etcd".into(),
    );
    eprintln!("1000 agents published after {:?}", t.elapsed());
    // A few full looks more.
    std::thread::sleep(3 * SEC);
    let (rss, hwm) = rss_kib(h.bridge_pid());
    let anon = status_kib(h.bridge_pid(), "RssAnon");
    eprintln!("publish with 1000 agents: VmRSS {rss} KiB, VmHWM {hwm} KiB, RssAnon {anon} KiB");
    // The limit is on the release build (`cargo bench --bench cluster` measures it there: 5.6
    // MiB). A debug build maps twice the code; what the bridge's design decides, its
    // anonymous memory (heap, stacks), is held to the same budget in both.
    if cfg!(debug_assertions) {
        assert!(anon < 3 * 1024, "RssAnon {anon} KiB");
    } else {
        assert!(hwm < 8 * 1024, "VmHWM {hwm} KiB");
    }
}
