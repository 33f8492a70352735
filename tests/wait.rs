//! `pidbeat wait`: woken by events, not a sleep loop. Latencies are printed; the bounds
//! asserted are loose (a second) so that only a polling regression, not a busy machine,
//! fails them.

use std::process::{Command, Stdio};

use rustix::fs::inotify;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// `pidbeat wait --run-dir <run dir> ARGS…`.
fn wait_cmd(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.cmd();
    c.arg("wait").arg("--run-dir").arg(sb.run_dir()).args(args);
    c
}

/// A running `wait`, its stdout lines delivered as they come.
struct Waiter {
    guard: Guard,
    lines: Receiver<String>,
}

impl Waiter {
    fn start(sb: &Sandbox, args: &[&str]) -> Waiter {
        let mut guard = Guard::spawn(
            wait_cmd(sb, args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let lines = line_channel(guard.child().stdout.take().unwrap());
        let mut w = Waiter { guard, lines };
        // It must block, not return at once or fail.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            w.guard.child().try_wait().unwrap().is_none(),
            "wait {args:?} returned early: {:?}",
            w.finish(SEC)
        );
        w
    }

    fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .expect("wait printed no line")
    }

    /// Exit code, stdout lines not yet taken, stderr.
    fn finish(&mut self, timeout: Duration) -> (Option<i32>, Vec<String>, String) {
        let st = self.guard.wait_timeout(timeout).expect("wait did not exit");
        let err = std::io::read_to_string(self.guard.child().stderr.take().unwrap()).unwrap();
        // The reader thread ends at EOF, which follows the exit.
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(SEC) {
            rest.push(l);
        }
        (st.code(), rest, err)
    }
}

#[test]
fn wakes_on_death_and_prints_the_signal() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "pi", &[]);
    let mut wait = Waiter::start(&sb, &["pi"]);
    let t0 = Instant::now();
    target.kill();
    let line = wait.line(5 * SEC);
    let latency = t0.elapsed();
    let (code, rest, err) = wait.finish(5 * SEC);
    eprintln!("wait returned {latency:?} after SIGKILL of the target");
    assert_eq!(line, "pi dead signal 9");
    assert_eq!((code, rest, err), (Some(0), vec![], String::new()));
    assert!(latency < SEC, "a sleep loop? {latency:?}");
}

#[test]
fn prints_the_exit_code() {
    let sb = Sandbox::new();
    let mut target = spawn_exit_on_eof(7);
    let _w = sb.watch_alive(target.pid(), "seven", &[]);
    let mut wait = Waiter::start(&sb, &["seven"]);
    drop(target.child().stdin.take());
    assert!(target.wait_timeout(5 * SEC).is_some());
    assert_eq!(wait.line(5 * SEC), "seven dead code 7");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn times_out_with_124() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "busy", &[]);
    let t0 = Instant::now();
    let o = wait_cmd(&sb, &["--timeout", "0.3", "busy"]).finish();
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(124));
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("busy"));
    assert!(
        took >= Duration::from_millis(300) && took < 2 * SEC,
        "{took:?}"
    );

    let o = wait_cmd(&sb, &["--timeout", "0", "busy"]).finish();
    assert_eq!(o.status.code(), Some(124));
}

