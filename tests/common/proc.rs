//! Processes a test starts: the one `Guard` that kills and reaps them, the spawners, signals
//! and reaping.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};

use super::{Finish, have, line_channel, poll, poll_for, skip, wait_until};

const TICK: Duration = Duration::from_millis(5);

/// A process of the test's, SIGKILLed and reaped when dropped, even if the test panics.
///
/// Either a child it spawned (`spawn`), which also gets `PR_SET_PDEATHSIG = SIGKILL`: should
/// the test's thread die without running drops (a crashed or aborted test binary), the kernel
/// kills the child. Or a process reparented to the test, which is a child subreaper (`adopt`:
/// a detached watcher, an orphaned zombie).
pub struct Guard {
    held: Held,
}

enum Held {
    Child(Child),
    Adopted(i32),
    /// Reaped: the PID may name another process by now, so nothing is left to signal.
    Released,
}

impl Guard {
    /// Spawns `cmd` as a child that dies with the test's thread (see `Guard`).
    pub fn spawn(cmd: &mut Command) -> Guard {
        Guard::try_spawn(cmd).unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
    }

    pub fn try_spawn(cmd: &mut Command) -> std::io::Result<Guard> {
        let parent = rustix::process::getpid();
        // SAFETY: the closure runs in the child between fork and exec, and makes only two
        // async-signal-safe system calls (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The test may have died between fork and prctl: then no signal will come.
                if rustix::process::getppid() != Some(parent) {
                    return Err(rustix::io::Errno::SRCH.into());
                }
                Ok(())
            });
        }
        Ok(Guard {
            held: Held::Child(cmd.spawn()?),
        })
    }

    /// Takes charge of `pid`, a process reparented to this test (see `become_subreaper`).
    pub fn adopt(pid: i32) -> Guard {
        assert!(pid > 0, "adopt({pid})");
        Guard {
            held: Held::Adopted(pid),
        }
    }

    pub fn pid(&self) -> i32 {
        match &self.held {
            Held::Child(c) => c.id() as i32,
            Held::Adopted(p) => *p,
            Held::Released => panic!("the guarded process was already reaped"),
        }
    }

    /// The spawned child (its stdio pipes, `try_wait`).
    pub fn child(&mut self) -> &mut Child {
        match &mut self.held {
            Held::Child(c) => c,
            _ => panic!("not a spawned child"),
        }
    }

    /// Waits for it to exit on its own within `timeout` and reaps it; returns its status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        match &mut self.held {
            Held::Child(c) => poll_for(timeout, TICK, || c.try_wait().unwrap()),
            Held::Adopted(p) => {
                let pid = *p;
                let st = poll_for(timeout, TICK, || try_reap(pid));
                if st.is_some() {
                    self.held = Held::Released;
                }
                st
            }
            Held::Released => panic!("the guarded process was already reaped"),
        }
    }

    /// Waits for its own exit within `timeout` and reaps it; panics if it does not exit.
    pub fn reap_within(mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        self.wait_timeout(timeout)
            .unwrap_or_else(|| panic!("pid {pid} did not exit within {timeout:?}"))
    }

    /// SIGKILLs and reaps now; returns the status.
    pub fn kill(&mut self) -> ExitStatus {
        match &mut self.held {
            Held::Child(c) => {
                let _ = c.kill();
                c.wait().unwrap()
            }
            Held::Adopted(p) => {
                signal(*p, Signal::KILL);
                let pid = *p;
                self.reap_adopted(pid)
                    .unwrap_or_else(|| panic!("adopted pid {pid} not reaped after SIGKILL"))
            }
            Held::Released => panic!("the guarded process was already reaped"),
        }
    }

    fn reap_adopted(&mut self, pid: i32) -> Option<ExitStatus> {
        let st = poll_for(Duration::from_secs(2), TICK, || try_reap(pid));
        self.held = Held::Released;
        st
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Released) {
            Held::Child(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Held::Adopted(p) => {
                signal(p, Signal::KILL);
                let _ = self.reap_adopted(p);
            }
            Held::Released => {}
        }
    }
}

/// Reaps `pid` if it has exited: `Some(status)`, `None` while it runs. Panics if it is not a
/// child of the test (not adopted?).
fn try_reap(pid: i32) -> Option<ExitStatus> {
    let p = Pid::from_raw(pid).expect("pid > 0");
    match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
        Ok(Some((_, st))) => Some(ExitStatus::from_raw(st.as_raw())),
        Ok(None) => None,
        Err(e) => panic!("waitpid({pid}): {e} (not our child?)"),
    }
}

/// Reaps `pid` if it is our (possibly adopted) child and has exited; ignores ECHILD. Only
/// ever a known PID: never `waitpid(-1)` (nor 0), which would steal other tests' children.
pub fn reap(pid: i32) {
    if pid > 0
        && let Some(p) = Pid::from_raw(pid)
    {
        let _ = rustix::process::waitpid(Some(p), WaitOptions::NOHANG);
    }
}

