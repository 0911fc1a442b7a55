//! Candidate scanning: the hot loop of the chunker.
//!
//! A scanner computes the gear hash at every position of a range and reports
//! the positions whose hash is below a threshold (the *candidates*). Because
//! the hash at a position depends only on the 32 bytes ending there, positions
//! are independent: a scanner may split its range into lanes and process them
//! side by side (SIMD), and several threads may scan disjoint ranges. The
//! chunking rules (minimum, normalization, maximum) are applied afterwards, by
//! [`crate::resolve`], to the sparse candidate list.
//!
//! Every kernel must report exactly the candidates of [`scalar`]; the property
//! tests compare them on random data, ranges and thresholds.

pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
mod sliced;
#[cfg(target_arch = "x86_64")]
mod sliced_avx2;

use crate::GearTable;

/// A position whose gear hash is below the scan threshold.
///
/// Only the position is kept: on low-entropy input (a long run of one byte
/// whose hash happens to pass) every position can be a candidate, and then
/// anything more per candidate than a store costs dearly. The resolver
/// recomputes the few hashes it needs, rolling from one to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    /// Position of the last byte of the hash window, in the scanned slice.
    pub pos: usize,
}

/// A candidate scanner implementation, picked at run time by CPU features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable scalar loop.
    Scalar,
    /// 32 lanes of byte-sliced hashes in AVX2 registers, the affine table
    /// looked up by nibble with byte shuffles. Power-of-two thresholds (all
    /// that chunker parameters produce); others take the scalar loop.
    Avx2,
    /// 64 lanes of byte-sliced hashes, table lookups by GF2P8AFFINEQB (the
    /// table is affine, see `GearTable`). Needs AVX-512F, AVX-512BW and GFNI.
    /// Power-of-two thresholds; others take the scalar loop.
    Avx512Gfni,
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn has_gfni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("gfni")
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if has_gfni() {
                return Self::Avx512Gfni;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    /// Every kernel this CPU can run, slowest first (for tests and benches).
    pub fn available() -> Vec<Self> {
        let mut kernels = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Self::Avx2);
            }
            if has_gfni() {
                kernels.push(Self::Avx512Gfni);
            }
        }
        kernels
    }

    /// A short name for reports (`scalar`, `avx2`, `avx512-gfni`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512Gfni => "avx512-gfni",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        Self::available().contains(&self)
    }

    /// Appends to `out`, in ascending order, every position `e` in
    /// `start..end` whose gear hash is below `threshold`.
    ///
    /// Positions past the end of `data` are ignored. A kernel the CPU does
    /// not support falls back to the scalar loop.
    pub fn scan(
        self,
        table: &GearTable,
        data: &[u8],
        start: usize,
        end: usize,
        threshold: u32,
        out: &mut Vec<Candidate>,
    ) {
        self.scan_capped(table, data, start, end, threshold, out, usize::MAX);
    }

    /// [`scan`](Self::scan), giving up as soon as `out` would hold more than
    /// `cap` candidates: then returns `false` with `out` as it was. Dense
    /// candidates mean low-entropy input, which the resolver handles better
    /// with the scalar boundary finder than with millions of candidates.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_capped(
        self,
        table: &GearTable,
        data: &[u8],
        start: usize,
        end: usize,
        threshold: u32,
        out: &mut Vec<Candidate>,
        cap: usize,
    ) -> bool {
        let end = end.min(data.len());
        if start >= end {
            return true;
        }
        // The SIMD kernels test thresholds that are powers of two (all that
        // chunker parameters produce); any other takes the scalar loop.
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Gfni if has_gfni() && threshold.is_power_of_two() => {
                // SAFETY: the CPU supports AVX-512F, BW and GFNI, checked just above.
                unsafe { sliced::scan(table, data, start, end, threshold, out, cap) }
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx2
                if std::arch::is_x86_feature_detected!("avx2") && threshold.is_power_of_two() =>
            {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { sliced_avx2::scan(table, data, start, end, threshold, out, cap) }
            }
            _ => scalar::scan(table, data, start, end, threshold, out, cap),
        }
    }
}

/// Appends the candidates of one step of a byte-sliced kernel: bit `b` of
/// `hits` set means the lane held in byte `b` (`lane_of_byte(b)`) is a
/// candidate at `lane_start[lane] + step_offset`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn push_hits(
    mut hits: u64,
    lane_of_byte: fn(usize) -> usize,
    lane_start: &[usize],
    step_offset: usize,
    out: &mut Vec<Candidate>,
) {
    while hits != 0 {
        let lane = lane_of_byte(hits.trailing_zeros() as usize);
        hits &= hits - 1;
        out.push(Candidate {
            pos: lane_start[lane] + step_offset,
        });
    }
}

/// Puts the candidates a lane kernel appended (`new`) into position order,
/// in linear time.
///
/// A kernel over `lanes` lanes of `lane_len` bytes from `start` reports each
/// lane's candidates in order, but interleaves lanes (round by round, step
/// by step). A stable counting sort by lane restores position order; it
/// stays linear when every position is a candidate, where a comparison sort
/// of millions of entries per block would dominate everything else.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn sort_by_lane(new: &mut [Candidate], start: usize, lane_len: usize, lanes: usize) {
    if new.len() <= 32 {
        new.sort_unstable();
        return;
    }
    let lane = |c: &Candidate| (c.pos - start) / lane_len;
    let mut offsets = vec![0usize; lanes + 1];
    for c in new.iter() {
        offsets[lane(c) + 1] += 1;
    }
    for i in 0..lanes {
        offsets[i + 1] += offsets[i];
    }
    let mut sorted = vec![Candidate { pos: 0 }; new.len()];
    for c in new.iter() {
        let slot = &mut offsets[lane(c)];
        sorted[*slot] = *c;
        *slot += 1;
    }
    new.copy_from_slice(&sorted);
}

/// The gear hash at `pos - 1`, i.e. the state a scan starting at `pos`
/// continues from (zero at the start of the data).
#[inline]
pub(crate) fn state_before(table: &GearTable, data: &[u8], pos: usize) -> u32 {
    if pos == 0 {
        0
    } else {
        crate::reference::window_hash(table, data, pos - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::pseudo_random;

    fn scan_all(kernel: Kernel, data: &[u8], start: usize, end: usize, thr: u32) -> Vec<Candidate> {
        let mut out = Vec::new();
        kernel.scan(&GearTable::for_tests(), data, start, end, thr, &mut out);
        out
    }

    #[test]
    fn scalar_matches_the_definition() {
        let table = GearTable::for_tests();
        let data = pseudo_random(7, 5000);
        let thr = 1 << 26;
        let got = scan_all(Kernel::Scalar, &data, 0, data.len(), thr);
        let want: Vec<Candidate> = (0..data.len())
            .filter(|&pos| crate::reference::window_hash(&table, &data, pos) < thr)
            .map(|pos| Candidate { pos })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn every_kernel_matches_scalar_on_odd_ranges() {
        let data = pseudo_random(11, 300_000);
        for kernel in Kernel::available() {
            for &(start, end) in &[
                (0, 300_000),
                (1, 299_999),
                (31, 1024),
                (33, 1057),
                (4097, 200_003),
                (0, 0),
                (10, 5),
            ] {
                for thr in [1, 1 << 20, 1 << 26, 1 << 31, u32::MAX, 12345] {
                    assert_eq!(
                        scan_all(kernel, &data, start, end, thr),
                        scan_all(Kernel::Scalar, &data, start, end, thr),
                        "{kernel:?} {start}..{end} thr {thr}"
                    );
                }
            }
        }
    }
}
