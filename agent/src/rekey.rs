//! `key rotate --rewrite`: re-encrypt every object under the current data-key
//! epoch, then drop the old epochs from the key files.
//!
//! Rotating alone leaves old objects under old epochs, readable by whoever
//! still holds the old key set; the rewrite is what takes that away. It
//! runs under an exclusive lock (no backup may write under an old epoch
//! meanwhile) and orders its steps so that a process killed at any point
//! leaves every snapshot restorable, and running it again finishes the job
//! (docs/key-rotation.md):
//!
//! 1. packs: the blobs of every pack under an old epoch are copied into new
//!    packs as they are stored (re-sealed, not recompressed; blob ids do not
//!    change), skipping blobs an indexed pack of the current epoch already
//!    holds (a rerun's progress); blobs of unindexed old packs that no index
//!    names are copied too, so nothing a prune plan would have re-indexed is
//!    lost; the new packs are uploaded and indexed;
//! 2. one index file supersedes every old one, without the old packs;
//! 3. snapshots: object ids are the hash of the stored bytes, so a
//!    re-encrypted snapshot has a new id. Every snapshot under an old epoch,
//!    and every snapshot whose parent is rewritten, is written again with
//!    its parent remapped, parents first; a manifest equal to one already
//!    written (by a crashed run) is reused, not written twice. Then the old
//!    manifests are deleted children first, so that a rerun still finds the
//!    parent of any manifest left and can recompute the mapping;
//! 4. the old packs are deleted, then the prune plans under old epochs
//!    (every pack they condemn was an old pack, deleted now) and stale
//!    locks;
//! 5. every object but the config is checked to be under the current
//!    epoch; then the config is sealed again under it and replaced on the
//!    target (`Backend::replace`, atomic: the target holds the old config
//!    or the new one, both readable with the key set in the key files);
//!    only then are the old epochs dropped from the key files, and the
//!    store refuses to drop one the config on the target still needs. A
//!    target that cannot replace atomically (an SFTP server without
//!    `posix-rename@openssh.com`) keeps the config's epoch, for the config
//!    only, and the rewrite ends with a warning.
//!
//! For tests, `CAIRN_TEST_CRASH_AFTER=<step>` aborts after a step (see
//! [`crate::prune::crash_point`]): `rotate-keys`, `rewrite-pack-one`,
//! `rewrite-packs`, `rewrite-index`, `rewrite-snapshots`,
//! `rewrite-snapshot-delete-one`, `rewrite-snapshot-delete`,
//! `rewrite-pack-delete-one`, `rewrite-pack-delete`, `rewrite-config`.

use std::collections::{HashMap, HashSet};

use cairn_store::{ConfigReseal, Credential, Id, KeyRewrap, ObjectKind, Repository, Snapshot};
use serde::Serialize;
use thiserror::Error;

use crate::prune::crash_point;
use crate::prune::indexes::{index_view, load, packs_on_target};

/// Why a rewrite stopped.
#[derive(Debug, Error)]
pub enum RewriteError {
    /// The repository failed (target, cache, a key file).
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// Something is damaged or missing: rewriting (and dropping the old
    /// epochs) could lose what is left of it.
    #[error(
        "{0}; the old key epochs were kept. Run `cairn check`, repair or forget what it reports, then run `cairn key rotate --rewrite --resume`"
    )]
    Unsafe(String),
}

impl From<crate::prune::PruneError> for RewriteError {
    fn from(e: crate::prune::PruneError) -> Self {
        match e {
            crate::prune::PruneError::Store(s) => RewriteError::Store(s),
            other => RewriteError::Unsafe(other.to_string()),
        }
    }
}

/// A snapshot written again under a new id.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Remapped {
    /// Its id before the rewrite.
    pub old: Id,
    /// Its id now.
    pub new: Id,
}

