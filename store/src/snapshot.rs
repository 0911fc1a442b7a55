//! Snapshot manifests: one per backup, written last, after every blob they
//! reach is in a stored index file.
//!
//! The manifest is a sealed JSON document (docs/format.md §2.7). Its `root`
//! is a metadata blob whose format belongs to the agent (a file tree or a
//! disk map); the store only guarantees it is there.

use crate::backend::ObjectKind;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::object::{open_metadata, seal_metadata};
use crate::random::RandomSource;
use serde::{Deserialize, Serialize};

/// What a snapshot's root describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// A file tree.
    Files,
    /// Block-level disks.
    Disk,
}

/// Counters of the backup that wrote a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotStats {
    /// Logical size of the snapshot: bytes of all files, or of the disks.
    pub bytes_total: u64,
    /// Bytes read from the sources (unchanged files are not read).
    pub bytes_read: u64,
    /// Bytes of chunks the repository did not have before.
    pub bytes_new: u64,
    /// Bytes those new chunks took once compressed and encrypted.
    pub bytes_stored: u64,
    /// Chunks seen.
    pub chunks: u64,
    /// Chunks that were new.
    pub chunks_new: u64,
    /// Files backed up (file snapshots).
    pub files: u64,
    /// Files that could not be read (warnings).
    pub errors: u64,
    /// Wall time of the backup in milliseconds.
    pub duration_ms: u64,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started: seconds since the Unix epoch (UTC).
    pub time: i64,
    /// Nanoseconds within `time`.
    #[serde(default)]
    pub time_nanos: u32,
    /// Host that took it.
    pub hostname: String,
    /// User that took it.
    #[serde(default)]
    pub username: String,
    /// Files or disk.
    pub kind: SnapshotKind,
    /// The sources as given (paths, devices, images).
    pub paths: Vec<String>,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The snapshot this one was based on, if any.
    #[serde(default)]
    pub parent: Option<Id>,
    /// The root metadata blob.
    pub root: Id,
    /// The cairn version that wrote it.
    pub program_version: String,
    /// Counters.
    #[serde(default)]
    pub stats: SnapshotStats,
    /// Set on a copy made by `cairn copy`: the id of the snapshot it was
    /// copied from, in the source repository (a rerun skips snapshots whose
    /// copy exists). Absent on snapshots written by a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
}

/// Largest snapshot manifest accepted when reading (a parser bound).
const MAX_SNAPSHOT_JSON: usize = 16 << 20;

impl Snapshot {
    /// Seals the manifest as a stored object.
    pub fn seal(&self, keys: &MasterKeys, rng: &dyn RandomSource) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::InvalidInput(e.to_string()))?;
        seal_metadata(ObjectKind::Snapshot, &json, keys, rng)
    }

    /// Opens a stored manifest; `object` names it in errors.
    pub fn open(bytes: &[u8], keys: &MasterKeys, object: &str) -> Result<Snapshot> {
        let json = open_metadata(ObjectKind::Snapshot, bytes, keys, object)?;
        Snapshot::parse(&json, object)
    }

    /// Parses the JSON payload.
    pub fn parse(json: &[u8], object: &str) -> Result<Snapshot> {
        if json.len() > MAX_SNAPSHOT_JSON {
            return Err(Error::corrupt(object, "manifest too large"));
        }
        serde_json::from_slice(json)
            .map_err(|e| Error::corrupt(object, format!("invalid manifest: {e}")))
    }
}
