//! Shim tests: a fake `tmux` and a fake `setsid` first on PATH log the exact commands the
//! launcher runs; nothing is started.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::common::tmux::TmuxSandbox;
use crate::common::*;

/// One log record per invocation of a shim: its argv and the environment it saw.
#[derive(Debug, Clone)]
struct Call {
    argv: Vec<String>,
    env: Vec<String>,
}

impl Call {
    fn env(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.env
            .iter()
            .find_map(|e| e.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("shim did not log {key}"))
    }
}

const FAKE_TMUX: &str = r#"#!/bin/sh
# fake tmux: logs argv (fields end in \037, a call ends in \036), answers list-panes.
{ printf '%s\037' "$@" ENV "TMUX=${TMUX-<unset>}" "TMUX_TMPDIR=${TMUX_TMPDIR-<unset>}"; printf '\036'; } >>"$SHIM_LOG/tmux.log"
case "$1" in
new-session)
	if [ -n "${FAKE_NEW_SESSION_FAIL-}" ]; then echo "duplicate session: fake" >&2; exit 1; fi ;;
list-panes)
	if [ -n "${FAKE_PANE_PID-}" ]; then echo "$FAKE_PANE_PID"; fi ;;
esac
exit 0
"#;

const FAKE_SETSID: &str = r#"#!/bin/sh
# fake setsid: logs argv, where its stdio points and the watcher env; starts nothing.
fd0=$(readlink /proc/$$/fd/0) fd1=$(readlink /proc/$$/fd/1) fd2=$(readlink /proc/$$/fd/2)
{ printf '%s\037' "$@" ENV "FD0=$fd0" "FD1=$fd1" "FD2=$fd2" \
	"MOSAIC_HEARTBEAT_RUN_DIR=${MOSAIC_HEARTBEAT_RUN_DIR-<unset>}" \
	"MOSAIC_HEARTBEAT_INTERVAL=${MOSAIC_HEARTBEAT_INTERVAL-<unset>}"; printf '\036'; } >>"$SHIM_LOG/setsid.log"
exit "${FAKE_SETSID_RC:-0}"
"#;

/// Installs the fake tmux and setsid; `shim_launcher` then puts them first on PATH.
fn install_shims(h: &TmuxSandbox) {
    for d in ["shims", "shimlog"] {
        std::fs::create_dir_all(h.path(d)).unwrap();
    }
    for (name, text) in [("tmux", FAKE_TMUX), ("setsid", FAKE_SETSID)] {
        let p = h.path("shims").join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The launcher with the fake tmux and setsid first on PATH.
fn shim_launcher(h: &TmuxSandbox, args: &[&str]) -> Command {
    install_shims(h);
    let mut c = launcher(h, args);
    c.env(
        "PATH",
        format!("{}:{}", h.path("shims").display(), real_path()),
    );
    c
}

/// What the shim `shim` logged, one `Call` per invocation.
fn calls(h: &TmuxSandbox, shim: &str) -> Vec<Call> {
    let text = match std::fs::read_to_string(h.path("shimlog").join(format!("{shim}.log"))) {
        Ok(t) => t,
        Err(_) => return Vec::new(),
    };
    text.split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut fields: Vec<String> = r.split('\x1f').map(str::to_owned).collect();
            assert_eq!(
                fields.pop().as_deref(),
                Some(""),
                "malformed shim log {r:?}"
            );
            let at = fields.iter().position(|f| f == "ENV").expect("ENV marker");
            let env = fields.split_off(at + 1);
            fields.pop();
            Call { argv: fields, env }
        })
        .collect()
}

fn assert_new_session(call: &Call, h: &TmuxSandbox, agent: &str, cmd: &[&str]) {
    // The pane gets the watcher's sd_notify socket (pidfd and poll backends only).
    let socket = format!("NOTIFY_SOCKET={}/.{agent}.notify", h.run_dir().display());
    let mut a = call.argv.clone();
    assert_eq!(
        a[..6],
        ["new-session", "-d", "-s", agent, "-e", &socket],
        "new-session argv {a:?}"
    );
    a.drain(4..6);
    assert_eq!(
        a[..5],
        ["new-session", "-d", "-s", agent, "--"],
        "new-session argv {a:?}"
    );
    assert!(
        a[5].starts_with('/') && a[5].ends_with("bash"),
        "pane runs bash by absolute path: {a:?}"
    );
    assert_eq!(a[6], "-c");
    assert!(
        a[7].contains("exec \"$@\""),
        "pane script must exec: {:?}",
        a[7]
    );
    assert_eq!(a[8], "start-agent-session");
    assert_eq!(
        a[9],
        format!("{}:{}", h.path("shims").display(), real_path()),
        "PATH baked in"
    );
    assert_eq!(a[10..], *cmd, "CMD after the PATH");
    assert_eq!(call.env("TMUX"), "<unset>", "inherited TMUX must be unset");
    assert_eq!(call.env("TMUX_TMPDIR"), h.tmux_dir().to_str().unwrap());
}

