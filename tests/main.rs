//! pidbeat's integration tests: one test binary (`autotests = false`, as fd has), so the
//! harness in `common/` is compiled once and every helper in it is used.
//!
//! Each module is one topic, run against the built `pidbeat` with real processes:
//!
//! - `cli`, `completion`: help, man pages, completions, what the package ships;
//! - `watch`, `run`: the writer; `ps`, `wait`, `prom`, `scripting`, `schema`: the readers and
//!   the record contract; `lifecycle`: `status`, `forget`, `prune`; `progress`: the evidence
//!   of progress, sd_notify and the activities;
//! - `reliability`: no false `alive` nor false `dead` under real faults;
//! - `trust`: verdicts whatever the clocks, the records and the PID namespaces do;
//! - `launcher`: the tmux launcher and the shell sidecar;
//! - `cluster`: the multi-host layer on a real 3-member etcd;
//! - `harness`: checks that keep the tests themselves honest.

mod common;

mod cli;
mod cluster;
mod completion;
mod contrib;
mod docker;
mod harness;
mod launcher;
mod lifecycle;
mod progress;
mod prom;
mod ps;
mod reliability;
mod run;
mod run_container;
mod schema;
mod scripting;
mod trust;
mod wait;
mod watch;
