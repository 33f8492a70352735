//! What a run does: the quick or full plan, adjusted by the `PIDBEAT_BENCH_*` variables.

use std::collections::HashSet;
use std::path::PathBuf;

pub struct Config {
    pub quick: bool,
    /// Latency rounds for pidfd, floor and poll (interleaved).
    pub rounds: usize,
    pub shell1_rounds: usize,
    pub shell15_rounds: usize,
    /// Beats measured at a 10 ms interval (pidbeat backends; the shell gets fewer).
    pub cost_beats: u64,
    pub shell_cost_beats: u64,
    /// (watchers, latency rounds, measure idle CPU over one default interval)
    pub scale: Vec<(usize, usize, bool)>,
    pub ps_records: usize,
    pub ps_runs: usize,
    pub only: Option<HashSet<String>>,
    pub tmp_base: PathBuf,
    pub strict: bool,
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
    pub fn from_env() -> Config {
        let quick = env_flag("PIDBEAT_BENCH_QUICK");
        let mut c = Config {
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
        };
        // CI smoke run (≲ 60 s): few rounds, no 15 s shell, no 1,000 watchers.
        if quick {
            c.rounds = 20;
            (c.shell1_rounds, c.shell15_rounds) = (3, 0);
            (c.cost_beats, c.shell_cost_beats) = (100, 30);
            c.scale = vec![(1, 5, false), (100, 5, true)];
            c.ps_runs = 3;
        }
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

    pub fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(section))
    }
}
