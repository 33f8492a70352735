//! The reader side: `ps` and `wait`. Readers never write to the run dir and never import the
//! writer; they trust only what they can prove from `/proc`, the per-agent locks and records
//! read as hostile files.
//!
//! - `file.rs` reads the run dir without trusting it; `verdict.rs` judges one agent's record;
//!   `batch.rs` judges many at once (a `/proc` cache, threads) and confirms the verdicts that
//!   must not rest on it; `settle.rs` gives unsettled verdicts their grace.
//! - `follow.rs` is the one loop readers block in, over `dirwatch.rs` (inotify on the run dir)
//!   and `pins.rs` (pidfds on the processes verdicts rest on).
//! - `wait.rs`, `status.rs` and `ps/` are the commands; `text.rs` makes a record's strings
//!   safe to print.
//!
//! `admin/` (`forget`, `prune`) judges agents through what is re-exported here.

pub mod activity;
pub(crate) mod batch;
mod dirwatch;
pub(crate) mod file;
pub(crate) mod follow;
mod pins;
pub mod ps;
pub(crate) mod settle;
pub mod status;
mod text;
pub mod trust;
pub(crate) mod verdict;
pub mod wait;

pub use batch::Look;
pub use file::{list_agents, read_record};
pub use verdict::{AgentVerdict, State};
