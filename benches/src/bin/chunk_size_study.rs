//! Chooses cairn's default chunk sizes by measurement: bytes, not speed.
//!
//! For average chunk sizes from 8 KiB (a reference point below the supported
//! range) to 1 MiB, with min = avg/4 and max = avg*4 (and 32/64/256 KiB as a
//! variant of 64 KiB), it chunks two synthetic but realistic workloads and
//! their incremental versions:
//!
//! - **VM disk**: a 512 MiB image laid out like a filesystem (metadata zones,
//!   a journal, 4 KiB-aligned files of mixed content, free space that is
//!   partly zero and partly stale), then rounds of churn at four levels
//!   (0.02%, 0.1%, 0.5% and 2% of the blocks per incremental, three rounds
//!   each): single-block writes (hot metadata, file blocks), runs of 8-64
//!   blocks (in-place rewrites, new files in free space), a circular
//!   journal, and log files growing into the free space behind them in the
//!   middle of the disk.
//! - **File tree**: about 3,400 files (source-like text, logs, binaries,
//!   databases with 4 KiB pages, duplicates), then three rounds of edits:
//!   inserts and deletes in the middle of text files, log appends, database
//!   page rewrites, a few whole-file rewrites, new and deleted files. Each
//!   file is chunked on its own.
//!
//! Per incremental it counts the bytes of chunks not stored before (raw and
//! zstd-compressed), and the metadata those chunk sizes imply: a chunk id in
//! the snapshot's chunk list for every chunk of the version ([`ID_BYTES`])
//! and an index entry for every new chunk ([`INDEX_BYTES`]). It also prices
//! an alternative chunk-list model that stores only what changed: for disks
//! a map paged by disk offset ([`MAP_PAGE`]), for files the lists of new or
//! changed files. Chunks are identified by a 128-bit content hash and their
//! length. All data is generated from fixed seeds: every run gives the same
//! numbers.
//!
//! Run: `cargo run --release -p cairn-benches --bin chunk_size_study [SEED]`
//! (about 20 s and 1 GB here). It prints markdown tables;
//! `docs/chunk-size-study.md` discusses them.

#![allow(clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::ops::Range;

use cairn_chunker::{Chunker, ChunkerParams, GearTable};

