//! Without tmux: a non-child's exit status read from its zombie, and the
//! reason a `dead` record gives when the status cannot be known.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use super::*;
use crate::common::*;

/// A parent that never reaps (tmux that lost the SIGCHLD): the status is in the record at
/// once on both backends, read from the zombie, and the zombie is left unreaped.
#[test]
fn never_reaped_child_exit_is_recorded_on_both_backends() {
    become_subreaper();
    let sb = Sandbox::new();
    let go = sb.path("go");
    let child = format!(
        "(while [ ! -e {} ]; do sleep 0.01; done; exit 7)",
        go.display()
    );
    let (mut parent, c) = spawn_zombie_parent(&child, &sb.path("zpid"));
    let _c = Guard::adopt(c);
    let mut wf = watch(&sb, c, "ef", "pidfd");
    let mut wp = watch(&sb, c, "ep", "poll");
    wait_all(&sb, &["ef", "ep"], "alive", 3 * SEC);

    std::fs::write(&go, "").unwrap();
    for a in ["ef", "ep"] {
        let v = wait_record(&sb.record_path(a), 3 * SEC, |v| {
            status_is(v, "dead") && !v["exit"].is_null()
        });
        assert_eq!(v["exit"]["code"], 7, "{a}: {v}");
        assert!(v.get("exit_unknown").is_none(), "{a}: {v}");
    }
    assert!(wf.exits(3 * SEC).success());
    assert!(wp.exits(3 * SEC).success());
    assert_eq!(proc_state(c), Some('Z'), "still an unreaped zombie");
    parent.kill();
    drop(_c); // reaped by us: we are the subreaper it is reparented to
    sb.assert_clean(&[c, parent.pid(), wf.pid(), wp.pid()]);
}

/// Reaped before the poll backend looked: no status anywhere, and the record and `ps` say
/// why.
#[test]
fn reaped_before_read_says_so() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut w = watch(&sb, pid, "gone", "poll");
    sb.wait_status("gone", "alive", 3 * SEC);
    t.kill(); // and reaped at once, before the 100 ms check can see a zombie
    let v = wait_record(&sb.record_path("gone"), 3 * SEC, |v| {
        v.get("exit_unknown").is_some()
    });
    assert_eq!(v["status"], "dead");
    assert!(v["exit"].is_null(), "{v}");
    assert_eq!(v["exit_unknown"], "reaped", "{v}");
    assert!(w.exits(3 * SEC).success());
    let out = sb.ps(&["gone"]);
    assert!(out.stdout.contains("unknown (reaped)"), "{}", out.stdout);
    sb.assert_clean(&[pid, w.pid()]);
}

/// A watcher of another user's process reads 0 in the zombie's `exit_code` (the kernel hides
/// it): that 0 is not taken for a clean exit. The parent never reaps, so the record says
/// `hidden`. Needs root, to run the watcher as `nobody`.
#[test]
fn another_users_zombie_says_hidden() {
    if !rustix::process::geteuid().is_root() {
        skip("needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    let runs_as_nobody = std::process::Command::new(BIN)
        .arg("--version")
        .uid(NOBODY)
        .gid(NOBODY)
        .finish()
        .status
        .success();
    if !runs_as_nobody {
        skip("uid 65534 cannot run the binary from this checkout");
        return;
    }
    become_subreaper();
    let sb = Sandbox::new();
    // `nobody` must reach its run dir and the binary.
    std::fs::set_permissions(sb.dir.path(), PermissionsExt::from_mode(0o711)).unwrap();
    let run = sb.path("nobody-run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, PermissionsExt::from_mode(0o700)).unwrap();
    rustix::fs::chown(
        &run,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let go = sb.path("go");
    let child = format!(
        "(while [ ! -e {} ]; do sleep 0.01; done; exit 0)",
        go.display()
    );
    let (mut parent, c) = spawn_zombie_parent(&child, &sb.path("zpid"));
    let _c = Guard::adopt(c);
    let mut cmd = sb.cmd();
    watch_args(&mut cmd, c, "hid", &run).args(["--interval", IV, "--backend", "pidfd"]);
    cmd.uid(NOBODY).gid(NOBODY);
    let mut w = sb.spawn_logged(&mut cmd, "hid");
    let path = run.join("hid.hb");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));

    std::fs::write(&go, "").unwrap();
    let v = wait_record(&path, 5 * SEC, |v| v.get("exit_unknown").is_some());
    assert_eq!(v["status"], "dead", "{v}");
    assert!(
        v["exit"].is_null(),
        "a hidden 0 was taken for a clean exit: {v}"
    );
    assert_eq!(v["exit_unknown"], "hidden", "{v}");
    assert!(w.exits(3 * SEC).success(), "{}", w.stderr());
    parent.kill();
    drop(_c); // reaped by us: we are the subreaper it is reparented to
    sb.assert_clean(&[c, parent.pid(), w.pid()]);
}
