//! Repairs that read packs directly: rebuilding the index from the packs'
//! own trailers (`repair index`), and finding which blobs of a pack are
//! damaged (`repair snapshots`).
//!
//! Every pack names its blobs in its sealed trailer (docs/format.md §2.5),
//! so the index can always be rebuilt from the packs alone: the new index
//! files are written first, naming the old ones they supersede (§2.6), and
//! only then are the old ones deleted, so a crash in between leaves a
//! repository that reads.

use super::{Repository, lock};
use crate::backend::{Handle, ObjectKind};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::id::Id;
use crate::index::{BlobEntry, Compression, IndexFile, PackBlobs};
use crate::object::ObjectHeader;
use crate::pack::{group_member, open_group_plain, open_stored};
use std::collections::BTreeMap;

/// Most packs one rebuilt index file names (bounds each file's size).
const PACKS_PER_INDEX: usize = 4096;

/// What [`Repository::rebuild_index`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRebuild {
    /// Packs whose trailer was read and indexed.
    pub packs: usize,
    /// Blobs they hold.
    pub blobs: usize,
    /// Packs left out because their trailer could not be read, and why.
    pub damaged_packs: Vec<(Id, String)>,
    /// Index files written.
    pub index_files_written: usize,
    /// Old index files removed.
    pub index_files_removed: usize,
}

/// A blob of a pack that does not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackDamage {
    /// The blob.
    pub id: Id,
    /// What is wrong with it.
    pub reason: String,
}

