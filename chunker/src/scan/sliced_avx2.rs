//! AVX2 scanner: 32 lanes of byte-sliced gear hashes, nibble lookups.
//!
//! The AVX2 counterpart of the AVX-512 + GFNI scanner (`sliced.rs`; read
//! its docs first): 32 lanes, one byte of a `ymm` register each, every hash
//! bit-sliced over four registers so that `h << 1` is a renaming plus one
//! byte add. Without GFNI the affine gear table is looked up by nibble: plane
//! `r` of `G[b]` is `LO_r[b & 15] ^ HI_r[b >> 4]` (the map is affine, so it
//! splits exactly), two `vpshufb` per plane. This is what most guest VMs
//! have (x86-64-v3 without AVX-512), and the reason the table is affine
//! rather than random: a random 256-entry table has no 16-entry split.
//!
//! Rounds are 32 steps; the 32x32 byte transpose per round is four 8x8
//! transposes of 32-bit words, a byte shuffle within 128-bit blocks and a
//! 4x4 word transpose across the groups.

use std::arch::x86_64::*;

use super::{Candidate, scalar, state_before};
use crate::GearTable;

/// Lanes per register (bytes of a `ymm`).
const LANES: usize = 32;
/// Steps per round: bytes of each lane between two tests.
const ROUND: usize = 32;

/// Within each 128-bit block: output byte `4m + i` takes input byte `4i + m`.
const STEP_MAJOR: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// The lane whose hash sits in byte `byte` of a step register: group `g`
/// holds lanes `8g..8g + 8`; byte `16q + 4g + i` holds lane `8g + 4q + i`.
#[inline]
fn lane_of_byte(byte: usize) -> usize {
    let (q, g, i) = (byte >> 4, (byte >> 2) & 3, byte & 3);
    8 * g + 4 * q + i
}

/// Scans `start..end` (`start < end <= data.len()`), see
/// [`super::Kernel::scan`]. `threshold` must be a power of two. Returns
/// `false`, with `out` as it was, if `out` would grow past `cap`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
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
        // sets (see `sliced.rs`): lane length = 64 bytes x an odd number.
        let rounds = match rounds {
            1 => 1,
            r if (r / 2) % 2 == 1 => r / 2 * 2,
            r => (r / 2 - 1) * 2,
        };
        let lane_len = rounds * ROUND;
        // SAFETY: the caller's CPU guarantee is passed on; the range lies
        // inside `start..end`.
        let fits = unsafe {
            match super::sliced::high_planes(threshold.trailing_zeros()) {
                0 => scan_lanes::<0>(table, data, pos, lane_len, threshold, out, cap),
                1 => scan_lanes::<1>(table, data, pos, lane_len, threshold, out, cap),
                2 => scan_lanes::<2>(table, data, pos, lane_len, threshold, out, cap),
                _ => scan_lanes::<3>(table, data, pos, lane_len, threshold, out, cap),
            }
        };
        if !fits {
            out.truncate(first_new);
            return false;
        }
        pos += LANES * lane_len;
    }
    if !scalar::scan(table, data, pos, end, threshold, out, cap) {
        out.truncate(first_new);
        return false;
    }
    true
}

