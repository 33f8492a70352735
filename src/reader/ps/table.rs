//! The table for people: AGENT STATE PID UP AGE BACKEND EXIT by default, aligned, sorted by
//! agent; `-o` picks other columns (INTERVAL SEQ WATCHER ACTIVITY IDLE STATUS) and
//! `--no-header` drops the header, for `awk`/`cut`. Every cell is one word except EXIT's
//! (`signal 9 (KILL)`) and STATUS's (free text), which is why they are best last. ACTIVITY and
//! IDLE side by side read `idle 12m`, `waiting 3m`, `stuck 14m`.

use std::fmt;
use std::str::FromStr;

use anstyle::{AnsiColor, Style};

use super::started_ms;
use crate::duration::short;
use crate::incarnation::Incarnation;
use crate::reader::text::printable;
use crate::reader::verdict::{AgentVerdict, State};
use crate::record::{ExitInfo, Status, now_ms};

/// A table column (`ps -o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Agent,
    State,
    Pid,
    /// The target's uptime; for an agent whose death is recorded, `-` and how long ago.
    Up,
    /// Since the last beat.
    Age,
    Backend,
    Exit,
    Interval,
    Seq,
    Watcher,
    /// What a live agent does (`activity.rs`): one word.
    Activity,
    /// Since its last sign of progress (for `waiting`, since the claim).
    Idle,
    /// Its last `STATUS=`: free text, so best last, as EXIT.
    Status,
}

impl Column {
    /// Every column; the default table is the first [`Column::DEFAULT_LEN`].
    const ALL: [Column; 13] = [
        Column::Agent,
        Column::State,
        Column::Pid,
        Column::Up,
        Column::Age,
        Column::Backend,
        Column::Exit,
        Column::Interval,
        Column::Seq,
        Column::Watcher,
        Column::Activity,
        Column::Idle,
        Column::Status,
    ];

    const DEFAULT_LEN: usize = 7;

    fn name(self) -> &'static str {
        match self {
            Column::Agent => "agent",
            Column::State => "state",
            Column::Pid => "pid",
            Column::Up => "up",
            Column::Age => "age",
            Column::Backend => "backend",
            Column::Exit => "exit",
            Column::Interval => "interval",
            Column::Seq => "seq",
            Column::Watcher => "watcher",
            Column::Activity => "activity",
            Column::Idle => "idle",
            Column::Status => "status",
        }
    }

    /// `-o agent,state,up`: at least one, each once.
    pub fn parse_list(s: &str) -> Result<Vec<Column>, ColumnError> {
        let mut cols = Vec::new();
        for name in s.split(',') {
            let c: Column = name.parse()?;
            if cols.contains(&c) {
                return Err(ColumnError::Twice(name.to_owned()));
            }
            cols.push(c);
        }
        Ok(cols)
    }

    /// Every cell goes through [`printable`]: a record's strings are untrusted, and one row
    /// per record is a promise.
    fn cell(self, e: &AgentVerdict, now: u64) -> String {
        let dash = || "-".to_owned();
        let r = e.record.as_ref();
        let mark = if e.foreign_pids { FOREIGN_PID_MARK } else { "" };
        match self {
            Column::Agent => printable(&e.agent).into_owned(),
            Column::State => e.state.name().to_owned(),
            Column::Pid => r.map_or_else(dash, |r| format!("{}{mark}", r.pid)),
            Column::Up => up(e, now).unwrap_or_else(dash),
            Column::Age => e.age_ms.map_or_else(dash, short),
            Column::Backend => r
                .and_then(|r| r.backend.as_deref())
                .map_or_else(dash, |b| printable(b).into_owned()),
            Column::Exit => match r {
                Some(r) if e.state == State::Dead && r.status == Status::Dead => {
                    r.exit.map_or_else(
                        || unknown_exit(r.exit_unknown.as_deref()),
                        |x| exit_text(&x),
                    )
                }
                _ => dash(),
            },
            Column::Interval => r
                .and_then(|r| r.interval)
                .map_or_else(dash, |i| format!("{i}s")),
            Column::Seq => r.and_then(|r| r.seq).map_or_else(dash, |s| s.to_string()),
            Column::Watcher => r
                .and_then(|r| r.watcher_pid)
                .map_or_else(dash, |p| format!("{p}{mark}")),
            Column::Activity => e
                .activity
                .map_or_else(dash, |a| a.activity.name().to_owned()),
            Column::Idle => e.activity.map_or_else(dash, |a| short(a.idle_ms)),
            Column::Status => r
                .and_then(|r| r.progress.as_ref()?.status_text.as_deref())
                .filter(|s| !s.is_empty())
                .map_or_else(dash, |s| printable(s).into_owned()),
        }
    }
}

