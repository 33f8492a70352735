//! `cargo bench`: pidbeat against its baselines, every contender on the same work, in one run.
//!
//! Contenders: `pidbeat watch --backend pidfd`, `pidbeat watch --backend poll`, the bash
//! sidecar `scripts/hb-sidecar.sh` at 1 s and 15 s, and the *floor* (`benches/floor.rs`: the
//! least code that can do the job: pidfd_open + epoll_wait + one write and rename).
//!
//! Sections (each can be chosen with `PIDBEAT_BENCH_ONLY=latency,cost,scale,ps`):
//! - **latency**: death → `dead` as a reader sees it. The bench starts a `sleep` target and the
//!   watcher as two children (the target is not the watcher's child), waits for `alive`, waits a
//!   random delay, then takes a timestamp, SIGKILLs and reaps the target and blocks on inotify
//!   (IN_MOVED_TO on the run dir) until the record it reads says `dead`. pidfd, floor and poll
//!   rounds are interleaved so that background load hits them alike.
//! - **cost**: CPU and forks per beat at a 10 ms interval, peak RSS, binary sizes.
//! - **scale**: 1, 100 and 1,000 concurrent pidfd watchers in one run dir: death latency of a
//!   random target, total RSS/PSS, CPU per second while idle at the default interval.
//! - **ps**: `pidbeat ps --json` over 10,000 generated records.
//!
//! Output: markdown tables on stdout (progress on stderr) and `target/bench/results.json`.
//!
//! Environment:
//! - `PIDBEAT_BENCH_QUICK=1`: CI smoke run (≲ 60 s): few rounds, no 15 s shell, no 1,000.
//! - `PIDBEAT_BENCH_ROUNDS=N`: latency rounds for pidfd, floor and poll.
//! - `PIDBEAT_BENCH_SHELL_ROUNDS=A,B`: rounds for the 1 s and the 15 s shell (0 skips).
//! - `PIDBEAT_BENCH_ONLY=…`: comma-separated sections to run.
//! - `PIDBEAT_BENCH_TMPDIR=DIR`: where the temp run dirs go (default: the system temp dir;
//!   e.g. /dev/shm to take the disk out of the numbers).
//! - `PIDBEAT_BENCH_STRICT=1`: exit 1 when a goal is missed (otherwise only breakage fails).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

const PIDBEAT: &str = env!("CARGO_BIN_EXE_pidbeat");
/// pidbeat's default interval plus a margin: one beat of every watcher falls in it.
const IDLE_WINDOW: Duration = Duration::from_millis(15_500);
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------
// Configuration

struct Config {
    quick: bool,
    /// Latency rounds for pidfd, floor and poll (interleaved).
    rounds: usize,
    shell1_rounds: usize,
    shell15_rounds: usize,
    /// Beats measured at a 10 ms interval (pidbeat backends; the shell gets fewer).
    cost_beats: u64,
    shell_cost_beats: u64,
    /// (watchers, latency rounds, measure idle CPU over one default interval)
    scale: Vec<(usize, usize, bool)>,
    ps_records: usize,
    ps_runs: usize,
    only: Option<HashSet<String>>,
    tmp_base: PathBuf,
    strict: bool,
}

fn env_flag(k: &str) -> bool {
    std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn env_usize(k: &str) -> Option<usize> {
    let v = std::env::var(k).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("bench: ignoring {k}={v:?}: not a count");
            None
        }
    }
}

impl Config {
    fn from_env() -> Config {
        let quick = env_flag("PIDBEAT_BENCH_QUICK");
        let mut c = if quick {
            Config {
                quick,
                rounds: 20,
                shell1_rounds: 3,
                shell15_rounds: 0,
                cost_beats: 100,
                shell_cost_beats: 30,
                scale: vec![(1, 5, false), (100, 5, true)],
                ps_records: 10_000,
                ps_runs: 3,
                only: None,
                tmp_base: std::env::temp_dir(),
                strict: false,
            }
        } else {
            Config {
                quick,
                rounds: 200,
                shell1_rounds: 20,
                shell15_rounds: 5,
                cost_beats: 1000,
                shell_cost_beats: 200,
                scale: vec![(1, 50, true), (100, 50, true), (1000, 20, true)],
                ps_records: 10_000,
                ps_runs: 10,
                only: None,
                tmp_base: std::env::temp_dir(),
                strict: false,
            }
        };
        if let Some(n) = env_usize("PIDBEAT_BENCH_ROUNDS") {
            c.rounds = n.max(1);
        }
        if let Ok(v) = std::env::var("PIDBEAT_BENCH_SHELL_ROUNDS") {
            let mut it = v.split(',').map(|s| s.trim().parse::<usize>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) => (c.shell1_rounds, c.shell15_rounds) = (a, b),
                (Some(Ok(a)), None) => c.shell1_rounds = a,
                _ => eprintln!("bench: ignoring PIDBEAT_BENCH_SHELL_ROUNDS={v:?}: want A,B"),
            }
        }
        if let Ok(v) = std::env::var("PIDBEAT_BENCH_ONLY") {
            let set: HashSet<String> = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if !set.is_empty() {
                c.only = Some(set);
            }
        }
        if let Some(d) = std::env::var_os("PIDBEAT_BENCH_TMPDIR").filter(|d| !d.is_empty()) {
            c.tmp_base = PathBuf::from(d);
        }
        c.strict = env_flag("PIDBEAT_BENCH_STRICT");
        c
    }

    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(section))
    }
}

// ---------------------------------------------------------------------------------------------
// Results

struct Entry {
    contender: String,
    metric: String,
    value: f64,
    unit: String,
}

#[derive(Default)]
struct Results {
    entries: Vec<Entry>,
    notes: Vec<String>,
    /// Breakage (not a missed goal): makes the bench exit 1.
    failures: Vec<String>,
}

impl Results {
    fn add(&mut self, contender: &str, metric: &str, value: f64, unit: &str) {
        self.entries.push(Entry {
            contender: contender.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
        });
    }

    fn get(&self, contender: &str, metric: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|e| e.contender == contender && e.metric == metric)
            .map(|e| e.value)
    }

    fn note(&mut self, s: String) {
        eprintln!("bench: note: {s}");
        self.notes.push(s);
    }

    fn fail(&mut self, s: String) {
        eprintln!("bench: FAILURE: {s}");
        self.failures.push(s);
    }
}

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Nearest-rank percentiles.
fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Stats {
        n: v.len(),
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    })
}

fn add_stats(r: &mut Results, contender: &str, prefix: &str, s: &Stats) {
    r.add(contender, &format!("{prefix}_p50"), s.p50, "ms");
    r.add(contender, &format!("{prefix}_p90"), s.p90, "ms");
    r.add(contender, &format!("{prefix}_p99"), s.p99, "ms");
    r.add(contender, &format!("{prefix}_max"), s.max, "ms");
    r.add(contender, &format!("{prefix}_mean"), s.mean, "ms");
    r.add(contender, &format!("{prefix}_rounds"), s.n as f64, "rounds");
}

/// xorshift64*: enough randomness for kill delays, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(if span == 0 { 0 } else { self.next() % span })
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: every child is killed and reaped when its guard drops, and dies with the bench
// (PR_SET_PDEATHSIG) even if the bench itself is killed.

