//! One owner per host name (DESIGN.md, "Multi-host"): a second bridge with the same `--host`
//! exits 1 naming the holder and writes nothing; a newcomer takes over within TTL + 1 s of
//! the holder's death; a bridge puts back keys someone else deleted or changed, and stops if
//! another bridge took the host; and after a new lease no reader sees a fresh `.bridge` beside
//! old verdicts, past etcd's 128 operations per transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::client;
use super::etcd_fixture::Cluster;
use super::hosts::*;
use super::keys;
use super::serial;
use crate::common::*;
use crate::require_etcd;
use etcd_gateway::{Client, Compare, EventKind, Op};

const SEC: Duration = Duration::from_secs(1);

/// Every key under `/pidbeat/<host>/`: key → (value, has a lease).
fn host_keys(cl: &mut Client, host: &str) -> BTreeMap<String, (Value, i64)> {
    let prefix = keys::host_prefix(host);
    cl.range(
        prefix.as_bytes(),
        Some(&keys::prefix_end(prefix.as_bytes())),
        0,
    )
    .unwrap()
    .kvs
    .into_iter()
    .map(|kv| {
        let v = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        (kv.key, (v, kv.lease))
    })
    .collect()
}

/// The `.bridge` value, if the key exists.
fn bridge(cl: &mut Client, host: &str) -> Option<(Value, i64)> {
    let r = cl.range(keys::bridge_key(host).as_bytes(), None, 0).ok()?;
    r.kvs
        .into_iter()
        .next()
        .map(|kv| (serde_json::from_slice(&kv.value).unwrap(), kv.lease))
}

/// A dead record planted as a watcher writes it.
fn plant_dead(h: &Host, agent: &str, code: u32) {
    let ms = now_ms();
    let me = std::process::id();
    let line = format!(
        r#"{{"ts":{},"pid":{me},"status":"dead","ts_ms":{ms},"seq":7,"interval":15.0,"backend":"pidfd","watcher_pid":{me},"start_time":1,"exit":{{"code":{code},"signal":null,"core":false}},"died_ms":{ms},"watcher_start_time":1}}"#,
        ms / 1000
    );
    std::fs::write(h.sb.record_path(agent), line + "\n").unwrap();
}

fn published(c: &Cluster, h: &Host, n: usize) {
    poll_ps_etcd(&h.sb, &c.urls_from(1), 10 * SEC, "all published", |v| {
        v.len() == n && v.values().all(|o| o["state"] != "unreachable")
    });
}

#[test]
fn a_second_bridge_with_the_same_host_name_exits_1_naming_the_holder_and_writes_nothing() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.add_agent("codex", "1");
    plant_dead(&h, "done", 3);
    h.publish(&urls, 3);
    published(&c, &h, 3);
    let mut cl = client(&c, 1, SEC);
    let before = host_keys(&mut cl, "h1");
    let rev = c.revision();

    // A clone of the machine: same host name, an empty run dir.
    let impostor = Host::new("h1");
    let o = run_with_deadline(impostor.publish_cmd(&urls, 3), 10 * SEC);
    eprintln!("second bridge: exit {:?} after {:?}", o.code(), o.elapsed);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    let holder = h.bridge_pid();
    for says in [
        format!("PID {holder}"),
        "/pidbeat/h1/.bridge".into(),
        "boot id".into(),
        "holding it for".into(),
    ] {
        assert!(o.stderr.contains(&says), "{says}: {}", o.stderr);
    }
    // Nothing deleted, nothing overwritten: not even one write.
    assert_eq!(host_keys(&mut cl, "h1"), before);
    assert_eq!(c.revision(), rev, "the second bridge wrote to etcd");
    // The real bridge goes on publishing.
    h.kill9("pi");
    poll_ps_etcd(&h.sb, &urls, 5 * SEC, "pi dead", |v| {
        v.get("h1/pi").is_some_and(|o| o["state"] == "dead")
    });
}