impl FromStr for Column {
    type Err = ColumnError;
    fn from_str(s: &str) -> Result<Column, ColumnError> {
        let s = s.trim().to_ascii_lowercase();
        Column::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or(ColumnError::Unknown(s))
    }
}

/// Why `-o` refuses a column list; each holds the name as given (an unknown one lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnError {
    Unknown(String),
    Twice(String),
}

impl fmt::Display for ColumnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnError::Unknown(s) => {
                let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
                write!(f, "unknown column `{s}`; columns: {}", names.join(","))
            }
            ColumnError::Twice(s) => write!(f, "column `{s}` is given twice"),
        }
    }
}

impl std::error::Error for ColumnError {}

/// UP: `3h` while the target runs; `-5m` once its death is recorded (5 minutes ago); `-`
/// when neither is known (a lost target whose death nobody saw, a corrupt record).
fn up(e: &AgentVerdict, now: u64) -> Option<String> {
    let r = e.record.as_ref()?;
    if let Some(died) = r.died_ms.filter(|_| r.status == Status::Dead) {
        return Some(ago(now.saturating_sub(died)));
    }
    let running = match e.state {
        State::Alive | State::Hung | State::Stale => true,
        // Another PID namespace's PID names some other process here.
        State::Lost | State::Unwatched => {
            !e.foreign_pids && Incarnation::named(r.pid, r.start_time).is_running()
        }
        // Only from etcd: nothing is known of it now.
        State::Dead | State::Corrupt | State::Unreachable => false,
    };
    let started = started_ms(e).filter(|_| running)?;
    Some(short(now.saturating_sub(started)))
}

/// How long ago a death was, as UP shows it: `-5m`; `-<1s` within its first second, where
/// whole seconds would read `-0s`.
fn ago(ms: u64) -> String {
    match ms {
        0..1000 => "-<1s".to_owned(),
        _ => format!("-{}", short(ms)),
    }
}

fn style(state: &str) -> Style {
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match state {
        "alive" => fg(AnsiColor::Green),
        "hung" => fg(AnsiColor::Red),
        "stale" => fg(AnsiColor::Yellow),
        "dead" => fg(AnsiColor::Red),
        "lost" => fg(AnsiColor::Magenta).bold(),
        "unwatched" => fg(AnsiColor::Cyan),
        "corrupt" => fg(AnsiColor::Red).bold(),
        "unreachable" => fg(AnsiColor::Yellow).bold(),
        _ => Style::new().dimmed(),
    }
}

/// How the table is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub columns: Vec<Column>,
    pub header: bool,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            columns: Column::ALL[..Column::DEFAULT_LEN].to_vec(),
            header: true,
        }
    }
}

/// `missing` are named agents without a record (`ps --watch` shows them while they are
/// awaited). Colour is only added when `color`: the caller asks anstream whether stdout wants
/// it (a TTY, no `NO_COLOR`).
pub fn render(
    entries: &[AgentVerdict],
    missing: &[String],
    layout: &Layout,
    color: bool,
) -> String {
    render_at(entries, missing, layout, color, now_ms())
}

/// `render` with UP as of `now` (Unix ms): a remote view that is not current shows it as of
/// the view's time.
pub fn render_at(
    entries: &[AgentVerdict],
    missing: &[String],
    layout: &Layout,
    color: bool,
    now: u64,
) -> String {
    let cols = &layout.columns;
    let mut rows: Vec<(String, Vec<String>)> = entries
        .iter()
        .map(|e| {
            (
                e.agent.clone(),
                cols.iter().map(|c| c.cell(e, now)).collect(),
            )
        })
        .collect();
    rows.extend(missing.iter().map(|a| {
        let cells = cols
            .iter()
            .map(|c| match c {
                Column::Agent => a.clone(),
                Column::State => "missing".to_owned(),
                _ => "-".to_owned(),
            })
            .collect();
        (a.clone(), cells)
    }));
    rows.sort_by(|a, b| a.0.cmp(&b.0));

    let header: Vec<String> = cols.iter().map(|c| c.name().to_uppercase()).collect();
    let mut widths: Vec<usize> = if layout.header {
        header.iter().map(|h| h.len()).collect()
    } else {
        vec![0; cols.len()]
    };
    for (_, r) in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let state_col = cols.iter().position(|c| *c == Column::State);
    let mut out = String::new();
    if layout.header {
        line(&mut out, &header, &widths, None);
    }
    for (_, r) in &rows {
        let st = state_col.filter(|_| color).map(|i| (i, style(&r[i])));
        line(&mut out, r, &widths, st);
    }
    out
}

