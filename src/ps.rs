//! `pidbeat ps`: the fleet view, as a table for people, `--json` or `--prom` for machines,
//! and `--watch` to keep it on screen.
//!
//! An empty or missing run dir prints a one-line hint on stderr (stdout stays empty, so
//! `pidbeat ps | wc -l` counts agents) and exits 0. A named AGENT without a record is
//! reported on stderr as `pidbeat: AGENT: no record in DIR` and makes the exit status 1 once
//! the other rows are printed, as `systemctl status` does for an unknown unit.

pub(crate) mod json;
mod live;
pub(crate) mod prom;
pub(crate) mod table;

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::PsArgs;
use crate::dirwatch::DirWatch;
use crate::error::{Error, Result};
use crate::fleet::{self, Entry, Unsettled};
use crate::runtime;
use crate::settle::Settler;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Prom,
}

/// One look at the fleet.
struct Snapshot {
    /// Sorted by agent.
    entries: Vec<Entry>,
    /// Named agents without a record.
    missing: Vec<String>,
    dir_missing: bool,
}

pub fn command(args: PsArgs) -> Result<i32> {
    let dir = args.run_dir.resolve()?;
    let format = match (args.json, args.prom) {
        (true, _) => Format::Json,
        (_, true) => Format::Prom,
        _ => Format::Table,
    };
    let mut named = args.agents;
    named.sort();
    named.dedup();
    if args.watch {
        if format == Format::Prom {
            return Err(Error::Usage(
                "--watch cannot be combined with --prom: the textfile collector wants one \
                 snapshot per file; run `pidbeat ps --prom` from a timer instead"
                    .into(),
            ));
        }
        return live::run(&dir, &named, format == Format::Json);
    }

    let snap = settled_snapshot(&dir, &named)?;
    let text = match format {
        Format::Table if snap.entries.is_empty() => String::new(),
        Format::Table => table::render(&snap.entries, &[], color_wanted()),
        Format::Json => json::render(&snap.entries, true),
        Format::Prom => prom::render(&snap.entries),
    };
    if let Err(e) = write_stdout(text.as_bytes()) {
        return quiet_on_broken_pipe(e);
    }
    if format == Format::Table && named.is_empty() && snap.entries.is_empty() {
        eprintln!("pidbeat: {}", hint(&dir, snap.dir_missing));
    }
    for agent in &snap.missing {
        eprintln!("pidbeat: {agent}: no record in {}", dir.display());
    }
    Ok(if snap.missing.is_empty() { 0 } else { 1 })
}

fn hint(dir: &Path, dir_missing: bool) -> String {
    let how = "start one with `pidbeat watch --pid PID --agent NAME`";
    if dir_missing {
        format!("no run dir at {} yet, so no agents ({how})", dir.display())
    } else {
        format!("no agents in {} ({how})", dir.display())
    }
}

pub(crate) fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// `pidbeat ps | head -1`: the reader has gone, which is no error of ours. (Rust ignores
/// SIGPIPE, so the write fails with EPIPE instead of killing us.)
pub(crate) fn quiet_on_broken_pipe(e: io::Error) -> Result<i32> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(runtime!("cannot write to stdout: {e}"))
    }
}

/// anstream's decision for stdout: a TTY, and neither `NO_COLOR` nor `CLICOLOR=0`.
pub(crate) fn color_wanted() -> bool {
    anstream::AutoStream::choice(&io::stdout()) != anstream::ColorChoice::Never
}

fn collect(dir: &Path, named: &[String]) -> Result<Snapshot> {
    let mut snap = Snapshot {
        entries: Vec::new(),
        missing: Vec::new(),
        dir_missing: false,
    };
    let agents = if named.is_empty() {
        match fleet::list_agents(dir) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                snap.dir_missing = true;
                Vec::new()
            }
            Err(e) => return Err(runtime!("cannot read run dir {}: {e}", dir.display())),
        }
    } else {
        named.to_vec()
    };
    snap.entries.reserve(agents.len());
    let judged = fleet::classify_all(dir, &agents);
    for (agent, entry) in agents.into_iter().zip(judged) {
        match entry {
            Some(e) => snap.entries.push(e),
            // Listed a moment ago and gone since: only a named agent is worth a word.
            None if !named.is_empty() => snap.missing.push(agent),
            None => {}
        }
    }
    Ok(snap)
}

/// Applies the graces; returns when the next dying agent's grace ends. A pending exit
/// status does not change what `ps` shows, so it is not waited for.
fn settle(snap: &mut Snapshot, settler: &mut Settler, now: Instant) -> Option<Instant> {
    snap.entries
        .iter_mut()
        .filter_map(|e| {
            let deadline = settler.settle(e, now);
            deadline.filter(|_| e.unsettled == Some(Unsettled::Dying))
        })
        .min()
}

/// A snapshot without dying agents: a target that died under a running watcher is given its
/// grace (woken by the `dead` record's arrival), so `ps` does not print `lost` for what is a
/// clean death a millisecond from being recorded.
fn settled_snapshot(dir: &Path, named: &[String]) -> Result<Snapshot> {
    let mut settler = Settler::default();
    let mut watch: Option<DirWatch> = None;
    loop {
        let mut snap = collect(dir, named)?;
        let Some(deadline) = settle(&mut snap, &mut settler, Instant::now()) else {
            return Ok(snap);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match &mut watch {
            None => match DirWatch::new(dir) {
                // Look again at once: the record may have landed before the watch existed.
                Ok(w) => watch = Some(w),
                Err(_) => std::thread::sleep(left.min(Duration::from_millis(50))),
            },
            Some(w) => match w.wait(left) {
                Ok(true) => {
                    let _ = w.drain(|_| true);
                }
                Ok(false) => {}
                Err(_) => std::thread::sleep(left.min(Duration::from_millis(50))),
            },
        }
    }
}
