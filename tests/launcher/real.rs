//! Real tmux on a private socket dir, real watchers: one test at a time.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::common::tmux::TmuxSandbox;
use crate::common::*;

/// Polls the record until `pred` holds, reaping `reap_pid` meanwhile (a runtime whose tmux
/// server died reparents to us; `kill -0` in the shell sidecar sees a zombie as alive).
fn wait_record_reaping(
    path: &Path,
    timeout: Duration,
    reap_pid: i32,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let every = Duration::from_millis(1);
    wait_record_with(path, timeout, every, || reap(reap_pid), pred)
}

fn wait_file(path: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_gone_reaping(pid: i32, timeout: Duration) {
    wait_gone(pid, timeout);
    reap(pid);
}

fn real_backend(backend: &str, dead_within: Duration) {
    let h = TmuxSandbox::real();
    let agent = format!("agent-{backend}");
    let pidfile = h.path("runtime.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let r = h.launch({
        let mut c = launcher(
            &h,
            &[&agent, "--hb-backend", backend, "--", "sh", "-c", &script],
        );
        c.env(
            "MOSAIC_HEARTBEAT_INTERVAL",
            if backend == "shell" { "0.2" } else { "1" },
        );
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "", "a clean launch is silent");

    let pane = h.pane_pid(&agent).expect("pane pid");
    let runtime = read_pid_file(&pidfile, Duration::from_secs(5));
    assert_eq!(
        pane, runtime,
        "the pane execs the runtime: no wrapper in between"
    );
    assert!(
        cmdline(pane).starts_with("sleep 1000"),
        "pane runs {:?}",
        cmdline(pane)
    );

    let hb = h.record_path(&agent);
    // pidfd/poll: --detach returned only after the first record; shell: the launcher waited.
    let v = read_record(&hb).expect("record on disk when the launcher returns");
    assert_eq!(v["status"], "alive", "{v}");
    assert_eq!(v["pid"], pane, "{v}");
    assert_eq!(v["backend"], backend, "{v}");
    let watcher = v["watcher_pid"].as_i64().expect("watcher_pid") as i32;
    assert!(pid_running(watcher), "watcher {watcher} runs");
    assert_ne!(
        session_id(watcher),
        session_id(std::process::id() as i32),
        "watcher detached"
    );
    assert_eq!(
        fd_target(watcher, 0),
        Some(PathBuf::from("/dev/null")),
        "watcher stdin"
    );
    for fd in [1, 2] {
        let t = fd_target(watcher, fd).unwrap_or_default();
        assert!(
            !t.to_string_lossy().starts_with("pipe:"),
            "watcher fd {fd} holds the caller's pipe"
        );
    }
    assert!(
        h.sb.procs().contains(&watcher),
        "cleanup can find the watcher"
    );
    assert!(
        h.run_dir().join(format!("{agent}.log")).exists(),
        "log file"
    );
    assert_eq!(mode(&h.run_dir()), 0o700);

    let out = h.tmux(&["kill-session", "-t", &format!("={agent}")]);
    assert!(out.status.success(), "kill-session: {}", &out.stderr);
    let killed = Instant::now();
    let v = wait_record_reaping(&hb, Duration::from_secs(5), pane, |v| status_is(v, "dead"));
    let took = killed.elapsed();
    assert!(
        took <= dead_within,
        "{backend}: dead after {took:?} (bound {dead_within:?})"
    );
    assert_eq!(v["pid"], pane);
    assert!(v["died_ms"].is_i64(), "{v}");
    eprintln!("{backend}: kill-session -> dead record in {took:?}");

    // The watcher exits on its own once the target is dead (pidbeat after its exit grace).
    wait_gone_reaping(watcher, Duration::from_secs(5));
    h.finish();
}

#[test]
fn real_pidfd_backend() {
    real_backend("pidfd", Duration::from_millis(100));
}

#[test]
fn real_poll_backend() {
    real_backend("poll", Duration::from_secs(2));
}

#[test]
fn real_shell_backend() {
    real_backend("shell", Duration::from_secs(2));
}

#[test]
fn real_none_backend_has_no_watcher() {
    let h = TmuxSandbox::real();
    let r = h.launch(launcher(
        &h,
        &["quiet", "--hb-backend", "none", "--", "sleep", "1000"],
    ));
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    let pane = h.pane_pid("quiet").expect("pane");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!h.run_dir().exists(), "no run dir, no record, no log");
    let server = h
        .tmux(&["display", "-p", "#{pid}"])
        .stdout
        .trim()
        .parse::<i32>()
        .unwrap();
    let mut procs = h.sb.procs();
    procs.sort();
    let mut want = vec![server, pane];
    want.sort();
    assert_eq!(
        procs,
        want,
        "only the tmux server and the pane: {}",
        describe(&procs)
    );
    h.finish();
}

