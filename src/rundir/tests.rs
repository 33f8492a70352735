//! Unit tests of the run-dir contract.

use super::*;

#[test]
fn agents() {
    for ok in ["pi", "claude-1", "a.b", "x@host", "c++", "A_9"] {
        validate_agent(ok).unwrap();
    }
    let long = "a".repeat(129);
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "a\0b",
        "a b",
        "é",
        long.as_str(),
    ] {
        assert!(validate_agent(bad).is_err(), "{bad:?} accepted");
    }
    validate_agent(&"a".repeat(128)).unwrap();
    let e = check_agent_name("a/b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "agent name `a/b` contains '/'; allowed: A-Z a-z 0-9 . _ @ + -"
    );
}

#[test]
fn names() {
    let os = OsStr::new;
    assert!(is_agent_file(os("a.hb"), "a"));
    assert!(is_agent_file(os(".a.lock"), "a"));
    assert!(!is_agent_file(os(".a.hb.12.tmp"), "a"));
    assert!(!is_agent_file(os("ab.hb"), "a"));
    assert!(is_fleet_file(os("x.hb")));
    assert!(is_fleet_file(os(".x.lock")));
    assert!(!is_fleet_file(os(".x.hb.7.tmp")));
    assert!(!is_fleet_file(os(".x.deaths.7.tmp")));
    for (agent, name, is) in [
        ("a", ".a.hb.12.tmp", true),
        ("a", ".a.deaths.12.tmp", true),
        ("a", ".a.deaths.tmp", false),
        ("a", ".a.deaths.1x.tmp", false),
        ("a", ".a.deaths.x.deaths.5.tmp", false),
        ("a.deaths.x", ".a.deaths.x.deaths.5.tmp", true),
        ("a", ".a.deaths.hb.5.tmp", false),
        ("a", ".ab.deaths.5.tmp", false),
    ] {
        assert_eq!(is_tmp_name(agent, name), is, "{agent} {name}");
    }
}

/// A long wait outlasts a holder that lets go late, and gives up on one that does not.
#[test]
fn lock_waits_as_long_as_asked() {
    let t = tempfile::tempdir().unwrap();
    let held = lock_exclusive(t.path(), "a", Duration::ZERO)
        .unwrap()
        .unwrap();
    let start = std::time::Instant::now();
    assert!(
        lock_exclusive(t.path(), "a", Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(250));
        drop(held);
    });
    let got = lock_exclusive(t.path(), "a", Duration::from_secs(5)).unwrap();
    late.join().unwrap();
    assert!(got.is_some());
}

#[test]
fn unsafe_dirs_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("run");
    prepare(&d).unwrap();
    assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    assert!(matches!(prepare(&d), Err(Error::Runtime(_))));
    let f = t.path().join("file");
    std::fs::write(&f, b"").unwrap();
    assert!(matches!(prepare(&f), Err(Error::Usage(_))));
}