#[test]
fn a_restarted_bridge_takes_over_from_its_ended_predecessor_at_once() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.publish(&urls, 3);
    published(&c, &h, 1);
    let mut cl = client(&c, 1, SEC);
    let (first, old_lease) = bridge(&mut cl, "h1").unwrap();
    // SIGKILL: the lease is not revoked, the key stays on it until it expires. The holder
    // ran on this machine, so its successor can see that it has ended.
    h.bridge.as_mut().unwrap().kill();
    let died = Instant::now();
    h.publish(&urls, 3);
    let newcomer = h.bridge_pid() as u64;
    let (v, at) = poll(
        10 * SEC,
        Duration::from_millis(20),
        || {
            bridge(&mut cl, "h1")
                .filter(|(v, _)| v["pid"] == newcomer)
                .map(|b| (b, Instant::now()))
        },
        || format!("no takeover; newcomer said: {}", h.bridge_log()),
    );
    let took = at - died;
    eprintln!("holder SIGKILLed -> its successor holds the host after {took:?}");
    assert!(took <= SEC, "took over after {took:?}");
    assert_ne!(v.0["since_ms"], first["since_ms"]);
    assert_ne!(v.1, old_lease);
    assert!(
        h.bridge_log()
            .contains("which has ended; taking the host over"),
        "{}",
        h.bridge_log()
    );
    // The old lease expires holding nothing: the host stays up.
    std::thread::sleep(4 * SEC);
    assert_eq!(
        bridge(&mut cl, "h1").map(|(v, _)| v["pid"].clone()),
        Some(newcomer.into())
    );
    published(&c, &h, 1);
}

/// A `.bridge` planted as a bridge on another machine would write it, on a lease of its own
/// that `renew` keeps alive until it is cleared.
fn plant_foreign_holder(c: &Cluster, host: &str, renew: &'static AtomicBool) -> i64 {
    let mut cl = client(c, 2, SEC);
    let lease = cl.grant(3).unwrap();
    let v = json!({
        "host": host, "pid": 4242, "start_time": 99, "hostname": "elsewhere",
        "boot_id": "00000000-0000-0000-0000-0000000000ff", "since_ms": 1, "ttl": 3,
        "ts_ms": 1, "seq": 1
    });
    cl.put(
        keys::bridge_key(host).as_bytes(),
        v.to_string().as_bytes(),
        lease,
    )
    .unwrap();
    std::thread::spawn(move || {
        while renew.load(Ordering::SeqCst) {
            let _ = cl.keepalive(lease);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    lease
}

#[test]
fn a_holder_elsewhere_is_proven_alive_by_its_renewals_and_replaced_once_they_stop() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    static RENEW: AtomicBool = AtomicBool::new(true);
    RENEW.store(true, Ordering::SeqCst);
    plant_foreign_holder(&c, "h1", &RENEW);
    let rev = c.revision();
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    let o = run_with_deadline(h.publish_cmd(&urls, 3), 10 * SEC);
    eprintln!(
        "holder on another machine, renewing: exit {:?} after {:?}",
        o.code(),
        o.elapsed
    );
    RENEW.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("PID 4242 on machine elsewhere") && o.stderr.contains("0000000000ff"),
        "{}",
        o.stderr
    );
    assert!(o.elapsed <= 5 * SEC, "{:?}", o.elapsed);
    assert_eq!(c.revision(), rev, "the waiting bridge wrote to etcd");
    // Its renewals stop (the holder died): a newcomer takes over within TTL + 1 s.
    h.publish(&urls, 3);
    let mut cl = client(&c, 1, SEC);
    let me = h.bridge_pid() as u64;
    let (_, at) = poll(
        10 * SEC,
        Duration::from_millis(20),
        || {
            bridge(&mut cl, "h1")
                .filter(|(v, _)| v["pid"] == me)
                .map(|_| ((), Instant::now()))
        },
        || format!("no takeover: {}", h.bridge_log()),
    );
    eprintln!(
        "renewals stopped -> newcomer holds the host after {:?}",
        at - stopped
    );
    assert!(at - stopped <= 4 * SEC + 500 * Duration::from_millis(1));
    published(&c, &h, 1);
}

#[test]
fn keys_deleted_or_changed_by_someone_else_are_put_back_within_1s() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "15");
    h.add_agent("codex", "15");
    plant_dead(&h, "done", 3);
    h.publish(&urls, 3);
    published(&c, &h, 3);
    let mut cl = client(&c, 1, SEC);
    let agents = |m: &BTreeMap<String, (Value, i64)>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| !k.ends_with(".bridge"))
            .map(|(k, (v, _))| (k.clone(), v["state"].as_str().unwrap_or("").to_owned()))
            .collect()
    };
    let before = agents(&host_keys(&mut cl, "h1"));
    assert_eq!(before.len(), 3);

    let o = c.etcdctl(&["del", "--prefix", "/pidbeat/h1/"]);
    assert!(o.status.success(), "{}", o.stderr);
    let deleted = Instant::now();
    let at = poll(
        5 * SEC,
        Duration::from_millis(10),
        || {
            let now = host_keys(&mut cl, "h1");
            (agents(&now) == before && now.contains_key("/pidbeat/h1/.bridge")).then(Instant::now)
        },
        || format!("keys not put back: {}", h.bridge_log()),
    );
    eprintln!(
        "etcdctl del --prefix -> all keys back after {:?}",
        at - deleted
    );
    assert!(at - deleted <= SEC, "back after {:?}", at - deleted);

    // A value changed by hand.
    let o = c.etcdctl(&["put", "/pidbeat/h1/pi", "garbage"]);
    assert!(o.status.success());
    let changed = Instant::now();
    let at = poll(
        5 * SEC,
        Duration::from_millis(10),
        || (agents(&host_keys(&mut cl, "h1")) == before).then(Instant::now),
        || format!("pi not put back: {}", h.bridge_log()),
    );
    eprintln!("etcdctl put garbage -> put back after {:?}", at - changed);
    assert!(at - changed <= SEC);
    let log = h.bridge_log();
    assert!(
        log.contains("was deleted or changed by someone else")
            && log.contains("changed by someone else (pi)"),
        "{log}"
    );
    // The bridge still holds the host, and is still running.
    assert!(
        h.bridge
            .as_mut()
            .unwrap()
            .child()
            .try_wait()
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_bridge_whose_host_another_bridge_took_stops_with_exit_1() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "15");
    h.publish(&urls, 3);
    published(&c, &h, 1);
    static RENEW: AtomicBool = AtomicBool::new(true);
    RENEW.store(true, Ordering::SeqCst);
    // Another bridge takes the host (its claim replaces ours).
    let theirs = plant_foreign_holder(&c, "h1", &RENEW);
    let taken = Instant::now();
    let status = h
        .bridge
        .as_mut()
        .unwrap()
        .wait_timeout(5 * SEC)
        .unwrap_or_else(|| panic!("the bridge did not stop: {}", h.bridge_log()));
    let took = taken.elapsed();
    RENEW.store(false, Ordering::SeqCst);
    eprintln!("host taken by another bridge -> this one exited after {took:?}");
    assert_eq!(status.code(), Some(1), "{}", h.bridge_log());
    assert!(took <= 2 * SEC, "{took:?}");
    let log = h.bridge_log();
    assert!(
        log.contains("another bridge now holds /pidbeat/h1/.bridge: PID 4242"),
        "{log}"
    );
    // It overwrote nothing on the way out: the other bridge's claim and the verdicts stand.
    let mut cl = client(&c, 1, SEC);
    let (v, lease) = bridge(&mut cl, "h1").unwrap();
    assert_eq!((v["pid"].as_u64(), lease), (Some(4242), theirs));
    assert!(host_keys(&mut cl, "h1").contains_key("/pidbeat/h1/pi"));
}

