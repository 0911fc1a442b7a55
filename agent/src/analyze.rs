//! `cairn chunk`: how a set of files or disks would chunk and deduplicate.
//!
//! Before the repository exists, this is the way to see the chunker at work
//! on real data, and afterwards it stays useful for choosing chunk sizes:
//! it reports how many chunks the inputs give, how many are distinct (what a
//! repository would store), the size distribution, and how fast the chunker
//! ran. It stores nothing.
//!
//! The gear table is built from the public [`TEST_SEED`], not a random one:
//! the statistic must be reproducible from run to run and machine to
//! machine. Repositories will use their own secret seed, so their exact
//! boundaries differ, but not their statistics.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cairn_chunker::{Chunker, ChunkerParams, GearTable, ParamsError, TEST_SEED};

use crate::exit::UsageError;
use crate::source::{ReadOptions, chunk_input};
use crate::stats::{Accumulator, Report, ReportContext};
use crate::walk::{Walker, Warning, check_named};

/// How the seed is described in reports.
pub const SEED_NOTE: &str = "public TEST_SEED (fixed, for reproducible statistics)";

/// Chunk-size choices: a preset plus optional overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeOptions {
    /// Start from [`ChunkerParams::DISK_DEFAULT`] instead of
    /// [`ChunkerParams::FILE_DEFAULT`].
    pub disk: bool,
    /// Minimum chunk size, overriding the preset.
    pub min: Option<usize>,
    /// Average chunk size, overriding the preset.
    pub avg: Option<usize>,
    /// Maximum chunk size, overriding the preset.
    pub max: Option<usize>,
    /// Normalization level, overriding the preset.
    pub normalization: Option<u32>,
}

impl SizeOptions {
    /// The resulting parameters, validated. Invalid combinations are a
    /// [`UsageError`] that names the sizes and says what to change.
    pub fn params(&self) -> Result<ChunkerParams, UsageError> {
        let preset = if self.disk {
            ChunkerParams::DISK_DEFAULT
        } else {
            ChunkerParams::FILE_DEFAULT
        };
        let params = ChunkerParams {
            min_size: self.min.unwrap_or(preset.min_size),
            avg_size: self.avg.unwrap_or(preset.avg_size),
            max_size: self.max.unwrap_or(preset.max_size),
            normalization: self.normalization.unwrap_or(preset.normalization),
        };
        params.validate().map_err(|e| {
            let overridden = [self.min, self.avg, self.max].iter().flatten().count();
            let unordered = matches!(e, ParamsError::Unordered { .. });
            let hint = if unordered && overridden > 0 && overridden < 3 {
                format!(
                    " (sizes not given come from the {} preset: min {}, avg {}, max {}; \
                     give --min, --avg and --max together)",
                    if self.disk { "--disk" } else { "file" },
                    preset.min_size,
                    preset.avg_size,
                    preset.max_size
                )
            } else {
                String::new()
            };
            UsageError(format!("{e}{hint}"))
        })?;
        Ok(params)
    }
}

/// Everything `cairn chunk` needs besides the paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkOptions {
    /// Chunk sizes.
    pub sizes: SizeOptions,
    /// How to read inputs.
    pub read: ReadOptions,
}