fn assert_list_panes(calls: &[Call], agent: &str) {
    assert!(!calls.is_empty());
    for c in calls {
        assert_eq!(
            c.argv,
            [
                "list-panes",
                "-t",
                &format!("={agent}:"),
                "-F",
                "#{pane_pid}"
            ]
        );
    }
}

/// `stdout_to_launcher`: pidbeat's stdout is the pipe the launcher reads its PID from
/// (`watch --detach` prints it); the shell sidecar's goes to the log.
fn assert_setsid_stdio(call: &Call, h: &TmuxSandbox, agent: &str, stdout_to_launcher: bool) {
    let log = h.run_dir().join(format!("{agent}.log"));
    assert_eq!(call.env("FD0"), "/dev/null", "watcher stdin");
    if stdout_to_launcher {
        assert!(call.env("FD1").starts_with("pipe:"), "watcher stdout");
    } else {
        assert_eq!(call.env("FD1"), log.to_str().unwrap(), "watcher stdout");
    }
    assert_eq!(call.env("FD2"), log.to_str().unwrap(), "watcher stderr");
    assert_eq!(
        call.env("MOSAIC_HEARTBEAT_RUN_DIR"),
        h.run_dir().to_str().unwrap()
    );
}

/// Runs the launcher with the fake tmux and setsid, and `env` on top.
fn run_shim(h: &TmuxSandbox, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = shim_launcher(h, args);
    for (k, v) in env {
        c.env(k, v);
    }
    h.run(c)
}

fn shim_pidbeat_backend(backend: &str, args: &[&str], env: &[(&str, &str)]) {
    let h = TmuxSandbox::new();
    let agent = "agent-1";
    let base = [
        ("FAKE_PANE_PID", "4242"),
        ("MOSAIC_HEARTBEAT_INTERVAL", "0.5"),
    ];
    let r = run_shim(&h, args, &[&base[..], env].concat());
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "", "a clean launch is silent");
    assert_eq!(r.stdout, "");

    let tmux = calls(&h, "tmux");
    assert_new_session(&tmux[0], &h, agent, &["sleep", "1000"]);
    assert_list_panes(&tmux[1..], agent);
    assert_eq!(tmux.len(), 2, "pane found at the first try: {tmux:?}");

    let setsid = calls(&h, "setsid");
    assert_eq!(setsid.len(), 1, "{setsid:?}");
    assert_eq!(
        setsid[0].argv,
        [
            "-w",
            BIN,
            "watch",
            "--pid",
            "4242",
            &format!("--agent={agent}"),
            "--backend",
            backend,
            "--detach"
        ]
    );
    assert_setsid_stdio(&setsid[0], &h, agent, true);
    assert_eq!(
        setsid[0].env("MOSAIC_HEARTBEAT_INTERVAL"),
        "0.5",
        "interval passes through"
    );
    assert_eq!(mode(&h.run_dir()), 0o700, "run dir mode");
    h.finish();
}

#[test]
fn shim_default_backend_is_pidfd() {
    shim_pidbeat_backend("pidfd", &["agent-1", "--", "sleep", "1000"], &[]);
}

#[test]
fn shim_pidfd_flag() {
    shim_pidbeat_backend(
        "pidfd",
        &["agent-1", "--hb-backend", "pidfd", "--", "sleep", "1000"],
        &[],
    );
}

#[test]
fn shim_poll_flag() {
    shim_pidbeat_backend(
        "poll",
        &["agent-1", "--hb-backend=poll", "--", "sleep", "1000"],
        &[],
    );
}

