//! Records are replaced atomically: a reader never sees a partial one.

use serde_json::Value;

use super::*;
use crate::common::*;

#[test]
fn records_are_atomic_under_100k_reads() {
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let path = sb.record_path("at");
    let mut w = watch_in(&sb, None, &sb.run_dir(), pid, "at", "pidfd", "0.001");
    wait_record(&path, 3 * SEC, |v| status_is(v, "alive"));
    let mut last = 0u64;
    let mut distinct = 0u64;
    for i in 0..100_000 {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {i}: {e}"));
        assert!(
            bytes.ends_with(b"\n"),
            "read {i}: partial record {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(
            bytes.iter().filter(|&&b| b == b'\n').count(),
            1,
            "read {i}: {bytes:?}"
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "read {i}: unparsable ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(v["status"], "alive", "read {i}: {v}");
        let s = seq(&v);
        assert!(s >= last, "read {i}: seq went back {last} -> {s}");
        if s != last {
            distinct += 1;
        }
        last = s;
    }
    assert!(
        distinct > 100,
        "only {distinct} distinct beats seen: the reads did not race the writes"
    );
    assert!(pid_running(w.pid()));
    t.kill();
    wait_record(&path, SEC, |v| status_is(v, "dead"));
    assert!(w.exits(3 * SEC).success());
    assert_eq!(w.count("warning"), 0, "{}", w.stderr());
    assert_eq!(stray_dot_files(&sb.run_dir()), Vec::<String>::new());
    sb.assert_clean(&[pid]);
}
