//! The cases, each in its own container and bind-mounted run dir, read from the host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::*;
use super::engine::Engine;
use super::image::Image;

const SEC: Duration = Duration::from_secs(1);

struct Ctx<'a> {
    engine: &'a Engine,
    image: &'a Image<'a>,
    scratch: &'a Path,
}

type Case = fn(&Ctx);

pub fn run_all(engine: &Engine, image: &Image) {
    let scratch = tempfile::tempdir().unwrap();
    let ctx = Ctx {
        engine,
        image,
        scratch: scratch.path(),
    };
    let cases: [(&str, Case); 11] = [
        ("stop-term", stop_with_the_default_signal),
        ("stop-quit", stop_with_sigquit),
        ("kill-signals", kill_usr1_usr2_hup_reach_the_child),
        ("kill", kill_leaves_lost),
        ("oom", oom_is_dead_oom),
        ("read-only", read_only_root_runs_the_app),
        ("user", user_1000_runs_the_app),
        ("tty", ctrl_c_through_docker_run_it_reaches_the_child_once),
        ("pause", pause_is_stale_then_alive),
        ("restart", restart_is_a_new_incarnation),
        ("host-watch", host_watch_records_the_containers_death),
    ];
    let failed: Vec<&str> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, f)| {
                let ctx = &ctx;
                let h = std::thread::Builder::new()
                    .name(format!("docker {name}"))
                    .spawn_scoped(s, move || f(ctx))
                    .unwrap();
                (*name, h)
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(name, h)| h.join().is_err().then_some(name))
            .collect()
    });
    assert!(failed.is_empty(), "Docker cases failed: {failed:?}");
}

impl Ctx<'_> {
    fn dir(&self, case: &str) -> PathBuf {
        self.engine.host_dir(self.scratch, case)
    }

    /// `docker run -d --name <case> --network none -v DIR:/pb OPTS… IMAGE pidbeat run
    /// --agent <case> --run-dir /pb -i 0.5 -- CMD…` (no `-v` when `dir` is `None`, no
    /// `--run-dir` when `run_dir` is `None`).
    fn start(&self, case: &str, opts: &[&str], run_dir: Option<&str>, cmd: &[&str]) -> String {
        let name = self.engine.name(case);
        let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
        args.extend(opts);
        args.push(&self.image.name);
        args.extend(["pidbeat", "run", "--agent", case, "-i", "0.5"]);
        if let Some(d) = run_dir {
            args.extend(["--run-dir", d]);
        }
        args.push("--");
        args.extend(cmd);
        self.engine.ok(&args);
        name
    }

    fn inspect(&self, name: &str, field: &str) -> String {
        self.engine.ok(&["inspect", "-f", field, name])
    }

    /// Waits for the container to stop on its own; its exit code.
    fn exit_code(&self, name: &str, timeout: Duration) -> i32 {
        let code = poll_for(timeout, Duration::from_millis(50), || {
            (self.inspect(name, "{{.State.Running}}") == "false").then_some(())
        });
        assert!(code.is_some(), "{name} still running after {timeout:?}");
        self.inspect(name, "{{.State.ExitCode}}").parse().unwrap()
    }

    fn rm(&self, name: &str) {
        self.engine.ok(&["rm", "-f", name]);
    }
}

fn bind(dir: &Path, at: &str) -> String {
    format!("{}:{at}", dir.display())
}

