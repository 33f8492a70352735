//! 1, 100 and 1,000 concurrent pidfd watchers in one run dir: death latency of a random target,
//! total RSS/PSS (and PSS per added watcher across fleets), CPU per second while idle at the
//! default interval.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, Signal};

use crate::Ctx;
use crate::contenders::PIDFD;
use crate::procs::{Cpu, Proc, children_of, pss_kib, status_kib};
use crate::rundir::{DirWatch, count_records, mkdir_private};
use crate::stats::stats;

/// pidbeat's default interval plus a margin: one beat of every watcher falls in it.
const IDLE_WINDOW: Duration = Duration::from_millis(15_500);

struct Fleet {
    dir: PathBuf,
    targets: Vec<Proc>,
    watchers: Vec<Proc>,
    agents: Vec<String>,
}

impl Fleet {
    /// `n` pidfd watchers, each on its own target, all started; none waited for.
    fn spawn(ctx: &Ctx, dir: &Path, n: usize) -> Result<Fleet, String> {
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            targets: Vec::with_capacity(n),
            watchers: Vec::with_capacity(n),
            agents: Vec::with_capacity(n),
        };
        for i in 0..n {
            let agent = format!("s{n}-{i}");
            let (t, w) = PIDFD
                .spawn(ctx, dir, &agent, None)
                .map_err(|e| format!("#{i}: {e}"))?;
            fleet.targets.push(t);
            fleet.watchers.push(w);
            fleet.agents.push(agent);
        }
        Ok(fleet)
    }

    /// Replaces member `i` (its target dead, its watcher exited) and waits for its `alive`.
    fn replace(
        &mut self,
        ctx: &Ctx,
        watch: &mut DirWatch,
        i: usize,
        agent: String,
    ) -> Result<(), String> {
        let (t, w) = PIDFD.start(ctx, watch, &self.dir, &agent, None)?;
        self.targets[i] = t;
        self.watchers[i] = w;
        self.agents[i] = agent;
        Ok(())
    }

    /// Sum over the watchers of `f(pid)`, where it answers.
    fn sum(&self, f: impl Fn(i32) -> Option<u64>) -> u64 {
        self.watchers.iter().filter_map(|w| f(w.pid)).sum()
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

pub fn run_scale(ctx: &mut Ctx) -> io::Result<()> {
    let nofile = rustix::process::getrlimit(Resource::Nofile);
    let _ = rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
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
    add_pss_per_added_watcher(ctx);
    Ok(())
}

/// What one more watcher costs in memory: the growth of the total PSS between the two largest
/// fleets of this run, per watcher added. Shared pages (libc, the binary's text) are divided
/// among all sharers, so they fade out of it; a watcher's own pages do not.
fn add_pss_per_added_watcher(ctx: &mut Ctx) {
    let r = &mut ctx.results;
    let mut fleets: Vec<(usize, f64)> = ctx
        .cfg
        .scale
        .iter()
        .filter_map(|&(n, _, _)| Some((n, r.get(&format!("scale-{n}"), "total_pss")?)))
        .collect();
    fleets.sort_by_key(|&(n, _)| n);
    if let [.., (n0, mib0), (n1, mib1)] = fleets[..]
        && n1 > n0
    {
        r.add("scale", "pss_added_from", n0 as f64, "watchers");
        r.add("scale", "pss_added_to", n1 as f64, "watchers");
        let kib = (mib1 - mib0) * 1024.0 / (n1 - n0) as f64;
        r.add("scale", "pss_per_added_watcher", kib, "KiB");
    }
}

fn scale_one(ctx: &mut Ctx, n: usize, rounds: usize, idle: bool) -> Result<(), String> {
    let name = format!("scale-{n}");
    let dir = ctx.tmp.path().join(&name);
    mkdir_private(&dir).map_err(|e| e.to_string())?;
    let mut watch = DirWatch::new(&dir).map_err(|e| format!("inotify: {e}"))?;
    let t0 = Instant::now();
    let mut fleet = Fleet::spawn(ctx, &dir, n).map_err(|e| format!("spawn {e}"))?;
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
    if idle {
        measure_idle(ctx, &fleet, &name, startup);
    }
    measure_memory(ctx, &fleet, &name);
    deaths(ctx, &mut fleet, &mut watch, &name, rounds)?;
    let t = Instant::now();
    drop(fleet);
    ctx.results
        .add(&name, "teardown", t.elapsed().as_secs_f64(), "s");
    Ok(())
}

/// CPU of all watchers over one default interval (15 s), which holds exactly one beat of each
/// (every watcher started less than 15 s before the window opened).
fn measure_idle(ctx: &mut Ctx, fleet: &Fleet, name: &str, startup: Duration) {
    let tick = ctx.tick_ns;
    let cpu_ns = || fleet.sum(|pid| Some(Cpu::read(pid, tick)?.total_ns(tick)));
    let c0 = cpu_ns();
    let w0 = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let c1 = cpu_ns();
    let secs = w0.elapsed().as_secs_f64();
    let ns = c1.saturating_sub(c0) as f64;
    let r = &mut ctx.results;
    r.add(name, "idle_cpu", ns / 1e6 / secs, "ms/s");
    if startup < Duration::from_secs(14) {
        let n = fleet.watchers.len();
        r.add(name, "cpu_per_beat_idle", ns / 1e3 / n as f64, "us");
    }
}

fn measure_memory(ctx: &mut Ctx, fleet: &Fleet, name: &str) {
    let n = fleet.watchers.len() as f64;
    let rss = fleet.sum(|pid| status_kib(pid, "VmRSS:")) as f64;
    let pss = fleet.sum(pss_kib) as f64;
    let r = &mut ctx.results;
    r.add(name, "total_vmrss", rss / 1024.0, "MiB");
    r.add(name, "total_pss", pss / 1024.0, "MiB");
    r.add(name, "vmrss_per_watcher", rss / n, "KiB");
    r.add(name, "pss_per_watcher", pss / n, "KiB");
}

/// Deaths: one random target at a time; its watcher is replaced afterwards.
fn deaths(
    ctx: &mut Ctx,
    fleet: &mut Fleet,
    watch: &mut DirWatch,
    name: &str,
    rounds: usize,
) -> Result<(), String> {
    let n = fleet.watchers.len();
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let i = ctx.rng.below(n);
        let rec = format!("{}.hb", fleet.agents[i]);
        std::thread::sleep(
            ctx.rng
                .between(Duration::from_millis(5), Duration::from_millis(50)),
        );
        let timeout = Duration::from_secs(5);
        let Some(ms) = watch.time_death(&mut fleet.targets[i], &rec, timeout)? else {
            return Err(format!(
                "{} wrote no dead record within {timeout:?} (log: {})",
                fleet.agents[i],
                ctx.log_tail()
            ));
        };
        samples.push(ms);
        if fleet.watchers[i]
            .wait_exit(Duration::from_secs(3))
            .is_none()
        {
            return Err(format!("{} still running 3 s after dead", fleet.agents[i]));
        }
        fleet
            .replace(ctx, watch, i, format!("s{n}-{i}-r{round}"))
            .map_err(|e| format!("replacement watcher: {e}"))?;
    }
    if let Some(s) = stats(&samples) {
        ctx.results.add_stats(name, "death_latency", &s);
    }
    Ok(())
}
