//! Keys and authenticated encryption.
//!
//! One rule covers every ciphertext cairn stores: it is AES-256-GCM under a key
//! derived for its object alone (BLAKE3 `derive_key` over the data key of an
//! epoch and a random 32-byte salt from the object's header), and its nonce is
//! its own byte offset within that object (little-endian u64, then four zero
//! bytes). Offsets never repeat inside one object and keys never repeat across
//! objects (a fresh 256-bit salt each), so no key/nonce pair can repeat however
//! many blobs or agents there are, with no coordination between writers.
//! docs/format.md §2 specifies it byte by byte.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::random::{RandomSource, random_32};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// The BLAKE3 `derive_key` context of per-object keys.
const OBJECT_KEY_CONTEXT: &str = "cairn 2026-12-02 per-object AES-256-GCM key v1";

/// A 32-byte secret, wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// The nonce of a ciphertext that starts `offset` bytes into its object.
pub fn nonce_at(offset: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&offset.to_le_bytes());
    n
}

/// The secrets of one repository, created at `init` and stored only inside
/// key files (wrapped by a password or a raw key).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeys {
    /// The repository's id (public; names its cache).
    pub repo_id: Id,
    id_key: Secret32,
    gear_seed: Secret32,
    /// Data-encryption keys by epoch, ascending; new data uses the last.
    epochs: Vec<(u32, Secret32)>,
    /// Epochs kept only to read the config (ascending; never the current
    /// one): after `key rotate --rewrite`, an object of any other kind
    /// sealed under them is refused (docs/key-rotation.md).
    config_only: Vec<u32>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("repo_id", &self.repo_id)
            .field(
                "epochs",
                &self.epochs.iter().map(|e| e.0).collect::<Vec<_>>(),
            )
            .field("config_only", &self.config_only)
            .finish_non_exhaustive()
    }
}

/// Version byte of the encoded master key set.
const MASTER_KEYS_VERSION: u8 = 1;
/// The encoding with config-only epochs (written only when there are some,
/// so a set without them encodes exactly as version 1).
const MASTER_KEYS_VERSION_CONFIG_ONLY: u8 = 2;
/// The fixed string under [`MasterKeys::ids_fingerprint`].
const IDS_FINGERPRINT_CONTEXT: &[u8] = b"cairn 2026-12-02 id key and gear seed fingerprint v1";
/// Most epochs a key set may hold (a bound for parsers).
const MAX_EPOCHS: u32 = 1 << 16;

impl MasterKeys {
    /// Fresh secrets: repository id, id key, gear seed and the epoch-0 data key.
    pub fn generate(rng: &dyn RandomSource) -> Result<MasterKeys> {
        Ok(MasterKeys {
            repo_id: Id(random_32(rng)?),
            id_key: Secret32(random_32(rng)?),
            gear_seed: Secret32(random_32(rng)?),
            epochs: vec![(0, Secret32(random_32(rng)?))],
            config_only: Vec::new(),
        })
    }

    /// Fresh secrets that share `source`'s id key and gear seed: the same
    /// data gets the same chunk boundaries and blob ids in both
    /// repositories, so blobs can be copied between them by id and
    /// deduplicate across them, while the repository id and data key are
    /// new (docs/format.md §2.2, `init --copy-chunker-params-from`).
    pub fn generate_sharing_ids(source: &MasterKeys, rng: &dyn RandomSource) -> Result<MasterKeys> {
        Ok(MasterKeys {
            repo_id: Id(random_32(rng)?),
            id_key: source.id_key.clone(),
            gear_seed: source.gear_seed.clone(),
            epochs: vec![(0, Secret32(random_32(rng)?))],
            config_only: Vec::new(),
        })
    }

    /// A value that is equal for two key sets exactly when they share the
    /// id key and the gear seed: the keyed hash, under the id key, of a
    /// fixed string and the seed. It reveals neither secret, so it can be
    /// compared (and shown) freely.
    pub fn ids_fingerprint(&self) -> Id {
        let mut h = blake3::Hasher::new_keyed(&self.id_key.0);
        h.update(IDS_FINGERPRINT_CONTEXT);
        h.update(&self.gear_seed.0);
        Id(*h.finalize().as_bytes())
    }

    /// The epoch new objects are written under.
    pub fn current_epoch(&self) -> u32 {
        self.epochs.last().map_or(0, |e| e.0)
    }

