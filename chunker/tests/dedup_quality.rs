//! Dedup quality of cairn-chunker against `fastcdc::v2020`.
//!
//! Builds a 64 MiB base buffer of mixed content (incompressible blocks,
//! log-like text, database-like records, zero runs, short repeating patterns
//! and copies of earlier regions), derives an edited version by a few hundred
//! random inserts, deletes and overwrites, and chunks both versions with
//! cairn and with `fastcdc::v2020` at the same min/avg/max and the same
//! normalization level.
//!
//! The dedup ratio is `(bytes of both versions) / (bytes of the distinct
//! chunks of both versions)`; chunks are identified by their exact content.
//! Which boundaries an edit disturbs depends on the gear table, so one table
//! gives a noisy ratio (about 1% either way here); each chunker is therefore
//! run with several gear seeds and the mean ratios are compared: cairn must
//! reach at least 99% of fastcdc's. Run with `--nocapture` to see the
//! per-seed ratios and the chunk-size distributions (mean, standard
//! deviation, percentiles, share of chunks cut at the maximum size).
//!
//! Everything is generated from fixed seeds: the test is deterministic.

#![allow(clippy::expect_used)]

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::sync::OnceLock;

use cairn_chunker::{Chunker, ChunkerParams, GearTable};
use fastcdc::v2020::{FastCDC, Normalization};

/// Size of the base buffer.
const BASE_LEN: usize = 64 << 20;
/// Number of edits applied to the base buffer.
const EDITS: usize = 300;
/// Gear seeds per chunker; the compared ratios are means over them.
const SEEDS: u64 = 8;
/// cairn's mean ratio must be at least this fraction of fastcdc's.
const TOLERANCE: f64 = 0.99;

// ---------------------------------------------------------------------------
// Deterministic randomness.

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x2545_F491_4F6C_DD1D)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Log-uniform in `lo..=hi`: small sizes as likely per octave as large.
    fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((l + (h - l) * u).exp() as usize).clamp(lo, hi)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// Test data.