/// `pidbeat ps --json --run-dir DIR` on the host: agent → entry.
fn ps_state(dir: &Path, agent: &str) -> String {
    let mut c = Command::new(BIN);
    c.args(["ps", "--json", "--run-dir"])
        .arg(dir)
        .env_remove("MOSAIC_HEARTBEAT_RUN_DIR");
    let out = run_with_deadline(c, 10 * SEC);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ps --json: {e}: {}\n{}", out.stdout, out.stderr));
    v.as_array()
        .unwrap()
        .iter()
        .find(|e| e["agent"] == agent)
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A child that exits 0 on `sig`, sleeping in short steps so that the trap runs at once.
fn trapping(sig: &str) -> String {
    format!("trap 'exit 0' {sig}; while true; do sleep 0.05; done")
}

fn stop_case(c: &Ctx, case: &str, opts: &[&str], sig: &str) {
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let mut o = vec!["-v", &v];
    o.extend(opts);
    let name = c.start(case, &o, Some("/pb"), &["sh", "-c", &trapping(sig)]);
    wait_record(&dir.join(format!("{case}.hb")), 10 * SEC, |v| {
        status_is(v, "alive")
    });
    let t = Instant::now();
    c.engine.ok(&["stop", "-t", "5", &name]);
    let took = t.elapsed();
    // Forwarded, the child exits at once; dropped, docker would wait the 5 s, then SIGKILL.
    assert!(took < 3 * SEC, "{case}: docker stop took {took:?}");
    assert_eq!(c.exit_code(&name, 5 * SEC), 0, "{case}");
    let r = read_record(&dir.join(format!("{case}.hb"))).unwrap();
    assert_eq!(r["status"], "dead", "{case}: {r}");
    assert_eq!(r["exit"]["code"], 0, "{case}: {r}");
    assert_eq!(r["watcher_pid"], 1, "{case}: pidbeat is PID 1");
    c.rm(&name);
}

fn stop_with_the_default_signal(c: &Ctx) {
    stop_case(c, "stop-term", &[], "TERM");
}

/// nginx and httpd stop on SIGQUIT and SIGWINCH.
fn stop_with_sigquit(c: &Ctx) {
    stop_case(c, "stop-quit", &["--stop-signal", "SIGQUIT"], "QUIT");
}

fn kill_usr1_usr2_hup_reach_the_child(c: &Ctx) {
    let case = "kill-signals";
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let script = "for s in USR1 USR2 HUP; do trap \"echo $s >> /pb/got\" $s; done; \
                  while true; do sleep 0.05; done";
    let name = c.start(case, &["-v", &v], Some("/pb"), &["sh", "-c", script]);
    wait_record(&dir.join(format!("{case}.hb")), 10 * SEC, |v| {
        status_is(v, "alive")
    });
    let mut want = String::new();
    for s in ["USR1", "USR2", "HUP"] {
        c.engine.ok(&["kill", "-s", s, &name]);
        want.push_str(s);
        want.push('\n');
        wait_until(5 * SEC, &format!("{s} reaches the child"), || {
            std::fs::read_to_string(dir.join("got")).unwrap_or_default() == want
        });
    }
    assert_eq!(c.inspect(&name, "{{.State.Running}}"), "true");
    c.rm(&name);
}

/// SIGKILL to PID 1 takes the whole container: nobody writes `dead`, and the host reads the
/// record as `lost` (its watcher's lock is gone).
fn kill_leaves_lost(c: &Ctx) {
    let case = "kill";
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let name = c.start(case, &["-v", &v], Some("/pb"), &["sleep", "1000"]);
    wait_record(&dir.join(format!("{case}.hb")), 10 * SEC, |v| {
        status_is(v, "alive")
    });
    c.engine.ok(&["kill", &name]);
    assert_eq!(c.exit_code(&name, 10 * SEC), 137);
    wait_until(5 * SEC, "the host reads it lost", || {
        ps_state(&dir, case) == "lost"
    });
    c.rm(&name);
}

fn oom_is_dead_oom(c: &Ctx) {
    let case = "oom";
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let name = c.start(
        case,
        &["-v", &v, "-m", "32m", "--memory-swap", "32m"],
        Some("/pb"),
        // tail keeps a line with no end in memory: it grows until the limit.
        &["sh", "-c", "exec tail /dev/zero"],
    );
    assert_eq!(c.exit_code(&name, 60 * SEC), 137);
    assert_eq!(c.inspect(&name, "{{.State.OOMKilled}}"), "true");
    let r = read_record(&dir.join(format!("{case}.hb"))).unwrap();
    assert_eq!(r["status"], "dead", "{r}");
    assert_eq!(
        r["exit"],
        serde_json::json!({"code":null,"signal":9,"core":false,"oom":true}),
        "{r}"
    );
    assert_eq!(ps_state(&dir, case), "dead");
    c.rm(&name);
}

/// A directory any container user may write (the app's proof that it ran).
fn open_dir(c: &Ctx, case: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = c.dir(case);
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// The app's run, its exit code, and `run`'s stderr, for a container whose run dir is
/// unusable.
fn app_runs(c: &Ctx, case: &str, opts: &[&str], run_dir: Option<&str>) -> (i32, String) {
    let out = open_dir(c, &format!("{case}-out"));
    let v = bind(&out, "/out");
    let mut o = vec!["-v", &v];
    o.extend(opts);
    let name = c.start(
        case,
        &o,
        run_dir,
        &["sh", "-c", "echo ran > /out/ran; exit 3"],
    );
    let code = c.exit_code(&name, 20 * SEC);
    assert_eq!(
        std::fs::read_to_string(out.join("ran")).unwrap_or_default(),
        "ran\n",
        "{case}: the app did not run"
    );
    let logs = run_with_deadline(c.engine.docker(&["logs", &name]), 20 * SEC);
    c.rm(&name);
    (code, logs.stderr)
}

fn read_only_root_runs_the_app(c: &Ctx) {
    // The run dir on the read-only root: CMD runs all the same, with one warning.
    let (code, err) = app_runs(c, "read-only", &["--read-only"], Some("/var/pb"));
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.matches("cannot write").count(), 1, "{err}");
    // The run dir on a volume: recorded there.
    let dir = c.dir("read-only-vol");
    let v = bind(&dir, "/pb");
    let (code, err) = app_runs(c, "read-only-vol", &["--read-only", "-v", &v], Some("/pb"));
    assert_eq!(code, 3, "{err}");
    let r = read_record(&dir.join("read-only-vol.hb")).expect("record on the volume");
    assert_eq!(r["status"], "dead");
    assert_eq!(r["exit"]["code"], 3);
}

fn user_1000_runs_the_app(c: &Ctx) {
    // HOME=/ for a user without a passwd entry: the default run dir cannot be made.
    let (code, err) = app_runs(c, "user", &["-u", "1000"], None);
    assert_eq!(code, 3, "{err}");
    assert_eq!(err.matches("cannot write").count(), 1, "{err}");
    // A run dir of its own on a volume: recorded there.
    let dir = c.dir("user-vol");
    rustix::fs::chown(
        &dir,
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(1000)),
    )
    .unwrap();
    let v = bind(&dir, "/pb");
    let (code, err) = app_runs(c, "user-vol", &["-u", "1000", "-v", &v], Some("/pb"));
    assert_eq!(code, 3, "{err}");
    let r = read_record(&dir.join("user-vol.hb")).expect("record on the volume");
    assert_eq!(r["exit"]["code"], 3);
}

