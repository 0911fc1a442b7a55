//! Phase 2 of prune: delete what a plan condemned, once it is safe.
//!
//! A plan waits while any lock it names is live (same host, pid and
//! creation time, not stale): that backup may have deduplicated against a
//! condemned pack. Then the snapshots are walked again, because a backup
//! that ran meanwhile may have written one that needs a blob only a
//! condemned pack holds (it deduplicated against the old index, or its own
//! packs were still unindexed when they were condemned). A condemned pack
//! an index names now is kept; one holding a blob a snapshot needs and no
//! index names is re-indexed from its trailer and kept; the rest are
//! deleted, then the plan. Each step can be repeated after a crash.

use std::collections::HashSet;

use cairn_store::lock::now_secs;
use cairn_store::{Id, IndexFile, LockHolder, ObjectKind, PackBlobs, Repository};

use super::indexes::{indexed_packs, packs_on_target};
use super::walk::walk_snapshots;
use super::{PruneError, PruneOptions, SweepReport, crash_point};
use crate::reach::is_damage;

/// Loads a plan; `None` when it is gone (swept meanwhile) or damaged (it
/// is reported by `check`, and its packs are condemned again by the next
/// mark as unindexed leftovers).
fn load_plan(
    repo: &Repository,
    id: &Id,
    say: &mut dyn FnMut(&str),
) -> Result<Option<cairn_store::PrunePlan>, PruneError> {
    match repo.load_plan(id) {
        Ok(plan) => Ok(Some(plan)),
        Err(cairn_store::Error::Backend(e)) if e.is_not_found() => Ok(None),
        Err(e) if is_damage(&e) => {
            say(&format!(
                "warning: prune plan {id} is unreadable and left alone: {e}"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The packs condemned by every readable plan on the target.
pub fn waiting_packs(repo: &Repository) -> Result<HashSet<Id>, PruneError> {
    let mut packs = HashSet::new();
    for id in repo.plan_ids()? {
        if let Some(plan) = load_plan(repo, &id, &mut |_| {})? {
            packs.extend(plan.packs);
        }
    }
    Ok(packs)
}

/// Sweeps every plan on the target.
pub fn sweep_all(
    repo: &Repository,
    opts: &PruneOptions,
    say: &mut dyn FnMut(&str),
) -> Result<SweepReport, PruneError> {
    let mut total = SweepReport::default();
    for id in repo.plan_ids()? {
        let one = sweep_one(repo, opts, &id, say)?;
        total.plans_done += one.plans_done;
        total.plans_waiting += one.plans_waiting;
        total.waiting_for.extend(one.waiting_for);
        total.packs_deleted += one.packs_deleted;
        total.bytes_freed += one.bytes_freed;
        total.packs_kept_indexed += one.packs_kept_indexed;
        total.packs_reindexed += one.packs_reindexed;
    }
    total.waiting_for.sort();
    total.waiting_for.dedup();
    Ok(total)
}

/// The holders named by `plan` whose locks are live now.
fn live_holders(
    repo: &Repository,
    holders: &[LockHolder],
    hostname: &str,
) -> Result<Vec<String>, PruneError> {
    let now = now_secs();
    let locks = repo.list_locks()?;
    Ok(holders
        .iter()
        .filter(|h| {
            locks.iter().any(|(_, l)| {
                l.as_ref()
                    .is_ok_and(|l| h.holds(l) && !l.is_stale(hostname, now))
            })
        })
        .map(|h| {
            format!(
                "host {} pid {} (lock taken at unix time {})",
                h.hostname, h.pid, h.created
            )
        })
        .collect())
}

/// Sweeps one plan.
pub fn sweep_one(
    repo: &Repository,
    opts: &PruneOptions,
    id: &Id,
    say: &mut dyn FnMut(&str),
) -> Result<SweepReport, PruneError> {
    let mut report = SweepReport::default();
    let Some(plan) = load_plan(repo, id, say)? else {
        return Ok(report);
    };
    let live = live_holders(repo, &plan.locks, &opts.hostname)?;
    if !live.is_empty() {
        say(&format!(
            "prune plan {} waits for {} lock(s) that were held when it was written; a later prune deletes its packs",
            id.short(8),
            live.len()
        ));
        report.plans_waiting = 1;
        report.waiting_for = live;
        return Ok(report);
    }
    let on_target = packs_on_target(repo)?;
    let indexed = indexed_packs(repo)?;
    let mut candidates: Vec<Id> = Vec::new();
    for pack in plan.packs.iter().filter(|p| on_target.contains_key(*p)) {
        if indexed.contains(pack) {
            report.packs_kept_indexed += 1;
        } else {
            candidates.push(*pack);
        }
    }
    loop {
        let reach = walk_snapshots(repo)?;
        if reach.missing.is_empty() {
            break;
        }
        let missing: HashSet<u128> = reach.missing.iter().map(Id::prefix_u128).collect();
        let mut packs = Vec::new();
        for pack in &candidates {
            let (_, blobs) = repo.read_pack_trailer(pack)?;
            if blobs.iter().any(|b| missing.contains(&b.id.prefix_u128())) {
                packs.push(PackBlobs { pack: *pack, blobs });
            }
        }
        if packs.is_empty() {
            return Err(PruneError::Unsafe(format!(
                "{} blob(s) the snapshots reach are in no index and in no pack prune plan {id} condemned (blob {} among them)",
                reach.missing.len(),
                reach.missing[0]
            )));
        }
        say(&format!(
            "{} condemned pack(s) hold blobs a newer snapshot needs: indexing them again",
            packs.len()
        ));
        let names: HashSet<Id> = packs.iter().map(|p| p.pack).collect();
        report.packs_reindexed += packs.len();
        repo.write_index_file(&IndexFile {
            supersedes: Vec::new(),
            packs,
        })?;
        candidates.retain(|p| !names.contains(p));
        crash_point("sweep-reindex");
    }
    say(&format!("deleting {} pack(s)", candidates.len()));
    for (n, pack) in candidates.iter().enumerate() {
        if repo.delete_object(ObjectKind::Pack, pack)? {
            report.packs_deleted += 1;
            report.bytes_freed += on_target.get(pack).copied().unwrap_or(0);
        }
        if n == 0 {
            crash_point("sweep-delete-one");
        }
    }
    crash_point("sweep-delete");
    repo.delete_object(ObjectKind::Plan, id)?;
    report.plans_done = 1;
    Ok(report)
}
