//! `ps --prom` with the real consumer: node_exporter's textfile collector (Debian's
//! `prometheus-node-exporter`, started here on a free port of 127.0.0.1 and scraped over
//! HTTP), kept current by `ps --prom --watch --output` and no loop. Every exposition is
//! parsed with prometheus-parse (`promtool` comes only with the whole Prometheus server
//! package, too big for CI). Also `--output`'s atomic replacement and what a missing or
//! broken run dir looks like to a scraper.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);
const NODE_EXPORTER: &str = "prometheus-node-exporter";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP scrape of node_exporter's /metrics (its body), or None while it is not up.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(2 * SEC)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

#[test]
fn node_exporter_sees_a_death_within_a_second() {
    if !have(NODE_EXPORTER, NODE_EXPORTER) {
        return;
    }
    let sb = Sandbox::new();
    let textfile = sb.path("textfile");
    std::fs::create_dir(&textfile).unwrap();
    let before_spawn = now_ms();
    let mut target = spawn_sleep();
    let after_spawn = now_ms();
    let _w = sb.watch_alive(target.pid(), "pi", &["--interval", "15"]);

    let prom_file = textfile.join("pidbeat.prom");
    let mut ps = Guard::spawn(
        sb.ps_cmd(&["--prom", "--watch", "--output"])
            .arg(&prom_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let port = free_port();
    let mut exporter = Guard::spawn(
        sb.cmd_of(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                textfile.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let up = poll(
        10 * SEC,
        Duration::from_millis(20),
        || {
            let s = prom_parse(&scrape(port)?);
            (prom_value(&s, "pidbeat_agent_up", &[("agent", "pi")]) == Some(1.0)).then_some(s)
        },
        || "node_exporter never showed pi up".into(),
    );
    assert_eq!(
        prom_value(&up, "node_textfile_scrape_error", &[]),
        Some(0.0)
    );
    assert_eq!(prom_value(&up, "pidbeat_run_dir_readable", &[]), Some(1.0));
    assert_eq!(
        prom_value(
            &up,
            "pidbeat_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        prom_value(
            &up,
            "pidbeat_heartbeat_interval_seconds",
            &[("agent", "pi")]
        ),
        Some(15.0)
    );
    // The target's start as Unix time, to a clock tick (10 ms) and the float's rounding.
    let started = prom_value(&up, "pidbeat_agent_start_time_seconds", &[("agent", "pi")]).unwrap();
    let (lo, hi) = (
        before_spawn as f64 / 1e3 - 0.02,
        after_spawn as f64 / 1e3 + 0.02,
    );
    assert!((lo..=hi).contains(&started), "{started} not in {lo}..{hi}");

    let killed = Instant::now();
    target.kill();
    let dead = poll(
        5 * SEC,
        Duration::from_millis(10),
        || {
            let s = prom_parse(&scrape(port)?);
            let state = prom_value(
                &s,
                "pidbeat_agent_state",
                &[("agent", "pi"), ("state", "dead")],
            );
            (state == Some(1.0)).then_some(s)
        },
        || "node_exporter never showed pi dead".into(),
    );
    let took = killed.elapsed();
    eprintln!("death → node_exporter scrape: {took:?}");
    assert!(took < SEC, "the death took {took:?} to reach a scrape");
    assert_eq!(
        prom_value(&dead, "pidbeat_agent_up", &[("agent", "pi")]),
        Some(0.0)
    );
    // The exit status lands in a rewrite of the record once the kernel has it.
    let dead = poll(
        3 * SEC,
        Duration::from_millis(10),
        || {
            let s = prom_parse(&scrape(port)?);
            let sig = prom_value(&s, "pidbeat_agent_exit_signal", &[("agent", "pi")]);
            (sig == Some(9.0)).then_some(s)
        },
        || "node_exporter never showed the exit signal".into(),
    );
    let died = prom_value(
        &dead,
        "pidbeat_agent_death_timestamp_seconds",
        &[("agent", "pi")],
    )
    .unwrap();
    assert!((now_ms() as f64 / 1e3 - died).abs() < 5.0, "{died}");
    // Only the exposition itself is in the collector's dir: no temp file left behind.
    assert_eq!(dir_names(&textfile), ["pidbeat.prom"]);

    send_signal(ps.pid(), Signal::TERM);
    assert_eq!(ps.wait_timeout(5 * SEC).expect("ps exits").code(), Some(0));
    exporter.kill();
}

#[test]
fn output_replaces_the_file_whole() {
    let sb = Sandbox::new();
    sb.private_run_dir();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "a", &["--interval", "15"]);
    let out = sb.path("metrics.prom");
    std::fs::write(&out, "old\n").unwrap();
    let o = sb.ps_cmd(&["--prom", "--output"]).arg(&out).finish();
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty(), "stdout: {:?}", o.stdout);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        prom_value(&prom_parse(&text), "pidbeat_agent_up", &[("agent", "a")]),
        Some(1.0)
    );
    // JSON goes there too.
    let json = sb.path("fleet.json");
    let o = sb.ps_cmd(&["--json", "--output"]).arg(&json).finish();
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v[0]["agent"], "a");

    // The rename fails (a directory is in the way): exit 1 naming the file, no temp left.
    let blocked = sb.path("blocked");
    std::fs::create_dir_all(blocked.join("pidbeat.prom")).unwrap();
    let o = sb
        .ps_cmd(&["--prom", "--output"])
        .arg(blocked.join("pidbeat.prom"))
        .finish();
    assert_eq!(o.status.code(), Some(1));
    let err = &o.stderr;
    assert!(err.contains("pidbeat.prom"), "{err}");
    assert_eq!(dir_names(&blocked), ["pidbeat.prom"]);
}

