//! `spotstep completions <shell>`: the shell completion script of the command line.

use std::io::Write;

use clap_complete::{Generator, Shell};

use super::{io, Failure};
use crate::cli::{self, exit};

/// The arguments of `spotstep completions`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CompletionsOptions {
    /// The shell to complete in
    #[arg(value_name = "shell")]
    pub shell: Shell,
}

impl CompletionsOptions {
    /// Prints the script on stdout.
    pub fn execute(self) -> Result<u8, Failure> {
        write(self.shell, &mut std::io::stdout()).map_err(io)?;
        Ok(exit::OK)
    }
}

/// Writes the completion script of `spotstep`'s commands and options for `shell`.
pub fn write(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = cli::command(None).bin_name("spotstep");
    command.build();
    shell.try_generate(&command, out)
}
