//! The multi-host layer on etcd v3 (DESIGN.md, "Multi-host"): `pidbeat publish` (one bridge
//! per host), and the readers `ps --etcd` and `wait --etcd`.
//!
//! Nothing here is reachable from `watch` or `run`: per-agent watchers never talk to etcd,
//! so no network or TLS code sits in a death's path, and local records keep working whatever
//! etcd does.

pub mod client;
pub mod keys;
pub mod publish;
pub mod remote;
