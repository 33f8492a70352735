//! `pidbeat ps`: the fleet view.

use crate::cli::PsArgs;
use crate::error::Result;
use crate::runtime;

pub fn command(_args: PsArgs) -> Result<i32> {
    Err(runtime!("ps: not implemented yet"))
}
