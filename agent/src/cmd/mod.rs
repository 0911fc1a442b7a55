//! One file per command: each parses its options and calls the library.

pub mod chunk;

use cairn::exit::Outcome;

/// The commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Chunk files, disk images or block devices and report chunk and
    /// deduplication statistics (stores nothing).
    #[command(long_about = chunk::LONG_ABOUT, after_help = chunk::EXAMPLES)]
    Chunk(chunk::Args),
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Chunk(_) => "chunk",
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Chunk(args) => chunk::run(args),
        }
    }
}
