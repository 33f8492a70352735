//! What a run found: one flat list of (contender, metric, value, unit), the notes, and the
//! failures (breakage, as opposed to a missed goal).

use crate::stats::Stats;

pub struct Entry {
    pub contender: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Default)]
pub struct Results {
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
    /// Breakage (not a missed goal): makes the bench exit 1.
    pub failures: Vec<String>,
}

impl Results {
    pub fn add(&mut self, contender: &str, metric: &str, value: f64, unit: &str) {
        self.entries.push(Entry {
            contender: contender.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
        });
    }

    /// `<prefix>_p50` … `<prefix>_mean` in ms, and `<prefix>_rounds`.
    pub fn add_stats(&mut self, contender: &str, prefix: &str, s: &Stats) {
        for (name, v) in [
            ("p50", s.p50),
            ("p90", s.p90),
            ("p99", s.p99),
            ("max", s.max),
            ("mean", s.mean),
        ] {
            self.add(contender, &format!("{prefix}_{name}"), v, "ms");
        }
        self.add(contender, &format!("{prefix}_rounds"), s.n as f64, "rounds");
    }

    pub fn get(&self, contender: &str, metric: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|e| e.contender == contender && e.metric == metric)
            .map(|e| e.value)
    }

    pub fn note(&mut self, s: String) {
        eprintln!("bench: note: {s}");
        self.notes.push(s);
    }

    pub fn fail(&mut self, s: String) {
        eprintln!("bench: FAILURE: {s}");
        self.failures.push(s);
    }

    /// A contender's run went wrong: breakage for pidbeat (it must never miss a death), a note
    /// for a baseline (reported, not judged).
    pub fn fail_or_note(&mut self, is_pidbeat: bool, s: String) {
        if is_pidbeat {
            self.fail(s);
        } else {
            self.note(s);
        }
    }
}