/// Bytes per chunk per snapshot: the chunk's id in the snapshot's list.
const ID_BYTES: usize = 32;
/// Bytes per new chunk: its entry in the repository index (id, pack,
/// offset, lengths).
const INDEX_BYTES: usize = 48;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Deterministic randomness and content.

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

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Log-uniform in `lo..=hi`: as likely per octave at every size.
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

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

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
const WORDS: &[&str] = &[
    "fn", "let", "if", "else", "return", "match", "self", "for", "in", "while", "struct", "impl",
    "pub", "use", "mut", "const", "=", "==", "+", "(", ")", "{", "}", ";", ",", "->", "::", "&",
    "0", "1", "len", "data", "buffer", "offset", "result", "error", "config", "value", "index",
    "count", "chunk", "store", "read", "write", "next",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

/// Appends `len` bytes of source-code-like text: indented lines of tokens.
fn push_text(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    while out.len() < end {
        let indent = 4 * rng.below(4);
        out.resize(out.len() + indent, b' ');
        for _ in 0..rng.between(1, 12) {
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            if rng.chance(0.2) {
                out.extend_from_slice(rng.below(10_000).to_string().as_bytes());
            }
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(end);
}

/// Appends `len` bytes of syslog-like lines.
fn push_log(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    let mut t = rng.below(86_400_000);
    while out.len() < end {
        t += rng.below(2_000);
        let (s, ms) = (t / 1000 % 86_400, t % 1000);
        writeln!(
            out,
            "2026-11-23T{:02}:{:02}:{:02}.{ms:03}Z {} {}[{}]: {} 10.{}.{}.{} {}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            rng.pick(HOSTS),
            rng.pick(DAEMONS),
            1000 + rng.below(30_000),
            rng.pick(MESSAGES),
            rng.below(4),
            rng.below(256),
            rng.below(256),
            rng.below(65_536),
        )
        .expect("writing to a Vec cannot fail");
    }
    out.truncate(end);
}

/// One 64-byte database-like record: id, small integers, a zero-padded
/// name, a few random bytes, reserved zeros.
fn record(rng: &mut Rng, id: u64) -> [u8; 64] {
    let mut rec = [0u8; 64];
    rec[..8].copy_from_slice(&id.to_le_bytes());
    rec[8..12].copy_from_slice(&(rng.below(100) as u32).to_le_bytes());
    rec[12..16].copy_from_slice(&(rng.below(5_000) as u32).to_le_bytes());
    let name = rng.pick(NAMES).as_bytes();
    rec[16..16 + name.len()].copy_from_slice(name);
    rng.fill(&mut rec[40..48]);
    rec
}

/// Fills `page` (4 KiB) like a database page: a header, 64-byte records
/// up to a random fill level, zeros after.
fn fill_db_page(rng: &mut Rng, page: &mut [u8], page_no: u64) {
    page.fill(0);
    page[..8].copy_from_slice(&page_no.to_le_bytes());
    rng.fill(&mut page[8..16]); // LSN / checksum
    let records = rng.between(16, 62);
    let mut id = page_no * 64;
    for slot in page[64..].chunks_exact_mut(64).take(records) {
        id += 1;
        slot.copy_from_slice(&record(rng, id));
    }
}

/// Rewrites a database page the way an update does: a new LSN/checksum and
/// a few records changed.
fn update_db_page(rng: &mut Rng, page: &mut [u8]) {
    rng.fill(&mut page[8..16]);
    for _ in 0..rng.between(1, 8) {
        let slot = 1 + rng.below(page.len() / 64 - 1);
        let id = rng.next_u64() >> 20;
        page[slot * 64..slot * 64 + 64].copy_from_slice(&record(rng, id));
    }
}

/// What a region of data looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Incompressible: compressed archives, media, encrypted data.
    Binary,
    /// Executables and libraries: random code runs, zero padding, string
    /// tables.
    Exe,
    /// Source code, configuration.
    Text,
    /// Log files: timestamped lines, appended to.
    Log,
    /// Database files: 4 KiB pages of records.
    Db,
}

/// Fills `buf` with fresh content of `kind`.
fn fill(rng: &mut Rng, kind: Kind, buf: &mut [u8]) {
    let mut tmp = Vec::with_capacity(buf.len());
    match kind {
        Kind::Binary => rng.fill(buf),
        Kind::Exe => {
            let mut pos = 0;
            while pos < buf.len() {
                let len = match rng.below(3) {
                    0 => rng.log_uniform(KIB, 16 * KIB),
                    1 => rng.log_uniform(64, 2 * KIB),
                    _ => rng.log_uniform(256, 4 * KIB),
                }
                .min(buf.len() - pos);
                let part = &mut buf[pos..pos + len];
                match rng.below(3) {
                    0 => rng.fill(part),
                    1 => part.fill(0),
                    _ => {
                        tmp.clear();
                        push_text(rng, &mut tmp, len);
                        part.copy_from_slice(&tmp);
                    }
                }
                pos += len;
            }
        }
        Kind::Text => {
            push_text(rng, &mut tmp, buf.len());
            buf.copy_from_slice(&tmp);
        }
        Kind::Log => {
            push_log(rng, &mut tmp, buf.len());
            buf.copy_from_slice(&tmp);
        }
        Kind::Db => {
            let base = rng.next_u64() >> 24;
            for (i, page) in buf.chunks_mut(BLOCK).enumerate() {
                if page.len() == BLOCK {
                    fill_db_page(rng, page, base + i as u64);
                } else {
                    rng.fill(page);
                }
            }
        }
    }
}

fn fresh(rng: &mut Rng, kind: Kind, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(rng, kind, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Workload (a): a VM disk image.

/// Filesystem block size: the unit of every disk write.
const BLOCK: usize = 4096;
/// Size of the disk image.
const DISK_SIZE: usize = 512 * MIB;
/// Blocks per allocation group; each starts with a metadata zone.
const GROUP_BLOCKS: usize = 128 * MIB / BLOCK;
/// Metadata zone at the start of each group (bitmaps, inode tables).
const META_BLOCKS: usize = 2 * MIB / BLOCK;
/// The journal, in group 0 after its metadata zone.
const JOURNAL_BLOCKS: usize = 16 * MIB / BLOCK;
/// Churn levels: the share of blocks one incremental writes, from hourly
/// backups of a quiet VM (0.02%) to daily backups of a busy one (2%).
const DISK_CHURN: [f64; 4] = [0.0002, 0.001, 0.005, 0.02];
/// Rounds per churn level (the rounds of small levels are noisy alone).
const DISK_REPEATS: usize = 3;
/// Log files that grow into the free space behind them.
const GROWERS: usize = 4;

/// Owner of a block.
const FREE: u32 = u32::MAX;
const META: u32 = u32::MAX - 1;
const JOURNAL: u32 = u32::MAX - 2;

/// A file on the disk: one extent.
struct Extent {
    start: usize,
    blocks: usize,
    kind: Kind,
}

/// A log file growing into the free space behind it.
struct Grower {
    /// Byte offset of the end of the log's data.
    end: usize,
    /// Byte offset it may grow up to.
    limit: usize,
}

struct Disk {
    img: Vec<u8>,
    owner: Vec<u32>,
    files: Vec<Extent>,
    free: Vec<Range<usize>>,
    journal_head: usize,
    growers: Vec<Grower>,
    rng: Rng,
}

impl Disk {
    /// A freshly laid out image: about two thirds of the blocks in use.
    fn new(seed: u64) -> Self {
        let blocks = DISK_SIZE / BLOCK;
        let mut disk = Self {
            img: vec![0u8; DISK_SIZE],
            owner: vec![FREE; blocks],
            files: Vec::new(),
            free: Vec::new(),
            journal_head: 0,
            growers: Vec::new(),
            rng: Rng::new(0xD15C ^ seed),
        };
        // Metadata zones: inode-table-like records.
        for group in (0..blocks).step_by(GROUP_BLOCKS) {
            for b in group..group + META_BLOCKS {
                disk.owner[b] = META;
                let page = &mut disk.img[b * BLOCK..(b + 1) * BLOCK];
                fill_db_page(&mut disk.rng, page, b as u64);
            }
        }
        // The journal: old transactions, the rest never written.
        let journal = META_BLOCKS..META_BLOCKS + JOURNAL_BLOCKS;
        let written = JOURNAL_BLOCKS / 3;
        fill(
            &mut disk.rng,
            Kind::Db,
            &mut disk.img[journal.start * BLOCK..(journal.start + written) * BLOCK],
        );
        disk.owner[journal.clone()].fill(JOURNAL);

        // Files and gaps, group by group.
        let mut b = journal.end;
        while b < blocks {
            if disk.owner[b] != FREE {
                b += 1;
                continue;
            }
            let span_end = (b..blocks)
                .find(|&x| disk.owner[x] != FREE)
                .unwrap_or(blocks);
            if disk.rng.chance(0.3) {
                let len = disk.rng.log_uniform(1, 4096).min(span_end - b);
                disk.gap(b..b + len);
                b += len;
                continue;
            }
            let bytes = disk.rng.log_uniform(KIB, 16 * MIB);
            let len = bytes.div_ceil(BLOCK).min(span_end - b);
            let bytes = bytes.min(len * BLOCK);
            let roll = disk.rng.below(100);
            let kind = match roll {
                0..35 => Kind::Binary,
                35..50 => Kind::Exe,
                50..65 => Kind::Text,
                65..72 => Kind::Log,
                72..85 => Kind::Db,
                // 15%: a copy of an earlier file (the same package or
                // image twice, a backup copy).
                _ if !disk.files.is_empty() => {
                    let src = &disk.files[disk.rng.below(disk.files.len())];
                    let take = bytes.min(src.blocks * BLOCK);
                    let from = src.start * BLOCK;
                    let kind = src.kind;
                    disk.img.copy_within(from..from + take, b * BLOCK);
                    kind
                }
                _ => Kind::Binary,
            };
            if roll < 85 || disk.files.is_empty() {
                let region = &mut disk.img[b * BLOCK..b * BLOCK + bytes];
                fill(&mut disk.rng, kind, region);
            }
            disk.owner[b..b + len].fill(disk.files.len() as u32);
            disk.files.push(Extent {
                start: b,
                blocks: len,
                kind,
            });
            b += len;
            // Some logs in the middle get room to grow.
            let middle = (blocks / 4..3 * blocks / 4).contains(&b);
            if kind == Kind::Log && middle && disk.growers.len() < GROWERS {
                let room = (2048).min(span_end - b);
                disk.growers.push(Grower {
                    end: b * BLOCK - (len * BLOCK - bytes),
                    limit: (b + room) * BLOCK,
                });
                disk.owner[b..b + room].fill(disk.files.len() as u32 - 1);
                disk.files.last_mut().expect("just pushed").blocks += room;
                b += room;
            }
        }
        disk
    }

    /// A free gap: never written (zeros) or holding a deleted file's data.
    fn gap(&mut self, range: Range<usize>) {
        if self.rng.chance(0.5) {
            let kind = if self.rng.chance(0.5) {
                Kind::Binary
            } else {
                Kind::Text
            };
            let region = &mut self.img[range.start * BLOCK..range.end * BLOCK];
            fill(&mut self.rng, kind, region);
        }
        self.free.push(range);
    }

    /// One round of churn writing about `share` of the blocks; returns the
    /// bytes written.
    fn churn(&mut self, share: f64) -> usize {
        let budget = (share * (DISK_SIZE / BLOCK) as f64) as usize;
        let mut written = 0;
        // 30%: single blocks, half hot metadata (a few bytes change), half
        // file blocks rewritten.
        for _ in 0..budget * 3 / 10 {
            if self.rng.chance(0.5) {
                self.touch_metadata();
            } else {
                let b = self.random_file_block();
                self.rewrite(b, 1);
            }
            written += BLOCK;
        }
        // 50%: runs of 8-64 blocks, 60% rewriting files in place, 40% new
        // files in free space.
        let mut run_budget = budget / 2;
        while run_budget > 0 {
            let len = self.rng.between(8, 64).min(run_budget);
            let done = if self.rng.chance(0.6) {
                let b = self.random_file_block();
                self.rewrite(b, len)
            } else {
                self.allocate(len)
            };
            run_budget = run_budget.saturating_sub(done.max(1));
            written += done * BLOCK;
        }
        // 10%: the journal, circularly.
        for _ in 0..budget / 10 {
            let b = META_BLOCKS + self.journal_head;
            self.journal_head = (self.journal_head + 1) % JOURNAL_BLOCKS;
            fill(
                &mut self.rng,
                Kind::Db,
                &mut self.img[b * BLOCK..(b + 1) * BLOCK],
            );
            written += BLOCK;
        }
        // 10%: logs growing in the middle of the disk.
        let per_log = budget / 10 / GROWERS.max(1) * BLOCK;
        for log in &mut self.growers {
            let end = log.end;
            let add = per_log.min(log.limit - end);
            let mut text = Vec::with_capacity(add);
            push_log(&mut self.rng, &mut text, add);
            self.img[end..end + add].copy_from_slice(&text);
            log.end += add;
            written += (end + add).div_ceil(BLOCK).saturating_sub(end / BLOCK) * BLOCK;
        }
        written
    }

    fn random_file_block(&mut self) -> usize {
        loop {
            let b = self.rng.below(self.owner.len());
            let owner = self.owner[b] as usize;
            if owner < self.files.len() && self.files[owner].kind != Kind::Log {
                return b;
            }
        }
    }

    /// Rewrites up to `len` blocks of the file owning block `b`, from `b`;
    /// returns the blocks written.
    fn rewrite(&mut self, b: usize, len: usize) -> usize {
        let file = &self.files[self.owner[b] as usize];
        let (kind, end) = (file.kind, file.start + file.blocks);
        let len = len.min(end - b);
        let region = &mut self.img[b * BLOCK..(b + len) * BLOCK];
        if kind == Kind::Db {
            for page in region.chunks_exact_mut(BLOCK) {
                update_db_page(&mut self.rng, page);
            }
        } else {
            fill(&mut self.rng, kind, region);
        }
        len
    }

    /// Hot metadata: inode and bitmap updates change a few bytes of a block;
    /// most of them hit the first blocks of a zone.
    fn touch_metadata(&mut self) {
        let groups = DISK_SIZE / BLOCK / GROUP_BLOCKS;
        let zone = self.rng.below(groups) * GROUP_BLOCKS;
        let b = zone
            + if self.rng.chance(0.7) {
                self.rng.below(64)
            } else {
                self.rng.below(META_BLOCKS)
            };
        for _ in 0..self.rng.between(1, 4) {
            let len = self.rng.between(4, 16);
            let at = b * BLOCK + self.rng.below(BLOCK - len);
            self.rng.fill(&mut self.img[at..at + len]);
        }
    }

    /// A new file of up to `len` blocks in free space; returns the blocks
    /// written.
    fn allocate(&mut self, len: usize) -> usize {
        if self.free.is_empty() {
            return 0;
        }
        let i = self.rng.below(self.free.len());
        let range = self.free[i].clone();
        let len = len.min(range.len());
        let kind = if self.rng.chance(0.5) {
            Kind::Binary
        } else {
            Kind::Text
        };
        let region = &mut self.img[range.start * BLOCK..(range.start + len) * BLOCK];
        fill(&mut self.rng, kind, region);
        self.owner[range.start..range.start + len].fill(self.files.len() as u32);
        self.files.push(Extent {
            start: range.start,
            blocks: len,
            kind,
        });
        if len == range.len() {
            self.free.swap_remove(i);
        } else {
            self.free[i].start += len;
        }
        len
    }
}

/// Costs of the disk workload: per config, the full backup then every
/// round; and per round its churn level and the bytes it wrote.
struct DiskRun {
    costs: Vec<Vec<Cost>>,
    rounds: Vec<(f64, usize)>,
}

/// Builds the disk and churns it round by round, measuring every version
/// with every config as it goes (versions are not kept).
fn run_disk(configs: &[Config], seed: u64) -> DiskRun {
    let mut disk = Disk::new(seed);
    let used = disk.owner.iter().filter(|&&o| o != FREE).count();
    println!(
        "disk: {} MiB, {} files, {:.0}% of blocks in use",
        DISK_SIZE / MIB,
        disk.files.len(),
        100.0 * used as f64 / disk.owner.len() as f64
    );
    let mut states: Vec<DiskState> = configs.iter().map(DiskState::new).collect();
    let mut costs: Vec<Vec<Cost>> = states
        .iter_mut()
        .map(|state| vec![state.measure(&disk.img, false)])
        .collect();
    let mut rounds = Vec::new();
    for share in DISK_CHURN {
        for _ in 0..DISK_REPEATS {
            rounds.push((share, disk.churn(share)));
            for (state, c) in states.iter_mut().zip(&mut costs) {
                c.push(state.measure(&disk.img, true));
            }
        }
    }
    DiskRun { costs, rounds }
}

// ---------------------------------------------------------------------------
// Workload (b): a file tree.

/// Edit rounds applied to the file tree.
const FILE_ROUNDS: usize = 3;

/// All file contents ever generated; a tree version lists indices into it.
/// Equal indices mean the file did not change.
struct FileTrees {
    contents: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    versions: Vec<Vec<usize>>,
    written: Vec<usize>,
}

impl FileTrees {
    fn add(&mut self, kind: Kind, data: Vec<u8>) -> usize {
        self.contents.push(data);
        self.kinds.push(kind);
        self.contents.len() - 1
    }
}

/// The file tree and its versions after each round of edits.
fn file_versions(seed: u64) -> FileTrees {
    let mut rng = Rng::new(0xF11E ^ seed);
    let mut t = FileTrees {
        contents: Vec::new(),
        kinds: Vec::new(),
        versions: Vec::new(),
        written: Vec::new(),
    };
    let mut tree = Vec::new();
    let spec = [
        (Kind::Text, 3000, 50, 256 * KIB),
        (Kind::Log, 30, 16 * KIB, 16 * MIB),
        (Kind::Binary, 150, KIB, 8 * MIB),
        (Kind::Exe, 100, 4 * KIB, 8 * MIB),
        (Kind::Db, 3, 8 * MIB, 48 * MIB),
    ];
    for (kind, count, lo, hi) in spec {
        for _ in 0..count {
            let mut len = rng.log_uniform(lo, hi);
            if kind == Kind::Db {
                len = len / BLOCK * BLOCK;
            }
            let data = fresh(&mut rng, kind, len);
            tree.push(t.add(kind, data));
        }
    }
    // Duplicates: copies of existing files (vendored code, backups).
    for _ in 0..150 {
        let src = tree[rng.below(tree.len())];
        let data = t.contents[src].clone();
        tree.push(t.add(t.kinds[src], data));
    }
    let total: usize = tree.iter().map(|&c| t.contents[c].len()).sum();
    println!("file tree: {} files, {} MiB", tree.len(), total / MIB);
    t.versions.push(tree.clone());

    for _ in 0..FILE_ROUNDS {
        let mut written = 0;
        for slot in &mut tree {
            let old = *slot;
            let kind = t.kinds[old];
            let data = &t.contents[old];
            let new = match kind {
                // 3% of text files get 1-5 edits in the middle.
                Kind::Text if rng.chance(0.03) => Some(edit_text(&mut rng, data)),
                // 60% of logs get appended to.
                Kind::Log if rng.chance(0.6) => {
                    let mut d = data.clone();
                    let add = rng.log_uniform(4 * KIB, MIB);
                    push_log(&mut rng, &mut d, add);
                    Some(d)
                }
                // Databases: 1% of pages updated (single pages and runs),
                // 0.5% appended.
                Kind::Db => Some(edit_db(&mut rng, data)),
                // 1% of binaries and executables replaced (updates).
                Kind::Binary | Kind::Exe if rng.chance(0.01) => {
                    let len = data.len() * rng.between(90, 110) / 100;
                    Some(fresh(&mut rng, kind, len.max(1)))
                }
                _ => None,
            };
            if let Some(new) = new {
                written += changed_bytes(&t.contents[old], &new);
                *slot = t.add(kind, new);
            }
        }
        // New files and deleted files.
        for _ in 0..30 {
            let len = rng.log_uniform(50, 256 * KIB);
            let data = fresh(&mut rng, Kind::Text, len);
            written += data.len();
            tree.push(t.add(Kind::Text, data));
        }
        for _ in 0..2 {
            let len = rng.log_uniform(KIB, 8 * MIB);
            let data = fresh(&mut rng, Kind::Binary, len);
            written += data.len();
            tree.push(t.add(Kind::Binary, data));
        }
        for _ in 0..10 {
            tree.swap_remove(rng.below(tree.len()));
        }
        t.versions.push(tree.clone());
        t.written.push(written);
    }
    t
}

/// 1-5 inserts, deletes or replacements of 1 byte to 2 KiB of text.
fn edit_text(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..rng.between(1, 5) {
        let at = rng.below(d.len() + 1);
        let len = rng.log_uniform(1, 2 * KIB);
        let mut text = Vec::new();
        push_text(rng, &mut text, len);
        match rng.below(3) {
            0 => {
                d.splice(at..at, text);
            }
            1 => {
                d.drain(at..(at + len).min(d.len()));
            }
            _ => {
                d.splice(at..(at + len).min(d.len()), text);
            }
        }
    }
    d
}

/// A database after a transaction batch: 1% of pages updated (half as
/// single pages, half as runs of 4-32), 0.5% new pages appended.
fn edit_db(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    let pages = d.len() / BLOCK;
    let mut budget = pages / 100;
    while budget > 0 {
        let len = if rng.chance(0.5) {
            1
        } else {
            rng.between(4, 32)
        }
        .min(budget);
        let first = rng.below(pages - len + 1);
        for p in first..first + len {
            update_db_page(rng, &mut d[p * BLOCK..(p + 1) * BLOCK]);
        }
        budget -= len;
    }
    let grow = (pages / 200).max(1);
    let mut tail = vec![0u8; grow * BLOCK];
    for (i, page) in tail.chunks_exact_mut(BLOCK).enumerate() {
        fill_db_page(rng, page, (pages + i) as u64);
    }
    d.extend_from_slice(&tail);
    d
}

/// Bytes that changed from `old` to `new`: the smaller of the span between
/// the common prefix and suffix, and the differing 4 KiB blocks at equal
/// offsets plus the growth. A lower bound on what a backup must store.
fn changed_bytes(old: &[u8], new: &[u8]) -> usize {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let span = new.len() - prefix - suffix;
    let blocks = old
        .chunks(BLOCK)
        .zip(new.chunks(BLOCK))
        .filter(|(a, b)| a != b)
        .map(|(_, b)| b.len())
        .sum::<usize>()
        + new.len().saturating_sub(old.len());
    span.min(blocks)
}

// ---------------------------------------------------------------------------
// Measurement.

/// A chunk's identity: its 128-bit [`content_hash`] and its length.
/// Versions are not kept, so chunks cannot be compared byte by byte; with
/// about a million distinct chunks in a run, the chance that two distinct
/// ones share a key is below 1e-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ChunkKey {
    hash: (u64, u64),
    len: usize,
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A fast 128-bit hash of every byte: four 64-bit multiply-fold lanes, each
/// over every fourth word, folded into two words that each depend on all
/// four lanes.
fn content_hash(data: &[u8]) -> (u64, u64) {
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
    let [a, b, c, d] = lanes;
    (
        fold_mul(a ^ c.rotate_left(32), b ^ d.rotate_left(17) ^ K[0]),
        fold_mul(b ^ a.rotate_left(23), d ^ c.rotate_left(41) ^ K[1]),
    )
}

/// One min/avg/max (normalization level 2, the crate's default).
#[derive(Debug, Clone, Copy)]
struct Config {
    min: usize,
    avg: usize,
    max: usize,
}

impl Config {
    fn chunker(&self) -> Chunker {
        let params = ChunkerParams::new(self.min, self.avg, self.max);
        Chunker::new(params, GearTable::for_tests()).expect("valid chunk sizes")
    }

    fn label(&self) -> String {
        let k = |b: usize| format!("{}", b / KIB);
        format!("{}/**{}**/{}", k(self.min), k(self.avg), k(self.max))
    }
}

fn configs() -> Vec<Config> {
    let mut out: Vec<Config> = [8, 16, 32, 64, 128, 256, 512, 1024]
        .iter()
        .map(|&k| Config {
            min: k * KIB / 4,
            avg: k * KIB,
            max: k * KIB * 4,
        })
        .collect();
    out.insert(
        4,
        Config {
            min: 32 * KIB,
            avg: 64 * KIB,
            max: 256 * KIB,
        },
    );
    out
}

/// Chunk counts and bytes of one version.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    /// Chunks in the version (its snapshot lists them all).
    chunks: usize,
    /// Bytes in the version.
    bytes: usize,
    /// Chunks not stored before.
    new_chunks: usize,
    /// Bytes of those chunks.
    new_bytes: usize,
    /// Bytes of the new chunks compressed one by one with zstd level 3
    /// (incrementals only).
    new_zstd_bytes: usize,
    /// Chunk-list bytes under the alternative model: for the file tree,
    /// the lists of new or changed files only; for the disk, a paged map
    /// that stores only the pages that changed.
    alt_list_bytes: usize,
}

impl Cost {
    /// Metadata with the snapshot listing every chunk.
    fn metadata(&self) -> usize {
        self.chunks * ID_BYTES + self.new_chunks * INDEX_BYTES
    }

    /// Metadata when only new or changed files' chunk lists are new.
    /// Metadata under the alternative chunk-list model.
    fn metadata_alt(&self) -> usize {
        self.alt_list_bytes + self.new_chunks * INDEX_BYTES
    }

    /// What the incremental stores: compressed new data plus metadata.
    fn total(&self) -> usize {
        self.new_zstd_bytes + self.metadata()
    }

    /// The same under the alternative chunk-list model.
    fn total_alt(&self) -> usize {
        self.new_zstd_bytes + self.metadata_alt()
    }
}

/// The chunks stored so far.
struct Store {
    seen: HashSet<ChunkKey>,
    zstd: zstd::bulk::Compressor<'static>,
    /// Whether to compress new chunks (off for the full backup, which
    /// does not decide anything here and would cost most of the run time).
    compress: bool,
}

impl Store {
    fn new() -> Self {
        Self {
            seen: HashSet::new(),
            zstd: zstd::bulk::Compressor::new(3).expect("zstd level 3"),
            compress: false,
        }
    }

    /// Chunks `data`, adding what is new to `cost` and calling `each` with
    /// every chunk's offset and content hash; returns the number of chunks.
    fn add(
        &mut self,
        chunker: &Chunker,
        data: &[u8],
        cost: &mut Cost,
        mut each: impl FnMut(usize, u64),
    ) -> usize {
        let mut n = 0;
        for chunk in chunker.chunks(data) {
            let at = chunk.offset as usize;
            let piece = &data[at..at + chunk.data.len()];
            let hash = content_hash(piece);
            each(at, hash.0);
            n += 1;
            if self.seen.insert(ChunkKey {
                hash,
                len: piece.len(),
            }) {
                cost.new_chunks += 1;
                cost.new_bytes += piece.len();
                if self.compress {
                    let packed = self.zstd.compress(piece).expect("zstd compresses");
                    cost.new_zstd_bytes += packed.len().min(piece.len());
                }
            }
        }
        cost.chunks += n;
        cost.bytes += data.len();
        n
    }
}

/// Disk bytes described by one page of the paged disk map.
const MAP_PAGE: usize = MIB;

/// One config's view of the disk workload: its chunker, the chunks and
/// map pages stored so far.
///
/// The alternative list model is a two-level disk map: one page per
/// [`MAP_PAGE`] of disk listing the chunks that start there, and a top list
/// of page ids. A snapshot stores the top list and the pages that differ
/// from every page stored before (each with an index entry).
struct DiskState {
    chunker: Chunker,
    store: Store,
    pages: HashSet<u64>,
}

impl DiskState {
    fn new(config: &Config) -> Self {
        Self {
            chunker: config.chunker(),
            store: Store::new(),
            pages: HashSet::new(),
        }
    }

    /// Backs up one version of the image.
    fn measure(&mut self, img: &[u8], compress: bool) -> Cost {
        let mut cost = Cost::default();
        self.store.compress = compress;
        let n_pages = img.len().div_ceil(MAP_PAGE);
        let mut pages = vec![(0x9E37_79B9_7F4A_7C15u64, 0usize); n_pages];
        self.store.add(&self.chunker, img, &mut cost, |at, hash| {
            let page = &mut pages[at / MAP_PAGE];
            page.0 = fold_mul(page.0 ^ hash, 0xA076_1D64_78BD_642F);
            page.1 += 1;
        });
        cost.alt_list_bytes = n_pages * ID_BYTES;
        for (page_hash, entries) in pages {
            if self.pages.insert(page_hash) {
                cost.alt_list_bytes += entries * ID_BYTES + INDEX_BYTES;
            }
        }
        cost
    }
}

fn measure_files(configs: &[Config], trees: &FileTrees) -> Vec<Vec<Cost>> {
    configs
        .iter()
        .map(|config| {
            let chunker = config.chunker();
            let mut store = Store::new();
            let mut known: HashMap<usize, usize> = HashMap::new();
            trees
                .versions
                .iter()
                .enumerate()
                .map(|(i, tree)| {
                    let mut cost = Cost::default();
                    store.compress = i > 0;
                    for &c in tree {
                        if let Some(&n) = known.get(&c) {
                            cost.chunks += n;
                            cost.bytes += trees.contents[c].len();
                        } else {
                            let n = store.add(&chunker, &trees.contents[c], &mut cost, |_, _| ());
                            cost.alt_list_bytes += n * ID_BYTES;
                            known.insert(c, n);
                        }
                    }
                    cost
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Report.

fn mib(bytes: f64) -> String {
    format!("{:.2}", bytes / MIB as f64)
}

/// The main table: full backup, then the mean incremental.
fn print_table(configs: &[Config], costs: &[Vec<Cost>], alt: &str) {
    let mean = |c: &[Cost], f: &dyn Fn(&Cost) -> usize| {
        c[1..].iter().map(f).sum::<usize>() as f64 / (c.len() - 1) as f64
    };
    let totals: Vec<f64> = costs.iter().map(|c| mean(c, &Cost::total)).collect();
    let best = totals.iter().copied().fold(f64::INFINITY, f64::min);
    print!(
        "| min/**avg**/max KiB | chunks per snapshot | mean chunk KiB | full backup: unique MiB \
         | index GiB per TiB stored | new data MiB | new data zstd MiB | new chunks | chunk list MiB | index MiB \
         | **total MiB** | vs best "
    );
    println!("| {alt} MiB | **total with those MiB** | vs best |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let alt_totals: Vec<f64> = costs.iter().map(|c| mean(c, &Cost::total_alt)).collect();
    let alt_best = alt_totals.iter().copied().fold(f64::INFINITY, f64::min);
    for (((config, c), total), alt_total) in configs.iter().zip(costs).zip(&totals).zip(&alt_totals)
    {
        let full = &c[0];
        print!(
            "| {} | {:.0} | {:.1} | {} | {:.2} | {} | {} | {:.0} | {} | {} | **{}** | {:+.0}% ",
            config.label(),
            mean(c, &|x| x.chunks),
            full.bytes as f64 / full.chunks as f64 / KIB as f64,
            mib(full.new_bytes as f64),
            (full.new_chunks * INDEX_BYTES) as f64 / full.new_bytes as f64 * 1024.0,
            mib(mean(c, &|x| x.new_bytes)),
            mib(mean(c, &|x| x.new_zstd_bytes)),
            mean(c, &|x| x.new_chunks),
            mib(mean(c, &|x| x.chunks * ID_BYTES)),
            mib(mean(c, &|x| x.new_chunks * INDEX_BYTES)),
            mib(*total),
            (total / best - 1.0) * 100.0,
        );
        println!(
            "| {} | **{}** | {:+.0}% |",
            mib(mean(c, &|x| x.alt_list_bytes)),
            mib(*alt_total),
            (alt_total / alt_best - 1.0) * 100.0,
        );
    }
}

/// Per round: the total stored (compressed data + metadata, flat and
/// alternative list) and the new data (uncompressed) as a multiple of the
/// bytes the round changed.
fn print_rounds(configs: &[Config], costs: &[Vec<Cost>], written: &[usize], labels: &[String]) {
    print!("| min/**avg**/max KiB ");
    for l in labels {
        print!("| {l}: total MiB | new data / changed ");
    }
    println!("|");
    println!("|---{}|", "|---:|---:".repeat(labels.len()));
    for (config, c) in configs.iter().zip(costs) {
        print!("| {} ", config.label());
        for (cost, w) in c[1..].iter().zip(written) {
            print!(
                "| {} / {} | {:.1}x ",
                mib(cost.total() as f64),
                mib(cost.total_alt() as f64),
                cost.new_bytes as f64 / *w as f64
            );
        }
        println!("|");
    }
}

/// The disk tables: what the configs cost regardless of churn, then per
/// churn level the mean incremental under both chunk-list models, then the
/// data alone.
fn print_disk(configs: &[Config], run: &DiskRun) {
    println!(
        "| min/**avg**/max KiB | chunks per snapshot | mean chunk KiB | full backup: unique MiB \
         | index GiB per TiB stored | flat chunk list MiB per snapshot |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (config, c) in configs.iter().zip(&run.costs) {
        let full = &c[0];
        println!(
            "| {} | {} | {:.1} | {} | {:.2} | {} |",
            config.label(),
            full.chunks,
            full.bytes as f64 / full.chunks as f64 / KIB as f64,
            mib(full.new_bytes as f64),
            (full.new_chunks * INDEX_BYTES) as f64 / full.new_bytes as f64 * 1024.0,
            mib((full.chunks * ID_BYTES) as f64),
        );
    }
    // Mean of `f` over the rounds of churn level `share`.
    let level = |c: &[Cost], share: f64, f: &dyn Fn(&Cost) -> f64| {
        let values: Vec<f64> = c[1..]
            .iter()
            .zip(&run.rounds)
            .filter(|(_, (s, _))| *s == share)
            .map(|(cost, _)| f(cost))
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let written = |share: f64| {
        let w: Vec<usize> = (run.rounds.iter())
            .filter(|(s, _)| *s == share)
            .map(|(_, w)| *w)
            .collect();
        w.iter().sum::<usize>() as f64 / w.len() as f64
    };
    let share_label = |share: f64| format!("{}%", share * 100.0);

    println!(
        "\n### VM disk: total stored per incremental (MiB), flat chunk list / paged map, \
         mean of {DISK_REPEATS} rounds per churn level\n"
    );
    print!("| min/**avg**/max KiB ");
    for share in DISK_CHURN {
        let l = share_label(share);
        print!("| {l} flat | {l} paged ");
    }
    println!("|");
    println!("|---{}|", "|---:|---:".repeat(DISK_CHURN.len()));
    let models: [&dyn Fn(&Cost) -> f64; 2] = [&|x| x.total() as f64, &|x| x.total_alt() as f64];
    let best: Vec<[f64; 2]> = DISK_CHURN
        .iter()
        .map(|&share| {
            models.map(|m| {
                (run.costs.iter())
                    .map(|c| level(c, share, m))
                    .fold(f64::INFINITY, f64::min)
            })
        })
        .collect();
    for (config, c) in configs.iter().zip(&run.costs) {
        print!("| {} ", config.label());
        for (&share, best) in DISK_CHURN.iter().zip(&best) {
            for (m, b) in models.iter().zip(best) {
                let v = level(c, share, *m);
                print!("| {} ({:+.0}%) ", mib(v), (v / b - 1.0) * 100.0);
            }
        }
        println!("|");
    }

    println!(
        "\n### VM disk: new data per incremental, MiB raw / zstd, and raw as a multiple \
         of the bytes written\n"
    );
    print!("| min/**avg**/max KiB ");
    for share in DISK_CHURN {
        print!(
            "| {} ({} MiB written) ",
            share_label(share),
            mib(written(share))
        );
    }
    println!("|");
    println!("|---{}|", "|---:".repeat(DISK_CHURN.len()));
    for (config, c) in configs.iter().zip(&run.costs) {
        print!("| {} ", config.label());
        for share in DISK_CHURN {
            let raw = level(c, share, &|x| x.new_bytes as f64);
            let zstd = level(c, share, &|x| x.new_zstd_bytes as f64);
            print!(
                "| {} / {} ({:.1}x) ",
                mib(raw),
                mib(zstd),
                raw / written(share)
            );
        }
        println!("|");
    }
}

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // An optional workload seed, to check that conclusions do not hang on
    // one random draw; 0 (the default) is the run of record.
    let seed = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(seed)) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        Some(Err(e)) => {
            eprintln!("usage: chunk_size_study [WORKLOAD_SEED]: {e}");
            std::process::exit(2);
        }
    };
    println!("# chunk-size study\n\nmachine: {threads} threads, {cpu}");
    println!(
        "workload seed: {}",
        std::env::args().nth(1).unwrap_or_else(|| "0".to_owned())
    );
    println!(
        "metadata estimate: {ID_BYTES} B per chunk per snapshot (chunk list), \
         {INDEX_BYTES} B per new chunk (index entry)\n"
    );
    let configs = configs();

    println!("\n## VM disk\n");
    let run = run_disk(&configs, seed);
    println!();
    print_disk(&configs, &run);

    println!("\n## File tree\n");
    let trees = file_versions(seed);
    let costs = measure_files(&configs, &trees);
    println!("\n### File tree: mean per incremental over {FILE_ROUNDS} rounds\n");
    print_table(&configs, &costs, "changed-file lists");
    let labels: Vec<String> = trees
        .written
        .iter()
        .enumerate()
        .map(|(i, w)| format!("round {} ({} MiB changed)", i + 1, mib(*w as f64)))
        .collect();
    println!("\n### File tree: per round, total MiB flat / changed-file lists\n");
    print_rounds(&configs, &costs, &trees.written, &labels);
}
