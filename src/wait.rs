//! `pidbeat wait`: block until agents end.

use crate::cli::WaitArgs;
use crate::error::Result;
use crate::runtime;

pub fn command(_args: WaitArgs) -> Result<i32> {
    Err(runtime!("wait: not implemented yet"))
}
