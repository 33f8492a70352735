//! A partition lab: real network namespaces joined by veth pairs to a bridge device, for the
//! multi-host tests that need real cuts (issue 18, must-show 6).
//!
//! - A switch namespace holds the bridge device `br0`; every node namespace has one veth,
//!   `eth0`, whose peer is a port of `br0`. Nothing is created in the root namespace.
//! - Addresses come from the benchmark range 198.18.0.0/15 only (`198.18.0.N/24`).
//! - Three etcd members each run in their own namespace (`ip netns exec NS etcd …`), under
//!   the harness's `Guard`; bridges and readers run in theirs the same way.
//! - Cuts are iptables DROP rules inside a node's namespace, per peer address and direction,
//!   so a cut can be asymmetric; delay and stalls come from the userspace relay (`relay.rs`),
//!   since this kernel has no `sch_netem`.
//! - Names are `pbl-<pid>-<n>-<node>`; `Drop` kills the lab's processes and deletes its
//!   namespaces, even when the test panics; `Lab::new` first deletes namespaces of this
//!   prefix whose creator PID is gone.
//! - Without root or `ip`, `lab_available` fails the test under `PIDBEAT_REQUIRE_TOOLS=1` and
//!   otherwise skips it loudly.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// The lab's namespace prefix; the creator's PID follows it.
pub const PREFIX: &str = "pbl-";

pub const MEMBERS: usize = 3;

/// A node of the lab: its namespace and address.
#[derive(Debug, Clone)]
pub struct Node {
    pub ns: String,
    pub ip: String,
}

struct Member {
    node: Node,
    child: Option<Guard>,
}

pub struct Lab {
    /// The switch's namespace (the bridge device).
    switch: String,
    /// Every namespace created, the switch's last.
    namespaces: Vec<String>,
    members: Vec<Member>,
    nodes: usize,
    token: String,
    initial: String,
    dir: tempfile::TempDir,
}

/// Runs `args` (a command line, no shell) with a deadline; panics unless it succeeds.
pub fn sh(args: &[&str]) -> String {
    let mut c = Command::new(args[0]);
    c.args(&args[1..]);
    let o = run_with_deadline(c, Duration::from_secs(20));
    assert!(o.status.success(), "{args:?} failed: {}", o.stderr);
    o.stdout
}

/// Runs `args` under a deadline (it is killed past it); true if it ran and succeeded. For
/// probes and clean-up, which must neither panic nor hang.
fn sh_ok(args: &[&str]) -> bool {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Guard::try_spawn(&mut c)
        .ok()
        .and_then(|mut g| g.wait_timeout(Duration::from_secs(20)))
        .is_some_and(|s| s.success())
}

/// `sh` whose failure is ignored (clean-up).
fn sh_quiet(args: &[&str]) {
    sh_ok(args);
}

/// Can a lab run here (root, `ip`, `iptables`, netns)? If not: panic under
/// `PIDBEAT_REQUIRE_TOOLS=1`, else say so loudly and let the caller skip.
pub fn lab_available() -> bool {
    let root = rustix::process::geteuid().is_root();
    let tools = ["ip", "iptables"].iter().all(|t| sh_ok(&[t, "-V"]));
    if root && tools {
        return true;
    }
    let reason =
        format!("the partition lab needs root, `ip` and `iptables` (root: {root}, tools: {tools})");
    skip(&reason);
    false
}

/// Skips the calling test when etcd or the lab cannot run (see `lab_available`).
#[macro_export]
macro_rules! require_lab {
    () => {
        if !$crate::cluster::etcd_fixture::etcd_available()
            || !$crate::cluster::lab::lab_available()
        {
            return;
        }
    };
}

/// Deletes namespaces of the lab's prefix whose creator PID is gone (a lab whose test
/// binary was killed before its drops ran).
fn sweep() {
    let list = sh(&["ip", "netns", "list"]);
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("lab: deleting the leftover namespace {name} (pid {pid} is gone)");
            sh_quiet(&["ip", "netns", "del", name]);
        }
    }
}

