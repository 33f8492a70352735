//! The gateway client (`pidbeat::cluster::client`) against the real cluster: the calls, the
//! lease, watch resumption on another member, `hasleader`, compaction, member rotation, and
//! the fixture's own cleanup.

use std::time::{Duration, Instant};

use etcd_gateway::{Client, Config, Error, EventKind, Tls};

use super::etcd_fixture::{Cluster, MEMBERS};
use super::serial;
use crate::common::Finish;
use crate::require_etcd;

pub fn client(c: &Cluster, first: usize, timeout: Duration) -> Client {
    Client::new(&Config {
        endpoints: c.urls_from(first).split(',').map(str::to_owned).collect(),
        tls: Tls::default(),
        credentials: None,
        timeout,
    })
    .unwrap()
}

const T: Duration = Duration::from_millis(500);

/// `f` until it succeeds, for up to 5 s (an election takes one or two).
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("still failing after 5 s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn fixture_starts_three_members_and_leaves_nothing_behind() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let pids = c.pids();
    assert_eq!(pids.len(), MEMBERS);
    let leader = c.wait_leader(Duration::from_secs(5));
    assert!(leader < MEMBERS);
    let dir = c.dir();
    drop(c);
    for pid in pids {
        // Reaped, not zombies: the PID names nothing (or a newer process).
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || crate::common::proc_state(pid).is_none(),
            "etcd {pid} left behind"
        );
    }
    assert!(!dir.exists(), "data dirs left behind");
}

#[test]
fn put_range_delete_and_revisions() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut cl = client(&c, 0, T);
    let r1 = cl.put(b"/pidbeat/h1/a", b"one", 0).unwrap();
    let r2 = cl.put(b"/pidbeat/h1/b", b"two", 0).unwrap();
    cl.put(b"/pidbeat/h2/a", b"three", 0).unwrap();
    assert!(r2 > r1);
    // Read through another member: the store is the cluster's, not the member's.
    let mut other = client(&c, 2, T);
    let prefix = b"/pidbeat/h1/";
    let end = etcd_gateway::prefix_end(prefix);
    let r = other.range(prefix, Some(&end), 0).unwrap();
    let got: Vec<_> = r
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            ("/pidbeat/h1/a", &b"one"[..]),
            ("/pidbeat/h1/b", &b"two"[..])
        ]
    );
    // At an older revision the later put is not there.
    let old = other.range(prefix, Some(&end), r1).unwrap();
    assert_eq!(old.kvs.len(), 1);
    let deleted_at = cl.delete(prefix, Some(&end)).unwrap();
    assert_eq!(c.revision(), deleted_at);
    assert!(other.range(prefix, Some(&end), 0).unwrap().kvs.is_empty());
    assert_eq!(other.range(b"/pidbeat/h2/a", None, 0).unwrap().kvs.len(), 1);
}

#[test]
fn a_lease_keeps_its_keys_while_renewed_and_drops_them_when_not() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut cl = client(&c, 0, T);
    let lease = cl.grant(2).unwrap();
    cl.put(b"/pidbeat/h1/.bridge", b"{}", lease).unwrap();
    let kv = &cl.range(b"/pidbeat/h1/.bridge", None, 0).unwrap().kvs[0];
    assert_eq!(kv.lease, lease);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert!(cl.keepalive(lease).unwrap() > 0);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        cl.range(b"/pidbeat/h1/.bridge", None, 0).unwrap().kvs.len(),
        1
    );
    // Not renewed: gone after its TTL (etcd checks expiry every 500 ms).
    let stopped = Instant::now();
    while !cl
        .range(b"/pidbeat/h1/.bridge", None, 0)
        .unwrap()
        .kvs
        .is_empty()
    {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "leased key outlived its TTL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "expired after {waited:?}"
    );
    // A keepalive for a lease etcd no longer has says so (TTL 0), it is no error.
    assert_eq!(cl.keepalive(lease).unwrap(), 0);
}

