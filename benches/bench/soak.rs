//! The soak (issue 11, item 7), run only when asked for (`PIDBEAT_BENCH_ONLY=soak`): one
//! watcher per backend at `--interval 0.001` side by side for `PIDBEAT_BENCH_SOAK_SECS`
//! (default 180) seconds, VmRSS and the descriptor count sampled every 10 s; then 200
//! deletions and recreations of the run dir under a 10 ms pidfd watcher. Flat means: the
//! descriptor count (between writes) and VmRSS end where they were at the first sample.
//! `cargo test` runs a 15 s version (tests/reliability/soak.rs).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Ctx;
use crate::contenders::{Contender, PIDFD, POLL};
use crate::procs::status_kib;
use crate::rundir::{DirWatch, mkdir_private, seq_of};

const SAMPLE: Duration = Duration::from_secs(10);
const RECREATIONS: usize = 200;

/// The first, last and largest of a series of samples.
#[derive(Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    max: u64,
}

impl Span {
    fn add(s: Option<Span>, v: u64) -> Span {
        match s {
            None => Span {
                first: v,
                last: v,
                max: v,
            },
            Some(s) => Span {
                last: v,
                max: s.max.max(v),
                ..s
            },
        }
    }
}

fn soak_secs() -> u64 {
    std::env::var("PIDBEAT_BENCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

/// The fewest descriptors seen in a few samples: a write holds the run dir open briefly.
fn steady_fds(pid: i32) -> Option<usize> {
    (0..20)
        .filter_map(|_| {
            std::thread::sleep(Duration::from_millis(3));
            Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
        })
        .min()
}

/// The descriptor count once it is back at or below `baseline` (within 3 s: a watcher
/// preempted in the middle of a write holds one more for a while), else the last seen.
fn fds_back_to(pid: i32, baseline: usize) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        if n <= baseline || Instant::now() >= deadline {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn run_soak(ctx: &mut Ctx) -> io::Result<()> {
    let secs = soak_secs();
    let mut running = Vec::new();
    for c in [&PIDFD, &POLL] {
        let dir = ctx.tmp.path().join(format!("soak-{}", c.name));
        mkdir_private(&dir)?;
        let mut watch = DirWatch::new(&dir)?;
        let (target, watcher) = c
            .start(ctx, &mut watch, &dir, "soak", Some("0.001"))
            .map_err(io::Error::other)?;
        running.push((c, dir, target, watcher));
    }
    eprintln!("bench: soak: {secs} s at --interval 0.001, both backends");
    // VmRSS (KiB) and descriptors of each watcher over the soak.
    let mut rss: Vec<Option<Span>> = vec![None; running.len()];
    let mut fds: Vec<Option<Span>> = vec![None; running.len()];
    let begun = Instant::now();
    let mut seq0 = Vec::new();
    for (_, dir, _, _) in &running {
        seq0.push(
            fs::read_to_string(dir.join("soak.hb"))
                .ok()
                .and_then(|r| seq_of(&r)),
        );
    }
    loop {
        for (i, (_, _, _, w)) in running.iter().enumerate() {
            if let (Some(r), Some(f)) = (status_kib(w.pid, "VmRSS:"), steady_fds(w.pid)) {
                rss[i] = Some(Span::add(rss[i], r));
                fds[i] = Some(Span::add(fds[i], f as u64));
            }
        }
        if begun.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        std::thread::sleep(SAMPLE.min(Duration::from_secs(secs).saturating_sub(begun.elapsed())));
    }
    for (i, (c, dir, mut target, mut watcher)) in running.into_iter().enumerate() {
        let seq1 = fs::read_to_string(dir.join("soak.hb"))
            .ok()
            .and_then(|r| seq_of(&r));
        let beats = seq1.zip(seq0[i]).map_or(0, |(b, a)| b.saturating_sub(a));
        match (rss[i], fds[i]) {
            (Some(r), Some(f)) => {
                let name = format!("pidbeat, {}", c.name);
                let growth = r.last as f64 - r.first as f64;
                ctx.results.add(&name, "soak_rss_growth_kib", growth, "KiB");
                // A leak stays; a write caught in flight (the max) passes.
                let end = fds_back_to(watcher.pid, f.first as usize).unwrap_or(usize::MAX);
                let fd_growth = end as f64 - f.first as f64;
                ctx.results.add(&name, "soak_fd_growth", fd_growth, "fds");
                ctx.results.note(format!(
                    "soak {}: {secs} s, {beats} beats at 1 ms: VmRSS {} -> {} KiB (max {}), \
                     fds {} -> {end} (max {})",
                    c.name, r.first, r.last, r.max, f.first, f.max
                ));
                if end > f.first as usize || r.last > r.first + 256 {
                    ctx.results.fail(format!("soak {}: not flat", c.name));
                }
            }
            _ => ctx
                .results
                .fail(format!("soak {}: the watcher vanished", c.name)),
        }
        watcher.kill_reap();
        target.kill_reap();
    }
    recreations(ctx, &PIDFD)
}

/// The run dir deleted and recreated under a 10 ms watcher: its descriptor count must not move.
fn recreations(ctx: &mut Ctx, c: &Contender) -> io::Result<()> {
    let dir = ctx.tmp.path().join("soak-recreate");
    mkdir_private(&dir)?;
    let mut watch = DirWatch::new(&dir)?;
    let (mut target, mut watcher) = c
        .start(ctx, &mut watch, &dir, "re", Some("0.01"))
        .map_err(io::Error::other)?;
    drop(watch);
    let before = steady_fds(watcher.pid);
    for _ in 0..RECREATIONS {
        while fs::remove_dir_all(&dir).is_err() && dir.exists() {}
        mkdir_private(&dir)?;
    }
    // Let it take the lock in the last dir, then count.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !Path::new(&dir.join(".re.lock")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = before.and_then(|b| fds_back_to(watcher.pid, b));
    ctx.results.note(format!(
        "soak: {RECREATIONS} run-dir recreations under a 10 ms watcher: fds {before:?} -> {after:?}"
    ));
    if before.is_none() || after > before {
        ctx.results
            .fail("soak: the fd count moved over the recreations".into());
    }
    watcher.kill_reap();
    target.kill_reap();
    Ok(())
}