/// Runs `f` on a thread that has entered `ns`'s network namespace (setns is per thread):
/// sockets it opens live there.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&path);
            f()
        })
        .join()
        .expect("a lab thread panicked")
    })
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

impl Lab {
    /// Three etcd members (m0..m2 at 198.18.0.1-3), each in its own namespace, healthy.
    pub fn start() -> Lab {
        static N: AtomicUsize = AtomicUsize::new(0);
        sweep();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("{base}-sw");
        let dir = tempfile::Builder::new()
            .prefix("pidbeat-lab-")
            .tempdir_in("/dev/shm")
            .expect("temp dir for the lab");
        let mut lab = Lab {
            switch: switch.clone(),
            namespaces: Vec::new(),
            members: Vec::new(),
            nodes: 0,
            token: base.clone(),
            initial: String::new(),
            dir,
        };
        sh(&["ip", "netns", "add", &switch]);
        lab.namespaces.push(switch.clone());
        sh(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        let members: Vec<Node> = (0..MEMBERS).map(|i| lab.node(&format!("m{i}"))).collect();
        lab.initial = members
            .iter()
            .enumerate()
            .map(|(i, n)| format!("m{i}=http://{}:2380", n.ip))
            .collect::<Vec<_>>()
            .join(",");
        for node in members {
            lab.members.push(Member { node, child: None });
        }
        for i in 0..MEMBERS {
            lab.spawn(i, "new");
        }
        lab.wait_healthy(Duration::from_secs(20));
        lab
    }

    /// A new node: its namespace, `eth0` with the next address, its peer on the bridge.
    pub fn node(&mut self, name: &str) -> Node {
        self.nodes += 1;
        let k = self.nodes;
        let ns = format!("{}-{name}", self.token);
        sh(&["ip", "netns", "add", &ns]);
        // Before the switch in the list: deleted first.
        self.namespaces.insert(0, ns.clone());
        let port = format!("p{k}");
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
        ]);
        sh(&["ip", "-n", &self.switch, "link", "set", &port, "up"]);
        let ip = format!("198.18.0.{k}");
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        Node { ns, ip }
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &self.members[i].node;
        let name = format!("m{i}");
        let data = self.dir.path().join(&name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let client = format!("http://{}:2379", m.ip);
        let peer = format!("http://{}:2380", m.ip);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &m.ns, "etcd", "--name", &name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.members[i].child = Some(Guard::spawn(&mut c));
    }

