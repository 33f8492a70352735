//! What scripts build on: `pidbeat status` and its exit codes, `ps -o`/`--no-header`, the
//! UP column and `started_ms`, humane durations, and the short flags.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn status(sb: &Sandbox, args: &[&str]) -> Out {
    let mut c = sb.cmd();
    c.arg("status")
        .arg("--run-dir")
        .arg(sb.run_dir())
        .args(args);
    run_with_deadline(c, 10 * SEC)
}

#[test]
fn status_exit_codes_follow_systemctl_is_active() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "up", &["--interval", "15"]);
    let mut doomed = spawn_sleep();
    let _d = sb.watch_alive(doomed.pid(), "down", &["--interval", "15"]);

    let o = status(&sb, &["up"]);
    assert_eq!((o.code(), o.stdout.as_str()), (Some(0), "alive\n"));
    assert!(o.stderr.is_empty(), "{}", o.stderr);

    doomed.kill();
    sb.wait_status("down", "dead", 5 * SEC);
    // One line per agent in the order given; 3 when any is not alive.
    let o = status(&sb, &["up", "down"]);
    assert_eq!((o.code(), o.stdout.as_str()), (Some(3), "alive\ndead\n"));
    // 4 when any has no record, named on stderr.
    let o = status(&sb, &["down", "typo", "up"]);
    assert_eq!(
        (o.code(), o.stdout.as_str()),
        (Some(4), "dead\nmissing\nalive\n")
    );
    assert!(o.stderr.contains("typo: no record"), "{}", o.stderr);
    let o = status(&sb, &["-q", "down"]);
    assert_eq!((o.code(), o.stdout.as_str()), (Some(3), ""));
    // As before, `ps` itself does not judge: it exits 0 for a dead agent.
    assert_eq!(sb.ps(&["down"]).status.code(), Some(0));
    let o = status(&sb, &[]);
    assert_eq!(o.code(), Some(2), "no agent is a usage error");
}

#[test]
fn ps_columns_header_and_uptime() {
    let sb = Sandbox::new();
    let before = now_ms();
    let mut target = spawn_sleep();
    let after = now_ms();
    let w = sb.watch_alive(target.pid(), "pi", &["--interval", "15"]);

    let o = sb.ps(&["-o", "agent,up,pid,watcher", "--no-header"]);
    assert!(o.status.success());
    let text = o.utf8_stdout();
    let cells: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(cells.len(), 4, "{text}");
    assert_eq!(cells[0], "pi");
    assert!(
        cells[1].ends_with('s') && !cells[1].starts_with('-'),
        "{text}"
    );
    assert_eq!(cells[2], target.pid().to_string());
    assert_eq!(cells[3], w.pid().to_string());
    let o = sb.ps(&["--fields", "state"]);
    assert_eq!(o.utf8_stdout(), "STATE\nalive\n");

    // started_ms: the target's start as Unix ms, within a clock tick of the spawn.
    let started = sb.ps_json(&[])["pi"]["started_ms"].as_u64().unwrap();
    assert!(
        (before.saturating_sub(20)..=after + 20).contains(&started),
        "{started} not in {before}..{after}"
    );

    // Once dead, UP says how long ago: `-0s`, `-1s`…
    target.kill();
    sb.wait_status("pi", "dead", 5 * SEC);
    let o = sb.ps(&["-o", "up", "--no-header"]);
    let up = o.utf8_stdout();
    assert!(up.starts_with('-') && up.trim_end().ends_with('s'), "{up}");

    for bad in [
        &["-o", "nope"][..],
        &["-o", "agent,agent"],
        &["-o", "pid", "--json"],
    ] {
        let o = sb.ps(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
    let o = sb.ps(&["-o", "nope"]);
    let err = &o.stderr;
    assert!(
        err.contains("--fields") && err.contains("columns:"),
        "{err}"
    );
}

#[test]
fn humane_durations_and_short_flags() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    // -d, -i and a humane interval: the record says 120 s.
    let mut c = sb.cmd();
    c.args([
        "watch",
        "--pid",
        &target.pid().to_string(),
        "--agent",
        "h",
        "-i",
        "2m",
        "-d",
    ])
    .arg(sb.run_dir());
    let _w = Guard::spawn(
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let rec = sb.wait_status("h", "alive", 5 * SEC);
    assert_eq!(rec["interval"], 120.0);

    // wait -t with a humane timeout: times out (124) after about 300 ms.
    let mut c = sb.cmd();
    c.args(["wait", "-t", "300ms", "-d"])
        .arg(sb.run_dir())
        .arg("h");
    let o = run_with_deadline(c, 10 * SEC);
    assert_eq!(o.code(), Some(124), "{}", o.stderr);
    assert!(o.elapsed >= Duration::from_millis(300), "{:?}", o.elapsed);

    // Bad durations are usage errors naming the flag.
    for (args, flag) in [
        (&["wait", "-t", "2x", "a"][..], "--timeout"),
        (&["prune", "--older-than=-1h"], "--older-than"),
        (
            &["watch", "--pid", "1", "--agent", "a", "-i", "0s"],
            "--interval",
        ),
    ] {
        let o = run_with_deadline(cmd(&sb, args), 10 * SEC);
        assert_eq!(o.code(), Some(2), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(flag), "{args:?}: {}", o.stderr);
    }
}

fn cmd(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.cmd();
    c.args(args);
    c
}

#[test]
fn short_flags_collide_nowhere() {
    let sb = Sandbox::new();
    // Every subcommand's help lists its flags; a short flag means one thing wherever it is.
    let subs = ["watch", "run", "ps", "wait", "status", "forget", "prune"];
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for sub in subs {
        let o = run_with_deadline(cmd(&sb, &[sub, "--help"]), 10 * SEC);
        assert_eq!(o.code(), Some(0));
        for line in o.stdout.lines().map(str::trim_start) {
            // `-d, --run-dir <DIR>`: a short flag and its long name.
            let Some(rest) = line.strip_prefix('-').filter(|r| r.get(1..3) == Some(", ")) else {
                continue;
            };
            let short = rest[..1].to_owned();
            let long = rest
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .trim_end_matches(',')
                .to_owned();
            if let Some(prev) = seen.insert(short.clone(), long.clone()) {
                assert_eq!(prev, long, "-{short} means {prev} and {long}");
            }
        }
    }
    for (s, l) in [("d", "--run-dir"), ("i", "--interval"), ("t", "--timeout")] {
        assert_eq!(seen.get(s).map(String::as_str), Some(l), "{seen:?}");
    }
}
