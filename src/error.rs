//! The two failure kinds of the CLI contract: usage errors (exit 2) and runtime errors (exit 1).

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// Bad input: the invocation itself is wrong. Exit 2.
    Usage(String),
    /// The input was fine but the world is not (no such PID, lock held, disk). Exit 1.
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Runtime(m) => f.write_str(m),
        }
    }
}

/// Shorthand for a runtime error with a formatted message.
#[macro_export]
macro_rules! runtime {
    ($($t:tt)*) => { $crate::error::Error::Runtime(format!($($t)*)) };
}
