//! The CLI surface users meet first: help, version, completions, man page.

mod common;

use common::*;

fn stdout_of(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.cmd().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_cover_every_subcommand() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let text = stdout_of(&sb, &["completions", shell]);
        for sub in ["watch", "run", "ps", "wait"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(text.contains("interval"), "{shell} completion lacks flags");
    }
    let out = sb.cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_page_is_roff_from_the_same_definition() {
    let sb = Sandbox::new();
    let man = stdout_of(&sb, &["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH pidbeat"),
        "{}",
        &man[..200]
    );
    assert!(man.contains("watch") && man.contains("wait"));
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
    assert_eq!(sb.cmd().output().unwrap().status.code(), Some(2));
}
