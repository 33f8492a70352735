//! Verdicts a reader can trust whatever the clocks, the records
//! and the PID namespaces do.
//!
//! - `clock`: wall-clock steps (libfaketime, in the reader and in the watcher) change no
//!   verdict;
//! - `untrusted`: out-of-range values are `corrupt` with the reason, `alive` needs a proven
//!   writer, the table cannot be injected, errors say what went wrong, and thousands of
//!   generated hostile records neither crash, hang nor miscount `ps` and `wait`;
//! - `pidns`: records written in another PID namespace (`unshare --pid`) get the verdict a
//!   reader in that namespace gives.
//!
//! Real processes in a `Sandbox` each; everything started is killed and reaped by guards.

mod clock;
mod pidns;
mod untrusted;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
/// Beats every 200 ms: a stopped watcher turns stale 2 × 0.2 + 1 = 1.4 s after its last beat.
const IV: &str = "0.2";
const IV_DUR: Duration = Duration::from_millis(200);
const STALE_AFTER: Duration = Duration::from_millis(1400);
