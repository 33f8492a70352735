//! CPU and forks per beat at a 10 ms interval, memory, binary sizes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::contenders::{Contender, FLOOR, PIDFD, PIDFD_BARE, POLL, SHELL1};
use crate::forks::ForkCounter;
use crate::procs::{Cpu, pss_kib, status_kib};
use crate::rundir::{DirWatch, mkdir_private, seq_of};
use crate::{Ctx, PIDBEAT};

pub fn run_cost(ctx: &mut Ctx) -> io::Result<()> {
    let forks = ForkCounter::new(&ctx.log, &mut ctx.results);
    ctx.forks = Some(forks);
    let dir = ctx.tmp.path().join("cost");
    mkdir_private(&dir)?;
    let contenders: Vec<(&Contender, u64)> = [
        (&PIDFD, ctx.cfg.cost_beats),
        (&PIDFD_BARE, ctx.cfg.cost_beats),
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
            ctx.results.fail_or_note(c.is_pidbeat(), msg);
        }
    }
    if ctx.has(&PIDFD) {
        eprintln!(
            "bench: cost: pidfd and pidfd-bare side by side, {} beats",
            ctx.cfg.cost_beats
        );
        if let Err(e) = progress_pair(ctx, &dir, ctx.cfg.cost_beats) {
            ctx.results
                .fail_or_note(true, format!("progress pair: cost run failed: {e}"));
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
    let (target, mut watcher) = c.start(ctx, &mut watch, dir, &agent, Some("0.01"))?;
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
    let memory = [
        ("vmhwm", status_kib(watcher.pid, "VmHWM:")),
        ("vmrss", status_kib(watcher.pid, "VmRSS:")),
        ("pss", pss_kib(watcher.pid)),
        ("rss_anon", status_kib(watcher.pid, "RssAnon:")),
    ];
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
    for (metric, kib) in memory {
        if let Some(v) = kib {
            r.add(c.name, metric, v as f64, "KiB");
        }
    }
    Ok(())
}

/// The cost of progress sampling: pidfd and pidfd-bare (`--no-progress`) beat at 10 ms side
/// by side, over the same seconds, so that whatever else loads the machine loads both alike
/// (run one after the other, the two differed by ±40 % on a shared machine). Recorded as
/// `pair-pidfd` and `pair-bare`.
fn progress_pair(ctx: &mut Ctx, dir: &Path, beats: u64) -> Result<(), String> {
    let tick = ctx.tick_ns;
    let mut started = Vec::new();
    for (c, agent) in [(&PIDFD, "pair-pidfd"), (&PIDFD_BARE, "pair-bare")] {
        let mut watch = DirWatch::new(dir).map_err(|e| format!("inotify: {e}"))?;
        let (target, watcher) = c.start(ctx, &mut watch, dir, agent, Some("0.01"))?;
        started.push((agent, target, watcher));
    }
    std::thread::sleep(Duration::from_millis(200));
    let read_seq = |agent: &str| {
        fs::read_to_string(dir.join(format!("{agent}.hb")))
            .ok()
            .and_then(|r| seq_of(&r))
    };
    let mut first = Vec::new();
    for (agent, _, w) in &started {
        let seq = read_seq(agent).ok_or("record has no seq")?;
        first.push((seq, Cpu::read(w.pid, tick).ok_or("watcher gone")?));
    }
    let deadline =
        Instant::now() + Duration::from_millis(beats * 10 * 10) + Duration::from_secs(10);
    while started
        .iter()
        .zip(&first)
        .any(|((a, _, _), (s0, _))| read_seq(a).unwrap_or(0) < s0 + beats)
    {
        if Instant::now() > deadline {
            return Err("too few beats".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for ((agent, target, mut watcher), (s0, cpu0)) in started.into_iter().zip(first) {
        let cpu1 = Cpu::read(watcher.pid, tick).ok_or("watcher gone")?;
        let s1 = read_seq(agent).unwrap_or(s0);
        watcher.stop(Duration::from_secs(3));
        drop(target);
        let n = (s1 - s0) as f64;
        let us = cpu1.total_ns(tick).saturating_sub(cpu0.total_ns(tick)) as f64 / 1e3 / n;
        ctx.results.add(agent, "cpu_per_beat", us, "us");
    }
    Ok(())
}
