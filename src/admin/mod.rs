//! The lifecycle commands: `forget` and `prune` remove an ended agent's files (record, lock,
//! death history, and with `--logs` the launcher's log).
//!
//! Why a side of their own: they write (they unlink), so they are no readers, and they judge
//! records, so they are no watcher. They use the readers' judgement (`reader::Look`) to tell
//! which agents have ended, and the writers' lock (`rundir::lock_exclusive`) so that a removal
//! and a starting watcher never overlap: a watcher that starts first holds the lock for its
//! life and the removal is refused; one that starts during the removal waits for the lock
//! (100 ms) and then takes a fresh lock file.

pub mod forget;
pub mod prune;
mod remove;
