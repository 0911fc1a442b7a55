//! AVX-512 + GFNI scanner: 64 lanes of byte-sliced gear hashes.
//!
//! The range is cut into 64 lanes, each rolling its own XOR-gear hash
//! `h = (h << 1) ^ G[byte]` through its own stretch of the input; one byte
//! of a `zmm` register per lane. A 32-bit hash is held in four registers in
//! a *bit-interleaved* layout: bit `i` of lane byte `L` of plane `r` is bit
//! `4i + r` of lane `L`'s hash. In that layout `h << 1` is nearly free:
//! plane `r` becomes plane `r + 1` (a renaming, no instruction) and plane 0
//! becomes plane 3 shifted left by one within each byte (one byte add).
//!
//! The gear table is an affine map of the byte's bits (see `GearTable`), so
//! plane `r` of `G[byte]` for 64 bytes at once is one GF2P8AFFINEQB (an 8x8
//! bit-matrix product per byte), XORed into the hash together with the
//! plane's constant by one ternary-logic instruction. (An earlier version
//! looked up a random table with `vpermt2b`: two permutes, two register
//! copies and mask set-up per plane; the affine lookup made the kernel
//! about 40% faster.)
//!
//! The cut test `h < 2^a` (top `32 - a` bits zero) becomes, per plane, an AND
//! with a byte mask; since the masks grow with the plane number, the four
//! tests fold into a chain of `(x | plane) & mask` ternary-logic steps. A
//! round keeps every step's test value and their lane-wise byte minimum,
//! and checks the minimum once; only when it has a zero byte (a candidate,
//! rare) are the steps searched for the exact positions.
//!
//! Feeding 64 lanes one byte per step needs a 64x64 byte transpose per round
//! of 64 steps; it is done as four 16x16 transposes of 32-bit words, a byte
//! shuffle within 128-bit blocks, and a 4x4 word transpose across the four
//! groups.

use std::arch::x86_64::*;

use super::{Candidate, scalar, state_before};
use crate::GearTable;

/// Lanes per register (bytes of a `zmm`).
const LANES: usize = 64;
/// Steps per round: bytes of each lane between two tests.
const ROUND: usize = 64;

/// Within each 128-bit block: output byte `4m + i` takes input byte `4i + m`
/// (a 4x4 byte transpose), turning "4 steps of 4 lanes" into "4 lanes of
/// 4 steps".
const STEP_MAJOR: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// `(a | b) & c` for `_mm512_ternarylogic_epi32`.
const OR_AND: i32 = 0xA8;
/// `a | b | c` for `_mm512_ternarylogic_epi32`.
const OR3: i32 = 0xFE;
/// `a ^ b ^ c` for `_mm512_ternarylogic_epi32`.
const XOR3: i32 = 0x96;

/// The lane whose hash sits in byte `byte` of a step register. Group `g`
/// holds lanes `16g..16g + 16`; after the transposes, byte `16q + 4g + i`
/// holds lane `16g + 4q + i`.
#[inline]
fn lane_of_byte(byte: usize) -> usize {
    let (q, g, i) = (byte >> 4, (byte >> 2) & 3, byte & 3);
    16 * g + 4 * q + i
}

/// Byte masks selecting, in each plane, the hash bits at or above bit `a`
/// (the bits `h < 2^a` requires to be zero). They grow with the plane
/// number, which the folded test relies on.
fn test_masks(a: u32) -> [u8; 4] {
    std::array::from_fn(|r| {
        let first = (a as i32 - r as i32 + 3).div_euclid(4).max(0);
        if first >= 8 { 0 } else { 0xFFu8 << first }
    })
}

/// The per-plane masks of [`test_masks`] take at most two values: planes
/// `0..HI` have `high`, planes `HI..4` have `low` (`high` a subset of `low`;
/// `HI` is [`high_planes`]). Returns `(high, low)`. Folding planes that share
/// a mask saves one or two instructions per step over testing each plane.
pub(super) fn mask_groups(a: u32) -> (u8, u8) {
    let masks = test_masks(a);
    (masks[0], masks[3])
}

