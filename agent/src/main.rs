//! The `cairn` command line: parses arguments and hands each command to its
//! file under `cmd/`, which calls the library. Nothing here knows how
//! chunking or storage work; this file only maps outcomes to exit codes.

mod cmd;

use std::process::ExitCode;

use cairn::exit::{self, UsageError};
use clap::Parser;

/// cairn: deduplicating backups from inside a VM to storage outside its cloud.
///
/// Back up disks (block level) and file trees into an encrypted,
/// deduplicated repository; restore them byte for byte.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, after_help = exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    // Command-line errors exit here with code 2, --help and --version with 0.
    let cli = Cli::parse();
    let name = cli.command.name();
    // Test-only hooks (docs/reliability.md): a bad value is an error.
    if let Err(err) = cairn::test_hooks::install_from_env() {
        eprintln!("error: {err}");
        return ExitCode::from(exit::FAILURE);
    }
    match cli.command.run() {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) => {
            if let Some(usage) = err.downcast_ref::<UsageError>() {
                // A usage error found after parsing: reported like clap's own.
                eprintln!("error: {usage}\n\nFor more information, try 'cairn {name} --help'.");
                return ExitCode::from(exit::USAGE);
            }
            eprintln!(
                "{}error: {}",
                cairn::log::priority_prefix("error"),
                exit::error_message(&err)
            );
            ExitCode::from(exit::code_for_error(&err))
        }
    }
}
