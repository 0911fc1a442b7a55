//! Memory and speed of the dedup set at repository scale: builds a cache of
//! N synthetic blobs (index files of 100,000 blobs, packs of 1,000), then,
//! in a fresh process state, opens the cache, loads its fingerprints into a
//! `BlobSet` and runs 1 million lookups (half present, half absent),
//! checking every answer.
//!
//! The build runs in a child process (this binary re-executed with
//! `--build DIR N`), so the peak RSS reported (VmHWM) covers only opening
//! the cache, loading the set and the lookups.
//!
//! `cargo run --release -p cairn-benches --bin store_dedup_rss [N]` (default
//! N = 10,000,000).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cairn_store::{BlobEntry, BlobType, Cache, Compression, Id, IndexFile, PackBlobs};

/// Blobs per index file.
const PER_INDEX: u64 = 100_000;
/// Blobs per pack.
const PER_PACK: u64 = 1_000;
/// Lookups in the measured phase.
const LOOKUPS: u64 = 1_000_000;
/// Lookup ids generated at a time (outside the timed part).
const BATCH: u64 = 10_000;

type Res<T> = Result<T, Box<dyn Error>>;

/// The id of synthetic blob `i`: BLAKE3 of the counter, as uniform as the
/// keyed hashes of real blob ids.
fn blob_id(i: u64) -> Id {
    Id::of_object(&i.to_le_bytes())
}

fn repo_id() -> Id {
    Id::of_object(b"cairn store_dedup_rss repository")
}

/// A status field of /proc/self/status in KiB (VmHWM, VmRSS).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// The child: fills the cache in `dir` with `n` blobs.
fn build(dir: &Path, n: u64) -> Res<()> {
    let mut cache = Cache::open(Some(dir), &repo_id())?;
    let start = Instant::now();
    let files = n.div_ceil(PER_INDEX);
    for f in 0..files {
        let first = f * PER_INDEX;
        let last = (first + PER_INDEX).min(n);
        let mut packs = Vec::new();
        let mut blob = first;
        while blob < last {
            let end = (blob + PER_PACK).min(last);
            let blobs = (blob..end)
                .map(|i| {
                    let slot = (i - blob) as u32;
                    BlobEntry {
                        id: blob_id(i),
                        blob_type: BlobType::Data,
                        compression: Compression::Zstd,
                        offset: slot * 40_000,
                        stored_len: 30_000 + (i % 9_000) as u32,
                        raw_len: 64_000,
                    }
                })
                .collect();
            packs.push(PackBlobs {
                pack: Id::of_object(format!("pack {blob}").as_bytes()),
                blobs,
            });
            blob = end;
        }
        let index = IndexFile {
            supersedes: vec![],
            packs,
        };
        let added =
            cache.add_index_file(&Id::of_object(format!("index {f}").as_bytes()), &index)?;
        if added as u64 != last - first {
            return Err(
                format!("index file {f}: {added} blobs added, not {}", last - first).into(),
            );
        }
        if (f + 1) % 10 == 0 || f + 1 == files {
            eprintln!(
                "  built {:>11} blobs, {:6.1} s",
                last,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--build") {
        let (Some(dir), Some(n)) = (args.get(2), args.get(3)) else {
            return Err("usage: store_dedup_rss --build DIR N".into());
        };
        return build(Path::new(dir), n.parse()?);
    }
    let n: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    if n == 0 {
        return Err("N must be positive".into());
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("cairn-store-dedup-rss-{}", std::process::id()));
    let result = run(&dir, n);
    // Best effort: the directory is ours alone.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &Path, n: u64) -> Res<()> {
    println!("store_dedup_rss: {n} blobs, cache in {}", dir.display());
    let t = Instant::now();
    let status = Command::new(std::env::current_exe()?)
        .arg("--build")
        .arg(dir)
        .arg(n.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("build child failed: {status}").into());
    }
    let build_s = t.elapsed().as_secs_f64();
    let file = dir.join(repo_id().to_hex()).join("index.sqlite");
    let file_bytes = std::fs::metadata(&file)?.len();

    // The measured phase.
    let rss_before = status_kib("VmHWM:").unwrap_or(0);
    let t = Instant::now();
    let cache = Cache::open(Some(dir), &repo_id())?;
    let open_s = t.elapsed().as_secs_f64();
    let set = cache.fingerprints()?;
    let load_s = t.elapsed().as_secs_f64();
    if set.len() as u64 != n {
        return Err(format!("loaded {} fingerprints, expected {n}", set.len()).into());
    }

    let mut lookup_s = 0.0;
    let mut batch = Vec::with_capacity(BATCH as usize);
    let mut k = 0u64;
    while k < LOOKUPS {
        batch.clear();
        for j in k..(k + BATCH).min(LOOKUPS) {
            // Even: a stored blob spread over the whole range; odd: absent.
            let (i, present) = if j.is_multiple_of(2) {
                ((j / 2).wrapping_mul(2_654_435_761) % n, true)
            } else {
                (n + j, false)
            };
            batch.push((blob_id(i), present));
        }
        let t = Instant::now();
        let mut wrong = 0usize;
        for (id, present) in &batch {
            wrong += usize::from(set.contains(std::hint::black_box(id)) != *present);
        }
        lookup_s += t.elapsed().as_secs_f64();
        if wrong > 0 {
            return Err(format!("{wrong} wrong answers in lookups {k}..").into());
        }
        k += BATCH;
    }
    let hwm = status_kib("VmHWM:").unwrap_or(0);
    let rss = status_kib("VmRSS:").unwrap_or(0);
    drop(cache);

    let bytes = set.bytes_used() as f64;
    println!("build (child process)     {build_s:10.1} s");
    println!(
        "cache file                {:10.1} MiB ({:.1} bytes/blob)",
        mib(file_bytes as f64),
        file_bytes as f64 / n as f64
    );
    println!("open                      {:10.3} s", open_s);
    println!("open + load fingerprints  {load_s:10.2} s");
    println!(
        "lookups                   {:10.1} M/s ({LOOKUPS} lookups, {:.0} ns each, all correct)",
        LOOKUPS as f64 / lookup_s / 1e6,
        lookup_s / LOOKUPS as f64 * 1e9
    );
    println!(
        "BlobSet                   {:10.1} MiB ({} bytes)",
        mib(bytes),
        set.bytes_used()
    );
    println!(
        "BlobSet per 1M blobs      {:10.2} MiB",
        mib(bytes) / (n as f64 / 1e6)
    );
    println!(
        "peak RSS (VmHWM)          {:10.1} MiB (before open: {:.1} MiB; VmRSS at end {:.1} MiB)",
        hwm as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    Ok(())
}