#[test]
fn shim_backend_from_env_and_flag_wins() {
    shim_pidbeat_backend(
        "poll",
        &["agent-1", "--", "sleep", "1000"],
        &[("MOSAIC_HB_BACKEND", "poll")],
    );
    shim_pidbeat_backend(
        "pidfd",
        &["agent-1", "--hb-backend", "pidfd", "--", "sleep", "1000"],
        &[("MOSAIC_HB_BACKEND", "shell")],
    );
}

#[test]
fn shim_shell_backend_runs_sidecar_under_setsid() {
    let h = TmuxSandbox::new();
    let r = run_shim(
        &h,
        &["agent-1", "--hb-backend", "shell", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242")],
    );
    // The fake setsid starts nothing, so no record appears: that is a failed start.
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, "wrote no record");
    let setsid = calls(&h, "setsid");
    assert_eq!(setsid.len(), 1, "{setsid:?}");
    let sidecar = std::fs::canonicalize(SIDECAR).unwrap();
    assert_eq!(
        setsid[0].argv,
        [
            "nohup",
            sidecar.to_str().unwrap(),
            "--pid",
            "4242",
            "--agent=agent-1"
        ]
    );
    assert_setsid_stdio(&setsid[0], &h, "agent-1", false);
    assert!(
        r.elapsed < Duration::from_secs(3),
        "gave up in {:?}",
        r.elapsed
    );
    h.finish();
}

#[test]
fn shim_empty_pane_pid_warns_and_starts_nothing() {
    let h = TmuxSandbox::new();
    let r = h.run(shim_launcher(&h, &["agent-1", "--", "sleep", "1000"])); // no FAKE_PANE_PID
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, "pane PID");
    let tmux = calls(&h, "tmux");
    assert_list_panes(&tmux[1..], "agent-1");
    assert_eq!(tmux.len(), 1 + 20, "20 list-panes tries: {tmux:?}");
    assert!(
        calls(&h, "setsid").is_empty(),
        "no watcher without a pane PID"
    );
    assert!(
        r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_secs(5),
        "bounded retry took {:?}",
        r.elapsed
    );
    h.finish();
}

#[test]
fn shim_watcher_failure_is_a_warning() {
    let h = TmuxSandbox::new();
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242"), ("FAKE_SETSID_RC", "1")],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, "failed to start (exit 1)");
    assert_eq!(calls(&h, "setsid").len(), 1);
    h.finish();
}