impl Repository {
    /// Rebuilds the index from the packs' trailers: lists every pack on
    /// the target, reads its trailer (two ranged reads), writes new index
    /// files that supersede every index file there was, deletes those,
    /// and reloads the cache. A pack whose trailer does not read is left
    /// out and reported. Callers hold an exclusive lock: a backup running
    /// meanwhile would write index files this one does not supersede (no
    /// harm) but could also find its blobs' index deleted.
    pub fn rebuild_index(&self) -> Result<IndexRebuild> {
        self.flush()?;
        let old = self.index_file_ids()?;
        let mut report = IndexRebuild::default();
        let mut packs = Vec::new();
        for info in self.backend.list(ObjectKind::Pack)? {
            let Ok(pack) = info.handle.name.parse::<Id>() else {
                continue;
            };
            match self.read_pack_trailer(&pack) {
                Ok((_, blobs)) => {
                    report.packs += 1;
                    report.blobs += blobs.len();
                    packs.push(PackBlobs { pack, blobs });
                }
                Err(e) if e.is_damage() => report.damaged_packs.push((pack, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        packs.sort_by_key(|p| p.pack);
        let mut chunks: Vec<Vec<PackBlobs>> = Vec::new();
        let mut rest = packs.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(PACKS_PER_INDEX).collect());
        }
        if chunks.is_empty() && !old.is_empty() {
            // Nothing to index, but the old files must still be replaced.
            chunks.push(Vec::new());
        }
        for packs in chunks {
            let file = IndexFile {
                supersedes: old.clone(),
                packs,
            };
            let bytes = file.seal(&self.keys, self.rng.as_ref())?;
            let id = Id::of_object(&bytes);
            self.write_content_named(ObjectKind::Index, &id, &bytes)?;
            report.index_files_written += 1;
        }
        for id in &old {
            match self.backend.delete(&Handle::new(ObjectKind::Index, id)) {
                Ok(()) => report.index_files_removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        lock(&self.cache).clear()?;
        self.refresh_index()?;
        Ok(report)
    }

    /// Reads a whole pack and tries every blob of `entries` (as the index
    /// places them in it): decrypt, decompress, apply a patch to its bases,
    /// check the id. Returns the blobs that fail, with why: all of them
    /// when the pack itself is gone or its header does not read. Failures
    /// of the target or cache (not damage) are errors.
    pub fn damaged_blobs_in_pack(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
    ) -> Result<Vec<PackDamage>> {
        let handle = Handle::new(ObjectKind::Pack, pack);
        let name = handle.to_string();
        let all = |reason: String| {
            entries
                .iter()
                .map(|e| PackDamage {
                    id: e.id,
                    reason: reason.clone(),
                })
                .collect()
        };
        let bytes = match self.backend.read(&handle) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(all(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let cipher = match ObjectHeader::decode(&bytes, ObjectKind::Pack, &name)
            .and_then(|h| h.cipher(&self.keys, &name))
        {
            Ok(c) => c,
            Err(e) => return Ok(all(e.to_string())),
        };
        let mut damaged = Vec::new();
        // The members of a solid group are checked from one opening of it.
        let mut groups: BTreeMap<(u32, u32), Vec<&BlobEntry>> = BTreeMap::new();
        for entry in entries {
            if entry.compression == Compression::Grouped {
                groups
                    .entry((entry.offset, entry.stored_len))
                    .or_default()
                    .push(entry);
                continue;
            }
            let start = entry.offset as usize;
            let checked = bytes
                .get(start..start + entry.stored_len as usize)
                .ok_or_else(|| Error::corrupt(&name, "blob outside the pack"))
                .and_then(|sealed| open_stored(&cipher, &self.keys, entry, sealed.to_vec(), pack))
                .and_then(|opened| {
                    self.finish_opened(entry, opened, || format!("blob {} in {name}", entry.id))
                });
            record(&mut damaged, &[entry], checked.map(|_| ()))?;
        }
        for ((offset, stored_len), members) in groups {
            let what = || format!("blob group at offset {offset} in {name}");
            let group_plain = bytes
                .get(offset as usize..offset as usize + stored_len as usize)
                .ok_or_else(|| Error::corrupt(what(), "outside the pack"))
                .and_then(|sealed| open_group_plain(&cipher, &members, &mut sealed.to_vec(), pack));
            let parsed = group_plain.and_then(|plain| {
                Group::parse(&plain, &what())?;
                Ok(plain)
            });
            let plain = match parsed {
                Ok(plain) => plain,
                Err(e) => {
                    record(&mut damaged, &members, Err(e))?;
                    continue;
                }
            };
            let group = Group::parse(&plain, &what())?;
            for m in members {
                let checked = group_member(&group, m, m.raw_len as usize, &what).and_then(|b| {
                    if self.keys.blob_id(b) == m.id {
                        Ok(())
                    } else {
                        Err(Error::corrupt(
                            format!("blob {} in {name}", m.id),
                            "content does not match its id",
                        ))
                    }
                });
                record(&mut damaged, &[m], checked)?;
            }
        }
        Ok(damaged)
    }
}

/// Notes `blobs` as damaged when `checked` failed with damage; any other
/// failure (of the target or the cache) is returned.
fn record(damaged: &mut Vec<PackDamage>, blobs: &[&BlobEntry], checked: Result<()>) -> Result<()> {
    match checked {
        Ok(()) => Ok(()),
        Err(e) if e.is_damage() => {
            let reason = e.to_string();
            damaged.extend(blobs.iter().map(|b| PackDamage {
                id: b.id,
                reason: reason.clone(),
            }));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::backend::{Backend, MemoryBackend};
    use crate::index::BlobType;
    use crate::keyfile::Credential;
    use crate::random::SeededRandom;
    use crate::repository::{InitOptions, OpenOptions};
    use std::sync::Arc;

    fn repo(backend: Arc<MemoryBackend>, open: bool) -> Repository {
        let mut o = OpenOptions::new(None);
        o.rng = Arc::new(SeededRandom::new(b"rebuild"));
        let pw = Credential::Password(b"pw");
        if open {
            Repository::open_without_index(backend, &pw, o).unwrap()
        } else {
            Repository::init(backend, &pw, &InitOptions::for_tests(), o).unwrap()
        }
    }

    #[test]
    fn the_index_is_rebuilt_from_the_packs_alone() {
        let backend = Arc::new(MemoryBackend::new());
        let r = repo(backend.clone(), false);
        let blobs: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_le_bytes().repeat(300)).collect();
        let ids: Vec<Id> = blobs
            .iter()
            .map(|b| r.save_blob(BlobType::Data, b).unwrap().id)
            .collect();
        let meta = r.save_blob(BlobType::Meta, b"a tree").unwrap().id;
        r.flush().unwrap();
        drop(r);
        for id in backend.list(ObjectKind::Index).unwrap() {
            backend.delete(&id.handle).unwrap();
        }
        let r = repo(backend.clone(), true);
        assert!(!r.has_blob(&ids[0]));
        let report = r.rebuild_index().unwrap();
        assert_eq!(report.blobs, 51);
        assert!(report.damaged_packs.is_empty());
        assert_eq!(report.index_files_written, 1);
        for (id, b) in ids.iter().zip(&blobs) {
            assert_eq!(&r.load_blob(id).unwrap(), b);
        }
        assert_eq!(r.load_blob(&meta).unwrap(), b"a tree");
        // A second rebuild supersedes and removes the first one's file.
        let again = r.rebuild_index().unwrap();
        assert_eq!((again.index_files_removed, again.blobs), (1, 51));
        assert_eq!(r.index_file_ids().unwrap().len(), 1);
    }

    #[test]
    fn damaged_blobs_of_a_pack_are_named() {
        let backend = Arc::new(MemoryBackend::new());
        let r = repo(backend.clone(), false);
        let a = r.save_blob(BlobType::Data, &[1u8; 5000]).unwrap().id;
        let b = r.save_blob(BlobType::Data, &[2u8; 5000]).unwrap().id;
        r.flush().unwrap();
        let (pack, entry_b) = r.locate_blob(&b).unwrap().unwrap();
        let (_, entry_a) = r.locate_blob(&a).unwrap().unwrap();
        let handle = Handle::new(ObjectKind::Pack, &pack);
        let mut bytes = backend.read(&handle).unwrap();
        bytes[entry_b.offset as usize + 3] ^= 0xff;
        backend.delete(&handle).unwrap();
        backend.write_new(&handle, &bytes).unwrap();
        let damaged = r.damaged_blobs_in_pack(&pack, &[entry_a, entry_b]).unwrap();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].id, b);
        backend.delete(&handle).unwrap();
        assert_eq!(
            r.damaged_blobs_in_pack(&pack, &[entry_a, entry_b])
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn damage_to_a_group_names_every_member_and_only_them() {
        let backend = Arc::new(MemoryBackend::new());
        let r = repo(backend.clone(), false);
        let alone = r.save_blob(BlobType::Data, &[7u8; 5000]).unwrap().id;
        let texts: Vec<Vec<u8>> = (0..5u8)
            .map(|i| format!("member {i} of a group; ").repeat(300).into_bytes())
            .collect();
        let members: Vec<(Id, &[u8])> = texts.iter().map(|t| (r.blob_id(t), &t[..])).collect();
        r.save_group(BlobType::Data, &members, crate::group::TARGET_GROUP_LEN)
            .unwrap();
        r.flush().unwrap();
        let (pack, group_entry) = r.locate_blob(&members[0].0).unwrap().unwrap();
        assert_eq!(group_entry.compression, Compression::Grouped);
        let mut entries = vec![r.locate_blob(&alone).unwrap().unwrap().1];
        for (id, _) in &members {
            entries.push(r.locate_blob(id).unwrap().unwrap().1);
        }
        assert!(r.damaged_blobs_in_pack(&pack, &entries).unwrap().is_empty());
        let handle = Handle::new(ObjectKind::Pack, &pack);
        let mut bytes = backend.read(&handle).unwrap();
        bytes[group_entry.offset as usize + 5] ^= 0xff;
        backend.delete(&handle).unwrap();
        backend.write_new(&handle, &bytes).unwrap();
        let damaged: Vec<Id> = r
            .damaged_blobs_in_pack(&pack, &entries)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        let expected: Vec<Id> = members.iter().map(|m| m.0).collect();
        assert_eq!(damaged, expected);
    }
}
