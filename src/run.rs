//! `pidbeat run -- CMD`: spawn CMD as our child, watch it like `watch`, exit with its status.

use std::process::Command;

use crate::cli::{BackendChoice, RunArgs};
use crate::error::Result;
use crate::target::Target;
use crate::watch::{self, Mode, Outcome, Watcher};
use crate::{rundir, runtime};

pub fn command(args: RunArgs) -> Result<i32> {
    let run_dir = args.run_dir.resolve()?;
    let interval = args.interval.resolve()?;
    rundir::prepare(&run_dir)?;
    let lock = rundir::acquire_lock(&run_dir, &args.agent)?;
    let signals = watch::signals(Mode::Run)?;

    let (prog, rest) = args.cmd.split_first().expect("clap requires CMD");
    let child = match Command::new(prog).args(rest).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pidbeat: error: cannot run {}: {e}", prog.to_string_lossy());
            // The shell's convention, which container runtimes follow too.
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = child.id() as i32;
    // The child is ours and unreaped, so pidfd_open cannot name another process.
    let target = match Target::open(pid, BackendChoice::Auto, true) {
        Ok(t) => t,
        Err(e) => {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("child pid > 0"),
                rustix::process::Signal::KILL,
            );
            return Err(e);
        }
    };
    let watcher = Watcher::new(target, run_dir, &args.agent, interval, Mode::Run, lock);
    match watcher.run(signals, || Ok(()))? {
        Outcome::Dead(Some(exit)) => Ok(exit.shell_status()),
        Outcome::Dead(None) => Err(runtime!(
            "lost the exit status of {}",
            prog.to_string_lossy()
        )),
        Outcome::Unwatched => {
            unreachable!("run forwards SIGTERM/SIGINT to its child, it never unwatches")
        }
    }
}
