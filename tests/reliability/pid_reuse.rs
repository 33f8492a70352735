//! PID reuse in a private PID namespace: tests/reliability/pid_reuse.sh runs as its PID 1.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;
use crate::common::*;

const ROUNDS: usize = 20;

fn pidns_available() -> bool {
    let ok = unshare_pid_ns_works(&["--kill-child"]);
    if !ok {
        skip("`unshare --pid --fork --mount-proc` does not work here");
    }
    ok
}

/// Runs tests/reliability/pid_reuse.sh as PID 1 of a new PID namespace; returns its `@`
/// lines, after checking that every process of that namespace is gone.
fn run_pid_reuse_script(sb: &Sandbox, with_ps: bool) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reliability/pid_reuse.sh");
    let out = sb.path("ns.out");
    let err = sb.path("ns.err");
    let mut g = Guard::spawn(
        sb.cmd_of("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "bash"])
            .arg(&script)
            .arg(BIN)
            .arg(sb.run_dir())
            .arg(ROUNDS.to_string())
            .arg(if with_ps { "1" } else { "0" })
            .arg("0.2")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    // Judged by progress, not by the wall clock: the script prints at least every few
    // seconds, and a pause of the whole machine must not read as a hang.
    let mut stalled = Duration::ZERO;
    let mut last_len = 0;
    let mut last_poll = Instant::now();
    let st = loop {
        if let Some(st) = g.child().try_wait().unwrap() {
            break Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
        let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let gap = last_poll.elapsed();
        last_poll = Instant::now();
        if len != last_len {
            last_len = len;
            stalled = Duration::ZERO;
        } else {
            stalled += gap.min(Duration::from_millis(200));
        }
        if stalled > Duration::from_secs(30) {
            break None;
        }
    };
    let text = std::fs::read_to_string(&out).unwrap();
    let errs = std::fs::read_to_string(&err).unwrap();
    let st = st.unwrap_or_else(|| {
        let ns = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        panic!(
            "namespace script made no progress for 30 s; output so far:\n{text}\n{errs}\n\
             processes of {ns}:\n{}",
            describe_pidns(ns)
        )
    });
    assert!(
        st.success(),
        "namespace script failed ({st}):\n{text}\n{errs}"
    );
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('@'))
        .map(String::from)
        .collect();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("@done"),
        "script did not finish:\n{text}\n{errs}"
    );
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("@error")).collect();
    assert!(
        errors.is_empty(),
        "{errors:#?}\nfull output:\n{text}\nstderr:\n{errs}"
    );

    // Every process of the namespace died with its PID 1.
    let ns = lines[0]
        .split_whitespace()
        .nth(1)
        .expect("@ns line")
        .to_owned();
    let left: Vec<i32> = pidns_members(&ns)
        .into_iter()
        .filter(|&p| pid_running(p))
        .collect();
    assert!(
        left.is_empty(),
        "processes of the PID namespace still run: {left:?}"
    );
    lines
}

/// Every process (zombies too) of PID namespace `ns` (`pid:[N]`).
fn pidns_members(ns: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect()
}

/// State, kernel wait channel and command line of every process of PID namespace `ns`
/// (`pid:[N]`), for the message of a hung namespace test.
fn describe_pidns(ns: &str) -> String {
    let mut out = String::new();
    for pid in pidns_members(ns) {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        out += &format!(
            "  {pid} state={:?} wchan={wchan} cmd={}\n",
            proc_state(pid),
            cmdline(pid)
        );
    }
    out
}

/// (round, target pid, impostor pid, impostor start time) of every `@round` line.
fn rounds(lines: &[String]) -> Vec<(usize, i32, i32, u64)> {
    let v: Vec<_> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("@round "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(v.len(), ROUNDS, "rounds run: {lines:#?}");
    v
}

#[test]
fn pid_reuse_both_backends_record_dead() {
    if !pidns_available() {
        return;
    }
    let sb = Sandbox::new();
    let lines = run_pid_reuse_script(&sb, false);
    for (r, target, impostor, impostor_start) in rounds(&lines) {
        assert_eq!(
            impostor, target,
            "round {r}: the impostor did not get the PID"
        );
        for backend in ["pidfd", "poll"] {
            let rec = read_record(&sb.record_path(&format!("{backend}-{r}")))
                .unwrap_or_else(|| panic!("round {r}: no {backend} record"));
            assert_eq!(rec["status"], "dead", "round {r} {backend}: {rec}");
            assert_eq!(rec["pid"], target, "round {r} {backend}: {rec}");
            assert_eq!(rec["backend"], backend, "round {r}: {rec}");
            assert_ne!(
                rec["start_time"], impostor_start,
                "round {r} {backend}: the record pinned the impostor: {rec}"
            );
            let exit = format!("@exit {r} {backend} 0");
            assert!(
                lines.contains(&exit),
                "round {r}: {backend} watcher did not exit 0: {lines:#?}"
            );
        }
    }
    sb.assert_clean(&[]);
}

/// Needs `pidbeat ps`. The poll watcher is SIGSTOPped before the target dies, so its record
/// still says `alive` while the impostor holds the PID: ps must see through that.
#[test]
fn ps_pid_reuse_never_calls_the_impostor_alive() {
    if !pidns_available() {
        return;
    }
    let sb = Sandbox::new();
    let lines = run_pid_reuse_script(&sb, true);
    let ps_of = |tag: &str| -> Vec<BTreeMap<String, Value>> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("@ps {tag} ")))
            .map(parse_ps)
            .collect()
    };
    for (r, target, impostor, _) in rounds(&lines) {
        assert_eq!(
            impostor, target,
            "round {r}: the impostor did not get the PID"
        );
        let (pf, pl) = (format!("pidfd-{r}"), format!("poll-{r}"));
        for m in ps_of(&format!("before {r}")) {
            assert_eq!(m[&pf]["state"], "alive", "round {r} before the kill: {m:?}");
            assert_eq!(m[&pl]["state"], "alive", "round {r} before the kill: {m:?}");
        }
        let rec_line = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("@poll-record-in-window {r} ")))
            .unwrap();
        assert!(
            rec_line.contains("\"status\":\"alive\""),
            "round {r}: window record {rec_line}"
        );
        let window = ps_of(&format!("window {r}"));
        assert_eq!(window.len(), 3, "round {r}");
        for m in window {
            let (a, b) = (&m[&pf]["state"], &m[&pl]["state"]);
            assert!(
                a == "dead" || a == "lost",
                "round {r}: pidfd agent is {a} while an impostor holds PID {target}: {m:?}"
            );
            assert_eq!(
                b, "lost",
                "round {r}: poll agent (record alive, PID reused) is {b}: {m:?}"
            );
        }
        let after = ps_of(&format!("after {r}"));
        assert_eq!(after.len(), 1, "round {r}");
        for m in after {
            assert_eq!(m[&pf]["state"], "dead", "round {r} after: {m:?}");
            assert_eq!(m[&pl]["state"], "dead", "round {r} after: {m:?}");
        }
    }
    sb.assert_clean(&[]);
}
