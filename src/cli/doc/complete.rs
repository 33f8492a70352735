//! What TAB offers beyond flags (clap_complete's env engine asks these when the shell calls
//! `PIDBEAT_COMPLETE=<shell> pidbeat -- <words>`): the agents of the run dir, PIDs with their command
//! names, and commands on PATH after `run --`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};

use crate::reader;
use crate::rundir;

/// The agents with a record in the run dir the line names (`--run-dir`), else in the one the
/// environment resolves to.
pub fn agents() -> Vec<CompletionCandidate> {
    let Ok(dir) = rundir::resolve(run_dir_on_line(std::env::args_os()).as_deref()) else {
        return Vec::new();
    };
    reader::list_agents(&dir)
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The `--run-dir` value among the words being completed: in completion mode argv is the
/// completer, `--`, then the command line's words.
fn run_dir_on_line(argv: impl IntoIterator<Item = OsString>) -> Option<PathBuf> {
    let words: Vec<OsString> = argv.into_iter().skip_while(|a| a != "--").skip(1).collect();
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        if w == "--run-dir" {
            found = words.get(i + 1).map(PathBuf::from);
        } else if let Some(v) = w.as_bytes().strip_prefix(b"--run-dir=") {
            found = Some(PathBuf::from(OsStr::from_bytes(v)));
        }
    }
    found.filter(|p| !p.as_os_str().is_empty())
}

/// The processes one could watch, with their command names: every process of this PID
/// namespace but kernel threads (no command line) and the completer itself.
pub fn pids() -> Vec<CompletionCandidate> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut procs: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            if cmdline.is_empty() {
                return None;
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim_end().to_owned()))
        })
        .collect();
    procs.sort();
    procs
        .into_iter()
        .map(|(pid, comm)| CompletionCandidate::new(pid.to_string()).help(Some(comm.into())))
        .collect()
}

/// `run -- CMD ARGS…`: a command on PATH (or an executable path) first, then files.
pub struct CommandLine;

impl ValueCompleter for CommandLine {
    /// Which word of CMD's is being completed is read from the line: clap_complete 4.6's
    /// `arg_index` is 0 for both the first and the second word after `--`.
    fn complete(&self, current: &OsStr) -> Vec<CompletionCandidate> {
        if !completing_cmd(std::env::args_os()) {
            return PathCompleter::any().complete(current);
        }
        if current.as_bytes().contains(&b'/') {
            return PathCompleter::any()
                .filter(|p| p.is_dir() || is_executable(p))
                .complete(current);
        }
        commands_on_path(current, std::env::var_os("PATH").as_deref())
    }
}

/// Whether the word being completed (the line's last) is the first after the line's `--`.
fn completing_cmd(argv: impl IntoIterator<Item = OsString>) -> bool {
    let words: Vec<OsString> = argv.into_iter().skip_while(|a| a != "--").skip(1).collect();
    match words.iter().position(|w| w == "--") {
        Some(escape) => words.len() == escape + 2,
        None => true,
    }
}

/// The executables on `path` whose names start with `prefix`, each once, sorted.
fn commands_on_path(prefix: &OsStr, path: Option<&OsStr>) -> Vec<CompletionCandidate> {
    let mut names: Vec<OsString> = std::env::split_paths(path.unwrap_or_default())
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.file_name().as_bytes().starts_with(prefix.as_bytes()))
        .filter(|e| is_executable(&e.path()))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_dir_is_read_from_the_line_being_completed() {
        let on = |w: &[&str]| run_dir_on_line(argv(w));
        assert_eq!(on(&["pidbeat", "--", "pidbeat", "wait", ""]), None);
        assert_eq!(
            on(&["pidbeat", "--", "pidbeat", "wait", "--run-dir", "/r", ""]),
            Some(PathBuf::from("/r"))
        );
        assert_eq!(
            on(&["pidbeat", "--", "pidbeat", "ps", "--run-dir=/s", "x"]),
            Some(PathBuf::from("/s"))
        );
        // The completer's own argv before `--` is not the line.
        assert_eq!(on(&["--run-dir", "/no", "--", "pidbeat", "ps"]), None);
    }

    #[test]
    fn the_command_is_the_first_word_after_the_escape() {
        let line = |w: &[&str]| completing_cmd(argv(w));
        assert!(line(&["pidbeat", "--", "pidbeat", "run", "--", ""]));
        assert!(line(&[
            "pidbeat", "--", "pidbeat", "run", "--agent", "a", "--", "sl"
        ]));
        assert!(!line(&[
            "pidbeat", "--", "pidbeat", "run", "--", "sleep", ""
        ]));
        assert!(!line(&[
            "pidbeat", "--", "pidbeat", "run", "--", "sh", "-c", "x"
        ]));
    }

    #[test]
    fn commands_come_from_path_once_each() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            for (name, mode) in [("pbx-tool", 0o755), ("pbx-data", 0o644)] {
                std::fs::write(d.join(name), "").unwrap();
                std::fs::set_permissions(d.join(name), PermissionsExt::from_mode(mode)).unwrap();
            }
        }
        let path = std::env::join_paths([&a, &b]).unwrap();
        let got: Vec<_> = commands_on_path(OsStr::new("pbx"), Some(&path))
            .iter()
            .map(|c| c.get_value().to_owned())
            .collect();
        assert_eq!(got, [OsString::from("pbx-tool")]);
    }
}
