//! Deterministic data generators for tests, benchmarks and demos.
//!
//! Test data is generated, never downloaded or committed: the same seed
//! always gives the same bytes, on every machine.

/// `len` pseudo-random bytes from `seed` (SplitMix64 stream).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_pseudo_random(seed, &mut out);
    out
}

/// Fills `buf` with the pseudo-random stream of `seed`.
pub fn fill_pseudo_random(seed: u64, buf: &mut [u8]) {
    let mut state = seed ^ 0x6A09_E667_F3BC_C908;
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}
