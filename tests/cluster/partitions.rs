//! The fleet view under partitions (issue 18).
//!
//! - Readers that lose their view (must-show 4): a reader whose member has no quorum never
//!   presents its view as current. Every frame of `ps --etcd --watch` says so within 2 s, on
//!   a terminal in the table itself and in `--json` as `stale_view`; ages stay at the view's
//!   time; `wait --etcd` says so on stderr and goes on waiting. First on loopback etcd with
//!   two of three members SIGSTOPped (the readers' own member is then a minority of one).
//! - Real partitions in the lab of `lab.rs` (must-show 6): a reader pinned to a minority
//!   member, the leader isolated, an asymmetric drop, a member SIGKILLed and restarted, a
//!   bridge host isolated with a death, and a slow stalling link through `relay.rs`. Each
//!   prints its figure (`-- --nocapture`) for docs/MULTI-HOST.md's failure table.
//!   `PIDBEAT_LAB_FULL=1` runs the issue's durations (20 s isolation at ttl 10, 30 s of slow
//!   link) instead of the shorter defaults.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd_fixture::{Cluster, MEMBERS};
use super::hosts::*;
use super::lab::{Lab, Node};
use super::relay::{Relay, Stalls};
use super::serial;
use crate::common::*;
use crate::{require_etcd, require_lab};

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
    /// `wrap`: a command line that runs `script` (e.g. `ip netns exec NS`); `ps_args` go
    /// through `script`'s shell in single quotes, so they must hold none.
    pub fn spawn(sb: &Sandbox, ps_args: &[&str], wrap: &[&str]) -> TtyReader {
        let mut cmd = format!("exec {BIN}");
        for a in ps_args {
            assert!(!a.contains('\''), "{a}");
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

impl Drop for TtyReader {
    /// The reader under `script` first, so that it is gone (reaped by `script`) before the
    /// sandbox looks for leftovers; then `script`, by the guard.
    fn drop(&mut self) {
        let pid = self._g.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            signal(c, Signal::KILL);
            poll_for(2 * SEC, Duration::from_millis(5), || {
                (!std::path::Path::new(&format!("/proc/{c}")).exists()).then_some(())
            });
        }
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
    let mut c = Cluster::start();
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
    // A stale frame's objects hold to the schema (stale_view is part of it).
    let (_, objs) = jf
        .iter()
        .rev()
        .find(|(at, _)| *at < healed)
        .expect("a --json frame");
    assert_entry_schema(
        &objs
            .iter()
            .map(|o| (o["agent"].as_str().unwrap().to_owned(), o.clone()))
            .collect(),
    );
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

    // The readers lose their member itself (SIGKILL): the same within 2 s.
    let wait1 = Reader::spawn(&h.sb, &["wait", "--etcd", &url, "h1/a1"], "wait1");
    std::thread::sleep(2 * SEC);
    let json_before = json_frames(&json);
    assert!(
        json_before
            .iter()
            .all(|(_, f)| f.iter().all(|o| o.get("stale_view").is_none())),
        "stale before the member was killed"
    );
    let t1 = Instant::now();
    c.kill(kept);
    let said = poll_for(3 * SEC, Duration::from_millis(20), || {
        wait1.stderr().contains("not current").then(Instant::now)
    })
    .unwrap_or_else(|| panic!("wait --etcd did not say so:\n{}", wait1.stderr()));
    while t1.elapsed() < 6 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = assert_stale_marked(&tty.frames(), &json_frames(&json), t1, Instant::now());
    eprintln!(
        "member SIGKILLed under the readers: first marked frame after {first:?}, wait --etcd \
         said so after {:?}",
        said - t1
    );
    assert!(said - t1 <= 2 * SEC, "{:?}", said - t1);
}

// ---- Real partitions in the lab (must-show 6).

/// The issue's full durations, or the shortened ones.
fn full() -> bool {
    std::env::var("PIDBEAT_LAB_FULL").is_ok_and(|v| v == "1")
}

/// A bridge host of the lab: its agents and run dir are the test's (root namespace), its
/// bridge runs in the host's namespace.
struct LabHost {
    node: Node,
    h: Host,
    logs: usize,
}

impl LabHost {
    fn new(lab: &mut Lab, name: &str) -> LabHost {
        LabHost {
            node: lab.node(name),
            h: Host::new(name),
            logs: 0,
        }
    }

    fn publish(&mut self, lab: &Lab, urls: &str, ttl: u64) {
        let log = self.h.sb.path(&format!("lab-publish-{}.log", self.logs));
        self.logs += 1;
        let mut c = lab.pidbeat_in(&self.h.sb, &self.node);
        c.args(["publish", "--host", &self.h.name, "--etcd", urls])
            .args(["--ttl", &ttl.to_string()])
            .arg("--run-dir")
            .arg(self.h.sb.run_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        self.h.bridge = Some(Guard::spawn(&mut c));
    }

    fn log(&self) -> String {
        (0..self.logs)
            .map(|n| {
                std::fs::read_to_string(self.h.sb.path(&format!("lab-publish-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// A reader (`wait --etcd`, `ps --etcd --watch --json`) inside `node`'s namespace.
fn lab_reader(lab: &Lab, sb: &Sandbox, node: &Node, args: &[&str], name: &str) -> Reader {
    Reader::spawn_cmd(sb, lab.pidbeat_in(sb, node).args(args), name)
}

/// `ps --etcd URLS --json` inside `node`'s namespace: HOST/AGENT → object.
fn lab_ps(
    lab: &Lab,
    sb: &Sandbox,
    node: &Node,
    urls: &str,
) -> Result<BTreeMap<String, Value>, String> {
    let mut c = lab.pidbeat_in(sb, node);
    c.args(["ps", "--etcd", urls, "--json"]);
    let o = run_with_deadline(c, 20 * SEC);
    if !o.status.success() {
        return Err(o.stderr);
    }
    let v: Value = serde_json::from_str(&o.stdout).expect("ps --etcd --json is JSON");
    Ok(v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = format!(
                "{}/{}",
                o["host"].as_str().unwrap(),
                o["agent"].as_str().unwrap()
            );
            (name, o.clone())
        })
        .collect())
}

fn poll_lab_ps(
    lab: &Lab,
    sb: &Sandbox,
    node: &Node,
    urls: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> (BTreeMap<String, Value>, Instant) {
    poll(
        timeout,
        Duration::from_millis(100),
        || {
            lab_ps(lab, sb, node, urls)
                .ok()
                .filter(|v| pred(v))
                .map(|v| (v, Instant::now()))
        },
        || format!("timed out after {timeout:?} waiting for {what}"),
    )
}

/// HOST/AGENT → state of one JSON frame.
fn frame_states(objs: &[Value]) -> BTreeMap<String, String> {
    objs.iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["host"].as_str().unwrap_or(""),
                    o["agent"].as_str().unwrap_or("")
                ),
                o["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn no_false_unreachable(frames: &[(Instant, Vec<Value>)], what: &str) {
    for (_, f) in frames {
        let bad: Vec<_> = frame_states(f)
            .into_iter()
            .filter(|(_, s)| s == "unreachable")
            .collect();
        assert!(bad.is_empty(), "{what}: false unreachable: {bad:?}");
    }
}

fn all_alive(n: usize) -> impl Fn(&BTreeMap<String, Value>) -> bool {
    move |v| v.len() == n && v.values().all(|o| o["state"] == "alive")
}

#[test]
fn lab_a_reader_pinned_to_a_minority_member_says_its_view_is_not_current() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    let leader = lab.wait_leader(10 * SEC);
    let minority = (leader + 1) % MEMBERS;
    let mut ha = LabHost::new(&mut lab, "hA");
    let r = lab.node("r");
    ha.h.add_agent("a0", "15");
    ha.h.add_agent("a1", "15");
    ha.publish(&lab, &lab.urls_from(leader), 3);
    let url = lab.url(minority);
    poll_lab_ps(&lab, &ha.h.sb, &r, &url, 10 * SEC, "2 alive", all_alive(2));
    let sb = &ha.h.sb;
    let mut tty = TtyReader::spawn(
        sb,
        &["ps", "--etcd", &url, "--watch"],
        &["ip", "netns", "exec", &r.ns],
    );
    let json = lab_reader(
        &lab,
        sb,
        &r,
        &["ps", "--etcd", &url, "--watch", "--json"],
        "json",
    );
    let mut wait = lab_reader(&lab, sb, &r, &["wait", "--etcd", &url, "hA/a0"], "wait");
    std::thread::sleep(2 * SEC);

    // The minority member loses its peers; the reader still reaches it.
    let m = lab.member(minority).clone();
    let t0 = Instant::now();
    for i in (0..MEMBERS).filter(|&i| i != minority) {
        lab.cut(&m, &lab.member(i).ip.clone(), true, true);
    }
    std::thread::sleep(SEC);
    ha.h.kill9("a0");
    let said = poll_for(5 * SEC, Duration::from_millis(20), || {
        wait.stderr().contains("not current").then(Instant::now)
    })
    .unwrap_or_else(|| panic!("wait --etcd did not say so:\n{}", wait.stderr()));
    let hold = if full() { 20 } else { 8 };
    while t0.elapsed() < hold * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        wait.g.child().try_wait().unwrap().is_none(),
        "wait --etcd ended during the partition:\n{}",
        wait.stderr()
    );
    let healed = Instant::now();
    lab.heal(&m);
    let frames = tty.frames();
    let jf = json_frames(&json);
    let first = assert_stale_marked(&frames, &jf, t0, healed);
    eprintln!(
        "lab, reader pinned to a minority member: wait --etcd said so after {:?}, the first \
         marked frame came {first:?} after the cut",
        said - t0
    );
    assert!(said - t0 <= 2 * SEC, "{:?}", said - t0);
    let rejoined = poll(
        20 * SEC,
        Duration::from_millis(20),
        || lab.healthy(minority).then(Instant::now),
        || "the minority member healthy again".into(),
    );
    let (at, line) = wait
        .line(20 * SEC)
        .expect("the death reaches wait after the heal");
    assert!(line.starts_with("hA/a0 dead signal 9"), "{line}");
    eprintln!(
        "lab, minority healed: the member was healthy {:?} after the heal, the death reached \
         wait --etcd {:?} after the heal\n{}",
        rejoined - healed,
        at - healed,
        wait.stderr()
    );
}

#[test]
fn lab_an_isolated_leader_causes_no_false_unreachable() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    let leader = lab.wait_leader(10 * SEC);
    let follower = (leader + 1) % MEMBERS;
    let mut ha = LabHost::new(&mut lab, "hA");
    let r = lab.node("r");
    for k in 0..20 {
        ha.h.add_agent(&format!("a{k}"), "15");
    }
    // The bridge starts on the leader: the worst place to be when it is cut off.
    ha.publish(&lab, &lab.urls_from(leader), 3);
    let urls = lab.urls_from(follower);
    poll_lab_ps(
        &lab,
        &ha.h.sb,
        &r,
        &urls,
        10 * SEC,
        "20 alive",
        all_alive(20),
    );
    let sb = &ha.h.sb;
    let json = lab_reader(
        &lab,
        sb,
        &r,
        &["ps", "--etcd", &urls, "--watch", "--json"],
        "json",
    );
    let wait = lab_reader(&lab, sb, &r, &["wait", "--etcd", &urls, "hA/a0"], "wait");
    std::thread::sleep(SEC);

    let l = lab.member(leader).clone();
    let t0 = Instant::now();
    lab.isolate(&l);
    std::thread::sleep(Duration::from_millis(500));
    let killed = ha.h.kill9("a0");
    let (at, line) = wait
        .line(10 * SEC)
        .expect("a death while the leader is cut off reaches wait");
    assert!(line.starts_with("hA/a0 dead signal 9"), "{line}");
    eprintln!(
        "lab, leader isolated: a death 0.5 s after the cut reached wait --etcd after {:?}",
        at - killed
    );
    while t0.elapsed() < 10 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.heal(&l);
    let seen = json_frames(&json);
    no_false_unreachable(&seen, "with the leader isolated");
    let last = frame_states(&seen.last().expect("frames").1);
    assert_eq!(last["hA/a0"], "dead");
    assert_eq!(
        last.values().filter(|s| *s == "alive").count(),
        19,
        "{last:?}"
    );
    eprintln!("lab, leader isolated: no false unreachable over 10 s (ttl 3)");
}

#[test]
fn lab_asymmetric_drop_moves_bridge_and_reader_without_false_unreachable() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    let leader = lab.wait_leader(10 * SEC);
    // A follower whose replies to the bridge and the reader are dropped: their requests
    // still reach it (and are served), the answers never come back.
    let bad = (leader + 1) % MEMBERS;
    let mut ha = LabHost::new(&mut lab, "hA");
    let r = lab.node("r");
    for k in 0..10 {
        ha.h.add_agent(&format!("a{k}"), "15");
    }
    let urls = lab.urls_from(bad);
    ha.publish(&lab, &urls, 3);
    poll_lab_ps(
        &lab,
        &ha.h.sb,
        &r,
        &urls,
        10 * SEC,
        "10 alive",
        all_alive(10),
    );
    let sb = &ha.h.sb;
    let json = lab_reader(
        &lab,
        sb,
        &r,
        &["ps", "--etcd", &urls, "--watch", "--json"],
        "json",
    );
    let wait = lab_reader(&lab, sb, &r, &["wait", "--etcd", &urls, "hA/a0"], "wait");
    std::thread::sleep(SEC);

    let m = lab.member(bad).clone();
    let t0 = Instant::now();
    lab.cut(&m, &ha.node.ip, false, true);
    lab.cut(&m, &r.ip, false, true);
    let moved = poll_for(5 * SEC, Duration::from_millis(20), || {
        wait.stderr().contains(&lab.url(bad)).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("the reader did not move:\n{}", wait.stderr()));
    std::thread::sleep(SEC);
    let killed = ha.h.kill9("a0");
    let (at, line) = wait
        .line(10 * SEC)
        .expect("a death under the asymmetric cut reaches wait");
    assert!(line.starts_with("hA/a0 dead signal 9"), "{line}");
    eprintln!(
        "lab, asymmetric drop (replies lost): the reader moved after {:?}; a death reached \
         wait --etcd after {:?}",
        moved - t0,
        at - killed
    );
    while t0.elapsed() < 10 * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.heal(&m);
    let seen = json_frames(&json);
    no_false_unreachable(&seen, "under the asymmetric cut");
    assert_eq!(frame_states(&seen.last().unwrap().1)["hA/a0"], "dead");
}

#[test]
fn lab_a_member_killed_and_restarted_under_a_watching_reader_loses_and_repeats_nothing() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    let leader = lab.wait_leader(10 * SEC);
    let victim = (leader + 1) % MEMBERS;
    let mut ha = LabHost::new(&mut lab, "hA");
    let r = lab.node("r");
    let n = 12;
    for k in 0..n {
        ha.h.add_agent(&format!("a{k}"), "15");
    }
    ha.publish(&lab, &lab.urls_from(leader), 3);
    let urls = lab.urls_from(victim);
    poll_lab_ps(
        &lab,
        &ha.h.sb,
        &r,
        &urls,
        10 * SEC,
        "all alive",
        all_alive(n),
    );
    let sb = &ha.h.sb;
    let json = lab_reader(
        &lab,
        sb,
        &r,
        &["ps", "--etcd", &urls, "--watch", "--json"],
        "json",
    );
    let names: Vec<String> = (0..n).map(|k| format!("hA/a{k}")).collect();
    let mut args = vec!["wait", "--etcd", &urls];
    args.extend(names.iter().map(String::as_str));
    let mut wait = lab_reader(&lab, sb, &r, &args, "wait");
    std::thread::sleep(SEC);

    // Deaths before, during and after the member's absence.
    for k in 0..4 {
        ha.h.kill9(&format!("a{k}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    lab.kill(victim);
    let killed = Instant::now();
    for k in 4..8 {
        ha.h.kill9(&format!("a{k}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(SEC);
    lab.restart(victim);
    lab.wait_healthy(20 * SEC);
    let back = Instant::now();
    for k in 8..n {
        ha.h.kill9(&format!("a{k}"));
    }
    let mut lines = Vec::new();
    while lines.len() < n {
        let (_, l) = wait.line(10 * SEC).unwrap_or_else(|| {
            panic!("only {} of {n} deaths reached wait: {lines:?}", lines.len())
        });
        lines.push(l);
    }
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), n, "a death repeated: {lines:?}");
    assert!(
        lines.iter().all(|l| l.contains(" dead signal 9")),
        "{lines:?}"
    );
    assert_eq!(
        wait.g.wait_timeout(10 * SEC).and_then(|s| s.code()),
        Some(0),
        "wait --etcd did not exit 0 once all had ended"
    );
    // Each agent goes alive -> dead once in the frames, and never back.
    std::thread::sleep(SEC);
    let seen = json_frames(&json);
    no_false_unreachable(&seen, "with a member killed and restarted");
    for name in &names {
        let states: Vec<String> = seen
            .iter()
            .filter_map(|(_, f)| frame_states(f).get(name).cloned())
            .collect();
        let mut changes = states.clone();
        changes.dedup();
        assert_eq!(changes, ["alive", "dead"], "{name}: {states:?}");
    }
    eprintln!(
        "lab, member SIGKILL + restart (down {:?}): {n} deaths, each seen once by wait \
         --etcd and once in the watching reader's frames",
        back - killed
    );
}

#[test]
fn lab_an_isolated_bridge_host_shows_its_deaths_after_the_heal_and_never_alive_between() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    // The issue's 20 s at the default ttl 10; by default 8 s at ttl 3, which shows the same:
    // the lease expires during the cut (unreachable), the death is published after it.
    let (hold, ttl) = if full() { (20, 10) } else { (8, 3) };
    let mut ha = LabHost::new(&mut lab, "hA");
    let mut hb = LabHost::new(&mut lab, "hB");
    let r1 = lab.node("r1");
    let r2 = lab.node("r2");
    ha.h.add_agent("a0", "15");
    ha.h.add_agent("a1", "15");
    hb.h.add_agent("b0", "15");
    ha.publish(&lab, &lab.urls_from(0), ttl);
    hb.publish(&lab, &lab.urls_from(1), ttl);
    let (u1, u2) = (lab.urls_from(1), lab.urls_from(2));
    poll_lab_ps(&lab, &ha.h.sb, &r1, &u1, 10 * SEC, "3 alive", all_alive(3));
    let sb = &ha.h.sb;
    let json = lab_reader(
        &lab,
        sb,
        &r1,
        &["ps", "--etcd", &u1, "--watch", "--json"],
        "json",
    );
    let w1 = lab_reader(&lab, sb, &r1, &["wait", "--etcd", &u1, "hA/a0"], "w1");
    let w2 = lab_reader(&lab, sb, &r2, &["wait", "--etcd", &u2, "hA/a0"], "w2");
    std::thread::sleep(SEC);

    let t0 = Instant::now();
    lab.isolate(&ha.node);
    std::thread::sleep(SEC);
    ha.h.kill9("a0");
    while t0.elapsed() < hold * SEC {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen = json_frames(&json);
    let during = frame_states(&seen.last().expect("frames").1);
    let healed = Instant::now();
    lab.heal(&ha.node);
    let mut took = Vec::new();
    for w in [&w1, &w2] {
        let (at, line) = w
            .line(20 * SEC)
            .unwrap_or_else(|| panic!("no death line after the heal:\n{}", w.stderr()));
        assert_eq!(line, "hA/a0 dead signal 9");
        took.push(at - healed);
    }
    std::thread::sleep(SEC);
    seen.extend(json_frames(&json));
    // During the cut the host went unreachable (its lease expired) and hB stayed alive.
    assert_eq!(
        during.get("hA/a0").map(String::as_str),
        Some("unreachable"),
        "{during:?}"
    );
    assert_eq!(
        during.get("hB/b0").map(String::as_str),
        Some("alive"),
        "{during:?}"
    );
    // Once unreachable, a0 is never shown alive again: its death comes first.
    let mut gone = false;
    for (at, f) in &seen {
        let s = frame_states(f);
        let st = s.get("hA/a0").map(String::as_str);
        gone |= st == Some("unreachable");
        assert!(
            !(gone && st == Some("alive")),
            "a frame {:?} after the heal shows the dead hA/a0 alive: {s:?}",
            at.saturating_duration_since(healed)
        );
    }
    assert_eq!(frame_states(&seen.last().unwrap().1)["hA/a1"], "alive");
    eprintln!(
        "lab, bridge host isolated {hold} s (ttl {ttl}) with a death: it reached the readers \
         {:?} and {:?} after the heal; no frame showed it alive in between",
        took[0], took[1]
    );
    for t in &took {
        assert!(
            *t <= SEC,
            "the death came {t:?} after the heal\n{}",
            ha.log()
        );
    }
}

#[test]
fn lab_a_slow_stalling_link_keeps_the_lease_and_commits_each_change_once() {
    require_lab!();
    let _s = serial();
    let mut lab = Lab::start();
    let mut ha = LabHost::new(&mut lab, "hA");
    let r = lab.node("r");
    for k in 0..10 {
        ha.h.add_agent(&format!("a{k}"), "15");
    }
    // 200 ms each way, and every 6 s a stall of 1.5 s: a request then takes up to about
    // 1.9 s, which TCP gets through.
    let stalls = Stalls {
        every: 6 * SEC,
        len: Duration::from_millis(1500),
    };
    let target = format!("{}:2379", lab.member(0).ip);
    let relay = Relay::start(
        &ha.node.ns,
        &target,
        Duration::from_millis(200),
        Some(stalls),
    );
    let ttl = 10;
    ha.publish(&lab, &relay.url(), ttl);
    let urls = lab.urls_from(1);
    poll_lab_ps(
        &lab,
        &ha.h.sb,
        &r,
        &urls,
        30 * SEC,
        "10 alive",
        all_alive(10),
    );
    let sb = &ha.h.sb;
    let json = lab_reader(
        &lab,
        sb,
        &r,
        &["ps", "--etcd", &urls, "--watch", "--json"],
        "json",
    );
    std::thread::sleep(SEC);
    let rev0 = lab.revision(1);
    let t0 = Instant::now();
    let window = if full() { 30 } else { 15 };
    // One real change, sent just before a stall: its answer comes late.
    let since_start = relay.since_start();
    let into = since_start.as_nanos() % stalls.every.as_nanos();
    let to_next = stalls.every - Duration::from_nanos(into as u64);
    std::thread::sleep(to_next.saturating_sub(Duration::from_millis(100)));
    ha.h.kill9("a0");
    poll_lab_ps(&lab, &ha.h.sb, &r, &urls, 20 * SEC, "a0 dead", |v| {
        v.get("hA/a0").is_some_and(|o| o["state"] == "dead")
    });
    while t0.elapsed() < window * SEC {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rev1 = lab.revision(1);
    let seen = json_frames(&json);
    eprintln!(
        "lab, slow link (200 ms each way, 1.5 s stall every 6 s, ttl {ttl}, {window} s): \
         revision {rev0} -> {rev1} for one death; {} frames, none unreachable: {}",
        seen.len(),
        seen.iter()
            .all(|(_, f)| frame_states(f).values().all(|s| s != "unreachable"))
    );
    no_false_unreachable(&seen, "over the slow link");
    assert_eq!(
        rev1 - rev0,
        1,
        "one death moved the revision by {}\n{}",
        rev1 - rev0,
        ha.log()
    );
}
