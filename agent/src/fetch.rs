//! Fetching many blobs at once: grouped by pack, each pack's blobs read
//! with coalesced ranged reads, packs spread over worker threads. Restores,
//! exports and synthetic fulls all read this way.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cairn_store::{BlobEntry, Id, Repository};

use crate::parallel::on_threads;

/// Blobs of one pack closer than this are fetched in one ranged read.
pub const MAX_GAP: u64 = 256 << 10;
/// Largest single ranged read.
pub const MAX_READ: u64 = 4 << 20;

/// Where the index says `id` is; a blob it does not name is an error.
pub fn locate(repo: &Repository, id: &Id) -> Result<(Id, BlobEntry), cairn_store::Error> {
    repo.locate_blob(id)?
        .ok_or(cairn_store::Error::BlobNotFound(*id))
}

/// The plaintexts of the blobs at `located` (pack, entry), each verified
/// (patches rebuilt), by id; a blob listed twice is fetched once. Also
/// returns the number of packs read.
pub fn load_grouped(
    repo: &Repository,
    located: impl IntoIterator<Item = (Id, BlobEntry)>,
    threads: usize,
) -> Result<(HashMap<Id, Vec<u8>>, usize), cairn_store::Error> {
    let mut by_pack: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    let mut listed = HashSet::new();
    for (pack, entry) in located {
        if listed.insert(entry.id) {
            by_pack.entry(pack).or_default().push(entry);
        }
    }
    let packs = by_pack.len();
    let loaded = Mutex::new(HashMap::with_capacity(listed.len()));
    on_threads(threads, by_pack.into_iter().collect(), |(pack, entries)| {
        let data = repo.load_pack_blobs(&pack, &entries, MAX_GAP, MAX_READ)?;
        loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(entries.iter().map(|e| e.id).zip(data));
        Ok::<(), cairn_store::Error>(())
    })?;
    Ok((
        loaded.into_inner().unwrap_or_else(|e| e.into_inner()),
        packs,
    ))
}
