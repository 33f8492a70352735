//! Run-dir faults: full, read-only, deleted; the watcher warns once and recovers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::common::*;

/// Shared checks while the fault lasts: the watcher runs, has warned exactly once, the
/// record is the last complete one and there is no temp file.
fn during_outage(
    ns: &MountNs,
    run: &Path,
    w: &[(&Watch, &str)],
    seq_at: &BTreeMap<String, u64>,
    what: &str,
) {
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for (w, a) in w {
        assert!(
            pid_running(w.pid()),
            "{what}: watcher {a} died: {}",
            w.stderr()
        );
        assert_eq!(
            w.count("warning"),
            1,
            "{what}: {a} must warn once:\n{}",
            w.stderr()
        );
        let path = ns.host(&run.join(format!("{a}.hb")));
        let rec = read_record(&path)
            .unwrap_or_else(|| panic!("{what}: {a}'s last record is gone: {}", w.stderr()));
        assert_eq!(
            seq(&rec),
            seq_at[*a],
            "{what}: {a} wrote during the outage?"
        );
    }
}

/// A private mount namespace with a 64 KiB tmpfs, or `None` where there is none (skipped).
fn small_tmpfs(sb: &Sandbox) -> Option<MountNs> {
    MountNs::new(sb, "64k").map_err(|e| skip(&e)).ok()
}

fn fault_scenario(
    test: &str,
    inject: impl Fn(&MountNs, &Path),
    heal: impl Fn(&MountNs, &Path),
    err_text: &str,
) {
    let sb = Sandbox::new();
    let Some(ns) = small_tmpfs(&sb) else {
        return;
    };
    let run = ns.mnt.join("run");
    let hrun = ns.host(&run);
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wf = watch_in(&sb, Some(&ns), &run, pid, "ff", "pidfd", IV);
    let mut wp = watch_in(&sb, Some(&ns), &run, pid, "fp", "poll", IV);
    for (w, a) in [(&wf, "ff"), (&wp, "fp")] {
        let v = wait_record(&hrun.join(format!("{a}.hb")), 3 * SEC, |v| {
            status_is(v, "alive")
        });
        assert_eq!(v["watcher_pid"], w.pid(), "nsenter must exec the watcher");
    }

    // Phase 1: the fault, the target alive. Phase 2: the target dies during the fault.
    pause_between_writes(&[wf.pid(), wp.pid()], &hrun);
    inject(&ns, &run);
    let mut seq_at = BTreeMap::new();
    for a in ["ff", "fp"] {
        seq_at.insert(
            a.to_owned(),
            seq(&read_record(&hrun.join(format!("{a}.hb"))).unwrap()),
        );
    }
    cont(wf.pid());
    cont(wp.pid());
    let both = [(&wf, "ff"), (&wp, "fp")];
    during_outage(&ns, &run, &both, &seq_at, test);
    for (w, _) in both {
        assert!(
            w.stderr().contains(err_text),
            "{test}: warning should say {err_text:?}: {}",
            w.stderr()
        );
    }
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files during the fault"
    );

    t.kill();
    during_outage(&ns, &run, &both, &seq_at, &format!("{test}, target dead"));
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files during the fault"
    );
    // The records still say alive and cannot change: ps must not believe them.
    let m = ps_json_with(ns.pidbeat(&sb), &run, &["ff", "fp"]);
    for a in ["ff", "fp"] {
        assert_eq!(
            m[a]["state"], "lost",
            "{test}: target dead, record stuck at alive: {m:?}"
        );
    }

    heal(&ns, &run);
    for (w, a) in [(&mut wf, "ff"), (&mut wp, "fp")] {
        let v = wait_record(&hrun.join(format!("{a}.hb")), 2 * SEC, |v| {
            status_is(v, "dead")
        });
        assert_eq!(v["pid"], pid);
        assert!(w.exits(3 * SEC).success(), "{test}: {a}: {}", w.stderr());
        assert_eq!(w.count("warning"), 1, "{test}: {a}:\n{}", w.stderr());
    }
    assert_eq!(
        stray_dot_files(&hrun),
        Vec::<String>::new(),
        "{test}: temp files after the fault"
    );
    let ns_pid = ns.pid();
    drop(ns);
    sb.assert_clean(&[pid, ns_pid]);
}

