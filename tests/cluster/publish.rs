//! `publish`, `ps --etcd` and `wait --etcd` doing their everyday job: verdicts (not raw
//! files) in etcd, the key layout and values, clean-up at start, removal, the output formats,
//! and the command line's refusals.

use std::time::Duration;

use serde_json::Value;

use super::client::client;
use super::etcd_fixture::Cluster;
use super::hosts::*;
use super::keys;
use super::serial;
use crate::common::*;
use crate::require_etcd;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn publishes_verdicts_and_readers_see_them() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    // A key of an agent that has no record here any more: removed when the bridge starts.
    client(&c, 0, SEC)
        .put(keys::agent_key("h1", "forgotten").as_bytes(), b"{}", 0)
        .unwrap();
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.add_agent("codex", "1");
    // A death recorded before the bridge started (planted as a watcher writes it).
    let ms = now_ms();
    let done = format!(
        r#"{{"ts":{},"pid":1234,"status":"dead","ts_ms":{ms},"seq":3,"interval":15.0,"backend":"pidfd","start_time":1,"exit":{{"code":3,"signal":null,"core":false}},"died_ms":{ms}}}"#,
        ms / 1000
    );
    std::fs::write(h.sb.record_path("done"), done + "\n").unwrap();
    h.publish(&urls, 3);
    let (v, _) = poll_ps_etcd(&h.sb, &c.urls_from(1), 5 * SEC, "three agents", |v| {
        v.len() == 3
    });
    assert_eq!(
        states(&v),
        [
            ("h1/codex", "alive"),
            ("h1/done", "dead"),
            ("h1/pi", "alive")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into()
    );
    // The value is ps --json's object plus host: host, agent, state, age_ms, the record.
    let pi = &v["h1/pi"];
    let keys_in_order: Vec<&str> = pi.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "host",
        "agent",
        "state",
        "age_ms",
        "ts",
        "pid",
        "status",
        "watcher_pid",
    ] {
        assert!(keys_in_order.contains(&k), "{k} missing in {pi}");
    }
    assert_eq!(pi["pid"], h.agents["pi"].target.pid());
    assert_entry_schema(&v);
    assert_eq!(v["h1/done"]["exit"]["code"], 3);
    // Raw: the bridge key carries the lease, agent keys carry none.
    let mut cl = client(&c, 2, SEC);
    let prefix = keys::host_prefix("h1");
    let kvs = cl
        .range(
            prefix.as_bytes(),
            Some(&keys::prefix_end(prefix.as_bytes())),
            0,
        )
        .unwrap()
        .kvs;
    let leases: Vec<(String, bool)> = kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.lease != 0))
        .collect();
    assert_eq!(
        leases,
        [
            ("/pidbeat/h1/.bridge", true),
            ("/pidbeat/h1/codex", false),
            ("/pidbeat/h1/done", false),
            ("/pidbeat/h1/pi", false)
        ]
        .map(|(k, l)| (k.to_owned(), l))
    );
    let raw = String::from_utf8(kvs[3].value.clone()).unwrap();
    assert!(
        raw.starts_with(r#"{"host":"h1","agent":"pi","state":"alive","age_ms":"#),
        "{raw}"
    );
    serde_json::from_str::<Value>(&raw).expect("the value is JSON");

    // The table and Prometheus read the same view.
    let o = h.sb.cmd().args(["ps", "--etcd", &urls]).finish();
    let table = o.utf8_stdout().to_owned();
    assert!(table.starts_with("AGENT"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("h1/done") && l.contains("dead") && l.contains("code 3")),
        "{table}"
    );
    let o = h.sb.cmd().args(["ps", "--etcd", &urls, "--prom"]).finish();
    let prom = o.utf8_stdout().to_owned();
    assert!(
        prom.contains(r#"pidbeat_agent_state{agent="h1/pi",state="unreachable"} 0"#),
        "{prom}"
    );
    // A named agent etcd has no key for: the others are printed, exit 1.
    let o =
        h.sb.cmd()
            .args(["ps", "--etcd", &urls, "h1/pi", "h9/x"])
            .finish();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("h9/x: no key in etcd"));

    // A death reaches wait --etcd; a removed record removes the key.
    let w = Reader::spawn(
        &h.sb,
        &["wait", "--etcd", &c.urls_from(2), "h1/pi", "h1/done"],
        "wait",
    );
    let (_, first) = w.line(5 * SEC).expect("wait prints the dead agent at once");
    assert_eq!(first, "h1/done dead code 3");
    h.kill9("pi");
    let (_, line) = w.line(5 * SEC).expect("a line for the killed agent");
    assert!(
        line == "h1/pi dead signal 9" || line == "h1/pi dead",
        "{line}"
    );
    // `forget` removes an ended agent's record, and with it the key; so does a record
    // removed by hand.
    let o =
        h.sb.cmd()
            .args(["forget", "--run-dir"])
            .arg(h.sb.run_dir())
            .arg("pi")
            .finish();
    assert!(o.status.success(), "{}", &o.stderr);
    std::fs::remove_file(h.sb.record_path("codex")).unwrap();
    poll_ps_etcd(&h.sb, &urls, 5 * SEC, "pi and codex removed", |v| {
        !v.contains_key("h1/codex") && !v.contains_key("h1/pi")
    });

    // A new agent is published as it appears.
    h.add_agent("late", "1");
    poll_ps_etcd(&h.sb, &urls, 5 * SEC, "late alive", |v| {
        v.get("h1/late").is_some_and(|o| o["state"] == "alive")
    });
    // SIGTERM: a clean stop revokes the lease, so the host is unreachable at once.
    let bridge = h.bridge.as_mut().unwrap();
    signal(bridge.pid(), Signal::TERM);
    assert_eq!(bridge.wait_timeout(5 * SEC).and_then(|s| s.code()), Some(0));
    let (v, _) = poll_ps_etcd(
        &h.sb,
        &urls,
        2 * SEC,
        "unreachable after a clean stop",
        |v| {
            v.get("h1/late")
                .is_some_and(|o| o["state"] == "unreachable")
        },
    );
    assert_eq!(v["h1/done"]["state"], "dead");
    assert_entry_schema(&v);
}

