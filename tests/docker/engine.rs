//! The Docker engine of a test run: the one that already answers `docker info`, or a private
//! `dockerd` (no bridge, no iptables, no masquerading) with its own data root, exec root,
//! pidfile and socket under a temp dir, stopped (SIGTERM, wait) and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::*;

pub struct Engine {
    /// `DOCKER_HOST` for the CLI.
    pub host: String,
    /// A private engine: its process and temp dir. `None` when an existing engine is used.
    own: Option<(Guard, tempfile::TempDir)>,
    /// The prefix of this run's container and image names (all removed at the end).
    pub tag: String,
}

const ANSWER: Duration = Duration::from_secs(30);

/// Whether an engine answers `docker info` at `host` (a hung engine counts as none).
fn answers(host: &str) -> bool {
    let mut cmd = Command::new("docker");
    cmd.arg("info").env("DOCKER_HOST", host);
    crate::common::run_with_deadline(cmd, ANSWER)
        .status
        .success()
}

fn unavailable(why: &str) -> Option<Engine> {
    crate::common::skip(&format!("no Docker engine can run here: {why}"));
    None
}

impl Engine {
    pub fn start() -> Option<Engine> {
        let tag = format!("pidbeat-test-{}", std::process::id());
        if !crate::common::have("docker", "docker.io") {
            return None;
        }
        let existing = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        if answers(&existing) {
            return Some(Engine {
                host: existing,
                own: None,
                tag,
            });
        }
        if !crate::common::have("dockerd", "docker.io") {
            return unavailable("no engine answers and dockerd is not installed");
        }
        let dir = tempfile::Builder::new()
            .prefix("pidbeat-dockerd-")
            .tempdir_in("/tmp")
            .unwrap();
        let t = dir.path();
        let host = format!("unix://{}", t.join("docker.sock").display());
        let log = std::fs::File::create(t.join("dockerd.log")).unwrap();
        let g = Guard::try_spawn(
            Command::new("dockerd")
                .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
                .arg("--data-root")
                .arg(t.join("data"))
                .arg("--exec-root")
                .arg(t.join("exec"))
                .arg("--pidfile")
                .arg(t.join("pid"))
                .args(["--host", &host])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        );
        let g = match g {
            Ok(g) => g,
            Err(e) => return unavailable(&format!("cannot start dockerd: {e}")),
        };
        let engine = Engine {
            host: host.clone(),
            own: Some((g, dir)),
            tag,
        };
        let up = poll_for(ANSWER, Duration::from_millis(100), || {
            answers(&host).then_some(())
        });
        if up.is_none() {
            let log = std::fs::read_to_string(engine.dir().unwrap().join("dockerd.log"))
                .unwrap_or_default();
            drop(engine);
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return unavailable(&format!(
                "dockerd did not answer within {ANSWER:?}: {tail:?}"
            ));
        }
        Some(engine)
    }

    fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|(_, d)| d.path())
    }

    /// `docker ARGS…` against this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_HOST", &self.host);
        c
    }

    /// Runs `docker ARGS…` to completion; panics unless it succeeds. Its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = run_with_deadline(self.docker(args), Duration::from_secs(60));
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            out.stderr,
            out.stdout
        );
        out.stdout.trim().to_owned()
    }

    /// A container name of this run.
    pub fn name(&self, case: &str) -> String {
        format!("{}-{case}", self.tag)
    }

    /// The bind-mountable run dir for `case` (created 0700), under the engine's temp dir or,
    /// for an existing engine, a temp dir of the test's.
    pub fn host_dir(&self, scratch: &Path, case: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch.join(case);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Our containers, whatever state they are in (an existing engine keeps running).
        let out = run_with_deadline(
            self.docker(&["ps", "-aq", "--filter", &format!("name={}", self.tag)]),
            Duration::from_secs(30),
        );
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(&ids);
            let _ = run_with_deadline(self.docker(&args), Duration::from_secs(60));
        }
        let Some((mut g, dir)) = self.own.take() else {
            return;
        };
        // SIGTERM: dockerd stops its containerd and unmounts everything; SIGKILL would not.
        signal(g.pid(), Signal::TERM);
        if g.wait_timeout(Duration::from_secs(30)).is_none() {
            eprintln!("dockerd did not stop within 30 s of SIGTERM; killing it");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = dir.path().to_string_lossy().into_owned();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        drop(g);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("dockerd left mounts behind: {left:?}");
        }
        drop(dir);
    }
}