/// Events on `prefix` from `from`, as they come (a thread per watch; it ends with the
/// cluster).
fn watch_events(
    c: &Cluster,
    prefix: &str,
    from: i64,
) -> mpsc::Receiver<(i64, EventKind, String, Vec<u8>)> {
    let mut cl = client(c, 2, SEC);
    let end = keys::prefix_end(prefix.as_bytes());
    let mut w = cl.watch(prefix.as_bytes(), &end, from).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(resp) = w.recv() {
            for e in resp.events {
                let ev = (e.kv.mod_revision, e.kind, e.kv.key, e.kv.value);
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn after_a_new_lease_verdicts_reach_etcd_before_bridge_past_the_txn_limit() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    // 150 verdicts: more than one transaction can carry.
    for k in 0..150 {
        plant_dead(&h, &format!("agent-{k:03}"), k % 256);
    }
    let live = ["a1", "a2", "a3"];
    for a in live {
        h.add_agent(a, "1");
    }
    h.publish(&urls, 3);
    published(&c, &h, 153);
    let reader = Reader::spawn(
        &h.sb,
        &["ps", "--etcd", &c.urls_from(1), "--watch", "--json"],
        "ps-watch",
    );
    reader.line(5 * SEC).expect("a first frame");
    // The bridge is cut off (stopped) until its lease expires; its agents die meanwhile.
    let mut cl = client(&c, 1, SEC);
    stop(h.bridge_pid());
    poll(
        10 * SEC,
        Duration::from_millis(50),
        || bridge(&mut cl, "h1").is_none().then_some(()),
        || "the lease did not expire".into(),
    );
    for a in live {
        h.kill9(a);
        wait_record(&h.sb.record_path(a), 5 * SEC, |v| status_is(v, "dead"));
    }
    let rev = c.revision();
    let events = watch_events(&c, "/pidbeat/h1/", rev + 1);
    cont(h.bridge_pid());
    let healed = Instant::now();
    // The bridge is back: every death must be in etcd at or before the revision `.bridge`
    // comes back at.
    let mut dead_at: BTreeMap<String, i64> = BTreeMap::new();
    let bridge_at = loop {
        let (r, kind, key, value) = events
            .recv_timeout(10 * SEC)
            .unwrap_or_else(|_| panic!("no .bridge after the heal: {}", h.bridge_log()));
        if key.ends_with("/.bridge") && kind == EventKind::Put {
            break r;
        }
        if String::from_utf8_lossy(&value).contains(r#""state":"dead""#) {
            dead_at.insert(key, r);
        }
    };
    let back = healed.elapsed();
    for a in live {
        let k = keys::agent_key("h1", a);
        assert!(
            dead_at.get(&k).is_some_and(|r| *r <= bridge_at),
            "{k} dead at {:?}, .bridge back at {bridge_at}",
            dead_at.get(&k)
        );
    }
    // The deaths reach a reader, with their exit statuses, within 1 s of the heal.
    let (v, at) = poll_ps_etcd(&h.sb, &c.urls_from(2), 5 * SEC, "the deaths", |v| {
        live.iter().all(|a| {
            v.get(&format!("h1/{a}"))
                .is_some_and(|o| o["state"] == "dead")
        })
    });
    eprintln!(
        ".bridge back {back:?} after the heal at revision {bridge_at}; deaths in a reader's \
         view after {:?}",
        at - healed
    );
    assert!(at - healed <= SEC, "{:?}", at - healed);
    for a in live {
        assert_eq!(v[&format!("h1/{a}")]["exit"]["signal"], 9);
    }
    // No frame of the watching reader showed a dead agent alive after the bridge was cut off.
    std::thread::sleep(500 * Duration::from_millis(1));
    let mut cut = false;
    for (_, line) in reader.lines.try_iter() {
        let frame: Value = serde_json::from_str(&line).expect("a JSON frame per line");
        for o in frame.as_array().unwrap() {
            if !live.contains(&o["agent"].as_str().unwrap_or("")) {
                continue;
            }
            match o["state"].as_str().unwrap() {
                "unreachable" => cut = true,
                "alive" if cut => panic!("a frame showed {} alive after the heal", o["agent"]),
                _ => {}
            }
        }
    }
    assert!(cut, "the reader never saw the host cut off");
}

#[test]
fn a_guarded_transaction_sent_again_commits_once() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut cl = client(&c, 0, SEC);
    let key = keys::bridge_key("h1");
    let base = cl.put(key.as_bytes(), b"v1", 0).unwrap();
    let compare = [Compare::ModRevision {
        key: key.clone(),
        revision: base,
    }];
    let ops = [
        Op::Put {
            key: keys::agent_key("h1", "a"),
            value: b"dead".to_vec(),
            lease: 0,
        },
        Op::Put {
            key: key.clone(),
            value: b"v2".to_vec(),
            lease: 0,
        },
    ];
    let read = [Op::Get { key: key.clone() }];
    let first = cl.txn_if(&compare, &ops, &read).unwrap();
    assert!(first.succeeded);
    assert!(first.gets.is_empty(), "the success branch reads nothing");
    // Its answer lost, the same transaction is sent again: it does not commit, and the
    // failure branch shows the first one's `.bridge`, by which the sender knows it did.
    let again = cl.txn_if(&compare, &ops, &read).unwrap();
    assert!(!again.succeeded);
    assert_eq!(again.revision, first.revision, "committed twice");
    let kv = again.gets[0].as_ref().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (&b"v2"[..], first.revision)
    );
    // The other comparisons, against etcd itself: a missing key has create revision 0 and
    // no lease.
    let lease = cl.grant(5).unwrap();
    cl.put(b"/x/leased", b"1", lease).unwrap();
    for (c, holds) in [
        (
            Compare::CreateRevision {
                key: "/x/none".into(),
                revision: 0,
            },
            true,
        ),
        (
            Compare::CreateRevision {
                key: "/x/leased".into(),
                revision: 0,
            },
            false,
        ),
        (
            Compare::Lease {
                key: "/x/leased".into(),
                lease,
            },
            true,
        ),
        (
            Compare::Lease {
                key: "/x/none".into(),
                lease: 0,
            },
            true,
        ),
        (
            Compare::ModRevision {
                key: "/x/none".into(),
                revision: 0,
            },
            true,
        ),
    ] {
        let r = cl.txn_if(std::slice::from_ref(&c), &[], &[]).unwrap();
        assert_eq!(r.succeeded, holds, "{c:?}");
    }
    // A lease's time to live, and -1 once it is gone.
    assert!((1..=5).contains(&cl.time_to_live(lease).unwrap()));
    cl.revoke(lease).unwrap();
    assert_eq!(cl.time_to_live(lease).unwrap(), -1);
}
