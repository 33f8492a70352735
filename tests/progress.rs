//! Progress, not only presence: the evidence a watcher samples (CPU of the tree, the pty's
//! output) and what an agent says over sd_notify (Debian's real `systemd-notify` and
//! `pidbeat notify`), against real processes in temp run dirs.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn progress(v: &Value) -> &Value {
    &v["progress"]
}

fn notify_socket(sb: &Sandbox, agent: &str) -> std::path::PathBuf {
    sb.run_dir().join(format!(".{agent}.notify"))
}

/// A target in its own process group, whose whole group is killed on drop (its work may be
/// in children that the target's own guard would leave behind).
struct Tree(Guard);

impl Tree {
    fn spawn(sb: &Sandbox, script: &str) -> Tree {
        become_subreaper();
        let mut c = sb.cmd_of("sh");
        c.args(["-c", script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Tree(Guard::spawn(&mut c))
    }
    fn pid(&self) -> i32 {
        self.0.pid()
    }
}

impl Drop for Tree {
    /// The group's other members are orphaned when the target dies: this test, a subreaper,
    /// adopts and reaps them (PID 1 here reaps late, or never).
    fn drop(&mut self) {
        let pid = self.0.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let pgid = rustix::process::Pid::from_raw(pid).unwrap();
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        self.0.kill();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            wait_until(5 * SEC, "an orphan of the tree is reaped", || {
                reap(child);
                proc_state(child).is_none()
            });
        }
    }
}

/// Waits until the record's `progress.cpu_at_ms` has moved past `after` (a later beat saw a
/// CPU counter change).
fn wait_cpu_progress(path: &Path, after: u64, timeout: Duration) -> Value {
    wait_record(path, timeout, |v| {
        progress(v)["cpu_at_ms"].as_u64().is_some_and(|t| t > after)
    })
}

#[test]
fn a_cpu_loop_and_a_forked_worker_make_progress_and_sleep_does_not() {
    let sb = Sandbox::new();
    let spin = Tree::spawn(&sb, "while :; do :; done");
    let forker = Tree::spawn(&sb, "yes >/dev/null & wait");
    let sleeper = spawn_sleep();
    let mut ws = [
        sb.watch_alive(spin.pid(), "spin", &["-i", "0.2"]),
        sb.watch_alive(forker.pid(), "fork", &["-i", "0.2"]),
        sb.watch_alive(sleeper.pid(), "sleep", &["-i", "0.2"]),
    ];
    let base = |a: &str| {
        let v = read_record(&sb.record_path(a)).unwrap();
        progress(&v)["cpu_at_ms"].as_u64().expect("a baseline")
    };
    let (b_spin, b_fork, b_sleep) = (base("spin"), base("fork"), base("sleep"));
    let v = wait_cpu_progress(&sb.record_path("spin"), b_spin, 5 * SEC);
    assert!(progress(&v)["cpu_ms"].as_u64().unwrap() > 0, "{v}");
    // The shell waits at 0 CPU: the progress is its child's, found by the tree walk.
    let v = wait_cpu_progress(&sb.record_path("fork"), b_fork, 5 * SEC);
    assert!(progress(&v)["cpu_ms"].as_u64().unwrap() > 0, "{v}");
    // Ten beats of a sleeper: its baseline stays.
    let seen = wait_record(&sb.record_path("sleep"), 5 * SEC, |v| seq(v) >= 10);
    assert_eq!(
        progress(&seen)["cpu_at_ms"].as_u64(),
        Some(b_sleep),
        "{seen}"
    );
    for w in &mut ws {
        w.kill();
    }
}

/// Debian's systemd-notify, with and without --no-block: without it, it sends BARRIER=1 with
/// an fd and waits (5 s) for the fd's close, which the watcher does at once.
#[test]
fn systemd_notify_status_and_claims_reach_the_record_promptly() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &[]);
    let socket = notify_socket(&sb, "a");
    let mut fastest = Duration::MAX;
    for (i, no_block) in [(1, true), (2, false), (3, true), (4, false), (5, false)] {
        let mut c = sb.cmd_of("systemd-notify");
        if no_block {
            c.arg("--no-block");
        }
        c.env("NOTIFY_SOCKET", &socket)
            .arg(format!("STATUS=step {i}"))
            .arg("X_PIDBEAT_ACTIVITY=waiting");
        let out = run_with_deadline(c, 10 * SEC);
        assert_eq!(out.code(), Some(0), "{out:?}");
        // Far from the 5 s its BARRIER=1 fd would hold it if the watcher kept that fd.
        assert!(
            out.elapsed < SEC,
            "systemd-notify (--no-block: {no_block}) took {:?}",
            out.elapsed
        );
        if !no_block {
            fastest = fastest.min(out.elapsed);
        }
        // The default interval is 15 s: only the write on change can show it this soon.
        let v = wait_record(&sb.record_path("a"), SEC, |v| {
            progress(v)["status_text"] == format!("step {i}")
        });
        assert_eq!(progress(&v)["claim"], "waiting", "{v}");
    }
    // The best of three blocking runs, so that a loaded machine's one slow spawn does not
    // decide it.
    assert!(
        fastest < Duration::from_millis(100),
        "systemd-notify took {fastest:?}"
    );
    w.kill();
}

