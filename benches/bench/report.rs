//! The report: markdown tables on stdout and `target/bench/results.json`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::contenders::{FLOOR, PIDFD, POLL, SHELL1, SHELL15};
use crate::forks::ForkCounter;
use crate::goals::Goal;
use crate::results::Results;
use crate::stats::fmt;
use crate::{Ctx, MANIFEST_DIR, PIDBEAT};

/// A table's head: the column names (`a | b`) and, under them, the alignment row.
fn head(s: &mut String, cols: &str, align: &str) {
    let _ = writeln!(s, "| {cols} |\n{align}");
}

fn row(s: &mut String, cells: impl IntoIterator<Item = String>) {
    let cells: Vec<String> = cells.into_iter().collect();
    let _ = writeln!(s, "| {} |", cells.join(" | "));
}

/// `contender`'s metrics as cells, each with its decimals.
fn cells<'a>(
    r: &'a Results,
    contender: &'a str,
    cols: &'a [(&str, usize)],
) -> impl Iterator<Item = String> + 'a {
    cols.iter()
        .map(move |&(m, prec)| fmt(r.get(contender, m), prec))
}

pub fn markdown(ctx: &Ctx, goals: &[Goal]) -> String {
    let mut s = String::new();
    preamble(&mut s, ctx);
    latency(&mut s, &ctx.results);
    cost(&mut s, ctx);
    scale(&mut s, ctx);
    ps(&mut s, &ctx.results);
    ratios(&mut s, &ctx.results);
    goals_table(&mut s, goals);
    notes(&mut s, &ctx.results);
    s
}

fn preamble(s: &mut String, ctx: &Ctx) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "## pidbeat bench ({} mode) — kernel {}, {cores} cores, run dirs in {} ({})\n",
        if ctx.cfg.quick { "quick" } else { "full" },
        kernel.trim(),
        ctx.cfg.tmp_base.display(),
        ctx.fs_name
    );
    let r = &ctx.results;
    if let Some(w) = r.get("env", "record_write_p50") {
        let _ = writeln!(
            s,
            "One record write there (create + write + rename, measured before the rounds): \
             p50 {w:.3} ms, p99 {} ms.\n",
            fmt(r.get("env", "record_write_p99"), 3)
        );
    }
}

fn latency(s: &mut String, r: &Results) {
    const COLS: [(&str, usize); 6] = [
        ("death_latency_rounds", 0),
        ("death_latency_p50", 3),
        ("death_latency_p90", 3),
        ("death_latency_p99", 3),
        ("death_latency_max", 3),
        ("death_latency_mean", 3),
    ];
    let _ = writeln!(
        s,
        "### Death → `dead` latency as a reader sees it (kill() → dead record read after inotify)\n"
    );
    head(
        s,
        "contender | rounds | p50 ms | p90 ms | p99 ms | max ms | mean ms | kill delay after `alive`",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    );
    for c in [&PIDFD, &FLOOR, &POLL, &SHELL1, &SHELL15] {
        if r.get(c.name, "death_latency_rounds").is_none() {
            continue;
        }
        let (lo, hi) = c.kill_delay();
        let delay = format!("U({}–{} ms)", lo.as_millis(), hi.as_millis());
        row(
            s,
            [c.name.to_owned()]
                .into_iter()
                .chain(cells(r, c.name, &COLS))
                .chain([delay]),
        );
    }
    let _ = writeln!(
        s,
        "\npidbeat runs at its default 15 s interval here; the kill delay of a poller spans its \
         whole check period so the death lands at a random phase.\n"
    );
}

