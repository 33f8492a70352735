//! The multi-host layer against a real 3-member etcd cluster (see `etcd_fixture`): the gateway
//! client, TLS and per-host auth, `publish`, `ps --etcd` and `wait --etcd` under the faults of
//! DESIGN.md's multi-host contract.
//!
//! The tests run one at a time (`serial`): each starts its own cluster, and the latency
//! limits they assert would measure the other tests' load on a 2-core machine otherwise.

mod etcd_fixture;
mod keys;

mod client;
mod faults;
mod hosts;
mod publish;

use std::sync::{Mutex, MutexGuard};

/// Held for a test's whole run.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