#[test]
fn real_missing_pidbeat_still_launches() {
    let h = TmuxSandbox::real();
    let missing = h.path("missing/pidbeat");
    let r = h.launch({
        let mut c = launcher(&h, &["nobeat", "--", "sleep", "1000"]);
        c.env("PIDBEAT", &missing);
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, missing.to_str().unwrap());
    let pane = h.pane_pid("nobeat").expect("pane still there");
    assert!(pid_running(pane), "runtime runs");
    assert!(!h.record_path("nobeat").exists());
    h.finish();
}

#[test]
fn real_existing_session_is_an_error_without_second_watcher() {
    let h = TmuxSandbox::real();
    let r = h.launch(launcher(
        &h,
        &["twice", "--hb-backend", "shell", "--", "sleep", "1000"],
    ));
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    let first = read_record(&h.record_path("twice")).expect("record");
    let watcher = first["watcher_pid"].as_i64().unwrap() as i32;
    let pane = h.pane_pid("twice").unwrap();
    let before =
        h.sb.procs()
            .into_iter()
            .filter(|p| cmdline(*p).contains("hb-sidecar"))
            .count();
    assert_eq!(before, 1);

    for backend in ["shell", "pidfd"] {
        let r = h.launch(launcher(
            &h,
            &["twice", "--hb-backend", backend, "--", "sleep", "1000"],
        ));
        assert_eq!(
            r.code(),
            Some(1),
            "second launch must fail; stderr: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("duplicate session"),
            "tmux's reason shown: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("start-agent-session: error:"),
            "{}",
            r.stderr
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let procs = h.sb.procs();
    let sidecars = procs
        .iter()
        .filter(|p| cmdline(**p).contains("hb-sidecar"))
        .count();
    let pidbeats = procs
        .iter()
        .filter(|p| cmdline(**p).contains(" watch "))
        .count();
    assert_eq!(
        (sidecars, pidbeats),
        (1, 0),
        "no second watcher: {}",
        describe(&procs)
    );
    let v = read_record(&h.record_path("twice")).unwrap();
    assert_eq!(v["watcher_pid"], watcher);
    assert_eq!(v["pid"], pane);
    assert_eq!(h.pane_pid("twice"), Some(pane), "first session untouched");
    h.finish();
}

#[test]
fn real_arguments_and_path_reach_the_runtime_unchanged() {
    let h = TmuxSandbox::real();
    // Start the tmux server first with a PATH that lacks bin2: the pane must get the
    // launcher's PATH baked in, not the server's.
    let out = h
        .scrubbed("tmux")
        .args(["new-session", "-d", "-s", "other", "sleep", "1000"])
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .finish();
    assert!(out.status.success(), "{}", &out.stderr);
    h.sb.procs();

    let bin2 = h.path("bin2");
    std::fs::create_dir(&bin2).unwrap();
    let argv_file = h.path("argv");
    let pid_file = h.path("runtime.pid");
    let rt = bin2.join("myruntime");
    std::fs::write(
        &rt,
        format!(
            "#!/bin/sh\necho $$ > '{pid}'\nprintf '%s\\0' \"$@\" > '{argv}.tmp' && mv '{argv}.tmp' '{argv}'\nexec sleep 1000\n",
            pid = pid_file.display(),
            argv = argv_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();

    let pwned = h.path("pwned");
    let subst = format!("$(touch {})", pwned.display());
    let backtick = format!("`touch {}`", pwned.display());
    let args: Vec<&str> = vec![
        "a b",
        "",
        "it's",
        "say \"hi\"",
        "$HOME",
        "${PATH}",
        "a;b",
        ";",
        "ends;",
        "ends\\;",
        "&& echo x",
        "| cat",
        &subst,
        &backtick,
        "*",
        "~",
        "back\\slash",
        "tab\there",
        "new\nline",
        "-n",
        "--",
        "-e",
        "%s",
        "#{pane_pid}",
        "#S",
        "'",
        "\"",
        "ünïcödé",
        "  lead",
        "trail  ",
    ];
    let mut launch = vec!["quoted", "--hb-backend", "none", "--", "myruntime"];
    launch.extend(&args);
    let r = h.launch({
        let mut c = launcher(&h, &launch);
        c.env("PATH", format!("{}:{}", bin2.display(), real_path()));
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    let got = wait_file(&argv_file, Duration::from_secs(5));
    let got: Vec<&str> = got.strip_suffix('\0').unwrap_or(&got).split('\0').collect();
    assert_eq!(got, args, "argv as the runtime saw it");
    assert!(!pwned.exists(), "an argument was run by a shell");
    let runtime = read_pid_file(&pid_file, Duration::from_secs(5));
    assert_eq!(
        h.pane_pid("quoted"),
        Some(runtime),
        "pane PID is the runtime's PID"
    );
    h.finish();
}

#[test]
fn real_agent_name_starting_with_a_hyphen() {
    // Valid per DESIGN.md; the watcher must not mistake it for an option.
    let h = TmuxSandbox::real();
    for (agent, backend) in [("-pidfd", "pidfd"), ("-shell", "shell")] {
        let r = h.launch(launcher(
            &h,
            &[agent, "--hb-backend", backend, "--", "sleep", "1000"],
        ));
        assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
        assert_eq!(r.stderr, "", "{agent}");
        let pane = h.pane_pid(agent).expect("pane");
        let v = read_record(&h.record_path(agent)).expect("record");
        assert_eq!(
            (v["pid"].as_i64(), v["backend"].as_str()),
            (Some(pane as i64), Some(backend)),
            "{v}"
        );
    }
    h.finish();
}
