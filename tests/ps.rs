//! `pidbeat ps`: every state from real processes, the three output formats, and the edges
//! (empty/missing run dir, hostile files, broken pipe, `--watch`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn stdout(o: &Out) -> String {
    o.utf8_stdout().to_owned()
}

fn stderr(o: &Out) -> String {
    o.stderr.clone()
}

/// The table row for `agent`, split into its cells.
fn row(sb: &Sandbox, agent: &str) -> Vec<String> {
    let o = sb.ps(&[]);
    assert!(o.status.success(), "ps failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells[0] == agent)
        .unwrap_or_else(|| panic!("no row for {agent} in\n{}", stdout(&o)))
}

/// `ps ARGS` started with its stdout piped, for a test to wait on and read.
fn spawn_ps(sb: &Sandbox, args: &[&str]) -> Guard {
    Guard::spawn(sb.ps_cmd(args).stdout(Stdio::piped()))
}

/// The stdout of a finished `spawn_ps`, and its JSON.
fn ps_stdout_json(g: &mut Guard) -> (String, Value) {
    let out = std::io::read_to_string(g.child().stdout.take().unwrap()).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    (out, v)
}

fn dead_record(code: Option<i32>, signal: Option<i32>) -> Record {
    let mut r = record_at(Status::Dead, 1234, now_ms());
    r.seq = Some(3);
    r.exit = Some(ExitInfo {
        code,
        signal,
        core: false,
        oom: false,
    });
    r
}

#[test]
fn alive_with_table_and_json_keys() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "pi", &["--interval", "0.2"]);

    let cells = row(&sb, "pi");
    assert_eq!(cells[1], "alive");
    assert_eq!(cells[2], target.pid().to_string());
    assert!(cells[3].ends_with('s'), "up {}", cells[3]);
    assert!(cells[4].ends_with('s'), "age {}", cells[4]);
    assert_eq!(cells[5], "pidfd");
    assert_eq!(cells[6], "-");

    let o = sb.ps(&["--json"]);
    let text = stdout(&o);
    let obj = &sb.ps_json(&[])["pi"];
    for k in ["agent", "state", "age_ms", "started_ms"]
        .into_iter()
        .chain(RECORD_KEYS)
    {
        assert!(obj.get(k).is_some(), "key {k} missing from {obj}");
    }
    assert_eq!(obj["state"], "alive");
    assert_eq!(obj["status"], "alive");
    assert_eq!(obj["pid"], target.pid());
    assert!(obj["age_ms"].as_u64().unwrap() < 5_000);
    // Stable order: ours first, then the record's keys as the record has them.
    let line = text.lines().find(|l| l.contains("\"pi\"")).unwrap();
    let pos = |k: &str| {
        line.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k}"))
    };
    let order = [
        "agent",
        "state",
        "age_ms",
        "started_ms",
        "ts",
        "pid",
        "status",
        "ts_ms",
        "seq",
    ];
    assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])), "{line}");
    sb.assert_home_untouched();
}

#[test]
fn stale_when_the_watcher_is_stopped() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "slow", &["--interval", "0.1"]);
    send_signal(w.pid(), Signal::STOP); // SIGSTOP: it keeps its lock but cannot beat.
    wait_stopped(w.pid(), 5 * SEC);
    // Past 2 × 0.1 + 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state_of(&sb.ps_json(&[]), "slow"), "stale");
    assert_eq!(row(&sb, "slow")[1], "stale");

    send_signal(w.pid(), Signal::CONT); // SIGCONT: beats resume.
    wait_record(&sb.record_path("slow"), 5 * SEC, |v| {
        v["ts_ms"].as_u64().unwrap() + 500 > now_ms()
    });
    assert_eq!(state_of(&sb.ps_json(&[]), "slow"), "alive");
}

