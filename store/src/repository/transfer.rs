//! Moving blobs between repositories in their stored form.
//!
//! `cairn copy` sends blobs from one repository to another whose key set
//! shares the id key (docs/format.md §2.2): a blob keeps its id, so it is
//! moved as it is stored (a zstd frame, raw bytes or a framed patch),
//! decrypted under the source's pack key and sealed under the
//! destination's. Nothing is compressed again and a patch stays a patch.
//! The destination still verifies every blob before storing it: it
//! decompresses it (applying a patch to its bases, which must already be
//! in the destination) and checks the keyed hash against the id, so a
//! damaged or forged blob in the source cannot enter it under a wrong name.

use super::{Dedup, Repository, SaveOutcome};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobEntry, BlobType, Compression};
use crate::pack::{decode_stored, decrypt_stored};

/// A blob in its stored form, decrypted: what [`Repository::load_stored_blob`]
/// returns and [`Repository::save_stored_blob`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// The blob's id (keyed hash of its plaintext).
    pub id: Id,
    /// Data or metadata.
    pub blob_type: BlobType,
    /// How `stored` encodes the plaintext.
    pub compression: Compression,
    /// Length of the plaintext.
    pub raw_len: u32,
    /// The stored form: a zstd frame, the plaintext, or a framed patch.
    pub stored: Vec<u8>,
}

impl StoredBlob {
    /// An entry describing the blob (its place in a pack left at zero), for
    /// the decoders.
    fn entry(&self) -> BlobEntry {
        BlobEntry {
            id: self.id,
            blob_type: self.blob_type,
            compression: self.compression,
            offset: 0,
            stored_len: 0,
            raw_len: self.raw_len,
        }
    }
}

impl Repository {
    /// Loads a blob as stored, decrypted and authenticated but not
    /// decompressed (a patch is not applied).
    pub fn load_stored_blob(&self, id: &Id) -> Result<StoredBlob> {
        let (pack, entry) = self.locate_blob(id)?.ok_or(Error::BlobNotFound(*id))?;
        let (cipher, sealed) = self.read_sealed(&pack, &entry)?;
        let stored = decrypt_stored(&cipher, &entry, sealed, &pack)?;
        if entry.compression == Compression::Grouped {
            // A member of a solid group travels alone, as its plaintext
            // (verified here); the destination compresses it again.
            let what = format!("blob {id} in pack {pack}");
            let plain = match decode_stored(&self.keys, &entry, stored, &what)? {
                crate::pack::OpenedBlob::Whole(plain) => plain,
                crate::pack::OpenedBlob::Patch(_) => {
                    return Err(Error::corrupt(&what, "a group member decoded as a patch"));
                }
            };
            return Ok(StoredBlob {
                id: entry.id,
                blob_type: entry.blob_type,
                compression: Compression::None,
                raw_len: entry.raw_len,
                stored: plain,
            });
        }
        Ok(StoredBlob {
            id: entry.id,
            blob_type: entry.blob_type,
            compression: entry.compression,
            raw_len: entry.raw_len,
            stored,
        })
    }

    /// Stores a blob given in its stored form (from another repository
    /// whose key set shares this one's id key), unless this repository has
    /// it. It is verified first: decompressed, a patch applied to its bases
    /// (which this repository must hold whole already), and the result's
    /// keyed hash compared with the id. A patch whose bases are missing is
    /// refused with [`Error::BlobNotFound`] naming the base.
    pub fn save_stored_blob(&self, blob: &StoredBlob) -> Result<SaveOutcome> {
        if self.has_blob(&blob.id) {
            return Ok(SaveOutcome {
                id: blob.id,
                new: false,
                stored_len: 0,
            });
        }
        let what = format!("blob {} being copied in", blob.id);
        let entry = blob.entry();
        if blob.compression == Compression::Patch && blob.blob_type != BlobType::Data {
            return Err(Error::corrupt(&what, "a metadata blob stored as a patch"));
        }
        if blob.compression == Compression::Grouped {
            return Err(Error::corrupt(
                &what,
                "a blob group cannot be copied as one blob",
            ));
        }
        let opened = decode_stored(&self.keys, &entry, blob.stored.clone(), &what)?;
        self.finish_opened(&entry, opened, || what)?;
        if blob.compression == Compression::None {
            // Plaintext (a group member travels so): compressed here when
            // that pays.
            return self.store_whole(
                blob.blob_type,
                blob.id,
                blob.raw_len,
                &blob.stored,
                Dedup::Repository,
            );
        }
        self.append_pending(
            blob.blob_type,
            blob.id,
            blob.raw_len,
            blob.compression,
            &blob.stored,
            Dedup::Repository,
        )
    }
}

