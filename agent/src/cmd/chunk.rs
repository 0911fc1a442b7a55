//! `cairn chunk`: chunk inputs and print statistics; see `cairn::analyze`.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;
use cairn::analyze::{self, ChunkOptions, SizeOptions};
use cairn::exit::Outcome;
use cairn::source::ReadOptions;
use cairn::units::parse_size;

/// The long help of `cairn chunk` (used by `cmd::Command`).
pub const LONG_ABOUT: &str = "Chunk files, disk images or block devices with cairn's \
content-defined chunker and report what a repository would store: bytes, chunks, distinct \
chunks and bytes, the dedup ratio, the chunk size distribution and the chunker's throughput \
(reading and hashing time are measured apart). Nothing is stored.

Directories are walked recursively; only regular files are read from them (symbolic links and \
special files are skipped). A file inside a directory that cannot be read is a warning: it is \
skipped and the command exits with code 3 at the end. A path named on the command line that \
cannot be read is an error (exit code 1).

The gear table is built from the public, fixed TEST_SEED, so results are reproducible from run \
to run and machine to machine. Real repositories use their own secret seed: their boundaries \
differ, their statistics do not.";

/// Examples shown after the options of `cairn chunk --help`.
pub const EXAMPLES: &str = "Examples:
  cairn chunk /usr/lib
  cairn chunk --disk --threads 0 /dev/vda
  cairn chunk --min 16K --avg 64K --max 256K --json disk.img";

/// Options of `cairn chunk`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start from the disk preset (ChunkerParams::DISK_DEFAULT) instead of the
    /// file preset (ChunkerParams::FILE_DEFAULT).
    #[arg(long)]
    disk: bool,
    /// Minimum chunk size in bytes (suffixes K, M, G are binary: 16K = 16384).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    min: Option<usize>,
    /// Average chunk size in bytes; a power of two.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    avg: Option<usize>,
    /// Maximum chunk size in bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max: Option<usize>,
    /// Normalization level, 0 to 3: higher gives a narrower size distribution.
    #[arg(long, value_name = "LEVEL")]
    normalization: Option<u32>,
    /// Threads for chunking each large (memory-mapped) input; 0 = one per core.
    /// Small files are chunked on one thread.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Print one JSON object on standard output instead of the text report.
    #[arg(long)]
    json: bool,
    /// Files, disk images, block devices or directories to chunk.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Runs `cairn chunk`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let options = ChunkOptions {
        sizes: SizeOptions {
            disk: args.disk,
            min: args.min,
            avg: args.avg,
            max: args.max,
            normalization: args.normalization,
        },
        read: ReadOptions {
            threads: analyze::threads(args.threads)?,
            ..ReadOptions::default()
        },
    };
    let report = analyze::chunk_paths(&args.paths, &options, |warning| {
        eprintln!("warning: {warning}");
    })?;

    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&report).context("cannot encode the report as JSON")?;
        json.push('\n');
        json
    } else {
        report.to_string()
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        // The reader went away (`cairn chunk ... | head`): not our failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write the report to standard output")?,
    }
    Ok(Outcome::from_warnings(report.warnings.len()))
}
