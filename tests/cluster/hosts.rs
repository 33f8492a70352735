//! "Hosts" for the multi-host tests: each is its own sandbox and run dir with real targets,
//! real watchers and its own `pidbeat publish --host hN`; plus the remote readers as the CLI
//! runs them (`ps --etcd`, `wait --etcd`), with their lines timestamped as they arrive.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

pub struct Agent {
    pub target: Guard,
    /// Held for its Drop: the watcher dies with the agent.
    pub _watcher: Guard,
}

/// Fields drop in order: the bridge and the agents before the sandbox, whose Drop checks
/// that nothing it started still runs.
pub struct Host {
    pub name: String,
    pub bridge: Option<Guard>,
    pub agents: BTreeMap<String, Agent>,
    bridges_started: usize,
    pub sb: Sandbox,
}

impl Host {
    pub fn new(name: &str) -> Host {
        let sb = Sandbox::new();
        std::fs::create_dir_all(sb.run_dir()).unwrap();
        Host {
            name: name.into(),
            sb,
            bridge: None,
            agents: BTreeMap::new(),
            bridges_started: 0,
        }
    }

    pub fn publish_cmd(&self, urls: &str, ttl: u64) -> Command {
        let mut c = self.sb.cmd();
        c.args(["publish", "--host", &self.name, "--etcd", urls])
            .args(["--ttl", &ttl.to_string()])
            .arg("--run-dir")
            .arg(self.sb.run_dir());
        c
    }

    /// Starts this host's bridge (stderr to `publish-N.log` in the sandbox).
    pub fn publish(&mut self, urls: &str, ttl: u64) {
        let log = std::fs::File::create(self.log_path(self.bridges_started)).unwrap();
        self.bridges_started += 1;
        let g = Guard::spawn(
            self.publish_cmd(urls, ttl)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        self.bridge = Some(g);
    }

    fn log_path(&self, n: usize) -> std::path::PathBuf {
        self.sb.path(&format!("publish-{n}.log"))
    }

    /// Everything the bridges of this host said on stderr.
    pub fn bridge_log(&self) -> String {
        (0..self.bridges_started)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect()
    }

    pub fn bridge_pid(&self) -> i32 {
        self.bridge.as_ref().expect("bridge running").pid()
    }

    /// A `sleep` target and its watcher (`--interval SECS`), once its first record is on disk.
    pub fn add_agent(&mut self, agent: &str, interval: &str) -> i32 {
        self.add_target(agent, interval, spawn_sleep())
    }

    /// `target` and its watcher, once its first record is on disk.
    pub fn add_target(&mut self, agent: &str, interval: &str, target: Guard) -> i32 {
        let watcher = self
            .sb
            .watch_alive(target.pid(), agent, &["--interval", interval]);
        let pid = target.pid();
        self.agents.insert(
            agent.into(),
            Agent {
                target,
                _watcher: watcher,
            },
        );
        pid
    }

    /// SIGKILLs the agent's target and reaps it at once (so the kernel can tell its watcher
    /// the exit status); returns when the signal was sent.
    pub fn kill9(&mut self, agent: &str) -> Instant {
        let a = self.agents.get_mut(agent).expect("agent");
        let pid = rustix::process::Pid::from_raw(a.target.pid()).unwrap();
        let t = Instant::now();
        rustix::process::kill_process(pid, Signal::KILL).unwrap();
        a.target.kill();
        t
    }

    pub fn key(&self, agent: &str) -> String {
        format!("{}/{agent}", self.name)
    }
}

/// `ps --etcd URLS --json` through the CLI: HOST/AGENT → object.
pub fn ps_etcd(sb: &Sandbox, urls: &str) -> BTreeMap<String, Value> {
    try_ps_etcd(sb, urls).unwrap_or_else(|e| panic!("ps --etcd failed: {e}"))
}

/// `ps_etcd`, or its stderr when it fails (etcd unavailable).
pub fn try_ps_etcd(sb: &Sandbox, urls: &str) -> Result<BTreeMap<String, Value>, String> {
    let o = sb.cmd().args(["ps", "--etcd", urls, "--json"]).finish();
    if !o.status.success() {
        return Err(o.stderr);
    }
    let v: Value = serde_json::from_str(&o.stdout).expect("ps --etcd --json is JSON");
    Ok(v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = format!(
                "{}/{}",
                o["host"].as_str().unwrap(),
                o["agent"].as_str().unwrap()
            );
            (name, o.clone())
        })
        .collect())
}

pub fn states(view: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    view.iter()
        .map(|(k, v)| (k.clone(), v["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Polls `ps --etcd` until `pred` holds; returns the view and when it held. A `ps` that
/// fails (no member answers yet) counts as "not yet".
pub fn poll_ps_etcd(
    sb: &Sandbox,
    urls: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> (BTreeMap<String, Value>, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = try_ps_etcd(sb, urls);
        if let Ok(v) = &v {
            if pred(v) {
                return (v.clone(), Instant::now());
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last view: {:?}",
            v.map(|v| states(&v))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A long-running reader (`wait --etcd …`, `ps --etcd --watch --json`) whose stdout lines
/// arrive with the instant they were read, and whose stderr goes to a file.
pub struct Reader {
    pub g: Guard,
    pub lines: Receiver<(Instant, String)>,
    err: std::path::PathBuf,
}

impl Reader {
    pub fn spawn(sb: &Sandbox, args: &[&str], name: &str) -> Reader {
        Reader::spawn_cmd(sb, sb.cmd().args(args), name)
    }

    /// `spawn` of a command built by the caller (a reader inside a lab namespace).
    pub fn spawn_cmd(sb: &Sandbox, cmd: &mut Command, name: &str) -> Reader {
        let err = sb.path(&format!("{name}.stderr"));
        let mut g = Guard::spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        let out = g.child().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send((Instant::now(), l)).is_err() {
                    break;
                }
            }
        });
        Reader { g, lines: rx, err }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn line(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.lines.recv_timeout(timeout).ok()
    }
}

/// Percentile `p` (0–100) of `v` (sorted here), nearest rank.
pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// VmRSS and VmHWM of `pid`, in KiB.
pub fn rss_kib(pid: i32) -> (u64, u64) {
    (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"))
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`, …).
pub fn status_kib(pid: i32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every element of a `ps --etcd --json` view holds to docs/ps-entry.schema.json.
pub fn assert_entry_schema(view: &BTreeMap<String, Value>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ps-entry.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v = jsonschema::options()
        .with_base_uri(format!("file://{}", path.display()))
        .build(&schema)
        .unwrap();
    for (name, doc) in view {
        let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {doc}\n{errors:#?}");
    }
}