#[test]
fn pidbeat_notify_never_blocks_and_says_when_nobody_listens() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &[]);
    let mut c = sb.cmd();
    c.args([
        "notify",
        "--agent",
        "a",
        "X_PIDBEAT_ACTIVITY=working",
        "STATUS=tests",
    ])
    .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let v = wait_record(&sb.record_path("a"), SEC, |v| {
        progress(v)["claim"] == "working"
    });
    assert_eq!(progress(&v)["status_text"], "tests");
    w.kill();
    // The watcher's socket went with it (SIGKILL leaves it: forget takes it).
    let mut c = sb.cmd();
    c.args(["notify", "--agent", "a", "READY=1"])
        .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("watcher running"), "{}", out.stderr);
    let mut c = sb.cmd();
    c.args(["notify", "--agent", "a", "NOT A KEY"]);
    assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(2));
}

#[test]
fn the_socket_goes_with_a_stopped_watcher_and_with_forget() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "a", &[]);
    assert!(notify_socket(&sb, "a").exists());
    signal(w.pid(), Signal::TERM);
    w.reap_within(5 * SEC);
    assert!(
        !notify_socket(&sb, "a").exists(),
        "{:?}",
        dir_names(&sb.run_dir())
    );
    let mut w = sb.watch_alive(target.pid(), "b", &[]);
    w.kill();
    assert!(notify_socket(&sb, "b").exists(), "SIGKILL leaves it");
    let mut c = sb.cmd();
    c.args(["forget", "b"])
        .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    let out = run_with_deadline(c, 10 * SEC);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        !notify_socket(&sb, "b").exists(),
        "{:?}",
        dir_names(&sb.run_dir())
    );
}