const HOSTS: &[&str] = &["web-01", "web-02", "db-primary", "cache-3", "batch-7"];
const DAEMONS: &[&str] = &["sshd", "nginx", "postgres", "cron", "kernel", "systemd"];
const MESSAGES: &[&str] = &[
    "Accepted publickey for deploy from",
    "GET /api/v1/orders?page=",
    "checkpoint complete: wrote buffers",
    "session opened for user root by",
    "connection reset by peer",
    "Started Daily apt download activities, unit",
    "autovacuum: processing database",
    "upstream timed out while reading response header from",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

/// Appends about `len` bytes of syslog-like lines (timestamps, hosts,
/// pids, a few message templates and numbers).
fn push_log(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    let mut t = rng.below(86_400_000);
    while out.len() < end {
        t += rng.below(2_000);
        let (s, ms) = (t / 1000 % 86_400, t % 1000);
        writeln!(
            out,
            "2026-11-23T{:02}:{:02}:{:02}.{ms:03}Z {} {}[{}]: {} {}.{}.{}.{} {}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            rng.pick(HOSTS),
            rng.pick(DAEMONS),
            1000 + rng.below(30_000),
            rng.pick(MESSAGES),
            10,
            rng.below(4),
            rng.below(256),
            rng.below(256),
            rng.below(65_536),
        )
        .expect("writing to a Vec cannot fail");
    }
    out.truncate(end);
}

/// Appends about `len` bytes of fixed-size 64-byte database-like records:
/// sequential ids, small integers, zero-padded names, a few random bytes and
/// reserved zeros. Low entropy, but never periodic.
fn push_records(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    let mut id = rng.next_u64() % 1_000_000;
    while out.len() < end {
        id += 1 + rng.below(3) as u64;
        let mut rec = [0u8; 64];
        rec[..8].copy_from_slice(&id.to_le_bytes());
        rec[8..12].copy_from_slice(&(rng.below(100) as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(rng.below(5_000) as u32).to_le_bytes());
        let name = rng.pick(NAMES).as_bytes();
        rec[16..16 + name.len()].copy_from_slice(name);
        rng.fill(&mut rec[40..48]);
        out.extend_from_slice(&rec);
    }
    out.truncate(end);
}

/// The base buffer: a sequence of regions of mixed kinds and sizes.
fn base_buffer() -> Vec<u8> {
    let mut rng = Rng::new(0xBA5E);
    let mut out = Vec::with_capacity(BASE_LEN + (2 << 20));
    while out.len() < BASE_LEN {
        match rng.below(100) {
            // Incompressible: binaries, compressed files, encrypted data.
            0..40 => {
                let len = rng.log_uniform(4 << 10, 1 << 20);
                out.extend_from_slice(&rng.bytes(len));
            }
            40..65 => {
                let len = rng.log_uniform(16 << 10, 512 << 10);
                push_log(&mut rng, &mut out, len);
            }
            65..75 => {
                let len = rng.log_uniform(8 << 10, 256 << 10);
                push_records(&mut rng, &mut out, len);
            }
            // Zero runs: sparse files, free space, padding.
            75..85 => {
                let len = rng.log_uniform(4 << 10, 512 << 10);
                out.resize(out.len() + len, 0);
            }
            // A copy of an earlier region: duplicated files and blocks.
            85..95 if out.len() > 1 << 20 => {
                let len = rng.log_uniform(4 << 10, 256 << 10);
                let from = rng.below(out.len() - len);
                out.extend_from_within(from..from + len);
            }
            // A short pattern repeated: fill bytes, bitmaps, test patterns.
            _ => {
                let period = rng.log_uniform(1, 512);
                let pattern = rng.bytes(period);
                let len = rng.log_uniform(4 << 10, 256 << 10);
                out.extend(pattern.iter().cycle().take(len));
            }
        }
    }
    out.truncate(BASE_LEN);
    out
}

/// What one edit does at its position.
enum Edit {
    Insert(Vec<u8>),
    Delete(usize),
    Overwrite(Vec<u8>),
}

/// The base buffer after [`EDITS`] inserts, deletes and overwrites at random
/// positions, of 1 byte to 8 KiB each (log-uniform).
fn edited(base: &[u8]) -> Vec<u8> {
    let mut rng = Rng::new(0xED17);
    let mut edits: Vec<(usize, Edit)> = (0..EDITS)
        .map(|_| {
            let pos = rng.below(base.len());
            let len = rng.log_uniform(1, 8 << 10);
            let edit = match rng.below(3) {
                0 => Edit::Insert(rng.bytes(len)),
                1 => Edit::Delete(len),
                _ => Edit::Overwrite(rng.bytes(len)),
            };
            (pos, edit)
        })
        .collect();
    edits.sort_by_key(|(pos, _)| *pos);
    let mut out = Vec::with_capacity(base.len() + EDITS * (8 << 10));
    let mut pos = 0;
    for (at, edit) in edits {
        // An edit starting inside the span an earlier one removed is dropped.
        if at < pos {
            continue;
        }
        out.extend_from_slice(&base[pos..at]);
        pos = at;
        match edit {
            Edit::Insert(bytes) => out.extend_from_slice(&bytes),
            Edit::Delete(len) => pos += len,
            Edit::Overwrite(bytes) => {
                out.extend_from_slice(&bytes);
                pos += bytes.len();
            }
        }
        pos = pos.min(base.len());
    }
    out.extend_from_slice(&base[pos..]);
    out
}

/// The base buffer and its edited version, built once for all tests.
fn versions() -> &'static (Vec<u8>, Vec<u8>) {
    static VERSIONS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        let base = base_buffer();
        let edited = edited(&base);
        (base, edited)
    })
}

// ---------------------------------------------------------------------------
// Measurement.

/// A chunk identified by its exact content: equal iff the bytes are equal.
/// Hashing reads every byte with four independent multiply-fold lanes, so it
/// stays far cheaper than chunking.
#[derive(PartialEq, Eq)]
struct ChunkKey<'a>(&'a [u8]);

