//! `cairn benchmark`: how fast each stage of a backup runs on this
//! machine, and what that means for the backups of its disks.
//!
//! An operator choosing a schedule needs to know whether a full backup of
//! a 500 GB disk takes one hour or ten, and what a nightly incremental
//! costs, before the first backup runs. Each stage is timed on its own
//! ([`stages`]: read, chunk, hash, compress, encrypt; [`target`]: upload
//! and download with a repository) and then combined by a simple model
//! ([`Sizing`]):
//!
//! - the CPU stages share the cores, so their costs per byte add up: the
//!   CPU rate of a full is `1 / (1/chunk + 1/hash + 1/compress +
//!   1/encrypt)`, each stage measured on all worker threads;
//! - reading, the CPU and uploading overlap (the pipeline is joined by
//!   bounded channels), so a full runs at the slowest of the three: the
//!   *bound*;
//! - an incremental reads, chunks and hashes everything but compresses,
//!   encrypts and uploads only the changed share `c`: CPU cost per byte
//!   `1/chunk + 1/hash + c·(1/compress + 1/encrypt)`, upload cost per byte
//!   `c/upload`, and again the slowest of read, CPU and upload bounds it.
//!
//! The model ignores dedup within a full (a real full of a disk with
//! repeated or empty blocks is faster) and assumes a disk re-read in full
//! by each incremental (a file backup skips unchanged files).

pub mod stages;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// One stage's measured rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRate {
    /// The stage: read, chunk, hash, compress, encrypt, upload, download.
    pub stage: &'static str,
    /// Worker threads it ran on.
    pub threads: usize,
    /// Bytes processed.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Decimal megabytes per second.
    pub mb_per_s: f64,
}

impl StageRate {
    /// The rate of `bytes` in `elapsed` (a zero time counts as 1 ns).
    pub fn new(stage: &'static str, threads: usize, bytes: u64, elapsed: Duration) -> StageRate {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        StageRate {
            stage,
            threads,
            bytes,
            seconds,
            mb_per_s: bytes as f64 / seconds / 1e6,
        }
    }
}

/// The time a backup of the sources would take at the measured rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    /// Bytes of the disks and paths given.
    pub total_bytes: u64,
    /// The share of those bytes an incremental stores (0.02 = 2%).
    pub change_rate: f64,
    /// The rate a full runs at (MB/s), and the stage group bounding it.
    pub full_mb_per_s: f64,
    /// `read`, `cpu` or `upload`.
    pub full_bound: &'static str,
    /// Seconds a full takes.
    pub full_seconds: f64,
    /// The rate an incremental scans the sources at (MB/s of source).
    pub incremental_mb_per_s: f64,
    /// `read`, `cpu` or `upload`.
    pub incremental_bound: &'static str,
    /// Seconds an incremental takes.
    pub incremental_seconds: f64,
}

/// Seconds per decimal megabyte of a rate (infinite for a zero rate).
fn cost(mb_per_s: f64) -> f64 {
    1.0 / mb_per_s
}

/// The model of the module docs, from the stage rates in MB/s (`read` and
/// `upload` absent when not measured): the bound and the rate of a backup
/// storing `stored_share` of what it reads.
fn bound(rates: &Rates, stored_share: f64) -> (&'static str, f64) {
    let cpu = cost(rates.chunk)
        + cost(rates.hash)
        + stored_share * (cost(rates.compress) + cost(rates.encrypt));
    let mut best = ("cpu", 1.0 / cpu);
    if let Some(read) = rates.read
        && read < best.1
    {
        best = ("read", read);
    }
    if let Some(upload) = rates.upload
        && stored_share > 0.0
        && upload / stored_share < best.1
    {
        best = ("upload", upload / stored_share);
    }
    best
}

/// The stage rates the model needs, in MB/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Reading the sources, when measured.
    pub read: Option<f64>,
    /// Chunking.
    pub chunk: f64,
    /// Hashing.
    pub hash: f64,
    /// Compressing.
    pub compress: f64,
    /// Encrypting.
    pub encrypt: f64,
    /// Uploading, when measured.
    pub upload: Option<f64>,
}

impl Rates {
    /// The rates of `stages` by name; `None` when a CPU stage is missing.
    pub fn of(stages: &[StageRate]) -> Option<Rates> {
        let get = |name: &str| stages.iter().find(|s| s.stage == name).map(|s| s.mb_per_s);
        Some(Rates {
            read: get("read"),
            chunk: get("chunk")?,
            hash: get("hash")?,
            compress: get("compress")?,
            encrypt: get("encrypt")?,
            upload: get("upload"),
        })
    }

    /// How long backups of `total_bytes` take with `change_rate` of them
    /// changed per incremental.
    pub fn sizing(&self, total_bytes: u64, change_rate: f64) -> Sizing {
        let mb = total_bytes as f64 / 1e6;
        let (full_bound, full) = bound(self, 1.0);
        let (incremental_bound, incremental) = bound(self, change_rate);
        Sizing {
            total_bytes,
            change_rate,
            full_mb_per_s: full,
            full_bound,
            full_seconds: mb / full,
            incremental_mb_per_s: incremental,
            incremental_bound,
            incremental_seconds: mb / incremental,
        }
    }
}

/// What to measure.
pub struct Options<'a> {
    /// The chunker of the repository (or the defaults).
    pub chunker: &'a cairn_chunker::Chunker,
    /// The zstd level of the repository (or given).
    pub compression_level: i32,
    /// Worker threads of the CPU stages.
    pub threads: usize,
    /// Time per stage.
    pub time: Duration,
    /// Disks to read and size.
    pub disks: Vec<PathBuf>,
    /// Paths to read and size.
    pub paths: Vec<PathBuf>,
    /// The changed share of an incremental, for the sizing.
    pub change_rate: f64,
    /// This host's name (for the benchmark's lock).
    pub hostname: String,
}