/// The watcher hears only its target's uid: a datagram from root about a target that runs as
/// `nobody` changes nothing.
#[test]
fn a_datagram_from_another_uid_changes_nothing() {
    let sb = Sandbox::new();
    if !rustix::process::geteuid().is_root() {
        return skip("needs root to run a target as nobody");
    }
    let target = spawn_target(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sleep",
        "1000",
    ]);
    // setpriv execs sleep: the PID keeps, the uid is nobody's once it has.
    wait_until(5 * SEC, "the target runs as nobody", || {
        std::fs::read_to_string(format!("/proc/{}/status", target.pid())).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.contains("65534"))
                && cmdline(target.pid()).starts_with("sleep")
        })
    });
    let mut w = sb.watch_alive(target.pid(), "a", &["-i", "0.2"]);
    let socket = notify_socket(&sb, "a");
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(
        b"STATUS=forged\nX_PIDBEAT_ACTIVITY=waiting\nWATCHDOG_USEC=1",
        &socket,
    )
    .unwrap();
    let first = seq(&read_record(&sb.record_path("a")).unwrap());
    let v = wait_record(&sb.record_path("a"), 5 * SEC, |v| seq(v) >= first + 3);
    let p = progress(&v);
    for k in ["status_text", "claim", "notify_ms", "watchdog_usec"] {
        assert!(p[k].is_null(), "{k}: {v}");
    }
    w.kill();
}

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A flood of garbage and oversize datagrams (and fds passed with them) from the agent's own
/// uid: the watcher keeps beating, its RSS and fds stay put, and no record is written for it.
#[test]
fn a_flood_of_garbage_leaves_the_watcher_beating_and_writes_nothing() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &["-i", "0.5"]);
    let socket = notify_socket(&sb, "a");
    // Settle a first datagram so the evidence's own allocations are made.
    let tx = UnixDatagram::unbound().unwrap();
    tx.send_to(b"STATUS=steady", &socket).unwrap();
    wait_record(&sb.record_path("a"), 2 * SEC, |v| {
        progress(v)["status_text"] == "steady"
    });
    let (rss0, fds0) = (rss_kib(w.pid()), steady_fd_count(w.pid()));
    let seq0 = seq(&read_record(&sb.record_path("a")).unwrap());
    let t0 = Instant::now();
    let big = vec![b'x'; 16 * 1024];
    let mut sent = 0u64;
    let devnull = std::fs::File::open("/dev/null").unwrap();
    while t0.elapsed() < 2 * SEC {
        let junk: &[u8] = match sent % 4 {
            0 => b"\xff\xfe garbage without an equals sign",
            1 => &big,
            2 => b"STATUS=steady\nUNKNOWN=1\nWATCHDOG=0\nX_PIDBEAT_ACTIVITY=dancing",
            _ => b"=\n==\nX_=",
        };
        if sent % 64 == 0 {
            send_with_fd(&tx, &socket, junk, &devnull);
        } else if tx.send_to(junk, &socket).is_err() {
            // The queue is full: the watcher is behind, as it may be.
            std::thread::sleep(Duration::from_micros(50));
        }
        sent += 1;
    }
    let elapsed = t0.elapsed();
    let v = read_record(&sb.record_path("a")).unwrap();
    let beats = elapsed.as_secs_f64() / 0.5;
    let written = seq(&v) - seq0;
    assert!(
        (written as f64) <= beats + 2.0,
        "{written} records in {elapsed:?} of flood ({sent} datagrams): only beats may write"
    );
    assert!(
        written >= 2,
        "the watcher kept beating: {written} in {elapsed:?}"
    );
    let rss1 = rss_kib(w.pid());
    assert!(rss1 <= rss0 + 512, "RSS {rss0} KiB -> {rss1} KiB");
    assert_fds_back_to(w.pid(), fds0, "passed fds are closed");
    let after = wait_record(&sb.record_path("a"), 2 * SEC, |x| seq(x) > seq(&v));
    assert_eq!(progress(&after)["status_text"], "steady", "{after}");
    eprintln!("flood: {sent} datagrams in {elapsed:?}, {written} records, RSS {rss0}->{rss1} KiB");
    w.kill();
}

/// Sends `data` with `fd` attached (SCM_RIGHTS), as systemd-notify's BARRIER=1 does.
fn send_with_fd(tx: &UnixDatagram, to: &Path, data: &[u8], fd: &std::fs::File) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix};
    use std::os::fd::AsFd;
    let fds = [fd.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let addr = SocketAddrUnix::new(to).unwrap();
    let _ = rustix::net::sendmsg_addr(
        tx,
        &addr,
        &[std::io::IoSlice::new(data)],
        &mut control,
        SendFlags::DONTWAIT,
    );
}

/// WATCHDOG_USEC and then silence: a record shows the expiry soon after it, without waiting
/// for a beat.
#[test]
fn a_silent_watchdog_is_written_when_it_expires() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &[]);
    let mut c = sb.cmd_of("systemd-notify");
    c.env("NOTIFY_SOCKET", notify_socket(&sb, "a"))
        .args(["--no-block", "WATCHDOG_USEC=300000"]);
    assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(0));
    let t0 = Instant::now();
    let v = wait_record(&sb.record_path("a"), 3 * SEC, |v| {
        let p = progress(v);
        let (Some(at), Some(ts)) = (p["watchdog_ms"].as_u64(), v["ts_ms"].as_u64()) else {
            return false;
        };
        p["watchdog_usec"] == 300_000 && ts > at + 300
    });
    assert!(t0.elapsed() < 2 * SEC, "{:?}: {v}", t0.elapsed());
    w.kill();
}

/// `--watchdog` holds the agent to a watchdog from the start; WATCHDOG=1 keeps it fed.
#[test]
fn watch_watchdog_flag_starts_the_period() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &["--watchdog", "2s"]);
    let v = read_record(&sb.record_path("a")).unwrap();
    assert_eq!(progress(&v)["watchdog_usec"], 2_000_000, "{v}");
    assert!(progress(&v)["watchdog_ms"].as_u64().is_some(), "{v}");
    w.kill();
}

/// `--no-progress`: no evidence, no socket.
#[test]
fn no_progress_samples_nothing_and_binds_nothing() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &["--no-progress"]);
    let v = read_record(&sb.record_path("a")).unwrap();
    assert!(v.get("progress").is_none(), "{v}");
    assert_eq!(dir_names(&sb.run_dir()), [".a.lock", "a.hb"]);
    w.kill();
}