impl Hash for ChunkKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(content_hash(self.0));
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn content_hash(data: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0xA076_1D64_78BD_642F,
        0xE703_7ED1_A0B4_28DB,
        0x8EBC_6AF0_9C88_C6E3,
        0x5899_65CC_7537_4CC3,
    ];
    let mut lanes = [K[0] ^ data.len() as u64, K[1], K[2], K[3]];
    let (blocks, tail) = data.as_chunks::<32>();
    for block in blocks {
        let (words, _) = block.as_chunks::<8>();
        for ((lane, word), k) in lanes.iter_mut().zip(words).zip(K) {
            *lane = fold_mul(*lane ^ u64::from_le_bytes(*word), k);
        }
    }
    for ((lane, bytes), k) in lanes.iter_mut().zip(tail.chunks(8)).zip(K) {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        *lane = fold_mul(*lane ^ u64::from_le_bytes(word), k);
    }
    fold_mul(lanes[0] ^ lanes[2], lanes[1] ^ lanes[3] ^ K[0])
}

/// `(bytes of all versions) / (bytes of the distinct chunks)`.
fn dedup_ratio(versions: &[Vec<&[u8]>]) -> f64 {
    let mut seen = HashSet::new();
    let (mut total, mut unique) = (0usize, 0usize);
    for chunk in versions.iter().flatten() {
        total += chunk.len();
        if seen.insert(ChunkKey(chunk)) {
            unique += chunk.len();
        }
    }
    total as f64 / unique as f64
}

/// Chunk-size distribution of one chunking.
struct SizeStats {
    count: usize,
    mean: f64,
    stddev: f64,
    /// 1st, 10th, 50th, 90th and 99th percentiles.
    percentiles: [usize; 5],
    /// Share of chunks cut at the maximum size.
    at_max: f64,
}

impl SizeStats {
    fn of(chunks: &[&[u8]], max_size: usize) -> Self {
        let mut sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        sizes.sort_unstable();
        let count = sizes.len();
        let mean = sizes.iter().sum::<usize>() as f64 / count as f64;
        let var = sizes
            .iter()
            .map(|&s| (s as f64 - mean).powi(2))
            .sum::<f64>()
            / count as f64;
        let pct = |p: usize| sizes[(count * p / 100).min(count - 1)];
        Self {
            count,
            mean,
            stddev: var.sqrt(),
            percentiles: [pct(1), pct(10), pct(50), pct(90), pct(99)],
            at_max: sizes.iter().filter(|&&s| s == max_size).count() as f64 / count as f64,
        }
    }
}

impl std::fmt::Display for SizeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kib = |b: f64| b / 1024.0;
        let [p1, p10, p50, p90, p99] = self.percentiles.map(|p| kib(p as f64));
        write!(
            f,
            "{:6} chunks  mean {:6.1} KiB  sd {:6.1} KiB  p1 {p1:6.1}  p10 {p10:6.1}  \
             p50 {p50:6.1}  p90 {p90:6.1}  p99 {p99:6.1} KiB  at max {:4.1}%",
            self.count,
            kib(self.mean),
            kib(self.stddev),
            self.at_max * 100.0,
        )
    }
}

/// One min/avg/max and normalization level.
#[derive(Clone, Copy, PartialEq)]
struct Config {
    min: usize,
    avg: usize,
    max: usize,
    level: u32,
}

impl Config {
    const fn sizes(min_kib: usize, avg_kib: usize, max_kib: usize, level: u32) -> Self {
        Self {
            min: min_kib << 10,
            avg: avg_kib << 10,
            max: max_kib << 10,
            level,
        }
    }

    fn of(p: ChunkerParams) -> Self {
        Self {
            min: p.min_size,
            avg: p.avg_size,
            max: p.max_size,
            level: p.normalization,
        }
    }

    fn label(&self) -> String {
        format!(
            "{}/{}/{} KiB level {}",
            self.min >> 10,
            self.avg >> 10,
            self.max >> 10,
            self.level
        )
    }
}