impl Repository {
    /// [`Self::save_stored_blob`] for several blobs of one stream (a copy's
    /// batch in walk order): the data blobs given as plaintext (members of
    /// a source's solid groups travel so) are verified and saved together
    /// with [`Self::save_group`], so the destination groups them again;
    /// the others are saved one by one. One outcome per blob, in order.
    pub fn save_stored_blobs(&self, blobs: &[StoredBlob]) -> Result<Vec<SaveOutcome>> {
        let mut outcomes: Vec<Option<SaveOutcome>> = vec![None; blobs.len()];
        let mut plain: Vec<(usize, (Id, &[u8]))> = Vec::new();
        for (k, blob) in blobs.iter().enumerate() {
            if blob.compression == Compression::None && blob.blob_type == BlobType::Data {
                if self.keys.blob_id(&blob.stored) != blob.id {
                    return Err(Error::corrupt(
                        format!("blob {} being copied in", blob.id),
                        "content does not match its id",
                    ));
                }
                plain.push((k, (blob.id, blob.stored.as_slice())));
            } else {
                outcomes[k] = Some(self.save_stored_blob(blob)?);
            }
        }
        let members: Vec<(Id, &[u8])> = plain.iter().map(|&(_, m)| m).collect();
        let saved = self.store_group(
            BlobType::Data,
            &members,
            crate::group::TARGET_GROUP_LEN,
            Dedup::Repository,
        )?;
        for ((k, _), outcome) in plain.iter().zip(saved) {
            outcomes[*k] = Some(outcome);
        }
        Ok(outcomes.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::crypto::MasterKeys;
    use crate::group::TARGET_GROUP_LEN;
    use crate::keyfile::Credential;
    use crate::patch::PatchOp;
    use crate::random::SeededRandom;
    use crate::repository::{InitOptions, OpenOptions, PatchBase};
    use std::sync::Arc;

    fn opts(seed: &[u8]) -> OpenOptions {
        let mut o = OpenOptions::new(None);
        o.rng = Arc::new(SeededRandom::new(seed));
        o
    }

    fn pair() -> (Repository, Repository) {
        let pw = Credential::Password(b"pw");
        let a = Repository::init(
            Arc::new(MemoryBackend::new()),
            &pw,
            &InitOptions::for_tests(),
            opts(b"a"),
        )
        .unwrap();
        let mut init = InitOptions::for_tests();
        init.share_ids_with = Some(a.keys().clone());
        let b = Repository::init(Arc::new(MemoryBackend::new()), &pw, &init, opts(b"b")).unwrap();
        (a, b)
    }

    #[test]
    fn whole_and_patched_blobs_copy_in_their_stored_form() {
        let (a, b) = pair();
        assert_eq!(a.keys().ids_fingerprint(), b.keys().ids_fingerprint());
        let base: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut changed = base.clone();
        changed[100..200].fill(9);
        let base_id = a.save_blob(BlobType::Data, &base).unwrap().id;
        a.flush().unwrap();
        let ops = [
            PatchOp::Copy {
                base: 0,
                base_offset: 0,
                len: 100,
            },
            PatchOp::Literal { len: 100 },
            PatchOp::Copy {
                base: 0,
                base_offset: 200,
                len: 19_800,
            },
        ];
        let bases = [PatchBase {
            id: base_id,
            data: base.clone(),
            shift: 0,
        }];
        let patched = a
            .save_blob_patched(a.blob_id(&changed), &changed, &bases, &ops)
            .unwrap()
            .id;
        a.flush().unwrap();
        let stored = a.load_stored_blob(&patched).unwrap();
        assert_eq!(stored.compression, Compression::Patch);
        // The patch's base must be copied first.
        assert!(matches!(
            b.save_stored_blob(&stored),
            Err(Error::BlobNotFound(id)) if id == base_id
        ));
        assert!(
            b.save_stored_blob(&a.load_stored_blob(&base_id).unwrap())
                .unwrap()
                .new
        );
        assert!(b.save_stored_blob(&stored).unwrap().new);
        assert!(!b.save_stored_blob(&stored).unwrap().new);
        b.flush().unwrap();
        assert_eq!(b.load_blob(&patched).unwrap(), changed);
        assert_eq!(
            b.locate_blob(&patched).unwrap().unwrap().1.compression,
            Compression::Patch
        );
    }

    #[test]
    fn group_members_travel_as_plaintext_and_are_grouped_again() {
        let (a, b) = pair();
        let blobs: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                format!("record {i} of a table of records; ")
                    .repeat(400)
                    .into_bytes()
            })
            .collect();
        let members: Vec<(Id, &[u8])> = blobs.iter().map(|d| (a.blob_id(d), &d[..])).collect();
        a.save_group(BlobType::Data, &members, TARGET_GROUP_LEN)
            .unwrap();
        a.flush().unwrap();
        let stored: Vec<StoredBlob> = members
            .iter()
            .map(|(id, _)| a.load_stored_blob(id).unwrap())
            .collect();
        assert!(stored.iter().all(|s| s.compression == Compression::None));
        // A forged plaintext is refused before anything is stored.
        let mut forged = stored.clone();
        forged[3].stored[0] ^= 1;
        assert!(matches!(
            b.save_stored_blobs(&forged),
            Err(Error::Corrupt { .. })
        ));
        let saved = b.save_stored_blobs(&stored).unwrap();
        assert!(saved.iter().all(|s| s.new));
        assert!(b.save_stored_blobs(&stored).unwrap().iter().all(|s| !s.new));
        b.flush().unwrap();
        for (id, data) in &members {
            assert_eq!(&b.load_blob(id).unwrap(), data);
            assert_eq!(
                b.locate_blob(id).unwrap().unwrap().1.compression,
                Compression::Grouped
            );
        }
    }

    #[test]
    fn a_blob_that_does_not_match_its_id_is_refused() {
        let (a, b) = pair();
        let id = a.save_blob(BlobType::Meta, b"some metadata").unwrap().id;
        a.flush().unwrap();
        let mut stored = a.load_stored_blob(&id).unwrap();
        stored.id = a.blob_id(b"other");
        assert!(matches!(
            b.save_stored_blob(&stored),
            Err(Error::Corrupt { .. })
        ));
        // A repository with other keys computes other ids: refused too.
        let other = Repository::init(
            Arc::new(MemoryBackend::new()),
            &Credential::Password(b"pw"),
            &InitOptions::for_tests(),
            opts(b"c"),
        )
        .unwrap();
        assert_ne!(
            other.keys().ids_fingerprint(),
            MasterKeys::clone(a.keys()).ids_fingerprint()
        );
        let good = a.load_stored_blob(&id).unwrap();
        assert!(matches!(
            other.save_stored_blob(&good),
            Err(Error::Corrupt { .. })
        ));
    }
}
