//! A shortened soak. One watcher per backend at `--interval 0.001` (1,000
//! record writes a second each) for `PIDBEAT_SOAK_SECS` (default 15) seconds, side by side:
//! the descriptor count must not move and VmRSS must stay within a small bound of what it was
//! after the first second. The 3-minute figure is `PIDBEAT_BENCH_ONLY=soak cargo bench`; 200
//! run-dir recreations without fd growth are `lock_loss::run_dir_recreated_200_times_…`.

use std::time::Instant;

use super::*;
use crate::common::*;

/// VmRSS may wiggle by a page or two of stack and allocator slack; a leak of one allocation
/// per beat would be megabytes by the end.
const RSS_SLACK_KIB: u64 = 256;

fn soak_secs() -> u64 {
    std::env::var("PIDBEAT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn soak_both_backends_at_1ms_flat_fds_and_rss() {
    // Two watchers writing 1,000 records a second each keep a core busy: no latency-bound
    // test runs meanwhile.
    let _alone = alone();
    let sb = Sandbox::new();
    let mut t = spawn_sleep();
    let pid = t.pid();
    let backends = ["pidfd", "poll"];
    let mut ws: Vec<Watch> = backends
        .iter()
        .map(|b| {
            watch_in(
                &sb,
                None,
                &sb.run_dir(),
                pid,
                &format!("soak-{b}"),
                b,
                "0.001",
            )
        })
        .collect();
    for (b, w) in backends.iter().zip(&ws) {
        wait_record(&sb.record_path(&format!("soak-{b}")), 3 * SEC, |v| {
            v["watcher_pid"] == w.pid() && seq(v) >= 500
        });
    }
    let before: Vec<(u64, usize, u64)> = backends
        .iter()
        .zip(&ws)
        .map(|(b, w)| {
            let s = seq(&read_record(&sb.record_path(&format!("soak-{b}"))).unwrap());
            (vm_rss_kib(w.pid()), steady_fd_count(w.pid()), s)
        })
        .collect();

    let secs = soak_secs();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        for w in &ws {
            assert!(pid_running(w.pid()), "watcher died: {}", w.stderr());
        }
    }

    for ((b, w), (rss0, fds0, seq0)) in backends.iter().zip(&ws).zip(&before) {
        let (rss1, fds1) = (vm_rss_kib(w.pid()), fd_count(w.pid()));
        let seq1 = seq(&read_record(&sb.record_path(&format!("soak-{b}"))).unwrap());
        eprintln!(
            "soak {b}: {secs} s, {} beats, VmRSS {rss0} -> {rss1} KiB, {fds0} -> {fds1} fds",
            seq1 - seq0
        );
        // Under load the timer may fall behind, but a soak that hardly beat proves nothing.
        assert!(
            seq1 - seq0 >= 100 * secs,
            "{b}: only {} beats in {secs} s",
            seq1 - seq0
        );
        assert_fds_back_to(w.pid(), *fds0, b);
        assert!(
            rss1 <= rss0 + RSS_SLACK_KIB,
            "{b}: VmRSS grew {rss0} -> {rss1} KiB"
        );
        assert_eq!(w.count("warning"), 0, "{b}: {}", w.stderr());
    }

    t.kill();
    for w in &mut ws {
        assert!(w.exits(3 * SEC).success(), "{}", w.stderr());
    }
    let pids: Vec<i32> = ws.iter().map(|w| w.pid()).chain([pid]).collect();
    sb.assert_clean(&pids);
}