fn cairn_chunks(config: Config, seed: u64, data: &[u8]) -> Vec<&[u8]> {
    let params =
        ChunkerParams::new(config.min, config.avg, config.max).with_normalization(config.level);
    let mut key = *b"cairn dedup-quality test seed ..";
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let table = if seed == 0 {
        GearTable::for_tests()
    } else {
        GearTable::from_seed(&key)
    };
    let chunker = Chunker::new(params, table).expect("valid parameters");
    // The iterator borrows the chunker too: re-slice `data` by offset.
    let spans: Vec<(usize, usize)> = chunker
        .chunks(data)
        .map(|c| (c.offset as usize, c.data.len()))
        .collect();
    spans.iter().map(|&(at, len)| &data[at..at + len]).collect()
}

fn fastcdc_chunks(config: Config, seed: u64, data: &[u8]) -> Vec<&[u8]> {
    let level = match config.level {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    };
    // fastcdc XORs its seed into its gear table; 0 is its default table.
    let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    FastCDC::with_level_and_seed(data, config.min, config.avg, config.max, level, seed)
        .map(|c| &data[c.offset..c.offset + c.length])
        .collect()
}

/// Mean dedup ratio over [`SEEDS`] gear seeds; appends each seed's ratio
/// and the size distribution of the first seed's chunks of the base to
/// `report`.
fn measure(
    report: &mut String,
    name: &str,
    config: Config,
    chunk: impl for<'a> Fn(Config, u64, &'a [u8]) -> Vec<&'a [u8]>,
) -> f64 {
    let (base, edited) = versions();
    let mut ratios = Vec::new();
    for seed in 0..SEEDS {
        let chunkings = [chunk(config, seed, base), chunk(config, seed, edited)];
        for (chunks, data) in chunkings.iter().zip([base, edited]) {
            assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), data.len());
        }
        if seed == 0 {
            let stats = SizeStats::of(&chunkings[0], config.max);
            report.push_str(&format!("  {name:8} sizes  {stats}\n"));
        }
        ratios.push(dedup_ratio(&chunkings));
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.4}")).collect();
    report.push_str(&format!(
        "  {name:8} dedup  mean {mean:.4}  per seed [{}]\n",
        each.join(", ")
    ));
    mean
}

/// Compares cairn with fastcdc at `config`, prints the report in one piece
/// (tests run in parallel) and checks the tolerance.
fn compare(config: Config) {
    let mut report = String::new();
    let fastcdc = measure(&mut report, "fastcdc", config, fastcdc_chunks);
    let cairn = measure(&mut report, "cairn", config, cairn_chunks);
    println!(
        "{}: dedup ratio cairn {cairn:.4} vs fastcdc {fastcdc:.4} ({:+.2}%)\n{report}",
        config.label(),
        (cairn / fastcdc - 1.0) * 100.0
    );
    assert!(
        cairn >= fastcdc * TOLERANCE,
        "{}: cairn's dedup ratio {cairn:.4} is more than 1% below fastcdc's {fastcdc:.4}",
        config.label()
    );
}

const AVG_16K_L2: Config = Config::sizes(4, 16, 64, 2);
const AVG_16K_L1: Config = Config::sizes(4, 16, 64, 1);
const AVG_64K_L2: Config = Config::sizes(16, 64, 256, 2);
const AVG_64K_L1: Config = Config::sizes(16, 64, 256, 1);
const FIXED: [Config; 4] = [AVG_16K_L2, AVG_16K_L1, AVG_64K_L2, AVG_64K_L1];

#[test]
fn avg_16k_level2() {
    compare(AVG_16K_L2);
}

#[test]
fn avg_16k_level1() {
    compare(AVG_16K_L1);
}

#[test]
fn avg_64k_level2() {
    compare(AVG_64K_L2);
}

#[test]
fn avg_64k_level1() {
    compare(AVG_64K_L1);
}

/// The crate's defaults, at their own level and at level 1, unless one of
/// the fixed configurations above already covers them.
#[test]
fn defaults() {
    let mut configs: Vec<Config> = Vec::new();
    for params in [ChunkerParams::DISK_DEFAULT, ChunkerParams::FILE_DEFAULT] {
        for config in [Config::of(params), Config::of(params.with_normalization(1))] {
            if !FIXED.contains(&config) && !configs.contains(&config) {
                configs.push(config);
            }
        }
    }
    if configs.is_empty() {
        println!("the default parameters are covered by the fixed configurations");
    }
    for config in configs {
        compare(config);
    }
}
