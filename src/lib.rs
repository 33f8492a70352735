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
// epoll helpers, timerfds.
mod clock;
mod eventloop;
mod pidns;
mod procfs;
mod sys;
mod timer;

// The writer.
mod watcher;

// The readers.
mod reader;

// The multi-host layer on etcd: a bridge per host over the reader's follow loop, and the
// remote readers. Neither `watch` nor `run` reaches it.
mod cluster;

// The command line, turned into each command's plain config; no other module sees clap.
mod cli;

/// What the integration tests build on: planting records, reading /proc, watching the run
/// dir. Not an API.
#[doc(hidden)]
pub mod testing {
    pub use crate::procfs::read_stat;
    pub use crate::reader::dirwatch::DirWatch;
    pub use crate::record::{ExitInfo, Record, Status, now_ms};
    pub use crate::watcher::store::{RecordWriter, acquire_lock};
    /// The etcd gateway client and key layout, for the multi-host tests.
    pub mod cluster {
        pub use crate::cluster::client::{
            Client, Config, Credentials, Error, EventKind, Tls, http_agent,
        };
        pub use crate::cluster::keys;
    }
}

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, Source};
use exit::{ExitCode, runtime};

/// `pidbeat`: parses argv, runs the subcommand, and returns the process exit code. The etcd
/// commands (`publish`, `ps --etcd`, `wait --etcd`) are handed to the `pidbeat-etcd` helper
/// (see [`etcd_main`]).
pub fn main() -> i32 {
    run(exec_etcd_helper)
}

/// `pidbeat-etcd`: the same command line, with the etcd commands run here. They live in a
/// binary of their own because linking their HTTP and TLS code into `pidbeat` costs every
/// per-agent watcher memory even though it never runs it: the dynamic linker relocates that
/// code's tables in each process (measured: +40 KiB private per watcher).
#[doc(hidden)]
pub fn etcd_main() -> i32 {
    run(cluster::run)
}

/// The etcd helper's file name, looked for next to `pidbeat`, then on PATH.
const ETCD_HELPER: &str = "pidbeat-etcd";

/// Replaces this process with the etcd helper, on the same argv (it parses it again).
fn exec_etcd_helper(_: cluster::Command) -> exit::Result<ExitCode> {
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
/// exit code. The one place that prints `pidbeat: error: …`.
fn run(etcd: fn(cluster::Command) -> exit::Result<ExitCode>) -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Watch(a) => a.into_config().and_then(|c| {
            // What parsing the whole command line left on the heap goes back to the kernel
            // before a watcher settles in for hours.
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