    pub fn member(&self, i: usize) -> &Node {
        &self.members[i].node
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}:2379", self.members[i].node.ip)
    }

    /// All client URLs, comma-separated, from member `first` on.
    pub fn urls_from(&self, first: usize) -> String {
        (0..MEMBERS)
            .map(|k| self.url((first + k) % MEMBERS))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut g) = self.members[i].child.take() {
            g.kill();
        }
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// A member's `/v3/maintenance/status`, asked from the member's own namespace, so that
    /// cuts elsewhere do not hide it.
    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let url = self.url(i);
        in_ns(&self.members[i].node.ns, move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(500)))
                .http_status_as_error(false)
                .build()
                .into();
            agent
                .post(format!("{url}/v3/maintenance/status"))
                .send("{}")
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .and_then(|b| serde_json::from_str(&b).ok())
        })
    }

    pub fn healthy(&self, i: usize) -> bool {
        let url = self.url(i);
        in_ns(&self.members[i].node.ns, move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(500)))
                .http_status_as_error(false)
                .build()
                .into();
            agent
                .get(format!("{url}/health"))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .is_some_and(|b| b.contains(r#""health":"true""#))
        })
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in 0..MEMBERS {
            if self.members[i].child.is_none() {
                continue;
            }
            while !self.healthy(i) {
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                        .unwrap_or_default();
                    panic!("lab member m{i} not healthy after {timeout:?}; its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The member that is leader now, as the members say.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for i in 0..MEMBERS {
            if let Some(s) = self.status(i) {
                ids.push((i, s["header"]["member_id"].as_str()?.to_owned()));
                leader = s["leader"].as_str().map(str::to_owned).or(leader);
            }
        }
        let leader = leader?;
        ids.into_iter()
            .find(|(_, id)| *id == leader)
            .map(|(i, _)| i)
    }

    pub fn wait_leader(&self, timeout: Duration) -> usize {
        poll(
            timeout,
            Duration::from_millis(50),
            || self.leader(),
            || format!("no leader in the lab after {timeout:?}"),
        )
    }

    /// The store's revision, as the member `i` has it.
    pub fn revision(&self, i: usize) -> i64 {
        self.status(i)
            .and_then(|s| s["header"]["revision"].as_str()?.parse().ok())
            .expect("a member's revision")
    }

    /// `program ARGS` inside `node`'s namespace, with the sandbox's environment.
    pub fn cmd_in(&self, sb: &Sandbox, node: &Node, program: &str) -> Command {
        let mut c = sb.cmd_of("ip");
        c.args(["netns", "exec", &node.ns, program]);
        c
    }

    /// `pidbeat …` inside `node`'s namespace.
    pub fn pidbeat_in(&self, sb: &Sandbox, node: &Node) -> Command {
        self.cmd_in(sb, node, BIN)
    }

    /// Cuts traffic between `node` and the address `peer`: `inbound` drops what `node`
    /// receives from it, `outbound` what it sends to it. Rules live in `node`'s namespace.
    pub fn cut(&self, node: &Node, peer: &str, inbound: bool, outbound: bool) {
        if inbound {
            sh(&[
                "ip", "netns", "exec", &node.ns, "iptables", "-A", "INPUT", "-s", peer, "-j",
                "DROP",
            ]);
        }
        if outbound {
            sh(&[
                "ip", "netns", "exec", &node.ns, "iptables", "-A", "OUTPUT", "-d", peer, "-j",
                "DROP",
            ]);
        }
    }

    /// Cuts `node` off from everyone: all traffic on its `eth0`, both ways.
    pub fn isolate(&self, node: &Node) {
        sh(&[
            "ip", "netns", "exec", &node.ns, "iptables", "-A", "INPUT", "-i", "eth0", "-j", "DROP",
        ]);
        sh(&[
            "ip", "netns", "exec", &node.ns, "iptables", "-A", "OUTPUT", "-o", "eth0", "-j", "DROP",
        ]);
    }

    /// Removes every cut made in `node`'s namespace.
    pub fn heal(&self, node: &Node) {
        sh(&["ip", "netns", "exec", &node.ns, "iptables", "-F"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut g) = m.child.take() {
                g.kill();
            }
        }
        for ns in &self.namespaces {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

#[test]
fn the_lab_sweeps_namespaces_of_dead_creators_and_keeps_live_ones() {
    if !lab_available() {
        return;
    }
    // A PID that is surely gone: a child we reaped (reuse within this test is as unlikely
    // as it is for the sweep itself).
    let mut c = Command::new("true");
    let mut g = Guard::spawn(&mut c);
    let gone = g.pid();
    g.wait_timeout(Duration::from_secs(5)).expect("true exits");
    drop(g);
    let leftover = format!("{PREFIX}{gone}-0-sw");
    let live = format!("{PREFIX}{}-sweeptest-sw", std::process::id());
    sh(&["ip", "netns", "add", &leftover]);
    sh(&["ip", "netns", "add", &live]);
    sweep();
    let list = sh(&["ip", "netns", "list"]);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    sh_quiet(&["ip", "netns", "del", &leftover]);
    sh_quiet(&["ip", "netns", "del", &live]);
    assert!(!names.contains(&leftover.as_str()), "{names:?}");
    assert!(names.contains(&live.as_str()), "{names:?}");
}
