//! `--json`: one array of objects. Each object is `agent`, `state`, `age_ms` (null when it
//! cannot be known), `started_ms` (Unix ms of the target's start, from its `start_time`; null
//! when unknown), `foreign_pids` (the record's PIDs are another PID namespace's), `activity`
//! and `idle_ms` (a live agent's activity as `activity.rs` judges it; null for ended agents
//! and records without evidence), `status_text` (its last `STATUS=`), then the
//! record's own keys in the record's order (unknown keys included, a key that would clash
//! with ours dropped). A corrupt record gives `agent`, `state`, `error` instead.
//! Objects are written by hand: serde_json's `Map` would sort the keys. For the same reason
//! `exit` is written from the typed record, in the order pidbeat writes it (`code`, `signal`,
//! `core`), whenever those three are all it holds. Everything goes into
//! one buffer, each key and value serialized in place (10,000 agents make one allocation
//! that grows, not tens of thousands of small strings).

use serde::Serialize;
use serde_json::Value;

use super::started_ms;
use crate::reader::text::json_safe;
use crate::reader::verdict::AgentVerdict;

const OURS: [&str; 8] = [
    "agent",
    "state",
    "age_ms",
    "started_ms",
    "foreign_pids",
    "activity",
    "idle_ms",
    "status_text",
];

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
            pair(out, "started_ms", &started_ms(e));
            out.push(b',');
            pair(out, "foreign_pids", &e.foreign_pids);
            out.push(b',');
            pair(out, "activity", &e.activity.map(|a| a.activity.name()));
            out.push(b',');
            pair(out, "idle_ms", &e.activity.map(|a| a.idle_ms));
            out.push(b',');
            let status = e.record.as_ref().and_then(|r| r.progress.as_ref());
            pair(
                out,
                "status_text",
                &status.and_then(|p| p.status_text.as_deref()),
            );
        }
    }
    // A corrupt local record has no fields; a corrupt value in etcd still has its `host`.
    let exit = e.record.as_ref().and_then(|r| r.exit);
    for (k, v) in e.fields.iter().filter(|(k, _)| !OURS.contains(&&**k)) {
        out.push(b',');
        match exit {
            Some(exit) if k == "exit" && is_exit_info(v) => pair(out, k, &exit),
            _ => pair(out, k, v),
        }
    }
    out.push(b'}');
}

/// Whether `v` is an object of exactly `ExitInfo`'s keys (so the typed form drops nothing):
/// `code`, `signal`, `core`, and `oom` when it is true.
fn is_exit_info(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        let oom = o.get("oom").map(|v| v == true);
        o.len() == 3 + usize::from(oom == Some(true))
            && oom != Some(false)
            && ["code", "signal", "core"]
                .iter()
                .all(|k| o.contains_key(*k))
    })
}

fn pair<V: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &V) {
    // Writing strings, numbers and `Value`s into a Vec cannot fail.
    serde_json::to_writer(&mut *out, key).expect("a key serializes");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("a value serializes");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::verdict::State;
    use crate::record;

    fn rendered(line: &str) -> String {
        let (record, fields) = record::parse(line.as_bytes()).unwrap();
        let e = AgentVerdict {
            agent: "a".into(),
            state: State::Dead,
            record: Some(record),
            fields,
            error: None,
            unreadable: false,
            age_ms: Some(0),
            foreign_pids: false,
            unsettled: None,
            activity: None,
        };
        render(&[e], false)
    }

    #[test]
    fn exit_keeps_the_files_key_order() {
        let out = rendered(
            r#"{"ts":1,"pid":2,"status":"dead","exit":{"code":null,"signal":9,"core":false}}"#,
        );
        assert!(
            out.contains(r#""exit":{"code":null,"signal":9,"core":false}"#),
            "{out}"
        );
        // Keys the typed form does not know are kept (sorted, as serde_json has them).
        let out = rendered(
            r#"{"ts":1,"pid":2,"status":"dead","exit":{"core":false,"why":"oom","code":1}}"#,
        );
        assert!(
            out.contains(r#""exit":{"code":1,"core":false,"why":"oom"}"#),
            "{out}"
        );
    }
}
