//! The goals a run is judged by, and the ratios against the baselines of the same run.

use crate::report::fmt;
use crate::results::Results;

pub struct Goal {
    pub what: String,
    pub target: String,
    /// The number judged, in `unit`.
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The most `value` may be.
    pub limit: f64,
    /// `value` with what it was computed from, for the table.
    pub measured: String,
    pub met: Option<bool>,
}

impl Goal {
    fn at_most(value: Option<f64>, limit: f64) -> Goal {
        Goal {
            what: String::new(),
            target: String::new(),
            value,
            unit: "",
            limit,
            measured: String::new(),
            met: value.map(|v| v <= limit),
        }
    }

    fn what(mut self, what: impl Into<String>) -> Goal {
        self.what = what.into();
        self
    }

    /// `value` in `unit`, with `prec` decimals; the target reads `≤ limit unit`.
    fn in_unit(mut self, unit: &'static str, prec: usize) -> Goal {
        self.unit = unit;
        self.target = format!("≤ {} {}", self.limit, show_unit(unit));
        self.measured = format!("{} {}", fmt(self.value, prec), show_unit(unit));
        self
    }

    /// A ratio: the target reads `≤ limit×`, the value is followed by what it is made of.
    fn ratio(mut self, of_what: String) -> Goal {
        self.unit = "x";
        self.target = format!("≤ {}×", self.limit);
        self.measured = format!("{}×", fmt(self.value, 2));
        if !of_what.is_empty() {
            self.measured = format!("{} {of_what}", self.measured);
        }
        self
    }
}

fn show_unit(unit: &str) -> &str {
    if unit == "us" { "µs" } else { unit }
}

/// `a`'s `metric` over `b`'s, if both were measured.
pub fn ratio(r: &Results, a: &str, b: &str, metric: &str) -> Option<f64> {
    let (x, y) = (r.get(a, metric)?, r.get(b, metric)?);
    (y > 0.0).then(|| x / y)
}

pub fn goals(r: &Results) -> Vec<Goal> {
    const P99: &str = "death_latency_p99";
    let mut g = vec![
        Goal::at_most(r.get("pidfd", P99), 1.0)
            .what("pidfd death latency p99")
            .in_unit("ms", 3),
        Goal::at_most(ratio(r, "pidfd", "floor", P99), 1.5)
            .what("pidfd p99 / floor p99 (same run)")
            .ratio(String::new()),
    ];
    for c in ["pidfd", "poll"] {
        g.push(forks_goal(r, c));
        g.push(cpu_goal(r, c));
    }
    g.extend(rss_goals(r));
    g.push(
        Goal::at_most(r.get("scale-1000", P99), 5.0)
            .what("1,000 watchers: death latency p99")
            .in_unit("ms", 3),
    );
    g.push(
        Goal::at_most(r.get("ps", "ps_json_p50"), 100.0)
            .what("`ps --json` over 10,000 records, p50")
            .in_unit("ms", 1),
    );
    g
}

/// CPU per beat of a pidbeat backend.
fn cpu_goal(r: &Results, c: &'static str) -> Goal {
    let mut g = Goal::at_most(r.get(c, "cpu_per_beat"), 50.0)
        .what(format!("CPU per beat ({c})"))
        .in_unit("us", 1);
    g.measured += &format!(" (floor: {} µs)", fmt(r.get("floor", "cpu_per_beat"), 1));
    g
}

/// No forks per beat. Without the proc connector the count is system-wide, an upper bound:
/// 0 proves the goal, more proves nothing.
fn forks_goal(r: &Results, c: &'static str) -> Goal {
    let exact = r.get(c, "forks_per_beat");
    let bound = r.get(c, "forks_per_beat_systemwide");
    let mut g = Goal::at_most(exact.or(bound), 0.0).what(format!("forks per beat ({c})"));
    g.unit = "forks";
    g.target = "0".into();
    g.measured = match (exact, bound) {
        (Some(v), _) => format!("{v:.3}"),
        (None, Some(v)) => format!("{v:.3} (system-wide bound)"),
        _ => "–".into(),
    };
    g.met = exact
        .map(|v| v == 0.0)
        .or(bound.filter(|&v| v == 0.0).map(|_| true));
    g
}

fn rss_goals(r: &Results) -> [Goal; 2] {
    let mut hwm = Goal::at_most(r.get("pidfd", "vmhwm"), 2048.0)
        .what("peak RSS of one watcher (VmHWM, pidfd)")
        .in_unit("KiB", 0);
    hwm.measured += &format!(" (floor: {} KiB)", fmt(r.get("floor", "vmhwm"), 0));
    let per = r
        .get("scale-1000", "vmrss_per_watcher")
        .or(r.get("scale-100", "vmrss_per_watcher"));
    let per = Goal::at_most(per, 2048.0)
        .what("VmRSS per watcher in the largest fleet")
        .in_unit("KiB", 0);
    [hwm, per]
}

pub fn add_ratios(r: &mut Results) {
    const P50: &str = "death_latency_p50";
    const P99: &str = "death_latency_p99";
    const CPU: &str = "cpu_per_beat";
    let pairs = [
        ("pidfd_p99/floor_p99", "pidfd", "floor", P99),
        ("pidfd_p50/floor_p50", "pidfd", "floor", P50),
        ("shell_p50/pidfd_p50", "shell-1s", "pidfd", P50),
        ("shell15_p50/pidfd_p50", "shell-15s", "pidfd", P50),
        ("poll_p50/pidfd_p50", "poll", "pidfd", P50),
        ("shell_cpu/pidfd_cpu per beat", "shell-1s", "pidfd", CPU),
        ("pidfd_cpu/floor_cpu per beat", "pidfd", "floor", CPU),
    ];
    for (name, a, b, m) in pairs {
        if let Some(x) = ratio(r, a, b, m) {
            r.add("ratio", name, x, "x");
        }
    }
}
