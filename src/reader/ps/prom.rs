//! `--prom`: Prometheus text exposition format 0.0.4, for node_exporter's textfile
//! collector.
//!
//! The collector may read the file at any moment, so write it whole and rename it into
//! place (a rename within one filesystem is atomic), for example from a systemd timer:
//!
//! ```sh
//! d=/var/lib/node_exporter/textfile
//! pidbeat ps --prom > "$d/pidbeat.prom.$$" && mv "$d/pidbeat.prom.$$" "$d/pidbeat.prom"
//! ```
//!
//! Ages are computed when `ps` runs and go stale with the file; alert on
//! `time() - pidbeat_heartbeat_timestamp_seconds` for an age that keeps counting.

use std::fmt::Write;

use crate::reader::verdict::{AgentVerdict, State};
use crate::record::Status;

pub fn render(entries: &[AgentVerdict]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, help: &str, samples: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let agent = |e: &AgentVerdict| format!("agent=\"{}\"", escape_label(&e.agent));

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
        "pidbeat_heartbeat_age_seconds",
        "Seconds since the agent's record was last written, when ps ran.",
        &mut entries.iter().filter_map(|e| {
            e.age_ms
                .map(|ms| (agent(e), (ms as f64 / 1000.0).to_string()))
        }),
    );
    family(
        "pidbeat_heartbeat_timestamp_seconds",
        "Unix time of the agent record's last write.",
        &mut entries.iter().filter_map(|e| {
            e.record
                .as_ref()
                .map(|r| (agent(e), (r.written_ms() as f64 / 1000.0).to_string()))
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
        let text = render(&[]);
        assert!(text.contains("# TYPE pidbeat_agent_up gauge"));
        assert!(text.lines().all(|l| l.starts_with('#')));
    }
}
