//! `--json`: one array of objects. Each object is `agent`, `state`, `age_ms` (null when it
//! cannot be known), `foreign_pids` (the record's PIDs are another PID namespace's), then the
//! record's own keys in the record's order (unknown keys included, a key that would clash
//! with ours dropped). A corrupt record gives `agent`, `state`, `error` instead.
//! Objects are written by hand: serde_json's `Map` would sort the keys. Everything goes into
//! one buffer, each key and value serialized in place (10,000 agents make one allocation
//! that grows, not tens of thousands of small strings).

use serde::Serialize;

use crate::reader::text::json_safe;
use crate::reader::verdict::AgentVerdict;

const OURS: [&str; 4] = ["agent", "state", "age_ms", "foreign_pids"];

/// `pretty`: one object per line (still one JSON document); otherwise the whole array on
/// one line, as `ps --watch --json` prints one frame per line.
pub fn render(entries: &[AgentVerdict], pretty: bool) -> String {
    if entries.is_empty() {
        return "[]\n".into();
    }
    // A pidbeat record is about 300 bytes; ours add some.
    let mut out = Vec::with_capacity(entries.len() * 384);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if pretty {
            out.push(b'\n');
        }
        object(&mut out, e);
    }
    if pretty {
        out.push(b'\n');
    }
    out.extend_from_slice(b"]\n");
    json_safe(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// One agent's object (what `publish` puts to etcd, too).
pub(crate) fn object(out: &mut Vec<u8>, e: &AgentVerdict) {
    out.push(b'{');
    pair(out, "agent", e.agent.as_str());
    out.push(b',');
    pair(out, "state", e.state.name());
    match &e.error {
        Some(err) => {
            out.push(b',');
            pair(out, "error", err.as_str());
        }
        None => {
            out.push(b',');
            pair(out, "age_ms", &e.age_ms);
            out.push(b',');
            pair(out, "foreign_pids", &e.foreign_pids);
        }
    }
    // A corrupt local record has no fields; a corrupt value in etcd still has its `host`.
    for (k, v) in e.fields.iter().filter(|(k, _)| !OURS.contains(&&**k)) {
        out.push(b',');
        pair(out, k, v);
    }
    out.push(b'}');
}

fn pair<V: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &V) {
    // Writing strings, numbers and `Value`s into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("a key serializes");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("a value serializes");
}
