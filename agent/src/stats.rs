//! Counting chunks: sizes, duplicates and where the time went.
//!
//! This is the arithmetic behind `cairn chunk`, kept apart from reading and
//! printing so that it can be tested on its own. Duplicates are found by
//! BLAKE3 hash: two chunks with the same hash are counted as one stored
//! chunk, which is exactly what the repository will do (there with a keyed
//! hash; for a local statistic the plain hash gives the same counts).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::units::format_bytes;

/// Running totals over every chunk seen.
///
/// Remembers 16 bytes per distinct chunk (the first half of its BLAKE3
/// hash): about 0.5 GiB for a 1 TiB disk at 64 KiB chunks. The chance that
/// two different chunks share those 128 bits is below 10^-20 even for
/// billions of chunks, far below any error this statistic could show.
#[derive(Debug, Default)]
pub struct Accumulator {
    seen: HashSet<u128>,
    bytes: u64,
    chunks: u64,
    unique_chunks: u64,
    unique_bytes: u64,
    min: Option<u64>,
    max: u64,
    max_size_cuts: u64,
    /// Chunk count and bytes per power-of-two size class, by `log2(len)`.
    classes: BTreeMap<u32, (u64, u64)>,
    files: u64,
    skipped: u64,
    /// Where the time went; the reader fills in `chunking` and `reading`.
    pub timings: Timings,
}

/// Time spent in each stage, added up over all inputs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// In the chunker, finding boundaries, with reading taken out.
    pub chunking: Duration,
    /// Hashing chunks.
    pub hashing: Duration,
    /// Reading data (`read` calls, and faulting in mapped pages ahead of the
    /// chunker).
    pub reading: Duration,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one chunk: hashes it and adds it to the totals. `max_size` is
    /// the chunker's maximum, to count the chunks that were cut there.
    pub fn record(&mut self, data: &[u8], max_size: usize) {
        let start = Instant::now();
        let hash = blake3::hash(data);
        self.timings.hashing += start.elapsed();

        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        let len = data.len() as u64;
        self.bytes += len;
        self.chunks += 1;
        if self.seen.insert(u128::from_le_bytes(key)) {
            self.unique_chunks += 1;
            self.unique_bytes += len;
        }
        self.min = Some(self.min.map_or(len, |m| m.min(len)));
        self.max = self.max.max(len);
        if data.len() == max_size {
            self.max_size_cuts += 1;
        }
        let class = self.classes.entry(len.max(1).ilog2()).or_default();
        class.0 += 1;
        class.1 += len;
    }

    /// Counts one input file or device (whatever its size).
    pub fn count_file(&mut self) {
        self.files += 1;
    }

    /// Counts entries that were skipped because they are not regular files.
    pub fn count_skipped(&mut self, n: u64) {
        self.skipped += n;
    }

    /// Total bytes chunked so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The totals, as a report. `context` supplies what the accumulator does
    /// not know: the settings and the wall-clock time.
    pub fn report(&self, context: ReportContext) -> Report {
        let seconds = |d: Duration| d.as_secs_f64();
        let chunking = seconds(self.timings.chunking);
        Report {
            seed: context.seed,
            params: context.params,
            kernel: context.kernel,
            threads: context.threads,
            files: self.files,
            skipped: self.skipped,
            bytes: self.bytes,
            chunks: self.chunks,
            unique_chunks: self.unique_chunks,
            unique_bytes: self.unique_bytes,
            dedup_ratio: if self.unique_bytes == 0 {
                1.0
            } else {
                self.bytes as f64 / self.unique_bytes as f64
            },
            chunk_size: SizeSummary {
                min: self.min,
                avg: (self.chunks > 0).then(|| self.bytes as f64 / self.chunks as f64),
                max: self.min.map(|_| self.max),
                max_size_cuts: self.max_size_cuts,
            },
            histogram: self
                .classes
                .iter()
                .map(|(&log2, &(chunks, bytes))| Bucket {
                    from: 1u64 << log2,
                    to: 1u64.checked_shl(log2 + 1).unwrap_or(u64::MAX),
                    chunks,
                    bytes,
                })
                .collect(),
            seconds: Seconds {
                chunking,
                hashing: seconds(self.timings.hashing),
                reading: seconds(self.timings.reading),
                wall: seconds(context.wall),
            },
            chunking_mb_per_s: (chunking > 0.0).then(|| self.bytes as f64 / chunking / 1e6),
            warnings: context.warnings,
        }
    }
}

