//! pidbeat: a pidfd + epoll liveness watcher for agent runtimes. See DESIGN.md.
//!
//! Two sides share one contract. The writer (`watcher/`: `watch`, `run`) keeps one agent's
//! record true; the readers (`reader/`: `ps`, `wait`) judge records they do not trust. They
//! meet only in the contract modules, never in each other's code.
//!
//! Nothing is public but [`main`] and the [`testing`] surface, so the dead-code lint sees
//! every unused item. `unsafe` is denied everywhere but in `sys.rs`.
#![deny(unsafe_code)]

// The contract both sides obey: the record, the run dir's names and rules, the exit codes.
mod exit;
mod layout;
mod record;

// What both sides stand on: /proc, the few unsafe syscalls, epoll helpers, timerfds.
mod eventloop;
mod procfs;
mod sys;
mod timer;

// The writer.
mod watcher;

// The readers.
mod reader;

// The command line, turned into each command's plain config; no other module sees the clap
// types. `docs` adds help texts and completers to the command clap derives from them, and
// renders the man pages and completion scripts.
mod cli;
mod docs;

/// What the integration tests build on: planting records, reading /proc, watching the run
/// dir. Not an API.
#[doc(hidden)]
pub mod testing {
    pub use crate::procfs::read_stat;
    pub use crate::reader::dirwatch::DirWatch;
    pub use crate::record::{ExitInfo, Record, Status, now_ms};
    pub use crate::watcher::store::{RecordWriter, acquire_lock};
}

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

/// The command line as clap sees it: the derived definition with the docs' help texts and
/// completers.
fn command() -> clap::Command {
    docs::decorate(Cli::command())
}

/// Parses argv, runs the subcommand, and returns the process exit code. The one place that
/// prints `pidbeat: error: …`. A shell asking for completions is answered before anything else.
pub fn main() -> i32 {
    docs::complete_if_asked(command);
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    let result = match cli.command {
        Command::Watch(a) => a.into_config().and_then(watcher::command),
        Command::Run(a) => a.into_config().and_then(watcher::run::command),
        Command::Ps(a) => a.into_config().and_then(reader::ps::command),
        Command::Wait(a) => a.into_config().and_then(reader::wait::command),
        Command::Completions { shell } => docs::completions(&cmd, shell),
        // A fresh definition: the parsed one is built, with clap's `help` subcommand in it.
        Command::Man { dir } => docs::man(command(), dir.as_deref()),
    };
    match result {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("pidbeat: error: {e}");
            e.exit_code().code()
        }
    }
}
