//! One look at a run dir: judging many agents cheaply, and confirming the verdicts that must
//! not rest on a cheap read. A large fleet is split over the CPUs, a [`Look`] each: the work
//! is mostly the kernel opening and reading small files, which runs in parallel.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::file::{Unread, read_record_at};
use super::verdict::{self, AgentVerdict, ProcStats};
use crate::procfs::{self, Stat};
use crate::record::MAX_RECORD_BYTES;
use crate::rundir;

/// The verdicts on `agents` now, in their order (`None`: no record).
pub fn judge_all(dir: &Path, agents: &[String]) -> Vec<Option<AgentVerdict>> {
    /// Below this many agents per thread, a thread costs more than it saves.
    const PER_THREAD: usize = 1000;
    let threads = match agents.len() / PER_THREAD {
        0 | 1 => 1,
        most => std::thread::available_parallelism().map_or(1, |n| n.get().min(most)),
    };
    let judge_part = |part: &[String]| {
        let mut look = Look::new(dir);
        part.iter().map(|a| look.judge(a)).collect::<Vec<_>>()
    };
    if threads == 1 {
        return judge_part(agents);
    }
    let mut parts = agents.chunks(agents.len().div_ceil(threads));
    // This thread takes the first part while the others run.
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|s| {
        let others: Vec<_> = parts
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || judge_part(part))
                    .map_err(|_| part)
            })
            .collect();
        let mut all = judge_part(first);
        for other in others {
            all.extend(match other {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread to be had (a process limit): do that part here.
                Err(part) => judge_part(part),
            });
        }
        all
    })
}

/// Judges agents one after another, sharing what they have in common. The dir is opened once
/// (records are opened relative to it), the record buffer is reused, and each PID's
/// `/proc/PID/stat` is read once per look (a fleet's watchers and targets often recur). A
/// cached line is only trusted to keep an agent alive: every verdict that would make it `lost`
/// or dying is confirmed with fresh reads (see [`Look::judge`]). Make a new one for each look.
pub struct Look<'a> {
    dir: &'a Path,
    dirfd: Option<OwnedFd>,
    buf: Vec<u8>,
    stats: HashMap<i32, Option<Stat>>,
}

/// Which `/proc/PID/stat` lines a judgement may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// This look's, read at most once per PID.
    Cached,
    /// Read now (to confirm a verdict); they replace the cached ones.
    Fresh,
}

/// A look's `/proc` lines as one judgement sees them.
struct ProcView<'s> {
    stats: &'s mut HashMap<i32, Option<Stat>>,
    lines: Lines,
    /// Whether the judgement rested on a line read before it began.
    used_cache: bool,
}

impl ProcStats for ProcView<'_> {
    fn stat(&mut self, pid: i32) -> Option<Stat> {
        if self.lines == Lines::Cached {
            if let Some(&st) = self.stats.get(&pid) {
                self.used_cache = true;
                return st;
            }
        }
        let st = procfs::read_stat(pid).ok();
        self.stats.insert(pid, st);
        st
    }
}

impl<'a> Look<'a> {
    pub fn new(dir: &'a Path) -> Look<'a> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Look {
            dir,
            // Without it (a missing dir, say), records are opened by path, and fail there.
            dirfd: rfs::open(dir, flags, Mode::empty()).ok(),
            buf: vec![0; MAX_RECORD_BYTES + 1],
            stats: HashMap::new(),
        }
    }

    /// The verdict on one agent now, or `None` if it has no record. A verdict that would end
    /// the agent without the record saying so (`lost`) or that the next moments may overturn
    /// (dying, a pending exit) is confirmed: the record is read again and, if the watcher
    /// wrote in between (say, its final `dead` just before exiting and freeing its lock),
    /// judged again on the newer record, so a clean death is never mistaken for `lost`. A
    /// verdict that rests on a cached `/proc` line is judged again from fresh reads. Alive,
    /// stale, dead, unwatched and corrupt records are read once: they were true when judged.
    pub fn judge(&mut self, agent: &str) -> Option<AgentVerdict> {
        // Out of `self` while in use, so that judging (which takes `&mut self`) can borrow it.
        let mut buf = std::mem::take(&mut self.buf);
        let verdict = self.judge_into(agent, &mut buf);
        self.buf = buf;
        verdict
    }

    fn judge_into(&mut self, agent: &str, buf: &mut [u8]) -> Option<AgentVerdict> {
        let name = rundir::record_name(agent);
        let n = match self.read(&name, buf) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(e) => return Some(unread(agent, e)),
        };
        let (mut verdict, mut used_cache) = self.judge_bytes(agent, &buf[..n], Lines::Cached);
        if !verdict.needs_confirming() {
            return Some(verdict);
        }
        let mut bytes = buf[..n].to_vec();
        // Bounded: a watcher beating every millisecond must not keep us here.
        for _ in 0..3 {
            let again = match self.read(&name, buf) {
                Ok(Some(m)) => &buf[..m],
                Ok(None) => return None,
                Err(e) => return Some(unread(agent, e)),
            };
            if again == bytes && !used_cache {
                break;
            }
            bytes = again.to_vec();
            (verdict, used_cache) = self.judge_bytes(agent, &bytes, Lines::Fresh);
            if !verdict.needs_confirming() {
                break;
            }
        }
        Some(verdict)
    }

    /// The verdict, and whether it rests on a cached `/proc` line.
    fn judge_bytes(&mut self, agent: &str, bytes: &[u8], lines: Lines) -> (AgentVerdict, bool) {
        let mut procs = ProcView {
            stats: &mut self.stats,
            lines,
            used_cache: false,
        };
        let verdict = verdict::judge(self.dir, agent, bytes, &mut procs);
        (verdict, procs.used_cache)
    }

    fn read(&self, name: &str, buf: &mut [u8]) -> Result<Option<usize>, Unread> {
        match &self.dirfd {
            Some(d) => read_record_at(Some(d), Path::new(name), buf),
            None => read_record_at(None, &self.dir.join(name), buf),
        }
    }
}

fn unread(agent: &str, e: Unread) -> AgentVerdict {
    match e {
        Unread::Refused(e) => AgentVerdict::corrupt(agent, e),
        Unread::Failed(e) => AgentVerdict::unreadable(agent, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::verdict::State;
    use crate::record::now_ms;

    #[test]
    fn a_cached_proc_line_never_makes_an_agent_lost() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let start = procfs::read_stat(me).unwrap().start_time;
        let line = format!(
            r#"{{"ts":{},"pid":{me},"status":"alive","ts_ms":{},"interval":15.0,"watcher_pid":{me},"start_time":{start},"watcher_start_time":{start}}}"#,
            now_ms() / 1000,
            now_ms()
        );
        std::fs::write(t.path().join("a.hb"), line).unwrap();
        let mut look = Look::new(t.path());
        // As if this PID had been seen gone earlier in the same look.
        look.stats.insert(me, None);
        let v = look.judge("a").unwrap();
        assert_eq!((v.state, v.unsettled), (State::Alive, None));
        // The fresh line replaced the stale one.
        assert!(look.stats[&me].is_some());
        assert_eq!(look.judge("b").map(|v| v.state), None);
    }
}
