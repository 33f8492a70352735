//! One writer per agent even when the lock file at the path stops being the
//! one the watcher holds (deleted alone, run dir deleted and recreated, run dir renamed away).
//!
//! Which watcher writes is proven from the names: a watcher renames only its own temp name
//! `.<agent>.hb.<watcher-pid>.tmp` over the record, so an inotify `IN_MOVED_FROM` on the run
//! dir names the writer of every record that lands, not just of the ones a poll happens to see.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

use super::*;
use crate::common::*;

/// Collects the PIDs in the temp names renamed out of the watched run dirs.
struct Writers {
    fd: OwnedFd,
    agent: String,
    seen: BTreeSet<i32>,
}

impl Writers {
    fn new(agent: &str) -> Self {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        Writers {
            fd,
            agent: agent.to_owned(),
            seen: BTreeSet::new(),
        }
    }

    /// Watches `dir` (a run dir just created at the path).
    fn watch(&self, dir: &Path) {
        inotify::add_watch(&self.fd, dir, WatchFlags::MOVED_FROM).unwrap();
    }

    fn drain(&mut self) {
        let mut buf = [MaybeUninit::uninit(); 8192];
        let mut r = inotify::Reader::new(self.fd.as_fd(), &mut buf);
        let prefix = format!(".{}.hb.", self.agent);
        while let Ok(ev) = r.next() {
            let Some(name) = ev.file_name().and_then(|n| n.to_str().ok()) else {
                continue;
            };
            if let Some(pid) = name
                .strip_prefix(&prefix)
                .and_then(|n| n.strip_suffix(".tmp"))
            {
                self.seen
                    .insert(pid.parse().expect("temp name carries a PID"));
            }
        }
    }
}

fn lock_owner(dir: &Path, agent: &str) -> Option<i32> {
    let s = std::fs::read_to_string(dir.join(format!(".{agent}.lock"))).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A target and the first watcher of `agent` on it (stderr logged), once its record is there.
fn first_watcher(sb: &Sandbox, agent: &str, iv: &str) -> (Guard, Watch, PathBuf) {
    let t = spawn_sleep();
    let w = watch_in(sb, None, &sb.run_dir(), t.pid(), agent, "pidfd", iv);
    let path = sb.record_path(agent);
    wait_record(&path, 3 * SEC, |v| v["watcher_pid"] == w.pid());
    (t, w, path)
}

/// Kills the target: the watcher `w` that goes on records the death and exits 0; then
/// nothing of the test's may be left running.
fn end(sb: &Sandbox, mut t: Guard, mut w: Watch, path: &Path, others: &[i32]) {
    let pids: Vec<i32> = [t.pid(), w.pid()]
        .into_iter()
        .chain(others.iter().copied())
        .collect();
    t.kill();
    wait_record(path, 3 * SEC, |v| status_is(v, "dead"));
    assert!(w.exits(3 * SEC).success(), "{}", w.stderr());
    sb.assert_clean(&pids);
}

/// A second `watch` for `agent`, run to its end: the refusal.
fn second_watcher(sb: &Sandbox, pid: i32, agent: &str, iv: &str) -> Out {
    let mut c = sb.watch_cmd(pid, agent);
    c.args(["--interval", iv]);
    run_with_deadline(c, 5 * SEC)
}

/// The test: 200 deletions and recreations of the run dir under a 10 ms watcher, then
/// a second watcher for the agent. It is refused, the first one writes every record, and the
/// churn costs the first watcher no descriptor.
#[test]
fn run_dir_recreated_200_times_keeps_one_writer() {
    let sb = Sandbox::new();
    let (t, w1, path) = first_watcher(&sb, "one", "0.01");
    let (pid, w1pid, dir) = (t.pid(), w1.pid(), sb.run_dir());
    let fds_before = steady_fd_count(w1pid);

    let mut writers = Writers::new("one");
    writers.watch(&dir);
    for i in 0..200 {
        // The watcher may put a temp file in between the emptying and the rmdir: retry.
        wait_until(SEC, "the run dir is deleted", || {
            std::fs::remove_dir_all(&dir).is_ok()
        });
        std::fs::create_dir(&dir).unwrap();
        writers.watch(&dir);
        writers.drain();
        // Now and then let a beat land, so the watcher re-takes the lock mid-churn too.
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    // The first watcher takes the lock in the last dir at its next beat.
    wait_until(3 * SEC, "the watcher re-takes the lock", || {
        lock_owner(&dir, "one") == Some(w1pid)
    });
    wait_record(&path, 3 * SEC, |v| v["watcher_pid"] == w1pid);

    let o = second_watcher(&sb, pid, "one", "0.01");
    assert_eq!(o.status.code(), Some(1), "second watcher: {}", o.stderr);
    assert!(o.stderr.contains(&w1pid.to_string()), "{}", o.stderr);
    // The first goes on beating, alone.
    let s0 = seq(&read_record(&path).unwrap());
    wait_record(&path, 3 * SEC, |v| {
        assert_eq!(v["watcher_pid"], w1pid, "{v}");
        seq(v) >= s0 + 5
    });
    writers.drain();
    assert_eq!(
        writers.seen,
        BTreeSet::from([w1pid]),
        "records renamed in by other processes (or none seen at all)"
    );
    assert!(
        w1.count("took the lock again") >= 1,
        "the watcher never noticed: {}",
        w1.stderr()
    );
    assert_fds_back_to(w1pid, fds_before, "200 run-dir recreations");

    end(&sb, t, w1, &path, &[]);
}

/// The lock file deleted on its own: a newcomer is refused, because the record names a live
/// watcher, and the watcher takes a lock at the path again at its next beat.
#[test]
fn lock_file_deleted_alone() {
    let sb = Sandbox::new();
    let (t, w1, path) = first_watcher(&sb, "del", "0.3");
    let (pid, w1pid, dir) = (t.pid(), w1.pid(), sb.run_dir());
    let mut writers = Writers::new("del");
    writers.watch(&dir);

    std::fs::remove_file(dir.join(".del.lock")).unwrap();
    let o = second_watcher(&sb, pid, "del", IV);
    assert_eq!(o.status.code(), Some(1), "second watcher: {}", o.stderr);
    assert!(
        o.stderr.contains(&format!("pid {w1pid}")) && o.stderr.contains("record"),
        "{}",
        o.stderr
    );
    wait_until(3 * SEC, "the watcher re-takes the lock", || {
        lock_owner(&dir, "del") == Some(w1pid)
    });
    // Now the lock itself refuses.
    let o = second_watcher(&sb, pid, "del", IV);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("(lock "), "{}", o.stderr);
    let s0 = seq(&read_record(&path).unwrap());
    wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 2);
    writers.drain();
    assert_eq!(writers.seen, BTreeSet::from([w1pid]));

    end(&sb, t, w1, &path, &[]);
}

