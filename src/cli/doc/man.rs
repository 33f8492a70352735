//! The man pages: pidbeat(1) and one pidbeat-SUB(1) per subcommand, from the clap definitions
//! (clap_mangen renders NAME, SYNOPSIS, DESCRIPTION, OPTIONS) plus the sections of
//! [`pages`](super::pages). Every subcommand gets every section, so a new subcommand gets a
//! full page without any change here: ENVIRONMENT and FILES list what `--run-dir` and
//! `--interval` read (the constants at the end) for any command that has those flags, then
//! the page's own entries.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

use super::pages::{self, Item, Page};
use crate::exitcode::{Result, runtime};

/// pidbeat(1), to `out`.
pub fn write_top(cmd: Command, out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = &prepared(cmd);
    let mut text = Vec::new();
    render(cmd, &pages::TOP, &top_refs(cmd), &mut text)?;
    out.write_all(&ascii_roff(&code_spans(&text)))
}

/// groff reads its input as Latin-1 unless a preprocessor says otherwise, so a `…` in a help
/// text or value name (`FIELD,…`) would reach `man -l` as three stray bytes. Every non-ASCII
/// character is written as groff's own `\[uXXXX]` escape instead.
fn ascii_roff(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    out.into_bytes()
}

/// The help texts mark commands, states and literals as `code`, which reads well in
/// `--help`; in a page each span is set in bold instead, so no backtick reaches the reader.
/// A font change lasts across text lines (a span wrapped over two), and a control line
/// (`.TP`, `.SH` …) ends any span left open, so one stray backtick cannot embolden the rest
/// of the page.
fn code_spans(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len());
    let mut open = false;
    for line in text.split_inclusive('\n') {
        if open && (line.starts_with('.') || line.starts_with('\'')) {
            out.push_str("\\fP\n");
            open = false;
        }
        for c in line.chars() {
            match c {
                '`' => {
                    out.push_str(if open { "\\fP" } else { "\\fB" });
                    open = !open;
                }
                c => out.push(c),
            }
        }
    }
    if open {
        out.push_str("\\fP");
    }
    out.into_bytes()
}

