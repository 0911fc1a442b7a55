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
    41735, 139719, 207461, 277301, 350111, 424113, 505061, 572694, 596066, 638486, 711949, 822185,
    896632, 973417, 1058440, 1116883, 1215542, 1330539, 1373220, 1431344, 1463358, 1547886,
    1614019, 1634732, 1696242, 1748920, 1830914, 1929850, 1994966, 2047379, 2239412, 2310207,
    2413626, 2482941, 2593222, 2676836, 2735995, 2830728, 2920532, 3016010, 3121501, 3204122,
    3271316, 3324360, 3440105, 3505712, 3609054, 3718593, 3793734, 3868743, 3939263, 4010679,
    4098783, 4194198, 4216862, 4275141, 4320128, 4393958, 4492653, 4558723, 4634566, 4717455,
    4806793, 4894700, 4990835, 5055946, 5138290, 5220918, 5277772, 5314992, 5342884,
];
const GOLDEN_1K: (usize, &[u64], u64) = (
    4243,
    &[1326, 1737, 3337, 4931, 5499, 7194, 8147, 9884],
    1629780057663870164,
);
