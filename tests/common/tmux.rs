//! A real tmux server on a private socket dir, for the launcher's tests.
//!
//! Every command runs with `TMUX_TMPDIR=<sandbox>/tmux`, so the tmux server, its panes and the
//! watchers the launcher starts never meet the user's tmux; they carry the sandbox mark, so
//! the sandbox's sweep finds and kills them all. The test process is a child subreaper:
//! PID 1 in the sandbox does not reap orphans.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{Finish, Out, Sandbox, become_subreaper, run_with_deadline};

/// Real-tmux tests run one at a time: the pidfd latency bound is tight on a 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long one launcher run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// A sandbox with a private tmux socket dir (`<sandbox>/tmux`).
pub struct TmuxSandbox {
    pub sb: Sandbox,
    /// Dropped after `sb`, whose drop kills this test's tmux server: the next real test starts
    /// only once this one is cleaned up.
    _serial: Option<MutexGuard<'static, ()>>,
}

impl TmuxSandbox {
    pub fn new() -> Self {
        become_subreaper();
        let sb = Sandbox::new();
        std::fs::create_dir(sb.path("tmux")).unwrap();
        TmuxSandbox { sb, _serial: None }
    }

    /// One for a test that starts a real tmux server and real watchers: serialised.
    pub fn real() -> Self {
        let guard = serial();
        let mut h = TmuxSandbox::new();
        h._serial = Some(guard);
        h
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.sb.path(rel)
    }
    pub fn tmux_dir(&self) -> PathBuf {
        self.path("tmux")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.sb.run_dir()
    }
    pub fn record_path(&self, agent: &str) -> PathBuf {
        self.sb.record_path(agent)
    }

    /// `program` with the sandbox's scrubbed environment and this sandbox's TMUX_TMPDIR.
    pub fn scrubbed(&self, program: &str) -> Command {
        let mut c = self.sb.cmd_of(program);
        c.env("TMUX_TMPDIR", self.tmux_dir());
        c
    }

    /// Runs `c` with the deadline of a launcher run.
    pub fn run(&self, c: Command) -> Out {
        run_with_deadline(c, RUN_DEADLINE)
    }

    /// `run`, then notes every process it left in the sandbox (so that the sweep can reap
    /// them even if they exit, e.g. a tmux server whose last session ends, before it runs).
    pub fn launch(&self, c: Command) -> Out {
        let r = self.run(c);
        self.sb.procs();
        r
    }

    /// Real tmux on this sandbox's socket dir (never a shim).
    pub fn tmux(&self, args: &[&str]) -> Out {
        self.scrubbed("tmux").args(args).finish()
    }

    pub fn pane_pid(&self, agent: &str) -> Option<i32> {
        let out = self.tmux(&[
            "list-panes",
            "-t",
            &format!("={agent}:"),
            "-F",
            "#{pane_pid}",
        ]);
        out.stdout.trim().parse().ok()
    }

    /// Kills the tmux server and everything else the test started, reaps what we adopted,
    /// then asserts that nothing survived, nothing reached `$HOME/.config` and no tmux server
    /// answers.
    pub fn finish(self) {
        self.finish_inner(true)
    }

    /// `finish` for a test that lets pidbeat use `$HOME/.config`.
    pub fn finish_allowing_home(self) {
        self.finish_inner(false)
    }

    fn finish_inner(self, home_untouched: bool) {
        self.sb.procs();
        let _ = self.tmux(&["kill-server"]);
        self.sb.sweep();
        self.sb.assert_no_leftovers(&[]);
        if home_untouched {
            assert!(
                !self.sb.home().join(".config/mosaic").exists(),
                "something wrote under $HOME/.config/mosaic"
            );
            self.sb.assert_home_untouched();
        }
        let sock = self
            .tmux_dir()
            .join(format!("tmux-{}", rustix::process::getuid().as_raw()));
        let out = self.tmux(&["ls"]);
        assert!(
            !out.status.success(),
            "tmux server still answers on {}",
            sock.display()
        );
    }
}

impl Default for TmuxSandbox {
    fn default() -> Self {
        Self::new()
    }
}
