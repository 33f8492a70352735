//! Every tmux pane death carries its exit status, launched as users launch
//! (`scripts/start-agent-session.sh`, real tmux on a private socket dir, detached watchers).
//!
//! Three kinds of death, where a status is easily lost:
//! - a pane that exits with a code (`read _; exit N`, woken by `send-keys`): Debian's tmux
//!   misses some of its panes' SIGCHLDs (libutempter) and never reaps them;
//! - `kill-session` / `kill-pane` (SIGHUP), same;
//! - the last session on the server: the server exits without reaping, and the zombie passes
//!   to a reaper that is late. Here the reaper is this test (a subreaper), which reaps only
//!   after the watcher is gone, as PID 1 on a slow host does (1–2 s, past `EXIT_GRACE`).
//!
//! `exit_status_of_100_pane_deaths` runs 100 deaths in about 5 s; `PIDBEAT_TMUX_DEATHS=N`
//! scales it (N per kind for the first two kinds, N/2 for the last).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::common::tmux::TmuxSandbox;
use crate::common::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Death {
    Code(i32),
    KillSession,
    KillPane,
}

struct Pane {
    agent: String,
    pid: i32,
    death: Death,
}

fn launch(h: &TmuxSandbox, agent: &str, death: Death) -> Pane {
    let script = match death {
        Death::Code(n) => format!("read _; exit {n}"),
        _ => "exec sleep 600".to_owned(),
    };
    let r = h.launch({
        let mut c = launcher(h, &[agent, "--", "sh", "-c", &script]);
        c.env("MOSAIC_HEARTBEAT_INTERVAL", "5");
        c
    });
    assert_eq!(r.code(), Some(0), "launch {agent}: {}", r.stderr);
    let pid = h.pane_pid(agent).expect("pane pid");
    Pane {
        agent: agent.to_owned(),
        pid,
        death,
    }
}

fn kill(h: &TmuxSandbox, p: &Pane) {
    let target = format!("={}:", p.agent);
    let args: Vec<&str> = match p.death {
        Death::Code(_) => vec!["send-keys", "-t", &target, "Enter"],
        Death::KillSession => vec!["kill-session", "-t", &target[..target.len() - 1]],
        Death::KillPane => vec!["kill-pane", "-t", &target],
    };
    let out = h.tmux(&args);
    assert!(out.status.success(), "tmux {args:?}: {}", &out.stderr);
}

/// Waits for the `dead` record and for its watcher to end; the final record then says all
/// the watcher will ever say. Reaps the pane only after that (the late reaper), then the
/// watcher. Returns the miss, if the exit status is absent or wrong.
fn settle(h: &TmuxSandbox, p: &Pane) -> Option<String> {
    let path = h.record_path(&p.agent);
    let v = wait_record(&path, Duration::from_secs(5), |v| status_is(v, "dead"));
    let watcher = v["watcher_pid"].as_i64().expect("watcher_pid") as i32;
    wait_gone(watcher, Duration::from_secs(5));
    reap(watcher);
    let v = read_record(&path).expect("record");
    reap(p.pid);
    let exit = &v["exit"];
    let ok = match p.death {
        Death::Code(n) => exit["code"] == n,
        Death::KillSession | Death::KillPane => exit["signal"] == 1 && exit["code"].is_null(),
    };
    (!ok).then(|| format!("{} ({:?}): {}", p.agent, p.death, exit_of(&v)))
}

fn exit_of(v: &Value) -> String {
    v["exit"].to_string()
}

fn per_kind() -> usize {
    std::env::var("PIDBEAT_TMUX_DEATHS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

#[test]
fn exit_status_of_100_pane_deaths() {
    let h = TmuxSandbox::real();
    let n = per_kind();
    let started = Instant::now();
    let mut misses = Vec::new();
    let mut deaths = 0;

    // The last session on its server, one at a time: exits by itself or is killed.
    for i in 0..n / 2 {
        let death = if i % 2 == 0 {
            Death::Code(i as i32 % 200 + 1)
        } else {
            Death::KillSession
        };
        let p = launch(&h, &format!("last{i}"), death);
        let server = h.tmux(&["display", "-p", "#{pid}"]);
        let server: i32 = server.stdout.trim().parse().unwrap();
        kill(&h, &p);
        misses.extend(settle(&h, &p));
        wait_gone(server, Duration::from_secs(5));
        reap(server);
        deaths += 1;
    }

    // Panes of a server that lives on (a keeper session), in batches that die together.
    let keeper = launch(&h, "keeper", Death::KillSession);
    let kinds = [Death::Code(0), Death::KillSession, Death::KillPane];
    for batch in 0..(2 * n).div_ceil(10) {
        let panes: Vec<Pane> = (0..10)
            .map(|j| {
                let i = batch * 10 + j;
                let death = match kinds[i % 3] {
                    Death::Code(_) => Death::Code((i % 256) as i32),
                    d => d,
                };
                launch(&h, &format!("p{i}"), death)
            })
            .collect();
        for p in &panes {
            kill(&h, p);
        }
        for p in &panes {
            misses.extend(settle(&h, p));
            deaths += 1;
        }
    }
    kill(&h, &keeper);
    misses.extend(settle(&h, &keeper));
    eprintln!(
        "{deaths} pane deaths in {:?}, {} without the right exit status",
        started.elapsed(),
        misses.len()
    );
    assert!(misses.is_empty(), "exit status lost or wrong: {misses:#?}");
    h.finish();
}

/// `scripts/demo.sh` as a newcomer runs it: its last `ps` shows both agents' exits, `demo-codex`
/// its `code 3` too.
#[test]
fn demo_shows_both_exits() {
    let h = TmuxSandbox::real();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh");
    for run in 0..3 {
        let mut c = h.sb.cmd_of(demo);
        c.env("PIDBEAT", BIN).env("TMPDIR", h.sb.dir.path());
        let o = run_with_deadline(c, Duration::from_secs(30));
        h.sb.procs();
        assert!(
            o.status.success(),
            "demo run {run}: {}{}",
            o.stdout,
            o.stderr
        );
        let last_row = |agent: &str| {
            o.stdout
                .lines()
                .rfind(|l| l.starts_with(agent))
                .unwrap_or_else(|| panic!("no {agent} row: {}", o.stdout))
                .to_owned()
        };
        let (codex, pi) = (last_row("demo-codex"), last_row("demo-pi"));
        // The panes end as zombies of this test (a subreaper): reap them.
        for row in [&codex, &pi] {
            let pid = row.split_whitespace().nth(2).and_then(|p| p.parse().ok());
            reap(pid.expect("PID column"));
        }
        assert!(
            codex.contains("dead") && codex.ends_with("code 3"),
            "run {run}: {codex}"
        );
        assert!(
            pi.contains("dead") && pi.contains("signal 1"),
            "run {run}: {pi}"
        );
    }
    h.finish();
}