/// What `ps ARGS` prints on stdout and stderr, and its exit code.
fn ps_out(sb: &Sandbox, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = sb.cmd();
    c.arg("ps").arg("--run-dir").arg(dir).args(args);
    let o = run_with_deadline(c, 10 * SEC);
    (o.code(), o.stdout.clone(), o.stderr.clone())
}

#[test]
fn missing_or_broken_run_dir_is_said_on_stderr_and_in_the_exposition() {
    let sb = Sandbox::new();
    let missing = sb.path("nowhere/run");
    let (code, out, err) = ps_out(&sb, &missing, &["--json"]);
    assert_eq!((code, out.as_str()), (Some(0), "[]\n"));
    assert!(err.contains("no run dir"), "{err}");
    let (code, out, err) = ps_out(&sb, &missing, &["--prom"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("no run dir"), "{err}");
    let s = prom_parse(&out);
    assert_eq!(prom_value(&s, "pidbeat_run_dir_readable", &[]), Some(0.0));
    assert!(
        out.lines().all(|l| l.starts_with('#')
            || l.starts_with("pidbeat_build_info")
            || l.starts_with("pidbeat_run_dir_readable")),
        "{out}"
    );
    let file = sb.path("out.prom");
    let mut c = sb.cmd();
    c.arg("ps")
        .arg("--run-dir")
        .arg(&missing)
        .args(["--prom", "--output"])
        .arg(&file);
    let o = run_with_deadline(c, 10 * SEC);
    assert_eq!(o.code(), Some(0));
    assert!(o.stderr.contains("no run dir"), "{}", o.stderr);
    assert_eq!(
        prom_value(
            &prom_parse(&std::fs::read_to_string(&file).unwrap()),
            "pidbeat_run_dir_readable",
            &[]
        ),
        Some(0.0)
    );
    // An empty run dir that exists is a healthy, empty fleet.
    let (code, out, err) = ps_out(&sb, &sb.private_run_dir(), &["--prom"]);
    assert_eq!(code, Some(0));
    assert!(err.is_empty(), "{err}");
    assert_eq!(
        prom_value(&prom_parse(&out), "pidbeat_run_dir_readable", &[]),
        Some(1.0)
    );

    // A run dir that cannot be listed (a file where a directory should be): the exposition
    // says so and the exit status is 1; the table and JSON refuse rather than show nothing.
    std::fs::write(sb.path("file"), "").unwrap();
    let broken = sb.path("file/run");
    let (code, out, err) = ps_out(&sb, &broken, &["--prom"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read run dir"), "{err}");
    assert_eq!(
        prom_value(&prom_parse(&out), "pidbeat_run_dir_readable", &[]),
        Some(0.0)
    );
    let (code, out, err) = ps_out(&sb, &broken, &["--json"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("cannot read run dir"), "{err}");
}

#[test]
fn watch_json_says_once_that_the_run_dir_is_missing() {
    let sb = Sandbox::new();
    let err = sb.path("ps.stderr");
    let mut ps = Guard::spawn(
        sb.ps_cmd(&["--watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap()),
    );
    let lines = line_channel(ps.child().stdout.take().unwrap());
    assert_eq!(lines.recv_timeout(5 * SEC).unwrap(), "[]");
    // Ticks go by (the frame is redrawn only on change); the note is said once.
    std::thread::sleep(Duration::from_millis(2500));
    send_signal(ps.pid(), Signal::TERM);
    assert_eq!(ps.wait_timeout(5 * SEC).expect("ps exits").code(), Some(0));
    let text = std::fs::read_to_string(&err).unwrap();
    assert_eq!(text.matches("no run dir").count(), 1, "{text}");
}

#[test]
fn watch_output_keeps_beats_current_without_a_verdict_change() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "a", &["--interval", "0.5"]);
    let file = sb.path("a.prom");
    let mut ps = Guard::spawn(
        sb.ps_cmd(&["--prom", "--watch", "--output"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let beat = || -> Option<f64> {
        let text = std::fs::read_to_string(&file).ok()?;
        prom_value(
            &prom_parse(&text),
            "pidbeat_heartbeat_timestamp_seconds",
            &[("agent", "a")],
        )
    };
    let first = poll(5 * SEC, Duration::from_millis(20), beat, || {
        "no file".into()
    });
    // Beats change no verdict, yet the file follows them within its 5 s refresh.
    let later = poll(
        8 * SEC,
        Duration::from_millis(100),
        || beat().filter(|b| *b >= first + 2.0),
        || "the file's heartbeat timestamp did not advance".into(),
    );
    eprintln!("heartbeat timestamp advanced {:.1} s", later - first);
    send_signal(ps.pid(), Signal::TERM);
    assert_eq!(ps.wait_timeout(5 * SEC).expect("ps exits").code(), Some(0));
}
