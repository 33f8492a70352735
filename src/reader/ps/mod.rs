//! `pidbeat ps`: the fleet view, as a table for people, `--json` or `--prom` for machines,
//! `--watch` to keep it on screen or (`--output FILE`) in a file, and `--history AGENT` for
//! an agent's past deaths.
//!
//! An empty or missing run dir prints a one-line hint on stderr (stdout stays empty, so
//! `pidbeat ps | wc -l` counts agents, or valid: `[]`, the HELP/TYPE lines) and exits 0; for
//! `--json` and `--prom` only a missing one does. A named AGENT without a record is reported
//! on stderr as `pidbeat: AGENT: no record in DIR` and makes the exit status 1 once the other
//! rows are printed, as `systemctl status` does for an unknown unit; so does a record that
//! cannot be read (EACCES …), with the reason.

mod history;
pub(crate) mod json;
pub(crate) mod live;
pub(crate) mod prom;
pub(crate) mod table;

pub use table::{Column, ColumnError, Layout};

use super::file::list_agents;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::activity::Thresholds;
use super::batch::judge_all;
use super::follow::{Follow, Wakeups};
use super::settle::Settler;
use super::text::printable;
use super::verdict::{AgentVerdict, Unsettled};
use crate::clock;
use crate::exitcode::{ExitCode, Result, runtime};

#[derive(Debug)]
pub struct PsConfig {
    pub run_dir: PathBuf,
    pub view: View,
    /// Only these agents (all when empty).
    pub agents: Vec<String>,
    /// The table's columns and header.
    pub layout: Layout,
    /// Replace this file atomically instead of writing to stdout.
    pub output: Option<PathBuf>,
    /// What live agents' activity is judged by.
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// One settled snapshot.
    Once(Format),
    /// `--watch`: tables, one JSON array per line, or (to `--output`) expositions.
    Watch(Format),
    /// `--history AGENT`: the agent's recorded deaths, as a table or JSON.
    History { agent: String, json: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Prom,
}

/// One look at the fleet.
pub(super) struct Snapshot {
    /// Sorted by agent.
    pub(super) entries: Vec<AgentVerdict>,
    /// Named agents without a record.
    pub(super) missing: Vec<String>,
    dir_missing: bool,
    /// Why the run dir cannot be listed (it exists but is unreadable, say).
    dir_error: Option<String>,
}

impl Snapshot {
    pub(super) fn rejudge_activity(&mut self, t: &Thresholds) {
        if *t != Thresholds::DEFAULT {
            self.entries.iter_mut().for_each(|e| e.rejudge_activity(t));
        }
    }

    /// The text of one frame in `format`; tables get colour only when `color`.
    fn render(&self, format: Format, layout: &Layout, color: bool, pretty: bool) -> String {
        match format {
            Format::Table if self.entries.is_empty() && self.missing.is_empty() => String::new(),
            Format::Table => table::render(&self.entries, &self.missing, layout, color),
            Format::Json => json::render(&self.entries, pretty),
            Format::Prom => {
                prom::render(&self.entries, self.dir_error.is_none() && !self.dir_missing)
            }
        }
    }

    /// The stderr note for a fleet that shows nothing: always for a table, and for the
    /// machine formats (whose stdout must stay valid) when the run dir is missing or broken.
    fn note(&self, dir: &Path, format: Format, named: &[String]) -> Option<String> {
        if let Some(e) = &self.dir_error {
            return Some(format!("cannot read run dir {}: {e}", dir.display()));
        }
        let empty = named.is_empty() && self.entries.is_empty();
        (empty && (format == Format::Table || self.dir_missing))
            .then(|| hint(dir, self.dir_missing))
    }
}

pub fn command(config: PsConfig) -> Result<ExitCode> {
    let dir = config.run_dir;
    super::trust::vet(&dir, super::trust::Untrusted::Warn)?;
    let mut named = config.agents;
    named.sort();
    named.dedup();
    let format = match config.view {
        View::Watch(format) => {
            return live::run(
                &dir,
                &named,
                format,
                &config.layout,
                config.output.as_deref(),
            );
        }
        View::History { agent, json } => return history::command(&dir, &agent, json),
        View::Once(format) => format,
    };

    let mut snap = settled_snapshot(&dir, &named)?;
    snap.rejudge_activity(&config.thresholds);
    // A table or JSON of a broken run dir would claim an empty fleet; the exposition says
    // it is broken (`pidbeat_run_dir_readable 0`), so it is still written.
    if let Some(e) = snap.dir_error.as_ref().filter(|_| format != Format::Prom) {
        return Err(runtime!("cannot read run dir {}: {e}", dir.display()));
    }
    let missing = std::mem::take(&mut snap.missing);
    let color = config.output.is_none() && color_wanted();
    let text = snap.render(format, &config.layout, color, true);
    match &config.output {
        Some(path) => crate::wholefile::replace(path, text.as_bytes())
            .map_err(|e| runtime!("cannot write {}: {e}", path.display()))?,
        None => {
            if let Err(e) = write_stdout(text.as_bytes()) {
                return quiet_on_broken_pipe(e);
            }
        }
    }
    if let Some(note) = snap.note(&dir, format, &named) {
        eprintln!("pidbeat: {note}");
    }
    for agent in &missing {
        eprintln!("pidbeat: {agent}: no record in {}", dir.display());
    }
    let unreadable = notes(&snap.entries, format);
    Ok(
        if missing.is_empty() && snap.dir_error.is_none() && !unreadable {
            ExitCode::Success
        } else {
            ExitCode::Failure
        },
    )
}

/// Unix ms at which the agent's target started, from the record's `start_time`; `None`
/// without one, or for a record written before this boot (its ticks count from another).
pub fn started_ms(e: &AgentVerdict) -> Option<u64> {
    let r = e.record.as_ref()?;
    let started = clock::start_unix_ms(r.start_time?)?;
    let this_boot = match (r.boot_id.as_deref(), clock::boot_id()) {
        (Some(theirs), Some(ours)) => theirs == ours,
        // Unstamped: written since this boot began (a second's slack for the two clocks).
        _ => r.written_ms() + 1000 >= clock::boot_unix_ms(),
    };
    this_boot.then_some(started)
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
        dir_error: None,
    };
    let agents = if named.is_empty() {
        match list_agents(dir) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                snap.dir_missing = true;
                Vec::new()
            }
            Err(e) => {
                snap.dir_error = Some(e.to_string());
                Vec::new()
            }
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
pub(super) fn settled_snapshot(dir: &Path, named: &[String]) -> Result<Snapshot> {
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
