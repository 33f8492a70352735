//! `cargo bench`: pidbeat against its baselines, every contender on the same work, in one run.
//!
//! Contenders: `pidbeat watch --backend pidfd`, `pidbeat watch --backend poll`, the bash
//! sidecar `scripts/hb-sidecar.sh` at 1 s and 15 s, and the *floor* (`benches/floor.rs`: the
//! least code that can do the job: pidfd_open + epoll_wait + one write and rename).
//!
//! Sections (each can be chosen with `PIDBEAT_BENCH_ONLY=latency,cost,scale,ps`), one module
//! each:
//! - **latency**: death → `dead` as a reader sees it. The bench starts a `sleep` target and the
//!   watcher as two children (the target is not the watcher's child), waits for `alive`, waits a
//!   random delay, then takes a timestamp, SIGKILLs and reaps the target and blocks on inotify
//!   (IN_MOVED_TO on the run dir) until the record it reads says `dead`. pidfd, floor and poll
//!   rounds are interleaved so that background load hits them alike.
//! - **cost**: CPU and forks per beat at a 10 ms interval, peak RSS, binary sizes; forks are
//!   counted by `forks` (the kernel's proc connector).
//! - **scale**: 1, 100 and 1,000 concurrent pidfd watchers in one run dir: death latency of a
//!   random target, total RSS/PSS and PSS per added watcher, CPU per second while idle at the
//!   default interval.
//! - **ps**: `pidbeat ps --json` over 10,000 generated records.
//! - **soak** (only when named in `PIDBEAT_BENCH_ONLY`): 3 min at `--interval 0.001` on both
//!   backends (flat VmRSS and fd count), and 200 run-dir recreations (no fd growth).
//!
//! Output (`report`): markdown tables on stdout (progress on stderr) and
//! `target/bench/results.json`, both with the goals (`goals`) and whether each was met. Goals
//! that depend on the machine are ratios against what the same run measured: CPU per beat
//! against the floor's, memory as PSS per added watcher.
//!
//! Helpers: `config` (the plan), `contenders` (how each is started), `procs` (children that
//! die with the bench, /proc readers), `rundir` (the inotify reader of a run dir), `stats`,
//! `results`.
//!
//! Environment:
//! - `PIDBEAT_BENCH_QUICK=1`: CI smoke run (≲ 60 s): few rounds, no 15 s shell, no 1,000.
//!   It judges only the goals no load changes (forks, memory); the others are shown as
//!   "not judged" (`goals::smoke_run`).
//! - `PIDBEAT_BENCH_ROUNDS=N`: latency rounds for pidfd, floor and poll.
//! - `PIDBEAT_BENCH_SHELL_ROUNDS=A,B`: rounds for the 1 s and the 15 s shell (0 skips).
//! - `PIDBEAT_BENCH_ONLY=…`: comma-separated sections to run.
//! - `PIDBEAT_BENCH_SOAK_SECS=N`: the soak's length (default 180).
//! - `PIDBEAT_BENCH_TMPDIR=DIR`: where the temp run dirs go (default: the system temp dir;
//!   e.g. /dev/shm to take the disk out of the numbers).
//! - `PIDBEAT_BENCH_STRICT=1`: exit 1 when a goal is missed (otherwise only breakage fails).

mod config;
mod contenders;
mod cost;
mod forks;
mod goals;
mod latency;
mod procs;
mod ps;
mod report;
mod results;
mod rundir;
mod scale;
mod soak;
mod stats;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::contenders::{Contender, Kind};
use crate::forks::ForkCounter;
use crate::procs::sweep_children;
use crate::results::Results;
use crate::rundir::mkdir_private;
use crate::stats::Rng;

const PIDBEAT: &str = env!("CARGO_BIN_EXE_pidbeat");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// What every section shares: the plan, the temp dir and the watchers' log, the contenders'
/// programs, and the results so far.
pub struct Ctx {
    pub cfg: Config,
    pub tmp: tempfile::TempDir,
    pub log: fs::File,
    log_path: PathBuf,
    pub rng: Rng,
    /// Set up by the cost section, which is the one that counts forks.
    pub forks: Option<ForkCounter>,
    /// One clock tick (utime, stime) in ns.
    pub tick_ns: u64,
    pub floor: Option<PathBuf>,
    pub shell: PathBuf,
    /// The file system under the run dirs (set by the latency section's probe).
    pub fs_name: String,
    pub results: Results,
}

impl Ctx {
    /// The watchers' last stderr lines, for an error message.
    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Whether the contender's program exists here.
    pub fn has(&self, c: &Contender) -> bool {
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
impl Ctx {
    /// The temp dir (in `cfg.tmp_base`), the log every child writes its stderr to, and where
    /// the contenders' programs are.
    fn new(cfg: Config) -> Result<Ctx, String> {
        if !Path::new(PIDBEAT).is_file() {
            return Err(format!("{PIDBEAT} is missing"));
        }
        let base = cfg.tmp_base.display().to_string();
        mkdir_private(&cfg.tmp_base).map_err(|e| format!("cannot use {base}: {e}"))?;
        let tmp = tempfile::Builder::new()
            .prefix("pidbeat-bench.")
            .tempdir_in(&cfg.tmp_base)
            .map_err(|e| format!("cannot create a temp dir in {base}: {e}"))?;
        let log_path = tmp.path().join("watchers.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("cannot create the watchers' log: {e}"))?;
        Ok(Ctx {
            cfg,
            tmp,
            log,
            log_path,
            rng: Rng::seeded(),
            forks: None,
            tick_ns: 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1),
            floor: locate_floor(),
            shell: Path::new(MANIFEST_DIR).join("scripts/hb-sidecar.sh"),
            fs_name: "?".into(),
            results: Results::default(),
        })
    }
}

fn main() {
    let begun = Instant::now();
    // Orphans (a killed shell's `sleep`) come to us, so nothing is left behind unreaped.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut ctx = match Ctx::new(Config::from_env()) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
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
        ("latency", latency::run_latency),
        ("cost", cost::run_cost),
        ("scale", scale::run_scale),
        ("ps", ps::run_ps),
    ];
    // The soak takes minutes: only when named.
    let soak: (&str, Section) = ("soak", soak::run_soak);
    for (name, f) in sections.into_iter().chain([soak]) {
        if !ctx.cfg.wants(name) || (name == "soak" && !ctx.cfg.names(name)) {
            continue;
        }
        let t = Instant::now();
        if let Err(e) = f(&mut ctx) {
            ctx.results.fail(format!("{name}: {e}"));
        }
        eprintln!("bench: {name} done in {:.1?}", t.elapsed());
    }
    goals::add_ratios(&mut ctx.results);
    let left = sweep_children();
    if left > 0 {
        ctx.results.note(format!(
            "{left} stray processes were killed and reaped at the end"
        ));
    }

    let mut goals = goals::goals(&ctx.results);
    if ctx.cfg.quick {
        goals::smoke_run(&mut goals);
    }
    print!("{}", report::markdown(&ctx, &goals));
    match report::write_json(&ctx.results, &goals) {
        Ok(p) => println!(
            "\nResults: {} (bench took {:.0?})",
            p.display(),
            begun.elapsed()
        ),
        Err(e) => ctx.results.fail(format!("cannot write results.json: {e}")),
    }
    let missed = goals.iter().any(|g| g.met == Some(false));
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
