//! What operators plug in, checked by the tools that read it: the Prometheus rules
//! (`promtool`), the systemd units (`systemd-analyze`), and the newcomer's first meetings
//! with pidbeat (`forget` on a live agent, the man pages as `man` renders them).
//!
//! A missing tool is a loud skip for a developer and a failure where the tools are required
//! (`PIDBEAT_REQUIRE_TOOLS=1`, as CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// The repository's root (where Cargo.toml is).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` with a deadline and asserts it succeeds; its output.
fn succeeds(cmd: Command, timeout: Duration) -> Out {
    let shown = format!("{cmd:?}");
    let o = run_with_deadline(cmd, timeout);
    assert!(
        o.status.success(),
        "{shown}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        o.stdout,
        o.stderr
    );
    o
}

#[test]
fn forget_names_the_watcher_of_a_live_agent() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let w = sb.watch_alive(target.pid(), "sleeper", &["--interval", "15"]);
    let mut c = sb.cmd();
    c.args(["forget", "sleeper", "--run-dir"]).arg(sb.run_dir());
    let o = run_with_deadline(c, 20 * SEC);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    let lock = sb.run_dir().join(".sleeper.lock");
    let want = format!(
        "pidbeat: forget: sleeper: refused: it is alive (stop its watcher first); watched by pid {} (lock {})\n",
        w.pid(),
        lock.display()
    );
    assert_eq!(o.stderr, want);
    assert!(sb.record_path("sleeper").exists());
}

