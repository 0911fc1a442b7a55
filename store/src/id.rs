//! 32-byte identifiers of blobs and stored objects.
//!
//! Blob ids are keyed BLAKE3 hashes of the plaintext (so the target learns
//! nothing from them); object ids (packs, index files, snapshots, key files,
//! locks) are plain BLAKE3 hashes of the stored bytes, so anyone holding the
//! target can check an object against its name without a key.

use std::fmt;
use std::str::FromStr;

/// A 32-byte identifier, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// The plain BLAKE3 hash of `bytes`: the name of a stored object.
    pub fn of_object(bytes: &[u8]) -> Id {
        Id(*blake3::hash(bytes).as_bytes())
    }

    /// The id as bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads an id from the first 32 bytes of `bytes`, if there are that many.
    pub fn from_slice(bytes: &[u8]) -> Option<Id> {
        bytes.get(..32)?.try_into().ok().map(Id)
    }

    /// The 64-digit hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `digits` hex digits (at most 64), for short displays.
    pub fn short(&self, digits: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(digits.min(64));
        s
    }

    /// The first 16 bytes as a big-endian integer: the fingerprint the
    /// in-memory dedup set keeps (sorting by it sorts by id).
    pub fn prefix_u128(&self) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(b)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short(16))
    }
}

/// An id string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ParseIdError(s.to_string()));
        }
        Ok(Id(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_strings() {
        let id = Id::of_object(b"abc");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert!("xyz".parse::<Id>().is_err());
        assert!("g".repeat(64).parse::<Id>().is_err());
        assert_eq!(id.short(8).len(), 8);
    }

    #[test]
    fn prefix_order_matches_byte_order() {
        let a = Id([1; 32]);
        let mut b = a;
        b.0[15] = 2;
        assert!(a < b && a.prefix_u128() < b.prefix_u128());
    }
}