/// How many planes take the first mask, for `mask_groups(a)`.
pub(super) fn high_planes(a: u32) -> usize {
    let masks = test_masks(a);
    if masks[0] == masks[3] {
        0
    } else {
        masks.iter().filter(|&&m| m == masks[0]).count()
    }
}

/// Scans `start..end` (`start < end <= data.len()`), see
/// [`super::Kernel::scan`]. `threshold` must be a power of two.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and GFNI.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
pub(super) unsafe fn scan(
    table: &GearTable,
    data: &[u8],
    start: usize,
    end: usize,
    threshold: u32,
    out: &mut Vec<Candidate>,
    cap: usize,
) -> bool {
    debug_assert!(start < end && end <= data.len() && threshold.is_power_of_two());
    let first_new = out.len();
    let mut pos = start;
    loop {
        let rounds = (end - pos) / (LANES * ROUND);
        if rounds == 0 {
            break;
        }
        // Lanes an odd number of cache lines apart fall into different L1
        // sets; an even stride (a power of two, typically) puts all 64 lanes'
        // lines into one or two sets, which thrashes the cache.
        let rounds = if rounds.is_multiple_of(2) {
            rounds - 1
        } else {
            rounds
        };
        let lanes = rounds * ROUND;
        // SAFETY: the caller's CPU guarantee is passed on; the range lies
        // inside `start..end`.
        let fits = unsafe {
            match high_planes(threshold.trailing_zeros()) {
                0 => scan_lanes::<0>(table, data, pos, lanes, threshold, out, cap),
                1 => scan_lanes::<1>(table, data, pos, lanes, threshold, out, cap),
                2 => scan_lanes::<2>(table, data, pos, lanes, threshold, out, cap),
                _ => scan_lanes::<3>(table, data, pos, lanes, threshold, out, cap),
            }
        };
        if !fits {
            out.truncate(first_new);
            return false;
        }
        pos += LANES * ROUND * rounds;
    }
    if !scalar::scan(table, data, pos, end, threshold, out, cap) {
        out.truncate(first_new);
        return false;
    }
    true
}

