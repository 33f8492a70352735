//! `pidbeat run -- CMD`: spawn CMD as our child, watch it like `watch`, exit with its status.

use std::process::Command;

use std::ffi::OsString;

use super::lock::AgentLock;
use super::target::{BackendPref, Target};
use super::{Mode, Outcome, Watcher, WriterConfig, signals};
use crate::exitcode::{Error, ExitCode, Result, runtime};
use crate::rundir;

#[derive(Debug)]
pub struct RunConfig {
    pub writer: WriterConfig,
    /// CMD and its arguments; never empty.
    pub cmd: Vec<OsString>,
}

pub fn command(config: RunConfig) -> Result<ExitCode> {
    let w = &config.writer;
    rundir::prepare(&w.run_dir)?;
    let lock = AgentLock::acquire(&w.run_dir, &w.agent)?;
    let signals = signals(Mode::Run)?;

    let (prog, rest) = config.cmd.split_first().expect("clap requires CMD");
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    if w.progress {
        // CMD and its hooks speak sd_notify to the socket the watcher binds for the agent.
        let socket = w.run_dir.join(rundir::notify_name(&w.agent));
        cmd.env(crate::notify::NOTIFY_SOCKET_ENV, socket);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // The shell's convention, which container runtimes follow too.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                ExitCode::NotFound
            } else {
                ExitCode::CannotExecute
            };
            let message = format!("cannot run {}: {e}", prog.to_string_lossy());
            return Err(Error::Spawn(message, code));
        }
    };
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
    let watcher = Watcher::new(target, w, Mode::Run, lock);
    match watcher.run(signals, || Ok(()))? {
        Outcome::Dead(Some(exit)) => Ok(ExitCode::Child(exit.shell_status())),
        Outcome::Dead(None) => Err(runtime!(
            "lost the exit status of {}",
            prog.to_string_lossy()
        )),
        Outcome::Unwatched => {
            unreachable!("run forwards SIGTERM/SIGINT to its child, it never unwatches")
        }
    }
}