/// What a rewrite did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RewriteReport {
    /// The epoch everything is under now.
    pub epoch: u32,
    /// Packs under old epochs whose blobs were copied (then deleted).
    pub packs_rewritten: usize,
    /// Blobs copied.
    pub blobs_copied: u64,
    /// Their stored bytes.
    pub bytes_copied: u64,
    /// Index files replaced by the superseding one.
    pub index_files_replaced: usize,
    /// Snapshots written again, old id to new id.
    pub snapshots: Vec<Remapped>,
    /// Prune plans under old epochs deleted.
    pub plans_deleted: usize,
    /// Stale locks removed.
    pub locks_removed: usize,
    /// The config sealed again under the current epoch (absent when the
    /// target cannot replace it; see `config_not_replaced`).
    pub config: Option<ConfigReseal>,
    /// Why the config stayed under its old epoch, which the key files then
    /// keep for the config only (a target without an atomic replace).
    pub config_not_replaced: Option<String>,
    /// Epochs dropped from the key files.
    pub epochs_dropped: Vec<u32>,
    /// The key files rewritten without them.
    pub keys: Option<KeyRewrap>,
}

/// Runs the rewrite on a repository opened (and rotated) with
/// `credential`, whose caller holds an exclusive lock sealed under the
/// current key set. `hostname` tells which locks are stale; `say` gets a
/// line per phase.
pub fn rewrite(
    repo: &mut Repository,
    credential: &Credential<'_>,
    remove_other_keys: bool,
    hostname: &str,
    say: &mut dyn FnMut(&str),
) -> Result<RewriteReport, RewriteError> {
    let epoch = repo.keys().current_epoch();
    let mut report = RewriteReport {
        epoch,
        ..RewriteReport::default()
    };
    let snapshots = repo.list_snapshots_reporting()?;
    if let Some((id, e)) = snapshots.unreadable.first() {
        return Err(RewriteError::Unsafe(format!(
            "snapshot {id} cannot be read ({e})"
        )));
    }

    say("re-encrypting packs");
    let old_packs = copy_old_packs(repo, epoch, &mut report)?;
    repo.flush()?;
    crash_point("rewrite-packs");

    say("writing the new index");
    let index_files = repo.index_file_ids()?;
    let mut old_index = false;
    for id in &index_files {
        old_index |= repo.object_epoch(ObjectKind::Index, id)? != epoch;
    }
    if old_index || !old_packs.is_empty() {
        // One index file replaces all of them (this rewrite's own, which
        // name the copies, included), without the old packs' entries.
        let old: HashSet<Id> = old_packs.iter().copied().collect();
        repo.supersede_index(&index_files, &|pack, _| old.contains(pack))?;
        report.index_files_replaced = index_files.len();
    }
    crash_point("rewrite-index");

    say("re-encrypting snapshots");
    report.snapshots = rewrite_snapshots(repo, epoch, snapshots.snapshots)?;

    say("deleting the old packs");
    for (n, pack) in old_packs.iter().enumerate() {
        repo.delete_object(ObjectKind::Pack, pack)?;
        if n == 0 {
            crash_point("rewrite-pack-delete-one");
        }
    }
    crash_point("rewrite-pack-delete");
    for plan in repo.plan_ids()? {
        if repo.object_epoch(ObjectKind::Plan, &plan)? != epoch {
            repo.delete_object(ObjectKind::Plan, &plan)?;
            report.plans_deleted += 1;
        }
    }
    report.locks_removed = repo.remove_stale_locks(hostname)?;

    say("checking that nothing is left under an old epoch");
    let left = objects_under_old_epochs(repo, epoch)?;
    if let Some(first) = left.first() {
        return Err(RewriteError::Unsafe(format!(
            "{} object(s) are still under an old key epoch ({first} among them)",
            left.len()
        )));
    }

    say("sealing the config under the new key");
    match repo.reseal_config() {
        Ok(done) => report.config = Some(done),
        Err(cairn_store::Error::Backend(e)) if e.is_unsupported() => {
            report.config_not_replaced = Some(e.to_string());
        }
        Err(e) => return Err(e.into()),
    }
    crash_point("rewrite-config");
    let before: Vec<u32> = repo.keys().epochs().collect();
    let keys = repo.drop_old_epochs(credential, remove_other_keys)?;
    report.epochs_dropped = before
        .into_iter()
        .filter(|e| !keys.epochs.contains(e))
        .collect();
    report.keys = Some(keys);
    Ok(report)
}

