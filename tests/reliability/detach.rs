//! `watch --detach`: returns once the record is on disk, and reports a failed start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::common::*;

#[test]
fn detach_returns_at_once_with_the_record_on_disk() {
    become_subreaper();
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let path = sb.record_path("dt");
    let mut c = sb.watch_cmd(pid, "dt");
    c.args(["--detach", "--interval", IV]);
    let o = run_with_deadline(c, 10 * SEC);
    // The record exists the moment the caller gets control back.
    let rec = read_record(&path);
    let wpid = rec
        .as_ref()
        .and_then(|r| r["watcher_pid"].as_i64())
        .map(|p| p as i32);
    let adopted = wpid.map(Guard::adopt);
    assert_eq!(
        o.status.code(),
        Some(0),
        "detach: {} {}",
        o.status,
        o.stderr
    );
    assert!(
        o.elapsed < 2 * SEC,
        "`$(pidbeat watch --detach …)` took {:?}",
        o.elapsed
    );
    let rec = rec.expect("no record on disk when --detach returned");
    assert_eq!(rec["status"], "alive", "{rec}");
    let wpid = wpid.unwrap();
    // Its one line of output is the watcher's PID, as the record names it.
    assert!(
        o.stdout == format!("{wpid}\n") && o.stderr.is_empty(),
        "{o:?}",
        o = (&o.stdout, &o.stderr)
    );
    assert!(pid_running(wpid), "detached watcher {wpid} is not running");
    assert_eq!(
        stat_field(wpid, 6).unwrap(),
        wpid.to_string(),
        "not a session leader"
    );
    assert_eq!(
        stat_field(wpid, 4).unwrap(),
        std::process::id().to_string(),
        "not reparented to us"
    );
    for fd in 0..3 {
        let l = std::fs::read_link(format!("/proc/{wpid}/fd/{fd}")).unwrap();
        assert_eq!(l, Path::new("/dev/null"), "fd {fd} of the detached watcher");
    }
    let s0 = seq(&rec);
    wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 3);
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    let st = adopted.unwrap().reap_within(3 * SEC);
    assert_eq!(st.code(), Some(0), "detached watcher: {st:?}");
    sb.assert_clean(&[pid, wpid]);
}

#[test]
fn detach_failure_reports_and_exits_nonzero() {
    become_subreaper();
    let sb = Sandbox::new();
    let gone = exited_pid();
    let run = sb.run_dir();
    let detach = |pid: i32, agent: &str, run: &Path| {
        let mut c = sb.cmd();
        watch_args(&mut c, pid, agent, run).args(["--detach", "--interval", IV]);
        run_with_deadline(c, 10 * SEC)
    };
    let o = detach(gone, "nope", &run);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(
        o.stderr.contains(&gone.to_string()) && o.stderr.contains("no process"),
        "{}",
        o.stderr
    );
    assert!(o.elapsed < 2 * SEC, "{:?}", o.elapsed);
    assert!(read_record(&sb.record_path("nope")).is_none());

    // The lock is held: the detached child's refusal reaches the caller.
    let mut t = spawn_sleep();
    let mut w = watch(&sb, t.pid(), "held", "pidfd");
    sb.wait_status("held", "alive", 3 * SEC);
    let o = detach(t.pid(), "held", &run);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(o.stderr.contains("already watched"), "{}", o.stderr);

    // An unsafe run dir.
    let bad = sb.path("open");
    std::fs::create_dir(&bad).unwrap();
    std::fs::set_permissions(&bad, PermissionsExt::from_mode(0o777)).unwrap();
    let o = detach(t.pid(), "x", &bad);
    assert_eq!(o.status.code(), Some(1), "{} {}", o.status, o.stderr);
    assert!(o.stderr.contains("writable"), "{}", o.stderr);

    t.kill();
    assert!(w.exits(3 * SEC).success());
    sb.assert_clean(&[t.pid()]);
}