#[test]
fn man_pages_render_without_backticks_and_name_every_file() {
    if !have("man", "man-db") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path("man1");
    let mut c = sb.cmd();
    c.args(["man", "--dir"]).arg(&dir);
    succeeds(c, 20 * SEC);
    for page in [
        "pidbeat.1",
        "pidbeat-ps.1",
        "pidbeat-status.1",
        "pidbeat-wait.1",
    ] {
        let mut c = Command::new("man");
        c.arg("-l")
            .arg(dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100");
        let text = succeeds(c, 20 * SEC).stdout;
        assert!(!text.contains('`'), "{page} shows a backtick:\n{text}");
        assert!(
            !text.contains("waitpid(1)"),
            "{page}: waitpid(1) is not on Debian 12"
        );
        if page != "pidbeat.1" {
            for f in [
                "<agent>.hb",
                "<agent>.deaths",
                "<agent>.log",
                ".<agent>.lock",
            ] {
                assert!(text.contains(f), "{page}'s FILES lacks {f}");
            }
        }
    }
}

/// A PATH of only what deps.sh itself uses, and a fake `apt-get` that logs its arguments and
/// answers the first `update` as apt does when another apt holds the lists' lock.
fn fake_apt(sb: &Sandbox) -> PathBuf {
    let bin = sb.path("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["bash", "sort", "grep", "mktemp", "rm", "cat", "sleep"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let log = sb.path("apt.log");
    let script = format!(
        "#!/bin/bash\n\
         echo \"$*\" >> {log}\n\
         if [[ $* == *update* && ! -e {log}.busy ]]; then\n\
             : > {log}.busy\n\
             echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)' >&2\n\
             exit 100\n\
         fi\n",
        log = log.display()
    );
    let apt = bin.join("apt-get");
    std::fs::write(&apt, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn deps_installs_only_what_the_task_needs_and_waits_for_the_apt_lock() {
    let sb = Sandbox::new();
    let bin = fake_apt(&sb);
    let deps = |task: &str| {
        let mut c = Command::new(bin.join("bash"));
        c.arg(root().join("scripts/deps.sh"))
            .arg(task)
            .env("PATH", &bin);
        run_with_deadline(c, 30 * SEC)
    };
    let o = deps("nope");
    assert_eq!(o.code(), Some(2), "{}", o.stderr);

    let o = deps("demo");
    if !rustix::process::geteuid().is_root() {
        // No sudo on this PATH: it names what to install.
        assert_eq!(o.code(), Some(1), "{}", o.stderr);
        assert!(
            o.stderr.contains("please install: tmux util-linux\n"),
            "{}",
            o.stderr
        );
        return;
    }
    assert!(o.status.success(), "{}", o.stderr);
    assert!(o.stderr.contains("waiting for it"), "{}", o.stderr);
    let log = std::fs::read_to_string(sb.path("apt.log")).unwrap();
    let calls: Vec<&str> = log.lines().collect();
    assert_eq!(
        calls.len(),
        3,
        "update (refused: locked), update, install: {log}"
    );
    assert!(calls[..2].iter().all(|c| c.starts_with("update")), "{log}");
    assert!(
        calls[2].starts_with("install")
            && calls[2].contains("-o DPkg::Lock::Timeout=300")
            && calls[2].ends_with(" tmux util-linux"),
        "the demo needs tmux and util-linux only: {log}"
    );
}

/// The demo, run as a newcomer runs it after `cargo build --release` with a CARGO_TARGET_DIR
/// of their own: it finds the binary where cargo put it (here, this test's pidbeat linked
/// into a temp target dir), and names PIDBEAT= when there is none.
#[test]
fn demo_finds_the_binary_in_cargo_target_dir() {
    if !have("tmux", "tmux") {
        return;
    }
    let sb = Sandbox::new();
    let target = sb.path("target");
    let demo = |target: &Path| {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/demo.sh"))
            .env("CARGO_TARGET_DIR", target)
            .env_remove("PIDBEAT")
            .env_remove("CARGO_BUILD_TARGET_DIR");
        run_with_deadline(c, 60 * SEC)
    };
    let o = demo(&target);
    assert_eq!(o.code(), Some(1), "{}", o.stderr);
    let want = format!("no pidbeat at {}/release/pidbeat", target.display());
    assert!(
        o.stderr.contains(&want) && o.stderr.contains("PIDBEAT="),
        "{}",
        o.stderr
    );

    std::fs::create_dir_all(target.join("release")).unwrap();
    std::os::unix::fs::symlink(BIN, target.join("release/pidbeat")).unwrap();
    let o = demo(&target);
    assert!(o.status.success(), "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("demo-codex dead code 3"), "{}", o.stdout);
    assert!(o.stdout.contains("demo-pi dead signal 1"), "{}", o.stdout);
}

#[test]
fn prometheus_rules_check_and_pass_their_unit_tests() {
    if !have("promtool", "prometheus") {
        return;
    }
    let dir = root().join("contrib/prometheus");
    let mut c = Command::new("promtool");
    c.args(["check", "rules", "pidbeat.rules.yml"])
        .current_dir(&dir);
    let o = succeeds(c, 60 * SEC);
    assert!(o.stdout.contains("SUCCESS"), "{}", o.stdout);
    let mut c = Command::new("promtool");
    c.args(["test", "rules", "pidbeat.rules.test.yml"])
        .current_dir(&dir);
    let o = succeeds(c, 60 * SEC);
    assert!(o.stdout.contains("SUCCESS"), "{}{}", o.stdout, o.stderr);
}

/// Every pidbeat metric the rules read is one `ps --prom` exports, and every state they
/// alert on is one `ps --prom` can report: a renamed metric or state breaks this test, not
/// the alerts in silence.
#[test]
fn prometheus_rules_read_only_what_ps_prom_exports() {
    let sb = Sandbox::new();
    let target = spawn_sleep();
    let _w = sb.watch_alive(target.pid(), "pi", &["--interval", "15"]);
    let o = sb.ps(&["--prom"]);
    assert!(o.status.success());
    let prom = o.stdout;
    // The rules without their comments (the placeholder for states to come).
    let rules: String =
        std::fs::read_to_string(root().join("contrib/prometheus/pidbeat.rules.yml"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
    let exported: Vec<&str> = prom
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut read = 0;
    for (i, _) in rules.match_indices("pidbeat_") {
        // A recording rule's name (`level:pidbeat_x:op`) is not an exported metric.
        if rules[..i].ends_with(':') {
            continue;
        }
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Inside a label value (`file=~"…pidbeat[^/]*…"`), not a metric.
        if name == "pidbeat_" {
            continue;
        }
        assert!(
            exported.contains(&name.as_str()),
            "the rules read {name}, which ps --prom does not export: {exported:?}"
        );
        read += 1;
    }
    assert!(read >= 6, "{read}");
    for (i, _) in rules.match_indices("state=\"") {
        let state: String = rules[i + 7..].chars().take_while(|c| *c != '"').collect();
        assert!(
            prom.contains(&format!("state=\"{state}\"")),
            "the rules alert on state {state}, which ps --prom never reports"
        );
    }
}

/// The units in contrib/systemd/, each as an instance for `user`, in `dir`, with ExecStart
/// run from this test's build instead of /usr/bin: the instance files' paths.
fn units(dir: &Path, user: &str) -> Vec<PathBuf> {
    let src = root().join("contrib/systemd");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix("@.service") else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(text.contains("/usr/bin/pidbeat "), "{name}");
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        std::fs::write(dir.join(&name), text.replace("/usr/bin", &bin_dir)).unwrap();
        let instance = dir.join(format!("{stem}@{user}.service"));
        std::os::unix::fs::symlink(&name, &instance).unwrap();
        out.push(instance);
    }
    out.sort();
    out
}

#[test]
fn systemd_units_verify_and_stay_hardened() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.path("units");
    std::fs::create_dir(&dir).unwrap();
    let units = units(&dir, "root");
    let names: Vec<String> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "pidbeat-publish@root.service",
            "pidbeat-textfile@root.service"
        ]
    );
    // verify runs `man` for Documentation=man:…: the pages pidbeat generates.
    let man = sb.path("man");
    let mut c = sb.cmd();
    c.args(["man", "--dir"]).arg(man.join("man1"));
    succeeds(c, 20 * SEC);
    let mut c = Command::new("systemd-analyze");
    c.arg("verify").args(&units).env("MANPATH", &man);
    let o = succeeds(c, 60 * SEC);
    assert_eq!(o.stderr, "", "systemd-analyze verify warns");

    // The exposure docs/GUIDE.md gives, for a user that is not root, must not grow.
    let units = {
        let dir = sb.path("units-agents");
        std::fs::create_dir(&dir).unwrap();
        self::units(&dir, "agents")
    };
    for (unit, most) in units.iter().zip(["1.6", "0.6"]) {
        let mut c = Command::new("systemd-analyze");
        c.args(["security", "--offline=yes", "--no-pager"])
            .arg(unit);
        let o = succeeds(c, 60 * SEC);
        let level = o
            .stdout
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no exposure level: {}", o.stdout));
        assert!(
            level.parse::<f64>().unwrap() <= most.parse::<f64>().unwrap(),
            "{}: exposure {level}, more than {most}:\n{}",
            unit.display(),
            o.stdout
        );
    }
}

/// The zsh script as the package installs it, `_pidbeat` in a directory of `$fpath`: zsh
/// autoloads it at the first TAB, which must complete already (clap's script alone only
/// binds its completer then); sourced, as the README shows, it binds the completer and
/// returns 0.
#[test]
fn zsh_completion_completes_at_the_first_tab_from_fpath() {
    if !have("zsh", "zsh") {
        return;
    }
    let sb = Sandbox::new();
    let (fp, bin) = (sb.path("fpath"), sb.path("bin"));
    std::fs::create_dir(&fp).unwrap();
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("pidbeat")).unwrap();
    let mut c = sb.cmd();
    c.args(["completions", "zsh"]);
    std::fs::write(fp.join("_pidbeat"), succeeds(c, 10 * SEC).stdout).unwrap();
    let path = format!("{}:{}", bin.display(), real_path());
    // `_describe` stands in for zsh's: it prints the candidates it is given.
    let first_tab = format!(
        "fpath=({} $fpath); autoload -Uz compinit && compinit -D; \
         _describe() {{ print -l -- ${{(P)${{@[-1]}}}}; }}; \
         words=(pidbeat w); CURRENT=2; _pidbeat",
        fp.display()
    );
    let mut c = Command::new("zsh");
    c.args(["-df", "-c", &first_tab]).env("PATH", &path);
    let o = succeeds(c, 20 * SEC);
    assert!(
        o.stdout.lines().any(|l| l.starts_with("watch:"))
            && o.stdout.lines().any(|l| l.starts_with("wait:")),
        "the first TAB completed nothing: {o:?}"
    );
    let mut c = Command::new("zsh");
    c.args([
        "-df",
        "-c",
        "autoload -Uz compinit && compinit -D; source <(pidbeat completions zsh) && \
         whence -w _clap_dynamic_completer_pidbeat",
    ])
    .env("PATH", &path);
    let o = succeeds(c, 20 * SEC);
    assert_eq!(o.stdout, "_clap_dynamic_completer_pidbeat: function\n");
}
