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

// What both sides stand on: /proc, the clocks, PID namespaces, the few unsafe syscalls,
// epoll helpers, timerfds, whole-file replacement, durations as people write them.
mod atomic;
mod clock;
mod duration;
mod eventloop;
mod pidns;
mod procfs;
mod sys;
mod timer;

// The writer.
mod watcher;

// The readers.
mod reader;

// Forgetting ended agents: judged as the readers judge, removed under the writers' lock.
mod admin;

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
    pub use crate::watcher::lock::AgentLock;
    pub use crate::watcher::store::RecordWriter;
}

use clap::{CommandFactory, FromArgMatches, Parser};

use cli::{Cli, Command};

/// The command line as users see it: the derived definition with the docs' help texts and
/// completers.
fn command() -> clap::Command {
    docs::decorate(Cli::command())
}

/// Parses argv with the bare derived definition, which is all a valid invocation needs. Only
/// when clap has something to print (help, version, a usage error) is argv parsed again with
/// the docs added: a watcher that runs for hours need not have built them (they cost each
/// watcher about 64 KiB of heap).
fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Ok(cli) = Cli::try_parse_from(&args) {
        return cli;
    }
    let mut cmd = command();
    let matches = cmd
        .try_get_matches_from_mut(&args)
        .unwrap_or_else(|e| e.exit());
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// Parses argv, runs the subcommand, and returns the process exit code. The one place that
/// prints `pidbeat: error: …`. A shell asking for completions is answered before anything else.
pub fn main() -> i32 {
    docs::complete_if_asked(command);
    let cli = parse();
    let result = match cli.command {
        Command::Watch(a) => a.into_config().and_then(watcher::command),
        Command::Run(a) => a.into_config().and_then(watcher::run::command),
        Command::Ps(a) => a.into_config().and_then(reader::ps::command),
        Command::Wait(a) => a.into_config().and_then(reader::wait::command),
        Command::Status(a) => a.into_config().and_then(reader::status::command),
        Command::Forget(a) => a.into_config().and_then(admin::forget::command),
        Command::Prune(a) => a.into_config().and_then(admin::prune::command),
        Command::Completions { shell } => docs::completions(&command(), shell),
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