/// `docker run -it` and Ctrl-C: the child, in the terminal's foreground group, gets exactly
/// one SIGINT. 25 rounds, five at a time.
fn ctrl_c_through_docker_run_it_reaches_the_child_once(c: &Ctx) {
    if !have("script", "util-linux") {
        return;
    }
    let dir = c.dir("tty");
    std::fs::write(
        dir.join("count.sh"),
        "n=0; trap 'n=$((n+1))' INT; echo ready; i=0\n\
         while [ $i -lt 300 ]; do sleep 0.01; i=$((i+1))\n\
         if [ $n -eq 0 ]; then i=0; fi; [ $i -gt 30 ] && break; done; echo sigints=$n\n",
    )
    .unwrap();
    let v = bind(&dir, "/pb");
    std::thread::scope(|s| {
        for lane in 0..5 {
            let v = &v;
            s.spawn(move || {
                for round in 0..5 {
                    let name = c.engine.name(&format!("tty-{lane}-{round}"));
                    let cmd = format!(
                        "docker run -it --rm --name {name} --network none -v {v} {} \
                         pidbeat run --agent tty{lane} --run-dir /pb -- sh /pb/count.sh",
                        c.image.name
                    );
                    let mut g = Guard::spawn(
                        Command::new("script")
                            .args(["-qec", &cmd, "/dev/null"])
                            .env("DOCKER_HOST", &c.engine.host)
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null()),
                    );
                    let rx = line_channel(g.child().stdout.take().unwrap());
                    let mut stdin = g.child().stdin.take().unwrap();
                    let deadline = Instant::now() + 30 * SEC;
                    let next = || {
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                            .unwrap_or_else(|_| panic!("tty {lane}/{round}: no output"))
                    };
                    while !next().contains("ready") {}
                    stdin.write_all(b"\x03").unwrap();
                    stdin.flush().unwrap();
                    let line = loop {
                        let l = next();
                        if let Some(i) = l.find("sigints=") {
                            break l[i..].trim().to_owned();
                        }
                    };
                    assert_eq!(line, "sigints=1", "tty {lane}/{round}");
                    drop(stdin);
                    g.wait_timeout(20 * SEC).expect("docker run -it exits");
                }
            });
        }
    });
}

