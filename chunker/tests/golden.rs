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
    75893, 151224, 217622, 297314, 387179, 419877, 490767, 557781, 623795, 717379, 786317, 851970,
    922480, 998917, 1023715, 1090590, 1160870, 1227159, 1296712, 1369204, 1435467, 1513837,
    1589708, 1663344, 1745477, 1822310, 1889688, 1955567, 2021147, 2211065, 2304212, 2375748,
    2480614, 2537889, 2621364, 2707249, 2780969, 2871023, 2918862, 2999545, 3077315, 3151381,
    3223628, 3311906, 3392355, 3433662, 3523054, 3608467, 3674797, 3747096, 3831010, 3903510,
    3978971, 4054828, 4140047, 4239654, 4305887, 4374234, 4440355, 4526554, 4596469, 4682782,
    4753657, 4859071, 4930356, 5002754, 5067559, 5163623, 5234460, 5311411, 5342884,
];
const GOLDEN_1K: (usize, &[u64], u64) = (
    4275,
    &[1094, 1621, 2687, 3546, 4453, 5889, 7298, 8277],
    2086144935808491282,
);
