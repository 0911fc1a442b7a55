//! The reachable set, as prune needs it: every blob the snapshots reach,
//! stopping at damage (deleting is then unsafe), and the blobs they reach
//! that no index names (which the sweep looks for in condemned packs).

use std::collections::HashSet;

use cairn_store::{Id, Repository};

use super::PruneError;
use crate::reach::{Visit, Walker, is_damage};

/// What a walk of every snapshot found.
pub struct Reachable {
    /// Snapshots walked.
    pub snapshots: usize,
    /// 16-byte prefixes of every reachable blob.
    pub seen: HashSet<u128>,
    /// Reachable blobs that no index names.
    pub missing: Vec<Id>,
}

/// Lists the snapshots, *then* brings the index up to date, then walks
/// them. In that order, every snapshot walked had its blobs indexed before
/// the index was read (a backup writes its index before its snapshot), so
/// a blob found missing is missing, not just newer than our view of the
/// index.
pub fn walk_snapshots(repo: &Repository) -> Result<Reachable, PruneError> {
    let ids = repo.snapshot_ids()?;
    repo.refresh_index()?;
    let mut walker = Walker::new(repo);
    let mut missing = Vec::new();
    let mut walked = 0;
    for id in &ids {
        let snapshot = match repo.load_snapshot(id) {
            Ok(s) => s,
            // Forgotten meanwhile: it reaches nothing any more.
            Err(cairn_store::Error::Backend(e)) if e.is_not_found() => continue,
            Err(e) if is_damage(&e) => {
                return Err(PruneError::Unsafe(format!(
                    "snapshot {id} cannot be read ({e}), so what it needs is unknown"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        walked += 1;
        walker.walk_snapshot::<PruneError>(id, &snapshot, &mut |v| match v {
            Visit::Blob(r) if r.location.is_none() => {
                missing.push(r.id);
                Ok(())
            }
            Visit::Blob(_) => Ok(()),
            Visit::Damaged(d) => Err(PruneError::Unsafe(format!(
                "{} {} reached from snapshot {} is damaged: {}",
                d.kind.label(),
                d.id,
                id.short(8),
                d.reason
            ))),
        })?;
    }
    Ok(Reachable {
        snapshots: walked,
        seen: walker.into_seen(),
        missing,
    })
}