#[test]
fn waits_for_an_agent_that_has_not_started() {
    let sb = Sandbox::new();
    assert!(!sb.run_dir().exists());
    let mut wait = Waiter::start(&sb, &["late"]);
    assert!(!sb.run_dir().exists(), "wait must not create the run dir");
    let mut target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "late", &[]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(wait.guard.child().try_wait().unwrap().is_none());
    let t0 = Instant::now();
    target.kill();
    assert_eq!(wait.line(5 * SEC), "late dead signal 9");
    eprintln!("late agent: wait saw its death after {:?}", t0.elapsed());
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn lost_when_the_watcher_is_killed() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "orphan", &[]);
    let mut wait = Waiter::start(&sb, &["orphan"]);
    let t0 = Instant::now();
    w.kill();
    assert_eq!(wait.line(5 * SEC), "orphan lost");
    let latency = t0.elapsed();
    eprintln!("wait saw the watcher's SIGKILL after {latency:?}");
    assert!(latency < SEC, "{latency:?}");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn lost_when_the_target_dies_under_a_stopped_watcher() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "frozen", &[]);
    let mut wait = Waiter::start(&sb, &["frozen"]);
    send_signal(w.pid(), Signal::STOP);
    wait_stopped(w.pid(), 5 * SEC);
    let t0 = Instant::now();
    target.kill();
    assert_eq!(wait.line(5 * SEC), "frozen lost");
    let latency = t0.elapsed();
    eprintln!("wait saw the death under a stopped watcher after {latency:?}");
    // No file changes here: the pidfd on the target is what wakes wait.
    assert!(latency < SEC, "{latency:?}");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
    send_signal(w.pid(), Signal::CONT);
}

#[test]
fn reports_each_agent_as_it_ends() {
    let sb = Sandbox::new();
    let mut a = spawn_sleep();
    let mut b = spawn_sleep();
    let _wa = sb.watch_alive(a.pid(), "a", &[]);
    let _wb = sb.watch_alive(b.pid(), "b", &[]);
    let mut wait = Waiter::start(&sb, &["b", "a", "b"]);
    a.kill();
    assert_eq!(wait.line(5 * SEC), "a dead signal 9");
    std::thread::sleep(Duration::from_millis(200));
    assert!(wait.guard.child().try_wait().unwrap().is_none());
    b.kill();
    assert_eq!(wait.line(5 * SEC), "b dead signal 9");
    let (code, rest, _) = wait.finish(5 * SEC);
    assert_eq!(
        (code, rest),
        (Some(0), vec![]),
        "b is named twice, reported once"
    );
}

#[test]
fn already_ended_agents_return_at_once() {
    let sb = Sandbox::new();
    let ms = now_ms();
    let r = Record {
        ts: ms / 1000,
        pid: 4321,
        status: Status::Dead,
        ts_ms: Some(ms),
        seq: Some(9),
        interval: Some(15.0),
        backend: Some("poll".into()),
        watcher_pid: None,
        start_time: Some(1),
        exit: None,
        died_ms: Some(ms),
        watcher_start_time: None,
        boot_id: None,
        boottime_ms: None,
        pidns: None,
        exit_unknown: None,
    };
    sb.plant("gone", &r);
    // Says alive, but no target and no watcher: lost.
    let lost = Record {
        status: Status::Alive,
        died_ms: None,
        ..r.clone()
    };
    sb.plant("ghost", &lost);
    let o = wait_cmd(&sb, &["--timeout", "5", "gone", "ghost"]).finish();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout, "gone dead\nghost lost\n");
}

