//! The keyed gear table.
//!
//! The gear hash adds one table entry per input byte, so the table decides
//! every boundary. It is derived from a 32-byte secret seed held by the
//! repository: without the seed, the cut points of a known file cannot be
//! predicted, so chunk sizes do not fingerprint content.
//!
//! The table is an *affine* map of the byte's bits over GF(2):
//! `G[b] = offset ^ XOR of columns[i] for each set bit i of b`, with eight
//! linearly independent random 32-bit columns and a random offset, so the 256
//! values are distinct. A random table would do as well for chunking (the
//! dedup-quality test measures both within 1% of FastCDC); the affine one
//! can be looked up 64 bytes at a time with one GF2P8AFFINEQB instruction per
//! byte of the value, which is what makes the SIMD scanner fast. The XOR gear
//! hash is linear in the table either way (as a Rabin fingerprint is in its
//! polynomial), so the affine structure does not weaken the keying in kind:
//! it hides boundaries from anyone without the seed, not from an attacker
//! who can both choose content and observe chunk sizes at scale.
//!
//! The columns and offset come from xoshiro256** seeded with the seed's four
//! little-endian words (run through SplitMix64 so that weak seeds still give
//! a full state); each value is the high half of one output, columns redrawn
//! until independent. The expansion is part of the stability contract: it
//! must never change (golden vectors guard it). It need not be a
//! cryptographic PRF: the seed has no use beyond this table.

/// A fixed, public seed. Only for tests, benchmarks and examples: real
/// repositories generate a random seed at `init`.
pub const TEST_SEED: [u8; 32] = *b"cairn-chunker public test seed!!";

/// 256 keyed 32-bit gear values, one per byte value.
#[derive(Clone, PartialEq, Eq)]
pub struct GearTable {
    values: [u32; 256],
    /// The affine map behind the table, per bit-interleaved plane (bit `q`
    /// of plane `r` is bit `4q + r` of a value): plane `r` of `values[x]` is
    /// `matrices[r] * x ^ plane_offsets[r]` over GF(2), in the layout of the
    /// GF2P8AFFINEQB instruction. Computed once here rather than per scan.
    matrices: [u64; 4],
    plane_offsets: [u8; 4],
    /// The same map split by nibble, for 16-entry byte shuffles: plane `r`
    /// of `values[x]` is `nibbles[2r][x & 15] ^ nibbles[2r + 1][x >> 4]`
    /// (the offset folded into the low-nibble table).
    nibbles: [[u8; 16]; 8],
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
        // An affine map of the byte's bits: G[b] = offset ^ XOR of columns[i]
        // for each set bit i of b. Columns are redrawn until independent, so
        // that the 256 values are distinct.
        let mut columns = [0u32; 8];
        loop {
            for c in columns.iter_mut() {
                *c = (rng.next() >> 32) as u32;
            }
            if independent(&columns) {
                break;
            }
        }
        let offset = (rng.next() >> 32) as u32;
        let mut values = [0u32; 256];
        for (b, v) in values.iter_mut().enumerate() {
            *v = (0..8)
                .filter(|i| b & (1 << i) != 0)
                .fold(offset, |acc, i| acc ^ columns[i]);
        }
        // Plane r, output bit q is hash bit 4q + r: an 8x8 bit matrix whose
        // row q (stored in byte 7 - q, as GF2P8AFFINEQB wants it) selects the
        // input bits i whose column has bit 4q + r set.
        let matrices = std::array::from_fn(|r| {
            (0..8).fold(0u64, |m, q| {
                let row = (0..8).fold(0u8, |row, i| {
                    row | ((((columns[i] >> (4 * q + r)) & 1) as u8) << i)
                });
                m | (u64::from(row) << (8 * (7 - q)))
            })
        });
        let plane_offsets = std::array::from_fn(|r| interleaved_byte(offset, r));
        let nibbles = std::array::from_fn(|k| {
            let r = k / 2;
            std::array::from_fn(|n| {
                if k % 2 == 0 {
                    interleaved_byte(values[n], r)
                } else {
                    interleaved_byte(values[n << 4] ^ values[0], r)
                }
            })
        });
        Self {
            values,
            matrices,
            plane_offsets,
            nibbles,
        }
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

    /// The table's affine map per interleaved plane as nibble tables, for
    /// byte shuffles; see the field docs.
    #[inline(always)]
    pub(crate) fn plane_nibbles(&self) -> &[[u8; 16]; 8] {
        &self.nibbles
    }

    /// The table's affine map per interleaved plane, for GF2P8AFFINEQB:
    /// `(matrices, offsets)`, see the field docs.
    #[inline(always)]
    pub(crate) fn plane_affine(&self) -> (&[u64; 4], &[u8; 4]) {
        (&self.matrices, &self.plane_offsets)
    }
}

/// Bits `r, 4 + r, 8 + r, ..., 28 + r` of `v` as one byte.
pub(crate) fn interleaved_byte(v: u32, r: usize) -> u8 {
    (0..8).fold(0u8, |acc, i| acc | ((((v >> (4 * i + r)) & 1) as u8) << i))
}

/// Whether eight 32-bit vectors are linearly independent over GF(2).
fn independent(columns: &[u32; 8]) -> bool {
    let mut basis: Vec<u32> = Vec::with_capacity(8);
    for &c in columns {
        let reduced = basis.iter().fold(c, |v, &b| v.min(v ^ b));
        if reduced == 0 {
            return false;
        }
        basis.push(reduced);
        basis.sort_unstable_by(|a, b| b.cmp(a));
    }
    true
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
    fn table_is_affine_and_matches_its_plane_matrices() {
        let t = GearTable::for_tests();
        let g = t.values();
        for a in 0..256 {
            for b in 0..256 {
                assert_eq!(g[a ^ b] ^ g[a] ^ g[b] ^ g[0], 0, "affine at {a}, {b}");
            }
        }
        // Emulate GF2P8AFFINEQB: output bit q = parity(matrix byte 7 - q & x).
        let (matrices, offsets) = t.plane_affine();
        for (x, &v) in g.iter().enumerate() {
            for r in 0..4 {
                let plane = (0..8).fold(0u8, |acc, q| {
                    let row = (matrices[r] >> (8 * (7 - q))) as u8;
                    acc | ((((row & x as u8).count_ones() & 1) as u8) << q)
                }) ^ offsets[r];
                assert_eq!(plane, interleaved_byte(v, r), "value {x}, plane {r}");
                let nibbles = t.plane_nibbles();
                let split = nibbles[2 * r][x & 15] ^ nibbles[2 * r + 1][x >> 4];
                assert_eq!(split, interleaved_byte(v, r), "nibbles of {x}, plane {r}");
            }
        }
    }

    #[test]
    fn debug_does_not_leak_the_table() {
        assert_eq!(format!("{:?}", GearTable::for_tests()), "GearTable { .. }");
    }

    const GOLDEN_FIRST_LAST: [u32; 3] = [2372018930, 340502311, 3750674620];
}
