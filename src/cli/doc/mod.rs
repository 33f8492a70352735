//! The documentation that ships with the binary: `--help` examples and exit statuses, the man
//! pages, and shell completion. Everything is added to the command that clap derives from
//! `cli.rs` by [`decorate`], by subcommand name (texts, `pages/`) and by value name
//! (completers for `AGENT`, `PID`, `CMD`; directories for `DIR`), so a new subcommand gets
//! all of it without a change here.

mod complete;
mod man;
mod pages;

use std::io::Write;
use std::path::Path;

use clap::Command;
use clap::builder::StyledStr;
use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter};
use clap_complete::env::{CompleteEnv, Shells};

use crate::exitcode::{ExitCode, Result, runtime};
use pages::Page;

/// `cmd` with every subcommand's help texts and completers added.
pub fn decorate(cmd: Command) -> Command {
    let cmd = with_help(cmd, &pages::TOP);
    cmd.mut_subcommands(|sub| {
        let page = pages::page(sub.get_name());
        with_help(sub, page).mut_args(with_completer)
    })
}

/// The variable that turns pidbeat into its own completer. Not clap's default `COMPLETE`:
/// watchers run for hours in environments pidbeat does not control, and one that inherited
/// a `COMPLETE` meant for another tool must still watch.
const COMPLETE_VAR: &str = "PIDBEAT_COMPLETE";

/// Answers a completion request (`PIDBEAT_COMPLETE=<shell>` in the environment) and exits;
/// otherwise returns at once. `factory` makes the decorated command.
pub fn complete_if_asked(factory: fn() -> Command) {
    CompleteEnv::with_factory(factory)
        .var(COMPLETE_VAR)
        .complete();
}

/// `pidbeat completions SHELL`: the registration script of the env engine, which calls
/// `pidbeat` on PATH at each TAB.
pub fn completions(cmd: &Command, shell: clap_complete::Shell) -> Result<ExitCode> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| runtime!("no dynamic completion for {name}"))?;
    let bin = cmd.get_name();
    let mut script = Vec::new();
    completer
        .write_registration(COMPLETE_VAR, bin, bin, bin, &mut script)
        .map(|()| {
            if shell == clap_complete::Shell::Zsh {
                script.extend_from_slice(zsh_autoload_bridge(bin).as_bytes());
            }
        })
        .and_then(|()| std::io::stdout().write_all(&script))
        .map(|()| ExitCode::Success)
        .map_err(|e| runtime!("cannot write the completion script: {e}"))
}

/// clap's zsh script is made to be sourced: it defines the completer and binds it with
/// `compdef`. Installed as `_pidbeat` in a directory of `$fpath` (where the package puts it),
/// zsh instead runs the file as the function `_pidbeat` at the first TAB, which would only bind
/// the completer, and that TAB would complete nothing. This line completes that first TAB too;
/// when the script is sourced, `_pidbeat` is not running, and it does nothing.
fn zsh_autoload_bridge(bin: &str) -> String {
    format!("if [[ ${{funcstack[1]}} = _{bin} ]]; then _clap_dynamic_completer_{bin} \"$@\"; fi\n")
}

/// `pidbeat man`: pidbeat(1) on stdout, or with `dir` every page into it (their paths on
/// stdout). `cmd` must not have been built yet (see `man::prepared`).
pub fn man(cmd: Command, dir: Option<&Path>) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = match dir {
        None => man::write_top(cmd, &mut out),
        Some(dir) => man::write_dir(cmd, dir)?
            .iter()
            .try_for_each(|p| writeln!(out, "{}", p.display())),
    };
    written
        .and_then(|()| out.flush())
        .map(|()| ExitCode::Success)
        .map_err(|e| runtime!("cannot write the man page: {e}"))
}

fn with_help(cmd: Command, page: &Page) -> Command {
    let heading = cmd.get_styles().get_header().render();
    let reset = cmd.get_styles().get_header().render_reset();
    let h = |title: &str| format!("{heading}{title}:{reset}\n");
    let examples: String = page
        .examples
        .iter()
        .map(|(line, _)| format!("  {line}\n"))
        .collect();
    let short = match page.examples.is_empty() {
        true => page.exit_line.to_owned(),
        false => format!("{}{examples}\n{}", h("Examples"), page.exit_line),
    };
    let mut long = String::new();
    for (title, items) in page.sections {
        long += &h(&title_case(title));
        long += &items_text(items);
        long.push('\n');
    }
    if !page.examples.is_empty() {
        long += &h("Examples");
        for (line, what) in page.examples {
            long += &format!("  # {what}\n  $ {line}\n\n");
        }
    }
    long += &h("Exit status");
    long += &items_text(page.exit);
    let cmd = match page.description {
        "" => cmd,
        text => {
            let paragraphs: Vec<String> = text.split("\n\n").map(|p| wrap(p, "", "")).collect();
            cmd.long_about(paragraphs.join("\n").trim_end().to_owned())
        }
    };
    cmd.after_help(StyledStr::from(short))
        .after_long_help(StyledStr::from(long.trim_end().to_owned()))
}

/// A list as `--help` prints one: the term, then its text indented below it.
fn items_text(items: &[pages::Item]) -> String {
    items
        .iter()
        .map(|(term, text)| match term.len() {
            0 => wrap(text, "  ", "  "),
            // A short term (an exit code) shares its text's first line, as clap lists flags.
            1..7 => wrap(text, &format!("  {term:<8}"), INDENT),
            _ => format!("  {term}\n{}", wrap(text, INDENT, INDENT)),
        })
        .collect()
}

const INDENT: &str = "          ";

/// `text` in lines of at most 90 columns (a longer word gets a line of its own), the first
/// starting with `first`, the others with `indent` (both as wide).
fn wrap(text: &str, first: &str, indent: &str) -> String {
    const WIDTH: usize = 90;
    let mut out = String::new();
    let mut line = String::from(first);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out += &line;
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line += word;
    }
    out += &line;
    out.push('\n');
    out
}

/// `EXIT STATUS` -> `Exit status`, as clap titles its own sections.
fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The completer an argument gets from its value name.
fn with_completer(arg: clap::Arg) -> clap::Arg {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.as_str().to_owned());
    match value.as_deref() {
        Some("AGENT") => arg.add(ArgValueCandidates::new(complete::agents)),
        Some("PID") => arg.add(ArgValueCandidates::new(complete::pids)),
        Some("CMD") => arg.add(ArgValueCompleter::new(complete::CommandLine)),
        Some("DIR") => arg.value_hint(clap::ValueHint::DirPath),
        _ => arg,
    }
}
