//! One file per command: each parses its options and calls the library.

pub mod backup;
pub mod benchmark;
pub mod check;
pub mod chunk;
pub mod common;
pub mod copy;
pub mod diff;
pub mod export;
pub mod forget;
pub mod init;
pub mod key;
pub mod key_rotate;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod report;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod snapshots;
pub mod stats;
pub mod synth;
pub mod unlock;

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
    /// List the files of a snapshot (or the disks of a disk snapshot).
    Ls(ls::Args),
    /// Show what changed between two snapshots.
    Diff(diff::Args),
    /// Sizes, new data per snapshot and the dedup ratio.
    Stats(stats::Args),
    /// Write a disk snapshot as a raw image to a file or stdout.
    Export(export::Args),
    /// Lay a snapshot out again in restore order (a synthetic full), from the repository alone.
    Synth(synth::Args),
    /// Verify the repository; name the snapshots any damage affects (exit 4).
    Check(check::Args),
    /// Remove snapshots by a retention policy (--keep-*) or by id.
    Forget(forget::Args),
    /// Delete what no snapshot needs and repack mostly unused packs (never
    /// makes running backups wait).
    Prune(prune::Args),
    /// List, add and remove key files; change the password.
    Key(key::Args),
    /// Copy snapshots from another repository (--from-repo) into this one,
    /// sending only the data it lacks.
    Copy(copy::Args),
    /// Rebuild the index from the packs, or save what is readable of
    /// damaged snapshots.
    Repair(repair::Args),
    /// Remove stale locks (every lock with --force).
    Unlock(unlock::Args),
    /// Run a job of the configuration file: hooks, freeze, backup,
    /// retention, check, status and metrics.
    Run(run::Args),
    /// Write an HTML report of the jobs: recovery point status and charts
    /// of size, new data, duration and dedup over time.
    Report(report::Args),
    /// Install, remove or show the systemd timer or cron entry of a job.
    Schedule(schedule::Args),
    /// Measure each backup stage's throughput on this machine and size
    /// the backups of the given disks.
    Benchmark(benchmark::Args),
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
            Self::Ls(_) => "ls",
            Self::Diff(_) => "diff",
            Self::Stats(_) => "stats",
            Self::Export(_) => "export",
            Self::Synth(_) => "synth",
            Self::Check(_) => "check",
            Self::Forget(_) => "forget",
            Self::Prune(_) => "prune",
            Self::Key(_) => "key",
            Self::Copy(_) => "copy",
            Self::Repair(_) => "repair",
            Self::Unlock(_) => "unlock",
            Self::Run(_) => "run",
            Self::Report(_) => "report",
            Self::Schedule(_) => "schedule",
            Self::Chunk(_) => "chunk",
            Self::Benchmark(_) => "benchmark",
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            Self::Init(args) => init::run(args),
            Self::Backup(args) => backup::run(args),
            Self::Restore(args) => restore::run(args),
            Self::Snapshots(args) => snapshots::run(args),
            Self::Ls(args) => ls::run(args),
            Self::Diff(args) => diff::run(args),
            Self::Stats(args) => stats::run(args),
            Self::Export(args) => export::run(args),
            Self::Synth(args) => synth::run(args),
            Self::Check(args) => check::run(args),
            Self::Forget(args) => forget::run(args),
            Self::Prune(args) => prune::run(args),
            Self::Key(args) => key::run(args),
            Self::Copy(args) => copy::run(args),
            Self::Repair(args) => repair::run(args),
            Self::Unlock(args) => unlock::run(args),
            Self::Run(args) => run::run(args),
            Self::Report(args) => report::run(args),
            Self::Schedule(args) => schedule::run(args),
            Self::Chunk(args) => chunk::run(args),
            Self::Benchmark(args) => benchmark::run(args),
        }
    }
}
