//! AVX-512 VBMI scanner: 16 lanes of 32-bit gear hashes, table lookups by
//! byte permutes instead of gathers.
//!
//! Lanes, rounds and the 16x16 word transpose are those of the AVX-512F
//! scanner (`avx512.rs`), whose speed is bounded by its gathers (one per
//! 16 lookups). Here the 256-entry table is split into four byte planes
//! (byte `p` of every entry); `vpermi2b` looks up 64 bytes in a 128-entry
//! plane half at once, so 4 planes x 2 halves + 4 blends look up 64 bytes.
//! The looked-up planes are then interleaved back into 32-bit values with
//! byte and word unpacks. For that interleave to land each value in the lane
//! and step where the hash needs it, the input bytes are first reordered
//! inside each 128-bit block (one `vpshufb`); see the layout notes inline.

use std::arch::x86_64::*;

use super::{Candidate, scalar, state_before};
use crate::GearTable;

const LANES: usize = 16;
const ROUND: usize = 64;

/// Within each 128-bit block: output byte `4m + i` takes input byte `4i + m`
/// (a 4x4 byte transpose). After the column transpose, input byte `4i + m` of
/// block `q` is step `m` of lane `4q + i`.
const STEP_MAJOR: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// Scans `start..end` (`start < end <= data.len()`), see
/// [`super::Kernel::scan`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn scan(
    table: &GearTable,
    data: &[u8],
    start: usize,
    end: usize,
    threshold: u32,
    out: &mut Vec<Candidate>,
) {
    debug_assert!(start < end && end <= data.len());
    let lane_len = ((end - start) / LANES) & !(ROUND - 1);
    if lane_len == 0 {
        return scalar::scan(table, data, start, end, threshold, out);
    }
    let first_new = out.len();
    let planes = table.byte_planes();
    let plane_regs: [[__m512i; 4]; 4] = std::array::from_fn(|p| {
        std::array::from_fn(|k| {
            // SAFETY: reads 64 bytes at 64 * k (k < 4) of a 256-byte plane.
            unsafe { _mm512_loadu_si512(planes[p][64 * k..].as_ptr().cast()) }
        })
    });
    // SAFETY: STEP_MAJOR is 16 bytes.
    let step_major = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(STEP_MAJOR.as_ptr().cast()) });
    let lane_start: [usize; LANES] = std::array::from_fn(|j| start + j * lane_len);

    // One round: 64 bytes of every lane from `lane_start[j] + offset`.
    // Returns the lane-wise minimum hash over the round's positions.
    let round = |h: &mut __m512i, offset: isize| -> __m512i {
        // SAFETY: callers keep lane_start[j] + offset .. + 64 inside `data`:
        // offset >= -64 only when start >= 64, and offset + 64 <= lane_len,
        // where the last lane ends at start + 16 * lane_len <= data.len().
        let rows: [__m512i; LANES] = std::array::from_fn(|j| unsafe {
            _mm512_loadu_si512(data.as_ptr().add(lane_start[j]).offset(offset).cast())
        });
        let cols = super::avx512::transpose16(rows);
        let mut min = _mm512_set1_epi32(-1);
        for col in cols {
            // Block q, byte 4m + i: step m of lane 4q + i.
            let idx = _mm512_shuffle_epi8(col, step_major);
            let high_half = _mm512_movepi8_mask(idx);
            let look = |p: usize| {
                let [a, b, c, d] = plane_regs[p];
                let low = _mm512_permutex2var_epi8(a, idx, b);
                let high = _mm512_permutex2var_epi8(c, idx, d);
                _mm512_mask_blend_epi8(high_half, low, high)
            };
            let (b0, b1, b2, b3) = (look(0), look(1), look(2), look(3));
            // Words (byte0, byte1) and (byte2, byte3) of each value...
            let lo01 = _mm512_unpacklo_epi8(b0, b1);
            let hi01 = _mm512_unpackhi_epi8(b0, b1);
            let lo23 = _mm512_unpacklo_epi8(b2, b3);
            let hi23 = _mm512_unpackhi_epi8(b2, b3);
            // ...then whole values: steps[m] lane 4q + i is step m of that lane.
            let steps = [
                _mm512_unpacklo_epi16(lo01, lo23),
                _mm512_unpackhi_epi16(lo01, lo23),
                _mm512_unpacklo_epi16(hi01, hi23),
                _mm512_unpackhi_epi16(hi01, hi23),
            ];
            for gear in steps {
                *h = _mm512_add_epi32(_mm512_slli_epi32::<1>(*h), gear);
                min = _mm512_min_epu32(min, *h);
            }
        }
        min
    };

    let mut h = if start >= ROUND {
        // Warm up on the 64 bytes before each lane: from a zero state, they
        // leave exactly the hash of the 32 bytes before the lane's start.
        let mut h = _mm512_setzero_si512();
        round(&mut h, -(ROUND as isize));
        h
    } else {
        let init: [u32; LANES] = std::array::from_fn(|j| state_before(table, data, lane_start[j]));
        // SAFETY: `init` holds 16 u32s; loadu has no alignment requirement.
        unsafe { _mm512_loadu_si512(init.as_ptr().cast()) }
    };
    let thr = _mm512_set1_epi32(threshold as i32);
    let mut offset = 0;
    while offset < lane_len {
        let round_start = h;
        let min = round(&mut h, offset as isize);
        let hits = _mm512_cmplt_epu32_mask(min, thr);
        if hits != 0 {
            let mut before = [0u32; LANES];
            // SAFETY: `before` holds 16 u32s; storeu has no alignment requirement.
            unsafe { _mm512_storeu_si512(before.as_mut_ptr().cast(), round_start) };
            for (j, &lane_state) in before.iter().enumerate() {
                if hits & (1 << j) != 0 {
                    let from = lane_start[j] + offset;
                    scalar::replay(
                        table,
                        &data[from..from + ROUND],
                        from,
                        lane_state,
                        threshold,
                        out,
                    );
                }
            }
        }
        offset += ROUND;
    }
    out[first_new..].sort_unstable_by_key(|c| c.pos);
    let tail = start + LANES * lane_len;
    scalar::scan(table, data, tail, end, threshold, out);
}