#[test]
fn a_watch_resumes_on_another_member_without_losing_an_event() {
    require_etcd!();
    let _s = serial();
    let mut c = Cluster::start();
    let prefix = b"/pidbeat/";
    let end = etcd_gateway::prefix_end(prefix);
    let mut writer = client(&c, 1, T);
    let mut reader = client(&c, 0, T);
    let start = reader.range(prefix, Some(&end), 0).unwrap().revision;
    let mut w = reader.watch(prefix, &end, start + 1).unwrap();
    assert_eq!(w.member, c.url(0));
    writer.put(b"/pidbeat/h1/a", b"1", 0).unwrap();
    let first = w.recv().unwrap();
    assert_eq!(first.events[0].kv.key, "/pidbeat/h1/a");
    let mut last = first.revision;

    // The watched member dies; meanwhile more happens (retried while the cluster elects a
    // new leader, if member 0 led).
    c.kill(0);
    drop(w);
    retry(|| writer.put(b"/pidbeat/h1/b", b"2", 0));
    retry(|| writer.delete(b"/pidbeat/h1/a", None));
    let mut w = reader.watch(prefix, &end, last + 1).unwrap();
    assert_ne!(w.member, c.url(0), "resumed on the dead member");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let resp = w.recv().unwrap();
        last = resp.revision;
        for e in resp.events {
            seen.push((e.kind, e.kv.key, e.prev.map(|p| p.value)));
        }
    }
    assert_eq!(
        seen,
        [
            (EventKind::Put, "/pidbeat/h1/b".to_owned(), None),
            (
                EventKind::Delete,
                "/pidbeat/h1/a".to_owned(),
                Some(b"1".to_vec())
            ),
        ]
    );
    assert!(last > first.revision);
}

#[test]
fn hasleader_makes_a_member_without_quorum_answer_at_once() {
    require_etcd!();
    let _s = serial();
    let mut c = Cluster::start();
    let prefix = b"/pidbeat/";
    let end = etcd_gateway::prefix_end(prefix);
    let mut only0 = Client::new(&Config {
        endpoints: vec![c.url(0)],
        tls: Tls::default(),
        credentials: None,
        timeout: Duration::from_secs(3),
    })
    .unwrap();
    let rev = only0.range(prefix, Some(&end), 0).unwrap().revision;
    let mut w = only0.watch(prefix, &end, rev + 1).unwrap();
    c.kill(1);
    c.kill(2);
    // The open watch is cancelled with "no leader" once the member notices (an election
    // timeout or two), rather than staying open and silent.
    let t = Instant::now();
    let err = w.recv().unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(ref m) if m.contains("no leader")),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no-leader took {:?}",
        t.elapsed()
    );
    // New calls are refused at once, well inside their 3 s timeout, not served stale.
    let t = Instant::now();
    let err = only0.range(prefix, Some(&end), 0).unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(ref m) if m.contains("no leader")),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(
        only0.put(b"/pidbeat/x", b"1", 0),
        Err(Error::Unavailable(_))
    ));
    // Quorum back: the same client works again.
    c.restart(1);
    c.wait_healthy(Duration::from_secs(10));
    only0.put(b"/pidbeat/x", b"1", 0).unwrap();
}

#[test]
fn a_hung_member_costs_one_timeout_then_the_next_member_answers() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    // A hung follower: the others keep quorum and a leader. (A hung leader also costs an
    // election, which `publish` rides out by retrying; see the publish tests.)
    let follower = (c.wait_leader(Duration::from_secs(5)) + 1) % MEMBERS;
    let mut cl = client(&c, follower, Duration::from_millis(300));
    cl.put(b"/pidbeat/h1/a", b"1", 0).unwrap();
    assert_eq!(cl.member(), c.url(follower));
    c.stop(follower);
    let t = Instant::now();
    cl.put(b"/pidbeat/h1/a", b"2", 0).unwrap();
    let took = t.elapsed();
    assert_ne!(cl.member(), c.url(follower));
    assert!(took < Duration::from_millis(1500), "put took {took:?}");
    // The client stays on the member that answered.
    let t = Instant::now();
    cl.put(b"/pidbeat/h1/a", b"3", 0).unwrap();
    assert!(t.elapsed() < Duration::from_millis(300));
    c.cont(follower);
}

