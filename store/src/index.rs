//! Index files: which pack holds each blob, where, and how long it is.
//!
//! Written at the end of each session and at checkpoints during long ones,
//! after the packs they name (so an index never names a pack that is not
//! stored) and before any snapshot that needs them. The payload layout is in
//! docs/format.md §2.6; it is sealed as a metadata object.

use crate::backend::ObjectKind;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::object::{open_metadata, seal_metadata};
use crate::random::RandomSource;
use crate::wire::Reader;

/// What a blob holds. Data and metadata blobs go to separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// File contents and disk chunks.
    Data,
    /// Trees, disk maps and other metadata the agent stores as blobs.
    Meta,
}

impl BlobType {
    /// The byte stored in packs and index files.
    pub fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Meta => 1,
        }
    }

    /// Parses a stored type byte.
    pub fn from_byte(b: u8) -> Option<BlobType> {
        match b {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Meta),
            _ => None,
        }
    }
}

/// How a blob's plaintext was stored before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is (compression did not help).
    None,
    /// One zstd frame.
    Zstd,
    /// One zstd frame holding a patch against another blob (see
    /// [`crate::patch`]); the entry's `raw_len` is the patched blob's length.
    Patch,
    /// A member of a solid group (see [`crate::group`]): the entry's offset
    /// and stored length are the group's, shared by all its members; its
    /// `raw_len` is the member's own length.
    Grouped,
}

impl Compression {
    /// The byte stored in packs and index files.
    pub fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Patch => 2,
            Compression::Grouped => 3,
        }
    }

    /// Parses a stored compression byte.
    pub fn from_byte(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            2 => Some(Compression::Patch),
            3 => Some(Compression::Grouped),
            _ => None,
        }
    }
}

/// One blob in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobEntry {
    /// The blob's id (keyed hash of its plaintext).
    pub id: Id,
    /// Data or metadata.
    pub blob_type: BlobType,
    /// How the plaintext was stored.
    pub compression: Compression,
    /// Byte offset of its ciphertext within the pack (also its nonce).
    pub offset: u32,
    /// Length of the ciphertext including the 16-byte tag.
    pub stored_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
}

/// Stored bytes of `entries` of one pack, each ciphertext counted once
/// (the members of a solid group share theirs).
pub fn distinct_stored_bytes<'a>(entries: impl IntoIterator<Item = &'a BlobEntry>) -> u64 {
    let mut groups = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| e.compression != Compression::Grouped || groups.insert(e.offset))
        .map(|e| u64::from(e.stored_len))
        .sum()
}

/// Size of one encoded [`BlobEntry`].
pub const ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4 + 4;

impl BlobEntry {
    /// Appends the 46-byte encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.blob_type.to_byte());
        out.push(self.compression.to_byte());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    /// Reads one entry; `None` when truncated or a byte is out of range.
    pub fn decode(r: &mut Reader<'_>) -> Option<BlobEntry> {
        let blob_type = BlobType::from_byte(r.u8()?)?;
        let compression = Compression::from_byte(r.u8()?)?;
        let id = r.id()?;
        let offset = r.u32()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        // A ciphertext is at least a tag; an entry must not wrap a u32 pack.
        if (stored_len as usize) < crate::crypto::TAG_LEN
            || offset.checked_add(stored_len).is_none()
        {
            return None;
        }
        Some(BlobEntry {
            id,
            blob_type,
            compression,
            offset,
            stored_len,
            raw_len,
        })
    }
}

/// The blobs of one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackBlobs {
    /// The pack's object id.
    pub pack: Id,
    /// Its blobs, in pack order.
    pub blobs: Vec<BlobEntry>,
}

/// The contents of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Index files this one replaces (written by prune and `repair index`;
    /// readers ignore a superseded index once this one exists).
    pub supersedes: Vec<Id>,
    /// The packs it describes.
    pub packs: Vec<PackBlobs>,
}

/// Version byte at the start of an index payload.
const INDEX_PAYLOAD_VERSION: u8 = 1;

impl IndexFile {
    /// Number of blobs described.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    /// The plaintext payload (before compression and encryption).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            9 + 32 * self.supersedes.len() + 36 * self.packs.len() + ENTRY_LEN * self.blob_count(),
        );
        out.push(INDEX_PAYLOAD_VERSION);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for pack in &self.packs {
            out.extend_from_slice(&pack.pack.0);
            out.extend_from_slice(&(pack.blobs.len() as u32).to_le_bytes());
            for blob in &pack.blobs {
                blob.encode_into(&mut out);
            }
        }
        out
    }

    /// Parses a payload; `object` names the index file in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<IndexFile> {
        let bad = |why: &str| Error::corrupt(object, why.to_string());
        let mut r = Reader::new(bytes);
        match r.u8() {
            Some(INDEX_PAYLOAD_VERSION) => {}
            Some(v) => {
                return Err(Error::UnsupportedVersion {
                    object: object.to_string(),
                    found: v.into(),
                    supported: INDEX_PAYLOAD_VERSION.into(),
                });
            }
            None => return Err(bad("empty payload")),
        }
        let n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        // Counts are checked against the bytes left before allocating.
        if n > r.remaining() / 32 {
            return Err(bad("supersedes count exceeds the payload"));
        }
        let supersedes = (0..n)
            .map(|_| r.id())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("truncated"))?;
        let packs_n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        if packs_n > r.remaining() / 36 {
            return Err(bad("pack count exceeds the payload"));
        }
        let mut packs = Vec::with_capacity(packs_n);
        for _ in 0..packs_n {
            let pack = r.id().ok_or_else(|| bad("truncated"))?;
            let blobs_n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
            if blobs_n > r.remaining() / ENTRY_LEN {
                return Err(bad("blob count exceeds the payload"));
            }
            let blobs = (0..blobs_n)
                .map(|_| BlobEntry::decode(&mut r))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("invalid blob entry"))?;
            packs.push(PackBlobs { pack, blobs });
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes after the last pack"));
        }
        Ok(IndexFile { supersedes, packs })
    }

    /// Seals the index as a stored object.
    pub fn seal(&self, keys: &MasterKeys, rng: &dyn RandomSource) -> Result<Vec<u8>> {
        seal_metadata(ObjectKind::Index, &self.encode(), keys, rng)
    }

    /// Opens a stored index object.
    pub fn open(bytes: &[u8], keys: &MasterKeys, object: &str) -> Result<IndexFile> {
        IndexFile::decode(
            &open_metadata(ObjectKind::Index, bytes, keys, object)?,
            object,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> IndexFile {
        let entry = |i: u8| BlobEntry {
            id: Id([i; 32]),
            blob_type: if i.is_multiple_of(2) {
                BlobType::Data
            } else {
                BlobType::Meta
            },
            compression: if i.is_multiple_of(3) {
                Compression::None
            } else {
                Compression::Zstd
            },
            offset: 44 + u32::from(i) * 100,
            stored_len: 100,
            raw_len: 200 + u32::from(i),
        };
        IndexFile {
            supersedes: vec![Id([9; 32])],
            packs: vec![
                PackBlobs {
                    pack: Id([1; 32]),
                    blobs: (0..5).map(entry).collect(),
                },
                PackBlobs {
                    pack: Id([2; 32]),
                    blobs: vec![],
                },
            ],
        }
    }

    #[test]
    fn payload_round_trip_and_truncations_fail_cleanly() {
        let idx = sample();
        let bytes = idx.encode();
        assert_eq!(IndexFile::decode(&bytes, "i").unwrap(), idx);
        for cut in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..cut], "i").is_err());
        }
    }
}
