//! The keyed gear table.
//!
//! The gear hash adds one table entry per input byte, so the table decides
//! every boundary. It is derived from a 32-byte secret seed held by the
//! repository: without the seed, the cut points of a known file cannot be
//! predicted, so chunk sizes do not fingerprint content.
//!
//! The expansion is xoshiro256** seeded with the seed's four little-endian
//! words (run through SplitMix64 so that weak seeds still give a full state);
//! each table entry is the high half of one output. The expansion is part of
//! the stability contract: it must never change (golden vectors guard it).
//! It need not be a cryptographic PRF: the seed has no use beyond this table,
//! so recovering the seed reveals nothing the table does not already reveal.

/// A fixed, public seed. Only for tests, benchmarks and examples: real
/// repositories generate a random seed at `init`.
pub const TEST_SEED: [u8; 32] = *b"cairn-chunker public test seed!!";

/// 256 keyed 32-bit gear values, one per byte value.
#[derive(Clone, PartialEq, Eq)]
pub struct GearTable {
    values: [u32; 256],
    /// Bit-interleaved planes: bit `i` of `planes[r][x]` is bit `4i + r` of
    /// `values[x]`. The layout the byte-permute scanner keeps its hashes in
    /// (see `scan/vbmi.rs`), computed once here rather than per scan.
    planes: [[u8; 256]; 4],
}

impl std::fmt::Debug for GearTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The table is as secret as the seed: never print it.
        f.write_str("GearTable { .. }")
    }
}

impl GearTable {
    /// Expands a 32-byte seed into a gear table.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut splitmix = 0u64;
        let mut state = [0u64; 4];
        for (word, bytes) in state.iter_mut().zip(seed.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            splitmix ^= u64::from_le_bytes(le);
            *word = splitmix64(&mut splitmix);
        }
        let mut rng = Xoshiro256StarStar { s: state };
        let mut values = [0u32; 256];
        for v in values.iter_mut() {
            *v = (rng.next() >> 32) as u32;
        }
        let mut planes = [[0u8; 256]; 4];
        for (x, &v) in values.iter().enumerate() {
            for (r, plane) in planes.iter_mut().enumerate() {
                plane[x] = (0..8).fold(0u8, |acc, i| acc | ((((v >> (4 * i + r)) & 1) as u8) << i));
            }
        }
        Self { values, planes }
    }

    /// The table built from [`TEST_SEED`].
    pub fn for_tests() -> Self {
        Self::from_seed(&TEST_SEED)
    }

    /// The 256 gear values.
    #[inline(always)]
    pub fn values(&self) -> &[u32; 256] {
        &self.values
    }

    /// The gear values as bit-interleaved byte planes: bit `i` of
    /// `interleaved_planes()[r][x]` is bit `4i + r` of `values()[x]`.
    #[inline(always)]
    pub(crate) fn interleaved_planes(&self) -> &[[u8; 256]; 4] {
        &self.planes
    }
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_stable() {
        // Golden values: changing the expansion changes every boundary of
        // every repository. Never update these.
        let t = GearTable::for_tests();
        assert_eq!(
            [t.values()[0], t.values()[1], t.values()[255]],
            GOLDEN_FIRST_LAST
        );
    }

    #[test]
    fn different_seeds_give_different_tables() {
        let mut other = TEST_SEED;
        other[31] ^= 1;
        assert_ne!(GearTable::from_seed(&other), GearTable::for_tests());
    }

    #[test]
    fn zero_seed_still_gives_distinct_values() {
        let t = GearTable::from_seed(&[0; 32]);
        let mut v = t.values().to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 256);
    }

    #[test]
    fn debug_does_not_leak_the_table() {
        assert_eq!(format!("{:?}", GearTable::for_tests()), "GearTable { .. }");
    }

    const GOLDEN_FIRST_LAST: [u32; 3] = [2569635285, 773755150, 4288488048];
}