/// `cmd` as the pages describe it: without clap's `help` subcommand, which has no page, and
/// then built (so that subcommands know their `pidbeat X` usage and the version). Building
/// adds the `help` subcommand, so `cmd` must come unbuilt.
fn prepared(cmd: Command) -> Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// pidbeat.1 and pidbeat-SUB.1 for every subcommand into `dir` (created if missing); the
/// paths written, in that order.
pub fn write_dir(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    let cmd = &prepared(cmd);
    std::fs::create_dir_all(dir)
        .map_err(|e| runtime!("cannot create man dir {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut write = |name: String, sub: &Command, page: &Page, refs: &[String]| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        render(sub, page, refs, &mut text).expect("writing to a Vec cannot fail");
        std::fs::write(&path, ascii_roff(&code_spans(&text)))
            .map_err(|e| runtime!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write(cmd.get_name().to_owned(), cmd, &pages::TOP, &top_refs(cmd))?;
    let parent = [format!("{}(1)", cmd.get_name())];
    for sub in subcommands(cmd) {
        let name = page_name(cmd, sub);
        let named = sub.clone().display_name(name.clone());
        write(name, &named, pages::page(sub.get_name()), &parent)?;
    }
    Ok(written)
}

/// The subcommands that get a page: the ones clap_mangen lists.
fn subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// `pidbeat-ps`: the name clap_mangen's SUBCOMMANDS section refers to.
fn page_name(parent: &Command, sub: &Command) -> String {
    format!("{}-{}", parent.get_name(), sub.get_name())
}

/// What pidbeat(1) refers to first: every subcommand's page.
fn top_refs(cmd: &Command) -> Vec<String> {
    subcommands(cmd)
        .map(|s| format!("{}(1)", page_name(cmd, s)))
        .collect()
}

/// One page; `refs` are the pidbeat pages its SEE ALSO names before the entry's own.
fn render(cmd: &Command, page: &Page, refs: &[String], out: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    for (title, items) in page.sections {
        list(&mut roff, title, items);
    }
    list(&mut roff, "EXIT STATUS", page.exit);
    environment(&mut roff, cmd, page);
    files(&mut roff, cmd, page);
    examples(&mut roff, page);
    see_also(&mut roff, refs, page);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

/// A section of `.TP` items; an item without a term is a paragraph.
fn list(roff: &mut Roff, title: &str, items: &[Item]) {
    roff.control("SH", [title]);
    for (term, text) in items {
        if term.is_empty() {
            roff.control("PP", []).text([roman(*text)]);
        } else {
            roff.control("TP", [])
                .text([bold(*term)])
                .text([roman(*text)]);
        }
    }
}

/// Whether `cmd` (or, for the top page, any subcommand) has the argument `id`.
fn has_arg(cmd: &Command, id: &str) -> bool {
    let own = |c: &Command| c.get_arguments().any(|a| a.get_id() == id);
    own(cmd) || cmd.get_subcommands().any(own)
}

fn environment(roff: &mut Roff, cmd: &Command, page: &Page) {
    let mut items: Vec<Item> = Vec::new();
    if has_arg(cmd, "run_dir") {
        items.extend(RUN_DIR_ENV);
    }
    if has_arg(cmd, "interval") {
        items.extend(INTERVAL_ENV);
    }
    // `ps` colours its table; the top page lists what any subcommand reads.
    if cmd.get_name() == "ps" || cmd.has_subcommands() {
        items.extend(COLOR_ENV);
    }
    items.extend(page.env);
    if items.is_empty() {
        items.push(("", "None: this command reads no environment variables."));
    }
    list(roff, "ENVIRONMENT", &items);
}

fn files(roff: &mut Roff, cmd: &Command, page: &Page) {
    let mut items: Vec<Item> = Vec::new();
    if has_arg(cmd, "run_dir") {
        items.extend(RUN_DIR_FILES);
    }
    items.extend(page.files);
    if items.is_empty() {
        items.push(("", "None: this command reads and writes no files."));
    }
    list(roff, "FILES", &items);
}

fn examples(roff: &mut Roff, page: &Page) {
    roff.control("SH", ["EXAMPLES"]);
    if page.examples.is_empty() {
        roff.text([roman("See pidbeat(1).")]);
    }
    for (line, what) in page.examples {
        roff.control("TP", [])
            .text([bold(format!("$ {line}"))])
            .text([roman(*what)]);
    }
}

fn see_also(roff: &mut Roff, refs: &[String], page: &Page) {
    roff.control("SH", ["SEE ALSO"]);
    let all = refs
        .iter()
        .map(String::as_str)
        .chain(page.see_also.iter().copied());
    let mut inlines = Vec::new();
    for (i, r) in all.enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        // `name(1)`: the name in bold, the section in roman, as man pages write references.
        let (name, section) = r.split_once('(').unwrap_or((r, ""));
        inlines.push(bold(name));
        inlines.push(roman(format!("({section}")));
    }
    roff.text(inlines);
    let from: Vec<String> = refs
        .iter()
        .map(String::as_str)
        .chain(page.see_also.iter().copied())
        .filter_map(|r| source(r).map(|pkg| (r, pkg)))
        .enumerate()
        .map(|(i, (r, pkg))| match i {
            0 => format!("{r} comes with {pkg}"),
            _ => format!("{r} with {pkg}"),
        })
        .collect();
    if !from.is_empty() {
        roff.control("PP", [])
            .text([roman(format!("On Debian, {}.", from.join(", ")))]);
    }
}

/// Where the pages pidbeat refers to, other than its own, come from on Debian 12: the
/// package that installs each (every external SEE ALSO entry must be here).
const SOURCES: &[(&str, &str)] = &[
    ("flock(1)", "util-linux"),
    ("pidfd_open(2)", "manpages-dev"),
    ("inotify(7)", "manpages"),
    ("etcd(1)", "etcd-server"),
    ("systemctl(1)", "systemd"),
    ("systemd-notify(1)", "systemd"),
];

/// The Debian package of an external page (`None` for pidbeat's own and unknown ones).
fn source(page: &str) -> Option<&'static str> {
    SOURCES
        .iter()
        .find(|(p, _)| *p == page)
        .map(|(_, pkg)| *pkg)
}

/// The environment of every command with `--run-dir`, in the order it is searched.
const RUN_DIR_ENV: &[Item] = &[
    (
        "MOSAIC_HEARTBEAT_RUN_DIR",
        "the run dir when --run-dir is absent; set but empty counts as unset",
    ),
    (
        "XDG_CONFIG_HOME",
        "else the run dir is $XDG_CONFIG_HOME/mosaic/fleet/run (an absolute path only)",
    ),
    ("HOME", "else the run dir is ~/.config/mosaic/fleet/run"),
];

/// The environment of every command with `--interval`.
const INTERVAL_ENV: &[Item] = &[(
    "MOSAIC_HEARTBEAT_INTERVAL",
    "seconds between beats when --interval is absent (default 15); set but empty counts as unset",
)];

/// The environment of commands that colour their output.
const COLOR_ENV: &[Item] = &[(
    "NO_COLOR, CLICOLOR",
    "colour is used only on a terminal, and never when NO_COLOR is set or CLICOLOR=0",
)];

/// The files of every command with `--run-dir`.
const RUN_DIR_FILES: &[Item] = &[
    (
        "~/.config/mosaic/fleet/run/",
        "the default run dir (see ENVIRONMENT); created with mode 0700, refused if group- or world-writable or owned by someone else",
    ),
    (
        "<run-dir>/<agent>.hb",
        "the agent's record: one line of JSON, replaced atomically (docs/record.schema.json)",
    ),
    (
        "<run-dir>/<agent>.deaths",
        "the agent's death history: its last 10 ended records, one JSON line each, oldest first (ps --history)",
    ),
    (
        "<run-dir>/<agent>.log",
        "the launcher's log of the agent (its watcher's and sidecar's stderr); removed by forget and prune only with --logs",
    ),
    (
        "<run-dir>/.<agent>.lock",
        "held (flock) by the agent's one watcher for its whole life",
    ),
    (
        "<run-dir>/.<agent>.hb.<pid>.tmp, .<agent>.deaths.<pid>.tmp",
        "a record or history being written; removed by the next watcher if one was killed mid-write",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page, as `man --dir` writes it: (file name, roff text).
    fn all_pages() -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        write_dir(crate::command(), dir.path())
            .unwrap()
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(p).unwrap())
            })
            .collect()
    }

    #[test]
    fn code_spans_become_bold_and_never_leak() {
        assert_eq!(
            code_spans(b"run `pidbeat ps` or\n`pidbeat\nwait`.\n"),
            b"run \\fBpidbeat ps\\fP or\n\\fBpidbeat\nwait\\fP.\n"
        );
        // A stray one is closed at the next control line.
        assert_eq!(code_spans(b"a `b\n.TP\nc\n"), b"a \\fBb\n\\fP\n.TP\nc\n");
        for (name, text) in all_pages() {
            assert!(!text.contains('`'), "{name} has a literal backtick");
        }
    }

    #[test]
    fn see_also_names_only_pages_with_a_known_home() {
        let mut own: Vec<String> = all_pages().into_iter().map(|(n, _)| n).collect();
        own.iter_mut()
            .for_each(|n| *n = format!("{}(1)", n.trim_end_matches(".1")));
        let sub_names = crate::command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect::<Vec<_>>();
        for name in sub_names.iter().map(String::as_str).chain(["top"]) {
            let page = if name == "top" {
                &pages::TOP
            } else {
                pages::page(name)
            };
            for r in page.see_also {
                assert!(
                    own.iter().any(|o| o == r) || source(r).is_some(),
                    "{name}'s SEE ALSO names {r}: neither a pidbeat page nor in SOURCES"
                );
            }
        }
    }

    #[test]
    fn files_name_every_file_of_an_agent() {
        let pages = all_pages();
        let (_, wait) = pages.iter().find(|(n, _)| n == "pidbeat-wait.1").unwrap();
        for f in ["hb", "deaths", "log", "lock"] {
            assert!(
                wait.contains(&format!("<agent>.{f}")),
                "FILES lacks <agent>.{f}"
            );
        }
    }
}