#[test]
fn dead_with_exit_code() {
    let sb = Sandbox::new();
    let mut target = spawn_exit_on_eof(7);
    let mut w = sb.watch_alive(target.pid(), "seven", &["--interval", "15"]);
    drop(target.child().stdin.take()); // EOF: the shell exits 7.
    assert!(target.wait_timeout(5 * SEC).is_some());
    wait_record(&sb.record_path("seven"), 5 * SEC, |v| {
        v["exit"]["code"] == 7
    });
    assert!(w.wait_timeout(5 * SEC).is_some(), "watcher should end");

    let cells = row(&sb, "seven");
    assert_eq!(cells[1], "dead");
    // UP of a dead agent: how long ago it died.
    assert!(
        cells[3].starts_with('-') && cells[3].ends_with('s'),
        "{cells:?}"
    );
    assert_eq!(cells[6..], ["code", "7"]);
    let obj = &sb.ps_json(&[])["seven"];
    assert_eq!(obj["state"], "dead");
    assert_eq!(obj["exit"]["code"], 7);
    assert!(obj["died_ms"].is_u64());
}

#[test]
fn dead_with_signal() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "nine", &["--interval", "15"]);
    target.kill(); // SIGKILL, and reaped: the kernel can then tell the watcher.
    wait_record(&sb.record_path("nine"), 5 * SEC, |v| {
        v["exit"]["signal"] == 9
    });
    let cells = row(&sb, "nine");
    assert_eq!(cells[1], "dead");
    assert_eq!(cells[6..], ["signal", "9", "(KILL)"]);
    assert_eq!(sb.ps_json(&[])["nine"]["exit"]["signal"], 9);
}

#[test]
fn unwatched_after_sigterm() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "uw", &["--interval", "15"]);
    send_signal(w.pid(), Signal::TERM);
    assert!(w.wait_timeout(5 * SEC).is_some());
    assert_eq!(state_of(&sb.ps_json(&[]), "uw"), "unwatched");
    assert_eq!(row(&sb, "uw")[1], "unwatched");
}

#[test]
fn lost_when_the_watcher_is_killed() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "orphan", &["--interval", "15"]);
    w.kill(); // Its lock goes with it; the record still says alive.
    assert!(pid_running(target.pid()));
    assert_eq!(
        read_record(&sb.record_path("orphan")).unwrap()["status"],
        "alive"
    );
    assert_eq!(state_of(&sb.ps_json(&[]), "orphan"), "lost");
    assert_eq!(row(&sb, "orphan")[1], "lost");
}

#[test]
fn lost_when_the_target_dies_under_a_stopped_watcher() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "frozen", &["--interval", "15"]);
    send_signal(w.pid(), Signal::STOP);
    wait_stopped(w.pid(), 5 * SEC);
    target.kill();
    let t0 = Instant::now();
    assert_eq!(state_of(&sb.ps_json(&[]), "frozen"), "lost");
    // A stopped watcher cannot write `dead`: no grace is owed to it.
    assert!(t0.elapsed() < SEC, "took {:?}", t0.elapsed());
    send_signal(w.pid(), Signal::CONT);
}

/// A record that says alive, a target that is gone, a watcher (this test, holding the lock)
/// that runs: `ps` gives the watcher its grace instead of calling a clean death `lost`.
#[test]
fn a_death_being_recorded_is_not_called_lost() {
    let sb = Sandbox::new();
    let _lock = sb.hold_lock("racy");
    let me = std::process::id() as i32;
    let alive = Record {
        status: Status::Alive,
        exit: None,
        died_ms: None,
        watcher_pid: Some(me),
        watcher_start_time: Some(start_time(me).unwrap()),
        exit_unknown: None,
        ..dead_record(None, None)
    };
    sb.plant("racy", &alive);

    // Nobody writes `dead`: after the grace it is lost.
    let t0 = Instant::now();
    assert_eq!(state_of(&sb.ps_json(&[]), "racy"), "lost");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(900), "no grace: {waited:?}");

    // The watcher writes `dead` during the grace: ps shows that, early.
    sb.plant("racy", &alive);
    let mut g = spawn_ps(&sb, &["--json"]);
    std::thread::sleep(Duration::from_millis(200));
    let t1 = Instant::now();
    sb.plant("racy", &dead_record(Some(0), None));
    assert!(g.wait_timeout(5 * SEC).unwrap().success());
    let latency = t1.elapsed();
    let (out, v) = ps_stdout_json(&mut g);
    assert_eq!(v[0]["state"], "dead", "{out}");
    assert!(latency < Duration::from_millis(700), "{latency:?}");
}

