//! `ps --watch`: redraws when a record or lock changes (inotify) and every second for the
//! ages, until Ctrl-C or SIGTERM (exit 0).
//!
//! With `--output FILE` each frame replaces FILE (see `wholefile.rs`) instead: at once when a
//! verdict changes, and at least every [`REFRESH`] so beats' timestamps stay current
//! (rewriting on every beat of a large fleet would be a write per beat for nothing). The
//! no-agents hint and a broken run dir are said once on stderr when they begin. This is
//! how `--prom` keeps node_exporter's textfile current with no loop around pidbeat.
//!
//! On a TTY the screen is redrawn in place with ANSI cursor codes (written raw: they are not
//! colour, so `NO_COLOR` keeps them). Off a TTY a frame is printed only when something other
//! than an age changed, after a `---` separator line, so the output is a log of changes.
//! With `--json` every frame is one line holding one JSON array. Here, unlike one-shot `ps`,
//! the no-agents hint and awaited named agents (`missing`) are part of the frame on stdout.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    Format, Layout, Snapshot, collect, color_wanted, hint, quiet_on_broken_pipe, settle, table,
};
use crate::exitcode::{ExitCode, Result};
use crate::reader::follow::{Follow, Wakeups, Woken};
use crate::reader::settle::Settler;
use crate::reader::verdict::AgentVerdict;
use crate::rundir;

/// The longest an `--output` file goes without being rewritten.
const REFRESH: Duration = Duration::from_secs(5);

pub fn run(
    dir: &Path,
    named: &[String],
    format: Format,
    layout: &Layout,
    to: Option<&Path>,
) -> Result<ExitCode> {
    let wakeups = Wakeups {
        every_second: true,
        quit_on_signals: true,
    };
    let mut follow = Follow::new(dir, wakeups)?;
    let relevant = |name: &std::ffi::OsStr| {
        if named.is_empty() {
            rundir::is_fleet_file(name)
        } else {
            named.iter().any(|a| rundir::is_agent_file(name, a))
        }
    };
    let mut settler = Settler::default();
    if let Some(path) = to {
        let mut file = File {
            path,
            format,
            layout,
            last: None,
            note: None,
        };
        loop {
            let mut snap = collect(dir, named)?;
            let next_settle = settle(&mut snap, &mut settler, Instant::now());
            file.show(dir, named, &snap);
            if follow.next(relevant, next_settle)? == Woken::Quit {
                return Ok(ExitCode::Success);
            }
        }
    }
    let as_json = format == Format::Json;
    let mut screen = Screen::new(as_json, layout);
    let mut said = None;
    loop {
        let mut snap = collect(dir, named)?;
        let next_settle = settle(&mut snap, &mut settler, Instant::now());
        // A JSON frame of a missing run dir is `[]`: say why on stderr, once.
        if as_json {
            say_once(&mut said, snap.note(dir, format, named));
        }
        if let Err(e) = screen.show(dir, &snap) {
            return quiet_on_broken_pipe(e);
        }
        // A dying agent's grace ending is a change too.
        if follow.next(relevant, next_settle)? == Woken::Quit {
            return Ok(ExitCode::Success);
        }
    }
}

/// `--output FILE`: frames replace the file.
struct File<'a> {
    path: &'a Path,
    format: Format,
    layout: &'a Layout,
    /// The last written frame's signature, and when it was written.
    last: Option<(String, Instant)>,
    /// The stderr note last said, so each is said once.
    note: Option<String>,
}

impl File<'_> {
    fn show(&mut self, dir: &Path, named: &[String], snap: &Snapshot) {
        say_once(&mut self.note, snap.note(dir, self.format, named));
        let sig = signature(snap);
        let due = match &self.last {
            Some((last, at)) => *last != sig || at.elapsed() >= REFRESH,
            None => true,
        };
        if !due {
            return;
        }
        let text = snap.render(self.format, self.layout, false, false);
        match crate::wholefile::replace(self.path, text.as_bytes()) {
            Ok(()) => self.last = Some((sig, Instant::now())),
            // Tried again on the next wakeup (a second at most, with the tick).
            Err(e) => {
                if self.last.as_ref().is_none_or(|(s, _)| !s.is_empty()) {
                    eprintln!(
                        "pidbeat: warning: cannot write {}: {e}",
                        self.path.display()
                    );
                }
                // An empty signature never matches, so the next look writes again, warning
                // once per failure streak.
                self.last = Some((String::new(), Instant::now()));
            }
        }
    }
}

