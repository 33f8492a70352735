//! Sampling the evidence of progress each beat (the record's `progress`, `record/progress.rs`):
//! the target's CPU counters by one pread of its `/proc/PID/stat` on a kept fd, its terminal's
//! times by one fstat of a kept `O_PATH` fd to the pty that `tty_nr` names, and, when those
//! go quiet (or every [`WALK_EVERY`]th beat; at most once per [`WALK_GAP`]), a walk of the
//! tree's `task/*/children` for the CPU of live descendants, where tool calls do their work.
//! Never a scan of all of /proc.
//! Nothing here is on the death path.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::record::Progress;

/// The tree walk runs at least this often (in beats), whatever the cheap signals say.
pub const WALK_EVERY: u64 = 4;
/// And at most this often: at a short interval a walk per beat would cost more than the beat
/// (a walk is tens of µs; the evidence is judged in tens of seconds).
pub const WALK_GAP: Duration = Duration::from_secs(1);
/// A walk stops after this many processes: a fork bomb must not make a beat expensive.
const WALK_MAX: usize = 256;

pub struct Sampler {
    stat: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    ticks_ms: u64,
    /// The target's own four counters at the last sample.
    own: Option<[u64; 4]>,
    /// The live descendants at the last walk: their summed CPU ticks, and a digest of each
    /// one's (pid, ticks), which moves when any one counter moves even if the sum drops.
    tree_ticks: u64,
    tree_digest: u64,
    /// The last beat saw CPU progress.
    moving: bool,
    /// When the tree was last walked, and the beats since.
    walked: Option<Instant>,
    beats_since_walk: u64,
}

/// The fields of `/proc/PID/stat` the sampler reads.
struct Cpu {
    tty_nr: u64,
    ticks: [u64; 4],
}

impl Sampler {
    pub fn new(pid: i32) -> Sampler {
        let path = format!("/proc/{pid}/stat");
        let stat = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok();
        let hz = rustix::param::clock_ticks_per_second().max(1);
        let mut s = Sampler {
            stat,
            pty: None,
            ticks_ms: 1000 / hz,
            own: None,
            tree_ticks: 0,
            tree_digest: 0,
            moving: false,
            walked: None,
            beats_since_walk: 0,
        };
        if let Some(cpu) = s.read_own() {
            s.pty = open_pty(cpu.tty_nr);
        }
        s
    }

    /// The target's effective uid: the owner of its /proc entry.
    pub fn uid(&self) -> Option<u32> {
        Some(rustix::fs::fstat(self.stat.as_ref()?).ok()?.st_uid)
    }

    fn read_own(&self) -> Option<Cpu> {
        let fd = self.stat.as_ref()?;
        let mut buf = [0u8; 1024];
        let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
        parse_cpu(&buf[..n])
    }

    /// Updates `p` with this beat's sample, `now_ms` being the beat's wall-clock time, for the
    /// target `pid`.
    pub fn sample(&mut self, pid: i32, p: &mut Progress, now_ms: u64) {
        let mut moved = false;
        if let Some(cpu) = self.read_own() {
            moved = self.own.is_some_and(|o| o != cpu.ticks);
            self.own = Some(cpu.ticks);
        }
        self.beats_since_walk += 1;
        let gap_over = self.walked.is_none_or(|t| t.elapsed() >= WALK_GAP);
        if gap_over && (!moved || self.beats_since_walk >= WALK_EVERY) {
            let (ticks, digest) = walk(pid);
            moved |= self.walked.is_some() && digest != self.tree_digest;
            self.tree_ticks = ticks;
            self.tree_digest = digest;
            self.walked = Some(Instant::now());
            self.beats_since_walk = 0;
        }
        if let Some(own) = self.own {
            let total = own.iter().sum::<u64>() + self.tree_ticks;
            p.cpu_ms = Some(total * self.ticks_ms);
            // The first sample is the baseline: progress is counted from the watch's start.
            if moved || p.cpu_at_ms.is_none() {
                if !self.moving {
                    p.cpu_since_ms = Some(now_ms);
                }
                p.cpu_at_ms = Some(now_ms);
            }
            self.moving = moved;
        }
        if let Some(st) = self.pty.as_ref().and_then(|fd| rustix::fs::fstat(fd).ok()) {
            let ms = |s: i64, ns: i64| (s.max(0) as u64) * 1000 + (ns.max(0) as u64) / 1_000_000;
            p.output_ms = Some(ms(st.st_mtime, st.st_mtime_nsec as i64));
            p.input_ms = Some(ms(st.st_atime, st.st_atime_nsec as i64));
        }
    }
}

