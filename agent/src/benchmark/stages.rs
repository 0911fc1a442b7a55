//! The stages of the backup pipeline, each timed on its own: reading a
//! source, chunking, hashing, compressing and encrypting.
//!
//! The CPU stages run on `threads` workers at once, each over its own copy
//! of generated data, repeating until the time given is up, so that a rate
//! is what the whole machine does, as in a backup. Reading is timed on the
//! sources named (one thread, sequential 4 MiB reads, as a backup reads a
//! disk).

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_chunker::Chunker;
use cairn_store::crypto::ObjectCipher;

use super::StageRate;

/// Bytes each CPU worker loops over (large enough to leave the caches).
pub const DATA_PER_THREAD: usize = 8 << 20;
/// The size of one read from a source.
const READ_BLOCK: usize = 4 << 20;

/// `len` bytes of test data of about half compressible content: 4 KiB
/// blocks alternate between pseudo-random bytes (BLAKE3 output from
/// `seed`) and numbered log-like text lines.
pub fn test_data(seed: u64, len: usize) -> Vec<u8> {
    const BLOCK: usize = 4096;
    let mut out = vec![0u8; len];
    let mut random = blake3::Hasher::new();
    random.update(&seed.to_le_bytes());
    let mut xof = random.finalize_xof();
    for (i, block) in out.chunks_mut(BLOCK).enumerate() {
        if i % 2 == 0 {
            xof.fill(block);
        } else {
            let mut text = Vec::with_capacity(BLOCK + 80);
            let mut line = 0;
            while text.len() < block.len() {
                text.extend_from_slice(
                    format!(
                        "{seed} block {i} line {line}: request served in {} ms\n",
                        line * 7 % 113
                    )
                    .as_bytes(),
                );
                line += 1;
            }
            block.copy_from_slice(&text[..block.len()]);
        }
    }
    out
}

/// Runs `work` over `piece`-sized slices of each worker's data on
/// `threads` workers for `time`; returns the bytes all of them processed
/// and the seconds it took. `work` gets the worker's state made by `init`.
fn on_workers<S>(
    stage: &'static str,
    threads: usize,
    time: Duration,
    piece: usize,
    init: impl Fn(usize) -> S + Sync,
    work: impl Fn(&mut S, &[u8]) + Sync,
) -> StageRate {
    let threads = threads.max(1);
    let start = Instant::now();
    let bytes: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (init, work) = (&init, &work);
                s.spawn(move || {
                    let data = test_data(t as u64, DATA_PER_THREAD);
                    let mut state = init(t);
                    let mut done = 0u64;
                    // At least one piece, however short the time.
                    'outer: loop {
                        for p in data.chunks(piece.max(1)) {
                            work(&mut state, p);
                            done += p.len() as u64;
                            if start.elapsed() >= time {
                                break 'outer;
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    StageRate::new(stage, threads, bytes, start.elapsed())
}

/// Chunking with `chunker` (whole 8 MiB windows, as the backup feeds it).
pub fn chunk(chunker: &Chunker, threads: usize, time: Duration) -> StageRate {
    on_workers(
        "chunk",
        threads,
        time,
        DATA_PER_THREAD,
        |_| 0usize,
        |count, data| *count += chunker.chunks(data).count(),
    )
}

/// Keyed BLAKE3 over chunk-sized pieces (the blob id).
pub fn hash(key: &[u8; 32], avg_chunk: usize, threads: usize, time: Duration) -> StageRate {
    on_workers(
        "hash",
        threads,
        time,
        avg_chunk,
        |_| [0u8; 32],
        |last, piece| *last = *blake3::keyed_hash(key, piece).as_bytes(),
    )
}

/// zstd at `level` over chunk-sized pieces.
pub fn compress(level: i32, avg_chunk: usize, threads: usize, time: Duration) -> StageRate {
    on_workers(
        "compress",
        threads,
        time,
        avg_chunk,
        |_| (zstd::bulk::Compressor::new(level).ok(), 0usize),
        |(compressor, out), piece| {
            if let Some(c) = compressor {
                *out = c.compress(piece).map_or(0, |v| v.len());
            }
        },
    )
}

/// AES-256-GCM sealing of chunk-sized pieces under one object key, as a
/// pack's blobs are sealed.
pub fn encrypt(key: &[u8; 32], avg_chunk: usize, threads: usize, time: Duration) -> StageRate {
    on_workers(
        "encrypt",
        threads,
        time,
        avg_chunk,
        |_| {
            (
                ObjectCipher::from_key(key),
                0u64,
                Vec::with_capacity(avg_chunk + 16),
            )
        },
        |(cipher, offset, buf), piece| {
            buf.clear();
            buf.extend_from_slice(piece);
            cipher.seal_in_place(*offset, b"benchmark", buf);
            *offset += buf.len() as u64;
        },
    )
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read {path}: {source}; check that it exists and that you may read it (block devices need root)"
)]
pub struct ReadError {
    /// The file or device.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Sequential reads of `files` (in turn, each from its start) for `time`
/// or until all are read.
pub fn read(files: &[PathBuf], time: Duration) -> Result<StageRate, ReadError> {
    let start = Instant::now();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut bytes = 0u64;
    'files: for path in files {
        let err = |source| ReadError {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(err)?;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            bytes += n as u64;
            if start.elapsed() >= time {
                break 'files;
            }
        }
    }
    Ok(StageRate::new("read", 1, bytes, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_data_is_about_half_compressible_and_deterministic() {
        let a = test_data(1, 1 << 20);
        assert_eq!(a, test_data(1, 1 << 20));
        assert_ne!(a, test_data(2, 1 << 20));
        let packed = zstd::bulk::compress(&a, 3).map_or(0, |v| v.len());
        let ratio = packed as f64 / a.len() as f64;
        assert!((0.4..0.7).contains(&ratio), "{ratio}");
    }

    #[test]
    fn every_cpu_stage_counts_at_least_one_pass() {
        let key = [7u8; 32];
        for rate in [
            hash(&key, 65536, 2, Duration::ZERO),
            compress(3, 65536, 1, Duration::ZERO),
            encrypt(&key, 65536, 1, Duration::ZERO),
        ] {
            assert_eq!(rate.bytes % 65536, 0, "{rate:?}");
            assert!(rate.bytes >= 65536, "{rate:?}");
            assert!(rate.mb_per_s > 0.0, "{rate:?}");
        }
    }
}