#[test]
fn corrupt_records_are_refused_fast() {
    let sb = Sandbox::new();
    let d = sb.run_dir();
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("garbage.hb"), b"this is not json\n").unwrap();
    std::fs::write(
        d.join("latin1.hb"),
        b"{\"ts\":1,\"pid\":2,\"status\":\"\xe9\"}\n",
    )
    .unwrap();
    std::fs::write(d.join("deep.hb"), "[".repeat(10_000)).unwrap();
    std::fs::write(d.join("partial.hb"), b"{\"ts\":1,\"pid\":2,").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("link.hb")).unwrap();
    std::fs::File::create(d.join("huge.hb"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mk = Command::new("mkfifo").arg(d.join("fifo.hb")).finish();
    assert!(mk.status.success(), "mkfifo: {}", mk.stderr);

    let t0 = Instant::now();
    let mut g = spawn_ps(&sb, &["--json"]);
    assert!(
        g.wait_timeout(10 * SEC).is_some(),
        "ps hung on a hostile record"
    );
    let elapsed = t0.elapsed();
    let (out, v) = ps_stdout_json(&mut g);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 7, "{out}");
    for r in rows {
        assert_eq!(r["state"], "corrupt", "{r}");
        assert!(r["error"].is_string(), "{r}");
        assert!(r.get("age_ms").is_none(), "{r}");
    }
    assert!(elapsed < 2 * SEC, "took {elapsed:?}");
    eprintln!("7 hostile records judged in {elapsed:?}");
    let link = rows.iter().find(|r| r["agent"] == "link").unwrap();
    assert!(link["error"].as_str().unwrap().contains("symlink"));
    assert_eq!(
        row(&sb, "garbage")[1..],
        ["corrupt", "-", "-", "-", "-", "-"]
    );
}