/// The record says alive and its target is gone, but the watcher (this test, holding the
/// lock) runs: `wait` must report the `dead` that follows, not `lost`.
#[test]
fn a_death_being_recorded_is_not_called_lost() {
    let sb = Sandbox::new();
    let _lock = sb.hold_lock("racy");
    let me = std::process::id() as i32;
    let ms = now_ms();
    let alive = Record {
        ts: ms / 1000,
        pid: 4321,
        status: Status::Alive,
        ts_ms: Some(ms),
        seq: Some(1),
        interval: Some(15.0),
        backend: Some("pidfd".into()),
        watcher_pid: Some(me),
        start_time: Some(1),
        exit: None,
        died_ms: None,
        watcher_start_time: Some(start_time(me).unwrap()),
        boot_id: None,
        boottime_ms: None,
        pidns: None,
        exit_unknown: None,
    };
    sb.plant("racy", &alive);
    let mut wait = Waiter::start(&sb, &["racy"]);
    let dead = Record {
        status: Status::Dead,
        died_ms: Some(ms),
        exit: Some(ExitInfo {
            code: Some(3),
            signal: None,
            core: false,
            oom: false,
        }),
        ..alive
    };
    sb.plant("racy", &dead);
    assert_eq!(wait.line(5 * SEC), "racy dead code 3");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn survives_the_run_dir_being_deleted_and_recreated() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.run_dir()).unwrap();
    std::fs::write(sb.run_dir().join("junk"), b"x").unwrap();
    let mut wait = Waiter::start(&sb, &["phoenix"]);
    std::fs::remove_dir_all(sb.run_dir()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(wait.guard.child().try_wait().unwrap().is_none());
    let mut target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "phoenix", &[]); // Recreates the run dir.
    target.kill();
    assert_eq!(wait.line(5 * SEC), "phoenix dead signal 9");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn needs_an_agent() {
    let sb = Sandbox::new();
    let o = sb.pidbeat(&["wait"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Why a SIGKILLed watcher needs no polling: the kernel closes its lock file, which it had
/// open for writing, and inotify reports that close.
#[test]
fn a_watchers_death_is_a_file_event() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "x", &[]);
    let dir = DirEvents::new(&sb.run_dir());
    assert_eq!(dir.read(Duration::ZERO), vec![], "events before the kill");
    w.kill();
    let on_lock = poll_for(5 * SEC, Duration::ZERO, || {
        dir.read(SEC).into_iter().find(|(n, _)| n == ".x.lock")
    });
    assert_eq!(
        on_lock.map(|(_, what)| what),
        Some(inotify::ReadFlags::CLOSE_WRITE),
        "no event on the lock"
    );
}

/// inotify on a run dir, for the events the readers watch.
struct DirEvents {
    fd: std::os::fd::OwnedFd,
}

impl DirEvents {
    fn new(dir: &std::path::Path) -> DirEvents {
        use inotify::WatchFlags as W;
        let fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).unwrap();
        let mask = W::CREATE | W::MOVED_TO | W::MOVED_FROM | W::CLOSE_WRITE | W::DELETE;
        inotify::add_watch(&fd, dir, mask).unwrap();
        DirEvents { fd }
    }

    /// The events (the name in the dir, what happened) that are there within `timeout`.
    fn read(&self, timeout: Duration) -> Vec<(String, inotify::ReadFlags)> {
        let mut pfd = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        let t = rustix::time::Timespec::try_from(timeout).unwrap();
        if rustix::event::poll(&mut pfd, Some(&t)).unwrap() == 0 {
            return vec![];
        }
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut events = inotify::Reader::new(&self.fd, &mut buf);
        let mut got = Vec::new();
        while let Ok(e) = events.next() {
            let name = e.file_name().map(|n| n.to_string_lossy().into_owned());
            got.push((name.unwrap_or_default(), e.events()));
        }
        got
    }
}

/// The shell sidecar writes no lock: its `watcher_pid` and `watcher_start_time` are the only
/// proof, and its death changes no file. (A `sleep` stands in for the sidecar here.)
#[test]
fn lost_when_a_lockless_sidecar_dies() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let mut sidecar = spawn_sleep();
    let ms = now_ms();
    let start = |pid: i32| start_time(pid).unwrap();
    let r = Record {
        ts: ms / 1000,
        pid: target.pid(),
        status: Status::Alive,
        ts_ms: Some(ms),
        seq: Some(1),
        interval: Some(15.0),
        backend: Some("shell".into()),
        watcher_pid: Some(sidecar.pid()),
        start_time: Some(start(target.pid())),
        exit: None,
        died_ms: None,
        watcher_start_time: Some(start(sidecar.pid())),
        boot_id: None,
        boottime_ms: None,
        pidns: None,
        exit_unknown: None,
    };
    sb.plant("sh", &r);
    let ps_state = || sb.ps_json(&[])["sh"]["state"].clone();
    assert_eq!(ps_state(), "alive");
    let mut wait = Waiter::start(&sb, &["sh"]);
    let t0 = Instant::now();
    sidecar.kill();
    assert_eq!(wait.line(5 * SEC), "sh lost");
    let latency = t0.elapsed();
    eprintln!("wait saw the lockless sidecar's death after {latency:?}");
    assert!(latency < SEC, "{latency:?}");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
    assert_eq!(ps_state(), "lost");
}

