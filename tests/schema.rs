//! The JSON Schemas under docs/ (draft 2020-12) hold for what pidbeat really writes and
//! prints: records of every status from real watchers, `run` and the shell sidecar, and a
//! `ps --json` element of every state. They also refuse what the contract forbids, so that a
//! schema that accepts anything fails here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use jsonschema::Validator;
use serde_json::{Value, json};

const SEC: Duration = Duration::from_secs(1);

fn schema_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

/// The schema in docs/`name`, itself checked against the 2020-12 meta-schema. Its relative
/// `$ref`s resolve against its own path, as they would for a consumer of the files.
fn validator(name: &str) -> Validator {
    let path = schema_path(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{name}"
    );
    jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{name} is no schema: {e}"));
    jsonschema::options()
        .with_base_uri(format!("file://{}", path.display()))
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_valid(v: &Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} fails its schema: {doc}\n{errors:#?}"
    );
}

/// Runs `pidbeat run` for CMD to completion in the sandbox's run dir.
fn run_to_end(sb: &Sandbox, agent: &str, cmd: &[&str]) -> Out {
    run_with_deadline(sb.run_cmd(agent, &[], cmd), 10 * SEC)
}

fn me_pid() -> i32 {
    std::process::id() as i32
}

/// A record as a watcher writes it, for states that real processes cannot hold still for.
fn planted(pid: i32, watcher_pid: i32, age_ms: u64) -> Record {
    let ms = now_ms() - age_ms;
    Record {
        ts: ms / 1000,
        pid,
        status: Status::Alive,
        ts_ms: Some(ms),
        seq: Some(1),
        interval: Some(0.1),
        backend: Some("pidfd".into()),
        watcher_pid: Some(watcher_pid),
        start_time: Some(start_time(watcher_pid).unwrap()),
        exit: None,
        died_ms: None,
        watcher_start_time: Some(start_time(watcher_pid).unwrap()),
        boot_id: None,
        boottime_ms: None,
        pidns: None,
        exit_unknown: None,
    }
}

