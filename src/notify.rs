//! `pidbeat notify`: a `systemd-notify` for hosts without one. It sends one datagram of
//! `KEY=VALUE` lines to the agent's sd_notify socket (`<run-dir>/.<agent>.notify`, bound by
//! its watcher) or to `$NOTIFY_SOCKET`, from a non-blocking socket, and never waits for an
//! answer (the protocol has none; `BARRIER=1` is not sent).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::exitcode::{Error, ExitCode, Result, runtime};

/// The environment variable sd_notify senders read (systemd's name).
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

#[derive(Debug)]
pub struct NotifyConfig {
    /// The socket: the agent's in the run dir, or `$NOTIFY_SOCKET` (a leading `@` is an
    /// abstract name).
    pub socket: PathBuf,
    /// `KEY=VALUE` assignments, one per line of the datagram.
    pub assignments: Vec<String>,
}

pub fn command(config: NotifyConfig) -> Result<ExitCode> {
    if let Some(bad) = config.assignments.iter().find(|a| !valid(a)) {
        return Err(Error::Usage(format!(
            "{bad:?} is not KEY=VALUE (a KEY of letters, digits and _, no newline)"
        )));
    }
    let payload = config.assignments.join("\n");
    let bytes = config.socket.as_os_str().as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name),
        None => SocketAddrUnix::new(config.socket.as_path()),
    }
    .map_err(|e| runtime!("bad socket address {}: {e}", config.socket.display()))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| runtime!("socket: {e}"))?;
    rustix::net::sendto(&fd, payload.as_bytes(), SendFlags::NOSIGNAL, &addr).map_err(|e| {
        runtime!(
            "cannot notify {}: {e} (is the agent's watcher running?)",
            config.socket.display()
        )
    })?;
    Ok(ExitCode::Success)
}

fn valid(a: &str) -> bool {
    match a.split_once('=') {
        Some((k, v)) => {
            !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !v.contains('\n')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn assignments_are_checked() {
        assert!(super::valid("STATUS=a b=c"));
        assert!(super::valid("READY=1"));
        assert!(!super::valid("READY"));
        assert!(!super::valid("=1"));
        assert!(!super::valid("A-B=1"));
        assert!(!super::valid("STATUS=a\nREADY=1"));
    }
}
