//! `spotstep contract`: the names and formats the Python stage reads.

use super::Failure;
use crate::cli::exit;

/// The arguments of `spotstep contract`: none.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ContractOptions {}

impl ContractOptions {
    /// Prints [`contract`](crate::contract::contract) as pretty JSON.
    pub fn execute(self) -> Result<u8, Failure> {
        println!("{:#}", crate::contract::contract());
        Ok(exit::OK)
    }
}
