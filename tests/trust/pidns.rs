//! Records written in another PID namespace. `pidbeat run` and `pidbeat watch` run in
//! a container made with `unshare --pid --fork --mount-proc`, writing to a run dir the host
//! reads. The host's `ps` and `wait` must give the verdict a reader inside gives (one entered
//! with `nsenter`): alive, dead with the exit status, stale when the watcher is stopped,
//! lost when it is killed. A host that judged the record's PIDs as its own would call a
//! healthy container agent `lost`.

use std::process::Stdio;
use std::time::Instant;

use super::*;

/// `unshare` with `--kill-child`, so that the container's init dies with it.
const UNSHARE: [&str; 5] = ["--pid", "--fork", "--kill-child", "--mount-proc", "--"];

fn available() -> bool {
    let ok = unshare_pid_ns_works(&["--kill-child"]);
    if !ok {
        skip("unshare --pid --fork --mount-proc does not work here");
    }
    ok
}

/// A container running `argv`, and the host PID of its init (PID 1 inside).
struct Container {
    unshare: Guard,
    init: i32,
}

impl Container {
    fn start(sb: &Sandbox, argv: &[&str]) -> Container {
        let mut c = sb.cmd_of("unshare");
        c.args(UNSHARE)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let unshare = Guard::spawn(&mut c);
        let init = poll(
            5 * SEC,
            Duration::from_millis(5),
            || children(unshare.pid()).first().copied(),
            || "the container's init did not start".into(),
        );
        Container { unshare, init }
    }

    /// `pidbeat run --agent AGENT … -- CMD…` as the container's init.
    fn run(sb: &Sandbox, agent: &str, cmd: &[&str]) -> Container {
        let run_dir = sb.run_dir();
        let dir = run_dir.to_str().unwrap();
        let pidbeat = [
            BIN,
            "run",
            "--agent",
            agent,
            "--run-dir",
            dir,
            "--interval",
            IV,
            "--",
        ];
        Container::start(sb, &[&pidbeat[..], cmd].concat())
    }

    /// The host PID of the child of the container's init whose command line contains
    /// `needle`.
    fn find(&self, needle: &str) -> i32 {
        poll(
            5 * SEC,
            Duration::from_millis(5),
            || {
                children(self.init)
                    .into_iter()
                    .find(|&p| cmdline(p).contains(needle))
            },
            || format!("no `{needle}` in the container"),
        )
    }

    /// `pidbeat ps --json` run inside the container (its PID and mount namespaces).
    fn ps_inside(&self, sb: &Sandbox, agents: &[&str]) -> BTreeMap<String, Value> {
        let mut c = sb.cmd_of("nsenter");
        c.arg("-t")
            .arg(self.init.to_string())
            .args(["-p", "-m", BIN]);
        ps_json_with(c, &sb.run_dir(), agents)
    }

    /// Kills the whole container and reaps it.
    fn end(mut self) {
        if pid_running(self.init) {
            signal(self.init, Signal::KILL);
        }
        self.unshare.wait_timeout(5 * SEC).expect("unshare exits");
    }
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn host_ps(sb: &Sandbox, agents: &[&str]) -> BTreeMap<String, Value> {
    ps_json_with(sb.cmd(), &sb.run_dir(), agents)
}

/// Both readers, the host's and the container's, give `state` for `agent`.
fn both_say(sb: &Sandbox, ctr: &Container, agent: &str, state: &str) {
    let host = host_ps(sb, &[agent]);
    assert_eq!(state_of(&host, agent), state, "host: {host:?}");
    assert_eq!(host[agent]["foreign_pids"], true, "{host:?}");
    let inside = ctr.ps_inside(sb, &[agent]);
    assert_eq!(state_of(&inside, agent), state, "inside: {inside:?}");
    assert_eq!(inside[agent]["foreign_pids"], false, "{inside:?}");
}

/// Stops `watcher` (a host PID) and waits for both readers to call `agent` stale, within
/// 2 × interval + 1 s of its last beat (plus the readers' own time).
fn stop_until_stale(sb: &Sandbox, ctr: &Container, watcher: i32, agent: &str) {
    stop(watcher);
    let t0 = Instant::now();
    wait_until(10 * SEC, "a stopped container watcher turns stale", || {
        state_of(&host_ps(sb, &[agent]), agent) == "stale"
    });
    let took = t0.elapsed();
    eprintln!("{agent}: stale on the host {took:?} after SIGSTOP");
    assert!(
        took + IV_DUR < STALE_AFTER + SEC,
        "stale only after {took:?}"
    );
    both_say(sb, ctr, agent, "stale");
}

/// SIGKILLs the container's `watcher` (a host PID) and waits for the host to call `agent` lost.
fn kill_until_lost(sb: &Sandbox, watcher: i32, agent: &str) {
    signal(watcher, Signal::KILL);
    wait_until(
        5 * SEC,
        "the host sees the container's watcher gone",
        || state_of(&host_ps(sb, &[agent]), agent) == "lost",
    );
}

/// `pidbeat run` as the container's init: alive, stale when stopped, lost when killed; the
/// table marks its PID as the container's.
#[test]
fn run_in_a_container_is_judged_as_inside() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let run_dir = sb.run_dir();
    let ctr = Container::run(&sb, "ctr", &["sleep", "30"]);
    let r = wait_record(&sb.record_path("ctr"), 5 * SEC, |v| status_is(v, "alive"));
    assert_eq!(r["pid"], 2, "the container's own PID: {r}");
    both_say(&sb, &ctr, "ctr", "alive");

