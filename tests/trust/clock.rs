//! Wall-clock steps change no verdict. libfaketime moves the wall clock of one
//! process (the reader or the watcher) by an hour or a few seconds, either way; the verdicts
//! must be the ones an unfaked reader of an unfaked watcher gives.
//!
//! libfaketime is loaded the way its `faketime` wrapper loads it: LD_PRELOAD of
//! libfaketime.so.1 with `FAKETIME` set. The wrapper itself forks (the faked program would be
//! its child, out of the guards' reach), so the tests set the two variables themselves.
//! `FAKETIME_DONT_FAKE_MONOTONIC=1` always: without it libfaketime also moves CLOCK_MONOTONIC
//! and CLOCK_BOOTTIME, which no real clock step does. Each test checks that the fake took
//! (a faked watcher's `ts`, a faked reader's age of a wall-clock-only record), so it can fail.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;

/// The offsets tried: an hour and a few seconds, each way.
const OFFSETS: [(&str, i64); 4] = [
    ("+1h", 3_600_000),
    ("-1h", -3_600_000),
    ("+5s", 5_000),
    ("-5s", -5_000),
];

/// libfaketime.so.1 from the Debian package `faketime` (which `.ci/run` installs).
fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists())
}

fn available() -> bool {
    let ok = libfaketime().is_some();
    if !ok {
        skip("libfaketime.so.1 not found (Debian package `faketime`)");
    }
    ok
}

/// `cmd` with its wall clock moved by `offset` (libfaketime's syntax: "+1h", "-5s").
fn faked(mut cmd: Command, offset: &str) -> Command {
    cmd.env("LD_PRELOAD", libfaketime().expect("checked by `available`"))
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    cmd
}

/// A record as the shell sidecar or an older watcher writes it, without the CLOCK_BOOTTIME
/// stamp: its age can only be told by the wall clock, so it shows the reader's fake took.
fn plant_wall_clock_only(sb: &Sandbox, agent: &str) {
    let ms = now_ms();
    std::fs::write(
        sb.record_path(agent),
        format!(
            r#"{{"ts":{},"pid":1,"status":"dead","ts_ms":{ms}}}"#,
            ms / 1000
        ),
    )
    .unwrap();
}

/// Polls `ps` (run as `reader()`) until every one of `agents` is stale; returns how long that
/// took. The watchers were stopped just before, so their last beats are at most one interval
/// older than that.
fn until_stale(sb: &Sandbox, reader: impl Fn() -> Command, agents: &[&str]) -> Duration {
    let t0 = Instant::now();
    wait_until(10 * SEC, "stopped watchers turn stale", || {
        let m = ps_json_with(reader(), &sb.run_dir(), agents);
        agents.iter().all(|a| state_of(&m, a) == "stale")
    });
    t0.elapsed()
}

/// The reader's clock steps: a beating agent stays alive with its true age, a stopped
/// watcher is stale, under every offset.
#[test]
fn reader_clock_steps_change_no_verdict() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let (t1, t2) = (spawn_sleep(), spawn_sleep());
    let _beat = sb.watch_alive(t1.pid(), "beat", &["--interval", IV]);
    let hung = sb.watch_alive(t2.pid(), "hung", &["--interval", IV]);
    stop(hung.pid());
    let took = until_stale(&sb, || faked(sb.cmd(), "+1h"), &["hung"]);
    eprintln!("stopped watcher stale after {took:?} (reader at +1h)");
    assert!(
        took + IV_DUR < STALE_AFTER + SEC,
        "stale only after {took:?}"
    );
    for (offset, ms) in OFFSETS {
        plant_wall_clock_only(&sb, "old");
        let m = ps_json_with(faked(sb.cmd(), offset), &sb.run_dir(), &[]);
        let msg = format!("reader at {offset}: {m:?}");
        assert_eq!(state_of(&m, "beat"), "alive", "{msg}");
        assert!(m["beat"]["age_ms"].as_u64().unwrap() < 1400, "{msg}");
        assert_eq!(state_of(&m, "hung"), "stale", "{msg}");
        // The fake took: the unstamped record is aged by the faked wall clock.
        match m["old"]["age_ms"].as_u64() {
            Some(age) => assert!(ms > 0 && age as i64 >= ms - 100, "{msg}"),
            None => assert!(ms < 0, "a future ts has no age: {msg}"),
        }
    }
    // wait, too: a beating agent under a stepped reader clock is not over.
    let mut w = faked(sb.cmd(), "+1h");
    w.args(["wait", "--timeout", "0.5", "--run-dir"])
        .arg(sb.run_dir())
        .arg("beat");
    let o = run_with_deadline(w, 10 * SEC);
    assert_eq!(o.code(), Some(124), "{o:?}");
    cont(hung.pid());
}

/// The watcher's clock steps: its records carry a faked `ts` but a true CLOCK_BOOTTIME, so
/// a reader, unfaked or faked the other way, still sees a beating agent alive and a
/// stopped one stale within 2 × interval + 1 s of its last beat.
#[test]
fn watcher_clock_steps_change_no_verdict() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let mut keep = Vec::new();
    let mut agents = Vec::new();
    for (i, (offset, _)) in OFFSETS.iter().enumerate() {
        let target = spawn_sleep();
        let agent = format!("w{i}");
        let mut c = faked(sb.watch_cmd(target.pid(), &agent), offset);
        c.args(["--interval", IV])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        keep.push((Guard::spawn(&mut c), target));
        agents.push(agent);
    }
    let names: Vec<&str> = agents.iter().map(String::as_str).collect();
    for ((offset, ms), ((w, _), agent)) in OFFSETS.iter().zip(keep.iter().zip(&names)) {
        let r = wait_record(&sb.record_path(agent), 5 * SEC, |v| {
            status_is(v, "alive") && v["watcher_pid"] == w.pid()
        });
        // The fake took: the record's wall-clock stamp is off by the offset.
        let skew = r["ts_ms"].as_i64().unwrap() - now_ms() as i64;
        assert!(
            (skew - ms).abs() < 2_000,
            "watcher at {offset}: ts_ms off by {skew} ms: {r}"
        );
    }
    for reader in ["+0", "+1h", "-1h"] {
        let m = ps_json_with(faked(sb.cmd(), reader), &sb.run_dir(), &names);
        for (a, (offset, _)) in names.iter().zip(OFFSETS) {
            assert_eq!(
                state_of(&m, a),
                "alive",
                "watcher at {offset}, reader at {reader}: {m:?}"
            );
        }
    }
    for (w, _) in &keep {
        send_signal(w.pid(), Signal::STOP);
    }
    for (w, _) in &keep {
        wait_stopped(w.pid(), 5 * SEC);
    }
    let took = until_stale(&sb, || sb.cmd(), &names);
    eprintln!("watchers at {OFFSETS:?} stopped: stale after {took:?}");
    assert!(
        took + IV_DUR < STALE_AFTER + SEC,
        "stale only after {took:?}"
    );
    for (w, _) in &keep {
        cont(w.pid());
    }
}
