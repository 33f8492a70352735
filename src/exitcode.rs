//! How pidbeat ends: the exit codes of the CLI contract, and the errors that map onto them.
//! Commands return an [`ExitCode`] or an [`Error`]; only `main` turns either into a process
//! status, and only `main` prints `pidbeat: error: …`.

use std::fmt;

/// Every status pidbeat exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success,
    /// A runtime error, or `ps` named an agent that has no record.
    Failure,
    /// The invocation is wrong (clap exits 2 by itself for what it catches).
    Usage,
    /// `status`: some named agent is not alive (as `systemctl is-active`'s 3).
    NotAlive,
    /// `status`, `wait --exists`: some named agent has no record.
    NoRecord,
    /// `wait --timeout` ran out.
    TimedOut,
    /// `run`: CMD exists but cannot be executed (the shell's convention).
    CannotExecute,
    /// `run`: CMD is not found (the shell's convention).
    NotFound,
    /// A child's own status: `run`'s CMD (its code, or 128 + signal), or a `--detach`ed
    /// watcher's that failed before its first record.
    Child(i32),
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::Usage => 2,
            ExitCode::NotAlive => 3,
            ExitCode::NoRecord => 4,
            ExitCode::TimedOut => 124,
            ExitCode::CannotExecute => 126,
            ExitCode::NotFound => 127,
            ExitCode::Child(c) => c,
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// Bad input: the invocation itself is wrong.
    Usage(String),
    /// The input was fine but the world is not (no such PID, lock held, disk).
    Runtime(String),
    /// `run` could not start CMD; the status says whether it was found.
    Spawn(String, ExitCode),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Runtime(_) => ExitCode::Failure,
            Error::Spawn(_, code) => *code,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Runtime(m) | Error::Spawn(m, _) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for a runtime error with a formatted message.
macro_rules! runtime {
    ($($t:tt)*) => { $crate::exitcode::Error::Runtime(format!($($t)*)) };
}
pub(crate) use runtime;
