//! Records are untrusted input. Out-of-range values are `corrupt` with the reason;
//! `alive` needs a proven writer; a record's strings cannot add rows to the table or reach
//! the terminal as escape sequences; an unreadable run dir is an error that says why; and
//! thousands of generated hostile records make no reader panic, hang or miscount.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

/// A C0, DEL or C1 control character (the line feeds between lines aside).
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c != '\n' && c.is_control())
}

/// How many agents a `ps --prom` exposition reports, read by a real exposition parser.
fn prom_agents(text: &str) -> usize {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let up = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "pidbeat_agent_up");
    up.count()
}

fn pid_max() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn out_of_range_values_are_corrupt_with_the_reason() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let ok = || json!({"ts": now_ms() / 1000, "pid": 1, "status": "dead"});
    let with = |k: &str, v: Value| {
        let mut r = ok();
        r[k] = v;
        r
    };
    let cases = [
        ("pid0", with("pid", json!(0)), "pid 0 is outside"),
        ("pidneg", with("pid", json!(-5)), "pid -5 is outside"),
        ("pidmax", with("pid", json!(pid_max())), "is outside"),
        ("pidbig", with("pid", json!(1i64 << 31)), "`pid`"),
        ("wpid0", with("watcher_pid", json!(0)), "watcher_pid 0"),
        (
            "code256",
            with("exit", json!({"code": 256, "signal": null, "core": false})),
            "exit code 256",
        ),
        (
            "codeneg",
            with("exit", json!({"code": -1, "signal": null, "core": false})),
            "exit code -1",
        ),
        (
            "sig0",
            with("exit", json!({"code": null, "signal": 0, "core": false})),
            "exit signal 0",
        ),
        (
            "sig65",
            with("exit", json!({"code": null, "signal": 65, "core": false})),
            "exit signal 65",
        ),
        (
            "both",
            with("exit", json!({"code": 1, "signal": 9, "core": false})),
            "both",
        ),
        ("seq0", with("seq", json!(0)), "seq is 0"),
        (
            "iv0",
            with("interval", json!(0)),
            "interval must be positive",
        ),
        ("ivbig", with("interval", json!(100_000)), "over one day"),
        ("ivtiny", with("interval", json!(0.0001)), "below"),
        ("stneg", with("start_time", json!(-1)), "`start_time`"),
        ("stfrac", with("start_time", json!(1.5)), "`start_time`"),
        ("ststr", with("start_time", json!("12")), "`start_time`"),
        (
            "wstneg",
            with("watcher_start_time", json!(-3)),
            "`watcher_start_time`",
        ),
        ("btneg", with("boottime_ms", json!(-1)), "`boottime_ms`"),
        ("nsneg", with("pidns", json!(-1)), "`pidns`"),
        ("ns0", with("pidns", json!(0)), "pidns is 0"),
        (
            "bootid",
            with("boot_id", json!("\u{1b}]0;x\u{7}")),
            "boot_id",
        ),
    ];
    let mut future = ok();
    future["boot_id"] = json!(boot_id());
    future["boottime_ms"] = json!(u64::MAX / 2);
    for (agent, r, _) in &cases {
        std::fs::write(run.join(format!("{agent}.hb")), r.to_string()).unwrap();
    }
    std::fs::write(run.join("future.hb"), future.to_string()).unwrap();
    std::fs::write(run.join("good.hb"), ok().to_string()).unwrap();
    let m = ps_json_with(sb.cmd(), &run, &[]);
    assert_eq!(state_of(&m, "good"), "dead", "{m:?}");
    let later = [("future", "is later than this boot's clock")];
    for (agent, want) in cases.iter().map(|(a, _, w)| (*a, *w)).chain(later) {
        let o = &m[agent];
        assert_eq!(o["state"], "corrupt", "{agent}: {o}");
        let err = o["error"].as_str().unwrap();
        assert!(err.contains(want), "{agent}: reason {err:?} lacks {want:?}");
    }
    // The table gives the reasons on stderr, one line each, without control characters.
    let o = run_with_deadline(sb.ps_cmd(&[]), 10 * SEC);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stdout.lines().count(), cases.len() + 3, "{}", o.stdout);
    assert_eq!(o.stderr.lines().count(), cases.len() + 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("pid0: corrupt record: pid 0 is outside"),
        "{}",
        o.stderr
    );
    assert!(!has_control(&o.stderr), "{:?}", o.stderr);
}