#[test]
fn the_command_line_refuses_what_it_cannot_do() {
    let sb = Sandbox::new();
    let run = |args: &[&str]| sb.cmd().args(args).finish();
    for (args, says) in [
        (&["ps", "h1/pi"][..], "add --etcd"),
        (&["ps", "--etcd", "http://127.0.0.1:1", "pi"], "HOST/AGENT"),
        (&["wait", "h1/pi"], "add --etcd"),
        (
            &["ps", "--etcd", "http://127.0.0.1:1", "--user", "u"],
            "PIDBEAT_ETCD_PASSWORD",
        ),
        (&["publish", "--host", "h1"], "--etcd"),
        (
            &["publish", "--etcd", "http://127.0.0.1:1", "--host", "a/b"],
            "host name",
        ),
        (
            &["publish", "--etcd", "http://127.0.0.1:1", "--ttl", "1"],
            "--ttl",
        ),
        (
            &["ps", "--etcd", "http://127.0.0.1:1", "--watch", "--prom"],
            "--prom",
        ),
        (&["ps", "--cert", "c.pem"], "--etcd"),
    ] {
        let o = run(args);
        let err = &o.stderr;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // No member answers: a runtime error naming what failed.
    let o = run(&["ps", "--etcd", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("cannot read the fleet from etcd"));
}

#[test]
fn per_host_credentials_from_a_file_or_the_environment() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    super::client::enable_per_host_auth(&c, &["h1", "h2"]);
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    let pw = h.sb.path("h1.password");
    std::fs::write(&pw, "pw-h1\n").unwrap();
    // The password never appears on the command line.
    let mut bridge = h.publish_cmd(&urls, 3);
    bridge
        .arg("--user")
        .arg("h1")
        .arg("--password-file")
        .arg(&pw);
    let log = std::fs::File::create(h.sb.path("bridge.log")).unwrap();
    let _bridge = Guard::spawn(bridge.stdin(std::process::Stdio::null()).stderr(log));
    let ps = |env_pw: &str| {
        h.sb.cmd()
            .env("PIDBEAT_ETCD_PASSWORD", env_pw)
            .args(["ps", "--etcd", &urls, "--json", "--user", "reader"])
            .finish()
    };
    poll(
        5 * SEC,
        Duration::from_millis(50),
        || {
            let o = ps("pw-reader");
            (o.status.success() && o.stdout.contains(r#""state":"alive""#)).then_some(())
        },
        || {
            format!(
                "h1/pi alive for the reader; bridge log: {}",
                std::fs::read_to_string(h.sb.path("bridge.log")).unwrap_or_default()
            )
        },
    );
    let o = ps("wrong");
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("authentication failed"), "{}", &o.stderr);

    // h1's credentials cannot publish as h2: refused at once, exit 1, saying why.
    let h2 = Host::new("h2");
    let o = h2
        .publish_cmd(&urls, 3)
        .args(["--user", "h1", "--password-file"])
        .arg(&pw)
        .finish();
    assert_eq!(o.status.code(), Some(1));
    let err = &o.stderr;
    assert!(
        err.contains("permission denied") && err.contains("/pidbeat/h2/"),
        "{err}"
    );
}

#[test]
fn a_bridge_started_while_etcd_is_down_publishes_once_it_is_back() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    for i in 0..super::etcd_fixture::MEMBERS {
        c.stop(i);
    }
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.publish(&c.urls_from(0), 3);
    // Before it has measured the link, the bridge gives each member 1 s: its first request
    // has failed on all three after 3 s.
    std::thread::sleep(4 * SEC);
    assert!(
        h.bridge
            .as_mut()
            .unwrap()
            .child()
            .try_wait()
            .unwrap()
            .is_none(),
        "the bridge gave up"
    );
    h.kill9("pi");
    for i in 0..super::etcd_fixture::MEMBERS {
        c.cont(i);
    }
    let (v, _) = poll_ps_etcd(
        &h.sb,
        &c.urls_from(1),
        10 * SEC,
        "the death published",
        |v| v.get("h1/pi").is_some_and(|o| o["state"] == "dead"),
    );
    assert_eq!(v["h1/pi"]["exit"]["signal"], 9);
    let log = h.bridge_log();
    assert_eq!(
        log.matches("local records are unaffected").count(),
        1,
        "{log}"
    );
    assert!(log.contains("etcd answers again"), "{log}");
}

#[test]
fn a_lost_lease_is_replaced_and_every_key_put_again() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let urls = c.urls_from(0);
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.add_agent("codex", "1");
    h.publish(&urls, 3);
    poll_ps_etcd(&h.sb, &urls, 5 * SEC, "two alive", |v| {
        v.len() == 2 && v.values().all(|o| o["state"] == "alive")
    });
    // Someone revokes the host's lease and deletes a key behind the bridge's back.
    let mut cl = client(&c, 1, SEC);
    let bridge_key = keys::bridge_key("h1");
    let lease = cl.range(bridge_key.as_bytes(), None, 0).unwrap().kvs[0].lease;
    let o = c.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    assert!(o.status.success(), "{}", &o.stderr);
    cl.delete(keys::agent_key("h1", "codex").as_bytes(), None)
        .unwrap();
    let revoked = std::time::Instant::now();
    // The next keep-alive (TTL/5) finds the lease gone: a new one, and everything again.
    let (_, at) = poll_ps_etcd(&h.sb, &urls, 5 * SEC, "both alive again", |v| {
        v.len() == 2 && v.values().all(|o| o["state"] == "alive")
    });
    eprintln!("lease revoked -> all keys back after {:?}", at - revoked);
    assert!(at - revoked < 2 * SEC);
    let new_lease = cl.range(bridge_key.as_bytes(), None, 0).unwrap().kvs[0].lease;
    assert_ne!(new_lease, lease);
    assert!(
        h.bridge_log().contains("granting a new one"),
        "{}",
        h.bridge_log()
    );
}