/// Scans exactly `start..start + 64 * lane_len` as 64 lanes of `lane_len`
/// bytes (a positive multiple of 64), appending candidates in order.
/// Returns `false` (leaving `out` to be truncated) if `out` would grow past
/// `cap`.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and GFNI, and the range
/// must lie inside `data`.
#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn scan_lanes<const HI: usize>(
    table: &GearTable,
    data: &[u8],
    start: usize,
    lane_len: usize,
    threshold: u32,
    out: &mut Vec<Candidate>,
    cap: usize,
) -> bool {
    debug_assert!(lane_len > 0 && lane_len.is_multiple_of(ROUND));
    debug_assert!(start + LANES * lane_len <= data.len());
    let end = start + LANES * lane_len;
    let first_new = out.len();
    let (plane_matrices, plane_offsets) = table.plane_affine();
    let matrices = plane_matrices.map(|m| _mm512_set1_epi64(m as i64));
    let offsets = plane_offsets.map(|o| _mm512_set1_epi8(o as i8));
    let (high, low) = mask_groups(threshold.trailing_zeros());
    let (high_mask, low_mask) = (_mm512_set1_epi8(high as i8), _mm512_set1_epi8(low as i8));
    // SAFETY: STEP_MAJOR is 16 bytes.
    let step_major = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(STEP_MAJOR.as_ptr().cast()) });
    let lane_start: [usize; LANES] = std::array::from_fn(|j| start + j * lane_len);

    // One round: 64 bytes of every lane from `lane_start[j] + offset`.
    // Keeps each step's test value in `tests` (a zero byte: that lane's
    // position is a candidate) and returns their lane-wise minimum.
    let round = |h: &mut [__m512i; 4], offset: isize, tests: &mut [__m512i; ROUND]| -> __m512i {
        let mut cols = [[_mm512_setzero_si512(); 16]; 4];
        for (g, group_cols) in cols.iter_mut().enumerate() {
            // SAFETY: callers keep lane_start[j] + offset .. + 64 inside
            // `data`: offset >= -64 only when start >= 64, and offset + 64 <=
            // lane_len, where the last lane ends at start + 64 * lane_len <=
            // data.len().
            let rows: [__m512i; 16] = std::array::from_fn(|i| unsafe {
                _mm512_loadu_si512(
                    data.as_ptr()
                        .add(lane_start[16 * g + i])
                        .offset(offset)
                        .cast(),
                )
            });
            // 64 lanes are more read streams than hardware prefetchers
            // follow. Prefetch each lane two rounds ahead into L1, and stream
            // the bytes after this range (usually the next call's) into L2,
            // 12 KiB per round. A prefetch never faults, so the addresses may
            // run past the data.
            for i in 0..16 {
                let lane = 16 * g + i;
                let next = data
                    .as_ptr()
                    .wrapping_add(end)
                    .wrapping_offset(offset * 192 + 192 * lane as isize);
                _mm_prefetch::<_MM_HINT_T1>(next.cast());
                _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(64).cast());
                _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(128).cast());
                let ahead = data
                    .as_ptr()
                    .wrapping_add(lane_start[lane])
                    .wrapping_offset(offset + 2 * ROUND as isize);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            // group_cols[t] word i: bytes 4t..4t+4 of lane 16g + i.
            *group_cols = transpose16(rows);
        }
        let mut min = _mm512_set1_epi8(-1);
        let [c0, c1, c2, c3] = &cols;
        let columns = c0.iter().zip(c1).zip(c2).zip(c3);
        for ((((c0, c1), c2), c3), four_tests) in columns.zip(tests.chunks_exact_mut(4)) {
            // Per group, block q byte 4m + i: step 4t + m of lane 16g + 4q + i
            // (column t of the group transposes).
            let [g0, g1, g2, g3] = [c0, c1, c2, c3].map(|c| _mm512_shuffle_epi8(*c, step_major));
            // 4x4 transpose of words within each block across the groups:
            // steps[m] block q word g = group g's block q word m.
            let a0 = _mm512_unpacklo_epi32(g0, g1);
            let a1 = _mm512_unpackhi_epi32(g0, g1);
            let a2 = _mm512_unpacklo_epi32(g2, g3);
            let a3 = _mm512_unpackhi_epi32(g2, g3);
            let steps = [
                _mm512_unpacklo_epi64(a0, a2),
                _mm512_unpackhi_epi64(a0, a2),
                _mm512_unpacklo_epi64(a1, a3),
                _mm512_unpackhi_epi64(a1, a3),
            ];
            for (idx, slot) in steps.into_iter().zip(four_tests) {
                let [p0, p1, p2, p3] = *h;
                let shifted = _mm512_add_epi8(p3, p3);
                let next: [__m512i; 4] = std::array::from_fn(|r| {
                    // Plane r of G[byte]: an affine map of the byte's bits.
                    let linear = _mm512_gf2p8affine_epi64_epi8::<0>(idx, matrices[r]);
                    let prev = [shifted, p0, p1, p2][r];
                    _mm512_ternarylogic_epi32::<XOR3>(prev, linear, offsets[r])
                });
                *h = next;
                // Planes 0..HI take `high`'s mask, the rest `low`'s
                // (see `mask_groups`); `high` selects a subset of `low`.
                let [p0, p1, p2, p3] = next;
                let t = match HI {
                    0 => {
                        let x = _mm512_ternarylogic_epi32::<OR3>(p0, p1, p2);
                        _mm512_ternarylogic_epi32::<OR_AND>(x, p3, low_mask)
                    }
                    1 => {
                        let x = _mm512_ternarylogic_epi32::<OR3>(p1, p2, p3);
                        let y = _mm512_and_si512(p0, high_mask);
                        _mm512_ternarylogic_epi32::<OR_AND>(y, x, low_mask)
                    }
                    2 => {
                        let x = _mm512_ternarylogic_epi32::<OR_AND>(p0, p1, high_mask);
                        let y = _mm512_or_si512(p2, p3);
                        _mm512_ternarylogic_epi32::<OR_AND>(x, y, low_mask)
                    }
                    _ => {
                        let x = _mm512_ternarylogic_epi32::<OR3>(p0, p1, p2);
                        let y = _mm512_and_si512(x, high_mask);
                        _mm512_ternarylogic_epi32::<OR_AND>(y, p3, low_mask)
                    }
                };
                min = _mm512_min_epu8(min, t);
                *slot = t;
            }
        }
        min
    };

    let mut h = [_mm512_setzero_si512(); 4];
    let mut tests = [_mm512_setzero_si512(); ROUND];
    let mut lane_state = [0u32; LANES];
    if start >= ROUND {
        // Warm up on the 64 bytes before each lane: from a zero state, they
        // leave exactly the hash of the 32 bytes before the lane's start.
        round(&mut h, -(ROUND as isize), &mut tests);
    } else {
        for (j, s) in lane_state.iter_mut().enumerate() {
            *s = state_before(table, data, lane_start[j]);
        }
        h = to_planes(&lane_state);
    }
    let zero = _mm512_setzero_si512();
    let mut offset = 0;
    while offset < lane_len {
        let min = round(&mut h, offset as isize, &mut tests);
        if _mm512_cmpeq_epi8_mask(min, zero) != 0 {
            // Rare: report every (step, lane) whose test value is zero.
            for (step, t) in tests.iter().enumerate() {
                let hits = _mm512_cmpeq_epi8_mask(*t, zero);
                super::push_hits(hits, lane_of_byte, &lane_start, offset + step, out);
            }
            if out.len() > cap {
                return false;
            }
        }
        offset += ROUND;
    }
    super::sort_by_lane(&mut out[first_new..], start, lane_len, LANES);
    true
}