/// `alive` needs a writer: a live watcher holding the lock, or the live process that the
/// record's `watcher_pid` and `watcher_start_time` name. A future `ts` proves nothing.
#[test]
fn a_forged_alive_record_is_not_alive() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let max = u64::MAX;
    let forged = [
        ("seed", json!({"ts": max, "pid": 1, "status": "alive"})),
        (
            "ms",
            json!({"ts": max, "pid": 1, "status": "alive", "ts_ms": max, "interval": 86400}),
        ),
        (
            "pidonly",
            json!({"ts": max, "pid": 1, "status": "alive", "watcher_pid": 1}),
        ),
        (
            "now",
            json!({"ts": now_ms() / 1000, "pid": 1, "status": "alive"}),
        ),
    ];
    for (agent, r) in &forged {
        std::fs::write(run.join(format!("{agent}.hb")), r.to_string()).unwrap();
    }
    // A free lock beside a record that claims a pidbeat watcher: that watcher is gone.
    let me = std::process::id();
    let freed = json!({"ts": max, "pid": me, "status": "alive", "watcher_pid": 1,
        "watcher_start_time": start_time(1).unwrap()});
    // The lock file first: a watcher (which `hold_lock` stands for) refuses to start under a
    // record that names a live watcher, and PID 1 is live.
    drop(sb.hold_lock("freed"));
    std::fs::write(run.join("freed.hb"), freed.to_string()).unwrap();
    let m = ps_json_with(sb.cmd(), &run, &[]);
    for (agent, _) in &forged {
        assert_eq!(state_of(&m, agent), "stale", "{agent}: {m:?}");
    }
    assert_eq!(state_of(&m, "freed"), "lost", "{m:?}");
    // A future `ts` has no age.
    assert!(m["seed"]["age_ms"].is_null(), "{m:?}");
}

/// Control characters in a record's strings: escaped in the table, which keeps one row per
/// record; exact in `--json`; absent from `--prom`.
#[test]
fn the_table_cannot_be_injected() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let hostile = [
        "x\nfake  alive  1  0s  pidfd  -",
        "\u{1b}]0;owned\u{7}",
        "\u{1b}[2J\u{1b}[H",
        "\u{9b}31mred",
        "del\u{7f}\r\tcr",
        "rtl\u{202e}txt\u{2028}",
    ];
    for (i, b) in hostile.iter().enumerate() {
        let r = json!({"ts": now_ms() / 1000, "pid": 1, "status": "dead", "backend": b,
            "x\n\u{1b}[1m": b});
        std::fs::write(run.join(format!("a{i}.hb")), r.to_string()).unwrap();
    }
    // A parse error that quotes the record's text.
    std::fs::write(
        run.join("z.hb"),
        "{\"ts\":1,\"pid\":1,\"status\":\"\u{1b}[2J\n\"}",
    )
    .unwrap();
    let n = hostile.len() + 1;

    let o = run_with_deadline(sb.ps_cmd(&[]), 10 * SEC);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stdout.lines().count(), n + 1, "{}", o.stdout);
    assert!(!has_control(&o.stdout), "{:?}", o.stdout);
    assert!(!has_control(&o.stderr), "{:?}", o.stderr);
    assert!(o.stdout.contains("x\\x0afake"), "{}", o.stdout);
    assert!(o.stdout.contains("\\x1b]0;owned\\x07"), "{}", o.stdout);

    let o = run_with_deadline(sb.ps_cmd(&["--json"]), 10 * SEC);
    assert!(!has_control(&o.stdout), "{:?}", o.stdout);
    let v: Vec<Value> = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v.len(), n);
    for (i, b) in hostile.iter().enumerate() {
        assert_eq!(v[i]["backend"], *b, "{}", v[i]);
    }

    let o = run_with_deadline(sb.ps_cmd(&["--prom"]), 10 * SEC);
    assert!(!has_control(&o.stdout), "{:?}", o.stdout);
    assert_eq!(prom_agents(&o.stdout), n);
}

