//! What operators plug in, checked by the tools that read it: the Prometheus rules
//! (`promtool`), the systemd units (`systemd-analyze`), and the newcomer's first meetings
//! with pidbeat (`forget` on a live agent, the man pages as `man` renders them).
//!
//! A missing tool is a loud skip for a developer and a failure where the tools are required
//! (`PIDBEAT_REQUIRE_TOOLS=1`, as CI sets it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const SEC: Duration = Duration::from_secs(1);

/// The repository's root (where Cargo.toml is).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` is on PATH; if not, a failure under `PIDBEAT_REQUIRE_TOOLS`, else a skip.
fn tool(test: &str, tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var_os("PIDBEAT_REQUIRE_TOOLS").is_none(),
            "{test}: {tool} (Debian {package}) is required (PIDBEAT_REQUIRE_TOOLS) but not on PATH"
        );
        skip(test, &format!("{tool} is not installed (Debian {package})"));
    }
    found
}

/// Runs `cmd` with a deadline and asserts it succeeds; its output.
fn succeeds(cmd: Command, timeout: Duration) -> Out {
    let shown = format!("{cmd:?}");
    let o = run_with_deadline(cmd, timeout);
    assert!(
        o.status.success(),
        "{shown}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        o.stdout,
        o.stderr
    );
    o
}

#[test]
fn forget_names_the_watcher_of_a_live_agent() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "sleeper", &["--interval", "15"]);
    let mut c = sb.cmd();
    c.args(["forget", "sleeper", "--run-dir"]).arg(sb.run_dir());
    let o = run_with_deadline(c, 20 * SEC);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    let lock = sb.run_dir().join(".sleeper.lock");
    let want = format!(
        "pidbeat: forget: sleeper: refused: it is alive (stop its watcher first); watched by pid {} (lock {})\n",
        w.pid(),
        lock.display()
    );
    assert_eq!(o.stderr, want);
    assert!(sb.record_path("sleeper").exists());
}

#[test]
fn man_pages_render_without_backticks_and_name_every_file() {
    if !tool("man_pages_render", "man", "man-db") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path("man1");
    let mut c = sb.cmd();
    c.args(["man", "--dir"]).arg(&dir);
    succeeds(c, 20 * SEC);
    for page in [
        "pidbeat.1",
        "pidbeat-ps.1",
        "pidbeat-status.1",
        "pidbeat-wait.1",
    ] {
        let mut c = Command::new("man");
        c.arg("-l")
            .arg(dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100");
        let text = succeeds(c, 20 * SEC).stdout;
        assert!(!text.contains('`'), "{page} shows a backtick:\n{text}");
        assert!(
            !text.contains("waitpid(1)"),
            "{page}: waitpid(1) is not on Debian 12"
        );
        if page != "pidbeat.1" {
            for f in [
                "<agent>.hb",
                "<agent>.deaths",
                "<agent>.log",
                ".<agent>.lock",
            ] {
                assert!(text.contains(f), "{page}'s FILES lacks {f}");
            }
        }
    }
}