/// Chunks every input under `paths` and reports the totals.
///
/// Named paths that cannot be read fail the whole run, before any chunking
/// if they are missing. Problems below a named directory are passed to
/// `on_warning` as they happen, collected into the report, and the run goes
/// on.
pub fn chunk_paths(
    paths: &[PathBuf],
    options: &ChunkOptions,
    mut on_warning: impl FnMut(&Warning),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let params = options.sizes.params()?;
    let chunker = Chunker::new(params, GearTable::from_seed(&TEST_SEED))
        .map_err(|e| UsageError(e.to_string()))?;
    let named = check_named(paths)?;

    let mut acc = Accumulator::new();
    let mut warnings = Vec::new();
    let mut warn = |w: Warning| {
        on_warning(&w);
        warnings.push(w.to_string());
    };
    for path in &named {
        let mut walker = Walker::new(path);
        while let Some(next) = walker.next_input() {
            let input = match next? {
                Ok(input) => input,
                Err(w) => {
                    warn(w);
                    continue;
                }
            };
            let result = chunk_input(&input.path, input.kind, &chunker, options.read, &mut acc);
            match result {
                Ok(()) => {}
                Err(e) if input.named => return Err(e),
                Err(e) => warn(Warning::new(&input.path, format!("skipped: {e:#}"))),
            }
        }
        acc.count_skipped(walker.skipped());
    }

    let threads = options.read.threads;
    Ok(acc.report(ReportContext {
        seed: SEED_NOTE,
        params: params.into(),
        kernel: chunker.kernel().name().to_owned(),
        threads,
        wall: started.elapsed(),
        warnings,
    }))
}

/// The number of threads to use for `requested`: 0 means one per core.
pub fn threads(requested: usize) -> anyhow::Result<usize> {
    if requested > 0 {
        return Ok(requested);
    }
    Ok(std::thread::available_parallelism()
        .context("cannot count this machine's cores: give --threads explicitly")?
        .get())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use cairn_chunker::testdata;

    #[test]
    fn presets_and_overrides() {
        let file = SizeOptions::default().params().unwrap();
        assert_eq!(file, ChunkerParams::FILE_DEFAULT);
        let disk = SizeOptions {
            disk: true,
            ..Default::default()
        };
        assert_eq!(disk.params().unwrap(), ChunkerParams::DISK_DEFAULT);
        let custom = SizeOptions {
            min: Some(4096),
            avg: Some(16384),
            max: Some(65536),
            normalization: Some(1),
            ..Default::default()
        };
        assert_eq!(
            custom.params().unwrap(),
            ChunkerParams::new(4096, 16384, 65536).with_normalization(1)
        );
    }

    #[test]
    fn bad_sizes_are_usage_errors_with_a_hint() {
        let only_avg = SizeOptions {
            avg: Some(1 << 20),
            ..Default::default()
        };
        let msg = only_avg.params().unwrap_err().to_string();
        assert!(msg.contains("min <= avg <= max"), "{msg}");
        assert!(
            msg.contains("give --min, --avg and --max together"),
            "{msg}"
        );

        let not_pow2 = SizeOptions {
            min: Some(1000),
            avg: Some(3000),
            max: Some(9000),
            ..Default::default()
        };
        let msg = not_pow2.params().unwrap_err().to_string();
        assert!(msg.contains("power of two"), "{msg}");
        assert!(!msg.contains("together"), "{msg}");

        let tiny_min = SizeOptions {
            min: Some(12),
            ..Default::default()
        };
        let msg = tiny_min.params().unwrap_err().to_string();
        assert!(msg.contains("at least 64"), "{msg}");
        assert!(!msg.contains("together"), "{msg}");
    }

    #[test]
    fn duplicated_files_deduplicate_and_bad_entries_warn() {
        let dir = tempfile::tempdir().unwrap();
        let data = testdata::pseudo_random(1, 2 << 20);
        std::fs::write(dir.path().join("a"), &data).unwrap();
        std::fs::write(dir.path().join("b"), &data).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/small"), b"tiny").unwrap();

        let mut seen = Vec::new();
        let report = chunk_paths(&[dir.path().to_owned()], &ChunkOptions::default(), |w| {
            seen.push(w.clone())
        })
        .unwrap();
        assert!(seen.is_empty());
        assert_eq!(report.files, 3);
        assert_eq!(report.bytes, 2 * data.len() as u64 + 4);
        assert_eq!(report.unique_bytes, data.len() as u64 + 4);
        assert_eq!(report.chunks, 2 * report.unique_chunks - 1);
        assert_eq!(report.chunk_size.min, Some(4));
    }

    #[test]
    fn zero_threads_means_all_cores() {
        assert!(threads(0).unwrap() >= 1);
        assert_eq!(threads(3).unwrap(), 3);
    }
}
