//! Deadlines: the one poll loop every `wait_*` helper is built on, and the one way to run a
//! command to completion with a deadline (`run_with_deadline`, or `finish` for the usual
//! one). Every other child a test starts is a `Guard`'s, which kills it when the test ends;
//! `harness::every_child_runs_under_a_deadline` keeps it so.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Guard;

/// Calls `f` every `every` until it gives `Some`; `None` once `timeout` has passed.
pub fn poll_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `poll_for`, panicking with `what()` after `timeout`.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    f: impl FnMut() -> Option<T>,
    what: impl FnOnce() -> String,
) -> T {
    poll_for(timeout, every, f).unwrap_or_else(|| panic!("{}", what()))
}

/// Polls `f` (every 2 ms) until it holds, panicking after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    poll(
        timeout,
        Duration::from_millis(2),
        || f().then_some(()),
        || format!("timed out after {timeout:?}: {what}"),
    )
}

/// How a command run by `run_with_deadline` ended.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    /// Its stdout as text (invalid UTF-8 replaced; `utf8_stdout` refuses it).
    pub stdout: String,
    /// Its stdout as it was written.
    pub raw_stdout: Vec<u8>,
    pub stderr: String,
    /// From the spawn until it had exited and both pipes had reached EOF: what a caller of
    /// `out=$(cmd)` waits.
    pub elapsed: Duration,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Its stdout, panicking unless it was valid UTF-8.
    pub fn utf8_stdout(&self) -> &str {
        std::str::from_utf8(&self.raw_stdout)
            .unwrap_or_else(|e| panic!("stdout is not UTF-8 ({e}): {:?}", self.stdout))
    }
}

/// How long a command run by `finish` may take: far beyond any command a test runs to
/// completion, so only a hang reaches it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `run_with_deadline` with the usual `DEADLINE`, as a method of a command built in place
/// (`sb.cmd().args(…).finish()`).
pub trait Finish {
    fn finish(&mut self) -> Out;
}

impl Finish for Command {
    fn finish(&mut self) -> Out {
        run_within(self, DEADLINE)
    }
}

/// How long, after the command exited, its stdout and stderr may stay open.
const EOF_GRACE: Duration = Duration::from_secs(5);

/// Runs `cmd` to completion with piped stdout and stderr, panicking if it has not exited
/// within `timeout` (it is killed and reaped first). Once it has exited, both pipes must reach
/// EOF promptly: a detached process that kept the caller's stdout or stderr open would hang
/// every `out=$(cmd)`.
///
/// Its stdin is a pipe nobody writes to (like a terminal nobody types into), closed once it
/// has exited, so a detached process that inherited it instead of opening /dev/null shows up
/// in `/proc/PID/fd/0`.
pub fn run_with_deadline(mut cmd: Command, timeout: Duration) -> Out {
    run_within(&mut cmd, timeout)
}

fn run_within(cmd: &mut Command, timeout: Duration) -> Out {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut g = Guard::spawn(cmd);
    let stdin = g.child().stdin.take();
    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(g.child().stdout.take().unwrap()),
        Box::new(g.child().stderr.take().unwrap()),
    ];
    for (i, mut p) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    // On a panic here the guard kills and reaps it.
    let status = g
        .wait_timeout(timeout)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {timeout:?}"));
    drop(stdin);
    let mut out = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let (i, buf) = rx.recv_timeout(EOF_GRACE).unwrap_or_else(|_| {
            panic!("{cmd:?} exited but something it started still holds its stdout/stderr")
        });
        out[i] = buf;
    }
    let elapsed = start.elapsed();
    let [raw_stdout, raw_stderr] = out;
    Out {
        status,
        stdout: String::from_utf8_lossy(&raw_stdout).into_owned(),
        raw_stdout,
        stderr: String::from_utf8_lossy(&raw_stderr).into_owned(),
        elapsed,
    }
}
