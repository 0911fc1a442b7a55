//! Where salts and keys come from: the operating system, or (for golden
//! fixtures and test vectors only) a deterministic stream.

use crate::error::{Error, Result};
use std::sync::Mutex;

/// A source of random bytes for keys and salts.
pub trait RandomSource: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's CSPRNG (getrandom): what every real repository uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| Error::Random(e.to_string()))
    }
}

/// A deterministic byte stream (BLAKE3 in XOF mode over a seed), for golden
/// repositories and test vectors. Never use it for a real repository: every
/// key and salt it yields is predictable from the seed.
pub struct SeededRandom(Mutex<blake3::OutputReader>);

impl SeededRandom {
    /// A stream determined by `seed`.
    pub fn new(seed: &[u8]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("cairn test-only deterministic random stream");
        h.update(seed);
        SeededRandom(Mutex::new(h.finalize_xof()))
    }
}

impl RandomSource for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        let mut reader = self
            .0
            .lock()
            .map_err(|_| Error::Random("seeded stream poisoned".into()))?;
        reader.fill(buf);
        Ok(())
    }
}

/// 32 random bytes from `rng`.
pub fn random_32(rng: &dyn RandomSource) -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    rng.fill(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_stream_is_deterministic_and_os_differs() {
        let a = random_32(&SeededRandom::new(b"x")).unwrap();
        let b = random_32(&SeededRandom::new(b"x")).unwrap();
        assert_eq!(a, b);
        assert_ne!(random_32(&OsRandom).unwrap(), random_32(&OsRandom).unwrap());
    }
}