/// Prints `note` on stderr unless it is what was said last; `said` remembers.
fn say_once(said: &mut Option<String>, note: Option<String>) {
    if let Some(n) = note.as_deref().filter(|_| note != *said) {
        eprintln!("pidbeat: {n}");
    }
    *said = note;
}

/// Where frames go on stdout: redrawn in place on a TTY, else a log of the frames that
/// changed. `ps --etcd --watch` shows its frames through it too.
pub(crate) struct Screen<'a> {
    /// Redraw in place (and on every tick, for the ages).
    tty: bool,
    as_json: bool,
    layout: &'a Layout,
    pub(crate) color: bool,
    /// The last frame's signature.
    last: Option<String>,
}

impl<'a> Screen<'a> {
    pub(crate) fn new(as_json: bool, layout: &'a Layout) -> Screen<'a> {
        Screen {
            tty: io::stdout().is_terminal() && !as_json,
            as_json,
            layout,
            color: color_wanted(),
            last: None,
        }
    }

    fn show(&mut self, dir: &Path, snap: &Snapshot) -> io::Result<()> {
        let sig = signature(snap);
        if !self.tty && self.last.as_ref() == Some(&sig) {
            return Ok(());
        }
        let frame = if self.as_json {
            snap.render(Format::Json, self.layout, false, false)
        } else {
            body(dir, snap, self.layout, self.color)
        };
        self.show_frame(&header(dir), frame, sig)
    }

    /// Shows `frame` (under `header` on a TTY). `sig` is what it says without the ages: off a
    /// TTY a frame is printed only when that changed.
    pub(crate) fn show_frame(
        &mut self,
        header: &str,
        frame: String,
        sig: String,
    ) -> io::Result<()> {
        if !self.tty && self.last.as_ref() == Some(&sig) {
            return Ok(());
        }
        let out = if self.tty {
            // Home, each line erased to its end, then everything below: no flicker.
            let mut s = format!("\x1b[H{header}\x1b[K\n\x1b[K\n");
            for l in frame.lines() {
                s.push_str(l);
                s.push_str("\x1b[K\n");
            }
            s + "\x1b[J"
        } else if self.last.is_some() && !self.as_json {
            format!("---\n{frame}")
        } else {
            frame
        };
        self.last = Some(sig);
        let mut stdout = io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()
    }
}

fn header(dir: &Path) -> String {
    format!(
        "pidbeat ps --watch: {} (every 1s and on change; Ctrl-C quits)",
        dir.display()
    )
}

fn body(dir: &Path, snap: &Snapshot, layout: &Layout, color: bool) -> String {
    match &snap.dir_error {
        Some(e) => format!("cannot read run dir {}: {e}\n", dir.display()),
        None if snap.entries.is_empty() && snap.missing.is_empty() => {
            format!("{}\n", hint(dir, snap.dir_missing))
        }
        None if snap.entries.iter().any(|e| e.foreign_pids) => {
            let table = snap.render(Format::Table, layout, color, false);
            format!("{table}{}\n", table::FOREIGN_PID_NOTE)
        }
        None => snap.render(Format::Table, layout, color, false),
    }
}

/// What a frame says, ages left out: off a TTY only a change of this is printed.
fn signature(snap: &Snapshot) -> String {
    format!(
        "{}|{:?}|{:?}|",
        snap.dir_missing, snap.dir_error, snap.missing
    ) + &entries_signature(&snap.entries)
}

/// [`signature`]'s part for the agents.
pub(crate) fn entries_signature(entries: &[AgentVerdict]) -> String {
    let mut s = String::new();
    for e in entries {
        let r = e.record.as_ref();
        s += &format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}\n",
            e.agent,
            e.state,
            r.map(|r| (r.pid, r.start_time, r.status, r.exit)),
            r.and_then(|r| r.backend.as_deref()),
            r.and_then(|r| r.watcher_pid),
            e.error
        );
    }
    s
}
