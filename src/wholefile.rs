//! Replacing a small file whole, so no reader ever sees it half-written: the text goes to a
//! temp file in the same dir (`.NAME.<pid>.tmp`: hidden, and not `*.prom`, so node_exporter's
//! textfile collector never reads it), which is then renamed over NAME. A failed write
//! removes the temp file. For `ps --output` and the death history; records have their own,
//! faster path (`watcher/store.rs`). And reading such a file back without trusting it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path)?;
    let written = write_new(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn tmp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

fn write_new(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(tmp)
    };
    // One left by a killed `ps` that had our PID: ours to replace.
    let mut f = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            open()?
        }
        r => r?,
    };
    f.write_all(bytes)?;
    f.flush()
}

/// The file's bytes if it is a regular file of at most `max` bytes; `None` if it does not
/// exist. Never follows a symlink or blocks on a FIFO.
pub fn read_small(path: &Path, max: usize) -> io::Result<Option<Vec<u8>>> {
    let f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        r => r?,
    };
    let m = f.metadata()?;
    if !m.is_file() || m.size() > max as u64 {
        return Err(io::Error::other(format!(
            "{} is not a regular file of at most {max} bytes",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    f.take(max as u64).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("pidbeat.prom");
        replace(&f, b"one\n").unwrap();
        replace(&f, b"two\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two\n");
        // The rename fails (a dir is in the way): the temp file is removed again.
        std::fs::create_dir(t.path().join("sub")).unwrap();
        assert!(replace(&t.path().join("sub"), b"x").is_err());
        let mut names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["pidbeat.prom", "sub"]);
        // A dir that is gone: the error is returned, and nothing is left behind.
        assert!(replace(&t.path().join("no/such.prom"), b"x").is_err());
        assert!(replace(Path::new("/"), b"x").is_err());
    }
}
