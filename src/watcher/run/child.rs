//! Starting `run`'s child as tini does: in its own process group, in the terminal's
//! foreground when pidbeat holds it, with exactly the signal mask and ignored signals that
//! pidbeat inherited.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command};

use crate::exitcode::{Error, ExitCode, Result};
use crate::sys::{self, ChildStart};

/// `notify_socket`: the agent's sd_notify socket, given to CMD as `NOTIFY_SOCKET` so that it
/// and its hooks can speak to the watcher (`systemd-notify`, `pidbeat notify`).
pub fn spawn(cmd: &[OsString], notify_socket: Option<&Path>) -> Result<Child> {
    let (prog, rest) = cmd.split_first().expect("clap requires CMD");
    let mut c = Command::new(prog);
    c.args(rest);
    if let Some(socket) = notify_socket {
        c.env(crate::notify::NOTIFY_SOCKET_ENV, socket);
    }
    let stdin = std::io::stdin();
    sys::prepare_child(
        &mut c,
        ChildStart {
            own_group: true,
            // Only a terminal whose foreground is ours: a `run … &` must not steal it.
            take_terminal: sys::owns_foreground(stdin.as_fd()),
            signals: sys::inherited_signals(),
            changed: super::signals::CHANGED,
        },
    );
    c.spawn().map_err(|e| {
        // The shell's convention, which container runtimes follow too.
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            ExitCode::NotFound
        } else {
            ExitCode::CannotExecute
        };
        Error::Spawn(format!("cannot run {}: {e}", prog.to_string_lossy()), code)
    })
}