/// The run dir renamed away, and a newcomer starts before the watcher's next beat: the
/// newcomer finds no record and no lock, so it goes on; the first watcher finds the lock at
/// the path held, says so, and stops with exit 1 without writing there. Its last record
/// stays in the renamed dir.
#[test]
fn run_dir_renamed_away_newcomer_first() {
    let sb = Sandbox::new();
    let (t, mut w1, path) = first_watcher(&sb, "mv", "1");
    let (pid, w1pid, dir) = (t.pid(), w1.pid(), sb.run_dir());

    let away = sb.path("away");
    std::fs::rename(&dir, &away).unwrap();
    let w2 = watch_in(&sb, None, &dir, pid, "mv", "pidfd", IV);
    let w2pid = w2.pid();
    wait_record(&path, 3 * SEC, |v| v["watcher_pid"] == w2pid);
    let mut writers = Writers::new("mv");
    writers.watch(&dir);

    let st = w1.exits(3 * SEC);
    assert_eq!(st.code(), Some(1), "{}", w1.stderr());
    assert!(
        w1.stderr().contains(&format!("pid {w2pid} now holds it")),
        "{}",
        w1.stderr()
    );
    let s0 = seq(&read_record(&path).unwrap());
    wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 3);
    writers.drain();
    assert_eq!(writers.seen, BTreeSet::from([w2pid]));
    assert_eq!(
        read_record(&away.join("mv.hb")).unwrap()["watcher_pid"],
        w1pid
    );

    end(&sb, t, w2, &path, &[w1pid]);
}

/// The run dir renamed away under a fast watcher, which recreates nothing: once the path is
/// back (empty), it takes the lock there first, and a newcomer is refused by that lock.
#[test]
fn run_dir_renamed_away_watcher_first() {
    let sb = Sandbox::new();
    let (t, w1, path) = first_watcher(&sb, "mv2", "0.01");
    let (pid, w1pid, dir) = (t.pid(), w1.pid(), sb.run_dir());

    std::fs::rename(&dir, sb.path("away")).unwrap();
    std::fs::create_dir(&dir).unwrap();
    wait_until(3 * SEC, "the watcher re-takes the lock", || {
        lock_owner(&dir, "mv2") == Some(w1pid)
    });
    let o = second_watcher(&sb, pid, "mv2", IV);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr);
    wait_record(&path, 3 * SEC, |v| v["watcher_pid"] == w1pid);

    end(&sb, t, w1, &path, &[]);
}