#[test]
fn a_watch_from_compacted_history_says_so() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let mut cl = client(&c, 0, T);
    let r1 = cl.put(b"/pidbeat/h1/a", b"1", 0).unwrap();
    let r2 = cl.put(b"/pidbeat/h1/a", b"2", 0).unwrap();
    let o = c.etcdctl(&["compact", &r2.to_string()]);
    assert!(o.status.success(), "{}", &o.stderr);
    let end = etcd_gateway::prefix_end(b"/pidbeat/");
    // etcd creates the watch, then cancels it with the compaction revision.
    let err = match cl.watch(b"/pidbeat/", &end, r1) {
        Err(e) => e,
        Ok(mut w) => w.recv().expect_err("events from compacted history"),
    };
    assert_eq!(err, Error::Compacted(r2));
}

/// etcdctl, failing the test on error.
fn ctl(c: &Cluster, args: &[&str]) {
    let o = c.etcdctl(args);
    assert!(
        o.status.success(),
        "etcdctl {args:?}: {}{}",
        &o.stdout,
        &o.stderr
    );
}

/// README's per-host setup: one role per host that may write only its own prefix (and read
/// the fleet), a reader role, then auth on.
pub fn enable_per_host_auth(c: &Cluster, hosts: &[&str]) {
    ctl(c, &["user", "add", "root", "--new-user-password=rootpw"]);
    ctl(c, &["user", "grant-role", "root", "root"]);
    for h in hosts {
        ctl(c, &["role", "add", h]);
        let own = format!("/pidbeat/{h}/");
        ctl(
            c,
            &[
                "role",
                "grant-permission",
                h,
                "--prefix=true",
                "readwrite",
                &own,
            ],
        );
        ctl(
            c,
            &[
                "role",
                "grant-permission",
                h,
                "--prefix=true",
                "read",
                "/pidbeat/",
            ],
        );
        ctl(
            c,
            &["user", "add", h, &format!("--new-user-password=pw-{h}")],
        );
        ctl(c, &["user", "grant-role", h, h]);
    }
    ctl(c, &["role", "add", "fleet-reader"]);
    ctl(
        c,
        &[
            "role",
            "grant-permission",
            "fleet-reader",
            "--prefix=true",
            "read",
            "/pidbeat/",
        ],
    );
    ctl(
        c,
        &["user", "add", "reader", "--new-user-password=pw-reader"],
    );
    ctl(c, &["user", "grant-role", "reader", "fleet-reader"]);
    ctl(c, &["auth", "enable"]);
}

pub fn as_user(c: &Cluster, user: &str, password: &str) -> Client {
    Client::new(&Config {
        endpoints: c.urls_from(0).split(',').map(str::to_owned).collect(),
        tls: Tls::default(),
        credentials: Some(etcd_gateway::Credentials {
            user: user.into(),
            password: password.into(),
        }),
        timeout: Duration::from_secs(2),
    })
    .unwrap()
}

#[test]
fn a_host_role_cannot_write_another_hosts_prefix() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    enable_per_host_auth(&c, &["h1", "h2"]);
    let mut h1 = as_user(&c, "h1", "pw-h1");
    let lease = h1.grant(5).unwrap();
    h1.put(b"/pidbeat/h1/.bridge", b"{}", lease).unwrap();
    h1.put(b"/pidbeat/h1/a", b"alive", 0).unwrap();
    for key in [
        &b"/pidbeat/h2/a"[..],
        b"/pidbeat/h2/.bridge",
        b"/pidbeat/other",
        b"/elsewhere",
    ] {
        match h1.put(key, b"forged", 0) {
            Err(Error::Refused { code: 7, message }) => {
                assert!(message.contains("permission denied"))
            }
            other => panic!(
                "write to {:?} as h1: {other:?}",
                String::from_utf8_lossy(key)
            ),
        }
    }
    let end = etcd_gateway::prefix_end(b"/pidbeat/h2/");
    assert!(matches!(
        h1.delete(b"/pidbeat/h2/", Some(&end)),
        Err(Error::Refused { code: 7, .. })
    ));
    // Every host may read the fleet; a reader may only read.
    let mut reader = as_user(&c, "reader", "pw-reader");
    let all = etcd_gateway::prefix_end(b"/pidbeat/");
    assert_eq!(
        reader.range(b"/pidbeat/", Some(&all), 0).unwrap().kvs.len(),
        2
    );
    assert!(matches!(
        reader.put(b"/pidbeat/h1/a", b"x", 0),
        Err(Error::Refused { code: 7, .. })
    ));
    // A wrong password or no user at all gets nothing.
    assert!(matches!(
        as_user(&c, "h1", "wrong").range(b"/pidbeat/", Some(&all), 0),
        Err(Error::Refused { .. })
    ));
    assert!(matches!(
        client(&c, 0, T).range(b"/pidbeat/", Some(&all), 0),
        Err(Error::Refused { .. })
    ));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub fn make_certs(dir: &std::path::Path) {
    let script = r#"
set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=pidbeat-test-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
openssl req $ec -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl req $ec -keyout client.key -out client.csr -subj /CN=h1 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
"#;
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .finish();
    assert!(o.status.success(), "openssl: {}", &o.stderr);
}

