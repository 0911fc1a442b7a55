//! AVX-512 scanner: 16 lanes of 32-bit gear hashes.
//!
//! The range is cut into 16 equal lanes, one per 32-bit element of a `zmm`
//! register, each lane rolling its own hash through its own stretch of the
//! input. Every round loads 64 bytes of each lane, transposes the 16x16 block
//! of 32-bit words so that one register holds 4 consecutive bytes of every
//! lane, and then steps all 16 hashes one byte at a time, looking the gear
//! values up with a gather. The 16 hash chains are independent, which is what
//! frees the loop from the single dependency chain of a scalar gear hash.
//! Instead of testing every step, a round keeps the lane-wise minimum hash and
//! tests it once; a lane whose minimum is below the threshold (rare: that is
//! a candidate) is replayed by the scalar loop to report its positions.

use std::arch::x86_64::*;

use super::{Candidate, scalar, state_before};
use crate::GearTable;

const LANES: usize = 16;
const ROUND: usize = 64;

/// Scans `start..end` (`start < end <= data.len()`), see
/// [`super::Kernel::scan`].
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
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
    let thr = _mm512_set1_epi32(threshold as i32);
    let low_byte = _mm512_set1_epi32(0xff);
    // SAFETY: `init` holds 16 u32s; loadu has no alignment requirement.
    let mut h = unsafe { _mm512_loadu_si512(init.as_ptr().cast()) };
    let mut offset = 0;
    while offset < lane_len {
        let round_start = h;
        // SAFETY: lane j reads data[lane_start[j] + offset ..][..64]; the
        // last lane ends at start + 16 * lane_len <= end <= data.len(), and
        // offset + 64 <= lane_len.
        let rows: [__m512i; LANES] = std::array::from_fn(|j| unsafe {
            _mm512_loadu_si512(data.as_ptr().add(lane_start[j] + offset).cast())
        });
        let cols = transpose16(rows);
        let mut min = _mm512_set1_epi32(-1);
        for col in cols {
            macro_rules! step {
                ($idx:expr) => {{
                    // SAFETY: every index is a byte value (0..=255) and the
                    // table has 256 u32 entries.
                    let gear = unsafe { _mm512_i32gather_epi32::<4>($idx, g.as_ptr().cast()) };
                    h = _mm512_xor_si512(_mm512_slli_epi32::<1>(h), gear);
                    min = _mm512_min_epu32(min, h);
                }};
            }
            step!(_mm512_and_si512(col, low_byte));
            step!(_mm512_and_si512(_mm512_srli_epi32::<8>(col), low_byte));
            step!(_mm512_and_si512(_mm512_srli_epi32::<16>(col), low_byte));
            step!(_mm512_srli_epi32::<24>(col));
        }
        let hits = _mm512_cmplt_epu32_mask(min, thr);
        if hits != 0 {
            let mut before = [0u32; LANES];
            // SAFETY: `before` holds 16 u32s; storeu has no alignment requirement.
            unsafe { _mm512_storeu_si512(before.as_mut_ptr().cast(), round_start) };
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

/// Transposes a 16x16 matrix of 32-bit words: `out[t]` lane `j` is
/// `rows[j]` lane `t`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
