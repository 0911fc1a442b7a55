//! Storing a changed disk chunk as the 4 KiB blocks that changed.
//!
//! A chunk of a disk that the repository lacks is usually the chunk the
//! previous backup had at the same offsets with a block or two rewritten. A
//! disk backup therefore walks the previous snapshot's extent list alongside
//! the disk ([`ParentCursor`]) and, for each new chunk, offers the store a
//! patch against the parent's chunk at those offsets ([`save_new_chunk`]):
//! the disk-aligned 4 KiB blocks that differ are stored, the rest is copied
//! from the base at restore time. With 16 KiB chunks this stores about one
//! block per scattered block write instead of a whole chunk or two (see
//! BENCHMARKS.md). Where the parent's chunk is itself a patch, the new patch
//! is made against that patch's base (the store allows no chains).
//!
//! The cost is a read of the base chunk from the repository per new chunk.
//! When the disk changed wholesale (a reformat, an encrypted volume rekeyed)
//! patches stop paying, so they are given up once most attempts fail.

use std::sync::atomic::{AtomicU64, Ordering};

use cairn_store::patch::{MAX_BASES, PlacedBase, diff_aligned};
use cairn_store::{Id, PatchBase, Repository, repository::SaveOutcome};

use crate::chunklist::{ListError, ListReader, ListRoot};

/// The block size of disk writes that patches track.
pub const PATCH_BLOCK: u64 = 4096;

/// One stored extent of the parent snapshot's disk: where it was and which
/// blob held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentExtent {
    /// Disk offset of its first byte.
    pub pos: u64,
    /// Its length.
    pub len: u64,
    /// The blob.
    pub id: Id,
}

/// Walks the parent's extent list forward, handing out the extents that
/// overlap each successive range of the disk.
pub struct ParentCursor<'r> {
    reader: ListReader<'r>,
    /// Disk offset of the next extent the reader returns.
    next_pos: u64,
    /// Extents read but possibly still overlapping later ranges.
    pending: std::collections::VecDeque<ParentExtent>,
    done: bool,
}

impl<'r> ParentCursor<'r> {
    /// A cursor at the start of the parent's list.
    pub fn new(repo: &'r Repository, root: &ListRoot) -> Result<Self, ListError> {
        Ok(ParentCursor {
            reader: ListReader::new(repo, root)?,
            next_pos: 0,
            pending: Default::default(),
            done: false,
        })
    }

    /// The stored extents overlapping `[start, end)`. Ranges must not move
    /// backwards (`start` never below an earlier call's `start`).
    pub fn overlapping(&mut self, start: u64, end: u64) -> Result<Vec<ParentExtent>, ListError> {
        while self.pending.front().is_some_and(|e| e.pos + e.len <= start) {
            self.pending.pop_front();
        }
        while !self.done && self.next_pos < end {
            match self.reader.next_extent()? {
                None => self.done = true,
                Some(e) => {
                    let pos = self.next_pos;
                    self.next_pos = pos.saturating_add(e.len);
                    if let Some(id) = e.blob
                        && self.next_pos > start
                    {
                        self.pending.push_back(ParentExtent {
                            pos,
                            len: e.len,
                            id,
                        });
                    }
                }
            }
        }
        Ok(self
            .pending
            .iter()
            .filter(|e| e.pos < end && e.pos + e.len > start)
            .copied()
            .collect())
    }
}

/// Counts patch attempts so that a disk that changed wholesale stops paying
/// for base reads.
#[derive(Debug, Default)]
pub struct PatchCounters {
    attempts: AtomicU64,
    patched: AtomicU64,
}

impl PatchCounters {
    /// Attempts made so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Chunks stored as patches so far.
    pub fn patched(&self) -> u64 {
        self.patched.load(Ordering::Relaxed)
    }

    /// Whether trying is still worth it: always for the first 256 attempts,
    /// then while at least one in eight succeeds.
    fn worth_trying(&self) -> bool {
        let attempts = self.attempts();
        attempts < 256 || self.patched() * 8 >= attempts
    }
}

/// The parent extents overlapping `[pos, pos + len)`, most shared bytes
/// first, at most [`MAX_BASES`].
fn overlapping(parents: &[ParentExtent], pos: u64, len: u64) -> Vec<ParentExtent> {
    let end = pos + len;
    let mut found: Vec<(u64, ParentExtent)> = parents
        .iter()
        .map(|p| (end.min(p.pos + p.len).saturating_sub(pos.max(p.pos)), *p))
        .filter(|&(shared, _)| shared > 0)
        .collect();
    found.sort_by_key(|&(shared, p)| (std::cmp::Reverse(shared), p.pos));
    found.into_iter().take(MAX_BASES).map(|(_, p)| p).collect()
}

/// The whole blobs behind the parent's chunks at these offsets, each placed
/// at its disk offset; `None` when a parent chunk cannot be read (the new
/// chunk is then stored whole: a damaged parent must not fail a backup).
fn bases_for(repo: &Repository, parents: &[ParentExtent]) -> Option<Vec<(PatchBase, i128)>> {
    let mut bases: Vec<(PatchBase, i128)> = Vec::new();
    for parent in parents {
        for base in repo.patch_base(&parent.id).ok()? {
            let pos = i128::from(parent.pos) + i128::from(base.shift);
            if !bases.iter().any(|(b, p)| b.id == base.id && *p == pos) {
                bases.push((base, pos));
            }
        }
    }
    bases.truncate(MAX_BASES);
    Some(bases)
}

/// Stores a chunk the repository lacks as a patch of the parent's chunks
/// at the same disk offsets, when at most half of it changed. Returns
/// `None` when it is not stored so: the caller stores it whole (grouped
/// with its new neighbours, see [`Repository::save_group`]).
pub fn save_as_patch(
    repo: &Repository,
    id: Id,
    data: &[u8],
    pos: u64,
    parents: &[ParentExtent],
    counters: &PatchCounters,
) -> Result<Option<SaveOutcome>, cairn_store::Error> {
    let parents = overlapping(parents, pos, data.len() as u64);
    if !parents.is_empty() && counters.worth_trying() {
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        if let Some(bases) = bases_for(repo, &parents) {
            let placed: Vec<PlacedBase<'_>> = bases
                .iter()
                .map(|(b, pos)| PlacedBase {
                    data: &b.data,
                    pos: *pos,
                })
                .collect();
            if let Some(ops) = diff_aligned(data, pos, &placed, PATCH_BLOCK, data.len() / 2) {
                let bases: Vec<PatchBase> = bases.into_iter().map(|(b, _)| b).collect();
                let saved = repo.save_blob_patched(id, data, &bases, &ops)?;
                counters.patched.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(saved));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_come_largest_share_first() {
        let id = |b| Id([b; 32]);
        let parents = [
            ParentExtent {
                pos: 0,
                len: 10,
                id: id(1),
            },
            ParentExtent {
                pos: 10,
                len: 30,
                id: id(2),
            },
        ];
        let ids = |pos, len| -> Vec<Id> {
            overlapping(&parents, pos, len)
                .iter()
                .map(|p| p.id)
                .collect()
        };
        assert_eq!(ids(5, 12), [id(2), id(1)]);
        assert_eq!(ids(0, 12), [id(1), id(2)]);
        assert_eq!(ids(0, 5), [id(1)]);
        assert!(ids(40, 5).is_empty());
    }
}
