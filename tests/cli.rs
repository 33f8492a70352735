//! The CLI surface users meet first: help, version, completions, man pages, and what a
//! package ships.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn stdout_of(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.cmd().args(args).finish();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out.utf8_stdout().to_owned()
}

/// Every subcommand there is; `subcommands` checks `--help` lists each.
const ALL: [&str; 10] = [
    "watch",
    "run",
    "ps",
    "wait",
    "status",
    "forget",
    "prune",
    "completions",
    "man",
    "publish",
];

/// The subcommands `pidbeat --help` lists (clap's own `help` aside): new ones are covered by
/// every test below without a change here.
fn subcommands(sb: &Sandbox) -> Vec<String> {
    let help = stdout_of(sb, &["--help"]);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section");
    let subs: Vec<String> = list
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|s| s != "help")
        .collect();
    for known in ALL {
        assert!(
            subs.iter().any(|s| s == known),
            "{known} not listed: {subs:?}"
        );
    }
    subs
}

#[test]
fn completions_cover_every_subcommand() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let text = stdout_of(&sb, &["completions", shell]);
        // The scripts are the env engine's: they ask `pidbeat` itself for every candidate.
        assert!(text.contains("PIDBEAT_COMPLETE="), "{shell}: {text}");
    }
    let out = sb.cmd().args(["completions", "tcsh"]).finish();
    assert_eq!(out.status.code(), Some(2));
    let help = stdout_of(&sb, &["completions", "--help"]);
    for install in [
        "> ~/.local/share/bash-completion/completions/pidbeat",
        "source <(pidbeat completions zsh)",
        "> ~/.config/fish/completions/pidbeat.fish",
    ] {
        assert!(
            help.contains(install),
            "completions --help lacks {install:?}"
        );
    }
}

/// Whether `w` is a flag: `--long` or `-s`.
fn is_flag(w: &&str) -> bool {
    w.starts_with("--") && w.len() > 2
        || w.len() == 2 && w.starts_with('-') && w.as_bytes()[1].is_ascii_alphabetic()
}

/// The flags, long and short, a `--help` lists under Options.
fn options_of(long: &str) -> BTreeSet<String> {
    long.split("\nOptions:\n")
        .nth(1)
        .expect("an Options section")
        .lines()
        .take_while(|l| !l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| l.split([' ', ',']))
        .filter(is_flag)
        .map(str::to_owned)
        .collect()
}

/// The `pidbeat` calls of a help's examples: each as its subcommand (`default` when the
/// call names none) and its words up to `--`, split at shell operators.
fn example_calls<'a>(long: &'a str, default: &'a str) -> Vec<(String, Vec<&'a str>)> {
    let mut calls = Vec::new();
    for example in long.lines().filter_map(|l| l.trim().strip_prefix("$ ")) {
        for call in example.split(['|', '&', ';']) {
            let mut words = call
                .split_whitespace()
                .skip_while(|w| !matches!(*w, "pidbeat" | "$(pidbeat"));
            if words.next().is_none() {
                continue;
            }
            let words: Vec<&str> = words.take_while(|w| *w != "--").collect();
            let sub = match words.first() {
                Some(w) if ALL.contains(w) => w.to_string(),
                _ => default.to_owned(),
            };
            calls.push((sub, words));
        }
    }
    calls
}

#[test]
fn every_subcommand_help_has_true_examples_and_exit_statuses() {
    let sb = Sandbox::new();
    let subs = subcommands(&sb);
    let mut options = std::collections::BTreeMap::new();
    // The top page's examples each name their subcommand.
    let mut helps = vec![("pidbeat".to_owned(), stdout_of(&sb, &["--help"]))];
    for sub in &subs {
        let short = stdout_of(&sb, &[sub, "-h"]);
        let last = short.trim_end().lines().last().unwrap();
        assert!(
            last.starts_with("Exit status: "),
            "{sub} -h ends with {last:?}"
        );
        let long = stdout_of(&sb, &[sub, "--help"]);
        assert!(long.contains("\nExit status:\n  "), "{sub} --help: {long}");
        assert!(
            long.contains("\nExamples:\n  # "),
            "{sub} --help has no examples"
        );
        options.insert(sub.clone(), options_of(&long));
        helps.push((sub.clone(), long));
    }
    // Every flag an example uses, long or short, is one of its subcommand's own (as that
    // subcommand's Options list them), on the top page too; every subcommand has an example
    // of its own.
    let mut exemplified = BTreeSet::new();
    for (page, long) in &helps {
        for (sub, words) in example_calls(long, page) {
            let own = options
                .get(&sub)
                .unwrap_or_else(|| panic!("{page:?} has an example of no subcommand: {words:?}"));
            for flag in words.iter().copied().filter(is_flag) {
                let flag = flag.split('=').next().unwrap().trim_end_matches([')', '"']);
                assert!(
                    own.contains(flag),
                    "{page:?}'s example `pidbeat {}` uses {flag}, which {sub} does not have",
                    words.join(" ")
                );
            }
            if sub == *page {
                exemplified.insert(sub);
            }
        }
    }
    let subs: BTreeSet<String> = subs.into_iter().collect();
    assert_eq!(
        exemplified, subs,
        "subcommands without an example of their own"
    );
}

