//! `ps --watch`: redraws when a record or lock changes (inotify) and every second for the
//! ages, until Ctrl-C or SIGTERM (exit 0).
//!
//! On a TTY the screen is redrawn in place with ANSI cursor codes (written raw: they are not
//! colour, so `NO_COLOR` keeps them). Off a TTY a frame is printed only when something other
//! than an age changed, after a `---` separator line, so the output is a log of changes.
//! With `--json` every frame is one line holding one JSON array. Here, unlike one-shot `ps`,
//! the no-agents hint and awaited named agents (`missing`) are part of the frame on stdout.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use super::{Snapshot, collect, color_wanted, hint, json, quiet_on_broken_pipe, settle, table};
use crate::exit::{ExitCode, Result};
use crate::layout;
use crate::reader::follow::{Follow, Wakeups, Woken};
use crate::reader::settle::Settler;
use crate::reader::verdict::AgentVerdict;

pub fn run(dir: &Path, named: &[String], as_json: bool) -> Result<ExitCode> {
    let wakeups = Wakeups {
        every_second: true,
        quit_on_signals: true,
    };
    let mut follow = Follow::new(dir, wakeups)?;
    let relevant = |name: &std::ffi::OsStr| {
        if named.is_empty() {
            layout::is_fleet_file(name)
        } else {
            named.iter().any(|a| layout::is_agent_file(name, a))
        }
    };
    let mut screen = Screen::new(as_json);
    let mut settler = Settler::default();
    loop {
        let mut snap = collect(dir, named)?;
        let next_settle = settle(&mut snap, &mut settler, Instant::now());
        let frame = if as_json {
            json::render(&snap.entries, false)
        } else {
            body(dir, &snap, screen.color)
        };
        if let Err(e) = screen.show(&header(dir), frame, signature(&snap)) {
            return quiet_on_broken_pipe(e);
        }
        // A dying agent's grace ending is a change too.
        if follow.next(relevant, next_settle)? == Woken::Quit {
            return Ok(ExitCode::Success);
        }
    }
}

/// Where frames go: redrawn in place on a TTY, else a log of the frames that changed. Shared
/// with `ps --etcd --watch`.
pub(crate) struct Screen {
    /// Redraw in place (and on every tick, for the ages).
    tty: bool,
    as_json: bool,
    pub(crate) color: bool,
    /// The last frame's signature.
    last: Option<String>,
}

impl Screen {
    pub(crate) fn new(as_json: bool) -> Screen {
        Screen {
            tty: io::stdout().is_terminal() && !as_json,
            as_json,
            color: color_wanted(),
            last: None,
        }
    }

    /// Shows `frame` under `header` (on a TTY). `sig` is what the frame says without the
    /// ages: off a TTY a frame is printed only when it changed.
    pub(crate) fn show(&mut self, header: &str, frame: String, sig: String) -> io::Result<()> {
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

fn body(dir: &Path, snap: &Snapshot, color: bool) -> String {
    if snap.entries.is_empty() && snap.missing.is_empty() {
        format!("{}\n", hint(dir, snap.dir_missing))
    } else if snap.entries.iter().any(|e| e.foreign_pids) {
        let table = table::render(&snap.entries, &snap.missing, color);
        format!("{table}{}\n", table::FOREIGN_PID_NOTE)
    } else {
        table::render(&snap.entries, &snap.missing, color)
    }
}

/// What a frame says, ages left out: off a TTY only a change of this is printed.
fn signature(snap: &Snapshot) -> String {
    format!("{}|{:?}|", snap.dir_missing, snap.missing) + &entries_signature(&snap.entries)
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
