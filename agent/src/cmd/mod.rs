//! One file per command: each parses its options and calls the library.

pub mod backup;
pub mod chunk;
pub mod common;
pub mod init;
pub mod restore;
pub mod snapshots;

use cairn::exit::Outcome;

/// The commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a repository.
    Init(init::Args),
    /// Back up files and directories, or disks at block level (--disk).
    Backup(backup::Args),
    /// Restore a snapshot: files to a directory, or a disk to an image or device.
    Restore(restore::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// Chunk files, disk images or block devices and report chunk and
    /// deduplication statistics (stores nothing).
    #[command(long_about = chunk::LONG_ABOUT, after_help = chunk::EXAMPLES)]
    Chunk(chunk::Args),
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Backup(_) => "backup",
            Self::Restore(_) => "restore",
            Self::Snapshots(_) => "snapshots",
            Self::Chunk(_) => "chunk",
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Init(args) => init::run(args),
            Self::Backup(args) => backup::run(args),
            Self::Restore(args) => restore::run(args),
            Self::Snapshots(args) => snapshots::run(args),
            Self::Chunk(args) => chunk::run(args),
        }
    }
}
