//! The multi-host layer against a real 3-member etcd cluster (see `etcd_fixture`): the gateway
//! client, TLS and per-host auth, `publish`, `ps --etcd` and `wait --etcd` under the faults of
//! DESIGN.md's multi-host contract.
//!
//! The tests that start a cluster run alone (`serial`): each starts its own cluster, and the
//! latency limits they assert would measure the other tests' load on a 2-core machine
//! otherwise.

mod etcd_fixture;
mod keys;
mod lab;
mod relay;

mod client;
mod faults;
mod hosts;
mod ownership;
mod partitions;
mod publish;
mod slow_link;
mod tls_publish;

/// Held for a test's whole run, taken before its first `Sandbox`: no other test runs
/// meanwhile.
pub fn serial() -> crate::common::Alone {
    crate::common::alone()
}
