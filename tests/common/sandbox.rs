//! The one `Sandbox`: a temp dir per test with its own `HOME` and run dir, the commands that
//! run pidbeat inside it, and the one leak check.
//!
//! Every command made by `cmd_of` carries `PIDBEAT_TEST_SANDBOX=<dir>` in its environment, and
//! so does everything it starts (detached watchers, tmux servers and panes, a sidecar's
//! `sleep`): `procs` finds them all by scanning `/proc/*/environ`, and by command lines that
//! name the sandbox dir. Dropping the sandbox kills (SIGTERM, then SIGKILL) and reaps whatever
//! is still running, and fails the test if there was anything.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;

use super::{
    BIN, Finish, Guard, Out, Share, all_pids, cmdline, describe, environ_has, pid_running,
    poll_for, reap, share, signal, status_is, wait_gone, wait_record,
};

/// The environment variable that marks every process a sandbox starts.
const MARK: &str = "PIDBEAT_TEST_SANDBOX";

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// PIDs `procs` has seen (alive at some point): reaped by `sweep` even if they exited
    /// before it ran (a tmux server whose last session ended, reparented to us).
    seen: Mutex<BTreeSet<i32>>,
    /// Dropped last: the test leaves the machine once everything it started is gone.
    _share: Share,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh temp dir for one test, with a private `HOME` inside it so that nothing can ever
    /// land under the real `~/.config/mosaic`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pidbeat-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Sandbox {
            dir,
            seen: Mutex::new(BTreeSet::new()),
            _share: share(),
        }
    }

    /// `rel` inside the sandbox dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The run dir tests pass explicitly (`--run-dir`); created by pidbeat itself.
    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    pub fn record_path(&self, agent: &str) -> PathBuf {
        self.run_dir().join(format!("{agent}.hb"))
    }

    /// Creates the run dir as pidbeat would (mode 0700) and returns it.
    pub fn private_run_dir(&self) -> PathBuf {
        let run = self.run_dir();
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, PermissionsExt::from_mode(0o700)).unwrap();
        run
    }

    /// `pidbeat` with a scrubbed environment: no inherited MOSAIC_* or XDG settings.
    pub fn cmd(&self) -> Command {
        self.cmd_of(BIN)
    }

    /// `program` with nothing of the test's environment but PATH, the sandbox's HOME, NO_COLOR
    /// and the sandbox mark (for wrappers such as nsenter, unshare or the launcher scripts).
    pub fn cmd_of(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", real_path())
            .env("HOME", self.home())
            .env("NO_COLOR", "1")
            .env(MARK, self.dir.path());
        c
    }

    /// `pidbeat watch --pid PID --agent AGENT --run-dir <run dir>`, for more flags and a run.
    pub fn watch_cmd(&self, pid: i32, agent: &str) -> Command {
        let mut c = self.cmd();
        watch_args(&mut c, pid, agent, &self.run_dir());
        c
    }

    /// A foreground watcher (`watch_cmd` then `extra`), stdio on /dev/null, killed on drop.
    pub fn watch(&self, pid: i32, agent: &str, extra: &[&str]) -> Guard {
        Guard::spawn(
            self.watch_cmd(pid, agent)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    }

    /// `watch`, then waits (up to 5 s) for this watcher's first `alive` record.
    pub fn watch_alive(&self, pid: i32, agent: &str, extra: &[&str]) -> Guard {
        let g = self.watch(pid, agent, extra);
        let wpid = g.pid();
        wait_record(&self.record_path(agent), Duration::from_secs(5), |v| {
            status_is(v, "alive") && v["watcher_pid"] == wpid
        });
        g
    }

    /// Spawns `cmd` (a watcher) with stdin and stdout on /dev/null and stderr to the file
    /// `<sandbox>/<name>.stderr`, to count its warnings.
    pub fn spawn_logged(&self, cmd: &mut Command, name: &str) -> Watch {
        let err = self.path(&format!("{name}.stderr"));
        let g = Guard::spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap()),
        );
        Watch { g, err }
    }

    /// `pidbeat run --agent AGENT FLAGS… --run-dir <run dir> -- CMD…`.
    pub fn run_cmd(&self, agent: &str, flags: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(["run", "--agent", agent])
            .args(flags)
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--")
            .args(cmd);
        c
    }

    /// `pidbeat ps --run-dir <run dir> ARGS…`.
    pub fn ps_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.arg("ps").arg("--run-dir").arg(self.run_dir()).args(args);
        c
    }

    /// Runs `ps_cmd(args)` to completion.
    pub fn ps(&self, args: &[&str]) -> Out {
        self.ps_cmd(args).finish()
    }

    /// Runs `pidbeat ARGS…` (`cmd`) to completion.
    pub fn pidbeat(&self, args: &[&str]) -> Out {
        self.cmd().args(args).finish()
    }

    /// Waits until `agent`'s record has status `status`, panicking after `timeout`.
    pub fn wait_status(&self, agent: &str, status: &str, timeout: Duration) -> Value {
        wait_record(&self.record_path(agent), timeout, |v| status_is(v, status))
    }

    /// Asserts no pidbeat ever wrote under the sandbox's fake home.
    pub fn assert_home_untouched(&self) {
        assert!(
            !self.home().join(".config").exists(),
            "something wrote under $HOME/.config"
        );
    }

    /// Live (non-zombie) processes of this sandbox other than the test itself: those marked
    /// by its environment, and those whose command line names the sandbox dir.
    pub fn procs(&self) -> Vec<i32> {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mark = format!("{MARK}={dir}").into_bytes();
        let me = std::process::id() as i32;
        let found: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter(|&pid| environ_has(pid, &mark) || cmdline(pid).contains(&dir))
            .filter(|&pid| pid_running(pid))
            .collect();
        self.seen.lock().unwrap().extend(&found);
        found
    }

    fn reap_seen(&self) {
        for &p in self.seen.lock().unwrap().iter() {
            reap(p);
        }
    }

    /// Kills everything this sandbox still runs and reaps what we adopted: a moment to exit on
    /// its own, then SIGTERM (a stopped sidecar kills its own `sleep`, a pidbeat watcher writes
    /// `unwatched`; SIGKILL would orphan the sidecar's sleep), then SIGKILL. Returns what was
    /// running when it began.
    pub fn sweep(&self) -> Vec<i32> {
        let first = self.procs();
        let start = Instant::now();
        let (mut termed, mut killed) = (false, false);
        loop {
            let left = self.procs();
            self.reap_seen();
            let waited = start.elapsed();
            if left.is_empty() || waited > Duration::from_secs(4) {
                break;
            }
            if !termed && waited > Duration::from_millis(300) {
                left.iter().for_each(|&p| signal(p, Signal::TERM));
                termed = true;
            } else if !killed && waited > Duration::from_secs(2) {
                left.iter().for_each(|&p| signal(p, Signal::KILL));
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.reap_seen();
        first
    }

    /// The leak check: each of `pids` is gone, and so (within 2 s) is every process of the
    /// sandbox.
    pub fn assert_no_leftovers(&self, pids: &[i32]) {
        for &p in pids {
            wait_gone(p, Duration::from_secs(2));
        }
        let clean = poll_for(Duration::from_secs(2), Duration::from_millis(10), || {
            self.procs().is_empty().then_some(())
        });
        if clean.is_none() {
            let left = self.procs();
            panic!("left running: {}", describe(&left));
        }
        self.reap_seen();
    }

    /// `assert_no_leftovers`, and nothing reached `$HOME/.config`.
    pub fn assert_clean(&self, pids: &[i32]) {
        self.assert_no_leftovers(pids);
        self.assert_home_untouched();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let left = describe(&self.procs());
        if !self.sweep().is_empty() && !std::thread::panicking() {
            panic!("the test left processes running (killed now): {left}");
        }
    }
}

/// The test's own PATH (a fallback if it has none), for the commands it runs.
pub fn real_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
}

/// Adds `watch --pid PID --agent AGENT --run-dir DIR` to `c` (pidbeat itself, or a wrapper
/// that execs it).
pub fn watch_args<'c>(
    c: &'c mut Command,
    pid: i32,
    agent: &str,
    run_dir: &Path,
) -> &'c mut Command {
    c.args(["watch", "--pid", &pid.to_string(), "--agent", agent])
        .arg("--run-dir")
        .arg(run_dir)
}

/// A foreground `pidbeat watch` whose stderr goes to a file (`Sandbox::spawn_logged`).
pub struct Watch {
    pub g: Guard,
    err: PathBuf,
}

impl Watch {
    pub fn pid(&self) -> i32 {
        self.g.pid()
    }
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    /// How many lines of its stderr contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }
    /// Waits for it to exit on its own.
    pub fn exits(&mut self, timeout: Duration) -> ExitStatus {
        let st = self.g.wait_timeout(timeout);
        st.unwrap_or_else(|| panic!("watcher {} still running after {timeout:?}", self.pid()))
    }
}
