//! Reading a run dir that someone else could have written. The writers refuse such a dir
//! (`rundir::distrust`); a reader cannot, since looking at another's fleet is its job, but
//! anyone who can write there can plant a forged record, so a reader never presents what it
//! found there as trustworthy without saying so.

use std::path::Path;

use crate::exitcode::{Result, runtime};
use crate::rundir;

/// What a reader does with an untrusted run dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// Say so on stderr and go on (`ps`: a listing, which decides nothing).
    Warn,
    /// Refuse, exit 1 (`status`, `wait`: their exit status decides what a script does next).
    Refuse,
    /// Go on silently: the user said the dir is trusted (`--trust-run-dir`).
    Accept,
}

/// Vets `dir` before a reader reads it. A missing or unreadable dir is the reader's own
/// business (no records, or its own error), not a question of trust.
pub fn vet(dir: &Path, policy: Untrusted) -> Result<()> {
    let Ok(m) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let Some(why) = rundir::distrust(dir, &m) else {
        return Ok(());
    };
    match policy {
        Untrusted::Accept => Ok(()),
        Untrusted::Warn => {
            eprintln!(
                "pidbeat: WARNING: {why}. Anyone who can write there can forge its records: \
                 do not trust what follows"
            );
            Ok(())
        }
        Untrusted::Refuse => Err(runtime!(
            "{why}. Anyone who can write there can forge its records; pass --trust-run-dir to \
             read it anyway"
        )),
    }
}
