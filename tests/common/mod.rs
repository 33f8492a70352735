//! The one harness of the integration tests: real processes in a temp sandbox, guards that
//! kill and reap everything a test starts (so nothing outlives a failing assertion), and a
//! leak check.
//!
//! - `alone`: the one lock that lets a latency-bound test have the machine to itself
//! - `sandbox`: the `Sandbox` (temp dir, private HOME, run dir, pidbeat commands, leak check)
//! - `proc`: the `Guard`, spawners, signals, reaping
//! - `procfs`: what /proc says about a process
//! - `deadline`: the poll loop, and `run_with_deadline` / `finish()`, the one way to run a
//!   command to completion
//! - `record`: records, `ps --json` and `ps --prom` as text
//! - `plant`: records and locks made as a watcher makes them, from the contract alone
//! - `mountns`: a private mount namespace with a small tmpfs, for run-dir faults
//! - `skip`: the one skip policy (a failure where tools are required, else loud and counted)
//! - `tmux`: a real tmux server on a private socket dir, for the launcher

mod alone;
mod deadline;
mod mountns;
mod plant;
mod proc;
mod procfs;
mod record;
mod sandbox;
mod skip;
pub mod tmux;

pub use alone::*;
pub use deadline::*;
pub use mountns::*;
pub use plant::*;
pub use proc::*;
pub use procfs::*;
pub use record::*;
pub use sandbox::*;
pub use skip::*;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

pub use rustix::process::Signal;

pub const BIN: &str = env!("CARGO_BIN_EXE_pidbeat");

/// Delivers the lines of `r` (a child's stdout) through a channel as they come, from a
/// thread that ends at EOF or once the receiver is gone.
pub fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The names in `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Permission bits (with setuid, setgid, sticky) of `p`.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Milliseconds since the epoch, by the test's own clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