/// A paused container's watcher writes nothing: `stale` once the record is older than
/// 2 × interval + 1 s (here 2 s), `alive` again once unpaused.
fn pause_is_stale_then_alive(c: &Ctx) {
    let case = "pause";
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let name = c.start(case, &["-v", &v], Some("/pb"), &["sleep", "1000"]);
    let rec = dir.join(format!("{case}.hb"));
    wait_record(&rec, 10 * SEC, |v| status_is(v, "alive"));
    c.engine.ok(&["pause", &name]);
    let t = Instant::now();
    wait_until(10 * SEC, "stale while paused", || {
        ps_state(&dir, case) == "stale"
    });
    // Not before the record's age passed the bound: the last beat came at most 0.5 s before.
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "stale after {:?}",
        t.elapsed()
    );
    c.engine.ok(&["unpause", &name]);
    wait_until(5 * SEC, "alive once unpaused", || {
        ps_state(&dir, case) == "alive"
    });
    c.rm(&name);
}

/// `docker restart`: SIGTERM (forwarded, the child dies: `dead`), then a new pidbeat and a
/// new child: `alive`, a new incarnation, with the last death kept in the history.
fn restart_is_a_new_incarnation(c: &Ctx) {
    let case = "restart";
    let dir = c.dir(case);
    let v = bind(&dir, "/pb");
    let name = c.start(
        case,
        &["-v", &v],
        Some("/pb"),
        &["sh", "-c", &trapping("TERM")],
    );
    let rec = dir.join(format!("{case}.hb"));
    let first = wait_record(&rec, 10 * SEC, |v| status_is(v, "alive"));
    c.engine.ok(&["restart", "-t", "5", &name]);
    let second = wait_record(&rec, 20 * SEC, |v| {
        status_is(v, "alive") && v["start_time"] != first["start_time"]
    });
    assert_eq!(second["watcher_pid"], 1);
    let deaths = std::fs::read_to_string(dir.join(format!("{case}.deaths"))).unwrap();
    let last: Value = serde_json::from_str(deaths.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "dead", "{deaths}");
    assert_eq!(last["exit"]["code"], 0, "{deaths}");
    wait_until(5 * SEC, "alive on the host", || {
        ps_state(&dir, case) == "alive"
    });
    c.rm(&name);
}

/// A host-side watcher of a container's PID 1 (by `docker inspect`'s host PID) records its
/// death with its exit code.
fn host_watch_records_the_containers_death(c: &Ctx) {
    let case = "host-watch";
    let dir = c.dir(case);
    let name = c.engine.name(case);
    c.engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        &c.image.name,
        "sh",
        "-c",
        "sleep 1.5; exit 3",
    ]);
    let pid = c.inspect(&name, "{{.State.Pid}}");
    let mut w = Guard::spawn(
        Command::new(BIN)
            .args(["watch", "--pid", &pid, "--agent", "c", "--run-dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let r = wait_record(&dir.join("c.hb"), 20 * SEC, |v| {
        status_is(v, "dead") && !v["exit"].is_null()
    });
    assert_eq!(r["exit"]["code"], 3, "{r}");
    w.wait_timeout(10 * SEC)
        .expect("the watcher exits after the death");
    assert_eq!(c.exit_code(&name, 10 * SEC), 3);
    c.rm(&name);
}
