//! pidbeat: a pidfd + epoll liveness watcher for agent runtimes. See DESIGN.md.

pub mod cli;
pub mod eventloop;
pub mod exit;
pub mod layout;
pub mod procfs;
pub mod reader;
pub mod record;
mod sys;
pub mod timer;
pub mod watcher;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use exit::{ExitCode, runtime};

/// Parses argv, runs the subcommand, and returns the process exit code. The one place that
/// prints `pidbeat: error: …`.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Watch(a) => a.into_config().and_then(watcher::command),
        Command::Run(a) => a.into_config().and_then(watcher::run::command),
        Command::Ps(a) => a.into_config().and_then(reader::ps::command),
        Command::Wait(a) => a.into_config().and_then(reader::wait::command),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pidbeat",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::Success)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::Success)
            .map_err(|e| runtime!("cannot write the man page: {e}")),
    };
    match result {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("pidbeat: error: {e}");
            e.exit_code().code()
        }
    }
}