/// Whether `help` has a list item (an exit status, a state …) whose term is `term`.
fn lists(help: &str, term: &str) -> bool {
    help.lines().any(|l| {
        l.strip_prefix("  ")
            .is_some_and(|r| r.split_whitespace().next() == Some(term))
    })
}

#[test]
fn ps_run_and_wait_help_say_what_users_ask() {
    let sb = Sandbox::new();
    let ps = stdout_of(&sb, &["ps", "--help"]);
    for state in ["alive", "stale", "dead", "lost", "unwatched", "corrupt"] {
        assert!(lists(&ps, state), "ps --help lacks {state}: {ps}");
    }
    for needle in [
        "AGENT, STATE, PID, UP, AGE, BACKEND, EXIT",
        "--prom --watch --output /var/lib/prometheus/node-exporter/pidbeat.prom",
        "needs --output FILE",
        "are for the table: not with --json or --prom",
        "pidbeat ps --history pi",
    ] {
        assert!(ps.contains(needle), "ps --help lacks {needle:?}: {ps}");
    }
    // `--output` replaces the file whole: the page recommends no `&& mv` loop.
    assert!(!ps.contains("&& mv"), "{ps}");
    let run = stdout_of(&sb, &["run", "--help"]);
    for needle in [
        "Every catchable signal",
        "forwarded to CMD",
        "--kill-group",
        "--subreaper",
        "--pdeathsig",
        "128 + n",
        "126",
        "127",
    ] {
        assert!(run.contains(needle), "run --help lacks {needle:?}");
    }
    let wait = stdout_of(&sb, &["wait", "--help"]);
    for line in [
        "AGENT dead code N",
        "AGENT dead signal N",
        "AGENT dead\n",
        "AGENT lost",
        "AGENT alive",
        "still no record in DIR",
        "--exists: a named agent has no record",
    ] {
        assert!(wait.contains(line), "wait --help lacks {line:?}");
    }
    let status = stdout_of(&sb, &["status", "--help"]);
    for term in ["0", "3", "4", "missing"] {
        assert!(
            lists(&status, term),
            "status --help lacks {term:?}: {status}"
        );
    }
    let forget = stdout_of(&sb, &["forget", "--help"]);
    for term in ["0", "1", "4", "2"] {
        assert!(
            lists(&forget, term),
            "forget --help lacks {term:?}: {forget}"
        );
    }
    let prune = stdout_of(&sb, &["prune", "--help"]);
    assert!(prune.contains("would forget AGENT (STATE)"), "{prune}");
}

/// Renders `page` as a reader would (`man -l`) and checks groff has nothing to warn about.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .finish();
    assert!(out.status.success(), "man -l {}: {out:?}", page.display());
    let lint = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .finish();
    let warnings = &lint.stderr;
    assert!(warnings.is_empty(), "{}: {warnings}", page.display());
    out.utf8_stdout().to_owned()
}