/// What went wrong, said: a run dir nobody can read makes `ps AGENT` fail with the reason,
/// and `wait` fail without the inotify-limit hint (which only fits EMFILE/ENOSPC).
#[test]
fn unreadable_run_dirs_say_why() {
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    std::fs::write(
        run.join("a.hb"),
        json!({"ts": 1, "pid": 1, "status": "dead"}).to_string(),
    )
    .unwrap();
    // Root reads everything: the commands run as nobody (setpriv drops the capabilities with
    // the uid), from a copy of the binary that nobody may execute wherever the tree lives.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("pidbeat");
    std::fs::copy(BIN, &bin).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = sb.cmd_of("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .arg("--run-dir")
            .arg(&run)
            .arg("a");
        run_with_deadline(c, 10 * SEC)
    };
    let o = as_nobody(&["ps"]);
    assert_eq!(o.code(), Some(1), "{o:?}");
    assert!(
        o.stderr
            .contains("a: cannot open record: Permission denied"),
        "{}",
        o.stderr
    );
    let o = as_nobody(&["ps", "--json"]);
    assert_eq!(o.code(), Some(1), "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(
        v[0]["error"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{v}"
    );
    let o = as_nobody(&["wait", "--timeout", "1"]);
    assert_eq!(o.code(), Some(1), "{o:?}");
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    assert!(
        !o.stderr.contains("limit"),
        "a hint that does not fit: {}",
        o.stderr
    );

    // ENOTDIR, as root: a run dir below a file.
    let file = sb.path("file");
    std::fs::write(&file, b"").unwrap();
    let mut c = sb.cmd();
    c.args(["ps", "--run-dir"]).arg(file.join("run")).arg("a");
    let o = run_with_deadline(c, 10 * SEC);
    assert_eq!(o.code(), Some(1), "{o:?}");
    assert!(o.stderr.contains("Not a directory"), "{}", o.stderr);
}

/// A seeded xorshift generator: the failure message names the seed, so a failure repeats.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())].clone()
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = self.below(300);
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn string(&mut self) -> String {
        const PARTS: [&str; 14] = [
            "pidfd",
            "poll",
            "\n",
            "\r",
            "\u{1b}[2J",
            "\u{1b}]0;t\u{7}",
            "\u{9b}",
            "\u{7f}",
            "\u{0}",
            "\"",
            "\\",
            "\u{202e}",
            "é",
            " ",
        ];
        (0..self.below(6)).map(|_| self.pick(&PARTS)).collect()
    }

    fn number(&mut self) -> Value {
        let me = std::process::id() as i64;
        let ints = [
            0,
            1,
            -1,
            2,
            7,
            64,
            65,
            255,
            256,
            me,
            i32::MAX as i64,
            i64::MIN,
            1 << 53,
        ];
        match self.below(4) {
            0 => json!(u64::MAX - self.below(3) as u64),
            1 => json!(self.pick(&[0.5, -0.0, 1e308, 1e-9, 86_400.5])),
            _ => json!(self.pick(&ints)),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => self.number(),
            3 => json!(self.string()),
            4 => Value::Array((0..self.below(3)).map(|_| self.value(depth + 1)).collect()),
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: u32) -> Value {
        let mut m = serde_json::Map::new();
        for _ in 0..self.below(4) {
            m.insert(self.string(), self.value(depth));
        }
        Value::Object(m)
    }

    /// A JSON record: pidbeat's keys, each present or not, with plausible or hostile values.
    fn record(&mut self, boot_id: &str) -> Value {
        let now = now_ms();
        let me = std::process::id();
        let status = self.pick(&["alive", "dead", "unwatched", "zombie"]);
        let exit = json!({"code": self.number(), "signal": self.number(), "core": false});
        let plausible = [
            ("ts", json!(now / 1000)),
            ("pid", json!(self.pick(&[1, me, 2]))),
            ("status", json!(status)),
            ("ts_ms", json!(now)),
            ("seq", json!(1 + self.below(9))),
            ("interval", json!(self.pick(&[0.05, 15.0, 1.0]))),
            ("backend", json!(self.string())),
            ("watcher_pid", json!(self.pick(&[1, me]))),
            ("start_time", json!(self.below(1 << 20))),
            ("exit", exit),
            ("died_ms", json!(now)),
            ("watcher_start_time", json!(self.below(1 << 20))),
            ("boot_id", json!(boot_id)),
            ("boottime_ms", self.number()),
            ("pidns", self.number()),
        ];
        let mut r = serde_json::Map::new();
        for (k, v) in plausible {
            match self.below(5) {
                0 => {}
                1 => {
                    r.insert(k.into(), self.value(0));
                }
                _ => {
                    r.insert(k.into(), v);
                }
            }
        }
        for _ in 0..self.below(3) {
            r.insert(self.string(), self.value(0));
        }
        Value::Object(r)
    }
}

/// Thousands of generated records (random bytes; JSON with hostile values and control
/// characters) over `ps`, `ps --json`, `ps --prom` and `wait --timeout`: nothing panics or
/// hangs, and every format has exactly one entry per record.
#[test]
fn thousands_of_hostile_records() {
    const N: usize = 3000;
    let seed = now_ms() | 1;
    let sb = Sandbox::new();
    let run = sb.private_run_dir();
    let mut g = Gen(seed);
    let boot = boot_id();
    let agents: Vec<String> = (0..N).map(|i| format!("r{i:04}")).collect();
    for a in &agents {
        let bytes = match g.below(4) {
            0 => g.bytes(),
            _ => g.record(&boot).to_string().into_bytes(),
        };
        std::fs::write(run.join(format!("{a}.hb")), bytes).unwrap();
    }
    let all: BTreeSet<&str> = agents.iter().map(String::as_str).collect();
    let what = format!("seed {seed}");
    let sane = |o: &Out, name: &str| {
        assert!(
            o.code().is_some(),
            "{name} killed by a signal ({what}): {o:?}"
        );
        assert!(
            !o.stderr.contains("panicked"),
            "{name} panicked ({what}): {}",
            o.stderr
        );
        assert!(
            !has_control(&o.stdout),
            "{name}: control characters ({what})"
        );
        assert!(
            !has_control(&o.stderr),
            "{name}: control characters on stderr ({what})"
        );
    };

    let o = run_with_deadline(sb.ps_cmd(&[]), 60 * SEC);
    sane(&o, "ps");
    assert_eq!(o.code(), Some(0), "{what}: {}", o.stderr);
    let rows: Vec<&str> = o.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), N, "{what}");
    let listed: BTreeSet<&str> = rows.iter().filter_map(|r| r.split(' ').next()).collect();
    assert_eq!(listed, all, "{what}");

    let o = run_with_deadline(sb.ps_cmd(&["--json"]), 60 * SEC);
    sane(&o, "ps --json");
    let v: Vec<Value> = serde_json::from_str(&o.stdout).unwrap();
    let listed: BTreeSet<&str> = v.iter().map(|o| o["agent"].as_str().unwrap()).collect();
    assert_eq!((v.len(), listed), (N, all.clone()), "{what}");

    let o = run_with_deadline(sb.ps_cmd(&["--prom"]), 60 * SEC);
    sane(&o, "ps --prom");
    assert_eq!(prom_agents(&o.stdout), N, "{what}");

    let mut c = sb.cmd();
    c.args(["wait", "--timeout", "1", "--run-dir"])
        .arg(&run)
        .args(&agents);
    let o = run_with_deadline(c, 60 * SEC);
    sane(&o, "wait");
    assert!(matches!(o.code(), Some(0 | 124)), "{what}: {o:?}");
    let mut ended = BTreeSet::new();
    for l in o.stdout.lines() {
        let (agent, outcome) = l.split_once(' ').unwrap();
        assert!(all.contains(agent) && ended.insert(agent), "{what}: {l}");
        assert!(
            outcome.starts_with("dead") || outcome == "lost",
            "{what}: {l}"
        );
    }
}
