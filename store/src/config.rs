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
use crate::object::{ObjectHeader, open_metadata, seal_metadata};
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

    /// Opens and validates the stored config. A config sealed under an
    /// epoch the key set does not hold is refused with what that means
    /// (see [`epoch_not_held`]).
    pub fn open(bytes: &[u8], keys: &MasterKeys) -> Result<Config> {
        let header = ObjectHeader::decode(bytes, ObjectKind::Config, "config")?;
        if !keys.holds_epoch(header.epoch) {
            return Err(epoch_not_held(header.epoch, keys.current_epoch()));
        }
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

/// The refusal of a config sealed under `epoch`, which a key set whose
/// current epoch is `current` does not hold.
///
/// Below the current epoch, it is a retired one: `key rotate --rewrite`
/// seals the config again under the new epoch before it drops the old ones
/// from the key files, so a config under a dropped epoch was put back from
/// an older copy of the target (a replay) or forged by someone holding the
/// retired keys. Above it, the key file is older than the config.
fn epoch_not_held(epoch: u32, current: u32) -> Error {
    let reason = if epoch < current {
        format!(
            "sealed under key epoch {epoch}, which `cairn key rotate --rewrite` retired after \
             sealing the config again under epoch {current}: this config was put back from an \
             older copy of the target or forged by someone holding the retired keys (or is \
             another repository's), and is refused. Put back the config written by the \
             rewrite (from a copy of the target made after it); if the whole target was \
             restored from an older copy, restore its key files from that same copy"
        )
    } else {
        format!(
            "sealed under key epoch {epoch}, newer than any the key file that opened it holds \
             (its newest is {current}): that key file is older than the config (put back from \
             an older copy of the target?), or the config is another repository's. Restore \
             the key files from the same copy as the config, or open with a password or key \
             whose key file was rewritten by the latest `cairn key rotate`"
        )
    };
    Error::corrupt("config", reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    fn config(keys: &MasterKeys) -> Config {
        let sizes = ChunkSizes {
            min: 1024,
            avg: 4096,
            max: 16384,
            normalization: 1,
        };
        Config {
            version: 1,
            repo_id: keys.repo_id,
            created: 1,
            chunker: ChunkerConfig {
                format: 1,
                disk: sizes,
                files: sizes,
            },
            pack_size: DEFAULT_PACK_SIZE,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }

    #[test]
    fn a_config_under_a_retired_or_unknown_epoch_is_refused_by_name() {
        let rng = SeededRandom::new(b"config epochs");
        let mut keys = MasterKeys::generate(&rng).unwrap();
        let old = config(&keys).seal(&keys, &rng).unwrap();
        let before_rotation = keys.clone();
        keys.add_epoch(&rng).unwrap();
        let resealed = config(&keys).seal(&keys, &rng).unwrap();
        assert_eq!(Config::open(&old, &keys).unwrap(), config(&keys));
        assert_eq!(Config::open(&resealed, &keys).unwrap(), config(&keys));
        keys.retain_epochs(&[]);
        // The old config put back: a replay, refused with what to do.
        let e = Config::open(&old, &keys).unwrap_err().to_string();
        assert!(e.contains("key epoch 0") && e.contains("retired"), "{e}");
        assert!(e.contains("put back from an older copy"), "{e}");
        // The new config with a key file from before the rotation.
        let e = Config::open(&resealed, &before_rotation)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key epoch 1") && e.contains("key file is older"),
            "{e}"
        );
    }
}