    // The table marks the PID, and says why on stderr; the rows stay one per record.
    let o = run_with_deadline(sb.ps_cmd(&[]), 10 * SEC);
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stdout);
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[..3], ["ctr", "alive", "2*"], "{}", o.stdout);
    assert!(o.stderr.contains("PID namespace"), "{}", o.stderr);

    // `wait` does not mistake a container's agent for an ended one.
    let mut w = sb.cmd();
    w.args(["wait", "--timeout", "0.5", "--run-dir"])
        .arg(&run_dir)
        .arg("ctr");
    assert_eq!(run_with_deadline(w, 10 * SEC).code(), Some(124));

    stop_until_stale(&sb, &ctr, ctr.init, "ctr");
    // SIGKILL to the container's init ends the container: its lock is free, nobody beats.
    kill_until_lost(&sb, ctr.init, "ctr");
    ctr.end();
}

/// `pidbeat watch` beside its target inside a container (a shell is init): alive, stale when
/// stopped, lost when killed, the same on both sides of the namespace.
#[test]
fn watch_in_a_container_is_judged_as_inside() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let script = format!(
        "sleep 30 & {BIN} watch --pid $! --agent ctrw --run-dir {} --interval {IV}; wait",
        sb.run_dir().display()
    );
    let ctr = Container::start(&sb, &["sh", "-c", &script]);
    wait_record(&sb.record_path("ctrw"), 5 * SEC, |v| status_is(v, "alive"));
    both_say(&sb, &ctr, "ctrw", "alive");
    let watcher = ctr.find(" watch ");
    stop_until_stale(&sb, &ctr, watcher, "ctrw");
    kill_until_lost(&sb, watcher, "ctrw");
    both_say(&sb, &ctr, "ctrw", "lost");
    ctr.end();
}

/// A container agent's death reaches the host with its exit status, in `ps` and `wait`.
#[test]
fn a_container_agents_exit_status_reaches_the_host() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let run_dir = sb.run_dir();
    let code = Container::run(&sb, "code", &["sh", "-c", "sleep 0.3; exit 7"]);
    let sig = Container::run(&sb, "sig", &["sh", "-c", "sleep 0.3; kill -9 $$"]);
    let mut w = sb.cmd();
    w.args(["wait", "--timeout", "10", "--run-dir"])
        .arg(&run_dir)
        .args(["code", "sig"]);
    let o = run_with_deadline(w, 20 * SEC);
    assert_eq!(o.code(), Some(0), "{o:?}");
    let mut lines: Vec<&str> = o.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["code dead code 7", "sig dead signal 9"], "{o:?}");
    let m = host_ps(&sb, &[]);
    assert_eq!(state_of(&m, "code"), "dead");
    assert_eq!(m["code"]["exit"]["code"], 7, "{m:?}");
    assert_eq!(m["sig"]["exit"]["signal"], 9, "{m:?}");
    assert_eq!(m["code"]["foreign_pids"], true, "{m:?}");
    for c in [code, sig] {
        c.end();
    }
}
