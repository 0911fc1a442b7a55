//! Measures where repository bytes go, to decide how data is compressed.
//!
//! It chunks a disk image (`disk IMAGE`, disk chunk sizes) or every file of
//! a tree (`tree DIR`, file chunk sizes, in path order), keeps the unique
//! non-zero chunks in order, and prints the bytes they would take stored:
//!
//! - with cairn's incompressibility probe at several levels and thresholds
//!   (and what level 3 would have made of the chunks the probe gave up on);
//! - zstd per chunk at levels 1 to 5, as packs store them today;
//! - runs of adjacent chunks (never across files) compressed as one frame of
//!   at most 64 KiB to 1 MiB, at levels 1 and 3: what a format storing
//!   "solid" groups of blobs would gain.
//!
//! Environment switches for single questions (each prints its own table
//! and stops): `STUDY_SIZES=min,avg,max` (KiB) chunks with other sizes;
//! `STUDY_QUICK=1` prints only today's per-chunk total; `STUDY_GROUPS=1`
//! groups as cairn's writers make them (per file, or per 1 MiB disk batch;
//! `STUDY_CROSS=1` across files), with probe and level variants
//! (`STUDY_VARIANTS=level:probe_level:keep_permille:group_kib,...`, probe
//! level 0 for none, chooses them);
//! `STUDY_DICT=1` per-chunk compression with a trained zstd dictionary.
//!
//! Run: `cargo run --release -p cairn-benches --bin compression_study -- disk IMAGE`
//! (about a minute for 2 GiB here). `docs/compression-study.md` discusses
//! the results for benches/peers.sh's data.

#![allow(clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn_chunker::{Chunker, ChunkerParams, GearTable};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let t = e.file_type().expect("type");
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn worth(data: &[u8], probe: &mut zstd::bulk::Compressor<'static>, keep: usize) -> bool {
    if data.len() < 8192 {
        return true;
    }
    let len = (data.len() / 4).min(4096);
    let start = data.len() / 2 - len / 2;
    let mut out = Vec::with_capacity(len * keep / 1000);
    probe
        .compress_to_buffer(&data[start..start + len], &mut out)
        .is_ok()
}

