//! Naming an OOM kill: the kernel counts the kills of its OOM killer per memory cgroup
//! (cgroup v2 `memory.events.local`, or `memory.events` before 5.7; cgroup v1
//! `memory.oom_control`; all as `oom_kill N`). A target killed by SIGKILL while the counter
//! of its own cgroup rose was killed by the OOM killer.
//!
//! The counter is the target's own cgroup's, found from `/proc/PID/cgroup` and this mount
//! namespace's cgroup mounts, never the cgroup pidbeat is in: a watcher usually runs
//! elsewhere, and where they share one (`run` in a container) it is still the target's. A
//! cgroup that is not visible here (outside this namespace's mount of the hierarchy) names
//! nothing, and nothing is claimed.
//!
//! Another process of the same cgroup may be the one killed; so the counter must have risen
//! within the last one or two beats before the death (the kill and the victim's exit take
//! milliseconds), not merely since the watcher started: one read per beat on a kept fd.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

pub struct OomCounter {
    fd: OwnedFd,
    /// The count at the beat before last, and at the last beat.
    before: u64,
    last: u64,
}

impl OomCounter {
    /// The counter of `pid`'s memory cgroup, if this kernel keeps one we can read.
    pub fn of(pid: i32) -> Option<OomCounter> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let file = counter_file(&cgroups, &mounts)?;
        let fd = rustix::fs::open(&file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let n = read_count(&fd)?;
        Some(OomCounter {
            fd,
            before: n,
            last: n,
        })
    }

    /// At a beat: the window moves on.
    pub fn beat(&mut self) {
        if let Some(n) = read_count(&self.fd) {
            (self.before, self.last) = (self.last, n);
        }
    }

    /// At the death: has an OOM kill been counted within the window?
    pub fn rose(&self) -> bool {
        read_count(&self.fd).is_some_and(|n| n > self.before)
    }
}

fn read_count(fd: &OwnedFd) -> Option<u64> {
    let mut buf = [0u8; 512];
    let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// The counter file for the cgroups in `cgroups` (`/proc/PID/cgroup`), as mounted per
/// `mounts` (`/proc/self/mountinfo`). A v1 memory controller, where mounted, is the one that
/// accounts memory; otherwise the v2 hierarchy's.
fn counter_file(cgroups: &str, mounts: &str) -> Option<PathBuf> {
    let entry = |pred: &dyn Fn(&str) -> bool| {
        cgroups.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            pred(ctrl).then_some(path)
        })
    };
    if let Some(path) = entry(&|c| c.split(',').any(|c| c == "memory")) {
        let dir = mounted(mounts, path, |fs, opts| {
            fs == "cgroup" && opts.split(',').any(|o| o == "memory")
        })?;
        return Some(dir.join("memory.oom_control"));
    }
    let path = entry(&|c| c.is_empty())?;
    let dir = mounted(mounts, path, |fs, _| fs == "cgroup2")?;
    ["memory.events.local", "memory.events"]
        .iter()
        .map(|f| dir.join(f))
        .find(|f| f.exists())
}

/// Where cgroup `path` is in this mount namespace: under a mount of the hierarchy whose root
/// contains it.
fn mounted(mounts: &str, path: &str, is: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (root, point) = (*f.get(3)?, *f.get(4)?);
        if !is(r.first()?, r.get(2)?) {
            return None;
        }
        let rel = if root == "/" {
            path.strip_prefix('/')?
        } else {
            let rest = path.strip_prefix(root)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest.trim_start_matches('/')
        };
        let dir = Path::new(point).join(rel);
        dir.is_dir().then_some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_cgroup_under_a_container_mount() {
        // A container's view on a v1 host: its cgroup is the mount's root.
        let mounts =
            "30 25 0:27 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n";
        let cg = "12:memory:/docker/abc\n0::/docker/abc\n";
        let t = tempfile::tempdir().unwrap();
        let m = mounts.replace("/sys/fs/cgroup/memory", t.path().to_str().unwrap());
        assert_eq!(
            counter_file(cg, &m),
            Some(t.path().join("memory.oom_control"))
        );
        // A cgroup outside the mount's root is not visible: nothing is claimed.
        assert_eq!(counter_file("12:memory:/other\n", &m), None);
        assert_eq!(counter_file("12:memory:/docker/abcd\n", &m), None);
    }

    #[test]
    fn reads_this_machines_own_cgroup() {
        // Whatever this machine runs (v1, v2 or both), a counter found must parse.
        if let Some(c) = OomCounter::of(std::process::id() as i32) {
            assert!(!c.rose());
        }
    }
}