    /// Every epoch this key set can read.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.epochs.iter().map(|e| e.0)
    }

    /// Adds a new data key (key rotation): new data is written under it, old
    /// data stays readable. Returns the new epoch.
    pub fn add_epoch(&mut self, rng: &dyn RandomSource) -> Result<u32> {
        let next = self
            .current_epoch()
            .checked_add(1)
            .filter(|_| (self.epochs.len() as u32) < MAX_EPOCHS)
            .ok_or_else(|| Error::InvalidInput("no more key epochs available".into()))?;
        self.epochs.push((next, Secret32(random_32(rng)?)));
        Ok(next)
    }

    /// Adds the epochs of `other` that this set lacks (another key file of
    /// the same repository, left behind by a rotation that stopped between
    /// writing the new key files and deleting the old ones). Refused when
    /// `other` is another repository's set or holds a different key under
    /// an epoch number this set has.
    pub fn merge(&mut self, other: &MasterKeys) -> Result<()> {
        if other.repo_id != self.repo_id
            || other.id_key != self.id_key
            || other.gear_seed != self.gear_seed
        {
            return Err(Error::InvalidInput(
                "two key files opened by the same credential hold different repositories' keys; remove the stray one with `cairn key remove`".into(),
            ));
        }
        for (epoch, key) in &other.epochs {
            match self.epochs.binary_search_by_key(epoch, |e| e.0) {
                Ok(i) if self.epochs[i].1 == *key => {}
                Ok(_) => {
                    return Err(Error::InvalidInput(format!(
                        "two key files opened by the same credential hold different keys for epoch {epoch}; keep the one `cairn check` reads the repository with and remove the other with `cairn key remove`"
                    )));
                }
                Err(i) => {
                    if self.epochs.len() as u32 >= MAX_EPOCHS {
                        return Err(Error::InvalidInput("too many key epochs".into()));
                    }
                    self.epochs.insert(i, (*epoch, key.clone()));
                }
            }
        }
        // A restriction is only ever added (at the end of a rewrite), so
        // the merged set keeps the stricter view.
        self.restrict_to_config(&other.config_only);
        Ok(())
    }

    /// Drops every epoch but the current one and those in `keep` (after
    /// every object under the dropped ones has been re-encrypted), and the
    /// config-only marks of the epochs dropped. Returns the epochs dropped.
    pub fn retain_epochs(&mut self, keep: &[u32]) -> Vec<u32> {
        let current = self.current_epoch();
        let mut dropped = Vec::new();
        self.epochs.retain(|(e, _)| {
            let stays = *e == current || keep.contains(e);
            if !stays {
                dropped.push(*e);
            }
            stays
        });
        self.config_only.retain(|e| !dropped.contains(e));
        dropped
    }

    /// Whether this set holds the key of `epoch`.
    pub fn holds_epoch(&self, epoch: u32) -> bool {
        self.data_key(epoch).is_some()
    }

    /// Marks `epochs` (those this set holds, except the current one) as
    /// opening the config only, from now on. Used only when the target
    /// cannot replace the config (docs/key-rotation.md); key sets made by
    /// earlier versions' rewrites carry such marks too.
    pub fn restrict_to_config(&mut self, epochs: &[u32]) {
        let current = self.current_epoch();
        for &e in epochs {
            if e != current && self.data_key(e).is_some() && !self.config_only.contains(&e) {
                self.config_only.push(e);
            }
        }
        self.config_only.sort_unstable();
    }

    /// Whether `epoch` opens the config only (see [`Self::restrict_to_config`]).
    pub fn opens_config_only(&self, epoch: u32) -> bool {
        self.config_only.binary_search(&epoch).is_ok()
    }

    fn data_key(&self, epoch: u32) -> Option<&Secret32> {
        self.epochs
            .binary_search_by_key(&epoch, |e| e.0)
            .ok()
            .map(|i| &self.epochs[i].1)
    }

    /// The chunker's 32-byte gear seed.
    pub fn gear_seed(&self) -> &[u8; 32] {
        &self.gear_seed.0
    }

    /// The id of a blob: BLAKE3 in keyed mode over its plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key.0, plaintext).as_bytes())
    }

    /// The cipher of one object, from its header's epoch and salt.
    pub fn object_cipher(&self, epoch: u32, salt: &[u8; 32], object: &str) -> Result<ObjectCipher> {
        let key = self.data_key(epoch).ok_or_else(|| {
            Error::corrupt(
                object,
                format!(
                    "written under key epoch {epoch}, which this key set does not hold (a `key rotate --rewrite` dropped that epoch while this object still used it, or the object belongs to another repository)"
                ),
            )
        })?;
        Ok(ObjectCipher::derive(key, salt))
    }

    /// The binary encoding held inside key files (docs/format.md §2.3).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(101 + 36 * self.epochs.len()));
        out.push(if self.config_only.is_empty() {
            MASTER_KEYS_VERSION
        } else {
            MASTER_KEYS_VERSION_CONFIG_ONLY
        });
        out.extend_from_slice(&self.repo_id.0);
        out.extend_from_slice(&self.id_key.0);
        out.extend_from_slice(&self.gear_seed.0);
        out.extend_from_slice(&(self.epochs.len() as u32).to_le_bytes());
        for (epoch, key) in &self.epochs {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&key.0);
        }
        if !self.config_only.is_empty() {
            out.extend_from_slice(&(self.config_only.len() as u32).to_le_bytes());
            for epoch in &self.config_only {
                out.extend_from_slice(&epoch.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`MasterKeys::encode`]'s output.
    pub fn decode(bytes: &[u8], object: &str) -> Result<MasterKeys> {
        let bad = |why: &str| Error::corrupt(object, format!("master key set: {why}"));
        let mut r = crate::wire::Reader::new(bytes);
        let version = r.u8().ok_or_else(|| bad("empty"))?;
        if version != MASTER_KEYS_VERSION && version != MASTER_KEYS_VERSION_CONFIG_ONLY {
            return Err(Error::UnsupportedVersion {
                object: object.to_string(),
                found: version.into(),
                supported: MASTER_KEYS_VERSION_CONFIG_ONLY.into(),
            });
        }
        let repo_id = r.id().ok_or_else(|| bad("truncated"))?;
        let id_key = Secret32(r.array().ok_or_else(|| bad("truncated"))?);
        let gear_seed = Secret32(r.array().ok_or_else(|| bad("truncated"))?);
        let n = r.u32().ok_or_else(|| bad("truncated"))?;
        if n == 0 || n > MAX_EPOCHS {
            return Err(bad("epoch count out of range"));
        }
        let mut epochs: Vec<(u32, Secret32)> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let epoch = r.u32().ok_or_else(|| bad("truncated"))?;
            let key = Secret32(r.array().ok_or_else(|| bad("truncated"))?);
            if epochs.last().is_some_and(|last| last.0 >= epoch) {
                return Err(bad("epochs not ascending"));
            }
            epochs.push((epoch, key));
        }
        let mut config_only: Vec<u32> = Vec::new();
        if version == MASTER_KEYS_VERSION_CONFIG_ONLY {
            let m = r.u32().ok_or_else(|| bad("truncated"))?;
            if m == 0 || m >= n {
                return Err(bad("config-only epoch count out of range"));
            }
            for _ in 0..m {
                let epoch = r.u32().ok_or_else(|| bad("truncated"))?;
                let held = epochs.binary_search_by_key(&epoch, |e| e.0).is_ok();
                let current = epochs.last().map(|e| e.0) == Some(epoch);
                if !held || current || config_only.last().is_some_and(|&last| last >= epoch) {
                    return Err(bad("config-only epochs not held, current or not ascending"));
                }
                config_only.push(epoch);
            }
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(MasterKeys {
            repo_id,
            id_key,
            gear_seed,
            epochs,
            config_only,
        })
    }
}

/// AES-256-GCM under one object's derived key.
///
/// The implementation is `ring`'s (assembly with run-time CPU dispatch):
/// measured on this project's machine in a portable build, 4.9-5.5 GB/s
/// against 0.9 GB/s for the `aes-gcm` crate, whose AES-NI and CLMUL paths
/// only reach speed when the whole binary is built for a CPU that has them —
/// which a guest agent cannot assume. The nonce rule (offsets within an
/// object under a per-object key) is what makes `assume_unique_for_key`
/// true.
pub struct ObjectCipher(LessSafeKey);

impl ObjectCipher {
    /// The key of the object with `salt`, under `data_key`:
    /// `BLAKE3.derive_key(OBJECT_KEY_CONTEXT, data_key || salt)`.
    pub fn derive(data_key: &Secret32, salt: &[u8; 32]) -> ObjectCipher {
        let mut material = Zeroizing::new([0u8; 64]);
        material[..32].copy_from_slice(&data_key.0);
        material[32..].copy_from_slice(salt);
        let key = Zeroizing::new(blake3::derive_key(OBJECT_KEY_CONTEXT, &material[..]));
        ObjectCipher::from_key(&key)
    }

    /// A cipher over a raw 32-byte key (used for key-file wrapping keys).
    pub fn from_key(key: &[u8; 32]) -> ObjectCipher {
        // A 32-byte key is exactly what AES-256-GCM takes, so this cannot fail.
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!("32-byte key"));
        ObjectCipher(LessSafeKey::new(unbound))
    }

    /// Encrypts `buf` in place and appends the tag; `offset` is where the
    /// ciphertext will start within its object.
    pub fn seal_in_place(&self, offset: u64, aad: &[u8], buf: &mut Vec<u8>) {
        let nonce = Nonce::assume_unique_for_key(nonce_at(offset));
        // Sealing fails only for inputs beyond AES-GCM's 64 GiB limit; packs
        // and metadata objects are capped far below it.
        if let Ok(tag) = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
        {
            buf.extend_from_slice(tag.as_ref());
        }
    }

    /// Encrypts `plaintext` into a new buffer (ciphertext || tag).
    pub fn seal(&self, offset: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(offset, aad, &mut buf);
        buf
    }

    /// Decrypts `ciphertext || tag` found at `offset`; `None` when it does not
    /// authenticate (wrong key, flipped bit, moved or truncated).
    pub fn open(&self, offset: u64, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        self.open_in_place(offset, aad, &mut buf).then_some(buf)
    }

    /// Decrypts in place (the tag is removed from `buf`); `false` when it
    /// does not authenticate.
    pub fn open_in_place(&self, offset: u64, aad: &[u8], buf: &mut Vec<u8>) -> bool {
        let opened = self.open_slice_in_place(offset, aad, buf);
        buf.truncate(opened.unwrap_or(0));
        opened.is_some()
    }

    /// Decrypts `ciphertext || tag` in place in a slice: the plaintext is
    /// then the first returned-length bytes; `None` when it does not
    /// authenticate.
    pub fn open_slice_in_place(&self, offset: u64, aad: &[u8], buf: &mut [u8]) -> Option<usize> {
        let split = buf.len().checked_sub(TAG_LEN)?;
        let tag = Tag::try_from(&buf[split..]).ok()?;
        let nonce = Nonce::assume_unique_for_key(nonce_at(offset));
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, &mut buf[..split], 0..)
            .ok()?;
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn config_only_epochs_round_trip_and_leave_version_1_sets_unchanged() {
        let rng = crate::random::SeededRandom::new(b"config only");
        let mut keys = MasterKeys::generate(&rng).unwrap();
        let v1 = keys.encode();
        assert_eq!(v1[0], 1);
        keys.add_epoch(&rng).unwrap();
        keys.add_epoch(&rng).unwrap();
        keys.retain_epochs(&[0]);
        keys.restrict_to_config(&[0, 2]);
        assert!(keys.opens_config_only(0));
        assert!(
            !keys.opens_config_only(2),
            "the current epoch is never restricted"
        );
        let v2 = keys.encode();
        assert_eq!(v2[0], 2);
        let back = MasterKeys::decode(&v2, "k").unwrap();
        assert!(back == keys);
        assert!(back.opens_config_only(0));
        // A restriction naming the current epoch, or an epoch not held, is
        // refused.
        let mut bad = v2.to_vec();
        let at = bad.len() - 4;
        bad[at..].copy_from_slice(&2u32.to_le_bytes());
        assert!(MasterKeys::decode(&bad, "k").is_err());
        bad[at..].copy_from_slice(&1u32.to_le_bytes());
        assert!(MasterKeys::decode(&bad, "k").is_err());
        // Merging keeps the restriction.
        let mut other = MasterKeys::decode(&v1, "k").unwrap();
        other.merge(&keys).unwrap();
        assert!(other.opens_config_only(0));
    }

    #[test]
    fn dropping_a_config_only_epoch_drops_its_mark_and_leaves_a_version_1_set() {
        let rng = SeededRandom::new(b"drop config only");
        let mut keys = MasterKeys::generate(&rng).unwrap();
        keys.add_epoch(&rng).unwrap();
        keys.retain_epochs(&[0]);
        keys.restrict_to_config(&[0]);
        assert!(keys.opens_config_only(0));
        // The config was re-sealed under epoch 1: epoch 0 goes, mark and all.
        assert_eq!(keys.retain_epochs(&[]), vec![0]);
        assert!(!keys.opens_config_only(0) && !keys.holds_epoch(0));
        assert!(keys.holds_epoch(1));
        let encoded = keys.encode();
        assert_eq!(encoded[0], 1);
        assert_eq!(MasterKeys::decode(&encoded, "k").unwrap(), keys);
    }

    #[test]
    fn master_keys_round_trip_and_rotation() {
        let rng = SeededRandom::new(b"keys");
        let mut keys = MasterKeys::generate(&rng).unwrap();
        assert_eq!(keys.add_epoch(&rng).unwrap(), 1);
        let back = MasterKeys::decode(&keys.encode(), "t").unwrap();
        assert_eq!(back, keys);
        assert_eq!(back.current_epoch(), 1);
        for cut in 0..keys.encode().len() {
            assert!(MasterKeys::decode(&keys.encode()[..cut], "t").is_err());
        }
    }

    #[test]
    fn merge_adds_missing_epochs_and_refuses_conflicts() {
        let rng = SeededRandom::new(b"merge");
        let old = MasterKeys::generate(&rng).unwrap();
        let mut new = old.clone();
        new.add_epoch(&rng).unwrap();
        // The old set gains epoch 1 from the new one; merging is symmetric.
        let mut merged = old.clone();
        merged.merge(&new).unwrap();
        assert_eq!(merged, new);
        let mut merged = new.clone();
        merged.merge(&old).unwrap();
        assert_eq!(merged, new);
        // Another epoch 1 under the same number: refused, nothing changed.
        let mut other = old.clone();
        other.add_epoch(&SeededRandom::new(b"other")).unwrap();
        let mut merged = new.clone();
        assert!(merged.merge(&other).is_err());
        assert_eq!(merged, new);
        // Another repository's set: refused.
        let foreign = MasterKeys::generate(&SeededRandom::new(b"foreign")).unwrap();
        assert!(merged.merge(&foreign).is_err());
    }

    #[test]
    fn retain_keeps_the_current_epoch_and_the_ones_asked_for() {
        let rng = SeededRandom::new(b"retain");
        let mut keys = MasterKeys::generate(&rng).unwrap();
        for _ in 0..3 {
            keys.add_epoch(&rng).unwrap();
        }
        let salt = [4; 32];
        let before = keys
            .object_cipher(3, &salt, "o")
            .unwrap()
            .seal(44, b"", b"x");
        assert_eq!(keys.retain_epochs(&[0]), vec![1, 2]);
        assert_eq!(keys.epochs().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(keys.current_epoch(), 3);
        // The current key is unchanged; dropped epochs no longer open.
        let cipher = keys.object_cipher(3, &salt, "o").unwrap();
        assert_eq!(cipher.open(44, b"", &before).unwrap(), b"x");
        let Err(err) = keys.object_cipher(1, &salt, "pack p") else {
            panic!("a dropped epoch still opens");
        };
        let message = err.to_string();
        assert!(
            message.contains("pack p") && message.contains("key epoch 1"),
            "{message}"
        );
        assert_eq!(keys.retain_epochs(&[]), vec![0]);
        assert_eq!(MasterKeys::decode(&keys.encode(), "t").unwrap(), keys);
    }

    #[test]
    fn seal_open_detects_tamper_offset_and_aad() {
        let c = ObjectCipher::derive(&Secret32([7; 32]), &[9; 32]);
        let sealed = c.seal(44, b"hdr", b"hello");
        assert_eq!(c.open(44, b"hdr", &sealed).unwrap(), b"hello");
        assert!(c.open(45, b"hdr", &sealed).is_none());
        assert!(c.open(44, b"hdx", &sealed).is_none());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(c.open(44, b"hdr", &bad).is_none());
        let mut buf = sealed;
        assert!(c.open_in_place(44, b"hdr", &mut buf));
        assert_eq!(buf, b"hello");
    }

    #[test]
    fn shared_ids_keep_blob_ids_and_seed_but_not_data_keys() {
        let a = MasterKeys::generate(&SeededRandom::new(b"a")).unwrap();
        let b = MasterKeys::generate_sharing_ids(&a, &SeededRandom::new(b"b")).unwrap();
        let other = MasterKeys::generate(&SeededRandom::new(b"c")).unwrap();
        assert_eq!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.gear_seed(), b.gear_seed());
        assert_eq!(a.ids_fingerprint(), b.ids_fingerprint());
        assert_ne!(a.ids_fingerprint(), other.ids_fingerprint());
        assert_ne!(a.repo_id, b.repo_id);
        assert_ne!(a.data_key(0), b.data_key(0));
        // The fingerprint is neither secret.
        assert_ne!(a.ids_fingerprint().0, a.id_key.0);
        assert_ne!(&a.ids_fingerprint().0, a.gear_seed());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKeys::generate(&SeededRandom::new(b"a")).unwrap();
        let b = MasterKeys::generate(&SeededRandom::new(b"b")).unwrap();
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
    }
}
