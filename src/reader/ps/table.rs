//! The table for people: AGENT STATE PID AGE BACKEND EXIT, aligned, sorted by agent.

use anstyle::{AnsiColor, Style};

use crate::reader::text::printable;
use crate::reader::verdict::{AgentVerdict, State};
use crate::record::{ExitInfo, Status};

const HEADER: [&str; 6] = ["AGENT", "STATE", "PID", "AGE", "BACKEND", "EXIT"];
const STATE_COL: usize = 1;

fn style(state: &str) -> Style {
    let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match state {
        "alive" => fg(AnsiColor::Green),
        "stale" => fg(AnsiColor::Yellow),
        "dead" => fg(AnsiColor::Red),
        "lost" => fg(AnsiColor::Magenta).bold(),
        "unwatched" => fg(AnsiColor::Cyan),
        "corrupt" => fg(AnsiColor::Red).bold(),
        "unreachable" => fg(AnsiColor::Yellow).bold(),
        _ => Style::new().dimmed(),
    }
}

/// `missing` are named agents without a record (`ps --watch` shows them while they are
/// awaited). Colour is only added when `color`: the caller asks anstream whether stdout wants
/// it (a TTY, no `NO_COLOR`).
pub fn render(entries: &[AgentVerdict], missing: &[String], color: bool) -> String {
    let mut rows: Vec<[String; 6]> = entries.iter().map(row).collect();
    rows.extend(
        missing
            .iter()
            .map(|a| [a.as_str(), "missing", "-", "-", "-", "-"].map(str::to_owned)),
    );
    rows.sort_by(|a, b| a[0].cmp(&b[0]));

    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    line(&mut out, &HEADER.map(str::to_owned), &widths, None);
    for r in &rows {
        let st = color.then(|| style(&r[STATE_COL]));
        line(&mut out, r, &widths, st);
    }
    out
}

fn line(out: &mut String, cells: &[String; 6], widths: &[usize; 6], state: Option<Style>) {
    for (i, cell) in cells.iter().enumerate() {
        match state.filter(|_| i == STATE_COL) {
            // Padding goes outside the escape codes so they do not count as width.
            Some(s) => out.push_str(&format!("{}{cell}{}", s.render(), s.render_reset())),
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

/// Every cell goes through [`printable`]: a record's strings are untrusted, and one row per
/// record is a promise.
fn row(e: &AgentVerdict) -> [String; 6] {
    let dash = || "-".to_owned();
    let r = e.record.as_ref();
    let mark = if e.foreign_pids { FOREIGN_PID_MARK } else { "" };
    [
        printable(&e.agent).into_owned(),
        e.state.name().to_owned(),
        r.map_or_else(dash, |r| format!("{}{mark}", r.pid)),
        e.age_ms.map_or_else(dash, age),
        r.and_then(|r| r.backend.as_deref())
            .map_or_else(dash, |b| printable(b).into_owned()),
        match r {
            Some(r) if e.state == State::Dead && r.status == Status::Dead => {
                r.exit.map_or_else(dash, |x| exit_text(&x))
            }
            _ => dash(),
        },
    ]
}

/// Coarse like `ps`'s TIME: "3s", "2m", "5h", "4d" (floored).
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
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
    fn ages() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(3_999), "3s");
        assert_eq!(age(125_000), "2m");
        assert_eq!(age(5 * 3600 * 1000 + 1), "5h");
        assert_eq!(age(4 * 86_400 * 1000), "4d");
    }

    #[test]
    fn exits() {
        let x = |code, signal, core| ExitInfo { code, signal, core };
        assert_eq!(exit_text(&x(Some(7), None, false)), "code 7");
        assert_eq!(exit_text(&x(None, Some(9), false)), "signal 9 (KILL)");
        assert_eq!(
            exit_text(&x(None, Some(libc::SIGSEGV), true)),
            format!("signal {} (SEGV, core dumped)", libc::SIGSEGV)
        );
        assert_eq!(exit_text(&x(None, Some(40), false)), "signal 40");
    }

    #[test]
    fn columns_align_and_colour_is_optional() {
        let missing = ["a-much-longer-name".to_owned(), "b".to_owned()];
        let plain = render(&[], &missing, false);
        let lines: Vec<&str> = plain.lines().collect();
        let col = lines[0].find("STATE").unwrap();
        assert!(lines[1..].iter().all(|l| l.find("missing") == Some(col)));
        assert!(!plain.contains('\x1b'));
        assert!(plain.lines().all(|l| !l.ends_with(' ')));
        let coloured = render(&[], &missing, true);
        assert!(coloured.contains('\x1b'));
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), plain);
    }
}