/// Bytes `data` takes stored: its zstd frame, or itself when that is not
/// smaller.
fn stored_len(c: &mut zstd::bulk::Compressor<'static>, data: &[u8]) -> usize {
    c.compress(data)
        .expect("zstd compresses")
        .len()
        .min(data.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).expect("disk|tree");
    let path = PathBuf::from(args.get(2).expect("path"));
    let params = if kind == "disk" {
        ChunkerParams::DISK_DEFAULT
    } else {
        ChunkerParams::FILE_DEFAULT
    };
    // STUDY_SIZES=min,avg,max (KiB) overrides the default sizes.
    let params = match std::env::var("STUDY_SIZES") {
        Ok(v) => {
            let k: Vec<usize> = v
                .split(',')
                .map(|x| x.parse::<usize>().expect("KiB") << 10)
                .collect();
            ChunkerParams {
                min_size: k[0],
                avg_size: k[1],
                max_size: k[2],
                ..params
            }
        }
        Err(_) => params,
    };
    let chunker = Chunker::new(params, GearTable::for_tests()).expect("params");
    let mut inputs = Vec::new();
    if kind == "disk" {
        inputs.push(path);
    } else {
        files_under(&path, &mut inputs);
    }
    // Unique non-zero chunks, in order, grouped by file (groups never span files).
    let mut seen = HashSet::new();
    let mut files: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut raw = 0usize;
    for p in &inputs {
        let data = std::fs::read(p).expect("read");
        let mut chunks = Vec::new();
        for c in chunker.chunks(&data) {
            if c.data.iter().all(|&b| b == 0) {
                continue;
            }
            let id = blake3::hash(c.data);
            if seen.insert(id) {
                raw += c.data.len();
                chunks.push(c.data.to_vec());
            }
        }
        files.push(chunks);
    }
    let n: usize = files.iter().map(Vec::len).sum();
    println!("{kind}: {n} unique chunks, {raw} raw bytes");
    if std::env::var_os("STUDY_QUICK").is_some() {
        let mut probe = zstd::bulk::Compressor::new(-5).expect("probe");
        let mut c = zstd::bulk::Compressor::new(3).expect("c");
        let total: usize = files
            .iter()
            .flatten()
            .map(|ch| {
                if worth(ch, &mut probe, 980) {
                    stored_len(&mut c, ch)
                } else {
                    ch.len()
                }
            })
            .sum();
        println!(
            "per chunk level 3 probe: {total:>12} ({:.4} of raw)",
            total as f64 / raw as f64
        );
        return;
    }
    if std::env::var_os("STUDY_GROUPS").is_some() {
        // What cairn's writers do: per file (disk: per 1 MiB batch), probe
        // rejects stored raw, the rest in groups closed at >= 256 KiB.
        let cross = std::env::var_os("STUDY_CROSS").is_some();
        let joined: Vec<Vec<Vec<u8>>> = if cross {
            vec![files.iter().flatten().cloned().collect()]
        } else {
            Vec::new()
        };
        let files = if cross { &joined } else { &files };
        // STUDY_VARIANTS="level:probe_level:keep_permille:group_kib,..."
        // (probe level 0: no probe) overrides the variants measured.
        let variants: Vec<(i32, i32, usize, usize)> = match std::env::var("STUDY_VARIANTS") {
            Ok(v) => v
                .split(',')
                .map(|t| {
                    let f: Vec<i64> = t.split(':').map(|x| x.parse().expect("number")).collect();
                    (
                        f[0] as i32,
                        f[1] as i32,
                        f[2] as usize,
                        (f[3] as usize) << 10,
                    )
                })
                .collect(),
            Err(_) => vec![
                (3, -5, 980, 256 << 10),
                (3, 1, 995, 256 << 10),
                (5, -5, 980, 256 << 10),
            ],
        };
        for &(level, plevel, keep, group) in &variants {
            let mut probe = zstd::bulk::Compressor::new(plevel).expect("probe");
            let mut c = zstd::bulk::Compressor::new(level).expect("c");
            let (mut total, mut rejected) = (0usize, 0usize);
            let t = std::time::Instant::now();
            for f in files {
                let mut buf: Vec<u8> = Vec::new();
                let mut batch = 0usize;
                for ch in f {
                    batch += ch.len();
                    if plevel != 0 && !worth(ch, &mut probe, keep) {
                        total += ch.len();
                        rejected += ch.len();
                    } else {
                        buf.extend_from_slice(ch);
                    }
                    let batch_end = kind == "disk" && batch >= group.max(1 << 20);
                    if buf.len() >= group || (batch_end && !buf.is_empty()) {
                        total += stored_len(&mut c, &buf);
                        buf.clear();
                    }
                    if batch_end {
                        batch = 0;
                    }
                }
                if !buf.is_empty() {
                    total += stored_len(&mut c, &buf);
                }
            }
            println!(
                "groups of {} KiB, level {level} probe {plevel}/{keep}: {total:>12} ({:.4}); rejected {rejected} {:.1}s",
                group >> 10,
                total as f64 / raw as f64,
                t.elapsed().as_secs_f64()
            );
        }
        return;
    }
    if std::env::var_os("STUDY_DICT").is_some() {
        let all: Vec<&Vec<u8>> = files.iter().flatten().collect();
        for &(dict_size, sample_mb) in &[(112usize << 10, 8usize), (112 << 10, 32), (512 << 10, 32)]
        {
            let step = (raw / (sample_mb << 20)).max(1);
            let samples: Vec<&[u8]> = all.iter().step_by(step).map(|c| c.as_slice()).collect();
            let t = std::time::Instant::now();
            let dict = zstd::dict::from_samples(&samples, dict_size).expect("train");
            let train = t.elapsed().as_secs_f64();
            let mut c = zstd::bulk::Compressor::with_dictionary(3, &dict).expect("c");
            let t = std::time::Instant::now();
            let total: usize = all.iter().map(|ch| stored_len(&mut c, ch)).sum();
            println!(
                "dict {} KiB from {} samples ({sample_mb} MB) trained {train:.1}s: level 3 {total:>12} ({:.4}) + dict {} {:.1}s",
                dict_size >> 10,
                samples.len(),
                total as f64 / raw as f64,
                dict.len(),
                t.elapsed().as_secs_f64()
            );
        }
        return;
    }
    for &(plevel, keep) in &[(-5, 980), (-5, 995), (-5, 999), (1, 980), (1, 995)] {
        let mut probe = zstd::bulk::Compressor::new(plevel).expect("probe");
        let mut c = zstd::bulk::Compressor::new(3).expect("c");
        let (mut total, mut rejected, mut rejected_z) = (0usize, 0usize, 0usize);
        let t = std::time::Instant::now();
        for ch in files.iter().flatten() {
            if !worth(ch, &mut probe, keep) {
                total += ch.len();
                rejected += ch.len();
                rejected_z += stored_len(&mut c, ch);
                continue;
            }
            total += stored_len(&mut c, ch);
        }
        println!(
            "probe level {plevel:>2} keep {keep}: level 3 total {total:>12} ({:.4}); rejected {rejected} raw bytes that level 3 makes {rejected_z} {:.1}s",
            total as f64 / raw as f64,
            t.elapsed().as_secs_f64()
        );
    }
    let mut probe = zstd::bulk::Compressor::new(-5).expect("probe");
    for &(level, use_probe) in &[(1, true), (3, true), (3, false), (5, true)] {
        let mut c = zstd::bulk::Compressor::new(level).expect("c");
        let mut total = 0usize;
        let t = std::time::Instant::now();
        for ch in files.iter().flatten() {
            total += if use_probe && !worth(ch, &mut probe, 980) {
                ch.len()
            } else {
                stored_len(&mut c, ch)
            };
        }
        println!(
            "per chunk level {level:>2} probe {use_probe:<5}: {total:>12} ({:.4} of raw) {:.1}s",
            total as f64 / raw as f64,
            t.elapsed().as_secs_f64()
        );
    }
    for &group in &[64 << 10, 256 << 10, 1 << 20] {
        for &level in &[1, 3] {
            let mut c = zstd::bulk::Compressor::new(level).expect("c");
            let mut total = 0usize;
            for f in &files {
                let mut buf: Vec<u8> = Vec::new();
                let mut flush = |buf: &mut Vec<u8>, total: &mut usize| {
                    if !buf.is_empty() {
                        *total += stored_len(&mut c, buf);
                        buf.clear();
                    }
                };
                for ch in f {
                    if buf.len() + ch.len() > group {
                        flush(&mut buf, &mut total);
                    }
                    buf.extend_from_slice(ch);
                }
                flush(&mut buf, &mut total);
            }
            println!(
                "groups of {:>5} KiB level {level}: {total:>12} ({:.4} of raw)",
                group >> 10,
                total as f64 / raw as f64
            );
        }
    }
}
