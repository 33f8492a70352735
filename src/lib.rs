//! pidbeat: a pidfd + epoll liveness watcher for agent runtimes. See DESIGN.md.
//!
//! Two sides share one contract. The writer (`watcher/`: `watch`, `run`) keeps one agent's
//! record true; the readers (`reader/`: `ps`, `wait`) judge records they do not trust. They
//! meet only in the contract modules, never in each other's code.
//!
//! Nothing is public but [`main`] and `etcd_main` (the `pidbeat-etcd` executable's entry), so
//! the dead-code lint sees every unused item. `unsafe` is denied everywhere but in `sys.rs`.
#![deny(unsafe_code)]

// The contract both sides obey: the record, the run dir's names and rules, the exit codes.
mod exitcode;
mod record;
mod rundir;

// What both sides stand on: /proc, process identity, the clocks, PID namespaces, the few
// unsafe syscalls, epoll helpers, timerfds, whole-file replacement, durations as people write
// them.
mod clock;
mod duration;
mod eventloop;
mod incarnation;
mod pidns;
mod procfs;
mod sys;
mod timer;
mod wholefile;

// The writer.
mod watcher;

// `pidbeat notify`: an sd_notify sender for the watcher's socket.
mod notify;

// The readers.
mod reader;

// Forgetting ended agents: judged as the readers judge, removed under the writers' lock.
mod admin;

// The multi-host layer on etcd: a bridge per host over the reader's follow loop, and the
// remote readers. Linked only into `pidbeat-etcd` (see `etcd_main`).
mod cluster;

// The command line, turned into each command's plain config; no other module sees the clap
// types. `cli::doc` adds help texts and completers to the command clap derives from them, and
// renders the man pages and completion scripts.
mod cli;

use clap::{CommandFactory, FromArgMatches, Parser};

use cli::{Cli, Command, Source};
use exitcode::{ExitCode, runtime};

/// The command line as users see it: the derived definition with the docs' help texts and
/// completers.
fn command() -> clap::Command {
    cli::doc::decorate(Cli::command())
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

/// `pidbeat`: parses argv, runs the subcommand, and returns the process exit code. The etcd
/// commands (`publish`, `ps --etcd`, `wait --etcd`) are handed to the `pidbeat-etcd` helper
/// (see [`etcd_main`]).
pub fn main() -> i32 {
    run(exec_etcd_helper)
}

/// `pidbeat-etcd`: the same command line, with the etcd commands run here. They live in a
/// binary of their own because linking their HTTP and TLS code into `pidbeat` costs every
/// per-agent watcher memory even though it never runs it: the dynamic linker relocates that
/// code's tables in each process (measured with the scale bench: about 80 KiB more PSS per
/// added watcher, 201 → 280 KiB).
#[doc(hidden)]
pub fn etcd_main() -> i32 {
    run(cluster::run)
}

/// The etcd helper's file name, looked for next to `pidbeat`, then on PATH.
const ETCD_HELPER: &str = "pidbeat-etcd";

/// Replaces this process with the etcd helper, on the same argv (it parses it again).
fn exec_etcd_helper(_: cluster::Command) -> exitcode::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join(ETCD_HELPER)))
        .filter(|p| p.is_file());
    let helper = beside.unwrap_or_else(|| ETCD_HELPER.into());
    let mut args = std::env::args_os();
    let err = std::process::Command::new(&helper)
        .arg0(args.next().unwrap_or_else(|| "pidbeat".into()))
        .args(args)
        .exec();
    Err(runtime!(
        "cannot run {}: {err} (the etcd commands live in {ETCD_HELPER}, which `cargo install` \
         puts next to pidbeat)",
        helper.display()
    ))
}

/// Parses argv, runs the subcommand (the etcd ones through `etcd`), and returns the process
/// exit code. The one place that prints `pidbeat: error: …`. A shell asking for completions
/// is answered before anything else.
fn run(etcd: fn(cluster::Command) -> exitcode::Result<ExitCode>) -> i32 {
    cli::doc::complete_if_asked(command);
    let cli = parse();
    let result = match cli.command {
        Command::Watch(a) => a.into_config().and_then(|c| {
            // What parsing the command line left on the heap goes back to the kernel before
            // a watcher settles in for hours.
            sys::trim_heap();
            watcher::command(c)
        }),
        Command::Run(a) => a.into_config().and_then(watcher::run::command),
        Command::Ps(a) => a.into_source().and_then(|s| match s {
            Source::Local(c) => reader::ps::command(c),
            Source::Etcd(c) => etcd(cluster::Command::Ps(c)),
        }),
        Command::Wait(a) => a.into_source().and_then(|s| match s {
            Source::Local(c) => reader::wait::command(c),
            Source::Etcd(c) => etcd(cluster::Command::Wait(c)),
        }),
        Command::Publish(a) => a
            .into_config()
            .and_then(|c| etcd(cluster::Command::Publish(c))),
        Command::Status(a) => a.into_config().and_then(reader::status::command),
        Command::Forget(a) => a.into_config().and_then(admin::forget::command),
        Command::Prune(a) => a.into_config().and_then(admin::prune::command),
        Command::Notify(a) => a.into_config().and_then(notify::command),
        Command::Completions { shell } => cli::doc::completions(&command(), shell),
        Command::Man { dir } => cli::doc::man(command(), dir.as_deref()),
    };
    match result {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("pidbeat: error: {e}");
            e.exit_code().code()
        }
    }
}