#[test]
fn prom_exposition_parses() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "up", &["--interval", "15"]);
    sb.plant("code3", &dead_record(Some(3), None));
    sb.plant("sig15", &dead_record(None, Some(15)));

    let o = sb.ps(&["--prom"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for m in [
        "pidbeat_agent_up",
        "pidbeat_agent_state",
        "pidbeat_heartbeat_timestamp_seconds",
        "pidbeat_agent_exit_code",
        "pidbeat_agent_exit_signal",
    ] {
        assert!(text.contains(&format!("# HELP {m} ")), "no HELP for {m}");
        assert!(
            text.contains(&format!("# TYPE {m} gauge\n")),
            "no TYPE for {m}"
        );
    }
    let scrape = prom_parse(&text);
    let value = |metric: &str, labels: &[(&str, &str)]| prom_value(&scrape, metric, labels);
    assert_eq!(value("pidbeat_agent_up", &[("agent", "up")]), Some(1.0));
    assert_eq!(value("pidbeat_agent_up", &[("agent", "code3")]), Some(0.0));
    for s in ["alive", "stale", "dead", "lost", "unwatched", "corrupt"] {
        let want = if s == "alive" { 1.0 } else { 0.0 };
        assert_eq!(
            value("pidbeat_agent_state", &[("agent", "up"), ("state", s)]),
            Some(want),
            "{s}"
        );
    }
    assert_eq!(
        value(
            "pidbeat_agent_state",
            &[("agent", "sig15"), ("state", "dead")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("pidbeat_agent_exit_code", &[("agent", "code3")]),
        Some(3.0)
    );
    assert_eq!(
        value("pidbeat_agent_exit_code", &[("agent", "sig15")]),
        None
    );
    assert_eq!(
        value("pidbeat_agent_exit_signal", &[("agent", "sig15")]),
        Some(15.0)
    );
    assert_eq!(value("pidbeat_agent_exit_code", &[("agent", "up")]), None);
    // Timestamps, not ages: a textfile's value stays true after it is written.
    assert!(!text.contains("_age_seconds"), "{text}");
    let now = now_ms() as f64 / 1000.0;
    let beat = value("pidbeat_heartbeat_timestamp_seconds", &[("agent", "up")]).unwrap();
    assert!((now - 20.0..=now).contains(&beat), "{beat} vs {now}");
}

#[test]
fn table_aligns_and_colour_obeys_no_color() {
    let sb = Sandbox::new();
    sb.plant("a", &dead_record(Some(0), None));
    sb.plant("a-rather-long-agent-name@host", &dead_record(None, Some(9)));
    sb.plant("m", &dead_record(Some(100), None));

    let o = sb.ps(&[]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(!text.contains('\x1b'), "escape codes off a TTY: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with("a "));
    assert!(lines[2].starts_with("a-rather-long"));
    assert!(lines[3].starts_with("m "));
    // Every column starts where its header does.
    for h in ["STATE", "PID", "UP", "AGE", "BACKEND", "EXIT"] {
        let col = lines[0].find(&format!(" {h}")).unwrap() + 1;
        for l in &lines[1..] {
            let b = l.as_bytes();
            assert!(
                b[col] != b' ' && b[col - 1] == b' ',
                "{h} misaligned in {l:?}"
            );
        }
    }

    // Forced colour shows the path works; NO_COLOR still wins over it.
    let forced = sb
        .ps_cmd(&[])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .finish();
    assert!(
        forced.raw_stdout.contains(&0x1b),
        "CLICOLOR_FORCE gave no colour"
    );
    let no_color = sb
        .ps_cmd(&[])
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .finish();
    assert!(!no_color.raw_stdout.contains(&0x1b));
    assert_eq!(no_color.raw_stdout, o.raw_stdout);
}

#[test]
fn empty_and_missing_run_dir_hint() {
    let sb = Sandbox::new();
    let o = sb.ps(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("no run dir"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
    assert!(!sb.run_dir().exists(), "ps must not create the run dir");

    std::fs::create_dir(sb.run_dir()).unwrap();
    let o = sb.ps(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("no agents in"), "{}", stderr(&o));

    let o = sb.ps(&["--json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "[]\n");
    sb.assert_home_untouched();
}

#[test]
fn named_agent_without_record_is_an_error() {
    let sb = Sandbox::new();
    sb.plant("there", &dead_record(Some(0), None));
    let o = sb.ps(&["there", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("there"));
    assert!(!stdout(&o).contains("nobody"));
    assert!(stderr(&o).contains("nobody: no record"), "{}", stderr(&o));
    let o = sb.ps(&["there"]);
    assert_eq!(o.status.code(), Some(0));
    let o = sb.ps(&["../etc"]);
    assert_eq!(o.status.code(), Some(2), "bad names are usage errors");
}

#[test]
fn broken_pipe_is_quiet() {
    let sb = Sandbox::new();
    for i in 0..3 {
        sb.plant(&format!("a{i}"), &dead_record(Some(i), None));
    }
    for args in [&[][..], &["--json"], &["--prom"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // Every write now fails with EPIPE.
        let err = sb.path("ps.stderr");
        let g = Guard::spawn(
            sb.ps_cmd(args)
                .stdin(Stdio::null())
                .stdout(writer)
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        let st = g.reap_within(10 * SEC);
        let err = std::fs::read_to_string(&err).unwrap();
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn watch_redraws_on_change_and_exits_on_sigterm() {
    let sb = Sandbox::new();
    let mut ps = Guard::spawn(
        sb.ps_cmd(&["--watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let rx = line_channel(ps.child().stdout.take().unwrap());
    let expect = |pred: &dyn Fn(&str) -> bool, what: &str| -> Instant {
        let deadline = Instant::now() + 5 * SEC;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return Instant::now(),
                Ok(_) => {}
                Err(_) => panic!("no line with {what}"),
            }
        }
    };
    expect(&|l| l.contains("no run dir"), "the hint");

    let mut target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "live", &["--interval", "15"]);
    expect(&|l| l.starts_with("live ") && l.contains("alive"), "alive");
    let t0 = Instant::now();
    target.kill();
    let t1 = expect(&|l| l.starts_with("live ") && l.contains("dead"), "dead");
    eprintln!("ps --watch showed the death after {:?}", t1 - t0);

    send_signal(ps.pid(), Signal::TERM);
    let st = ps.wait_timeout(5 * SEC).expect("ps --watch should exit");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn watch_prom_needs_an_output_file() {
    let sb = Sandbox::new();
    let o = sb.ps(&["--watch", "--prom"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--output"), "{}", stderr(&o));
}