struct Proc {
    child: Option<Child>,
    pid: i32,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &fs::File) -> io::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone()?)
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .env_remove("MOSAIC_HEARTBEAT_INTERVAL");
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe, and allocates
        // nothing.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Proc {
            pid: child.id() as i32,
            child: Some(child),
        })
    }

    fn target(log: &fs::File) -> io::Result<Proc> {
        Proc::spawn(Command::new("sleep").arg("100000"), log)
    }

    fn signal(&self, sig: Signal) {
        if self.child.is_some()
            && let Some(p) = Pid::from_raw(self.pid)
        {
            let _ = rustix::process::kill_process(p, sig);
        }
    }

    /// SIGKILL and reap.
    fn kill_reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; reaps it. `None` on timeout.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    self.child = None;
                    return Some(st);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => return None,
            }
        }
    }

    /// Polite stop (SIGTERM), then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        self.signal(Signal::TERM);
        if self.wait_exit(grace).is_none() {
            self.kill_reap();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_reap();
    }
}

/// Kills and reaps anything still below the bench (orphans adopted as subreaper included).
/// Returns how many there were.
fn sweep_children() -> usize {
    let mut left = 0;
    for _ in 0..50 {
        let kids = children_of(std::process::id() as i32);
        if kids.is_empty() {
            break;
        }
        for k in &kids {
            if let Some(p) = Pid::from_raw(*k) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        left += kids.len();
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
    }
    while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
    left
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// /proc readers

/// Fields of /proc/PID/stat after the command name: index 0 is field 3 (state).
fn stat_fields(pid: i32) -> Option<Vec<u64>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(
        rest.split_ascii_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    /// The process's own CPU time: schedstat (ns-exact) when the kernel keeps it, else ticks.
    self_ns: u64,
    /// utime + stime in ticks.
    self_ticks: u64,
    /// cutime + cstime in ticks: children it has reaped (the shell's date, mv, sleep).
    child_ticks: u64,
}

impl Cpu {
    fn read(pid: i32, tick_ns: u64) -> Option<Cpu> {
        let f = stat_fields(pid)?;
        // utime=14 stime=15 cutime=16 cstime=17 → indices 11..=14.
        let self_ticks = f.get(11)? + f.get(12)?;
        let child_ticks = f.get(13)? + f.get(14)?;
        let sched = fs::read_to_string(format!("/proc/{pid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .filter(|&ns| ns > 0);
        Some(Cpu {
            self_ns: sched.unwrap_or(self_ticks * tick_ns),
            self_ticks,
            child_ticks,
        })
    }

    fn total_ns(&self, tick_ns: u64) -> u64 {
        self.self_ns + self.child_ticks * tick_ns
    }

    fn ticks_ns(&self, tick_ns: u64) -> u64 {
        (self.self_ticks + self.child_ticks) * tick_ns
    }
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    status_kib_in(&format!("/proc/{pid}/status"), key)
}

fn status_kib_in(path: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pss_kib(pid: i32) -> Option<u64> {
    status_kib_in(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn system_forks() -> Option<u64> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("processes "))?
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Records and the inotify reader

fn has_status(rec: &str, status: &str) -> bool {
    rec.contains(&format!("\"status\":\"{status}\""))
}

fn seq_of(rec: &str) -> Option<u64> {
    let i = rec.find("\"seq\":")? + 6;
    let digits: String = rec[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn mkdir_private(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

/// A reader of one run dir: IN_MOVED_TO events, i.e. every record replaced by rename.
struct DirWatch {
    fd: OwnedFd,
    dir: PathBuf,
    buf: Vec<MaybeUninit<u8>>,
}

impl DirWatch {
    fn new(dir: &Path) -> io::Result<DirWatch> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, dir, inotify::WatchFlags::MOVED_TO)?;
        Ok(DirWatch {
            fd,
            dir: dir.to_path_buf(),
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Reads every queued event; true if one names `name` (or the queue overflowed).
    fn take_events(&mut self, name: &str) -> io::Result<bool> {
        let mut hit = false;
        let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut self.buf);
        loop {
            match reader.next() {
                Ok(ev) => {
                    if ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW)
                        || ev
                            .file_name()
                            .is_some_and(|n| n.to_bytes() == name.as_bytes())
                    {
                        hit = true;
                    }
                }
                Err(Errno::AGAIN) => return Ok(hit),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Forgets queued events (beats written before the measurement starts).
    fn drain(&mut self) -> io::Result<()> {
        self.take_events("").map(|_| ())
    }

    fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name)).ok()
    }

    /// Blocks until the record `name` is read with `"status":"<status>"`, and returns the
    /// instant it was read; `None` after `timeout`. With `look_first` the file is read once
    /// before waiting (for states that may already be on disk).
    fn wait_for(
        &mut self,
        name: &str,
        status: &str,
        timeout: Duration,
        look_first: bool,
    ) -> io::Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        if look_first && self.read(name).is_some_and(|r| has_status(&r, status)) {
            return Ok(Some(Instant::now()));
        }
        loop {
            if self.take_events(name)? && self.read(name).is_some_and(|r| has_status(&r, status)) {
                return Ok(Some(Instant::now()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fork counting: the kernel's process-events connector (exact: every fork whose parent is the
// watcher or one of its descendants), else the system-wide `processes` counter (an upper bound
// that includes whatever else runs on the machine).

const PROC_EVENT_FORK: u32 = 1;

#[derive(Default)]
struct ForkState {
    tracked: HashSet<u32>,
    count: u64,
    lost: bool,
}

enum ForkCounter {
    Connector(Arc<Mutex<ForkState>>),
    System,
}

struct ForkWindow {
    system_start: Option<u64>,
}

fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn connector_socket() -> io::Result<OwnedFd> {
    #[repr(C)]
    struct SockaddrNl {
        family: u16,
        pad: u16,
        pid: u32,
        groups: u32,
    }
    const NETLINK_CONNECTOR: i32 = 11;
    const CN_IDX_PROC: u32 = 1;
    const CN_VAL_PROC: u32 = 1;
    const SO_RCVBUFFORCE: i32 = 33;
    const NLMSG_DONE: u16 = 3;
    const PROC_CN_MCAST_LISTEN: u32 = 1;
    // SAFETY: plain socket calls on an fd we own; every pointer passed points at a live local
    // of the size passed with it.
    unsafe {
        let raw = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(raw);
        let size: libc::c_int = 16 << 20;
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = SockaddrNl {
            family: libc::AF_NETLINK as u16,
            pad: 0,
            pid: 0,
            groups: CN_IDX_PROC,
        };
        if libc::bind(
            raw,
            (&raw const addr).cast(),
            size_of::<SockaddrNl>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut msg = [0u8; 40];
        msg[0..4].copy_from_slice(&40u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
        msg[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[20..24].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg[32..34].copy_from_slice(&4u16.to_ne_bytes());
        msg[36..40].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        if libc::send(raw, msg.as_ptr().cast(), msg.len(), 0) != 40 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn connector_loop(fd: OwnedFd, state: Arc<Mutex<ForkState>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    state.lock().unwrap().lost = true;
                    continue;
                }
                _ => return,
            }
        }
        let n = n as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len = rd32(&buf, off) as usize;
            if len < 16 || off + len > n {
                break;
            }
            // nlmsghdr (16) + cn_msg (20) + proc_event {what, cpu, timestamp_ns, fork data}.
            if len >= 36 + 32 && rd32(&buf, off + 36) == PROC_EVENT_FORK {
                let parent_tgid = rd32(&buf, off + 56);
                let child_pid = rd32(&buf, off + 60);
                let child_tgid = rd32(&buf, off + 64);
                // Threads (child_pid != child_tgid) are not forks.
                if child_pid == child_tgid {
                    let mut st = state.lock().unwrap();
                    if st.tracked.contains(&parent_tgid) {
                        st.count += 1;
                        st.tracked.insert(child_tgid);
                    }
                }
            }
            off += (len + 3) & !3;
        }
    }
}

impl ForkCounter {
    fn new(log: &fs::File, results: &mut Results) -> ForkCounter {
        let fd = match connector_socket() {
            Ok(fd) => fd,
            Err(e) => {
                results.note(format!(
                    "forks: the proc connector is unavailable ({e}); counting system-wide forks \
                     instead (an upper bound: other work on the machine counts too)"
                ));
                return ForkCounter::System;
            }
        };
        let state = Arc::new(Mutex::new(ForkState::default()));
        let s2 = Arc::clone(&state);
        std::thread::spawn(move || connector_loop(fd, s2));
        // Self-test: our own spawn must be seen.
        let c = ForkCounter::Connector(state);
        let w = c.start(std::process::id());
        let ok = Proc::spawn(&mut Command::new("true"), log)
            .map(|mut p| p.wait_exit(Duration::from_secs(5)))
            .is_ok();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = 0;
        while ok && Instant::now() < deadline {
            seen = c.stop(&w).0;
            if seen > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if seen == 0 {
            results.note(
                "forks: the proc connector delivered no fork event in its self-test; counting \
                 system-wide forks instead (an upper bound)"
                    .into(),
            );
            return ForkCounter::System;
        }
        c
    }

    fn exact(&self) -> bool {
        matches!(self, ForkCounter::Connector(_))
    }

    fn start(&self, pid: u32) -> ForkWindow {
        match self {
            ForkCounter::Connector(st) => {
                let mut st = st.lock().unwrap();
                st.tracked.clear();
                st.tracked.insert(pid);
                st.count = 0;
                st.lost = false;
                ForkWindow { system_start: None }
            }
            ForkCounter::System => ForkWindow {
                system_start: system_forks(),
            },
        }
    }

    /// Forks since `start`, and whether events were lost (the count is then a lower bound).
    fn stop(&self, w: &ForkWindow) -> (u64, bool) {
        match self {
            ForkCounter::Connector(st) => {
                let st = st.lock().unwrap();
                (st.count, st.lost)
            }
            ForkCounter::System => {
                let now = system_forks().unwrap_or(0);
                (now.saturating_sub(w.system_start.unwrap_or(now)), false)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Contenders

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Pidfd,
    Poll,
    Floor,
    Shell { interval_s: u32 },
}

struct Contender {
    name: &'static str,
    kind: Kind,
}

impl Contender {
    /// How late a poller can notice a death: the kill delay is drawn up to this so that the
    /// death lands at a uniformly random phase of its check cycle.
    fn period(&self) -> Duration {
        match self.kind {
            Kind::Pidfd | Kind::Floor => Duration::ZERO,
            Kind::Poll => Duration::from_millis(100),
            Kind::Shell { interval_s } => Duration::from_secs(interval_s.into()),
        }
    }

    fn dead_timeout(&self) -> Duration {
        self.period() * 2 + Duration::from_secs(5)
    }

    fn kill_delay(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(5),
            self.period().max(Duration::from_millis(50)),
        )
    }

    /// The watcher command; `interval` `None` leaves the contender's default (15 s pidbeat).
    fn command(
        &self,
        ctx: &Ctx,
        pid: i32,
        dir: &Path,
        agent: &str,
        interval: Option<&str>,
    ) -> Command {
        let pid = pid.to_string();
        match self.kind {
            Kind::Pidfd | Kind::Poll => {
                let mut c = Command::new(PIDBEAT);
                c.args(["watch", "--pid", &pid, "--agent", agent, "--run-dir"])
                    .arg(dir)
                    .args([
                        "--backend",
                        if self.kind == Kind::Pidfd {
                            "pidfd"
                        } else {
                            "poll"
                        },
                    ]);
                if let Some(i) = interval {
                    c.args(["--interval", i]);
                }
                c
            }
            Kind::Floor => {
                let mut c = Command::new(ctx.floor.as_ref().expect("floor located"));
                c.arg(&pid).arg(dir).arg(agent);
                c.args(interval);
                c
            }
            Kind::Shell { interval_s } => {
                let mut c = Command::new("bash");
                let i = interval.map_or(interval_s.to_string(), str::to_owned);
                c.arg(&ctx.shell)
                    .args(["--pid", &pid, "--agent", agent, "--run-dir"])
                    .arg(dir)
                    .args(["--interval", &i]);
                c
            }
        }
    }
}

const PIDFD: Contender = Contender {
    name: "pidfd",
    kind: Kind::Pidfd,
};
const POLL: Contender = Contender {
    name: "poll",
    kind: Kind::Poll,
};
const FLOOR: Contender = Contender {
    name: "floor",
    kind: Kind::Floor,
};
const SHELL1: Contender = Contender {
    name: "shell-1s",
    kind: Kind::Shell { interval_s: 1 },
};
const SHELL15: Contender = Contender {
    name: "shell-15s",
    kind: Kind::Shell { interval_s: 15 },
};

// ---------------------------------------------------------------------------------------------
// The run

struct Ctx {
    cfg: Config,
    tmp: tempfile::TempDir,
    log: fs::File,
    log_path: PathBuf,
    rng: Rng,
    forks: Option<ForkCounter>,
    tick_ns: u64,
    floor: Option<PathBuf>,
    shell: PathBuf,
    fs_name: String,
    results: Results,
}

impl Ctx {
    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn has(&self, c: &Contender) -> bool {
        match c.kind {
            Kind::Floor => self.floor.is_some(),
            Kind::Shell { .. } => self.shell.is_file(),
            _ => true,
        }
    }
}

/// The floor is a second bench target: `cargo bench` builds it next to this one (in
/// target/<profile>/deps/, as `floor-<hash>`). Newest wins if several builds are there.
fn locate_floor() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(hash) = name.strip_prefix("floor-") else {
            continue;
        };
        if hash.contains('.') {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() || std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 == 0 {
            continue;
        }
        let t = m.modified().unwrap_or(UNIX_EPOCH);
        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            best = Some((t, e.path()));
        }
    }
    best.map(|(_, p)| p)
}

#[derive(Default)]
struct LatencyRun {
    samples: Vec<f64>,
    failures: usize,
    hwm_kib: Vec<u64>,
    first_error: Option<String>,
}

/// One death: target and watcher start, `alive` shows, random delay, kill + reap, `dead` read.
fn latency_round(
    ctx: &mut Ctx,
    watch: &mut DirWatch,
    dir: &Path,
    c: &Contender,
    round: usize,
) -> Result<(f64, Option<u64>), String> {
    let agent = format!("{}-{round}", c.name);
    let name = format!("{agent}.hb");
    let mut target = Proc::target(&ctx.log).map_err(|e| format!("spawn sleep: {e}"))?;
    let mut cmd = c.command(ctx, target.pid, dir, &agent, None);
    let mut watcher = Proc::spawn(&mut cmd, &ctx.log).map_err(|e| format!("spawn watcher: {e}"))?;
    let alive = watch
        .wait_for(&name, "alive", Duration::from_secs(10), true)
        .map_err(|e| format!("inotify: {e}"))?;
    if alive.is_none() {
        return Err(format!(
            "no alive record within 10 s (watcher exit: {:?}; log: {})",
            watcher.wait_exit(Duration::ZERO),
            ctx.log_tail()
        ));
    }
    let hwm = status_kib(watcher.pid, "VmHWM:");
    let (lo, hi) = c.kill_delay();
    std::thread::sleep(ctx.rng.between(lo, hi));
    watch.drain().map_err(|e| format!("inotify: {e}"))?;
    let t0 = Instant::now();
    target.kill_reap();
    let t1 = watch
        .wait_for(&name, "dead", c.dead_timeout(), false)
        .map_err(|e| format!("inotify: {e}"))?;
    let Some(t1) = t1 else {
        return Err(format!(
            "no dead record within {:?} of the kill (record: {:?}; log: {})",
            c.dead_timeout(),
            watch.read(&name).unwrap_or_default().trim_end(),
            ctx.log_tail()
        ));
    };
    let ms = (t1 - t0).as_secs_f64() * 1e3;
    match watcher.wait_exit(Duration::from_secs(3)) {
        Some(st) if st.success() => {}
        Some(st) => return Err(format!("watcher exited with {st} after the death")),
        None => return Err("watcher still running 3 s after writing dead".into()),
    }
    Ok((ms, hwm))
}

/// The file system under the run dirs, and what one record write (create + write + rename)
/// costs there right now: on ext4 without a journal, allocating an inode skips every inode
/// deleted in the last minutes, so churn (this bench's, other workloads') slows every write.
fn probe_fs(ctx: &mut Ctx) -> io::Result<()> {
    let dir = ctx.tmp.path().join("fs-probe");
    mkdir_private(&dir)?;
    ctx.fs_name = match rustix::fs::statfs(&dir) {
        Ok(s) => match s.f_type {
            0xEF53 => "ext2/3/4".into(),
            0x0102_1994 => "tmpfs".into(),
            0x5846_5342 => "xfs".into(),
            0x794C_7630 => "overlayfs".into(),
            t => format!("f_type {t:#x}"),
        },
        Err(e) => format!("? ({e})"),
    };
    let mut samples = Vec::new();
    let (tmp, rec) = (dir.join(".probe.tmp"), dir.join("probe.hb"));
    for _ in 0..50 {
        let t = Instant::now();
        fs::write(&tmp, [b'x'; 200])?;
        fs::rename(&tmp, &rec)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    fs::remove_dir_all(&dir)?;
    if let Some(s) = stats(&samples) {
        ctx.results.add("env", "record_write_p50", s.p50, "ms");
        ctx.results.add("env", "record_write_p99", s.p99, "ms");
    }
    Ok(())
}

fn run_latency(ctx: &mut Ctx) -> io::Result<()> {
    probe_fs(ctx)?;
    let dir = ctx.tmp.path().join("latency");
    mkdir_private(&dir)?;
    let mut watch = DirWatch::new(&dir)?;
    let main: Vec<&Contender> = [&PIDFD, &FLOOR, &POLL]
        .into_iter()
        .filter(|c| ctx.has(c))
        .collect();
    let mut runs: Vec<LatencyRun> = main.iter().map(|_| LatencyRun::default()).collect();
    let rounds = ctx.cfg.rounds;
    eprintln!(
        "bench: latency: {rounds} interleaved rounds of {}",
        main.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    );
    let started = Instant::now();
    let mut order: Vec<usize> = (0..main.len()).collect();
    for r in 0..rounds {
        // A fresh order every round: no contender always follows the same one.
        for i in (1..order.len()).rev() {
            order.swap(i, ctx.rng.below(i + 1));
        }
        for &k in &order {
            latency_one(ctx, &mut watch, &dir, main[k], r, &mut runs[k]);
        }
        if (r + 1) % 50 == 0 {
            eprintln!(
                "bench: latency: {}/{rounds} rounds ({:.0?})",
                r + 1,
                started.elapsed()
            );
        }
    }
    for (c, run) in main.iter().zip(runs) {
        report_latency(ctx, c, run);
    }
    for (c, n) in [
        (&SHELL1, ctx.cfg.shell1_rounds),
        (&SHELL15, ctx.cfg.shell15_rounds),
    ] {
        if n == 0 {
            ctx.results.note(format!(
                "{}: skipped (0 rounds{})",
                c.name,
                if ctx.cfg.quick { ", quick mode" } else { "" }
            ));
            continue;
        }
        if !ctx.has(c) {
            ctx.results.note(format!(
                "{}: skipped: {} does not exist",
                c.name,
                ctx.shell.display()
            ));
            continue;
        }
        eprintln!(
            "bench: latency: {n} rounds of {} (≈ {:?} each)",
            c.name,
            c.period()
        );
        let mut run = LatencyRun::default();
        for r in 0..n {
            latency_one(ctx, &mut watch, &dir, c, r, &mut run);
        }
        report_latency(ctx, c, run);
    }
    Ok(())
}

fn latency_one(
    ctx: &mut Ctx,
    watch: &mut DirWatch,
    dir: &Path,
    c: &Contender,
    r: usize,
    run: &mut LatencyRun,
) {
    match latency_round(ctx, watch, dir, c, r) {
        Ok((ms, hwm)) => {
            run.samples.push(ms);
            run.hwm_kib.extend(hwm);
        }
        Err(e) => {
            run.failures += 1;
            eprintln!("bench: {} round {r}: {e}", c.name);
            run.first_error.get_or_insert(e);
        }
    }
}

fn report_latency(ctx: &mut Ctx, c: &Contender, run: LatencyRun) {
    if let Some(s) = stats(&run.samples) {
        add_stats(&mut ctx.results, c.name, "death_latency", &s);
    }
    if let Some(&h) = run.hwm_kib.iter().max() {
        ctx.results
            .add(c.name, "latency_run_vmhwm", h as f64, "KiB");
    }
    if run.failures > 0 {
        let msg = format!(
            "{}: {} of {} latency rounds failed; first: {}",
            c.name,
            run.failures,
            run.failures + run.samples.len(),
            run.first_error.unwrap_or_default()
        );
        // pidbeat must never miss a death; the baselines are reported, not judged.
        if matches!(c.kind, Kind::Pidfd | Kind::Poll) {
            ctx.results.fail(msg);
        } else {
            ctx.results.note(msg);
        }
    }
}

// --- cost per beat

fn run_cost(ctx: &mut Ctx) -> io::Result<()> {
    let dir = ctx.tmp.path().join("cost");
    mkdir_private(&dir)?;
    let contenders: Vec<(&Contender, u64)> = [
        (&PIDFD, ctx.cfg.cost_beats),
        (&FLOOR, ctx.cfg.cost_beats),
        (&POLL, ctx.cfg.cost_beats),
        (&SHELL1, ctx.cfg.shell_cost_beats),
    ]
    .into_iter()
    .filter(|(c, _)| ctx.has(c))
    .collect();
    for (c, beats) in contenders {
        eprintln!("bench: cost: {} over {beats} beats at 10 ms", c.name);
        if let Err(e) = cost_one(ctx, &dir, c, beats) {
            let msg = format!("{}: cost run failed: {e}", c.name);
            if matches!(c.kind, Kind::Pidfd | Kind::Poll) {
                ctx.results.fail(msg);
            } else {
                ctx.results.note(msg);
            }
        }
    }
    for (name, path) in [
        ("pidfd", Some(PathBuf::from(PIDBEAT))),
        ("floor", ctx.floor.clone()),
    ] {
        if let Some(len) = path.and_then(|p| fs::metadata(p).ok()).map(|m| m.len()) {
            ctx.results.add(name, "binary_size", len as f64, "bytes");
        }
    }
    if let Ok(m) = fs::metadata(&ctx.shell) {
        ctx.results
            .add("shell-1s", "script_size", m.len() as f64, "bytes");
    }
    Ok(())
}

fn cost_one(ctx: &mut Ctx, dir: &Path, c: &Contender, beats: u64) -> Result<(), String> {
    let agent = format!("cost-{}", c.name);
    let name = format!("{agent}.hb");
    let mut watch = DirWatch::new(dir).map_err(|e| format!("inotify: {e}"))?;
    let target = Proc::target(&ctx.log).map_err(|e| format!("spawn sleep: {e}"))?;
    let mut cmd = c.command(ctx, target.pid, dir, &agent, Some("0.01"));
    let mut watcher = Proc::spawn(&mut cmd, &ctx.log).map_err(|e| format!("spawn watcher: {e}"))?;
    watch
        .wait_for(&name, "alive", Duration::from_secs(10), true)
        .map_err(|e| format!("inotify: {e}"))?
        .ok_or_else(|| format!("no alive record within 10 s (log: {})", ctx.log_tail()))?;
    drop(watch);
    // Let start-up settle; it is not a beat's cost.
    std::thread::sleep(Duration::from_millis(200));
    let read_seq = || {
        fs::read_to_string(dir.join(&name))
            .ok()
            .and_then(|r| seq_of(&r))
    };
    let tick = ctx.tick_ns;
    let forks = ctx.forks.as_ref().expect("fork counter");
    let seq0 = read_seq().ok_or("record has no seq")?;
    let cpu0 = Cpu::read(watcher.pid, tick).ok_or("watcher gone")?;
    let fw = forks.start(watcher.pid as u32);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_millis(beats * 10 * 10) + Duration::from_secs(10);
    let mut seq1 = seq0;
    while seq1 < seq0 + beats {
        if Instant::now() > deadline {
            return Err(format!("only {} beats in {:?}", seq1 - seq0, t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
        seq1 = read_seq().unwrap_or(seq1);
    }
    let cpu1 = Cpu::read(watcher.pid, tick).ok_or("watcher gone")?;
    let wall = t0.elapsed();
    seq1 = read_seq().unwrap_or(seq1);
    let (nforks, lost) = forks.stop(&fw);
    let exact = forks.exact();
    let hwm = status_kib(watcher.pid, "VmHWM:");
    let rss = status_kib(watcher.pid, "VmRSS:");
    let anon = status_kib(watcher.pid, "RssAnon:");
    let pss = pss_kib(watcher.pid);
    watcher.stop(Duration::from_secs(3));
    drop(target);

    let n = (seq1 - seq0) as f64;
    let r = &mut ctx.results;
    r.add(c.name, "beats_measured", n, "beats");
    r.add(c.name, "beat_period", wall.as_secs_f64() * 1e3 / n, "ms");
    let cpu_us = cpu1.total_ns(tick).saturating_sub(cpu0.total_ns(tick)) as f64 / 1e3 / n;
    r.add(c.name, "cpu_per_beat", cpu_us, "us");
    let ticks_us = cpu1.ticks_ns(tick).saturating_sub(cpu0.ticks_ns(tick)) as f64 / 1e3 / n;
    r.add(c.name, "cpu_per_beat_ticks", ticks_us, "us");
    r.add(
        c.name,
        if exact {
            "forks_per_beat"
        } else {
            "forks_per_beat_systemwide"
        },
        nforks as f64 / n,
        "forks",
    );
    if lost {
        r.note(format!(
            "{}: the proc connector dropped events (ENOBUFS): {nforks} forks is a lower bound",
            c.name
        ));
    }
    if let Some(h) = hwm {
        r.add(c.name, "vmhwm", h as f64, "KiB");
    }
    if let Some(v) = rss {
        r.add(c.name, "vmrss", v as f64, "KiB");
    }
    if let Some(v) = pss {
        r.add(c.name, "pss", v as f64, "KiB");
    }
    if let Some(v) = anon {
        r.add(c.name, "rss_anon", v as f64, "KiB");
    }
    Ok(())
}

// --- scale

struct Fleet {
    dir: PathBuf,
    targets: Vec<Proc>,
    watchers: Vec<Proc>,
    agents: Vec<String>,
}

impl Fleet {
    fn spawn_one(&mut self, ctx: &Ctx, i: usize, agent: String) -> io::Result<()> {
        let t = Proc::target(&ctx.log)?;
        let mut cmd = PIDFD.command(ctx, t.pid, &self.dir, &agent, None);
        let w = Proc::spawn(&mut cmd, &ctx.log)?;
        if i == self.targets.len() {
            self.targets.push(t);
            self.watchers.push(w);
            self.agents.push(agent);
        } else {
            self.targets[i] = t;
            self.watchers[i] = w;
            self.agents[i] = agent;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Watchers first: a watcher whose target dies would write (and fsync) a dead record.
        for w in &self.watchers {
            w.signal(Signal::KILL);
        }
        self.watchers.clear();
        for t in &self.targets {
            t.signal(Signal::KILL);
        }
        self.targets.clear();
    }
}

fn count_records(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && n.ends_with(".hb")
                })
                .count()
        })
        .unwrap_or(0)
}

fn run_scale(ctx: &mut Ctx) -> io::Result<()> {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: nofile.maximum,
            maximum: nofile.maximum,
        },
    );
    for (n, rounds, idle) in ctx.cfg.scale.clone() {
        eprintln!("bench: scale: {n} watchers, {rounds} deaths");
        if let Err(e) = scale_one(ctx, n, rounds, idle) {
            ctx.results.fail(format!("scale-{n}: {e}"));
        }
        let left = children_of(std::process::id() as i32).len();
        if left > 0 {
            ctx.results.note(format!(
                "scale-{n}: {left} children still there after teardown"
            ));
        }
    }
    Ok(())
}

fn scale_one(ctx: &mut Ctx, n: usize, rounds: usize, idle: bool) -> Result<(), String> {
    let name = format!("scale-{n}");
    let dir = ctx.tmp.path().join(&name);
    mkdir_private(&dir).map_err(|e| e.to_string())?;
    let mut watch = DirWatch::new(&dir).map_err(|e| format!("inotify: {e}"))?;
    let mut fleet = Fleet {
        dir: dir.clone(),
        targets: Vec::with_capacity(n),
        watchers: Vec::with_capacity(n),
        agents: Vec::with_capacity(n),
    };
    let t0 = Instant::now();
    for i in 0..n {
        fleet
            .spawn_one(ctx, i, format!("s{n}-{i}"))
            .map_err(|e| format!("spawn #{i}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30 + n as u64 / 10);
    while count_records(&dir) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} watchers wrote a record in {:?} (log: {})",
                count_records(&dir),
                t0.elapsed(),
                ctx.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let startup = t0.elapsed();
    ctx.results
        .add(&name, "startup_all_alive", startup.as_secs_f64(), "s");
    std::thread::sleep(Duration::from_millis(500));

    // Idle: CPU of all watchers over one default interval (15 s), which holds exactly one beat
    // of each (every watcher started less than 15 s before the window opened).
    if idle {
        let tick = ctx.tick_ns;
        let sum_cpu = |f: &Fleet| -> u64 {
            f.watchers
                .iter()
                .filter_map(|w| Cpu::read(w.pid, tick))
                .map(|c| c.total_ns(tick))
                .sum()
        };
        let c0 = sum_cpu(&fleet);
        let w0 = Instant::now();
        std::thread::sleep(IDLE_WINDOW);
        let c1 = sum_cpu(&fleet);
        let secs = w0.elapsed().as_secs_f64();
        let ns = c1.saturating_sub(c0) as f64;
        let r = &mut ctx.results;
        r.add(&name, "idle_cpu", ns / 1e6 / secs, "ms/s");
        if startup < Duration::from_secs(14) {
            r.add(&name, "cpu_per_beat_idle", ns / 1e3 / n as f64, "us");
        }
    }
    let rss: u64 = fleet
        .watchers
        .iter()
        .filter_map(|w| status_kib(w.pid, "VmRSS:"))
        .sum();
    let pss: u64 = fleet.watchers.iter().filter_map(|w| pss_kib(w.pid)).sum();
    let r = &mut ctx.results;
    r.add(&name, "total_vmrss", rss as f64 / 1024.0, "MiB");
    r.add(&name, "total_pss", pss as f64 / 1024.0, "MiB");
    r.add(&name, "vmrss_per_watcher", rss as f64 / n as f64, "KiB");
    r.add(&name, "pss_per_watcher", pss as f64 / n as f64, "KiB");

    // Deaths: one random target at a time; its watcher is replaced afterwards.
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let i = ctx.rng.below(n);
        let rec = format!("{}.hb", fleet.agents[i]);
        std::thread::sleep(
            ctx.rng
                .between(Duration::from_millis(5), Duration::from_millis(50)),
        );
        watch.drain().map_err(|e| format!("inotify: {e}"))?;
        let t = Instant::now();
        fleet.targets[i].kill_reap();
        let got = watch
            .wait_for(&rec, "dead", Duration::from_secs(5), false)
            .map_err(|e| format!("inotify: {e}"))?;
        let Some(t1) = got else {
            return Err(format!(
                "{} wrote no dead record within 5 s (log: {})",
                fleet.agents[i],
                ctx.log_tail()
            ));
        };
        samples.push((t1 - t).as_secs_f64() * 1e3);
        if fleet.watchers[i]
            .wait_exit(Duration::from_secs(3))
            .is_none()
        {
            return Err(format!("{} still running 3 s after dead", fleet.agents[i]));
        }
        let agent = format!("s{n}-{i}-r{round}");
        let rec = format!("{agent}.hb");
        fleet
            .spawn_one(ctx, i, agent)
            .map_err(|e| format!("respawn: {e}"))?;
        watch
            .wait_for(&rec, "alive", Duration::from_secs(10), true)
            .map_err(|e| format!("inotify: {e}"))?
            .ok_or("replacement watcher wrote no alive record within 10 s")?;
    }
    if let Some(s) = stats(&samples) {
        add_stats(&mut ctx.results, &name, "death_latency", &s);
    }
    let t = Instant::now();
    drop(fleet);
    ctx.results
        .add(&name, "teardown", t.elapsed().as_secs_f64(), "s");
    Ok(())
}

// --- fleet read

fn run_ps(ctx: &mut Ctx) -> io::Result<()> {
    let n = ctx.cfg.ps_records;
    let dir = ctx.tmp.path().join("ps");
    mkdir_private(&dir)?;
    // Records as the watchers write them: alive ones name a live process (the bench itself,
    // with its real start time) so `ps` does its /proc checks; the rest are dead or unwatched.
    let me = std::process::id() as i32;
    let start = stat_fields(me)
        .and_then(|f| f.get(19).copied())
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for i in 0..n {
        let (status, exit, died) = match i % 4 {
            0 => (
                "dead",
                r#"{"code":null,"signal":9,"core":false}"#.to_owned(),
                now.to_string(),
            ),
            1 => ("unwatched", "null".to_owned(), "null".to_owned()),
            _ => ("alive", "null".to_owned(), "null".to_owned()),
        };
        let line = format!(
            "{{\"ts\":{},\"pid\":{me},\"status\":\"{status}\",\"ts_ms\":{now},\"seq\":{},\
             \"interval\":15.0,\"backend\":\"pidfd\",\"watcher_pid\":{me},\"start_time\":{start},\
             \"exit\":{exit},\"died_ms\":{died},\"watcher_start_time\":{start}}}\n",
            now / 1000,
            i + 1
        );
        fs::write(dir.join(format!("agent-{i:05}.hb")), line)?;
    }
    let run = || {
        let t = Instant::now();
        let out = Command::new(PIDBEAT)
            .args(["ps", "--json", "--run-dir"])
            .arg(&dir)
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .stdin(Stdio::null())
            .output();
        (t.elapsed(), out)
    };
    let (_, first) = run();
    let out = first?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        ctx.results.note(format!(
            "ps: `pidbeat ps --json` is not usable yet ({}: {}); fleet read skipped",
            out.status,
            err.lines().next().unwrap_or("").trim()
        ));
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(serde_json::Value::Array(a)) if a.len() == n => {}
        Ok(serde_json::Value::Array(a)) => ctx
            .results
            .fail(format!("ps --json listed {} of {n} records", a.len())),
        Ok(_) => ctx.results.fail("ps --json did not print an array".into()),
        Err(e) => ctx
            .results
            .fail(format!("ps --json printed invalid JSON: {e}")),
    }
    let mut samples = Vec::new();
    for _ in 0..ctx.cfg.ps_runs {
        let (d, out) = run();
        if out.is_ok_and(|o| o.status.success()) {
            samples.push(d.as_secs_f64() * 1e3);
        }
    }
    if let Some(s) = stats(&samples) {
        let r = &mut ctx.results;
        r.add("ps", "ps_json_p50", s.p50, "ms");
        r.add("ps", "ps_json_max", s.max, "ms");
        r.add("ps", "ps_json_runs", s.n as f64, "runs");
        r.add("ps", "ps_json_records", n as f64, "records");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

fn fmt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) => format!("{x:.prec$}"),
        None => "–".into(),
    }
}

struct Goal {
    what: &'static str,
    target: String,
    measured: String,
    met: Option<bool>,
}

fn goals(r: &Results) -> Vec<Goal> {
    let mut g = Vec::new();
    let pidfd99 = r.get("pidfd", "death_latency_p99");
    let floor99 = r.get("floor", "death_latency_p99");
    g.push(Goal {
        what: "pidfd death latency p99",
        target: "≤ 1 ms".into(),
        measured: format!("{} ms", fmt(pidfd99, 3)),
        met: pidfd99.map(|v| v <= 1.0),
    });
    let ratio = pidfd99.zip(floor99).map(|(a, b)| a / b);
    g.push(Goal {
        what: "pidfd p99 / floor p99 (same run)",
        target: "≤ 1.5×".into(),
        measured: format!("{}×", fmt(ratio, 2)),
        met: ratio.map(|v| v <= 1.5),
    });
    for c in ["pidfd", "poll"] {
        let f = r.get(c, "forks_per_beat");
        let fs = r.get(c, "forks_per_beat_systemwide");
        g.push(Goal {
            what: if c == "pidfd" {
                "forks per beat (pidfd)"
            } else {
                "forks per beat (poll)"
            },
            target: "0".into(),
            measured: match (f, fs) {
                (Some(v), _) => format!("{v:.3}"),
                (None, Some(v)) => format!("{v:.3} (system-wide bound)"),
                _ => "–".into(),
            },
            met: f
                .map(|v| v == 0.0)
                .or(fs.filter(|&v| v == 0.0).map(|_| true)),
        });
        let cpu = r.get(c, "cpu_per_beat");
        g.push(Goal {
            what: if c == "pidfd" {
                "CPU per beat (pidfd)"
            } else {
                "CPU per beat (poll)"
            },
            target: "≤ 50 µs".into(),
            measured: format!(
                "{} µs (floor: {} µs)",
                fmt(cpu, 1),
                fmt(r.get("floor", "cpu_per_beat"), 1)
            ),
            met: cpu.map(|v| v <= 50.0),
        });
    }
    let hwm = r.get("pidfd", "vmhwm");
    g.push(Goal {
        what: "peak RSS of one watcher (VmHWM, pidfd)",
        target: "≤ 2048 KiB".into(),
        measured: format!(
            "{} KiB (floor: {} KiB)",
            fmt(hwm, 0),
            fmt(r.get("floor", "vmhwm"), 0)
        ),
        met: hwm.map(|v| v <= 2048.0),
    });
    let per = r
        .get("scale-1000", "vmrss_per_watcher")
        .or(r.get("scale-100", "vmrss_per_watcher"));
    g.push(Goal {
        what: "VmRSS per watcher in the largest fleet",
        target: "≤ 2048 KiB".into(),
        measured: format!("{} KiB", fmt(per, 0)),
        met: per.map(|v| v <= 2048.0),
    });
    let s1000 = r.get("scale-1000", "death_latency_p99");
    g.push(Goal {
        what: "1,000 watchers: death latency p99",
        target: "≤ 5 ms".into(),
        measured: format!("{} ms", fmt(s1000, 3)),
        met: s1000.map(|v| v <= 5.0),
    });
    let ps = r.get("ps", "ps_json_p50");
    g.push(Goal {
        what: "`ps --json` over 10,000 records, p50",
        target: "≤ 100 ms".into(),
        measured: format!("{} ms", fmt(ps, 1)),
        met: ps.map(|v| v <= 100.0),
    });
    g
}

fn markdown(ctx: &Ctx) -> String {
    let r = &ctx.results;
    let cfg = &ctx.cfg;
    let mut s = String::new();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "## pidbeat bench ({} mode) — kernel {}, {cores} cores, run dirs in {} ({})\n",
        if cfg.quick { "quick" } else { "full" },
        kernel.trim(),
        cfg.tmp_base.display(),
        ctx.fs_name
    );
    if let Some(w) = r.get("env", "record_write_p50") {
        let _ = writeln!(
            s,
            "One record write there (create + write + rename, measured before the rounds): \
             p50 {w:.3} ms, p99 {} ms.\n",
            fmt(r.get("env", "record_write_p99"), 3)
        );
    }
    let _ = writeln!(
        s,
        "### Death → `dead` latency as a reader sees it (kill() → dead record read after inotify)\n"
    );
    let _ = writeln!(
        s,
        "| contender | rounds | p50 ms | p90 ms | p99 ms | max ms | mean ms | kill delay after `alive` |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|");
    for c in [&PIDFD, &FLOOR, &POLL, &SHELL1, &SHELL15] {
        let g = |m: &str| r.get(c.name, &format!("death_latency_{m}"));
        if g("rounds").is_none() {
            continue;
        }
        let (lo, hi) = c.kill_delay();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | U({}–{} ms) |",
            c.name,
            fmt(g("rounds"), 0),
            fmt(g("p50"), 3),
            fmt(g("p90"), 3),
            fmt(g("p99"), 3),
            fmt(g("max"), 3),
            fmt(g("mean"), 3),
            lo.as_millis(),
            hi.as_millis()
        );
    }
    let _ = writeln!(
        s,
        "\npidbeat runs at its default 15 s interval here; the kill delay of a poller spans its \
         whole check period so the death lands at a random phase.\n"
    );

    let _ = writeln!(s, "### Cost per beat (interval 10 ms)\n");
    let _ = writeln!(
        s,
        "| contender | beats | period ms | CPU µs/beat | (ticks only) | forks/beat | VmHWM KiB | RssAnon KiB | PSS KiB | size bytes |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in ["pidfd", "floor", "poll", "shell-1s"] {
        let forks = r
            .get(c, "forks_per_beat")
            .map(|v| format!("{v:.3}"))
            .or(r
                .get(c, "forks_per_beat_systemwide")
                .map(|v| format!("≤ {v:.3} (system)")))
            .unwrap_or_else(|| "–".into());
        let size = r.get(c, "binary_size").or(r.get(c, "script_size"));
        let hwm = r.get(c, "vmhwm").or(r.get(c, "latency_run_vmhwm"));
        if r.get(c, "beats_measured").is_none() && size.is_none() && hwm.is_none() {
            continue;
        }
        let _ = writeln!(
            s,
            "| {c} | {} | {} | {} | {} | {forks} | {} | {} | {} | {} |",
            fmt(r.get(c, "beats_measured"), 0),
            fmt(r.get(c, "beat_period"), 2),
            fmt(r.get(c, "cpu_per_beat"), 1),
            fmt(r.get(c, "cpu_per_beat_ticks"), 1),
            fmt(hwm, 0),
            fmt(r.get(c, "rss_anon"), 0),
            fmt(r.get(c, "pss"), 0),
            fmt(size, 0),
        );
    }
    let _ = writeln!(
        s,
        "\nCPU: the watcher's own time from /proc/PID/schedstat (ns) plus reaped children's \
         (cutime+cstime, ticks of {} µs); \"ticks only\" is utime+stime+cutime+cstime alone. \
                  Forks: {}. shell-1s ran at 10 ms here; the shell's size is its script's. The floor \
         beats here with a timerfd and the same write + rename, nothing else: the least a beat \
         can cost on this file system.\n",
        ctx.tick_ns / 1000,
        if ctx.forks.as_ref().is_some_and(ForkCounter::exact) {
            "the kernel's proc connector, every fork by the watcher or its descendants"
        } else {
            "system-wide `processes` from /proc/stat (upper bound)"
        }
    );

    if cfg
        .scale
        .iter()
        .any(|(n, _, _)| r.get(&format!("scale-{n}"), "vmrss_per_watcher").is_some())
    {
        let _ = writeln!(
            s,
            "### Scale: N pidfd watchers, one run dir, default interval (15 s)\n"
        );
        let _ = writeln!(
            s,
            "| watchers | deaths | p50 ms | p99 ms | max ms | total VmRSS MiB | total PSS MiB | VmRSS/watcher KiB | PSS/watcher KiB | idle CPU ms/s | CPU µs/beat (15 s) | all alive after s |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (n, _, _) in &cfg.scale {
            let c = format!("scale-{n}");
            if r.get(&c, "vmrss_per_watcher").is_none() {
                continue;
            }
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(r.get(&c, "death_latency_rounds"), 0),
                fmt(r.get(&c, "death_latency_p50"), 3),
                fmt(r.get(&c, "death_latency_p99"), 3),
                fmt(r.get(&c, "death_latency_max"), 3),
                fmt(r.get(&c, "total_vmrss"), 1),
                fmt(r.get(&c, "total_pss"), 1),
                fmt(r.get(&c, "vmrss_per_watcher"), 0),
                fmt(r.get(&c, "pss_per_watcher"), 0),
                fmt(r.get(&c, "idle_cpu"), 3),
                fmt(r.get(&c, "cpu_per_beat_idle"), 1),
                fmt(r.get(&c, "startup_all_alive"), 2),
            );
        }
        let _ = writeln!(
            s,
            "\nVmRSS counts shared pages (libc, the binary's text) in every watcher; PSS shares them out.\n"
        );
    }

    if let Some(p50) = r.get("ps", "ps_json_p50") {
        let _ = writeln!(s, "### Fleet read\n");
        let _ = writeln!(s, "| command | records | runs | p50 ms | max ms |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| `pidbeat ps --json` | {} | {} | {p50:.1} | {} |\n",
            fmt(r.get("ps", "ps_json_records"), 0),
            fmt(r.get("ps", "ps_json_runs"), 0),
            fmt(r.get("ps", "ps_json_max"), 1)
        );
    }

    let ratios: Vec<&Entry> = r
        .entries
        .iter()
        .filter(|e| e.contender == "ratio")
        .collect();
    if !ratios.is_empty() {
        let _ = writeln!(s, "### Ratios (same run)\n");
        let _ = writeln!(s, "| ratio | value |");
        let _ = writeln!(s, "|---|---:|");
        for e in ratios {
            let _ = writeln!(s, "| {} | {:.2}{} |", e.metric, e.value, e.unit);
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "### Goals\n");
    let _ = writeln!(s, "| goal | target | measured | met |");
    let _ = writeln!(s, "|---|---|---|---|");
    for g in goals(r) {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {} | {met} |", g.what, g.target, g.measured);
    }
    if !r.notes.is_empty() || !r.failures.is_empty() {
        let _ = writeln!(s, "\n### Notes\n");
        for n in &r.failures {
            let _ = writeln!(s, "- FAILURE: {n}");
        }
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn add_ratios(r: &mut Results) {
    let pairs = [
        ("pidfd_p99/floor_p99", "pidfd", "floor", "death_latency_p99"),
        ("pidfd_p50/floor_p50", "pidfd", "floor", "death_latency_p50"),
        (
            "shell_p50/pidfd_p50",
            "shell-1s",
            "pidfd",
            "death_latency_p50",
        ),
        (
            "shell15_p50/pidfd_p50",
            "shell-15s",
            "pidfd",
            "death_latency_p50",
        ),
        ("poll_p50/pidfd_p50", "poll", "pidfd", "death_latency_p50"),
        (
            "shell_cpu/pidfd_cpu per beat",
            "shell-1s",
            "pidfd",
            "cpu_per_beat",
        ),
        (
            "pidfd_cpu/floor_cpu per beat",
            "pidfd",
            "floor",
            "cpu_per_beat",
        ),
    ];
    for (name, a, b, m) in pairs {
        if let (Some(x), Some(y)) = (r.get(a, m), r.get(b, m))
            && y > 0.0
        {
            r.add("ratio", name, x / y, "x");
        }
    }
}

fn write_json(ctx: &Ctx) -> io::Result<PathBuf> {
    let dir = Path::new(PIDBEAT)
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| Path::new(MANIFEST_DIR).join("target"), Path::to_path_buf)
        .join("bench");
    fs::create_dir_all(&dir)?;
    let arr: Vec<serde_json::Value> = ctx
        .results
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "contender": e.contender,
                "metric": e.metric,
                "value": if e.value.is_finite() { serde_json::json!(e.value) } else { serde_json::Value::Null },
                "unit": e.unit,
            })
        })
        .collect();
    let path = dir.join("results.json");
    let mut text = serde_json::to_string_pretty(&arr).map_err(io::Error::other)?;
    text.push('\n');
    fs::write(&path, text)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let cfg = Config::from_env();
    let begun = Instant::now();
    // Orphans (a killed shell's `sleep`) come to us, so nothing is left behind unreaped.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    if let Err(e) = mkdir_private(&cfg.tmp_base) {
        eprintln!("bench: cannot use {}: {e}", cfg.tmp_base.display());
        std::process::exit(1);
    }
    let tmp = match tempfile::Builder::new()
        .prefix("pidbeat-bench.")
        .tempdir_in(&cfg.tmp_base)
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "bench: cannot create a temp dir in {}: {e}",
                cfg.tmp_base.display()
            );
            std::process::exit(1);
        }
    };
    let log_path = tmp.path().join("watchers.log");
    let log = fs::File::create(&log_path).expect("create the watchers' log");
    let tick_ns = 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1);
    let mut ctx = Ctx {
        cfg,
        tmp,
        log,
        log_path,
        rng: Rng::seeded(),
        forks: None,
        tick_ns,
        floor: locate_floor(),
        shell: Path::new(MANIFEST_DIR).join("scripts/hb-sidecar.sh"),
        fs_name: "?".into(),
        results: Results::default(),
    };
    if !Path::new(PIDBEAT).is_file() {
        eprintln!("bench: {PIDBEAT} is missing");
        std::process::exit(1);
    }
    if ctx.floor.is_none() {
        ctx.results.note(
            "floor: its binary was not found next to this bench (run plain `cargo bench`, which \
             builds both bench targets); floor skipped"
                .into(),
        );
    }
    eprintln!(
        "bench: pidbeat {PIDBEAT}; floor {}; temp {}",
        ctx.floor
            .as_ref()
            .map_or("–".into(), |p| p.display().to_string()),
        ctx.tmp.path().display()
    );

    type Section = fn(&mut Ctx) -> io::Result<()>;
    let sections: [(&str, Section); 4] = [
        ("latency", run_latency),
        ("cost", |ctx| {
            ctx.forks = Some(ForkCounter::new(&ctx.log, &mut ctx.results));
            run_cost(ctx)
        }),
        ("scale", run_scale),
        ("ps", run_ps),
    ];
    for (name, f) in sections {
        if !ctx.cfg.wants(name) {
            continue;
        }
        let t = Instant::now();
        if let Err(e) = f(&mut ctx) {
            ctx.results.fail(format!("{name}: {e}"));
        }
        eprintln!("bench: {name} done in {:.1?}", t.elapsed());
    }
    add_ratios(&mut ctx.results);
    let left = sweep_children();
    if left > 0 {
        ctx.results.note(format!(
            "{left} stray processes were killed and reaped at the end"
        ));
    }

    print!("{}", markdown(&ctx));
    match write_json(&ctx) {
        Ok(p) => println!(
            "\nResults: {} (bench took {:.0?})",
            p.display(),
            begun.elapsed()
        ),
        Err(e) => ctx.results.fail(format!("cannot write results.json: {e}")),
    }
    let missed = goals(&ctx.results).iter().any(|g| g.met == Some(false));
    let failed = !ctx.results.failures.is_empty();
    let strict = ctx.cfg.strict;
    drop(ctx); // removes the temp dir
    if failed {
        eprintln!("bench: failed (see FAILURE notes above)");
        std::process::exit(1);
    }
    if missed && strict {
        eprintln!("bench: goals missed (PIDBEAT_BENCH_STRICT)");
        std::process::exit(1);
    }
}
