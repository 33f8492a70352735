//! A slow, stalling link between a bridge and every member (a delaying TCP relay on
//! loopback, in this process): the bridge keeps its lease (no false `unreachable`), and each
//! change commits once: no transaction is applied twice because its answer came late.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::client;
use super::etcd_fixture::{Cluster, MEMBERS};
use super::hosts::*;
use super::keys;
use super::serial;
use crate::require_etcd;
use etcd_gateway::EventKind;

const SEC: Duration = Duration::from_secs(1);

/// Forwards connections on 127.0.0.1:`port` to `target`, delivering each chunk `delay`
/// later in each direction; answers (member to client) also wait out a stall (`stall` out of
/// every `every`, from the start), as behind a lossy hop that TCP gets through late. Stalls
/// hold answers, not requests: a request held until its client gave up arrives with the
/// client's close and is dropped by the member, but an answer held past the client's timeout
/// is the case where a commit and a retry cross.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: String, delay: Duration, every: Duration, stall: Duration) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let answer_at = move |at: Instant| {
            let t = at + delay;
            let into = Duration::from_nanos(((t - start).as_nanos() % every.as_nanos()) as u64);
            if into < stall { t + (stall - into) } else { t }
        };
        let request_at = move |at: Instant| at + delay;
        let (st, socks) = (Arc::clone(&stop), Arc::clone(&sockets));
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = server.set_nodelay(true);
                let _ = client.set_nodelay(true);
                let mut s = socks.lock().unwrap();
                s.push(client.try_clone().unwrap());
                s.push(server.try_clone().unwrap());
                drop(s);
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    request_at,
                );
                pump(server, client, answer_at);
            }
        });
        Relay {
            port,
            stop,
            sockets,
        }
    }
}

/// Reads `from` as it comes; writes each chunk to `to` at `deliver_at(when read)`, in order.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    deliver_at: impl Fn(Instant) -> Instant + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in rx {
            let due = deliver_at(at);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Every event on `prefix` from revision `from` until now (read back by a watch that ends
/// once it has reached `until`).
fn events_between(c: &Cluster, prefix: &str, from: i64, until: i64) -> Vec<(i64, String, Vec<u8>)> {
    let mut cl = client(c, 2, 5 * SEC);
    let end = keys::prefix_end(prefix.as_bytes());
    let mut w = cl.watch(prefix.as_bytes(), &end, from).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(resp) = w.recv() {
            for e in resp.events {
                let value = if e.kind == EventKind::Put {
                    e.kv.value
                } else {
                    b"<deleted>".to_vec()
                };
                if tx.send((e.kv.mod_revision, e.kv.key, value)).is_err() {
                    return;
                }
            }
        }
    });
    let mut out = Vec::new();
    while out.last().is_none_or(|(r, _, _)| *r < until) {
        out.push(
            rx.recv_timeout(5 * SEC)
                .expect("the watch delivers up to the revision"),
        );
    }
    out
}

#[test]
fn a_slow_stalling_link_keeps_the_lease_and_commits_each_change_once() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let window = 30 * SEC;
    let (delay, every, stall) = (
        200 * Duration::from_millis(1),
        7 * SEC,
        2500 * Duration::from_millis(1),
    );
    let relays_started = Instant::now();
    // The relays' stalls begin at `relays_started + k * every`: the next one after `t`, a
    // little into it (a request sent then waits out the rest of the stall).
    let in_next_stall = |t: Instant| {
        let k = (t - relays_started).as_nanos() / every.as_nanos() + 1;
        relays_started + every * k as u32 + Duration::from_millis(100)
    };
    let relays: Vec<Relay> = (0..MEMBERS)
        .map(|i| {
            let target = c.url(i).trim_start_matches("http://").to_owned();
            Relay::start(target, delay, every, stall)
        })
        .collect();
    let via: Vec<String> = relays
        .iter()
        .map(|r| format!("http://127.0.0.1:{}", r.port))
        .collect();
    let mut h = Host::new("h1");
    for k in 0..100 {
        h.add_agent(&format!("a{k:02}"), "15");
    }
    let start_rev = c.revision();
    // The first claim (100 verdicts) meets a stall.
    std::thread::sleep(in_next_stall(Instant::now()) - Instant::now());
    h.publish(&via.join(","), 10);
    // Readers read the members directly: only the bridge's link is slow.
    poll_ps_etcd(&h.sb, &c.urls_from(1), 60 * SEC, "100 alive", |v| {
        v.len() == 100 && v.values().all(|o| o["state"] == "alive")
    });
    let mut cl = client(&c, 1, SEC);
    let bridge_key = keys::bridge_key("h1");
    let lease = cl.range(bridge_key.as_bytes(), None, 0).unwrap().kvs[0].lease;
    let reader = Reader::spawn(
        &h.sb,
        &["ps", "--etcd", &c.urls_from(1), "--watch", "--json"],
        "ps-watch",
    );
    let t0 = Instant::now();
    let killed = ["a10", "a50", "a90"];
    for (k, a) in killed.iter().enumerate() {
        // Each death is published as a stall begins (its exit status takes up to a second):
        // its answer comes late.
        let at = in_next_stall(t0 + window * (2 * k as u32) / 6) - Duration::from_millis(300);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        h.kill9(a);
    }
    std::thread::sleep((t0 + window).saturating_duration_since(Instant::now()));
    let (v, _) = poll_ps_etcd(&h.sb, &c.urls_from(2), 20 * SEC, "the deaths", |v| {
        killed.iter().all(|a| {
            v.get(&format!("h1/{a}"))
                .is_some_and(|o| o["state"] == "dead")
        })
    });
    for a in killed {
        assert_eq!(
            v[&format!("h1/{a}")]["exit"]["signal"],
            9,
            "{}",
            v[&format!("h1/{a}")]
        );
    }
    let end_rev = c.revision();
    // No false unreachable, and the same lease throughout.
    let mut frames = 0;
    for (_, line) in reader.lines.try_iter() {
        frames += 1;
        let f: Value = serde_json::from_str(&line).expect("a JSON frame per line");
        for o in f.as_array().unwrap() {
            assert_ne!(
                o["state"],
                "unreachable",
                "false unreachable: {o}\n{}",
                h.bridge_log()
            );
        }
    }
    assert!(frames > 0);
    let lease_now = cl.range(bridge_key.as_bytes(), None, 0).unwrap().kvs[0].lease;
    assert_eq!(lease_now, lease, "the lease was lost:\n{}", h.bridge_log());
    // Each change committed once: no key was put twice with the same value (a transaction
    // applied again puts every key of it again, `.bridge` included, with the same values).
    let events = events_between(&c, "/pidbeat/h1/", start_rev + 1, end_rev);
    let mut last: BTreeMap<&str, &[u8]> = BTreeMap::new();
    let mut revisions: Vec<i64> = events.iter().map(|(r, _, _)| *r).collect();
    revisions.dedup();
    for (r, key, value) in &events {
        let again = last
            .insert(key, value)
            .is_some_and(|prev| prev == value.as_slice());
        assert!(
            !again,
            "{key} put twice with the same value (at {r}):\n{}",
            h.bridge_log()
        );
    }
    eprintln!(
        "slow link (200 ms each way, {stall:?} stall every {every:?}, ttl 10, {window:?}): \
         {frames} frames, none unreachable, lease kept; revision {start_rev} -> {end_rev} in {} \
         transactions for 100 agents and {} deaths, none applied twice",
        revisions.len(),
        killed.len()
    );
    assert_eq!(end_rev - start_rev, revisions.len() as i64);
    drop(relays);
}
