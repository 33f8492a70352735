//! Shell completion as a user meets it: the bash script `pidbeat completions bash` prints,
//! sourced into a real interactive bash in tmux (private socket dir), completing agent names
//! from the run dir, the run dir named on the line, and commands after `run --`. The other
//! shells (not installed here) are checked on the script and on the engine's answers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::tmux::TmuxSandbox;
use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

/// A seed-format record, enough for a name to be listed.
fn plant_seed(dir: &Path, agent: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let line = format!(
        "{{\"ts\":{},\"pid\":1,\"status\":\"dead\"}}\n",
        now_ms() / 1000
    );
    std::fs::write(dir.join(format!("{agent}.hb")), line).unwrap();
}

/// An interactive bash in a tmux pane with the completion script sourced, `pidbeat` (and an
/// executable `pbx-uniqcmd`) on PATH, and the sandbox's run dir in the environment.
struct Shell {
    h: TmuxSandbox,
}

impl Shell {
    fn start() -> Shell {
        let h = TmuxSandbox::new();
        let bin = h.path("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("pidbeat")).unwrap();
        let cmd = bin.join("pbx-uniqcmd");
        std::fs::write(&cmd, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&cmd, PermissionsExt::from_mode(0o755)).unwrap();
        let script = h.path("pidbeat.bash");
        let out = h.sb.cmd().args(["completions", "bash"]).finish();
        assert!(out.status.success(), "{out:?}");
        std::fs::write(&script, &out.stdout).unwrap();

        let out = h.tmux(&[
            "new-session",
            "-d",
            "-s",
            "comp",
            "-x",
            "200",
            "-y",
            "50",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        assert!(out.status.success(), "tmux: {out:?}");
        h.sb.procs();
        let shell = Shell { h };
        // Typed, not passed with `new-session -e`: tmux sets a new session's PATH from the
        // client's.
        shell.type_line(&format!(
            "export PATH={}:$PATH MOSAIC_HEARTBEAT_RUN_DIR={}; PS1='$ '; source {}; clear",
            bin.display(),
            shell.h.run_dir().display(),
            script.display()
        ));
        shell.wait_screen("the prompt", |s| s.trim_end() == "$");
        shell
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "comp"];
        args.extend(keys);
        let out = self.h.tmux(&args);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    fn type_line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = self.h.tmux(&["capture-pane", "-p", "-t", "comp"]);
        out.stdout
    }

    /// Waits (up to 10 s) until the screen satisfies `ok`.
    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        poll(
            10 * SEC,
            Duration::from_millis(20),
            || Some(self.screen()).filter(|s| ok(s)),
            || format!("the screen never showed {what}:\n{}", self.screen()),
        )
    }

    /// Types `text` at a fresh prompt, then TAB twice (bash lists the candidates on the
    /// second), and returns the screen once `ok` holds.
    fn complete(&self, text: &str, ok: impl Fn(&str) -> bool) -> String {
        // C-e C-u empties the line. Not C-c: SIGINT flushes the terminal's input queue, and
        // with it whatever was typed while bash was still busy.
        self.keys(&["C-e", "C-u"]);
        self.type_line("clear");
        self.wait_screen("a clear prompt", |s| s.trim_end() == "$");
        self.keys(&["-l", text]);
        self.keys(&["Tab"]);
        std::thread::sleep(Duration::from_millis(300));
        self.keys(&["Tab"]);
        self.wait_screen(&format!("the completions of {text:?}"), ok)
    }

    fn finish(self) {
        self.h.finish();
    }
}

#[test]
fn bash_completes_agents_run_dirs_and_commands() {
    let sh = Shell::start();
    let run = sh.h.run_dir();
    for agent in ["alpha-one", "beta", "gamma"] {
        plant_seed(&run, agent);
    }
    let other: PathBuf = sh.h.path("other");
    plant_seed(&other, "delta");

    // `pidbeat wait <TAB><TAB>` lists the agents of the environment's run dir.
    let s = sh.complete("pidbeat wait ", |s| s.contains("gamma"));
    for agent in ["alpha-one", "beta", "gamma"] {
        assert!(s.contains(agent), "{agent} not offered:\n{s}");
    }
    assert!(
        !s.contains("delta"),
        "an agent of another run dir offered:\n{s}"
    );

    // A unique prefix is completed on the line.
    sh.complete("pidbeat ps al", |s| s.contains("$ pidbeat ps alpha-one"));

    // The run dir named on the line wins over the environment.
    let line = format!("pidbeat ps --run-dir {} ", other.display());
    let s = sh.complete(&line, |s| s.contains("delta"));
    assert!(!s.contains("gamma"), "the environment's run dir used:\n{s}");

    // After `run --`: commands from PATH.
    sh.complete("pidbeat run --agent x -- pbx-uniq", |s| {
        s.contains("-- pbx-uniqcmd")
    });

    sh.finish();
}

/// The env engine's answers as zsh and fish ask for them (neither shell is installed here):
/// the registration scripts call back into `pidbeat`, and the answers carry agents and PIDs
/// with their command names.
#[test]
fn zsh_fish_and_others_get_scripts_and_answers() {
    let sb = Sandbox::new();
    for (shell, marks) in [
        (
            "zsh",
            &["#compdef pidbeat", "PIDBEAT_COMPLETE=\"zsh\"", "compdef "][..],
        ),
        (
            "fish",
            &["complete ", "PIDBEAT_COMPLETE=fish pidbeat --"][..],
        ),
        ("elvish", &["PIDBEAT_COMPLETE=\"elvish\""][..]),
        (
            "powershell",
            &["$env:PIDBEAT_COMPLETE = \"powershell\""][..],
        ),
        ("bash", &["PIDBEAT_COMPLETE=\"bash\"", "complete "][..]),
    ] {
        let out = sb.cmd().args(["completions", shell]).finish();
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = out.utf8_stdout().to_owned();
        for m in marks {
            assert!(text.contains(m), "{shell} script lacks {m:?}:\n{text}");
        }
    }

    plant_seed(&sb.run_dir(), "zed");
    let target = spawn_sleep();
    let ask = |shell: &str, words: &[&str]| {
        let out = sb
            .cmd()
            .env("PIDBEAT_COMPLETE", shell)
            .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
            .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.run_dir())
            .arg("--")
            .args(words)
            .finish();
        assert!(out.status.success(), "{shell} {words:?}: {out:?}");
        out.utf8_stdout().to_owned()
    };
    let zsh = ask("zsh", &["pidbeat", "forget-me-not", ""]);
    assert!(
        !zsh.contains("zed"),
        "agents offered for an unknown word: {zsh}"
    );
    assert!(
        ask("zsh", &["pidbeat", "wait", "z"])
            .lines()
            .any(|l| l == "zed")
    );
    let fish = ask("fish", &["pidbeat", "watch", "--pid", ""]);
    let me = format!("{}\tsleep", target.pid());
    assert!(fish.lines().any(|l| l == me), "no {me:?} in:\n{fish}");
    // A DIR value completes directories only.
    std::fs::write(sb.path("a-file"), "").unwrap();
    let prefix = format!("{}/", sb.dir.path().display());
    let dirs = ask("zsh", &["pidbeat", "ps", "--run-dir", &prefix]);
    assert!(dirs.lines().any(|l| l == format!("{prefix}run/")), "{dirs}");
    assert!(!dirs.contains("a-file"), "{dirs}");
    drop(target);
    sb.assert_clean(&[]);
}

/// A `COMPLETE` inherited from another tool's setup (clap's default variable) leaves pidbeat
/// doing its job; only `PIDBEAT_COMPLETE` makes it a completer.
#[test]
fn only_its_own_variable_makes_pidbeat_complete() {
    let sb = Sandbox::new();
    plant_seed(&sb.run_dir(), "kept");
    let ps = |var: &str| {
        let mut c = sb.cmd();
        c.env(var, "bash")
            .env("_CLAP_COMPLETE_INDEX", "1")
            .args(["ps", "--json", "--run-dir"])
            .arg(sb.run_dir());
        run_with_deadline(c, 10 * SEC)
    };
    let normal = ps("COMPLETE");
    assert_eq!(normal.code(), Some(0), "{normal:?}");
    assert_eq!(parse_ps(&normal.stdout)["kept"]["state"], "dead");
    let asked = ps("PIDBEAT_COMPLETE");
    assert_eq!(asked.code(), Some(0), "{asked:?}");
    assert!(!asked.stdout.contains("\"kept\""), "{asked:?}");
    sb.assert_clean(&[]);
}
