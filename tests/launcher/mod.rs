//! Integration tests for `scripts/start-agent-session.sh` and `scripts/hb-sidecar.sh`.
//!
//! Three kinds of test:
//! * shim tests (`shim`) put a fake `tmux` and a fake `setsid` (tiny scripts that log their
//!   argv) first on PATH and check the exact commands the launcher runs, without starting
//!   anything;
//! * sidecar tests (`sidecar`) drive `hb-sidecar.sh` directly against a child of the test;
//! * real tests (`real`) start a real tmux server on a private `TMUX_TMPDIR` and real watchers
//!   (`pidbeat watch` for pidfd/poll, the sidecar for shell). They run one at a time.
//!
//! Every test has its own sandbox (temp HOME, run dir, tmux socket dir), from
//! tests/common/tmux.rs. Every process the launcher starts inherits the sandbox's mark, so the
//! sandbox finds them all by scanning `/proc/*/environ`, and its cleanup (also run from `Drop`
//! when an assertion fails) kills the tmux server and every such process and reaps them.

mod exits;
mod real;
mod shim;
mod sidecar;

use std::path::Path;
use std::process::Command;

use crate::common::tmux::TmuxSandbox;
use crate::common::*;

const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/start-agent-session.sh"
);
const SIDECAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hb-sidecar.sh");
const WARN: &str = "start-agent-session: warning: ";

/// The launcher with a scrubbed environment: temp HOME, private TMUX_TMPDIR, the sandbox
/// run dir, `PIDBEAT` = the built binary, and a bogus inherited `TMUX` that must be ignored.
fn launcher(h: &TmuxSandbox, args: &[&str]) -> Command {
    let mut c = h.scrubbed(LAUNCHER);
    c.args(args)
        .env(
            "TMUX",
            format!("{}/no-such-socket,1,0", h.tmux_dir().display()),
        )
        .env("MOSAIC_HEARTBEAT_RUN_DIR", h.run_dir())
        .env("PIDBEAT", BIN)
        .env("SHIM_LOG", h.path("shimlog"))
        .current_dir(h.sb.dir.path());
    c
}

/// Exactly one line on stderr, and it is a launcher warning.
fn assert_one_warning(r: &Out, mentions: &str) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one warning line, got {:?}",
        r.stderr
    );
    assert!(lines[0].starts_with(WARN), "not a warning: {:?}", lines[0]);
    assert!(
        lines[0].contains(mentions),
        "warning {:?} lacks {mentions:?}",
        lines[0]
    );
}

/// No temp files next to the record: the dir holds exactly `names`.
fn assert_dir_holds(dir: &Path, names: &[&str]) {
    let got = dir_names(dir);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "contents of {}", dir.display());
}

#[test]
fn scripts_are_executable_and_shellcheck_clean() {
    for s in [LAUNCHER, SIDECAR] {
        assert_eq!(mode(Path::new(s)) & 0o111, 0o111, "{s} is not executable");
        let text = std::fs::read_to_string(s).unwrap();
        assert!(text.starts_with("#!/usr/bin/env bash\n"), "{s}: shebang");
        assert!(text.contains("set -euo pipefail"), "{s}: strict mode");
    }
    if have("shellcheck", "shellcheck") {
        let out = Command::new("shellcheck")
            .args([LAUNCHER, SIDECAR])
            .finish();
        assert!(
            out.status.success(),
            "shellcheck:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}