/// What a [`Report`] needs beyond the counts.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// Which gear seed was used, in words.
    pub seed: &'static str,
    /// The chunk sizes.
    pub params: Params,
    /// The chunker's scan kernel.
    pub kernel: String,
    /// Threads used to chunk each large input.
    pub threads: usize,
    /// Wall-clock time of the whole run.
    pub wall: Duration,
    /// Warnings reported during the run.
    pub warnings: Vec<String>,
}

/// The result of `cairn chunk`, as printed (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which gear seed was used.
    pub seed: &'static str,
    /// The chunk sizes.
    pub params: Params,
    /// The chunker's scan kernel.
    pub kernel: String,
    /// Threads used to chunk each large input.
    pub threads: usize,
    /// Files and devices chunked (including empty ones).
    pub files: u64,
    /// Entries under directories skipped as not regular files.
    pub skipped: u64,
    /// Bytes chunked.
    pub bytes: u64,
    /// Chunks produced.
    pub chunks: u64,
    /// Distinct chunks (by content).
    pub unique_chunks: u64,
    /// Bytes in distinct chunks: what a repository would store before
    /// compression.
    pub unique_bytes: u64,
    /// `bytes / unique_bytes`; 1.0 when there is no data.
    pub dedup_ratio: f64,
    /// Chunk size statistics.
    pub chunk_size: SizeSummary,
    /// Chunks per power-of-two size class, smallest first; empty classes are
    /// left out.
    pub histogram: Vec<Bucket>,
    /// Time spent per stage.
    pub seconds: Seconds,
    /// Bytes chunked per second of chunking time, in MB/s (10^6 bytes);
    /// `null` when nothing was chunked.
    pub chunking_mb_per_s: Option<f64>,
    /// Warnings about inputs that were skipped.
    pub warnings: Vec<String>,
}

/// Chunk sizes used, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Params {
    /// Minimum chunk size.
    pub min_size: usize,
    /// Average chunk size.
    pub avg_size: usize,
    /// Maximum chunk size.
    pub max_size: usize,
    /// Normalization level.
    pub normalization: u32,
}

impl From<cairn_chunker::ChunkerParams> for Params {
    fn from(p: cairn_chunker::ChunkerParams) -> Self {
        Self {
            min_size: p.min_size,
            avg_size: p.avg_size,
            max_size: p.max_size,
            normalization: p.normalization,
        }
    }
}

/// Smallest, mean and largest chunk; `null` when there are no chunks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SizeSummary {
    /// Smallest chunk, in bytes.
    pub min: Option<u64>,
    /// Mean chunk size, in bytes.
    pub avg: Option<f64>,
    /// Largest chunk, in bytes.
    pub max: Option<u64>,
    /// Chunks of exactly the maximum size: cut there because no boundary
    /// came before it (or, rarely, an input that ended right there).
    pub max_size_cuts: u64,
}

/// One size class of the histogram: chunks with `from <= len < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Smallest size in the class.
    pub from: u64,
    /// One past the largest size in the class.
    pub to: u64,
    /// Chunks in the class.
    pub chunks: u64,
    /// Bytes in those chunks.
    pub bytes: u64,
}

