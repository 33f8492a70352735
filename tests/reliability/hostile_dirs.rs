//! A hostile run dir: links planted at the record, temp and lock names; unsafe modes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::common::*;

/// A file of ours (`keep`, mode 0600) for links in the run dir to point at.
fn victim(sb: &Sandbox, name: &str) -> PathBuf {
    let v = sb.path(name);
    std::fs::write(&v, b"keep").unwrap();
    std::fs::set_permissions(&v, PermissionsExt::from_mode(0o600)).unwrap();
    v
}

fn assert_victim(v: &Path) {
    assert_eq!(
        std::fs::read(v).unwrap(),
        b"keep",
        "the symlink's target was written"
    );
    assert_eq!(mode(v), 0o600, "target's mode changed");
}

#[test]
fn symlink_at_record_path_is_replaced_not_followed() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let v = victim(&sb, "victim");
    let ghost = sb.path("ghost");
    std::os::unix::fs::symlink(&v, run.join("ra.hb")).unwrap();
    std::os::unix::fs::symlink(&ghost, run.join("rb.hb")).unwrap();
    // A hard link is no better: the record must replace the name, not write the inode.
    let v2 = victim(&sb, "victim2");
    std::fs::hard_link(&v2, run.join("rc.hb")).unwrap();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wa = watch(&sb, pid, "ra", "pidfd");
    let mut wb = watch(&sb, pid, "rb", "poll");
    let mut wc = watch(&sb, pid, "rc", "pidfd");
    let v2_ino = std::fs::metadata(&v2).unwrap().ino();
    for a in ["ra", "rb", "rc"] {
        let p = sb.record_path(a);
        wait_until(3 * SEC, "record replaced the link", || {
            std::fs::symlink_metadata(&p)
                .is_ok_and(|m| m.file_type().is_file() && m.ino() != v2_ino)
        });
        wait_record(&p, SEC, |v| status_is(v, "alive"));
    }
    t.kill();
    for (w, a) in [(&mut wa, "ra"), (&mut wb, "rb"), (&mut wc, "rc")] {
        sb.wait_status(a, "dead", SEC);
        assert!(w.exits(3 * SEC).success());
    }
    assert_victim(&v);
    assert_victim(&v2);
    assert!(
        !ghost.exists(),
        "a dangling symlink was followed and its target created"
    );
    sb.assert_clean(&[pid]);
}

#[test]
fn symlink_at_temp_name_is_never_followed() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let v = victim(&sb, "victim");
    let ghost = sb.path("ghost");
    let mut t = spawn_sleep();
    let pid = t.pid();

    // Before start: plant links at the temp names of the next few hundred PIDs.
    let last: i32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let planted: Vec<i32> = (last + 1..last + 400).collect();
    for p in &planted {
        std::os::unix::fs::symlink(&v, run.join(format!(".ta.hb.{p}.tmp"))).unwrap();
    }
    let mut w = watch(&sb, pid, "ta", "pidfd");
    let hit = planted.contains(&w.pid());
    if !hit {
        eprintln!(
            "note: watcher PID {} fell outside the pre-planted range",
            w.pid()
        );
    }
    let path = sb.record_path("ta");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));
    assert_victim(&v);

    // After start: plant at its exact temp name between two beats, and wait for more beats.
    for target in [&v, &ghost] {
        let tmp = run.join(format!(".ta.hb.{}.tmp", w.pid()));
        wait_until(3 * SEC, "planted", || {
            std::os::unix::fs::symlink(target, &tmp).is_ok()
        });
        let s0 = seq(&read_record(&path).unwrap());
        wait_record(&path, 3 * SEC, |v| seq(v) >= s0 + 3);
        assert!(
            std::fs::symlink_metadata(&tmp)
                .map(|m| !m.file_type().is_symlink())
                .unwrap_or(true),
            "the planted link survived several beats"
        );
    }
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    assert!(w.exits(3 * SEC).success());
    assert_victim(&v);
    assert!(
        !ghost.exists(),
        "a dangling symlink at the temp name was followed"
    );
    assert!(
        !std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(w.count("warning"), 0, "{}", w.stderr());
    sb.assert_clean(&[pid]);
}