/// Transposes a 16x16 matrix of 32-bit words: `out[t]` lane `j` is
/// `rows[j]` lane `t`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Stage 1: interleave 32-bit words of row pairs.
    let mut a = [_mm512_setzero_si512(); 16];
    for p in 0..8 {
        a[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
        a[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
    }
    // Stage 2: interleave 64-bit pairs of row quads. Afterwards v[4g + i]
    // holds, in 128-bit block q, element 4q + i of rows 4g..4g+4.
    let mut v = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let (lo01, hi01, lo23, hi23) = (a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3]);
        v[4 * g] = _mm512_unpacklo_epi64(lo01, lo23);
        v[4 * g + 1] = _mm512_unpackhi_epi64(lo01, lo23);
        v[4 * g + 2] = _mm512_unpacklo_epi64(hi01, hi23);
        v[4 * g + 3] = _mm512_unpackhi_epi64(hi01, hi23);
    }
    // Stages 3 and 4: transpose the 4x4 grid of 128-bit blocks.
    let mut out = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        let x0 = _mm512_shuffle_i32x4::<0x44>(v[i], v[4 + i]);
        let x1 = _mm512_shuffle_i32x4::<0xEE>(v[i], v[4 + i]);
        let x2 = _mm512_shuffle_i32x4::<0x44>(v[8 + i], v[12 + i]);
        let x3 = _mm512_shuffle_i32x4::<0xEE>(v[8 + i], v[12 + i]);
        out[i] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
        out[4 + i] = _mm512_shuffle_i32x4::<0xDD>(x0, x2);
        out[8 + i] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
        out[12 + i] = _mm512_shuffle_i32x4::<0xDD>(x1, x3);
    }
    out
}

