//! `pidbeat run -- CMD`: spawn CMD as our child, watch it like `watch`, exit with its status.
//! Built to be a container's PID 1 beside tini: its signals (`signals.rs`), the child's start
//! (`child.rs`: process group, terminal, inherited signal state), and a run dir that may be
//! missing, read-only or untrusted without keeping CMD from running (`attach.rs`).

use std::ffi::OsString;

mod attach;
mod child;
mod signals;

pub use attach::{Attach, Attached};
pub use signals::{Forwarded, forward};

use super::lock::AgentLock;
use super::target::{BackendPref, Target};
use super::{Mode, Outcome, Signals, Watcher, WriterConfig};
use crate::exitcode::{ExitCode, Result, runtime};

#[derive(Debug)]
pub struct RunConfig {
    pub writer: WriterConfig,
    /// CMD and its arguments; never empty.
    pub cmd: Vec<OsString>,
    /// Forward signals to CMD's process group, not to CMD alone (tini's `-g`).
    pub kill_group: bool,
    /// Adopt and reap orphans even when not PID 1 (tini's `-s`).
    pub subreaper: bool,
    /// The signal pidbeat gets, and so forwards, when its parent dies (tini's `-p`).
    pub pdeathsig: Option<rustix::process::Signal>,
}

pub fn command(config: RunConfig) -> Result<ExitCode> {
    let w = &config.writer;
    // Refused before anything starts, as `watch` refuses: another watcher writes this agent.
    if crate::rundir::lock_held(&w.run_dir, &w.agent) == Some(true) {
        AgentLock::acquire(&w.run_dir, &w.agent)?;
    }
    let signals = signals::take_over(config.kill_group)?;
    if config.subreaper {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| runtime!("--subreaper: {e}"))?;
    }
    if let Some(sig) = config.pdeathsig {
        let parent = rustix::process::getppid();
        rustix::process::set_parent_process_death_signal(Some(sig))
            .map_err(|e| runtime!("--pdeathsig: {e}"))?;
        // The parent may have died before the prctl: then no signal would ever come.
        if rustix::process::getppid() != parent {
            let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
        }
    }
    // CMD first: a CMD that cannot start leaves nothing behind (no run dir, no lock file).
    let socket = w
        .progress
        .then(|| w.run_dir.join(crate::rundir::notify_name(&w.agent)));
    let child = child::spawn(&config.cmd, socket.as_deref())?;
    let pid = child.id() as i32;
    // The child is ours and unreaped, so pidfd_open cannot name another process.
    let target = match Target::open(pid, BackendPref::Auto, true) {
        Ok(t) => t,
        Err(e) => {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("child pid > 0"),
                rustix::process::Signal::KILL,
            );
            return Err(e);
        }
    };
    // The lock is taken at the first write, and retried at each later one while it cannot be.
    let watcher = Watcher::new(target, w, Mode::Run, None);
    let prog = config.cmd[0].to_string_lossy();
    match watcher.run(Signals::Run(signals), || Ok(()))? {
        Outcome::Dead(Some(exit)) => Ok(ExitCode::Child(exit.shell_status())),
        Outcome::Dead(None) => Err(runtime!("lost the exit status of {prog}")),
        Outcome::Unwatched => {
            unreachable!("run forwards SIGTERM/SIGINT to its child, it never unwatches")
        }
    }
}
