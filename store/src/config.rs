//! The repository `config`: the settings every writer must agree on, fixed at
//! `init` (chunker parameters, pack size, compression level).
//!
//! Its 44-byte header is plaintext, so a reader learns "is this a cairn
//! repository, and which version" before it has a key; the body is a sealed
//! JSON document (docs/format.md §2.4).

use crate::backend::ObjectKind;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::object::{open_metadata, seal_metadata};
use crate::random::RandomSource;
use serde::{Deserialize, Serialize};

/// Chunk size parameters as stored (the store does not chunk; the agent turns
/// these into `cairn_chunker::ChunkerParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSizes {
    /// Minimum chunk size in bytes.
    pub min: u32,
    /// Average (target) chunk size in bytes.
    pub avg: u32,
    /// Maximum chunk size in bytes.
    pub max: u32,
    /// Normalization level.
    pub normalization: u32,
}

/// How the agent chunks: boundaries depend on all of it (and on the gear
/// seed in the key set), so it is fixed for the repository's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerConfig {
    /// The chunker format version (docs/format.md §1).
    pub format: u32,
    /// Sizes for block-level disk backups.
    pub disk: ChunkSizes,
    /// Sizes for file backups.
    pub files: ChunkSizes,
}

/// The repository's fixed settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version (equals the header's version byte).
    pub version: u32,
    /// The repository id (also in the key set; both must agree).
    pub repo_id: Id,
    /// Seconds since the Unix epoch at `init`.
    pub created: i64,
    /// Chunking parameters.
    pub chunker: ChunkerConfig,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for data blobs.
    pub compression_level: i32,
}

/// Default target pack size: 16 MiB.
pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;
/// Default zstd level for data blobs.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

impl Config {
    /// Checks ranges a hostile or damaged config could break.
    pub fn validate(&self, object: &str) -> Result<()> {
        let sizes_ok =
            |s: &ChunkSizes| s.min >= 64 && s.min <= s.avg && s.avg <= s.max && s.max <= 1 << 30;
        if !(sizes_ok(&self.chunker.disk) && sizes_ok(&self.chunker.files)) {
            return Err(Error::corrupt(object, "chunk sizes out of range"));
        }
        if !(64 * 1024..=1 << 30).contains(&self.pack_size) {
            return Err(Error::corrupt(
                object,
                "pack size out of range (64 KiB..1 GiB)",
            ));
        }
        if !(-7..=22).contains(&self.compression_level) {
            return Err(Error::corrupt(
                object,
                "compression level out of range (-7..=22)",
            ));
        }
        Ok(())
    }

    /// Seals the config as a stored object.
    pub fn seal(&self, keys: &MasterKeys, rng: &dyn RandomSource) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::InvalidInput(e.to_string()))?;
        seal_metadata(ObjectKind::Config, &json, keys, rng)
    }

    /// Opens and validates the stored config.
    pub fn open(bytes: &[u8], keys: &MasterKeys) -> Result<Config> {
        let json = open_metadata(ObjectKind::Config, bytes, keys, "config")?;
        let config: Config = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt("config", format!("invalid JSON: {e}")))?;
        config.validate("config")?;
        if config.repo_id != keys.repo_id {
            return Err(Error::corrupt(
                "config",
                "repository id differs from the key's",
            ));
        }
        Ok(config)
    }
}
