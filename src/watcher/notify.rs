//! The sd_notify listener: a `SOCK_DGRAM` socket at `<run-dir>/.<agent>.notify` in the
//! watcher's epoll set, costing nothing per beat. Senders are judged by the credentials the
//! kernel attaches (`SO_PASSCRED`): only the target's uid is heard (a hook's PID is
//! short-lived, so no PID is checked). Every passed fd is closed at once (Debian's
//! `systemd-notify` sends `BARRIER=1` with an fd and waits up to 5 s for its close). A flood
//! costs one fixed buffer: oversize datagrams are dropped, and what is heard changes the
//! evidence in memory; the watcher decides when to write (rate-limited, `mod.rs`).

use std::ffi::CString;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};

use crate::record::{Claim, Progress};
use crate::rundir;

/// The largest datagram heard; longer ones are dropped whole. systemd's own limit is about
/// 4 KiB of useful text too.
pub const DATAGRAM_MAX: usize = 4096;

pub struct Listener {
    fd: OwnedFd,
    path: CString,
    uid: u32,
    buf: Box<[u8; DATAGRAM_MAX]>,
}

/// What one drain of the socket changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// Any accepted datagram (the evidence's `notify_ms` moved).
    pub any: bool,
    /// A claim, `STATUS=`, `READY=`, `STOPPING=` or watchdog setting changed: worth a write.
    pub changed: bool,
}

impl Listener {
    /// Binds the agent's socket. The caller holds the agent's lock, so a socket file already
    /// there is a dead watcher's, and is replaced. Mode 0666: who may speak is decided by the
    /// credentials, not by the file's mode.
    pub fn bind(run_dir: &Path, agent: &str, uid: u32) -> io::Result<Listener> {
        let path = run_dir.join(rundir::notify_name(agent));
        let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let addr = SocketAddrUnix::new(path.as_c_str())?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        match rustix::fs::unlink(path.as_c_str()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::net::bind(&fd, &addr)?;
        rustix::fs::chmod(path.as_c_str(), rustix::fs::Mode::from_raw_mode(0o666))?;
        Ok(Listener {
            fd,
            path,
            uid,
            buf: Box::new([0; DATAGRAM_MAX]),
        })
    }

    /// Reads every queued datagram (mio is edge-triggered) into `p`, stamped `now_ms`.
    pub fn drain(&mut self, p: &mut Progress, now_ms: u64) -> Heard {
        let mut heard = Heard::default();
        loop {
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16), ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut self.buf[..])];
            let msg = match rustix::net::recvmsg(
                &self.fd,
                &mut iov,
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: drained.
            };
            let mut uid = None;
            for m in control.drain() {
                match m {
                    // Dropping them closes them, at once.
                    RecvAncillaryMessage::ScmRights(fds) => fds.for_each(drop),
                    RecvAncillaryMessage::ScmCredentials(c) => uid = Some(c.uid.as_raw()),
                    _ => {}
                }
            }
            if uid != Some(self.uid) || msg.flags.contains(ReturnFlags::TRUNC) {
                continue;
            }
            let text = &self.buf[..msg.bytes.min(DATAGRAM_MAX)];
            heard.any = true;
            heard.changed |= apply(text, p, now_ms);
            p.notify_ms = Some(now_ms);
        }
        heard
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Listener {
    /// The socket's name goes with the watcher (ours alone while we hold the lock).
    fn drop(&mut self) {
        let _ = rustix::fs::unlink(self.path.as_c_str());
    }
}

/// Applies one datagram's `KEY=VALUE` lines; unknown keys and malformed lines are ignored.
/// Returns whether anything worth writing at once changed.
pub fn apply(text: &[u8], p: &mut Progress, now_ms: u64) -> bool {
    let mut changed = false;
    for line in text.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"STATUS" if p.status_text.as_deref().map(str::as_bytes) != Some(value) => {
                p.set_status(value);
                changed = true;
            }
            b"X_PIDBEAT_ACTIVITY" => {
                if let Some(c) = Claim::parse(value) {
                    changed |= p.claim != Some(c);
                    p.claim = Some(c);
                    p.claim_ms = Some(now_ms);
                }
            }
            b"READY" if value == b"1" => {
                changed |= p.ready_ms.is_none();
                p.ready_ms = Some(now_ms);
            }
            b"STOPPING" if value == b"1" => {
                changed |= p.stopping_ms.is_none();
                p.stopping_ms = Some(now_ms);
            }
            b"WATCHDOG" if value == b"1" => {
                // A write only if it ends an expiry: readers must see the recovery.
                changed |= p.watchdog_expired(now_ms);
                p.watchdog_ms = Some(now_ms);
            }
            b"WATCHDOG_USEC" => {
                let usec = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                if let Some(usec) = usec {
                    changed |= p.watchdog_usec != Some(usec);
                    p.watchdog_usec = (usec > 0).then_some(usec);
                    p.watchdog_ms = Some(now_ms);
                }
            }
            _ => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_the_evidence() {
        let mut p = Progress::default();
        assert!(apply(
            b"READY=1\nSTATUS=compiling\nX_PIDBEAT_ACTIVITY=working",
            &mut p,
            5
        ));
        assert_eq!(p.status_text.as_deref(), Some("compiling"));
        assert_eq!(
            (p.claim, p.claim_ms, p.ready_ms),
            (Some(Claim::Working), Some(5), Some(5))
        );
        assert!(!apply(
            b"STATUS=compiling\nX_PIDBEAT_ACTIVITY=working",
            &mut p,
            6
        ));
        assert_eq!(
            p.claim_ms,
            Some(6),
            "a repeated claim is fresh, not a change"
        );
        assert!(!apply(
            b"garbage\n\xff\xfe=\nX_PIDBEAT_ACTIVITY=dancing\nWATCHDOG_USEC=x",
            &mut p,
            7
        ));
        assert!(apply(b"WATCHDOG_USEC=1000000", &mut p, 8));
        assert!(!apply(b"WATCHDOG=1", &mut p, 9));
        assert!(
            apply(b"WATCHDOG=1", &mut p, 2000),
            "the end of an expiry is written"
        );
        assert_eq!(p.watchdog_ms, Some(2000));
    }
}