/// Everything measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Worker threads of the CPU stages.
    pub threads: usize,
    /// The zstd level compressed at.
    pub compression_level: i32,
    /// The average chunk size hashed, compressed and encrypted at once.
    pub avg_chunk: usize,
    /// Each stage, in pipeline order.
    pub stages: Vec<StageRate>,
    /// The backups of the sources at these rates (absent without sources).
    pub sizing: Option<Sizing>,
}

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// A source cannot be listed or sized.
    #[error("cannot size {path}: {source}; check that it exists and that you may read it")]
    Size {
        /// The disk or path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A source cannot be read.
    #[error(transparent)]
    Read(#[from] stages::ReadError),
    /// The target failed.
    #[error("the upload/download test failed: {0}")]
    Target(#[from] cairn_store::Error),
}

/// Measures every stage (the target's with `repo`), telling `say` which
/// one starts.
pub fn measure(
    opts: &Options,
    repo: Option<&cairn_store::Repository>,
    say: &mut dyn FnMut(&str),
) -> Result<Report, BenchmarkError> {
    let size_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| BenchmarkError::Size { path, source }
    };
    let mut total = 0;
    for d in &opts.disks {
        total += source_bytes(std::slice::from_ref(d), &[]).map_err(size_err(d))?;
    }
    let mut files = opts.disks.clone();
    for p in &opts.paths {
        total += source_bytes(&[], std::slice::from_ref(p)).map_err(size_err(p))?;
        files.extend(files_under(std::slice::from_ref(p)).map_err(size_err(p))?);
    }
    // Any key times the same: the data is generated, nothing is stored.
    let key = *blake3::hash(b"cairn benchmark").as_bytes();
    let avg = opts.chunker.params().avg_size;
    let (threads, time) = (opts.threads.max(1), opts.time);
    let mut out = Vec::new();
    if !files.is_empty() {
        say("read");
        out.push(stages::read(&files, time)?);
    }
    say("chunk");
    out.push(stages::chunk(opts.chunker, threads, time));
    say("hash");
    out.push(stages::hash(&key, avg, threads, time));
    say("compress");
    out.push(stages::compress(opts.compression_level, avg, threads, time));
    say("encrypt");
    out.push(stages::encrypt(&key, avg, threads, time));
    if let Some(repo) = repo {
        say("upload and download");
        let t = target::upload_download(repo, &opts.hostname, time)?;
        out.extend([t.upload, t.download]);
    }
    let sizing = match Rates::of(&out) {
        Some(r) if total > 0 => Some(r.sizing(total, opts.change_rate)),
        _ => None,
    };
    Ok(Report {
        threads,
        compression_level: opts.compression_level,
        avg_chunk: avg,
        stages: out,
        sizing,
    })
}

/// The sizes of the sources: a disk's (or image's) length, the total of
/// the regular files under a path (symbolic links not followed).
pub fn source_bytes(disks: &[PathBuf], paths: &[PathBuf]) -> std::io::Result<u64> {
    let mut total = 0;
    for d in disks {
        use std::io::Seek;
        total += std::fs::File::open(d)?.seek(std::io::SeekFrom::End(0))?;
    }
    for f in files_under(paths)? {
        total += std::fs::symlink_metadata(f)?.len();
    }
    Ok(total)
}

/// The regular files under `paths` (symbolic links not followed), in
/// name order per directory: what the read stage reads.
pub fn files_under(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            stack.extend(entries.into_iter().rev());
        } else if meta.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rates() -> Rates {
        Rates {
            read: Some(500.0),
            chunk: 1000.0,
            hash: 1000.0,
            compress: 400.0,
            encrypt: 800.0,
            upload: Some(100.0),
        }
    }

    #[test]
    fn a_full_runs_at_the_slowest_of_read_cpu_and_upload() {
        let s = rates().sizing(1_000_000_000, 0.02);
        // CPU: 1/(1/1000 + 1/1000 + 1/400 + 1/800) = 173.9 MB/s; upload 100.
        assert_eq!(s.full_bound, "upload");
        assert!((s.full_seconds - 10.0).abs() < 1e-9, "{s:?}");
        // Incremental: CPU 1/(0.002 + 0.02·0.00375) = 481.9 MB/s; upload
        // 100/0.02 = 5000; read 500: the CPU bounds it.
        assert_eq!(s.incremental_bound, "cpu");
        let cpu = 1.0 / (0.002 + 0.02 * (1.0 / 400.0 + 1.0 / 800.0));
        assert!((s.incremental_mb_per_s - cpu).abs() < 1e-9, "{s:?}");
        assert!((s.incremental_seconds - 1000.0 / cpu).abs() < 1e-9);
    }

    #[test]
    fn without_read_and_upload_the_cpu_bounds() {
        let r = Rates {
            read: None,
            upload: None,
            ..rates()
        };
        let s = r.sizing(2_000_000, 0.0);
        assert_eq!((s.full_bound, s.incremental_bound), ("cpu", "cpu"));
        assert!((s.incremental_mb_per_s - 500.0).abs() < 1e-9);
    }

    #[test]
    fn sources_are_sized_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        std::fs::write(dir.path().join("d/a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("d/e/b"), [0u8; 5]).unwrap();
        std::fs::write(dir.path().join("img"), [0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("d/link")).unwrap();
        let p = |n: &str| dir.path().join(n);
        assert_eq!(source_bytes(&[p("img")], &[p("d")]).unwrap(), 115);
        assert_eq!(files_under(&[p("d")]).unwrap(), vec![p("d/a"), p("d/e/b")]);
    }
}
