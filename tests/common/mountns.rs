//! Run-dir faults: a private mount namespace with a size-limited tmpfs, for a full disk and
//! read-only mounts that touch nothing outside the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BIN, Guard, Out, Sandbox, line_channel, run_with_deadline};

/// A private mount namespace held open by a sleeping process, with a size-limited tmpfs
/// at `<sandbox>/mnt`. Its files are reachable from the test through /proc/HOLDER/root.
pub struct MountNs {
    holder: Guard,
    pub mnt: PathBuf,
}

impl MountNs {
    pub fn new(sb: &Sandbox, size: &str) -> Result<MountNs, String> {
        let mnt = sb.path("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut holder = Guard::try_spawn(
            sb.cmd_of("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(
                    "mount -t tmpfs -o size=\"$1\",mode=0755 pidbeat-test \"$2\" || exit 1; \
                     echo ready; exec sleep 1000",
                )
                .args(["sh", size])
                .arg(&mnt)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| format!("cannot run unshare: {e}"))?;
        let out = holder.child().stdout.take().unwrap();
        let line = line_channel(out).recv_timeout(Duration::from_secs(10));
        if line.as_deref().map(str::trim) != Ok("ready") {
            let st = holder.kill();
            let mut err = String::new();
            let _ = holder
                .child()
                .stderr
                .as_mut()
                .unwrap()
                .read_to_string(&mut err);
            return Err(format!("private tmpfs unavailable ({st}): {}", err.trim()));
        }
        Ok(MountNs { holder, mnt })
    }

    pub fn pid(&self) -> i32 {
        self.holder.pid()
    }

    /// The path as the test process reaches it: through the holder's root.
    pub fn host(&self, p: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(p.strip_prefix("/").unwrap())
    }

    /// `pidbeat` (the sandbox's scrubbed environment) entered into this namespace: nsenter
    /// execs, so the child's PID is pidbeat's.
    pub fn pidbeat(&self, sb: &Sandbox) -> Command {
        let mut c = sb.cmd_of("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--", BIN]);
        c
    }

    /// Runs `sh -c SCRIPT` in the namespace.
    pub fn sh(&self, script: &str) -> Out {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--", "sh", "-c", script]);
        run_with_deadline(c, Duration::from_secs(10))
    }

    /// Makes `dir` read-only with a read-only bind mount of itself on top.
    pub fn bind_read_only(&self, dir: &Path) {
        let r = dir.display();
        let o = self.sh(&format!(
            "mount --bind '{r}' '{r}' && mount -o remount,bind,ro '{r}'"
        ));
        assert!(o.status.success(), "ro bind mount: {}", o.stderr);
    }
}
