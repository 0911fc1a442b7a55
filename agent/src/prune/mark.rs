//! Phase 1 of prune: decide what to keep, repack what is mostly unused,
//! replace the index, and write the plan of what to delete.
//!
//! The order (docs/format.md §2.12) keeps a crash anywhere safe:
//! 1. snapshots listed, index refreshed, snapshots walked (the reachable
//!    set), index files listed, then packs listed (a pack an index names
//!    was uploaded before that index, so before the listing);
//! 2. the used blobs of mostly unused packs copied into new packs, which
//!    are uploaded and indexed (crash: duplicates, harmless);
//! 3. one index written that supersedes every listed index file and names
//!    the packs kept (crash: readers ignore the superseded files);
//! 4. the listed index files deleted (crash: the condemned packs are
//!    unindexed leftovers, condemned again by the next prune);
//! 5. the locks listed and the plan written. A backup that takes its lock
//!    after this listing reads the index after step 4, so it cannot
//!    deduplicate against a condemned pack; one that took it before is
//!    named in the plan, and the sweep waits for it.

use std::collections::HashSet;

use cairn_store::index::distinct_stored_bytes;
use cairn_store::lock::now_secs;
use cairn_store::{BlobEntry, Id, IndexFile, LockHolder, ObjectKind, PrunePlan, Repository};

use super::indexes::{index_view, load, packs_on_target};
use super::walk::walk_snapshots;
use super::{KEPT_PER_INDEX, MarkReport, PruneError, PruneOptions, crash_point};

/// What to do with one indexed pack.
enum Fate {
    Keep,
    Repack(Vec<BlobEntry>),
    Condemn,
}

/// Decides a pack's fate: `seen` holds the reachable blobs not yet claimed
/// by a pack decided earlier (a blob stored twice is used in the first pack
/// that holds it); the used blobs of this pack are claimed (removed).
///
/// The pack's blob bytes are what its size on the target says when that is
/// more than its index entries make: a synthetic full retires the entries
/// of blobs it stored again elsewhere, and those bytes are unused too.
fn judge(
    entries: &[BlobEntry],
    size_on_target: Option<u64>,
    seen: &mut HashSet<u128>,
    max_unused: f64,
) -> (Fate, u64) {
    let used: Vec<BlobEntry> = entries
        .iter()
        .filter(|e| seen.remove(&e.id.prefix_u128()))
        .copied()
        .collect();
    let indexed = distinct_stored_bytes(entries);
    // Header, trailer count, tag and length, and one trailer entry per
    // indexed blob: an estimate that never counts bytes of indexed blobs
    // as unused.
    let overhead = 44 + 4 + 16 + 4 + 46 * entries.len() as u64;
    let total = indexed.max(size_on_target.unwrap_or(0).saturating_sub(overhead));
    // A solid group is used whole when any member is.
    let used_bytes = distinct_stored_bytes(&used);
    let fate = if used.is_empty() {
        Fate::Condemn
    } else if (total - used_bytes) as f64 > max_unused * total as f64 {
        Fate::Repack(used)
    } else {
        Fate::Keep
    };
    (fate, used_bytes)
}

