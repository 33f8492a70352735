//! Death → `dead` as a reader sees it. The bench starts a `sleep` target and the watcher as two
//! children, waits for `alive`, waits a random delay, then takes a timestamp, SIGKILLs and reaps
//! the target and blocks on inotify until the record it reads says `dead`. pidfd, floor and
//! poll rounds are interleaved so that background load hits them alike; the shells follow.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Ctx;
use crate::contenders::{Contender, FLOOR, PIDFD, POLL, SHELL1, SHELL15};
use crate::procs::status_kib;
use crate::rundir::{DirWatch, mkdir_private};
use crate::stats::stats;

#[derive(Default)]
struct LatencyRun {
    samples: Vec<f64>,
    failures: usize,
    hwm_kib: Vec<u64>,
    first_error: Option<String>,
}

/// One death: target and watcher start, `alive` shows, random delay, kill + reap, `dead` read.
/// The death latency in ms, and the watcher's VmHWM once it was watching.
fn latency_round(
    ctx: &mut Ctx,
    watch: &mut DirWatch,
    dir: &Path,
    c: &Contender,
    round: usize,
) -> Result<(f64, Option<u64>), String> {
    let agent = format!("{}-{round}", c.name);
    let name = format!("{agent}.hb");
    let (mut target, mut watcher) = c.start(ctx, watch, dir, &agent, None)?;
    let hwm = status_kib(watcher.pid, "VmHWM:");
    let (lo, hi) = c.kill_delay();
    std::thread::sleep(ctx.rng.between(lo, hi));
    let Some(ms) = watch.time_death(&mut target, &name, c.dead_timeout())? else {
        return Err(format!(
            "no dead record within {:?} of the kill (record: {:?}; log: {})",
            c.dead_timeout(),
            watch.read(&name).unwrap_or_default().trim_end(),
            ctx.log_tail()
        ));
    };
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

pub fn run_latency(ctx: &mut Ctx) -> io::Result<()> {
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
        ctx.results.add_stats(c.name, "death_latency", &s);
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
        ctx.results.fail_or_note(c.is_pidbeat(), msg);
    }
}
