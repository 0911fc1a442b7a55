//! Golden vectors: fixed seed + parameters + data => fixed cut points.
//!
//! These values are part of the stability contract (same seed, params and
//! data give the same boundaries, forever). If this test fails, a change
//! moved chunk boundaries: every existing repository would stop
//! deduplicating against new backups. Fix the change, never the vectors
//! (unless a new, versioned chunker format is being introduced on purpose;
//! see docs/format.md).

use cairn_chunker::{Chunker, ChunkerParams, GearTable, reference, testdata};

/// 5.1 MiB of deterministic data: random, text-like, zeros, random.
fn golden_data() -> Vec<u8> {
    let mut data = testdata::pseudo_random(1, 1 << 20);
    let words = [
        "backup ",
        "restore ",
        "chunk ",
        "cairn ",
        "disk\n",
        "snapshot ",
        "0123 ",
    ];
    let mut state = 7u64;
    while data.len() < (2 << 20) {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        data.extend_from_slice(words[(state >> 60) as usize % words.len()].as_bytes());
    }
    data.resize(data.len() + 100_000, 0);
    data.extend_from_slice(&testdata::pseudo_random(2, 3 << 20));
    data
}

fn cut_offsets(chunker: &Chunker, data: &[u8]) -> Vec<u64> {
    chunker
        .chunks(data)
        .map(|c| c.offset + c.data.len() as u64)
        .collect()
}

fn fnv1a(values: &[u64]) -> u64 {
    values.iter().fold(0xcbf2_9ce4_8422_2325, |h, v| {
        v.to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
    })
}

#[test]
fn default_params_cut_points_never_change() {
    let data = golden_data();
    let chunker = Chunker::new(
        ChunkerParams::new(16 << 10, 64 << 10, 256 << 10),
        GearTable::for_tests(),
    )
    .expect("valid params");
    let cuts = cut_offsets(&chunker, &data);
    assert_eq!(cuts, GOLDEN_64K, "cut points moved: see the module docs");
}

#[test]
fn small_params_cut_points_never_change() {
    let data = golden_data();
    let params = ChunkerParams::new(256, 1024, 8192).with_normalization(1);
    let chunker = Chunker::new(params, GearTable::for_tests()).expect("valid params");
    let cuts = cut_offsets(&chunker, &data);
    // The reference agrees (this data is small enough for it).
    let lens = reference::chunk_lengths(chunker.table(), &params, &data);
    assert_eq!(lens.len(), cuts.len());
    assert_eq!(
        (cuts.len(), &cuts[..8], fnv1a(&cuts)),
        GOLDEN_1K,
        "cut points moved: see the module docs"
    );
}

#[test]
fn another_seed_gives_other_cut_points() {
    let data = golden_data();
    let mut seed = cairn_chunker::TEST_SEED;
    seed[0] ^= 0x80;
    let chunker = Chunker::new(
        ChunkerParams::new(16 << 10, 64 << 10, 256 << 10),
        GearTable::from_seed(&seed),
    )
    .expect("valid params");
    assert_ne!(cut_offsets(&chunker, &data), GOLDEN_64K);
}

const GOLDEN_64K: &[u64] = &[
    93357, 162538, 245038, 341642, 419349, 483971, 549631, 616538, 711525, 794255, 866031, 934598,
    1009829, 1084188, 1158085, 1260630, 1333278, 1401359, 1482013, 1558930, 1627369, 1722228,
    1822175, 1934101, 2018267, 2086898, 2199081, 2269055, 2335144, 2393976, 2459571, 2533490,
    2611575, 2695358, 2793964, 2880027, 2946380, 3023319, 3159833, 3235570, 3343116, 3410096,
    3474520, 3491583, 3562476, 3632037, 3700374, 3725651, 3837233, 3925002, 3994343, 4057054,
    4125318, 4218232, 4319171, 4390759, 4439793, 4482249, 4567192, 4691950, 4774950, 4890917,
    4982450, 5053708, 5123325, 5191011, 5207461, 5279811, 5342884,
];
const GOLDEN_1K: (usize, &[u64], u64) = (
    4315,
    &[4432, 5676, 6777, 7733, 8885, 9249, 10704, 12825],
    3827925258888510247,
);