/// `unwatched`: nobody will record the death, so `wait` watches the target itself.
#[test]
fn an_unwatched_agent_ends_as_lost_when_its_target_dies() {
    let sb = Sandbox::new();
    let mut target = spawn_sleep();
    let mut w = sb.watch_alive(target.pid(), "free", &[]);
    send_signal(w.pid(), Signal::TERM);
    assert!(w.wait_timeout(5 * SEC).is_some());
    sb.wait_status("free", "unwatched", SEC);
    let mut wait = Waiter::start(&sb, &["free"]);
    target.kill();
    assert_eq!(wait.line(5 * SEC), "free lost");
    assert_eq!(wait.finish(5 * SEC).0, Some(0));
}

#[test]
fn any_and_count_return_early() {
    let sb = Sandbox::new();
    let mut targets: Vec<Guard> = (0..3).map(|_| spawn_sleep()).collect();
    let _ws: Vec<Guard> = ["a", "b", "c"]
        .iter()
        .zip(&targets)
        .map(|(a, t)| sb.watch_alive(t.pid(), a, &[]))
        .collect();
    let mut any = Waiter::start(&sb, &["--any", "a", "b", "c"]);
    let mut two = Waiter::start(&sb, &["--count", "2", "a", "b", "c"]);
    targets[1].kill();
    assert_eq!(any.line(5 * SEC), "b dead signal 9");
    assert_eq!(any.finish(5 * SEC), (Some(0), vec![], String::new()));
    assert_eq!(two.line(5 * SEC), "b dead signal 9");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        two.guard.child().try_wait().unwrap().is_none(),
        "--count 2 returned after one"
    );
    targets[2].kill();
    assert_eq!(two.line(5 * SEC), "c dead signal 9");
    assert_eq!(two.finish(5 * SEC).0, Some(0));

    let o = wait_cmd(&sb, &["--count", "4", "a", "b", "c"]).finish();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr.contains("--count"));
    let o = wait_cmd(&sb, &["--any", "--count", "2", "a", "b"]).finish();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn until_alive_waits_for_the_agent_to_come_up() {
    let sb = Sandbox::new();
    // A dead record from an earlier run is not "up".
    let mut old = spawn_sleep();
    let mut w = sb.watch_alive(old.pid(), "svc", &[]);
    old.kill();
    sb.wait_status("svc", "dead", 5 * SEC);
    assert!(w.wait_timeout(5 * SEC).is_some());
    let mut up = Waiter::start(&sb, &["--until", "alive", "svc", "fresh"]);
    let t1 = spawn_sleep();
    let _w1 = sb.watch_alive(t1.pid(), "svc", &[]);
    assert_eq!(up.line(5 * SEC), "svc alive");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        up.guard.child().try_wait().unwrap().is_none(),
        "fresh is not up yet"
    );
    let t2 = spawn_sleep();
    let _w2 = sb.watch_alive(t2.pid(), "fresh", &[]);
    assert_eq!(up.line(5 * SEC), "fresh alive");
    assert_eq!(up.finish(5 * SEC).0, Some(0));
    // Already alive: at once.
    let o = wait_cmd(&sb, &["--until", "alive", "-t", "5", "svc"]).finish();
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), "svc alive\n")
    );
}

#[test]
fn unknown_agents_are_named_or_refused() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "real", &[]);
    // --exists: refused at once with 4, naming each unknown agent.
    let o = wait_cmd(&sb, &["--exists", "real", "typo"]).finish();
    let err = &o.stderr;
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("typo: no record") && !err.contains("real"),
        "{err}"
    );
    // Without it, a note after a few seconds, once, and the wait goes on.
    let t0 = Instant::now();
    let o = wait_cmd(&sb, &["-t", "4.5", "typo"]).finish();
    let err = &o.stderr;
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(4500));
    assert_eq!(err.matches("typo: still no record").count(), 1, "{err}");
    assert!(err.contains(&sb.run_dir().display().to_string()), "{err}");
}
