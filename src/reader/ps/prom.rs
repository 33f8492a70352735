//! `--prom`: Prometheus text exposition format 0.0.4, for node_exporter's textfile
//! collector: `pidbeat ps --prom --watch --output DIR/pidbeat.prom` keeps the file current
//! (see `live.rs`).
//!
//! Times are exported as Unix timestamps, never as ages, as Prometheus's naming guide asks:
//! an age is frozen when the file is written, a timestamp stays true, and
//! `time() - pidbeat_heartbeat_timestamp_seconds` is an age that keeps counting.
//! `pidbeat_run_dir_readable` and `pidbeat_build_info` are always present, so an empty fleet
//! can be told from a broken run dir, and an exposition from no exposition.

use std::fmt::Write;

use super::started_ms;
use crate::reader::activity::Activity;
use crate::reader::verdict::{AgentVerdict, State};
use crate::record::{Claim, Status};

fn secs(ms: u64) -> String {
    (ms as f64 / 1000.0).to_string()
}

/// `dir_readable`: the run dir could be listed (named agents are read without listing it).
pub fn render(entries: &[AgentVerdict], dir_readable: bool) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, help: &str, samples: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            // Prometheus's naming: a counter's name ends in `_total`.
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = match labels.as_str() {
                    "" => writeln!(out, "{name} {value}"),
                    _ => writeln!(out, "{name}{{{labels}}} {value}"),
                };
            }
        };
    let agent = |e: &AgentVerdict| format!("agent=\"{}\"", escape_label(&e.agent));

    family(
        "pidbeat_build_info",
        "Always 1; the version of pidbeat that wrote this.",
        &mut std::iter::once((
            format!("version=\"{}\"", escape_label(env!("CARGO_PKG_VERSION"))),
            "1".to_owned(),
        )),
    );
    family(
        "pidbeat_run_dir_readable",
        "1 if the run dir could be read, 0 if it is missing or unreadable (then no agent is listed).",
        &mut std::iter::once((String::new(), u8::from(dir_readable).to_string())),
    );

    family(
        "pidbeat_agent_up",
        "1 if the agent's runtime is alive and watched, else 0.",
        &mut entries
            .iter()
            .map(|e| (agent(e), u8::from(e.state == State::Alive).to_string())),
    );
    family(
        "pidbeat_agent_state",
        "The agent's pidbeat ps state: 1 for the current one, 0 for the others.",
        &mut entries.iter().flat_map(|e| {
            State::ALL.iter().map(move |s| {
                (
                    format!("{},state=\"{}\"", agent(e), s.name()),
                    u8::from(e.state == *s).to_string(),
                )
            })
        }),
    );
    family(
        "pidbeat_heartbeat_timestamp_seconds",
        "Unix time of the agent record's last write.",
        &mut entries
            .iter()
            .filter_map(|e| e.record.as_ref().map(|r| (agent(e), secs(r.written_ms())))),
    );
    family(
        "pidbeat_heartbeat_interval_seconds",
        "Seconds between the agent's heartbeats, as its watcher was told.",
        &mut entries.iter().filter_map(|e| {
            let i = e.record.as_ref()?.interval?;
            Some((agent(e), i.to_string()))
        }),
    );
    family(
        "pidbeat_agent_start_time_seconds",
        "Unix time at which the agent's runtime process started.",
        &mut entries
            .iter()
            .filter_map(|e| Some((agent(e), secs(started_ms(e)?)))),
    );
    family(
        "pidbeat_agent_death_timestamp_seconds",
        "Unix time at which a dead agent's death was observed.",
        &mut entries.iter().filter_map(|e| {
            let r = e.record.as_ref().filter(|r| r.status == Status::Dead)?;
            Some((agent(e), secs(r.died_ms?)))
        }),
    );
    family(
        "pidbeat_agent_activity",
        "A live agent's activity as pidbeat ps judges it (working, idle, waiting, stuck): 1 for the current one, 0 for the others.",
        &mut entries.iter().flat_map(|e| {
            e.activity.into_iter().flat_map(move |j| {
                Activity::ALL.iter().map(move |a| {
                    (
                        format!("{},activity=\"{}\"", agent(e), a.name()),
                        u8::from(j.activity == *a).to_string(),
                    )
                })
            })
        }),
    );
    fn progress(e: &AgentVerdict) -> Option<&crate::record::Progress> {
        let p = e.record.as_ref()?.progress.as_ref()?;
        e.activity.map(|_| p)
    }
    family(
        "pidbeat_agent_last_progress_timestamp_seconds",
        "Unix time of a live agent's last sign of progress: CPU used by its process tree, or a working claim.",
        &mut entries.iter().filter_map(|e| {
            let p = progress(e)?;
            let claim = p.claim_ms.filter(|_| p.claim == Some(Claim::Working));
            let last = p.cpu_at_ms.max(claim)?;
            Some((agent(e), secs(last)))
        }),
    );
    family(
        "pidbeat_agent_cpu_seconds_total",
        "CPU seconds of a live agent's process tree (the runtime and its live descendants); it drops when children exit without being waited for.",
        &mut entries.iter().filter_map(|e| {
            let ms = progress(e)?.cpu_ms?;
            Some((agent(e), secs(ms)))
        }),
    );
    let exits = || {
        entries.iter().filter_map(|e| {
            let r = e.record.as_ref()?;
            (r.status == Status::Dead).then_some((e, r.exit?))
        })
    };
    family(
        "pidbeat_agent_exit_code",
        "Exit code of a dead agent's runtime, when known and it exited normally.",
        &mut exits().filter_map(|(e, x)| Some((agent(e), x.code?.to_string()))),
    );
    family(
        "pidbeat_agent_exit_signal",
        "Signal that killed a dead agent's runtime, when known.",
        &mut exits().filter_map(|(e, x)| Some((agent(e), x.signal?.to_string()))),
    );
    family(
        "pidbeat_agent_exit_oom",
        "1 if the kernel's OOM killer killed a dead agent's runtime, 0 if something else ended it.",
        &mut exits().map(|(e, x)| (agent(e), u8::from(x.oom).to_string())),
    );
    out
}

/// Label values: backslash, double quote and line feed are escaped (exposition format).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: backslash and line feed are escaped; quotes are not.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-1.2@h+"), "plain-1.2@h+");
        assert_eq!(escape_help("a\\b\n\"c\""), "a\\\\b\\n\"c\"");
    }

    #[test]
    fn empty_fleet_is_valid_exposition() {
        let text = render(&[], true);
        assert!(text.contains("# TYPE pidbeat_agent_up gauge"));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                format!(
                    "pidbeat_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                ),
                "pidbeat_run_dir_readable 1".to_owned()
            ]
        );
        assert!(render(&[], false).contains("pidbeat_run_dir_readable 0\n"));
    }
}
