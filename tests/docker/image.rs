//! The one image of a test run, by `docker import` of a rootfs made here: busybox-static
//! with links for the applets the cases use, and pidbeat with the libraries `ldd` names.
//! Removed when dropped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::common::*;
use super::engine::Engine;

pub struct Image<'e> {
    pub name: String,
    engine: &'e Engine,
}

const APPLETS: [&str; 16] = [
    "sh", "sleep", "cat", "tail", "head", "kill", "echo", "ls", "mkdir", "grep", "true", "false",
    "printf", "test", "[", "id",
];

/// The static busybox (Debian's busybox-static installs it as /bin/busybox).
fn busybox() -> &'static str {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let static_ = Command::new("file")
            .arg(p)
            .finish()
            .stdout
            .contains("statically");
        if static_ {
            return p;
        }
    }
    panic!("no static busybox (Debian: busybox-static)")
}

impl<'e> Image<'e> {
    pub fn build(engine: &'e Engine) -> Image<'e> {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for d in ["bin", "usr/local/bin", "tmp", "pb", "out", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::copy(BIN, root.join("usr/local/bin/pidbeat")).unwrap();
        copy_libs(BIN, &root);
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let name = format!("{}:image", engine.tag);
        let tar = t.path().join("root.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .finish();
        assert!(st.status.success(), "tar: {}", st.stderr);
        engine.ok(&["import", tar.to_str().unwrap(), &name]);
        Image { name, engine }
    }
}

/// Copies the shared libraries `ldd` lists for `bin` to the same paths under `root`.
fn copy_libs(bin: &str, root: &Path) {
    let out = run_with_deadline(
        {
            let mut c = Command::new("ldd");
            c.arg(bin);
            c
        },
        Duration::from_secs(10),
    );
    for l in out.stdout.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)".
        let path = l
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new);
        if let Some(p) = path {
            let dest = root.join(p.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(p, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", p.display()));
        }
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        let _ = run_with_deadline(
            self.engine.docker(&["rmi", "-f", &self.name]),
            Duration::from_secs(60),
        );
    }
}