/// Copies the blobs of every pack under an old epoch into new packs;
/// returns those packs (to delete once nothing needs them).
fn copy_old_packs(
    repo: &Repository,
    epoch: u32,
    report: &mut RewriteReport,
) -> Result<Vec<Id>, RewriteError> {
    let on_target = packs_on_target(repo)?;
    let mut epochs: HashMap<Id, u32> = HashMap::with_capacity(on_target.len());
    for pack in on_target.keys() {
        epochs.insert(*pack, repo.object_epoch(ObjectKind::Pack, pack)?);
    }
    let view = index_view(repo)?;
    // Blobs already in an indexed pack of the current epoch (a rerun's
    // copies, or backups after the rotation) are not copied again.
    let mut done: HashSet<Id> = HashSet::new();
    let mut indexed_old: Vec<(Id, Vec<cairn_store::BlobEntry>)> = Vec::new();
    let mut indexed: HashSet<Id> = HashSet::new();
    for index in &view.live {
        for pack in load(repo, index)?.packs {
            indexed.insert(pack.pack);
            match epochs.get(&pack.pack) {
                None => {
                    return Err(RewriteError::Unsafe(format!(
                        "pack {}, named by index file {index}, is missing from the target",
                        pack.pack
                    )));
                }
                Some(e) if *e == epoch => done.extend(pack.blobs.iter().map(|b| b.id)),
                Some(_) => indexed_old.push((pack.pack, pack.blobs)),
            }
        }
    }
    let mut old_packs = Vec::new();
    for (n, (pack, entries)) in indexed_old.iter().enumerate() {
        let todo: Vec<_> = entries
            .iter()
            .filter(|e| !done.contains(&e.id))
            .copied()
            .collect();
        copy(repo, pack, &todo, report)?;
        done.extend(todo.iter().map(|e| e.id));
        old_packs.push(*pack);
        if n == 0 {
            crash_point("rewrite-pack-one");
        }
    }
    let mut unindexed: Vec<Id> = epochs
        .iter()
        .filter(|(pack, e)| **e != epoch && !indexed.contains(*pack))
        .map(|(pack, _)| *pack)
        .collect();
    unindexed.sort();
    for pack in unindexed {
        // A leftover of a crashed backup, or a pack a prune condemned: its
        // blobs that no index names may be needed by a snapshot.
        let (_, entries) = repo.read_pack_trailer(&pack)?;
        let todo: Vec<_> = entries
            .into_iter()
            .filter(|e| !done.contains(&e.id) && !repo.has_blob(&e.id))
            .collect();
        copy(repo, &pack, &todo, report)?;
        old_packs.push(pack);
    }
    Ok(old_packs)
}

fn copy(
    repo: &Repository,
    pack: &Id,
    entries: &[cairn_store::BlobEntry],
    report: &mut RewriteReport,
) -> Result<(), RewriteError> {
    report.packs_rewritten += 1;
    if entries.is_empty() {
        return Ok(());
    }
    report.bytes_copied += repo.copy_blobs_from_pack(pack, entries)?;
    report.blobs_copied += entries.len() as u64;
    Ok(())
}