fn line(out: &mut String, cells: &[String], widths: &[usize], state: Option<(usize, Style)>) {
    for (i, cell) in cells.iter().enumerate() {
        match state.filter(|(col, _)| *col == i) {
            // Padding goes outside the escape codes so they do not count as width.
            Some((_, s)) => out.push_str(&format!("{}{cell}{}", s.render(), s.render_reset())),
            None => out.push_str(cell),
        }
        if i + 1 < cells.len() {
            let pad = widths[i] - cell.chars().count() + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

/// Marks a PID of another PID namespace (a container's), which [`FOREIGN_PID_NOTE`] explains
/// (on stderr for one-shot `ps`, so that stdout stays one row per record; under the table in
/// `ps --watch`).
const FOREIGN_PID_MARK: &str = "*";
pub const FOREIGN_PID_NOTE: &str = "PID* is the PID in its watcher's PID namespace (a container), \
     not this one's: such agents are judged by their watcher's lock and beats";

/// Why a dead record has no exit status, as its watcher said (only the reasons it writes:
/// the record is untrusted text).
fn unknown_exit(why: Option<&str>) -> String {
    match why {
        Some(w @ ("reaped" | "hidden")) => format!("unknown ({w})"),
        _ => "-".to_owned(),
    }
}

/// "code 7", "signal 9 (KILL)", "signal 11 (SEGV, core dumped)".
pub fn exit_text(x: &ExitInfo) -> String {
    match (x.code, x.signal) {
        (Some(_), _) => x.to_string(),
        (None, Some(s)) => {
            let mut notes: Vec<&str> = signal_name(s).into_iter().collect();
            if x.core {
                notes.push("core dumped");
            }
            if x.oom {
                notes.push("oom");
            }
            if notes.is_empty() {
                x.to_string()
            } else {
                format!("{x} ({})", notes.join(", "))
            }
        }
        (None, None) => "-".into(),
    }
}

/// Names by this platform's numbering (they differ between architectures).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGTRAP => "TRAP",
        libc::SIGABRT => "ABRT",
        libc::SIGBUS => "BUS",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGUSR1 => "USR1",
        libc::SIGSEGV => "SEGV",
        libc::SIGUSR2 => "USR2",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGCHLD => "CHLD",
        libc::SIGCONT => "CONT",
        libc::SIGSTOP => "STOP",
        libc::SIGTSTP => "TSTP",
        libc::SIGTTIN => "TTIN",
        libc::SIGTTOU => "TTOU",
        libc::SIGURG => "URG",
        libc::SIGXCPU => "XCPU",
        libc::SIGXFSZ => "XFSZ",
        libc::SIGVTALRM => "VTALRM",
        libc::SIGPROF => "PROF",
        libc::SIGWINCH => "WINCH",
        libc::SIGIO => "IO",
        libc::SIGPWR => "PWR",
        libc::SIGSYS => "SYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_lists() {
        assert_eq!(
            Column::parse_list("agent,UP, state").unwrap(),
            [Column::Agent, Column::Up, Column::State]
        );
        for bad in ["", "agent,,state", "nope", "agent,agent"] {
            assert!(Column::parse_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deaths_ago() {
        assert_eq!(ago(0), "-<1s");
        assert_eq!(ago(999), "-<1s");
        assert_eq!(ago(1000), "-1s");
        assert_eq!(ago(301_000), "-5m");
    }

    #[test]
    fn exits() {
        let x = |code, signal, core| ExitInfo {
            code,
            signal,
            core,
            oom: false,
        };
        assert_eq!(exit_text(&x(Some(7), None, false)), "code 7");
        assert_eq!(exit_text(&x(None, Some(9), false)), "signal 9 (KILL)");
        assert_eq!(
            exit_text(&x(None, Some(libc::SIGSEGV), true)),
            format!("signal {} (SEGV, core dumped)", libc::SIGSEGV)
        );
        assert_eq!(exit_text(&x(None, Some(40), false)), "signal 40");
        let oom = ExitInfo {
            oom: true,
            ..x(None, Some(9), false)
        };
        assert_eq!(exit_text(&oom), "signal 9 (KILL, oom)");
    }

    #[test]
    fn columns_align_and_colour_is_optional() {
        let missing = ["a-much-longer-name".to_owned(), "b".to_owned()];
        let plain = render(&[], &missing, &Layout::default(), false);
        let lines: Vec<&str> = plain.lines().collect();
        let col = lines[0].find("STATE").unwrap();
        assert!(lines[1..].iter().all(|l| l.find("missing") == Some(col)));
        assert!(!plain.contains('\x1b'));
        assert!(plain.lines().all(|l| !l.ends_with(' ')));
        let coloured = render(&[], &missing, &Layout::default(), true);
        assert!(coloured.contains('\x1b'));
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), plain);
        let bare = Layout {
            columns: vec![Column::State, Column::Agent],
            header: false,
        };
        assert_eq!(
            render(&[], &missing, &bare, false),
            "missing  a-much-longer-name\nmissing  b\n"
        );
    }
}