#[test]
fn a_reader_whose_history_was_compacted_reads_everything_again() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let follower = (c.wait_leader(5 * SEC) + 1) % super::etcd_fixture::MEMBERS;
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.add_agent("codex", "1");
    // The bridge on another member than the reader's.
    h.publish(&c.urls_from((follower + 1) % 3), 3);
    let reader_urls = c.urls_from(follower);
    poll_ps_etcd(&h.sb, &reader_urls, 5 * SEC, "two alive", |v| v.len() == 2);
    let watch = Reader::spawn(
        &h.sb,
        &["ps", "--etcd", &reader_urls, "--watch", "--json"],
        "ps-watch",
    );
    watch.line(5 * SEC).expect("a first frame");
    // The reader's member hangs; meanwhile a death is published and history compacted past
    // it, so the reader cannot resume from where it was.
    c.stop(follower);
    h.kill9("pi");
    let mut cl = client(&c, (follower + 1) % 3, SEC);
    poll(
        5 * SEC,
        Duration::from_millis(20),
        || {
            cl.range(keys::agent_key("h1", "pi").as_bytes(), None, 0)
                .ok()
                .filter(|r| String::from_utf8_lossy(&r.kvs[0].value).contains(r#""state":"dead""#))
                .map(|r| r.revision)
        },
        || "the death in etcd".into(),
    );
    cl.put(b"/elsewhere", b"x", 0).unwrap();
    let rev = cl.put(b"/elsewhere", b"y", 0).unwrap();
    let o = c.etcdctl(&["compact", &rev.to_string()]);
    assert!(o.status.success(), "{}", &o.stderr);
    let (_, frame) = poll(
        10 * SEC,
        Duration::from_millis(10),
        || {
            watch
                .line(Duration::from_millis(10))
                .filter(|(_, l)| l.contains(r#""state":"dead""#))
        },
        || format!("no frame with the death; reader said: {}", watch.stderr()),
    );
    assert!(frame.contains(r#""agent":"pi","state":"dead""#), "{frame}");
    c.cont(follower);
    let said = watch.stderr();
    assert!(said.contains("watching through"), "{said}");
}
