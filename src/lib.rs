//! pidbeat: a pidfd + epoll liveness watcher for agent runtimes. See DESIGN.md.

pub mod cli;
pub mod cluster;
pub mod detach;
pub mod dirwatch;
pub mod error;
pub mod eventloop;
pub mod fleet;
pub mod pins;
pub mod procfs;
pub mod ps;
pub mod record;
pub mod run;
pub mod rundir;
pub mod settle;
mod sys;
pub mod target;
pub mod timer;
pub mod wait;
pub mod watch;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

/// Parses argv, runs the subcommand, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Watch(a) => watch::command(a),
        Command::Run(a) => run::command(a),
        Command::Ps(a) => match a.split() {
            Ok(Ok(remote)) => cluster::remote::ps_command(remote),
            Ok(Err(local)) => ps::command(local),
            Err(e) => Err(e),
        },
        Command::Wait(a) => match a.split() {
            Ok(Ok(remote)) => cluster::remote::wait_command(remote),
            Ok(Err(local)) => wait::command(local),
            Err(e) => Err(e),
        },
        Command::Publish(a) => a.into_config().and_then(cluster::publish::command),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pidbeat",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| 0)
            .map_err(|e| runtime!("cannot write the man page: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pidbeat: error: {e}");
            e.exit_code()
        }
    }
}
