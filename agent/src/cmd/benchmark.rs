//! `cairn benchmark`: the throughput of each backup stage on this machine
//! and the time backups of the given disks would take (see
//! `cairn::benchmark` for the model).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cairn::benchmark::{Options, Report, measure};
use cairn::exit::Outcome;
use cairn::progress::format_duration;
use cairn::units::{Percent, format_bytes};
use cairn_chunker::{Chunker, ChunkerParams, GearTable};
use cairn_store::config::DEFAULT_COMPRESSION_LEVEL;

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn benchmark`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Chunking, hashing, compression and encryption run on generated data (about \
half compressible) on every worker thread; reading reads the disks and \
paths given; with a repository (--repo or CAIRN_REPO) a few pack-sized test \
objects are uploaded, read back and deleted (a leftover from a killed run is \
an unindexed pack, which prune removes). The sizing line assumes the CPU \
stages share the cores and that reading, the CPU and uploading overlap; an \
incremental reads everything and stores the --change-rate share. A source \
read recently may come from the page cache and look faster than the disk.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// A disk (block device or image) to read and size (repeatable).
    #[arg(long = "disk", value_name = "DISK")]
    disks: Vec<PathBuf>,
    /// A file or directory to read and size (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Time spent on each stage, in seconds.
    #[arg(long, value_name = "N", default_value_t = 2.0)]
    seconds: f64,
    /// The share of the data an incremental stores, for the sizing line.
    #[arg(long, value_name = "PERCENT", default_value = "2%")]
    change_rate: Percent,
    /// Worker threads of the CPU stages (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// zstd level without a repository (a repository's own level is used
    /// with one).
    #[arg(long, value_name = "LEVEL", default_value_t = DEFAULT_COMPRESSION_LEVEL, allow_negative_numbers = true)]
    compression: i32,
}

/// Runs `cairn benchmark`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(cairn::exit::UsageError(format!(
            "--seconds {} is out of range: give a time per stage above 0 and at most 3600",
            args.seconds
        ))
        .into());
    }
    let repo = match &args.repo.repo {
        Some(_) => Some(cairn::repo::open(&args.repo.spec())?),
        None => None,
    };
    let disk = !args.disks.is_empty();
    let (chunker, level) = match &repo {
        Some(r) => (
            cairn::repo::chunker_for(r, disk)?,
            r.config().compression_level,
        ),
        None => {
            let params = if disk {
                ChunkerParams::DISK_DEFAULT
            } else {
                ChunkerParams::FILE_DEFAULT
            };
            let seed = *blake3::hash(b"cairn benchmark gear").as_bytes();
            (
                Chunker::new(params, GearTable::from_seed(&seed))?,
                args.compression,
            )
        }
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let opts = Options {
        chunker: &chunker,
        compression_level: level,
        threads,
        time: Duration::from_secs_f64(args.seconds),
        disks: args.disks.clone(),
        paths: args.paths.clone(),
        change_rate: args.change_rate.0,
        hostname: cairn::repo::hostname(),
    };
    let chatty = !args.repo.quiet && !args.repo.json;
    let report = measure(&opts, repo.as_ref(), &mut |stage| {
        if chatty {
            eprintln!("measuring {stage}");
        }
    })?;
    if args.repo.json {
        print_json(&report)?;
    } else {
        print(&table(&report))?;
    }
    Ok(Outcome::Clean)
}

/// The human table, the bound and the sizing line.
fn table(r: &Report) -> String {
    let mut out = format!(
        "{:<10} {:>10} {:>8} {:>12}\n",
        "stage", "MB/s", "threads", "measured"
    );
    for s in &r.stages {
        let _ = writeln!(
            out,
            "{:<10} {:>10.1} {:>8} {:>12}",
            s.stage,
            s.mb_per_s,
            s.threads,
            format_bytes(s.bytes)
        );
    }
    let _ = writeln!(
        out,
        "zstd level {}, chunks of {} on average",
        r.compression_level,
        format_bytes(r.avg_chunk as u64)
    );
    match &r.sizing {
        Some(s) => {
            let _ = writeln!(
                out,
                "sizing: {} of sources: a full takes ~{} ({:.1} MB/s, bound by {}); an incremental with {:.1}% changed takes ~{} ({:.1} MB/s of source, bound by {})",
                format_bytes(s.total_bytes),
                format_duration(s.full_seconds),
                s.full_mb_per_s,
                s.full_bound,
                s.change_rate * 100.0,
                format_duration(s.incremental_seconds),
                s.incremental_mb_per_s,
                s.incremental_bound
            );
        }
        None => out += "sizing: give --disk or --path to size their backups\n",
    }
    out
}