/// Runs phase 1; packs in `waiting` (condemned by plans still waiting for
/// a lock) are left to those plans.
pub fn mark(
    repo: &Repository,
    opts: &PruneOptions,
    waiting: &HashSet<Id>,
    say: &mut dyn FnMut(&str),
) -> Result<MarkReport, PruneError> {
    let mut report = MarkReport::default();
    say("finding the blobs the snapshots reach");
    let reach = walk_snapshots(repo)?;
    report.snapshots = reach.snapshots;
    report.blobs_reachable = reach.seen.len();
    if let Some(first) = reach.missing.first() {
        if !waiting.is_empty() {
            report.skipped = Some(format!(
                "a snapshot needs blob {first}, which no index names; it may be in a pack an earlier prune condemned while a backup was running: run prune again once that backup has finished"
            ));
            return Ok(report);
        }
        return Err(PruneError::Unsafe(format!(
            "{} blob(s) the snapshots reach are in no index (blob {first} among them)",
            reach.missing.len()
        )));
    }
    let view = index_view(repo)?;
    let on_target = packs_on_target(repo)?;

    say("counting used and unused bytes per pack");
    let mut seen = reach.seen;
    let mut indexed: HashSet<Id> = HashSet::new();
    let mut kept = Vec::new();
    let mut kept_blobs = 0;
    let mut condemned: Vec<Id> = Vec::new();
    for index in &view.live {
        for pack in load(repo, index)?.packs {
            if !indexed.insert(pack.pack) {
                continue;
            }
            let (fate, used_bytes) = judge(
                &pack.blobs,
                on_target.get(&pack.pack).copied(),
                &mut seen,
                opts.max_unused,
            );
            let Some(&size) = on_target.get(&pack.pack) else {
                if used_bytes > 0 {
                    return Err(PruneError::Unsafe(format!(
                        "pack {}, named by index file {index}, is missing from the target",
                        pack.pack
                    )));
                }
                // Gone already (a crashed sweep): just left out of the index.
                continue;
            };
            match fate {
                Fate::Keep => {
                    report.packs_kept += 1;
                    report.blobs_kept += pack.blobs.len() as u64;
                    kept_blobs += pack.blobs.len();
                    kept.push(pack);
                    if kept_blobs >= KEPT_PER_INDEX && !opts.dry_run {
                        let packs = std::mem::take(&mut kept);
                        repo.write_index_file(&IndexFile {
                            supersedes: Vec::new(),
                            packs,
                        })?;
                        kept_blobs = 0;
                    }
                    continue;
                }
                Fate::Repack(used) => {
                    report.packs_repacked += 1;
                    report.blobs_repacked += used.len() as u64;
                    report.bytes_repacked += used_bytes;
                    if !opts.dry_run {
                        repo.copy_blobs_from_pack(&pack.pack, &used)?;
                    }
                }
                Fate::Condemn => report.packs_unused += 1,
            }
            condemned.push(pack.pack);
            report.bytes_condemned += size;
        }
    }
    for (pack, size) in &on_target {
        if !indexed.contains(pack) && !waiting.contains(pack) {
            report.packs_unindexed += 1;
            report.bytes_condemned += size;
            condemned.push(*pack);
        }
    }
    report.packs_condemned = condemned.len();
    let superseded_left = view.all.len() > view.live.len();
    if opts.dry_run || (condemned.is_empty() && !superseded_left) {
        return Ok(report);
    }

    say("writing the new index");
    repo.flush()?;
    crash_point("repack");
    repo.write_index_file(&IndexFile {
        supersedes: view.all.clone(),
        packs: kept,
    })?;
    crash_point("index");
    for id in &view.all {
        repo.delete_object(ObjectKind::Index, id)?;
    }
    report.index_files_replaced = view.all.len();
    crash_point("delete-index");
    if condemned.is_empty() {
        return Ok(report);
    }

    let now = now_secs();
    let locks: Vec<LockHolder> = repo
        .list_locks()?
        .into_iter()
        .filter_map(|(_, l)| l.ok())
        .filter(|l| !l.is_stale(&opts.hostname, now))
        .filter(|l| opts.own_lock.as_ref().is_none_or(|own| !own.holds(l)))
        .map(|l| LockHolder::of(&l))
        .collect();
    condemned.sort();
    report.plan_locks = locks.len();
    report.plan = Some(repo.write_plan(&PrunePlan {
        created: now,
        locks,
        packs: condemned,
    })?);
    crash_point("plan");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::{BlobType, Compression};

    fn entry(n: u8, len: u32) -> BlobEntry {
        BlobEntry {
            id: Id([n; 32]),
            blob_type: BlobType::Data,
            compression: Compression::Zstd,
            offset: 44,
            stored_len: len,
            raw_len: len,
        }
    }

    #[test]
    fn packs_are_kept_repacked_or_condemned_by_their_unused_share() {
        let pack = [entry(1, 900), entry(2, 100)];
        // The pack's size on the target: its blobs plus the overhead.
        let size = Some(1000 + 44 + 4 + 16 + 4 + 2 * 46);
        let mut seen: HashSet<u128> = [Id([1; 32]).prefix_u128()].into();
        // 10% unused is not above 10%: kept; the used blob is claimed.
        assert!(matches!(
            judge(&pack, size, &mut seen, 0.10),
            (Fate::Keep, 900)
        ));
        assert!(seen.is_empty());
        // Claimed already: nothing used here any more.
        assert!(matches!(
            judge(&pack, size, &mut seen, 0.10).0,
            Fate::Condemn
        ));
        let mut seen: HashSet<u128> = [Id([2; 32]).prefix_u128()].into();
        match judge(&pack, size, &mut seen, 0.10) {
            (Fate::Repack(used), 100) => assert_eq!(used, vec![entry(2, 100)]),
            _ => panic!("a pack 90% unused is repacked"),
        }
        let mut seen: HashSet<u128> = [Id([2; 32]).prefix_u128()].into();
        assert!(matches!(judge(&pack, size, &mut seen, 0.95).0, Fate::Keep));
        // Entries retired by a synth: the pack holds 4000 more bytes than
        // its index names, which count as unused.
        let mut seen: HashSet<u128> = [Id([1; 32]).prefix_u128()].into();
        let bigger = size.map(|s| s + 4000);
        assert!(matches!(
            judge(&pack, bigger, &mut seen, 0.10).0,
            Fate::Repack(_)
        ));
    }
}
