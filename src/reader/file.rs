//! Reading the run dir without trusting it: which agents have a record, and a record's bytes
//! read so that no file planted there (a symlink, a FIFO, a huge or sparse file) can make a
//! reader follow it, block, or read without bound.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::record::MAX_RECORD_BYTES;
use crate::rundir;

/// The agents with a record in `dir`, sorted. Files whose stem is not a valid agent name are
/// not records of ours and are skipped. NotFound means the run dir itself is missing.
pub fn list_agents(dir: &Path) -> io::Result<Vec<String>> {
    let mut agents = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let name = ent?.file_name();
        let Some(agent) = name.to_str().and_then(rundir::agent_of_record) else {
            continue;
        };
        if rundir::validate_agent(agent).is_ok() {
            agents.push(agent.to_owned());
        }
    }
    agents.sort();
    Ok(agents)
}

/// The agent's record bytes now (`None`: no record; an error for a file that is not one, or
/// cannot be read).
pub fn read_record(dir: &Path, agent: &str) -> Result<Option<Vec<u8>>, String> {
    let mut buf = vec![0; MAX_RECORD_BYTES + 1];
    let len = read_record_at(None, &dir.join(rundir::record_name(agent)), &mut buf)
        .map_err(Unread::into_message)?;
    Ok(len.map(|n| buf[..n].to_vec()))
}

/// Why a record's bytes were not had.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    /// The file is not a record we read (a symlink, not a regular file, over the size
    /// limit): the agent's record is corrupt.
    Refused(String),
    /// The file could not be read (EACCES, EIO, ENOTDIR …): the reader cannot tell, which is
    /// an error of the command.
    Failed(String),
}

impl Unread {
    pub fn into_message(self) -> String {
        match self {
            Unread::Refused(m) | Unread::Failed(m) => m,
        }
    }
}

/// Reads a record without trusting the file: O_NOFOLLOW (a planted symlink is refused, not
/// followed), O_NONBLOCK (a FIFO cannot block the open), a type check before reading (nor the
/// read), and a bounded read (a huge or sparse file is refused from its size). Reads into
/// `buf` (at least `MAX_RECORD_BYTES + 1` long, reused from record to record), relative to
/// `dirfd` when given; returns the record's length, `None` if there is no such record. A record
/// takes one read: more only if the kernel returns less than `fstat` promised. The one byte
/// over the limit tells a file that grew after `fstat` from one that fits.
pub fn read_record_at(
    dirfd: Option<&OwnedFd>,
    path: &Path,
    buf: &mut [u8],
) -> Result<Option<usize>, Unread> {
    debug_assert!(buf.len() > MAX_RECORD_BYTES);
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let opened = match dirfd {
        Some(d) => rfs::openat(d, path, flags | OFlags::NOCTTY, Mode::empty()),
        None => rfs::open(path, flags | OFlags::NOCTTY, Mode::empty()),
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(Unread::Refused("record is a symlink".into())),
        Err(e) => return Err(Unread::Failed(format!("cannot open record: {e}"))),
    };
    let st = rfs::fstat(&fd).map_err(|e| Unread::Failed(format!("cannot stat record: {e}")))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Unread::Refused(format!(
            "record is not a regular file ({kind:?})"
        )));
    }
    if st.st_size as u64 > MAX_RECORD_BYTES as u64 {
        return Err(Unread::Refused(format!(
            "record is {} bytes, over the {MAX_RECORD_BYTES}-byte limit",
            st.st_size
        )));
    }
    let buf = &mut buf[..=MAX_RECORD_BYTES];
    let mut len = 0;
    loop {
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Unread::Failed(format!("cannot read record: {e}"))),
        };
        len += n;
        if len > MAX_RECORD_BYTES {
            return Err(Unread::Refused(format!(
                "record is over the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        // A size of 0 may also be a file that does not know its size: read it to the end.
        if n == 0 || (st.st_size > 0 && len as u64 >= st.st_size as u64) {
            return Ok(Some(len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_record_bytes(path: &Path) -> Result<Option<Vec<u8>>, String> {
        let mut buf = vec![0; MAX_RECORD_BYTES + 1];
        match read_record_at(None, path, &mut buf) {
            Ok(n) => Ok(n.map(|n| buf[..n].to_vec())),
            Err(Unread::Refused(e)) => Err(e),
            Err(Unread::Failed(e)) => panic!("{}: {e}", path.display()),
        }
    }

    #[test]
    fn hostile_files_are_corrupt_not_read() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.hb");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        assert!(read_record_bytes(&big).unwrap_err().contains("limit"));
        let link = t.path().join("link.hb");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(read_record_bytes(&link).unwrap_err().contains("symlink"));
        let fifo = t.path().join("fifo.hb");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read_record_bytes(&fifo).unwrap_err().contains("regular"));
        assert_eq!(read_record_bytes(&t.path().join("none.hb")), Ok(None));
    }
}
