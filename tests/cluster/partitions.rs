//! Readers that lose their view (issue 18, must-show 4): a reader whose member has no quorum
//! never presents its view as current. Every frame of `ps --etcd --watch` says so within 2 s,
//! on a terminal in the table itself and in `--json` as `stale_view`; ages stay at the view's
//! time; `wait --etcd` says so on stderr and goes on waiting.
//!
//! Here on loopback etcd with two of three members SIGSTOPped (the readers' own member is
//! then a minority of one); `lab.rs` has the same with real network partitions.

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::etcd_fixture::{Cluster, MEMBERS};
use crate::hosts::*;
use crate::{require_etcd, serial};

const SEC: Duration = Duration::from_secs(1);

/// What a view that is not current is marked with, in a table frame.
pub const STALE_MARK: &str = "VIEW NOT CURRENT";

/// `ps --etcd URLS --watch` on a real terminal: `script` gives it a pty and copies what it
/// draws to a pipe, in chunks timestamped as they arrive.
pub struct TtyReader {
    /// Held for its Drop: `script` and the reader under it are killed with the test.
    _g: Guard,
    chunks: Receiver<(Instant, Vec<u8>)>,
    seen: Vec<(Instant, Vec<u8>)>,
}

impl TtyReader {
    pub fn spawn(sb: &Sandbox, ps_args: &[&str], wrap: &[&str]) -> TtyReader {
        let mut cmd = format!("exec {BIN}");
        for a in ps_args {
            cmd += &format!(" '{a}'");
        }
        let mut c = if wrap.is_empty() {
            sb.cmd_of("script")
        } else {
            let mut c = sb.cmd_of(wrap[0]);
            c.args(&wrap[1..]).arg("script");
            c
        };
        c.args(["-qfec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut g = Guard::spawn(&mut c);
        let mut out = g.child().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        TtyReader {
            _g: g,
            chunks: rx,
            seen: Vec::new(),
        }
    }

    /// Every frame drawn so far (each starts with the cursor-home code), with the time its
    /// first byte arrived.
    pub fn frames(&mut self) -> Vec<(Instant, String)> {
        self.seen.extend(self.chunks.try_iter());
        let mut frames: Vec<(Instant, String)> = Vec::new();
        for (at, chunk) in &self.seen {
            let text = String::from_utf8_lossy(chunk);
            for (i, part) in text.split("\x1b[H").enumerate() {
                if i > 0 || frames.is_empty() {
                    frames.push((*at, String::new()));
                }
                frames.last_mut().unwrap().1.push_str(part);
            }
        }
        // A frame still being drawn has no end yet: the screen is cleared below it last.
        if frames.last().is_some_and(|(_, f)| !f.contains("\x1b[J")) {
            frames.pop();
        }
        frames
    }
}

/// A frame's table without its stale line (whose "N s ago" ticks), to compare frames.
pub fn without_stale_line(frame: &str) -> String {
    // What follows the frame's end is stderr, which shares the terminal.
    let frame = frame.split("\x1b[J").next().unwrap_or_default();
    frame
        .lines()
        .filter(|l| !l.contains(STALE_MARK) && !l.starts_with("pidbeat ps --etcd --watch"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The state of `agent` in a table frame, if it has a row.
pub fn table_state(frame: &str, agent: &str) -> Option<String> {
    frame.lines().find_map(|l| {
        let mut cells = l.split_whitespace();
        (cells.next()? == agent).then(|| cells.next().unwrap_or("").to_owned())
    })
}

/// JSON frames of `ps --etcd --watch --json` so far: (when, objects).
pub fn json_frames(r: &Reader) -> Vec<(Instant, Vec<Value>)> {
    r.lines
        .try_iter()
        .map(|(at, line)| {
            let v: Value = serde_json::from_str(&line).expect("a JSON frame per line");
            (at, v.as_array().unwrap().clone())
        })
        .collect()
}

/// Asserts the reader-side properties of must-show 4 over the frames seen from `from` on,
/// while the view is known not to be current (`partition_at`: when its member lost quorum).
pub fn assert_stale_marked(
    tty: &[(Instant, String)],
    json: &[(Instant, Vec<Value>)],
    partition_at: Instant,
    until: Instant,
) -> Duration {
    let marked_from = partition_at + 2 * SEC;
    let late: Vec<&(Instant, String)> = tty
        .iter()
        .filter(|(at, _)| *at >= marked_from && *at < until)
        .collect();
    assert!(
        late.len() >= 3,
        "the terminal was redrawn {} times during the partition",
        late.len()
    );
    for (at, f) in &late {
        assert!(
            f.contains(STALE_MARK),
            "a frame {:?} after the partition does not say the view is not current:\n{f}",
            *at - partition_at
        );
    }
    // Ages stay at the view's time: the tables of the stale frames are all the same.
    let first = without_stale_line(&late[0].1);
    for (_, f) in &late {
        assert_eq!(
            without_stale_line(f),
            first,
            "a stale frame's table changed"
        );
    }
    let first_marked = tty
        .iter()
        .find(|(at, f)| *at >= partition_at && f.contains(STALE_MARK))
        .map(|(at, _)| *at - partition_at)
        .expect("a marked frame");
    for (at, objs) in json
        .iter()
        .filter(|(at, _)| *at >= marked_from && *at < until)
    {
        for o in objs {
            let s = &o["stale_view"];
            assert!(
                s["reason"].as_str().is_some_and(|r| !r.is_empty()) && s["as_of_ms"].is_u64(),
                "a --json frame {:?} after the partition is not marked: {o}",
                *at - partition_at
            );
        }
    }
    first_marked
}

#[test]
fn a_reader_on_a_member_without_quorum_never_shows_its_view_as_current() {
    require_etcd!();
    let _s = serial();
    let c = Cluster::start();
    let leader = c.wait_leader(5 * SEC);
    // The readers' member: a follower, so that it is not the one deciding it has no leader.
    let kept = (leader + 1) % MEMBERS;
    let url = c.url(kept);
    let mut h = Host::new("h1");
    h.add_agent("a0", "15");
    h.add_agent("a1", "15");
    h.publish(&c.urls_from(kept), 3);
    poll_ps_etcd(&h.sb, &url, 10 * SEC, "2 alive", |v| {
        v.len() == 2 && v.values().all(|o| o["state"] == "alive")
    });
    let mut tty = TtyReader::spawn(&h.sb, &["ps", "--etcd", &url, "--watch"], &[]);
    let json = Reader::spawn(&h.sb, &["ps", "--etcd", &url, "--watch", "--json"], "json");
    let mut wait = Reader::spawn(&h.sb, &["wait", "--etcd", &url, "h1/a0"], "wait");
    std::thread::sleep(2 * SEC);
    let before = tty.frames();
    assert!(
        before.iter().all(|(_, f)| !f.contains(STALE_MARK)),
        "stale before any fault: {:?}",
        before.last()
    );
    assert_eq!(
        table_state(&before.last().expect("frames drawn").1, "h1/a0").as_deref(),
        Some("alive")
    );

    let lost: Vec<usize> = (0..MEMBERS).filter(|&i| i != kept).collect();
    let t0 = Instant::now();
    for &i in &lost {
        c.stop(i);
    }
    // A death the reader cannot learn of: its view says alive, and must say it is stale.
    std::thread::sleep(SEC);
    h.kill9("a0");
    let said = poll_for(3 * SEC, Duration::from_millis(20), || {
        wait.stderr().contains("not current").then(Instant::now)
    })
    .unwrap_or_else(|| panic!("wait --etcd did not say so:\n{}", wait.stderr()));
    eprintln!(
        "quorum lost under the readers: wait --etcd said so after {:?}",
        said - t0
    );
    assert!(said - t0 <= 2 * SEC, "{:?}", said - t0);
    while t0.elapsed() < 8 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        wait.g.child().try_wait().unwrap().is_none(),
        "wait --etcd ended during the partition:\n{}",
        wait.stderr()
    );
    let healed = Instant::now();
    for &i in &lost {
        c.cont(i);
    }
    let frames = tty.frames();
    let jf = json_frames(&json);
    let first = assert_stale_marked(&frames, &jf, t0, healed);
    eprintln!("quorum lost under the readers: first marked frame after {first:?}");
    let stale_frame = &frames.iter().rev().find(|(at, _)| *at < healed).unwrap().1;
    assert_eq!(table_state(stale_frame, "h1/a0").as_deref(), Some("alive"));
    // Healed: the death arrives, the marks go.
    let (at, line) = wait
        .line(20 * SEC)
        .expect("the death reaches wait after the heal");
    assert!(line.starts_with("h1/a0 dead"), "{line}");
    eprintln!(
        "quorum back: the death reached wait --etcd {:?} after SIGCONT",
        at - healed
    );
    let back = poll_for(10 * SEC, Duration::from_millis(100), || {
        let f = tty.frames();
        let (_, last) = f.last()?;
        (!last.contains(STALE_MARK) && table_state(last, "h1/a0").as_deref() == Some("dead"))
            .then(Instant::now)
    })
    .expect("the terminal shows the death, unmarked, after the heal");
    eprintln!(
        "quorum back: terminal current again {:?} after SIGCONT",
        back - healed
    );
    assert!(wait.stderr().contains("current again"), "{}", wait.stderr());
    assert!(
        !wait.stderr().contains("member  "),
        "a message names an empty member:\n{}",
        wait.stderr()
    );
}