/// `ps --json` with `flags`: agent → object.
fn ps_json(sb: &Sandbox, flags: &[&str]) -> std::collections::BTreeMap<String, Value> {
    let mut args = vec!["--json"];
    args.extend_from_slice(flags);
    let out = sb.ps(&args);
    assert!(out.status.success(), "{out:?}");
    parse_ps(&out.stdout)
}

/// Polls `ps --json FLAGS` until `agent`'s object satisfies `pred`.
fn wait_ps(
    sb: &Sandbox,
    agent: &str,
    flags: &[&str],
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    poll(
        timeout,
        Duration::from_millis(50),
        || ps_json(sb, flags).remove(agent).filter(|v| pred(v)),
        || format!("timed out: {agent}: {:?}", ps_json(sb, flags).get(agent)),
    )
}

const FAST: [&str; 4] = ["--idle-after", "1s", "--stuck-after", "2s"];

#[test]
fn ps_judges_working_idle_and_stuck() {
    let sb = Sandbox::new();
    let spin = Tree::spawn(&sb, "while :; do :; done");
    let forker = Tree::spawn(&sb, "yes >/dev/null & wait");
    let sleeper = spawn_sleep();
    let mut ws = [
        sb.watch_alive(spin.pid(), "spin", &["-i", "0.2"]),
        sb.watch_alive(forker.pid(), "fork", &["-i", "0.2"]),
        sb.watch_alive(sleeper.pid(), "sleep", &["-i", "0.2"]),
    ];
    // A fresh watch counts from its start: the sleeper is working, then idle.
    let v = wait_ps(&sb, "sleep", &FAST, 5 * SEC, |v| v["activity"] == "idle");
    assert!(v["idle_ms"].as_u64().unwrap() >= 1000, "{v}");
    // The forker's CPU is its child's, seen by the tree walk (at most one a second).
    for a in ["spin", "fork"] {
        let v = wait_ps(&sb, a, &FAST, 5 * SEC, |v| {
            v["activity"] == "working" && v["progress"]["cpu_ms"].as_u64() > Some(0)
        });
        assert!(v["idle_ms"].as_u64().unwrap() <= 1000, "{v}");
    }
    // Without a claim an agent is never stuck; with a working claim and no CPU, it is.
    std::thread::sleep(2 * SEC);
    assert_eq!(ps_json(&sb, &FAST)["sleep"]["activity"], "idle");
    let mut c = sb.cmd_of("systemd-notify");
    c.env("NOTIFY_SOCKET", notify_socket(&sb, "sleep"))
        .args(["--no-block", "X_PIDBEAT_ACTIVITY=working"]);
    assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(0));
    let v = wait_ps(&sb, "sleep", &FAST, SEC, |v| v["activity"] == "working");
    assert!(v["idle_ms"].as_u64().unwrap() < 1000, "a fresh claim: {v}");
    let t0 = Instant::now();
    wait_ps(&sb, "sleep", &FAST, 5 * SEC, |v| v["activity"] == "stuck");
    assert!(t0.elapsed() >= SEC, "stuck too soon: {:?}", t0.elapsed());
    // The defaults (60 s, 10 min) call it working still.
    assert_eq!(ps_json(&sb, &[])["sleep"]["activity"], "working");
    // The table: ACTIVITY and IDLE side by side.
    let mut args = vec!["-o", "agent,activity,idle"];
    args.extend_from_slice(&FAST);
    let table = sb.ps(&args).stdout;
    let row = table.lines().find(|l| l.starts_with("sleep")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "stuck", "{table}");
    assert!(cells[2].ends_with('s'), "{table}");
    for w in &mut ws {
        w.kill();
    }
}

#[test]
fn a_waiting_claim_and_status_show_in_ps() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &[]);
    let mut c = sb.cmd_of("systemd-notify");
    c.env("NOTIFY_SOCKET", notify_socket(&sb, "a")).args([
        "--no-block",
        "X_PIDBEAT_ACTIVITY=waiting",
        "STATUS=needs approval",
    ]);
    assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(0));
    let v = wait_ps(&sb, "a", &[], 2 * SEC, |v| v["activity"] == "waiting");
    assert_eq!(v["status_text"], "needs approval", "{v}");
    let table = sb.ps(&["-o", "agent,activity,status"]).stdout;
    assert!(
        table.contains("waiting") && table.contains("needs approval"),
        "{table}"
    );
    let table = sb.ps(&["-o", "agent,state,activity,idle"]).stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["AGENT", "STATE", "ACTIVITY", "IDLE"], "{table}");
    w.kill();
}

