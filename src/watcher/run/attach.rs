//! `run` and its run dir: monitoring never stops the app. CMD starts first; the run dir is
//! then prepared and the agent's lock taken. If that fails, `run` warns once and tries again
//! at every write (a volume may be mounted late, a read-only root stays so); its CMD runs
//! either way. A run dir nobody may trust (group- or world-writable, another user's) is
//! said once and never written: `run` supervises CMD without records. `watch` refuses both.

use crate::rundir;

use super::super::WriterConfig;
use super::super::lock::AgentLock;

/// A run dir `run` has not locked yet.
#[derive(Debug)]
pub struct Attach {
    config: WriterConfig,
}

pub enum Attached {
    Locked(AgentLock, WriterConfig),
    /// Not now: say why, try again at the next write.
    Later(std::io::Error),
    /// Never: the dir exists but must not be written (it was said on stderr).
    Never,
}

impl Attach {
    pub fn new(config: &WriterConfig) -> Self {
        Attach {
            config: config.clone(),
        }
    }

    pub fn try_lock(&mut self) -> Attached {
        let dir = &self.config.run_dir;
        if let Err(e) = rundir::prepare(dir) {
            // A dir nobody may trust stays so: no later attempt changes that (short of someone
            // fixing its owner or mode, which a restart then picks up). Anything else (missing,
            // not yet mountable, unwritable) may heal, so it is tried again.
            if std::fs::metadata(dir)
                .is_ok_and(|m| m.is_dir() && rundir::distrust(dir, &m).is_some())
            {
                eprintln!("pidbeat: warning: {e}; CMD runs without records");
                return Attached::Never;
            }
            return Attached::Later(std::io::Error::other(e.to_string()));
        }
        match AgentLock::acquire(dir, &self.config.agent) {
            Ok(lock) => Attached::Locked(lock, self.config.clone()),
            Err(e) => Attached::Later(std::io::Error::other(e.to_string())),
        }
    }
}