/// Seconds spent per stage; see [`Timings`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Seconds {
    /// Finding boundaries.
    pub chunking: f64,
    /// Hashing chunks.
    pub hashing: f64,
    /// Reading data.
    pub reading: f64,
    /// The whole run, wall clock.
    pub wall: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "params      min {}, avg {}, max {}, normalization {}",
            format_bytes(p.min_size as u64),
            format_bytes(p.avg_size as u64),
            format_bytes(p.max_size as u64),
            p.normalization
        )?;
        writeln!(
            f,
            "chunker     {} kernel, {} thread{}, seed: {}",
            self.kernel,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.seed
        )?;
        write!(f, "files       {}", self.files)?;
        if self.skipped > 0 {
            write!(f, " ({} non-regular entries skipped)", self.skipped)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "bytes       {} ({}), unique {} ({})",
            self.bytes,
            format_bytes(self.bytes),
            self.unique_bytes,
            format_bytes(self.unique_bytes)
        )?;
        writeln!(
            f,
            "chunks      {}, unique {}",
            self.chunks, self.unique_chunks
        )?;
        writeln!(f, "dedup ratio {:.3}", self.dedup_ratio)?;
        let s = &self.chunk_size;
        if let (Some(min), Some(avg), Some(max)) = (s.min, s.avg, s.max) {
            writeln!(
                f,
                "chunk size  min {}, avg {}, max {}; {} cut at the maximum",
                format_bytes(min),
                format_bytes(avg.round() as u64),
                format_bytes(max),
                s.max_size_cuts
            )?;
        }
        let t = &self.seconds;
        match self.chunking_mb_per_s {
            Some(mbps) => writeln!(f, "throughput  chunking {mbps:.1} MB/s")?,
            None => writeln!(f, "throughput  (no data)")?,
        }
        writeln!(
            f,
            "seconds     chunking {:.3}, hashing {:.3}, reading {:.3}, wall {:.3}",
            t.chunking, t.hashing, t.reading, t.wall
        )?;
        if !self.histogram.is_empty() {
            writeln!(f, "chunk sizes (count, share of bytes):")?;
            let width = self.histogram.iter().map(|b| b.chunks).max().unwrap_or(0);
            let width = width.to_string().len();
            for b in &self.histogram {
                let share = if self.bytes == 0 {
                    0.0
                } else {
                    100.0 * b.bytes as f64 / self.bytes as f64
                };
                let bar = "#".repeat((share / 2.0).round() as usize);
                // No chunk exceeds the maximum: a class that starts there
                // holds only chunks of exactly the maximum size.
                let to = if b.from == p.max_size as u64 {
                    "(maximum)".to_owned()
                } else {
                    format!(".. {}", format_bytes(b.to))
                };
                writeln!(
                    f,
                    "  {:>9} {:<12} {:>width$} {:>5.1}% {bar}",
                    format_bytes(b.from),
                    to,
                    b.chunks,
                    share
                )?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(f, "warnings    {} (see above)", self.warnings.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    fn context() -> ReportContext {
        ReportContext {
            seed: "test",
            params: cairn_chunker::ChunkerParams::FILE_DEFAULT.into(),
            kernel: "Scalar".into(),
            threads: 1,
            wall: Duration::from_secs(1),
            warnings: vec![],
        }
    }

    #[test]
    fn counts_duplicates_sizes_and_classes() {
        let mut acc = Accumulator::new();
        let a = vec![1u8; 1000];
        let b = vec![2u8; 3000];
        let c = vec![3u8; 4096];
        for chunk in [&a, &b, &a, &c, &a] {
            acc.record(chunk, 4096);
        }
        acc.count_file();
        let r = acc.report(context());
        assert_eq!(r.files, 1);
        assert_eq!(r.chunks, 5);
        assert_eq!(r.unique_chunks, 3);
        assert_eq!(r.bytes, 3 * 1000 + 3000 + 4096);
        assert_eq!(r.unique_bytes, 1000 + 3000 + 4096);
        assert!((r.dedup_ratio - 10096.0 / 8096.0).abs() < 1e-12);
        assert_eq!(r.chunk_size.min, Some(1000));
        assert_eq!(r.chunk_size.max, Some(4096));
        assert_eq!(r.chunk_size.max_size_cuts, 1);
        assert_eq!(
            r.histogram,
            [
                Bucket {
                    from: 512,
                    to: 1024,
                    chunks: 3,
                    bytes: 3000
                },
                Bucket {
                    from: 2048,
                    to: 4096,
                    chunks: 1,
                    bytes: 3000
                },
                Bucket {
                    from: 4096,
                    to: 8192,
                    chunks: 1,
                    bytes: 4096
                },
            ]
        );
        let text = r.to_string();
        assert!(text.contains("dedup ratio 1.247"), "{text}");
        assert!(text.contains("512 B .. 1 KiB"), "{text}");
        assert!(text.contains("chunks      5, unique 3"), "{text}");
    }

    #[test]
    fn empty_run_has_neutral_values() {
        let r = Accumulator::new().report(context());
        assert_eq!(r.dedup_ratio, 1.0);
        assert_eq!(r.chunk_size.min, None);
        assert_eq!(r.chunking_mb_per_s, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["chunking_mb_per_s"].is_null());
        assert!(r.to_string().contains("(no data)"));
    }
}
