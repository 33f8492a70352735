//! Records as a reader outside pidbeat sees them: JSON text in a file, `ps --json`, and
//! `ps --prom`'s exposition.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Sandbox, poll, run_with_deadline};

/// The keys of a record, in the order the record contract fixes.
pub const RECORD_KEYS: [&str; 15] = [
    "ts",
    "pid",
    "status",
    "ts_ms",
    "seq",
    "interval",
    "backend",
    "watcher_pid",
    "start_time",
    "exit",
    "died_ms",
    "watcher_start_time",
    "boot_id",
    "boottime_ms",
    "pidns",
];

/// Asserts that the record `text` has every contract key, in the contract's order (serde_json's
/// `Value` sorts its keys, so this reads the text).
pub fn assert_contract_keys_in_order(text: &str) {
    let at: Vec<usize> = RECORD_KEYS
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k}: {text}"))
        })
        .collect();
    assert!(at.is_sorted(), "keys out of order: {text}");
}

/// Reads and parses a record; `None` if it is missing. Panics on a partial record, which
/// atomic replacement must make impossible.
pub fn read_record(path: &Path) -> Option<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    assert!(
        text.ends_with('\n'),
        "record not newline-terminated: {text:?}"
    );
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad record {text:?}: {e}")))
}

/// Polls (test side only) until the record satisfies `pred`, or panics after `timeout`.
pub fn wait_record(path: &Path, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    wait_record_with(path, timeout, Duration::from_millis(2), || {}, pred)
}

/// `wait_record`, looking every `every` and calling `each` before each look.
pub fn wait_record_with(
    path: &Path,
    timeout: Duration,
    every: Duration,
    mut each: impl FnMut(),
    pred: impl Fn(&Value) -> bool,
) -> Value {
    poll(
        timeout,
        every,
        || {
            each();
            read_record(path).filter(|v| pred(v))
        },
        || {
            format!(
                "timed out after {timeout:?} waiting on {}; last: {:?}",
                path.display(),
                read_record(path)
            )
        },
    )
}

pub fn status_is(v: &Value, s: &str) -> bool {
    v["status"] == s
}

/// The record's `seq`, panicking if it has none.
pub fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// `CMD ps --json --run-dir DIR [AGENT…]` run to completion, where `cmd` is pidbeat, perhaps
/// wrapped (nsenter, libfaketime): agent → the object ps printed. It must succeed.
pub fn ps_json_with(mut cmd: Command, dir: &Path, agents: &[&str]) -> BTreeMap<String, Value> {
    cmd.args(["ps", "--json", "--run-dir"])
        .arg(dir)
        .args(agents);
    let o = run_with_deadline(cmd, Duration::from_secs(5));
    assert!(o.status.success(), "ps failed ({}): {}", o.status, o.stderr);
    parse_ps(&o.stdout)
}

/// The state `ps --json` (`m`) gives `agent`, panicking if it does not list it.
pub fn state_of(m: &BTreeMap<String, Value>, agent: &str) -> String {
    m.get(agent)
        .unwrap_or_else(|| panic!("ps does not list {agent}: {m:?}"))["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

impl Sandbox {
    /// `ps --json [AGENT…]` over the sandbox's run dir: agent → the object ps printed.
    pub fn ps_json(&self, agents: &[&str]) -> BTreeMap<String, Value> {
        ps_json_with(self.cmd(), &self.run_dir(), agents)
    }

    /// The state `ps` gives `agent`.
    pub fn ps_state(&self, agent: &str) -> String {
        state_of(&self.ps_json(&[agent]), agent)
    }
}

/// A Prometheus text exposition, parsed (panicking if it does not parse).
pub fn prom_parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The gauge `metric` with all of `labels`, if present.
pub fn prom_value(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric} is {other:?}"),
        })
}

/// `ps --json` output as agent → the object ps printed.
pub fn parse_ps(text: &str) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("ps --json is not JSON ({e}): {text:?}"));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("ps --json is not an array: {text}"));
    arr.iter()
        .map(|o| {
            let a = o["agent"]
                .as_str()
                .unwrap_or_else(|| panic!("no agent in {o}"));
            (a.to_owned(), o.clone())
        })
        .collect()
}
