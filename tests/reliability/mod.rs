//! Neither a false `alive` nor a false `dead` under real faults.
//!
//! Real processes, real signals, a private PID namespace for PID reuse, private mount
//! namespaces (tmpfs with a size limit, read-only bind mounts) for run-dir faults. Every test
//! works in its own `Sandbox`, kills and reaps what it starts (Drop guards), and ends by
//! checking that nothing it started still runs.
//!
//! Tests that need `pidbeat ps` are named `ps_*` or say so (a few others also ask `ps` once
//! for its verdict). Where the kernel or sandbox lacks a feature (PID or mount namespaces,
//! python3 for the thread cases) the test skips (`common::skip`).
//!
//! Helper: tests/reliability/pid_reuse.sh, the PID-1 script of the PID-reuse tests.

mod atomic;
mod bad_input;
mod detach;
mod exit_status;
mod faults;
mod hostile_dirs;
mod lock_loss;
mod pid_reuse;
mod signals;
mod soak;
mod watcher_death;
mod zombies;

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Small beats keep the file fast; 20 beats a second.
const IV: &str = "0.05";
const IV_SECS: f64 = 0.05;
const SEC: Duration = Duration::from_secs(1);

/// Waits until the record of every agent in `agents` has status `status`, each within
/// `timeout`.
fn wait_all(sb: &Sandbox, agents: &[&str], status: &str, timeout: Duration) {
    for a in agents {
        sb.wait_status(a, status, timeout);
    }
}

/// Waits (up to 3 s) for `beats` more beats at `path`, each of them `alive`: `what` names the
/// false death should any record say otherwise.
fn stays_alive(path: &Path, beats: u64, what: &str) {
    let s0 = seq(&read_record(path).unwrap());
    wait_record(path, 3 * SEC, |v| {
        assert!(status_is(v, "alive"), "{what}: {v}");
        seq(v) >= s0 + beats
    });
}

/// `pidbeat` with the sandbox's scrubbed environment, optionally entered into the mount
/// namespace `ns` first.
fn pidbeat(sb: &Sandbox, ns: Option<&MountNs>) -> std::process::Command {
    match ns {
        None => sb.cmd(),
        Some(ns) => ns.pidbeat(sb),
    }
}

/// A foreground `pidbeat watch` (optionally in `ns`) whose stderr goes to a file.
fn watch_in(
    sb: &Sandbox,
    ns: Option<&MountNs>,
    run_dir: &Path,
    pid: i32,
    agent: &str,
    backend: &str,
    iv: &str,
) -> Watch {
    let mut c = pidbeat(sb, ns);
    watch_args(&mut c, pid, agent, run_dir).args(["--interval", iv, "--backend", backend]);
    sb.spawn_logged(&mut c, &format!("{agent}.{backend}"))
}

fn watch(sb: &Sandbox, pid: i32, agent: &str, backend: &str) -> Watch {
    watch_in(sb, None, &sb.run_dir(), pid, agent, backend, IV)
}

/// Dot-files other than the agents' lock files and sd_notify sockets (a live watcher's):
/// temp files a watcher left behind.
fn stray_dot_files(dir: &Path) -> Vec<String> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && !n.ends_with(".lock") && !n.ends_with(".notify"))
        .collect()
}

/// Pauses every watcher (SIGSTOP) at a moment none of them has a temp file open, so a fault
/// injected now lands between two writes. Callers `cont` them afterwards.
fn pause_between_writes(watchers: &[i32], dir: &Path) {
    for _ in 0..200 {
        for &w in watchers {
            stop(w);
        }
        let tmp = dir_names(dir).into_iter().any(|n| n.ends_with(".tmp"));
        if !tmp {
            return;
        }
        for &w in watchers {
            cont(w);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("watchers always had a temp file open");
}
