//! The index files on the target as prune sees them: all of them (the new
//! index supersedes every one, live or already superseded by an index a
//! crashed prune wrote) and the live ones (not superseded), whose packs
//! are the indexed packs.

use std::collections::{HashMap, HashSet};

use cairn_store::{Id, IndexFile, ObjectKind, Repository};

use super::PruneError;
use crate::reach::is_damage;

/// The index files on the target.
pub struct IndexView {
    /// Every index file listed.
    pub all: Vec<Id>,
    /// Those no other listed index file supersedes, in id order.
    pub live: Vec<Id>,
}

/// Loads one index file; damage is a reason not to delete anything (what
/// it indexes is unknown).
pub fn load(repo: &Repository, id: &Id) -> Result<IndexFile, PruneError> {
    repo.load_index_file(id).map_err(|e| {
        if is_damage(&e) {
            PruneError::Unsafe(format!("index file {id} cannot be read ({e})"))
        } else {
            e.into()
        }
    })
}

/// Lists and reads every index file once to learn which are superseded.
pub fn index_view(repo: &Repository) -> Result<IndexView, PruneError> {
    let mut all = repo.index_file_ids()?;
    all.sort();
    let mut superseded = HashSet::new();
    for id in &all {
        superseded.extend(load(repo, id)?.supersedes);
    }
    let live = all
        .iter()
        .filter(|id| !superseded.contains(*id))
        .copied()
        .collect();
    Ok(IndexView { all, live })
}

/// The packs the live index files name.
pub fn indexed_packs(repo: &Repository) -> Result<HashSet<Id>, PruneError> {
    let view = index_view(repo)?;
    let mut packs = HashSet::new();
    for id in &view.live {
        packs.extend(load(repo, id)?.packs.iter().map(|p| p.pack));
    }
    Ok(packs)
}

/// Every pack on the target, with its size.
pub fn packs_on_target(repo: &Repository) -> Result<HashMap<Id, u64>, PruneError> {
    Ok(repo
        .backend()
        .list(ObjectKind::Pack)
        .map_err(cairn_store::Error::from)?
        .into_iter()
        .filter_map(|i| Some((i.handle.name.parse().ok()?, i.size)))
        .collect())
}