/// utime, stime, cutime, cstime (fields 14–17) and tty_nr (7), counted after the last `)`.
fn parse_cpu(line: &[u8]) -> Option<Cpu> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut f = line[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|s| !s.is_empty());
    let num = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<i64>().ok();
    // Field 3 is the first after `)`.
    let tty_nr = num(f.nth(4)?)? as u64;
    let mut ticks = [0u64; 4];
    let mut f = f.skip(6);
    for t in &mut ticks {
        *t = num(f.next()?)?.max(0) as u64;
    }
    Some(Cpu { tty_nr, ticks })
}

/// The pty `tty_nr` names (Unix98 ptys: majors 136–143), checked to be that device.
fn open_pty(tty_nr: u64) -> Option<OwnedFd> {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    if !(136..=143).contains(&major) {
        return None;
    }
    let n = (major - 136) * 256 + minor;
    let fd = rustix::fs::open(
        format!("/dev/pts/{n}"),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let dev = st.st_rdev as u64;
    let same = rustix::fs::major(dev) as u64 == major && rustix::fs::minor(dev) as u64 == minor;
    same.then_some(fd)
}

/// Sums the CPU ticks of `pid`'s live descendants, following `task/*/children` of every
/// thread (children are listed per thread), up to [`WALK_MAX`] processes.
fn walk(pid: i32) -> (u64, u64) {
    let mut stack = Vec::with_capacity(16);
    children_of(pid, &mut stack);
    let (mut ticks, mut digest, mut seen) = (0u64, 0u64, 0usize);
    while let Some(child) = stack.pop() {
        seen += 1;
        if seen > WALK_MAX {
            break;
        }
        let Ok(line) = std::fs::read(format!("/proc/{child}/stat")) else {
            continue;
        };
        if let Some(cpu) = parse_cpu(&line) {
            let t: u64 = cpu.ticks.iter().sum();
            ticks += t;
            let mut h = (child as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t;
            h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            digest = digest.wrapping_add(h ^ (h >> 31));
        }
        children_of(child, &mut stack);
    }
    (ticks, digest)
}

fn children_of(pid: i32, out: &mut Vec<i32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let mut path = t.path();
        path.push("children");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_fields_after_the_last_paren() {
        let line = b"42 (a) b) S 1 42 42 34817 42 4194560 100 0 0 0 7 3 11 13 20 0 1 0 99 0\n";
        let cpu = parse_cpu(line).unwrap();
        assert_eq!(cpu.tty_nr, 34817);
        assert_eq!(cpu.ticks, [7, 3, 11, 13]);
        assert!(parse_cpu(b"42 (a) S 1").is_none());
    }

    #[test]
    fn a_child_burning_cpu_is_progress_and_a_sleeper_is_not() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "yes >/dev/null & wait"])
            .spawn()
            .unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (mut a, mut b) = (
            Sampler::new(busy.id() as i32),
            Sampler::new(sleeper.id() as i32),
        );
        let (mut pa, mut pb) = (Progress::default(), Progress::default());
        for beat in 1..=3u64 {
            // Past WALK_GAP, so that each beat walks the tree.
            std::thread::sleep(WALK_GAP + std::time::Duration::from_millis(50));
            a.sample(busy.id() as i32, &mut pa, beat);
            b.sample(sleeper.id() as i32, &mut pb, beat);
        }
        let mut yes = Vec::new();
        children_of(busy.id() as i32, &mut yes);
        for pid in yes {
            let pid = rustix::process::Pid::from_raw(pid).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = busy.kill();
        let _ = sleeper.kill();
        let _ = (busy.wait(), sleeper.wait());
        assert_eq!(pa.cpu_at_ms, Some(3), "{pa:?}");
        assert!(pa.cpu_ms.unwrap() > 0, "{pa:?}");
        assert_eq!(pb.cpu_at_ms, Some(1), "the baseline only: {pb:?}");
        assert_eq!(pb.cpu_ms, Some(0), "{pb:?}");
    }
}