#[test]
fn rundir_full_enospc() {
    fault_scenario(
        "rundir_full_enospc",
        |ns, run| {
            let fill = ns.host(&ns.mnt.join("fill"));
            let mut f = std::fs::File::create(&fill).unwrap();
            let chunk = vec![0u8; 4096];
            let e = loop {
                if let Err(e) = f.write_all(&chunk) {
                    break e;
                }
            };
            assert_eq!(e.raw_os_error(), Some(libc_enospc()), "fill stopped by {e}");
            // Really full: not even a one-byte file fits.
            let probe = std::fs::write(ns.host(&run.join("probe")), b"x");
            assert!(probe.is_err(), "tmpfs not full");
            let _ = std::fs::remove_file(ns.host(&run.join("probe")));
        },
        |ns, _| std::fs::remove_file(ns.host(&ns.mnt.join("fill"))).unwrap(),
        "No space left on device",
    );
}

fn libc_enospc() -> i32 {
    28
}

/// `mount -o remount,ro` of the tmpfs itself fails with EBUSY while a watcher holds its lock
/// file open for writing, so the run dir is made read-only with a read-only bind mount of
/// itself on top (the watcher opens the dir by path on every write, so it meets the ro mount).
#[test]
fn rundir_read_only() {
    fault_scenario(
        "rundir_read_only",
        |ns, run| {
            ns.bind_read_only(run);
            assert!(
                std::fs::write(ns.host(&run.join("probe")), b"x").is_err(),
                "not read-only"
            );
        },
        |ns, run| {
            let o = ns.sh(&format!("umount -l '{}'", run.display()));
            assert!(o.status.success(), "umount: {}", o.stderr);
        },
        "Read-only file system",
    );
}

#[test]
fn rundir_deleted_and_recreated() {
    let sb = Sandbox::new();
    let run = sb.run_dir();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let mut wf = watch(&sb, pid, "df", "pidfd");
    let mut wp = watch(&sb, pid, "dp", "poll");
    wait_all(&sb, &["df", "dp"], "alive", 3 * SEC);

    // Outage 1, target alive: beats resume once the dir is back.
    pause_between_writes(&[wf.pid(), wp.pid()], &run);
    std::fs::remove_dir_all(&run).unwrap();
    cont(wf.pid());
    cont(wp.pid());
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for w in [&wf, &wp] {
        assert!(pid_running(w.pid()), "watcher died: {}", w.stderr());
        assert_eq!(
            w.count("warning"),
            1,
            "warn once per outage:\n{}",
            w.stderr()
        );
        assert!(
            w.stderr().contains("No such file or directory"),
            "{}",
            w.stderr()
        );
    }
    sb.private_run_dir();
    wait_all(&sb, &["df", "dp"], "alive", 2 * SEC);

    // Outage 2: the target dies while there is no dir; `dead` lands once it is back.
    pause_between_writes(&[wf.pid(), wp.pid()], &run);
    std::fs::remove_dir_all(&run).unwrap();
    cont(wf.pid());
    cont(wp.pid());
    t.kill();
    std::thread::sleep(Duration::from_secs_f64(10.0 * IV_SECS));
    for w in [&wf, &wp] {
        assert!(pid_running(w.pid()), "watcher gave up: {}", w.stderr());
    }
    sb.private_run_dir();
    for (w, a) in [(&mut wf, "df"), (&mut wp, "dp")] {
        let v = sb.wait_status(a, "dead", 2 * SEC);
        assert_eq!(v["pid"], pid);
        assert!(w.exits(3 * SEC).success());
        assert_eq!(
            w.count("warning"),
            2,
            "one warning per outage:\n{}",
            w.stderr()
        );
    }
    assert_eq!(stray_dot_files(&run), Vec::<String>::new());
    sb.assert_clean(&[pid]);
}

/// SIGTERM while the run dir cannot be written (and the target lives on) must still stop
/// the watcher within a bounded time: it must not retry the `unwatched` write forever.
#[test]
fn sigterm_during_outage_still_stops_the_watcher() {
    let sb = Sandbox::new();
    let Some(ns) = small_tmpfs(&sb) else {
        return;
    };
    let run = ns.mnt.join("run");
    let hrun = ns.host(&run);
    let t = spawn_sleep();
    let mut w = watch_in(&sb, Some(&ns), &run, t.pid(), "st", "pidfd", IV);
    wait_record(&hrun.join("st.hb"), 3 * SEC, |v| status_is(v, "alive"));
    pause_between_writes(&[w.pid()], &hrun);
    ns.bind_read_only(&run);
    cont(w.pid());
    std::thread::sleep(Duration::from_millis(200));
    send_signal(w.pid(), Signal::TERM);
    let st = w.g.wait_timeout(5 * SEC);
    let wpid = w.pid();
    assert!(
        st.is_some(),
        "SIGTERMed watcher {wpid} still running 5 s later (run dir read-only, target alive):\n{}",
        w.stderr()
    );
    assert!(pid_running(t.pid()), "the watcher must not harm the target");
    drop(t);
    drop(w);
    let ns_pid = ns.pid();
    drop(ns);
    sb.assert_clean(&[ns_pid, wpid]);
}
