//! `pidbeat ps`: the fleet view, as a table for people, `--json` or `--prom` for machines,
//! and `--watch` to keep it on screen.
//!
//! An empty or missing run dir prints a one-line hint on stderr (stdout stays empty, so
//! `pidbeat ps | wc -l` counts agents) and exits 0. A named AGENT without a record is
//! reported on stderr as `pidbeat: AGENT: no record in DIR` and makes the exit status 1 once
//! the other rows are printed, as `systemctl status` does for an unknown unit; so does a
//! record that cannot be read (EACCES …), with the reason.

pub(crate) mod json;
pub(crate) mod live;
pub(crate) mod prom;
pub(crate) mod table;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::file::list_agents;
use super::follow::{Follow, Wakeups};
use super::look::judge_all;
use super::settle::Settler;
use super::text::printable;
use super::verdict::{AgentVerdict, Unsettled};
use crate::exit::{ExitCode, Result, runtime};

#[derive(Debug)]
pub struct PsConfig {
    pub run_dir: PathBuf,
    pub view: View,
    /// Only these agents (all when empty).
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// One settled snapshot.
    Once(Format),
    /// `--watch`: tables, or one JSON array per line.
    Watch { json: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Prom,
}

/// One look at the fleet.
struct Snapshot {
    /// Sorted by agent.
    entries: Vec<AgentVerdict>,
    /// Named agents without a record.
    missing: Vec<String>,
    dir_missing: bool,
}

pub fn command(config: PsConfig) -> Result<ExitCode> {
    let dir = config.run_dir;
    let mut named = config.agents;
    named.sort();
    named.dedup();
    let format = match config.view {
        View::Watch { json } => return live::run(&dir, &named, json),
        View::Once(format) => format,
    };

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
    let unreadable = notes(&snap.entries, format);
    Ok(if snap.missing.is_empty() && !unreadable {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// What the rows cannot say, on stderr: why a record is corrupt (the table has no room for
/// it; `--json` has `error`), which PIDs are a container's, and every record that could not
/// be read at all. Returns whether there was such a record: that fails the command, since
/// its row says nothing true.
fn notes(entries: &[AgentVerdict], format: Format) -> bool {
    let mut unreadable = false;
    for e in entries {
        let Some(err) = &e.error else { continue };
        unreadable |= e.unreadable;
        if e.unreadable || format == Format::Table {
            let what = if e.unreadable { "" } else { "corrupt record: " };
            eprintln!("pidbeat: {}: {what}{}", e.agent, printable(err));
        }
    }
    if format == Format::Table && entries.iter().any(|e| e.foreign_pids) {
        eprintln!("pidbeat: {}", table::FOREIGN_PID_NOTE);
    }
    unreadable
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
pub(crate) fn quiet_on_broken_pipe(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitCode::Success)
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
        match list_agents(dir) {
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
    let judged = judge_all(dir, &agents);
    for (agent, verdict) in agents.into_iter().zip(judged) {
        match verdict {
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
    let mut follow: Option<Follow> = None;
    loop {
        let mut snap = collect(dir, named)?;
        let Some(deadline) = settle(&mut snap, &mut settler, Instant::now()) else {
            return Ok(snap);
        };
        // Without inotify (a limit reached, say), look again every 50 ms.
        let nap = || {
            let left = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        };
        match &mut follow {
            None => match Follow::new(dir, Wakeups::default()) {
                // Look again at once: the record may have landed before the watch existed.
                Ok(f) => follow = Some(f),
                Err(_) => nap(),
            },
            Some(f) => {
                if f.next(|_| true, Some(deadline)).is_err() {
                    nap();
                }
            }
        }
    }
}