#[test]
fn shim_missing_pidbeat_is_a_warning() {
    let h = TmuxSandbox::new();
    let missing = h.path("no-such-pidbeat");
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[
            ("FAKE_PANE_PID", "4242"),
            ("PIDBEAT", missing.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, missing.to_str().unwrap());
    assert_eq!(
        calls(&h, "tmux").len(),
        1,
        "session started, no pane lookup needed"
    );
    assert!(calls(&h, "setsid").is_empty());

    // Without PIDBEAT the launcher looks for `pidbeat` on PATH (not there in the sandbox PATH).
    let r = h.run({
        let mut c = shim_launcher(&h, &["agent-2", "--", "sleep", "1000"]);
        c.env_remove("PIDBEAT").env("FAKE_PANE_PID", "4242").env(
            "PATH",
            format!("{}:/usr/bin:/bin", h.path("shims").display()),
        );
        c
    });
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_one_warning(&r, "'pidbeat'");
    assert!(calls(&h, "setsid").is_empty());
    h.finish();
}

#[test]
fn shim_none_backend_starts_nothing() {
    let h = TmuxSandbox::new();
    let r = run_shim(
        &h,
        &["agent-1", "--hb-backend", "none", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242")],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    assert_eq!(calls(&h, "tmux").len(), 1, "only new-session");
    assert!(calls(&h, "setsid").is_empty());
    assert!(!h.run_dir().exists(), "`none` touches no run dir");
    h.finish();
}

#[test]
fn shim_tmux_failure_is_an_error_and_starts_no_watcher() {
    let h = TmuxSandbox::new();
    let r = run_shim(
        &h,
        &["agent-1", "--", "sleep", "1000"],
        &[("FAKE_PANE_PID", "4242"), ("FAKE_NEW_SESSION_FAIL", "1")],
    );
    assert_eq!(r.code(), Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("start-agent-session: error:"),
        "{}",
        r.stderr
    );
    assert_eq!(calls(&h, "tmux").len(), 1);
    assert!(calls(&h, "setsid").is_empty());
    assert!(!h.run_dir().exists());
    h.finish();
}

#[test]
fn shim_usage_errors_exit_2_and_run_nothing() {
    let h = TmuxSandbox::new();
    let long = "a".repeat(129);
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (vec![], vec![]),
        (vec!["agent"], vec![]),
        (vec!["agent", "--"], vec![]),
        (vec!["agent", "sleep", "1"], vec![]),
        (vec!["agent", "--hb-backend", "bogus", "--", "true"], vec![]),
        (vec!["agent", "--hb-backend=", "--", "true"], vec![]),
        (vec!["agent", "--hb-backend"], vec![]),
        (
            vec!["agent", "--", "true"],
            vec![("MOSAIC_HB_BACKEND", "bogus")],
        ),
        (vec!["--hb-backend", "pidfd", "agent", "--", "true"], vec![]),
        (vec!["", "--", "true"], vec![]),
        (vec![".hidden", "--", "true"], vec![]),
        (vec!["a/b", "--", "true"], vec![]),
        (vec!["a b", "--", "true"], vec![]),
        (vec!["a:b", "--", "true"], vec![]),
        (vec!["a\nb", "--", "true"], vec![]),
        (vec!["é", "--", "true"], vec![]),
        (vec![&long, "--", "true"], vec![]),
        // valid for pidbeat, but tmux would rename the session to a_b
        (vec!["a.b", "--", "true"], vec![]),
    ];
    for (args, env) in cases {
        let r = run_shim(&h, &args, &env);
        assert_eq!(r.code(), Some(2), "{args:?} {env:?}: stderr {}", r.stderr);
        assert!(
            r.stderr.contains("usage: start-agent-session.sh"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(calls(&h, "tmux").is_empty(), "{args:?} reached tmux");
    }
    let r = h.run(shim_launcher(&h, &["--help"]));
    assert_eq!(r.code(), Some(0));
    assert!(r.stdout.starts_with("usage:"));
    h.finish();
}

#[test]
fn shim_accepts_edge_agent_names() {
    let h = TmuxSandbox::new();
    let long = "a".repeat(128);
    for agent in [long.as_str(), "-x", "a@b+c_d-1", "123", "A"] {
        let r = h.run(shim_launcher(
            &h,
            &[agent, "--hb-backend", "none", "--", "true"],
        ));
        assert_eq!(r.code(), Some(0), "{agent}: {}", r.stderr);
        let last = calls(&h, "tmux").pop().unwrap();
        assert_eq!(last.argv[..4], ["new-session", "-d", "-s", agent]);
    }
    h.finish();
}

#[test]
fn shim_run_dir_resolution() {
    let h = TmuxSandbox::new();
    let check = |c: Command, want: &Path| {
        let r = h.run(c);
        assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr);
        let call = calls(&h, "setsid").pop().expect("setsid called");
        assert_eq!(call.env("MOSAIC_HEARTBEAT_RUN_DIR"), want.to_str().unwrap());
        // The log is the watcher's stderr (its stdout is the PID pipe).
        assert_eq!(call.env("FD2"), want.join("agent-1.log").to_str().unwrap());
        assert_eq!(mode(want), 0o700, "{} mode", want.display());
    };
    let base = || {
        let mut c = shim_launcher(&h, &["agent-1", "--", "sleep", "1000"]);
        c.env("FAKE_PANE_PID", "4242")
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR");
        c
    };
    // XDG_CONFIG_HOME
    let xdg = h.path("xdg");
    let mut c = base();
    c.env("XDG_CONFIG_HOME", &xdg);
    check(c, &xdg.join("mosaic/fleet/run"));
    // a relative MOSAIC_HEARTBEAT_RUN_DIR is taken from the launcher's cwd, made absolute
    let mut c = base();
    c.env("MOSAIC_HEARTBEAT_RUN_DIR", "rel/run")
        .env("XDG_CONFIG_HOME", &xdg);
    check(c, &h.path("rel/run"));
    // a relative XDG_CONFIG_HOME is ignored (XDG base dir spec); then ~/.config
    let mut c = base();
    c.env("XDG_CONFIG_HOME", "relative-xdg");
    check(c, &h.sb.home().join(".config/mosaic/fleet/run"));
    assert!(!h.path("relative-xdg").exists());
    h.finish_allowing_home();
}
