//! A real 3-member etcd cluster on 127.0.0.1 for one test: free ports, temp data dirs, a
//! unique cluster token, ready when every member's `/health` says true. It offers the faults
//! the multi-host contract is tested against: `kill` (SIGKILL), `stop`/`cont` (SIGSTOP, a hung
//! or partitioned member), `restart`, and `leader`. Drop SIGKILLs and reaps every member by
//! PID, so nothing outlives a failing test.
//!
//! etcd missing: the test is skipped by the one skip policy (`common::skip`), a failure where
//! tools are required.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_gateway::{Tls, http_agent};
use rustix::process::Signal;

use crate::common::{Finish, Guard, Out, have, signal};

pub const MEMBERS: usize = 3;

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    etcd: Option<Guard>,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    /// `--initial-cluster`.
    initial: String,
    /// Extra flags for every member (auth and TLS tests).
    extra: Vec<String>,
    scheme: &'static str,
    /// Speaks to the members for `/health` and status (with the test's TLS files).
    probe: ureq::Agent,
}

/// `etcd` and `etcdctl` on PATH? If not, the caller skips (`common::skip`).
pub fn etcd_available() -> bool {
    have("etcd", "etcd-server") && have("etcdctl", "etcd-client")
}

/// Skips the calling test (returning from it) when etcd is missing, per `etcd_available`.
#[macro_export]
macro_rules! require_etcd {
    () => {
        if !$crate::cluster::etcd_fixture::etcd_available() {
            return;
        }
    };
}

/// Ports that were free a moment ago, all held at once so they differ from each other.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[], &Tls::default())
    }

    /// `extra` flags go to every member; with `tls.cacert` the client URLs are https and the
    /// fixture itself speaks to the members with `tls`.
    pub fn start_with(extra: &[String], tls: &Tls) -> Cluster {
        let scheme = if tls.cacert.is_some() {
            "https"
        } else {
            "http"
        };
        let probe = http_agent(
            tls,
            Some(Duration::from_millis(500)),
            Duration::from_millis(500),
        )
        .expect("TLS files for the fixture");
        // etcd fsyncs its WAL on every write; tmpfs keeps the other builders' disk load out
        // of the latencies the tests measure.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new()
                .prefix("pidbeat-etcd-")
                .tempdir_in("/dev/shm")
        } else {
            tempfile::Builder::new().prefix("pidbeat-etcd-").tempdir()
        }
        .expect("temp dir for etcd");
        let ports = free_ports(2 * MEMBERS);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("pidbeat-test-{}-{nanos}", std::process::id());
        let members: Vec<Member> = (0..MEMBERS)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                etcd: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir: base,
            token,
            members,
            initial,
            extra: extra.to_vec(),
            scheme,
            probe,
        };
        for i in 0..MEMBERS {
            c.start_member(i, "new");
        }
        c.wait_healthy(Duration::from_secs(20));
        c
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn start_member(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let client = format!("{}://127.0.0.1:{}", self.scheme, m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let etcd = Guard::spawn(
            Command::new("etcd")
                .args(["--name", &m.name])
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &self.initial])
                .args(["--initial-cluster-token", &self.token])
                .args(["--initial-cluster-state", state])
                .args(["--logger", "zap", "--log-level", "warn"])
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        self.members[i].etcd = Some(etcd);
    }

    /// Client URL of member `i`.
    pub fn url(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme, self.members[i].client_port
        )
    }

    /// All client URLs, comma-separated, starting with member `first` (`--etcd`).
    pub fn urls_from(&self, first: usize) -> String {
        (0..MEMBERS)
            .map(|k| self.url((first + k) % MEMBERS))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pid(&self, i: usize) -> Option<i32> {
        self.members[i].etcd.as_ref().map(Guard::pid)
    }

    pub fn pids(&self) -> Vec<i32> {
        (0..MEMBERS).filter_map(|i| self.pid(i)).collect()
    }

    fn signal(&self, i: usize, sig: Signal) {
        crate::common::send_signal(self.pid(i).expect("member running"), sig);
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut etcd) = self.members[i].etcd.take() {
            etcd.kill();
        }
    }

    /// SIGSTOP: the member holds its sockets open but answers nothing (a hung or partitioned
    /// member, as its peers and clients see it).
    pub fn stop(&self, i: usize) {
        self.signal(i, Signal::STOP);
    }

    pub fn cont(&self, i: usize) {
        self.signal(i, Signal::CONT);
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_member(i, "existing");
    }

    /// `/health` of member `i` says true (it has a leader and can serve).
    pub fn healthy(&self, i: usize) -> bool {
        self.probe
            .get(format!("{}/health", self.url(i)))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .is_some_and(|b| b.contains(r#""health":"true""#))
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..MEMBERS {
            if self.members[i].etcd.is_none() {
                continue;
            }
            while !self.healthy(i) {
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                        .unwrap_or_default();
                    panic!("etcd member {i} not healthy after {timeout:?}; its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The index of the member that is leader now, asked of the running members.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for i in 0..MEMBERS {
            let status = self
                .probe
                .post(format!("{}/v3/maintenance/status", self.url(i)))
                .send("{}")
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
            if let Some(s) = status {
                ids.push((
                    i,
                    s["header"]["member_id"].as_str().unwrap_or("").to_owned(),
                ));
                leader = s["leader"].as_str().map(str::to_owned).or(leader);
            }
        }
        let leader = leader?;
        ids.into_iter()
            .find(|(_, id)| *id == leader)
            .map(|(i, _)| i)
    }

    /// Waits until some member is leader; returns it.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no etcd leader after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `etcdctl` against the cluster, run to completion.
    pub fn etcdctl(&self, args: &[&str]) -> Out {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.urls_from(0)))
            .args(args)
            .finish()
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let o = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("endpoint status json");
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Status"]["header"]["revision"].as_i64())
            .max()
            .expect("a member answered")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..MEMBERS {
            if let Some(pid) = self.pid(i) {
                // A stopped member dies of SIGKILL too; CONT first only makes its exit tidier.
                signal(pid, Signal::CONT);
            }
            self.kill(i);
        }
    }
}