/// The snapshots to write again: those under an old epoch and, repeatedly,
/// those whose parent is written again. Parents come before children.
fn snapshots_to_rewrite(
    repo: &Repository,
    epoch: u32,
    snapshots: &[(Id, Snapshot)],
) -> Result<Vec<usize>, RewriteError> {
    let mut chosen: HashSet<Id> = HashSet::new();
    for (id, _) in snapshots {
        if repo.object_epoch(ObjectKind::Snapshot, id)? != epoch {
            chosen.insert(*id);
        }
    }
    loop {
        let before = chosen.len();
        for (id, s) in snapshots {
            if s.parent.is_some_and(|p| chosen.contains(&p)) {
                chosen.insert(*id);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    // Parents first: a pass takes every chosen snapshot whose parent is not
    // waiting; ids are hashes of content, so parent links cannot cycle
    // (a pass that takes nothing takes the rest anyway).
    let mut waiting: Vec<usize> = (0..snapshots.len())
        .filter(|&i| chosen.contains(&snapshots[i].0))
        .collect();
    let mut order = Vec::with_capacity(waiting.len());
    while !waiting.is_empty() {
        let pending: HashSet<Id> = waiting.iter().map(|&i| snapshots[i].0).collect();
        let (ready, rest): (Vec<usize>, Vec<usize>) = waiting
            .into_iter()
            .partition(|&i| snapshots[i].1.parent.is_none_or(|p| !pending.contains(&p)));
        if ready.is_empty() {
            order.extend(rest);
            break;
        }
        order.extend(ready);
        waiting = rest;
    }
    Ok(order)
}

/// Writes the chosen snapshots again with their parents remapped, then
/// deletes the old manifests, children first.
fn rewrite_snapshots(
    repo: &Repository,
    epoch: u32,
    snapshots: Vec<(Id, Snapshot)>,
) -> Result<Vec<Remapped>, RewriteError> {
    let order = snapshots_to_rewrite(repo, epoch, &snapshots)?;
    let chosen: HashSet<Id> = order.iter().map(|&i| snapshots[i].0).collect();
    // Manifests that stay, by content: a crashed run's rewritten ones are
    // found here instead of being written twice.
    let mut staying: HashMap<String, Id> = HashMap::new();
    for (id, s) in &snapshots {
        if !chosen.contains(id) {
            staying.insert(content(s)?, *id);
        }
    }
    let mut map: HashMap<Id, Id> = HashMap::new();
    let mut out = Vec::with_capacity(order.len());
    for &i in &order {
        let (old, snapshot) = &snapshots[i];
        let mut again = snapshot.clone();
        again.parent = snapshot.parent.map(|p| map.get(&p).copied().unwrap_or(p));
        let key = content(&again)?;
        let new = match staying.get(&key) {
            Some(id) => *id,
            None => {
                let id = repo.save_snapshot(&again)?;
                staying.insert(key, id);
                id
            }
        };
        map.insert(*old, new);
        out.push(Remapped { old: *old, new });
    }
    crash_point("rewrite-snapshots");
    for (n, &i) in order.iter().rev().enumerate() {
        repo.delete_snapshot(&snapshots[i].0)?;
        if n == 0 {
            crash_point("rewrite-snapshot-delete-one");
        }
    }
    crash_point("rewrite-snapshot-delete");
    Ok(out)
}

/// A manifest's content as a comparable key.
fn content(s: &Snapshot) -> Result<String, RewriteError> {
    serde_json::to_string(s)
        .map_err(|e| RewriteError::Unsafe(format!("a snapshot cannot be encoded ({e})")))
}

/// Every object (but the config, which is sealed again after this check)
/// not under `epoch`, as `kind/id`.
fn objects_under_old_epochs(repo: &Repository, epoch: u32) -> Result<Vec<String>, RewriteError> {
    let mut left = Vec::new();
    for kind in [
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Plan,
        ObjectKind::Lock,
    ] {
        for info in repo
            .backend()
            .list(kind)
            .map_err(cairn_store::Error::from)?
        {
            let Ok(id) = info.handle.name.parse::<Id>() else {
                continue;
            };
            match repo.object_epoch(kind, &id) {
                Ok(e) if e == epoch => {}
                Ok(_) => left.push(info.handle.to_string()),
                // Gone since the listing (a lock refreshed or released).
                Err(cairn_store::Error::Backend(b)) if b.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(left)
}
