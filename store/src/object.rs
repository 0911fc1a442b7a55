//! The envelope every encrypted object shares: a 44-byte plaintext header
//! (magic, kind, format version, key epoch, salt), authenticated as
//! associated data, then ciphertexts at offsets after it.
//!
//! Metadata objects (config, index files, snapshots, locks) hold exactly one
//! ciphertext, of a zstd frame, right after the header. Packs hold many
//! (see [`crate::pack`]).

use crate::backend::ObjectKind;
use crate::crypto::{MasterKeys, ObjectCipher};
use crate::error::{Error, Result};
use crate::random::{RandomSource, random_32};
use crate::wire::Reader;

/// The first six bytes of every cairn object.
pub const MAGIC: [u8; 6] = *b"cairn\0";
/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of [`ObjectHeader`]'s encoding.
pub const HEADER_LEN: usize = 44;
/// zstd level of metadata objects (small, written rarely, read often).
const METADATA_ZSTD_LEVEL: i32 = 6;
/// Largest plaintext a metadata object may decompress to (a parser bound).
pub const MAX_METADATA_LEN: usize = 1 << 30;

/// The kind byte at offset 6 of an object.
pub fn kind_byte(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Config => 1,
        ObjectKind::Pack => 2,
        ObjectKind::Index => 3,
        ObjectKind::Snapshot => 4,
        ObjectKind::Lock => 5,
        ObjectKind::Key => 6,
        ObjectKind::Plan => 7,
    }
}

/// The plaintext header of an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHeader {
    /// What the object is.
    pub kind: ObjectKind,
    /// The data-key epoch its key derives from.
    pub epoch: u32,
    /// The random salt of its key.
    pub salt: [u8; 32],
}

impl ObjectHeader {
    /// A header with a fresh salt under the key set's current epoch.
    pub fn fresh(kind: ObjectKind, keys: &MasterKeys, rng: &dyn RandomSource) -> Result<Self> {
        Ok(ObjectHeader {
            kind,
            epoch: keys.current_epoch(),
            salt: random_32(rng)?,
        })
    }

    /// The 44-byte encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..6].copy_from_slice(&MAGIC);
        out[6] = kind_byte(self.kind);
        out[7] = FORMAT_VERSION;
        out[8..12].copy_from_slice(&self.epoch.to_le_bytes());
        out[12..].copy_from_slice(&self.salt);
        out
    }

    /// Parses and checks a header that must be of `kind`; `object` names the
    /// object in errors.
    pub fn decode(bytes: &[u8], kind: ObjectKind, object: &str) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let (Some(magic), Some(k), Some(version), Some(epoch), Some(salt)) =
            (r.array::<6>(), r.u8(), r.u8(), r.u32(), r.array::<32>())
        else {
            return Err(Error::corrupt(object, "shorter than an object header"));
        };
        if magic != MAGIC {
            return Err(Error::corrupt(object, "not a cairn object (bad magic)"));
        }
        if version > FORMAT_VERSION || version == 0 {
            return Err(Error::UnsupportedVersion {
                object: object.to_string(),
                found: version.into(),
                supported: FORMAT_VERSION.into(),
            });
        }
        if k != kind_byte(kind) {
            return Err(Error::corrupt(
                object,
                format!("holds an object of kind {k}, expected a {}", kind.label()),
            ));
        }
        Ok(ObjectHeader { kind, epoch, salt })
    }

    /// The cipher of this object. An object other than the config sealed
    /// under an epoch kept for the config only is refused: after `key
    /// rotate --rewrite` nothing else is written under it, so such an
    /// object was forged by someone holding the retired keys.
    pub fn cipher(&self, keys: &MasterKeys, object: &str) -> Result<ObjectCipher> {
        if self.kind != ObjectKind::Config && keys.opens_config_only(self.epoch) {
            return Err(Error::corrupt(
                object,
                format!(
                    "sealed under key epoch {}, which since `key rotate --rewrite` opens only the config: this object was not written by cairn after the rewrite (forged with the retired keys, or put back from an old copy); remove it",
                    self.epoch
                ),
            ));
        }
        keys.object_cipher(self.epoch, &self.salt, object)
    }
}

/// Seals a metadata payload: header || AES-GCM(zstd(payload)).
pub fn seal_metadata(
    kind: ObjectKind,
    payload: &[u8],
    keys: &MasterKeys,
    rng: &dyn RandomSource,
) -> Result<Vec<u8>> {
    let header = ObjectHeader::fresh(kind, keys, rng)?.encode();
    let compressed = zstd::bulk::compress(payload, METADATA_ZSTD_LEVEL)
        .map_err(|e| Error::InvalidInput(format!("compressing {}: {e}", kind.label())))?;
    let cipher = ObjectHeader::decode(&header, kind, kind.label())?.cipher(keys, kind.label())?;
    let mut out = Vec::with_capacity(HEADER_LEN + compressed.len() + crate::crypto::TAG_LEN);
    out.extend_from_slice(&header);
    let mut body = compressed;
    cipher.seal_in_place(HEADER_LEN as u64, &header, &mut body);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a metadata object sealed by [`seal_metadata`]: checks the header,
/// authenticates, decompresses (bounded by [`MAX_METADATA_LEN`]).
pub fn open_metadata(
    kind: ObjectKind,
    bytes: &[u8],
    keys: &MasterKeys,
    object: &str,
) -> Result<Vec<u8>> {
    let header = ObjectHeader::decode(bytes, kind, object)?;
    let cipher = header.cipher(keys, object)?;
    let (head, body) = bytes.split_at(HEADER_LEN);
    let plain = cipher
        .open(HEADER_LEN as u64, head, body)
        .ok_or_else(|| Error::corrupt(object, "authentication failed (damaged or forged)"))?;
    decompress_bounded(&plain, MAX_METADATA_LEN)
        .map_err(|why| Error::corrupt(object, format!("decompression failed: {why}")))
}

/// Decompresses one zstd frame to at most `limit` bytes.
pub fn decompress_bounded(frame: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| e.to_string())?;
    let mut limited = std::io::Read::take(&mut decoder, limit as u64 + 1);
    std::io::Read::read_to_end(&mut limited, &mut out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("larger than the {limit}-byte limit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn metadata_round_trip_and_every_bit_flip_is_detected() {
        let rng = SeededRandom::new(b"obj");
        let keys = MasterKeys::generate(&rng).unwrap();
        let sealed = seal_metadata(ObjectKind::Snapshot, b"{\"a\":1}", &keys, &rng).unwrap();
        assert_eq!(
            open_metadata(ObjectKind::Snapshot, &sealed, &keys, "s").unwrap(),
            b"{\"a\":1}"
        );
        assert!(open_metadata(ObjectKind::Index, &sealed, &keys, "s").is_err());
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open_metadata(ObjectKind::Snapshot, &bad, &keys, "s").is_err());
        }
    }

    #[test]
    fn future_version_is_named() {
        let mut h = ObjectHeader {
            kind: ObjectKind::Index,
            epoch: 0,
            salt: [0; 32],
        }
        .encode();
        h[7] = 9;
        assert!(matches!(
            ObjectHeader::decode(&h, ObjectKind::Index, "i"),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
    }
}
