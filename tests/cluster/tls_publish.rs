//! `publish` over TLS end to end: a bridge with `--cacert/--cert/--key` against members that
//! require client certificates; readers over TLS see its verdicts, a death with its exit
//! status, and the host unreachable after a clean stop.

use std::time::Duration;

use super::etcd_fixture::Cluster;
use super::hosts::*;
use super::serial;
use crate::common::*;
use crate::require_etcd;
use etcd_gateway::Tls;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn publish_over_tls_with_client_certificates() {
    require_etcd!();
    let _s = serial();
    let certs = tempfile::tempdir().unwrap();
    super::client::make_certs(certs.path());
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
    let urls = c.urls_from(0);
    assert!(urls.starts_with("https://"), "{urls}");
    let tls_args = |cmd: &mut std::process::Command| {
        cmd.arg("--cacert")
            .arg(p("ca.pem"))
            .arg("--cert")
            .arg(p("client.pem"))
            .arg("--key")
            .arg(p("client.key"));
    };
    let mut h = Host::new("h1");
    h.add_agent("pi", "1");
    h.add_agent("codex", "1");
    let mut bridge = h.publish_cmd(&urls, 3);
    tls_args(&mut bridge);
    let log = h.sb.path("bridge.log");
    let mut bridge = Guard::spawn(
        bridge
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    // Held here: its watcher goes on beating into the record until the target dies.
    let mut pi = h.agents.remove("pi").unwrap();
    let sb = &h.sb;
    let ps = |args: &[&str]| {
        let mut cmd = sb.cmd();
        cmd.args(["ps", "--json", "--etcd", &c.urls_from(1)])
            .args(args);
        tls_args(&mut cmd);
        run_with_deadline(cmd, 10 * SEC)
    };
    let states = |o: &Out| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|o| {
                        (
                            o["agent"].as_str().unwrap_or("").to_owned(),
                            o["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let bridge_log = || std::fs::read_to_string(&log).unwrap_or_default();
    poll(
        10 * SEC,
        Duration::from_millis(50),
        || {
            let o = ps(&[]);
            (states(&o)
                == [
                    ("codex".into(), "alive".into()),
                    ("pi".into(), "alive".into()),
                ])
            .then_some(())
        },
        || format!("both alive over TLS; bridge said: {}", bridge_log()),
    );
    // A death reaches `wait --etcd` over TLS, with its exit status.
    let mut wait = sb.cmd();
    wait.args(["wait", "--etcd", &c.urls_from(2), "h1/pi"]);
    tls_args(&mut wait);
    let waiter = std::thread::spawn(move || run_with_deadline(wait, 20 * SEC));
    std::thread::sleep(SEC);
    signal(pi.target.pid(), Signal::KILL);
    pi.target.kill();
    let o = waiter.join().unwrap();
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "h1/pi dead signal 9");
    // A clean stop revokes the lease over TLS: unreachable at once.
    signal(bridge.pid(), Signal::TERM);
    assert_eq!(bridge.wait_timeout(5 * SEC).and_then(|s| s.code()), Some(0));
    let o = ps(&[]);
    assert_eq!(
        states(&o),
        [
            ("codex".to_owned(), "unreachable".to_owned()),
            ("pi".to_owned(), "dead".to_owned())
        ],
        "{}",
        o.stderr
    );
    assert!(!bridge_log().contains("unavailable"), "{}", bridge_log());
}