/// Lane hashes (indexed by lane) into the bit-interleaved register layout.
#[target_feature(enable = "avx512f")]
fn to_planes(lanes: &[u32; LANES]) -> [__m512i; 4] {
    let mut bytes = [[0u8; LANES]; 4];
    for byte in 0..LANES {
        let h = lanes[lane_of_byte(byte)];
        for (r, plane) in bytes.iter_mut().enumerate() {
            plane[byte] = crate::gear::interleaved_byte(h, r);
        }
    }
    // SAFETY: each plane is 64 bytes; loadu has no alignment requirement.
    bytes.map(|p| unsafe { _mm512_loadu_si512(p.as_ptr().cast()) })
}

/// The inverse of [`to_planes`] (tests only).
#[cfg(test)]
#[target_feature(enable = "avx512f")]
fn from_planes(regs: &[__m512i; 4]) -> [u32; LANES] {
    let mut bytes = [[0u8; LANES]; 4];
    for (plane, reg) in bytes.iter_mut().zip(regs) {
        // SAFETY: each plane is 64 bytes; storeu has no alignment requirement.
        unsafe { _mm512_storeu_si512(plane.as_mut_ptr().cast(), *reg) };
    }
    let mut lanes = [0u32; LANES];
    for byte in 0..LANES {
        let mut h = 0u32;
        for (r, plane) in bytes.iter().enumerate() {
            for i in 0..8 {
                h |= (((plane[byte] >> i) & 1) as u32) << (4 * i + r);
            }
        }
        lanes[lane_of_byte(byte)] = h;
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_select_the_top_bits() {
        for a in 0..32u32 {
            let masks = test_masks(a);
            let mut selected = 0u32;
            for (r, m) in masks.iter().enumerate() {
                for i in 0..8 {
                    if m & (1 << i) != 0 {
                        selected |= 1 << (4 * i + r);
                    }
                }
            }
            assert_eq!(selected, !0u32 << a, "a = {a}");
            assert!(masks.windows(2).all(|w| w[0] & !w[1] == 0), "masks nest");
        }
    }

    #[test]
    fn masks_form_two_groups() {
        for a in 0..32u32 {
            let masks = test_masks(a);
            let (high, low) = mask_groups(a);
            let hi = high_planes(a);
            assert!(hi < 4, "a = {a}");
            for (r, &m) in masks.iter().enumerate() {
                assert_eq!(m, if r < hi { high } else { low }, "a = {a}, plane {r}");
            }
        }
    }

    #[test]
    fn lane_mapping_is_a_permutation() {
        let mut seen = [false; LANES];
        for b in 0..LANES {
            seen[lane_of_byte(b)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn planes_round_trip() {
        if !(std::arch::is_x86_feature_detected!("avx512f")) {
            return;
        }
        let lanes: [u32; LANES] =
            std::array::from_fn(|j| (j as u32).wrapping_mul(0x9E37_79B9) ^ 0xA5A5_0F0F);
        // SAFETY: AVX-512F checked above.
        let back = unsafe { from_planes(&to_planes(&lanes)) };
        assert_eq!(back, lanes);
    }

    #[test]
    fn transpose_is_a_transpose() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: Vec<u32> = (0..256).collect();
        // SAFETY: AVX-512F checked above; each load reads 16 u32s of `m`.
        let rows: [__m512i; 16] =
            std::array::from_fn(|j| unsafe { _mm512_loadu_si512(m[16 * j..].as_ptr().cast()) });
        // SAFETY: AVX-512F checked above.
        let cols = unsafe { transpose16(rows) };
        for (t, col) in cols.iter().enumerate() {
            let mut lanes = [0u32; 16];
            // SAFETY: AVX-512F checked above; `lanes` holds 16 u32s.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), *col) };
            let want: Vec<u32> = (0..16).map(|j| (16 * j + t) as u32).collect();
            assert_eq!(lanes.to_vec(), want, "column {t}");
        }
    }
}
