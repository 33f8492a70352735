//! The fleet read: `pidbeat ps --json` over 10,000 generated records.

use std::fs;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::procs::stat_fields;
use crate::rundir::mkdir_private;
use crate::stats::stats;
use crate::{Ctx, PIDBEAT};

pub fn run_ps(ctx: &mut Ctx) -> io::Result<()> {
    let n = ctx.cfg.ps_records;
    let dir = ctx.tmp.path().join("ps");
    mkdir_private(&dir)?;
    // Records as the watchers write them: alive ones name a live process (the bench itself,
    // with its real start time) so `ps` does its /proc checks; the rest are dead or unwatched.
    let me = std::process::id() as i32;
    let start = stat_fields(me)
        .and_then(|f| f.get(19).copied())
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for i in 0..n {
        let (status, exit, died) = match i % 4 {
            0 => (
                "dead",
                r#"{"code":null,"signal":9,"core":false}"#.to_owned(),
                now.to_string(),
            ),
            1 => ("unwatched", "null".to_owned(), "null".to_owned()),
            _ => ("alive", "null".to_owned(), "null".to_owned()),
        };
        let line = format!(
            "{{\"ts\":{},\"pid\":{me},\"status\":\"{status}\",\"ts_ms\":{now},\"seq\":{},\
             \"interval\":15.0,\"backend\":\"pidfd\",\"watcher_pid\":{me},\"start_time\":{start},\
             \"exit\":{exit},\"died_ms\":{died},\"watcher_start_time\":{start}}}\n",
            now / 1000,
            i + 1
        );
        fs::write(dir.join(format!("agent-{i:05}.hb")), line)?;
    }
    let run = || {
        let t = Instant::now();
        let out = Command::new(PIDBEAT)
            .args(["ps", "--json", "--run-dir"])
            .arg(&dir)
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .stdin(Stdio::null())
            .output();
        (t.elapsed(), out)
    };
    let (_, first) = run();
    let out = first?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        ctx.results.note(format!(
            "ps: `pidbeat ps --json` is not usable yet ({}: {}); fleet read skipped",
            out.status,
            err.lines().next().unwrap_or("").trim()
        ));
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(serde_json::Value::Array(a)) if a.len() == n => {}
        Ok(serde_json::Value::Array(a)) => ctx
            .results
            .fail(format!("ps --json listed {} of {n} records", a.len())),
        Ok(_) => ctx.results.fail("ps --json did not print an array".into()),
        Err(e) => ctx
            .results
            .fail(format!("ps --json printed invalid JSON: {e}")),
    }
    let mut samples = Vec::new();
    for _ in 0..ctx.cfg.ps_runs {
        let (d, out) = run();
        if out.is_ok_and(|o| o.status.success()) {
            samples.push(d.as_secs_f64() * 1e3);
        }
    }
    if let Some(s) = stats(&samples) {
        let r = &mut ctx.results;
        r.add("ps", "ps_json_p50", s.p50, "ms");
        r.add("ps", "ps_json_max", s.max, "ms");
        r.add("ps", "ps_json_runs", s.n as f64, "runs");
        r.add("ps", "ps_json_records", n as f64, "records");
    }
    Ok(())
}