/// Makes this test process the reaper of orphans (PID 1 in the sandbox reaps nothing), so
/// that it can reap them by PID. Process-wide; we only ever reap specific PIDs, never
/// `waitpid(-1)`, which would steal other tests' children.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Sends `sig` to `pid`, panicking if that fails.
pub fn send_signal(pid: i32, sig: Signal) {
    let p = Pid::from_raw(pid).expect("pid > 0");
    rustix::process::kill_process(p, sig).unwrap_or_else(|e| panic!("kill {sig:?} {pid}: {e}"));
}

/// Sends `sig` to `pid` if there is such a process (cleanup: it may be gone already).
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0
        && let Some(p) = Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// SIGSTOPs `pid` and waits until the kernel shows it stopped.
pub fn stop(pid: i32) {
    send_signal(pid, Signal::STOP);
    super::wait_stopped(pid, Duration::from_secs(5));
}

pub fn cont(pid: i32) {
    send_signal(pid, Signal::CONT);
}

/// Starts a target process (a child of the test, never of the watcher).
pub fn spawn_target(argv: &[&str]) -> Guard {
    Guard::spawn(
        Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

pub fn spawn_sleep() -> Guard {
    spawn_target(&["sleep", "1000"])
}

/// A target that exits with `code` once its stdin, a pipe, reaches EOF: drop
/// `child().stdin` to end it.
pub fn spawn_exit_on_eof(code: i32) -> Guard {
    Guard::spawn(
        Command::new("sh")
            .args(["-c", &format!("read _; exit {code}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )
}

/// The PID of a process that existed and is gone (exited and reaped).
pub fn exited_pid() -> i32 {
    let g = spawn_target(&["true"]);
    let pid = g.pid();
    g.reap_within(Duration::from_secs(5));
    pid
}

/// A parent that never reaps: `sh` starts `child` (a shell command) in the background, writes
/// its PID to `pidfile` and execs `sleep 1000`, which never waits. Returns the parent and the
/// child's PID; once the child exits it stays a zombie for as long as the parent lives.
pub fn spawn_zombie_parent(child: &str, pidfile: &Path) -> (Guard, i32) {
    let parent = spawn_target(&[
        "sh",
        "-c",
        &format!("{child} & echo $! > {}; exec sleep 1000", pidfile.display()),
    ]);
    let pid = read_pid_file(pidfile, Duration::from_secs(5));
    (parent, pid)
}

/// `spawn_zombie_parent` for a `sleep 1000` child, once the parent has exec'd its `sleep`.
pub fn zombie_family(pidfile: &Path) -> (Guard, i32) {
    let (parent, c) = spawn_zombie_parent("sleep 1000", pidfile);
    wait_until(Duration::from_secs(1), "parent exec'd sleep", || {
        std::fs::read_to_string(format!("/proc/{}/comm", parent.pid()))
            .is_ok_and(|c| c.trim() == "sleep")
    });
    (parent, c)
}

/// Waits for `path` to hold a whole line (`echo $$ > path`) and parses it as a PID, panicking
/// after `timeout`.
pub fn read_pid_file(path: &Path, timeout: Duration) -> i32 {
    let s = poll(
        timeout,
        TICK,
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|s| s.ends_with('\n'))
        },
        || format!("{} held no PID after {timeout:?}", path.display()),
    );
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: no PID in {s:?}: {e}", path.display()))
}

/// Whether `unshare --pid --fork --mount-proc FLAGS… true` works here (it needs privileges
/// some sandboxes lack).
pub fn unshare_pid_ns_works(flags: &[&str]) -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .args(flags)
        .arg("true")
        .finish()
        .status
        .success()
}

/// Whether python3 with ctypes and threading runs here; if not, `skip`s.
pub fn python3() -> bool {
    if !have("python3", "python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import ctypes, threading"])
        .finish()
        .status
        .success();
    if !ok {
        skip("python3 with ctypes is not available");
    }
    ok
}

/// Spawns `python3 -c CODE`; CODE prints its PID first. Returns the guard, that PID and the
/// child's stdin.
pub fn spawn_python(code: &str) -> (Guard, i32, ChildStdin) {
    let mut g = Guard::spawn(
        Command::new("python3")
            .args(["-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdin = g.child().stdin.take().unwrap();
    let line = line_channel(g.child().stdout.take().unwrap())
        .recv_timeout(Duration::from_secs(10))
        .expect("python3 printed its PID");
    let pid: i32 = line.trim().parse().expect("python pid");
    assert_eq!(pid, g.pid(), "python3 forked instead of exec'ing (a shim?)");
    (g, pid, stdin)
}