#[test]
fn real_records_and_ps_json_match_the_schemas() {
    let record = validator("record.schema.json");
    let entry = validator("ps-entry.schema.json");
    let sb = Sandbox::new();
    let run = sb.run_dir();

    // alive, then unwatched: a real watcher, stopped by SIGTERM while its target lives.
    let (t1, t2) = (spawn_sleep(), spawn_sleep());
    let mut stays = sb.watch_alive(t1.pid(), "stays", &["--interval", "0.05"]);
    // hung: a watchdog nobody feeds (its expiry is written at once).
    let mut hung = sb.watch_alive(t1.pid(), "hung", &["--watchdog", "0.1s"]);
    wait_record(&sb.record_path("hung"), 5 * SEC, |v| {
        let p = &v["progress"];
        v["ts_ms"].as_u64() > p["watchdog_ms"].as_u64().map(|w| w + 100)
    });
    let stopped = sb.watch_alive(t2.pid(), "stopped", &[]);
    signal(stopped.pid(), Signal::TERM);
    stopped.reap_within(5 * SEC);
    sb.wait_status("stopped", "unwatched", 5 * SEC);

    // dead with a code and by a signal: `run`'s own children, whose status is exact.
    assert_eq!(
        run_to_end(&sb, "code7", &["sh", "-c", "exit 7"]).code(),
        Some(7)
    );
    let killed = run_to_end(&sb, "sig9", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.code(), Some(137));

    // The shell baseline sidecar's records, alive then dead.
    let t3 = spawn_sleep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hb-sidecar.sh");
    let mut side = sb.cmd_of("bash");
    side.arg(&script)
        .args([
            "--pid",
            &t3.pid().to_string(),
            "--agent",
            "side",
            "--interval",
            "0.1",
        ])
        .arg("--run-dir")
        .arg(&run);
    let mut side = Guard::spawn(side.stdout(std::process::Stdio::null()));
    let side_alive = sb.wait_status("side", "alive", 5 * SEC);
    assert_valid(&record, &side_alive, "the sidecar's alive record");
    drop(t3);
    sb.wait_status("side", "dead", 5 * SEC);
    assert!(
        side.wait_timeout(5 * SEC).is_some(),
        "the sidecar did not exit"
    );

    // dead with its status unknowable: the target reaped (by us) before the poll backend
    // saw a zombie, so the watcher writes `exit_unknown: "reaped"`.
    let mut t4 = spawn_sleep();
    let t4_pid = t4.pid();
    let mut reaped = sb.watch_alive(t4_pid, "reaped", &["--backend", "poll"]);
    t4.kill();
    let unknown = wait_record(&sb.record_path("reaped"), 5 * SEC, |v| {
        v.get("exit_unknown").is_some()
    });
    assert_eq!(
        (
            &unknown["status"],
            &unknown["exit"],
            &unknown["exit_unknown"]
        ),
        (&json!("dead"), &Value::Null, &json!("reaped")),
        "{unknown}"
    );
    assert!(reaped.wait_timeout(5 * SEC).is_some(), "watcher stayed");
    // And `hidden`, which needs root and another user's zombie to happen: planted.
    let mut hidden = planted(me_pid(), me_pid(), 0);
    (hidden.status, hidden.pid) = (Status::Dead, exited_pid());
    hidden.died_ms = hidden.ts_ms;
    hidden.exit_unknown = Some("hidden".into());
    sb.plant("hidden", &hidden);

    let alive = read_record(&sb.record_path("stays")).unwrap();
    assert_eq!(alive["status"], "alive");
    // A current watcher stamps its boot and PID namespace: the schema types them.
    for key in ["boot_id", "boottime_ms", "pidns"] {
        assert!(
            alive.get(key).is_some_and(|v| !v.is_null()),
            "{key}: {alive}"
        );
    }
    let code7 = read_record(&sb.record_path("code7")).unwrap();
    assert_eq!(
        code7["exit"],
        json!({"code": 7, "signal": null, "core": false})
    );
    let sig9 = read_record(&sb.record_path("sig9")).unwrap();
    assert_eq!(sig9["exit"]["signal"], 9);
    for agent in [
        "stays", "hung", "stopped", "code7", "sig9", "side", "reaped", "hidden",
    ] {
        let r = read_record(&sb.record_path(agent)).unwrap();
        assert_valid(&record, &r, &format!("{agent}'s record"));
    }

    // The states no real process holds still for: stale (an old beat, the target alive and
    // the lock held), lost (the target and the watcher gone) and corrupt.
    let me = me_pid();
    let mut old = planted(me, me, 60_000);
    old.pid = t1.pid();
    old.start_time = Some(start_time(t1.pid()).unwrap());
    sb.plant("old", &old);
    let _lock = sb.hold_lock("old");
    let gone = exited_pid();
    let mut lost = planted(me, me, 0);
    (lost.pid, lost.watcher_pid) = (gone, Some(gone));
    sb.plant("gone", &lost);
    std::fs::write(run.join("junk.hb"), "{\"ts\":").unwrap();

    let out = sb.ps(&["--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = out.utf8_stdout();
    let all: Value = serde_json::from_str(text).unwrap();
    let mut states: Vec<&str> = Vec::new();
    for e in all.as_array().unwrap() {
        assert_valid(&entry, e, &format!("ps --json element {}", e["agent"]));
        states.push(e["state"].as_str().unwrap());
    }
    states.sort();
    states.dedup();
    assert_eq!(
        states,
        [
            "alive",
            "corrupt",
            "dead",
            "hung",
            "lost",
            "stale",
            "unwatched"
        ]
    );
    // The schema's states are exactly those `ps` prints, and `unreachable`, which only
    // `ps --etcd` prints (tests/cluster validates those elements).
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_path("ps-entry.schema.json")).unwrap(),
    )
    .unwrap();
    let mut in_schema: Vec<&str> = schema["oneOf"][0]["properties"]["state"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .chain([schema["oneOf"][1]["properties"]["state"]["const"]
            .as_str()
            .unwrap()])
        .collect();
    in_schema.sort();
    let mut expected = states.clone();
    expected.push("unreachable");
    expected.sort();
    assert_eq!(in_schema, expected);
    let unknown = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("exit_unknown").is_some())
        .count();
    assert_eq!(unknown, 2, "{text}");

    // `exit` keeps the file's key order (code, signal, core) in ps --json.
    let in_file = std::fs::read_to_string(sb.record_path("sig9")).unwrap();
    let exit = &in_file[in_file.find("\"exit\":").unwrap()..];
    let exit = &exit[..=exit.find('}').unwrap()];
    assert_eq!(exit, r#""exit":{"code":null,"signal":9,"core":false}"#);
    assert!(text.contains(exit), "ps --json reorders {exit}:\n{text}");

    stays.kill();
    hung.kill();
    drop((t1, t2));
    sb.assert_clean(&[t4_pid]);
}

#[test]
fn the_schemas_refuse_what_the_contract_forbids() {
    let record = validator("record.schema.json");
    let entry = validator("ps-entry.schema.json");
    let seed = json!({"ts": 5, "pid": 9, "status": "alive"});
    assert_valid(&record, &seed, "a seed record");
    let mut extra = seed.clone();
    extra["some_future_key"] = json!({"nested": [1, 2]});
    assert_valid(&record, &extra, "a record with an unknown key");

    let stamped = json!({"ts": 5, "pid": 9, "status": "dead", "exit": null,
        "boot_id": "7bb9bbba-52af-478c-afcf-4b8944a5b43a", "boottime_ms": 0, "pidns": 4026531836_u64,
        "exit_unknown": "reaped"});
    assert_valid(&record, &stamped, "a stamped dead record with exit_unknown");
    let bad: [(&str, Value); 24] = [
        ("no status", json!({"ts": 5, "pid": 9})),
        ("no pid", json!({"ts": 5, "status": "dead"})),
        (
            "unknown status",
            json!({"ts": 5, "pid": 9, "status": "zombie"}),
        ),
        (
            "ts as a string",
            json!({"ts": "5", "pid": 9, "status": "alive"}),
        ),
        (
            "negative ts",
            json!({"ts": -5, "pid": 9, "status": "alive"}),
        ),
        ("pid 0", json!({"ts": 5, "pid": 0, "status": "alive"})),
        (
            "pid over PID_MAX_LIMIT",
            json!({"ts": 5, "pid": 4194305, "status": "alive"}),
        ),
        (
            "interval 0",
            json!({"ts": 5, "pid": 9, "status": "alive", "interval": 0}),
        ),
        (
            "interval over a day",
            json!({"ts": 5, "pid": 9, "status": "alive", "interval": 86401}),
        ),
        (
            "unknown backend",
            json!({"ts": 5, "pid": 9, "status": "alive", "backend": "ptrace"}),
        ),
        (
            "exit code 256",
            json!({"ts": 5, "pid": 9, "status": "dead", "exit": {"code": 256, "signal": null, "core": false}}),
        ),
        (
            "exit without core",
            json!({"ts": 5, "pid": 9, "status": "dead", "exit": {"code": 1, "signal": null}}),
        ),
        (
            "alive with an exit",
            json!({"ts": 5, "pid": 9, "status": "alive", "exit": {"code": 0, "signal": null, "core": false}}),
        ),
        (
            "a key saying dead",
            json!({"ts": 5, "pid": 9, "status": "alive", "was_dead": false}),
        ),
        (
            "a boot_id that is not hex",
            json!({"ts": 5, "pid": 9, "status": "alive", "boot_id": "7bb9-zz"}),
        ),
        (
            "an empty boot_id",
            json!({"ts": 5, "pid": 9, "status": "alive", "boot_id": ""}),
        ),
        (
            "a boot_id as a number",
            json!({"ts": 5, "pid": 9, "status": "alive", "boot_id": 7}),
        ),
        (
            "negative boottime_ms",
            json!({"ts": 5, "pid": 9, "status": "alive", "boottime_ms": -1}),
        ),
        (
            "boottime_ms as a float",
            json!({"ts": 5, "pid": 9, "status": "alive", "boottime_ms": 1.5}),
        ),
        (
            "pidns 0",
            json!({"ts": 5, "pid": 9, "status": "alive", "pidns": 0}),
        ),
        (
            "an unknown exit_unknown",
            json!({"ts": 5, "pid": 9, "status": "dead", "exit": null, "exit_unknown": "lost"}),
        ),
        (
            "exit_unknown on an alive record",
            json!({"ts": 5, "pid": 9, "status": "alive", "exit": null, "exit_unknown": "reaped"}),
        ),
        (
            "exit_unknown with a known exit",
            json!({"ts": 5, "pid": 9, "status": "dead", "exit": {"code": 0, "signal": null, "core": false}, "exit_unknown": "hidden"}),
        ),
        (
            "exit_unknown without exit",
            json!({"ts": 5, "pid": 9, "status": "dead", "exit_unknown": "reaped"}),
        ),
    ];
    for (what, doc) in bad {
        assert!(
            !record.is_valid(&doc),
            "record schema accepts {what}: {doc}"
        );
    }

    let element = |extra: Value| {
        let mut e = json!({"agent": "a", "state": "lost", "age_ms": 3, "started_ms": 1000,
            "foreign_pids": false, "ts": 5, "pid": 9, "status": "alive"});
        for (k, v) in extra.as_object().unwrap() {
            match v {
                Value::String(s) if s == "(absent)" => e.as_object_mut().unwrap().remove(k),
                _ => e.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        e
    };
    assert_valid(&entry, &element(json!({})), "a lost element");
    let unknowable = element(json!({"age_ms": null, "started_ms": null, "foreign_pids": true}));
    assert_valid(&entry, &unknowable, "an element without age or start");
    let corrupt = json!({"agent": "a", "state": "corrupt", "error": "EOF"});
    assert_valid(&entry, &corrupt, "a corrupt element");
    let bad: [(&str, Value); 11] = [
        ("negative age_ms", element(json!({"age_ms": -1}))),
        ("age_ms as a string", element(json!({"age_ms": "3"}))),
        (
            "started_ms as a string",
            element(json!({"started_ms": "1000"})),
        ),
        ("no started_ms", element(json!({"started_ms": "(absent)"}))),
        (
            "foreign_pids as a string",
            element(json!({"foreign_pids": "no"})),
        ),
        (
            "no foreign_pids",
            element(json!({"foreign_pids": "(absent)"})),
        ),
        (
            "a hidden agent",
            json!({"agent": ".a", "state": "lost", "age_ms": 3, "ts": 5, "pid": 9, "status": "alive"}),
        ),
        (
            "an unknown state",
            json!({"agent": "a", "state": "zombie", "age_ms": 3, "ts": 5, "pid": 9, "status": "alive"}),
        ),
        (
            "no age",
            json!({"agent": "a", "state": "dead", "ts": 5, "pid": 9, "status": "dead"}),
        ),
        (
            "a bad record inside",
            json!({"agent": "a", "state": "dead", "age_ms": 3, "ts": 5, "pid": -9, "status": "dead"}),
        ),
        (
            "corrupt with record keys",
            json!({"agent": "a", "state": "corrupt", "error": "x", "pid": 9}),
        ),
    ];
    for (what, doc) in bad {
        assert!(
            !entry.is_valid(&doc),
            "ps-entry schema accepts {what}: {doc}"
        );
    }
}
