//! `--json`: one array of objects. Each object is `agent`, `state`, `age_ms`, then the
//! record's own keys in the record's order (unknown keys included, a key that would clash
//! with ours dropped). A corrupt record gives `agent`, `state`, `error` instead.
//! Objects are written by hand: serde_json's `Map` would sort the keys.

use serde_json::Value;

use crate::fleet::Entry;

const OURS: [&str; 3] = ["agent", "state", "age_ms"];

/// `pretty`: one object per line (still one JSON document); otherwise the whole array on
/// one line, as `ps --watch --json` prints one frame per line.
pub fn render(entries: &[Entry], pretty: bool) -> String {
    if entries.is_empty() {
        return "[]\n".into();
    }
    let objects: Vec<String> = entries.iter().map(object).collect();
    if pretty {
        format!("[\n{}\n]\n", objects.join(",\n"))
    } else {
        format!("[{}]\n", objects.join(","))
    }
}

fn object(e: &Entry) -> String {
    let mut pairs: Vec<(&str, Value)> = vec![
        ("agent", e.agent.as_str().into()),
        ("state", e.state.name().into()),
    ];
    match &e.error {
        Some(err) => pairs.push(("error", err.as_str().into())),
        None => {
            pairs.push(("age_ms", e.age_ms.into()));
            pairs.extend(
                e.fields
                    .iter()
                    .filter(|(k, _)| !OURS.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.clone())),
            );
        }
    }
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    format!("{{{}}}", body.join(","))
}