/// Scans exactly `start..start + 32 * lane_len` as 32 lanes of `lane_len`
/// bytes (a positive multiple of 32), appending candidates in order.
/// Returns `false` (leaving `out` to be truncated) if `out` would grow past
/// `cap`.
///
/// # Safety
/// The CPU must support AVX2, and the range must lie inside `data`.
#[target_feature(enable = "avx2")]
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
    let nibbles = table.plane_nibbles();
    let tables: [__m256i; 8] = std::array::from_fn(|k| {
        // SAFETY: each nibble table is 16 bytes.
        let t = unsafe { _mm_loadu_si128(nibbles[k].as_ptr().cast()) };
        _mm256_broadcastsi128_si256(t)
    });
    let (high, low) = super::sliced::mask_groups(threshold.trailing_zeros());
    let (high_mask, low_mask) = (_mm256_set1_epi8(high as i8), _mm256_set1_epi8(low as i8));
    let low_nibble = _mm256_set1_epi8(0x0F);
    // SAFETY: STEP_MAJOR is 16 bytes.
    let step_major =
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(STEP_MAJOR.as_ptr().cast()) });
    let lane_start: [usize; LANES] = std::array::from_fn(|j| start + j * lane_len);

    // One round: 32 bytes of every lane from `lane_start[j] + offset`.
    // Keeps each step's test value in `tests` (a zero byte: that lane's
    // position is a candidate) and returns their lane-wise minimum.
    let round = |h: &mut [__m256i; 4], offset: isize, tests: &mut [__m256i; ROUND]| -> __m256i {
        let mut cols = [[_mm256_setzero_si256(); 8]; 4];
        for (g, group_cols) in cols.iter_mut().enumerate() {
            // SAFETY: callers keep lane_start[j] + offset .. + 32 inside
            // `data`: offset >= -32 only when start >= 32, and offset + 32 <=
            // lane_len, where the last lane ends at start + 32 * lane_len <=
            // data.len().
            let rows: [__m256i; 8] = std::array::from_fn(|i| unsafe {
                _mm256_loadu_si256(
                    data.as_ptr()
                        .add(lane_start[8 * g + i])
                        .offset(offset)
                        .cast(),
                )
            });
            // Prefetch each lane two rounds ahead, and the bytes after this
            // range into L2 (see `sliced.rs`). Prefetches never fault.
            for i in 0..8 {
                let lane = 8 * g + i;
                let next = data
                    .as_ptr()
                    .wrapping_add(end)
                    .wrapping_offset(offset * 64 + 64 * lane as isize);
                _mm_prefetch::<_MM_HINT_T1>(next.cast());
                let ahead = data
                    .as_ptr()
                    .wrapping_add(lane_start[lane])
                    .wrapping_offset(offset + 2 * ROUND as isize);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            // group_cols[t] word i: bytes 4t..4t+4 of lane 8g + i.
            *group_cols = transpose8(rows);
        }
        let mut min = _mm256_set1_epi8(-1);
        let [c0, c1, c2, c3] = &cols;
        let columns = c0.iter().zip(c1).zip(c2).zip(c3);
        for ((((c0, c1), c2), c3), four_tests) in columns.zip(tests.chunks_exact_mut(4)) {
            // Per group, block q byte 4m + i: step 4t + m of lane 8g + 4q + i.
            let [g0, g1, g2, g3] = [c0, c1, c2, c3].map(|c| _mm256_shuffle_epi8(*c, step_major));
            // 4x4 transpose of words within each block across the groups.
            let a0 = _mm256_unpacklo_epi32(g0, g1);
            let a1 = _mm256_unpackhi_epi32(g0, g1);
            let a2 = _mm256_unpacklo_epi32(g2, g3);
            let a3 = _mm256_unpackhi_epi32(g2, g3);
            let steps = [
                _mm256_unpacklo_epi64(a0, a2),
                _mm256_unpackhi_epi64(a0, a2),
                _mm256_unpacklo_epi64(a1, a3),
                _mm256_unpackhi_epi64(a1, a3),
            ];
            for (idx, slot) in steps.into_iter().zip(four_tests) {
                let lo = _mm256_and_si256(idx, low_nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(idx), low_nibble);
                let [p0, p1, p2, p3] = *h;
                let shifted = _mm256_add_epi8(p3, p3);
                let next: [__m256i; 4] = std::array::from_fn(|r| {
                    let prev = [shifted, p0, p1, p2][r];
                    let from_lo = _mm256_shuffle_epi8(tables[2 * r], lo);
                    let from_hi = _mm256_shuffle_epi8(tables[2 * r + 1], hi);
                    _mm256_xor_si256(prev, _mm256_xor_si256(from_lo, from_hi))
                });
                *h = next;
                // Planes 0..HI take `high`'s mask, the rest `low`'s.
                let [p0, p1, p2, p3] = next;
                let or = |a, b| _mm256_or_si256(a, b);
                let t = match HI {
                    0 => _mm256_and_si256(or(or(p0, p1), or(p2, p3)), low_mask),
                    1 => {
                        let x = _mm256_and_si256(p0, high_mask);
                        _mm256_and_si256(or(or(x, p1), or(p2, p3)), low_mask)
                    }
                    2 => {
                        let x = _mm256_and_si256(or(p0, p1), high_mask);
                        _mm256_and_si256(or(x, or(p2, p3)), low_mask)
                    }
                    _ => {
                        let x = _mm256_and_si256(or(or(p0, p1), p2), high_mask);
                        _mm256_and_si256(or(x, p3), low_mask)
                    }
                };
                min = _mm256_min_epu8(min, t);
                *slot = t;
            }
        }
        min
    };

    let mut h = [_mm256_setzero_si256(); 4];
    let mut tests = [_mm256_setzero_si256(); ROUND];
    if start >= ROUND {
        // Warm up on the 32 bytes before each lane: from a zero state, they
        // leave exactly the hash of the 32 bytes before the lane's start.
        round(&mut h, -(ROUND as isize), &mut tests);
    } else {
        let lane_state: [u32; LANES] =
            std::array::from_fn(|j| state_before(table, data, lane_start[j]));
        h = to_planes(&lane_state);
    }
    let zero = _mm256_setzero_si256();
    let mut offset = 0;
    while offset < lane_len {
        let min = round(&mut h, offset as isize, &mut tests);
        if _mm256_movemask_epi8(_mm256_cmpeq_epi8(min, zero)) != 0 {
            // Rare: report every (step, lane) whose test value is zero.
            for (step, t) in tests.iter().enumerate() {
                let hits = _mm256_movemask_epi8(_mm256_cmpeq_epi8(*t, zero)) as u32;
                super::push_hits(
                    u64::from(hits),
                    lane_of_byte,
                    &lane_start,
                    offset + step,
                    out,
                );
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

/// Transposes an 8x8 matrix of 32-bit words: `out[t]` lane `j` is `rows[j]`
/// lane `t`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let mut a = [_mm256_setzero_si256(); 8];
    for p in 0..4 {
        a[2 * p] = _mm256_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
        a[2 * p + 1] = _mm256_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
    }
    // v[4g + i] holds, in 128-bit half q, element 4q + i of rows 4g..4g+4.
    let mut v = [_mm256_setzero_si256(); 8];
    for g in 0..2 {
        let (lo01, hi01, lo23, hi23) = (a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3]);
        v[4 * g] = _mm256_unpacklo_epi64(lo01, lo23);
        v[4 * g + 1] = _mm256_unpackhi_epi64(lo01, lo23);
        v[4 * g + 2] = _mm256_unpacklo_epi64(hi01, hi23);
        v[4 * g + 3] = _mm256_unpackhi_epi64(hi01, hi23);
    }
    let mut out = [_mm256_setzero_si256(); 8];
    for i in 0..4 {
        out[i] = _mm256_permute2x128_si256::<0x20>(v[i], v[4 + i]);
        out[4 + i] = _mm256_permute2x128_si256::<0x31>(v[i], v[4 + i]);
    }
    out
}

/// Lane hashes (indexed by lane) into the bit-interleaved register layout.
#[target_feature(enable = "avx2")]
fn to_planes(lanes: &[u32; LANES]) -> [__m256i; 4] {
    let mut bytes = [[0u8; LANES]; 4];
    for byte in 0..LANES {
        let h = lanes[lane_of_byte(byte)];
        for (r, plane) in bytes.iter_mut().enumerate() {
            plane[byte] = crate::gear::interleaved_byte(h, r);
        }
    }
    // SAFETY: each plane is 32 bytes; loadu has no alignment requirement.
    bytes.map(|p| unsafe { _mm256_loadu_si256(p.as_ptr().cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_mapping_is_a_permutation() {
        let mut seen = [false; LANES];
        for b in 0..LANES {
            seen[lane_of_byte(b)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