#[test]
fn a_silent_watchdog_is_hung_and_status_exits_3() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &[]);
    let status = |sb: &Sandbox| {
        let mut c = sb.cmd();
        c.args(["status", "a"])
            .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
        run_with_deadline(c, 10 * SEC)
    };
    let notify = |what: &str| {
        let mut c = sb.cmd_of("systemd-notify");
        c.env("NOTIFY_SOCKET", notify_socket(&sb, "a"))
            .args(["--no-block", what]);
        assert_eq!(run_with_deadline(c, 10 * SEC).code(), Some(0));
    };
    notify("WATCHDOG_USEC=500000");
    assert_eq!(status(&sb).code(), Some(0), "a fed watchdog");
    let t0 = Instant::now();
    wait_ps(&sb, "a", &[], 3 * SEC, |v| v["state"] == "hung");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    let out = status(&sb);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(3), "hung\n"),
        "{out:?}"
    );
    // The prom exposition has it as a state.
    let prom = sb.ps(&["--prom"]).stdout;
    assert!(
        prom.contains("pidbeat_agent_state{agent=\"a\",state=\"hung\"} 1"),
        "{prom}"
    );
    // WATCHDOG=1 ends it at once.
    notify("WATCHDOG=1");
    wait_ps(&sb, "a", &[], SEC, |v| v["state"] == "alive");
    w.kill();
}

#[test]
fn wait_until_idle_for_returns_at_the_right_time() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "a", &["-i", "0.2"]);
    let t0 = Instant::now();
    let mut c = sb.cmd();
    c.args([
        "wait",
        "--until",
        "idle",
        "--for",
        "2s",
        "--idle-after",
        "1s",
        "a",
    ])
    .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    let out = run_with_deadline(c, 20 * SEC);
    let took = t0.elapsed();
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(0), "a idle\n"),
        "{out:?}"
    );
    // Idle once 1 s has passed without progress since the watch began, then 2 s more.
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_millis(3800),
        "returned after {took:?}"
    );
    // A working agent is not idle: the wait times out.
    let spin = Tree::spawn(&sb, "while :; do :; done");
    let mut ws = sb.watch_alive(spin.pid(), "s", &["-i", "0.2"]);
    let mut c = sb.cmd();
    c.args([
        "wait",
        "--until",
        "idle",
        "--idle-after",
        "1s",
        "-t",
        "2",
        "s",
    ])
    .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    assert_eq!(run_with_deadline(c, 20 * SEC).code(), Some(124));
    let mut c = sb.cmd();
    c.args([
        "wait", "--until", "working", "--for", "0.5s", "-t", "5", "s",
    ])
    .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir());
    let out = run_with_deadline(c, 20 * SEC);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(0), "s working\n"),
        "{out:?}"
    );
    ws.kill();
    w.kill();
}

/// A real tmux pane that prints every second at near-zero CPU: its output shows in the
/// record within one 8 s stamp of the kernel plus one interval.
#[test]
fn a_tmux_pane_printing_shows_output_within_one_bucket() {
    let h = tmux::TmuxSandbox::real();
    let out = h.tmux(&[
        "new-session",
        "-d",
        "-s",
        "p",
        "--",
        "sh",
        "-c",
        "while :; do echo tick; sleep 1; done",
    ]);
    assert!(out.status.success(), "{out:?}");
    let pane = poll(
        5 * SEC,
        Duration::from_millis(20),
        || h.pane_pid("p"),
        || "no pane".into(),
    );
    let mut w = h.sb.watch_alive(pane, "p", &["-i", "1"]);
    let first = read_record(&h.record_path("p")).unwrap();
    let out0 = progress(&first)["output_ms"]
        .as_u64()
        .expect("the pane's pty is found");
    let t0 = Instant::now();
    let v = wait_record(&h.record_path("p"), 12 * SEC, |v| {
        progress(v)["output_ms"].as_u64().is_some_and(|o| o > out0)
    });
    assert!(
        t0.elapsed() <= Duration::from_millis(8000 + 1000 + 1500),
        "{:?}",
        t0.elapsed()
    );
    eprintln!("output seen after {:?}: {v}", t0.elapsed());
    w.kill();
    h.finish();
}
