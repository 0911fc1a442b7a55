//! Forgetting snapshots: reading the manifests a policy judges and deleting
//! the ones it removes. Shared by `cairn forget` and `cairn run`.
//!
//! Manifests are read one by one so that a damaged one is set aside (never
//! judged by a policy, never silently removed) instead of failing the whole
//! operation; the caller warns about it.

use cairn_store::{Id, Repository, Snapshot};

use crate::retention::{GroupBy, Policy, apply};
use crate::select::SnapshotFilter;

/// The snapshots a forget looks at.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Readable manifests passing the filter, oldest first.
    pub list: Vec<(Id, Snapshot)>,
    /// Manifests that could not be read (damaged), with why.
    pub unreadable: Vec<(Id, cairn_store::Error)>,
}

/// Reads every manifest; those passing `filter` go to `list`, damaged ones
/// to `unreadable`. A target failure is an error.
pub fn load(repo: &Repository, filter: &SnapshotFilter) -> cairn_store::Result<Loaded> {
    let mut out = Loaded::default();
    for id in repo.snapshot_ids()? {
        match repo.load_snapshot(&id) {
            Ok(s) if filter.matches(&s) => out.list.push((id, s)),
            Ok(_) => {}
            Err(e) if crate::reach::is_damage(&e) => out.unreadable.push((id, e)),
            Err(e) => return Err(e),
        }
    }
    out.list.sort_by_key(|(id, s)| (s.time, s.time_nanos, *id));
    Ok(out)
}

/// The snapshots `policy` removes from `list`.
pub fn removed_by(list: &[(Id, Snapshot)], policy: &Policy, group_by: GroupBy) -> Vec<Id> {
    apply(list, policy, group_by)
        .iter()
        .flat_map(|g| g.decisions.iter().filter(|d| !d.keep).map(|d| d.id))
        .collect()
}

/// A snapshot that could not be removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot remove snapshot {id}: {source}")]
pub struct DeleteError {
    /// The snapshot.
    pub id: Id,
    /// Why.
    #[source]
    pub source: cairn_store::Error,
}

/// Deletes the manifests of `ids`, in order; stops at the first failure.
/// The caller holds a (shared) lock.
pub fn delete(repo: &Repository, ids: &[Id]) -> Result<(), DeleteError> {
    for id in ids {
        repo.delete_snapshot(id)
            .map_err(|source| DeleteError { id: *id, source })?;
    }
    Ok(())
}