#[test]
fn man_pages_for_every_subcommand_render_with_every_section() {
    if !have("man", "man-db") || !have("groff", "groff-base") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path("man1");
    let listed = stdout_of(&sb, &["man", "--dir", dir.to_str().unwrap()]);
    let mut want: Vec<String> = vec!["pidbeat.1".into()];
    want.extend(subcommands(&sb).iter().map(|s| format!("pidbeat-{s}.1")));
    want.sort();
    assert_eq!(dir_names(&dir), want);
    assert_eq!(listed.lines().count(), want.len(), "{listed}");

    // `pidbeat man` alone is pidbeat(1), as written to the dir.
    let top = stdout_of(&sb, &["man"]);
    assert_eq!(top, std::fs::read_to_string(dir.join("pidbeat.1")).unwrap());

    let sections = [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ];
    for name in &want {
        let text = render(&dir.join(name));
        let headings: BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(str::trim)
            .collect();
        for s in sections {
            assert!(
                headings.contains(s),
                "{name} has no {s} section: {headings:?}"
            );
        }
        assert!(text.contains("pidbeat(1)") || name == "pidbeat.1", "{name}");
        // Every pidbeat page it refers to exists.
        for reference in text.split("pidbeat-").skip(1) {
            let sub: String = reference
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if reference[sub.len()..].starts_with("(1)") {
                let page = format!("pidbeat-{sub}.1");
                assert!(want.contains(&page), "{name} refers to {page}, not written");
            }
        }
    }
    let ps = render(&dir.join("pidbeat-ps.1"));
    assert!(ps.contains("\nSTATES\n"), "{ps}");
    for state in ["alive", "stale", "dead", "lost", "unwatched", "corrupt"] {
        assert!(
            ps.contains(&format!("\n       {state}")),
            "pidbeat-ps(1) lacks {state}"
        );
    }
    // The env fallbacks, in OPTIONS and ENVIRONMENT, and the run dir's files.
    let wait = render(&dir.join("pidbeat-wait.1"));
    assert!(
        wait.matches("MOSAIC_HEARTBEAT_RUN_DIR").count() >= 2,
        "{wait}"
    );
    assert!(wait.contains(".<agent>.lock"), "{wait}");
    let watch = render(&dir.join("pidbeat-watch.1"));
    assert!(watch.contains("MOSAIC_HEARTBEAT_INTERVAL"), "{watch}");
    let top = render(&dir.join("pidbeat.1"));
    assert!(top.contains("pidbeat-wait(1)"), "{top}");
}

#[test]
fn help_and_version() {
    let sb = Sandbox::new();
    let help = stdout_of(&sb, &["watch", "--help"]);
    for flag in [
        "--pid",
        "--agent",
        "--run-dir",
        "--interval",
        "--backend",
        "--detach",
    ] {
        assert!(help.contains(flag), "watch --help lacks {flag}");
    }
    assert!(help.contains("MOSAIC_HEARTBEAT_INTERVAL"));
    let v = stdout_of(&sb, &["--version"]);
    assert!(v.starts_with("pidbeat "), "{v}");
    // No subcommand is a usage error.
    assert_eq!(sb.cmd().finish().status.code(), Some(2));
}

/// `cargo package --list` ships every file the README links or names by path, and the
/// licences Cargo.toml's `license` refers to.
#[test]
fn the_package_ships_what_the_readme_links() {
    // `cargo package` is no light load: not while a latency-bound test runs alone.
    let _share = share();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new(env!("CARGO"));
    c.args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root);
    let out = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let shipped: Vec<&str> = out.stdout.lines().collect();

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let links = readme
        .split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next());
    let named = readme.split('`').skip(1).step_by(2);
    let mut paths: BTreeSet<&str> = links
        .chain(named)
        .map(|p| p.split('#').next().unwrap())
        .filter(|p| !p.starts_with('.') || p.len() > 2 && !p.starts_with(".."))
        .filter(|p| !p.is_empty() && !p.contains("://") && !p.starts_with('/'))
        .filter(|p| !p.contains(' ') && root.join(p).exists())
        // Build output the README names (the bench results) is made, not shipped.
        .filter(|p| !p.starts_with("target/"))
        .collect();
    // What the README links and names today, so that a broken extraction cannot pass.
    for p in [
        "docs/DESIGN.md",
        "scripts/hb-sidecar.sh",
        ".ci/run",
        "tests/common/",
    ] {
        assert!(paths.contains(p), "{p} not found in the README: {paths:?}");
    }
    paths.extend(["LICENSE-MIT", "LICENSE-APACHE", "docs/", "scripts/"]);
    for p in paths {
        let dir = p.trim_end_matches('/').to_owned() + "/";
        assert!(
            shipped.iter().any(|s| *s == p || s.starts_with(&dir)),
            "the package lacks {p}, which the README links"
        );
    }
}