fn cost(s: &mut String, ctx: &Ctx) {
    let r = &ctx.results;
    let _ = writeln!(s, "### Cost per beat (interval 10 ms)\n");
    head(
        s,
        "contender | beats | period ms | CPU µs/beat | (ticks only) | forks/beat | VmHWM KiB | RssAnon KiB | PSS KiB | size bytes",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for c in ["pidfd", "pidfd-bare", "floor", "poll", "shell-1s"] {
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
        row(
            s,
            [c.to_owned()]
                .into_iter()
                .chain(cells(
                    r,
                    c,
                    &[
                        ("beats_measured", 0),
                        ("beat_period", 2),
                        ("cpu_per_beat", 1),
                        ("cpu_per_beat_ticks", 1),
                    ],
                ))
                .chain([forks, fmt(hwm, 0)])
                .chain(cells(r, c, &[("rss_anon", 0), ("pss", 0)]))
                .chain([fmt(size, 0)]),
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
}

fn scale(s: &mut String, ctx: &Ctx) {
    const COLS: [(&str, usize); 11] = [
        ("death_latency_rounds", 0),
        ("death_latency_p50", 3),
        ("death_latency_p99", 3),
        ("death_latency_max", 3),
        ("total_vmrss", 1),
        ("total_pss", 1),
        ("vmrss_per_watcher", 0),
        ("pss_per_watcher", 0),
        ("idle_cpu", 3),
        ("cpu_per_beat_idle", 1),
        ("startup_all_alive", 2),
    ];
    let r = &ctx.results;
    let fleets: Vec<(usize, String)> = (ctx.cfg.scale.iter())
        .map(|&(n, _, _)| (n, format!("scale-{n}")))
        .filter(|(_, c)| r.get(c, "vmrss_per_watcher").is_some())
        .collect();
    if fleets.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "### Scale: N pidfd watchers, one run dir, default interval (15 s)\n"
    );
    head(
        s,
        "watchers | deaths | p50 ms | p99 ms | max ms | total VmRSS MiB | total PSS MiB | VmRSS/watcher KiB | PSS/watcher KiB | idle CPU ms/s | CPU µs/beat (15 s) | all alive after s",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (n, c) in &fleets {
        row(s, [n.to_string()].into_iter().chain(cells(r, c, &COLS)));
    }
    let _ = writeln!(
        s,
        "\nVmRSS counts shared pages (libc, the binary's text) in every watcher; PSS shares them out."
    );
    if let Some(v) = r.get("scale", "pss_per_added_watcher") {
        let _ = writeln!(
            s,
            "PSS per added watcher (total PSS growth from {} to {} watchers, per watcher): \
             {v:.0} KiB.",
            fmt(r.get("scale", "pss_added_from"), 0),
            fmt(r.get("scale", "pss_added_to"), 0)
        );
    }
    let _ = writeln!(s);
}

fn ps(s: &mut String, r: &Results) {
    if r.get("ps", "ps_json_p50").is_none() {
        return;
    }
    let _ = writeln!(s, "### Fleet read\n");
    head(
        s,
        "command | records | runs | p50 ms | max ms",
        "|---|---:|---:|---:|---:|",
    );
    let cols = [
        ("ps_json_records", 0),
        ("ps_json_runs", 0),
        ("ps_json_p50", 1),
        ("ps_json_max", 1),
    ];
    let name = "`pidbeat ps --json`".to_owned();
    row(s, [name].into_iter().chain(cells(r, "ps", &cols)));
    let _ = writeln!(s);
}

fn ratios(s: &mut String, r: &Results) {
    let mut ratios = r
        .entries
        .iter()
        .filter(|e| e.contender == "ratio")
        .peekable();
    if ratios.peek().is_none() {
        return;
    }
    let _ = writeln!(s, "### Ratios (same run)\n");
    head(s, "ratio | value", "|---|---:|");
    for e in ratios {
        row(s, [e.metric.clone(), format!("{:.2}{}", e.value, e.unit)]);
    }
    let _ = writeln!(s);
}

fn goals_table(s: &mut String, goals: &[Goal]) {
    let _ = writeln!(s, "### Goals\n");
    if goals.iter().any(|g| !g.judged) {
        let _ = writeln!(
            s,
            "**Quick mode is a smoke run, not a goal check.** Its few rounds, on a machine \
             that may be running other work, show that the bench builds and runs. Only the \
             goals no load changes (forks per beat, PSS per added watcher) are judged; run \
             `cargo bench` without `PIDBEAT_BENCH_QUICK` on a quiet machine to check the \
             others.\n"
        );
    }
    head(s, "goal | target | measured | met", "|---|---|---|---|");
    for g in goals {
        let met = match (g.judged, g.met) {
            (false, _) => "not judged (smoke run)",
            (true, Some(true)) => "yes",
            (true, Some(false)) => "**NO**",
            (true, None) => "not measured",
        };
        row(
            s,
            [
                g.what.clone(),
                g.target.clone(),
                g.measured.clone(),
                met.into(),
            ],
        );
    }
}

fn notes(s: &mut String, r: &Results) {
    if r.notes.is_empty() && r.failures.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n### Notes\n");
    for n in &r.failures {
        let _ = writeln!(s, "- FAILURE: {n}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "- {n}");
    }
}

fn number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// Every entry as `{contender, metric, value, unit}`, then every goal as an entry of the
/// contender `goal` that adds its `target`, `limit`, `met` (`null`: not measured, or not
/// judged) and `judged` (false: a quick run's figure, shown but not judged).
pub fn write_json(r: &Results, goals: &[Goal]) -> io::Result<PathBuf> {
    let dir = Path::new(PIDBEAT)
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| Path::new(MANIFEST_DIR).join("target"), Path::to_path_buf)
        .join("bench");
    fs::create_dir_all(&dir)?;
    let entries = r.entries.iter().map(|e| {
        serde_json::json!({
            "contender": e.contender,
            "metric": e.metric,
            "value": number(e.value),
            "unit": e.unit,
        })
    });
    let goals = goals.iter().map(|g| {
        serde_json::json!({
            "contender": "goal",
            "metric": g.id,
            "value": g.value.map(number),
            "unit": g.unit,
            "what": g.what,
            "target": g.target,
            "limit": number(g.limit),
            "measured": g.measured,
            "met": g.met,
            "judged": g.judged,
        })
    });
    let arr: Vec<serde_json::Value> = entries.chain(goals).collect();
    let path = dir.join("results.json");
    let mut text = serde_json::to_string_pretty(&arr).map_err(io::Error::other)?;
    text.push('\n');
    fs::write(&path, text)?;
    Ok(path)
}