#[test]
fn tls_with_client_certificates() {
    require_etcd!();
    if !crate::common::have("openssl", "openssl") {
        return;
    }
    let _s = serial();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f);
    let tls = Tls {
        cacert: Some(p("ca.pem")),
        cert: Some(p("client.pem")),
        key: Some(p("client.key")),
    };
    let extra: Vec<String> = [
        "--cert-file",
        p("server.pem").to_str().unwrap(),
        "--key-file",
        p("server.key").to_str().unwrap(),
        "--trusted-ca-file",
        p("ca.pem").to_str().unwrap(),
        "--client-cert-auth",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = Cluster::start_with(&extra, &tls);
    let endpoints: Vec<String> = c.urls_from(0).split(',').map(str::to_owned).collect();
    assert!(endpoints[0].starts_with("https://"));
    let cfg = |tls: Tls| Config {
        endpoints: endpoints.clone(),
        tls,
        credentials: None,
        timeout: Duration::from_secs(2),
    };
    let mut cl = Client::new(&cfg(tls.clone())).unwrap();
    cl.put(b"/pidbeat/h1/a", b"1", 0).unwrap();
    let end = etcd_gateway::prefix_end(b"/pidbeat/");
    let rev = cl.range(b"/pidbeat/", Some(&end), 0).unwrap().revision;
    let mut w = cl.watch(b"/pidbeat/", &end, rev + 1).unwrap();
    cl.put(b"/pidbeat/h1/a", b"2", 0).unwrap();
    assert_eq!(w.recv().unwrap().events[0].kv.value, b"2");
    // No client certificate: refused by the server. An unknown CA: refused by us.
    let no_cert = Tls {
        cert: None,
        key: None,
        ..tls.clone()
    };
    assert!(
        Client::new(&cfg(no_cert))
            .unwrap()
            .range(b"/pidbeat/", Some(&end), 0)
            .is_err()
    );
    let no_ca = Tls {
        cacert: None,
        ..tls.clone()
    };
    let mut untrusting = Client::new(&Config {
        endpoints: endpoints.clone(),
        ..cfg(no_ca)
    })
    .unwrap();
    assert!(untrusting.range(b"/pidbeat/", Some(&end), 0).is_err());
    // The same through the command line (`--cacert/--cert/--key`).
    let sb = crate::common::Sandbox::new();
    let ps = |extra: &[&std::path::Path]| {
        let mut cmd = sb.cmd();
        cmd.args(["ps", "--json", "--etcd", &endpoints.join(",")]);
        for (flag, file) in ["--cacert", "--cert", "--key"].iter().zip(extra) {
            cmd.arg(flag).arg(file);
        }
        cmd.finish()
    };
    let o = ps(&[&p("ca.pem"), &p("client.pem"), &p("client.key")]);
    assert!(o.status.success(), "{}", &o.stderr);
    let o = ps(&[&p("ca.pem")]);
    assert_eq!(o.status.code(), Some(1), "no client certificate");
    // Half a key pair is a usage mistake, said before any connection.
    let half = Tls { key: None, ..tls };
    assert!(
        Client::new(&cfg(half))
            .err()
            .unwrap()
            .contains("--cert and --key")
    );
}