#[test]
fn symlink_at_lock_path_is_never_followed() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let v = victim(&sb, "victim");
    let ghost = sb.path("ghost");
    std::os::unix::fs::symlink(&v, run.join(".la.lock")).unwrap();
    std::os::unix::fs::symlink(&ghost, run.join(".lb.lock")).unwrap();
    let mut t = spawn_sleep();
    let pid = t.pid();
    for a in ["la", "lb"] {
        let mut c = sb.watch_cmd(pid, a);
        c.args(["--interval", IV]);
        // Refusing is fine (exit 1, naming the lock); writing through the link is not.
        let o = run_with_deadline(c, 5 * SEC);
        assert_eq!(o.status.code(), Some(1), "{a}: {} {}", o.status, o.stderr);
        assert!(
            o.stderr.contains(&format!(".{a}.lock")),
            "{a}: message should name the lock: {}",
            o.stderr
        );
    }
    assert_victim(&v);
    assert!(!ghost.exists(), "a dangling lock symlink was followed");
    t.kill();
    sb.assert_clean(&[pid]);
}

/// A hard link planted at `.<agent>.lock` (to any file of ours on the same filesystem) must
/// not be opened O_RDWR, truncated and overwritten with the watcher's PID: O_NOFOLLOW does not
/// help against links that are not symlinks. The record and temp names are safe by rename and
/// O_EXCL; this guards that the lock is too.
#[test]
fn hardlink_at_lock_path_is_never_written_through() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let v = victim(&sb, "victim");
    std::fs::hard_link(&v, run.join(".hl.lock")).unwrap();
    let t = spawn_sleep();
    let pid = t.pid();
    let mut w = watch(&sb, pid, "hl", "pidfd");
    // Refused at start, naming the lock; and the victim is intact.
    let refused = w.g.wait_timeout(Duration::from_millis(500));
    let after = std::fs::read(&v).unwrap();
    let st = refused.unwrap_or_else(|| panic!("a watcher ran on a hard-linked lock"));
    assert_eq!(st.code(), Some(1), "{}", w.stderr());
    assert!(
        w.stderr().contains(".hl.lock"),
        "name the lock: {}",
        w.stderr()
    );
    assert_eq!(
        String::from_utf8_lossy(&after),
        "keep",
        "the watcher wrote its lock line into a hard-linked file outside the run dir"
    );
    drop(t);
    sb.assert_clean(&[pid]);
}

#[test]
fn unsafe_run_dirs_are_refused() {
    let sb = Sandbox::new();
    let t = spawn_sleep();
    let pid = t.pid();
    let cases: [(&str, u32, Option<u32>, &[&str]); 5] = [
        ("other-owner", 0o700, Some(65534), &["owned by uid 65534"]),
        ("world-writable", 0o777, None, &["writable", "chmod go-w"]),
        ("group-writable", 0o770, None, &["writable", "chmod go-w"]),
        ("sticky-tmp-like", 0o1777, None, &["writable", "chmod go-w"]),
        (
            "others-write-only",
            0o702,
            None,
            &["writable", "chmod go-w"],
        ),
    ];
    for (name, mode, owner, must) in cases {
        let d = sb.path(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, PermissionsExt::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
        }
        for how in ["flag", "env"] {
            let mut c = sb.cmd();
            c.args([
                "watch",
                "--pid",
                &pid.to_string(),
                "--agent",
                "u",
                "--interval",
                IV,
            ]);
            if how == "flag" {
                c.arg("--run-dir").arg(&d);
            } else {
                c.env("MOSAIC_HEARTBEAT_RUN_DIR", &d);
            }
            let o = run_with_deadline(c, 5 * SEC);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{name} via {how}: {} {}",
                o.status,
                o.stderr
            );
            assert!(
                o.stderr.contains(&d.display().to_string()),
                "{name}: name the dir: {}",
                o.stderr
            );
            for m in must {
                assert!(
                    o.stderr.contains(m),
                    "{name} via {how}: message lacks {m:?}: {}",
                    o.stderr
                );
            }
            assert!(
                dir_names(&d).is_empty(),
                "{name}: something was written into a refused dir: {:?}",
                dir_names(&d)
            );
        }
    }
    drop(t);
    sb.assert_clean(&[pid]);
}
