//! AVX2 scanner: 8 lanes of 32-bit gear hashes.
//!
//! The same scheme as the AVX-512 scanner (see `avx512.rs`) at half the
//! width: 8 lanes, rounds of 32 bytes per lane, an 8x8 transpose of 32-bit
//! words, gathers for the table lookups, and a lane-wise minimum tested once
//! per round.

use std::arch::x86_64::*;

use super::{Candidate, scalar, state_before};
use crate::GearTable;

const LANES: usize = 8;
const ROUND: usize = 32;

/// Scans `start..end` (`start < end <= data.len()`), see
/// [`super::Kernel::scan`].
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
    debug_assert!(start < end && end <= data.len());
    let lane_len = ((end - start) / LANES) & !(ROUND - 1);
    if lane_len == 0 {
        return scalar::scan(table, data, start, end, threshold, out, cap);
    }
    let first_new = out.len();
    let g = table.values();
    let lane_start: [usize; LANES] = std::array::from_fn(|j| start + j * lane_len);
    let init: [u32; LANES] = std::array::from_fn(|j| state_before(table, data, lane_start[j]));
    // Unsigned `min < threshold` as `min_epu32(min, threshold - 1) == min`.
    let thr_minus_one = _mm256_set1_epi32(threshold.wrapping_sub(1) as i32);
    let low_byte = _mm256_set1_epi32(0xff);
    // SAFETY: `init` holds 8 u32s; loadu has no alignment requirement.
    let mut h = unsafe { _mm256_loadu_si256(init.as_ptr().cast()) };
    let mut offset = 0;
    while offset < lane_len {
        let round_start = h;
        // SAFETY: lane j reads data[lane_start[j] + offset ..][..32]; the
        // last lane ends at start + 8 * lane_len <= end <= data.len(), and
        // offset + 32 <= lane_len.
        let rows: [__m256i; LANES] = std::array::from_fn(|j| unsafe {
            _mm256_loadu_si256(data.as_ptr().add(lane_start[j] + offset).cast())
        });
        let cols = transpose8(rows);
        let mut min = _mm256_set1_epi32(-1);
        for col in cols {
            macro_rules! step {
                ($idx:expr) => {{
                    // SAFETY: every index is a byte value (0..=255) and the
                    // table has 256 u32 entries.
                    let gear = unsafe { _mm256_i32gather_epi32::<4>(g.as_ptr().cast(), $idx) };
                    h = _mm256_xor_si256(_mm256_slli_epi32::<1>(h), gear);
                    min = _mm256_min_epu32(min, h);
                }};
            }
            step!(_mm256_and_si256(col, low_byte));
            step!(_mm256_and_si256(_mm256_srli_epi32::<8>(col), low_byte));
            step!(_mm256_and_si256(_mm256_srli_epi32::<16>(col), low_byte));
            step!(_mm256_srli_epi32::<24>(col));
        }
        let below = _mm256_cmpeq_epi32(_mm256_min_epu32(min, thr_minus_one), min);
        let hits = if threshold == 0 {
            0
        } else {
            _mm256_movemask_ps(_mm256_castsi256_ps(below))
        };
        if hits != 0 {
            let mut before = [0u32; LANES];
            // SAFETY: `before` holds 8 u32s; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(before.as_mut_ptr().cast(), round_start) };
            for (j, &lane_state) in before.iter().enumerate() {
                if hits & (1 << j) != 0 {
                    let from = lane_start[j] + offset;
                    let fits = scalar::replay(
                        table,
                        &data[from..from + ROUND],
                        from,
                        lane_state,
                        threshold,
                        out,
                        cap,
                    );
                    if !fits {
                        out.truncate(first_new);
                        return false;
                    }
                }
            }
        }
        offset += ROUND;
    }
    super::sort_by_lane(&mut out[first_new..], start, lane_len, LANES);
    let tail = start + LANES * lane_len;
    if !scalar::scan(table, data, tail, end, threshold, out, cap) {
        out.truncate(first_new);
        return false;
    }
    true
}

/// Transposes an 8x8 matrix of 32-bit words: `out[t]` lane `j` is `rows[j]`
/// lane `t`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
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
