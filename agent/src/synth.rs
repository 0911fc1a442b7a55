//! Synthetic fulls: lay a snapshot out again, in restore order, from what
//! the repository already stores, so that its restore reads few packs and
//! reads them sequentially.
//!
//! The source is never read: blobs are loaded from their packs, and the
//! ones worth moving are stored again, whole, in fresh packs, in the order a
//! restore needs them (a disk's chunks in disk order; a file tree's blobs in
//! the walk's order). What is worth moving (a documented, tunable rule in
//! the spirit of capping, Lillibridge et al., FAST 2013):
//!
//! - every blob stored as a **patch**: its restore needs its bases too,
//!   which sit in older packs, so it is rebuilt and stored whole;
//! - every blob in a pack this snapshot uses **poorly**: the stored bytes
//!   of the snapshot's (non-patch) blobs in that pack are less than
//!   `min_pack_use` (default 50 %) of the pack's indexed bytes. A pack the
//!   snapshot mostly uses is read efficiently already and is left alone,
//!   so a synth of a recent full rewrites little.
//!
//! Afterwards one new index file replaces the index files that existed
//! when synth started, without the old copies' entries (the new copies are
//! in the index files this session wrote), so every reader sees one
//! location per blob: the new one. Old packs lose those entries and become
//! partly or wholly unused, which prune reclaims by its usual rules. Then a
//! new manifest (the same content, time and paths, the tag `synthetic`, the
//! original as its parent) replaces the original's.
//!
//! Interrupted anywhere, the repository stays valid: until the index is
//! replaced both copies are indexed and either serves a restore; packs that
//! no index names yet are leftovers for prune. Rerunning walks the
//! snapshot again and moves whatever is still poorly placed. Synth never
//! deletes a pack, so backups running beside it are safe; it takes a shared
//! lock as `synth`, which excludes prune and other synths (they replace
//! index files too).

use std::collections::{HashMap, HashSet};

use cairn_store::{BlobEntry, BlobType, Compression, Id, Repository, Snapshot};
use serde::Serialize;
use thiserror::Error;

use crate::fetch::load_grouped;
use crate::locality::{self, Fragmentation, LocalityError};
use crate::parallel::split_by_bytes;
use crate::reach::{Visit, Walker};

/// The tag synth adds to the snapshots it writes.
pub const SYNTHETIC_TAG: &str = "synthetic";

/// Default share of a pack a snapshot must use for its blobs to stay put.
pub const DEFAULT_MIN_PACK_USE: f64 = 0.5;

/// Plaintext loaded and stored again per batch (bounds memory).
const BATCH_BYTES: u64 = 64 << 20;

/// How synth decides and works.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Blobs in packs this snapshot uses less than this share of (0..=1)
    /// are moved; 1.0 moves everything (a full rewrite).
    pub min_pack_use: f64,
    /// Keep the original manifest beside the synthetic one.
    pub keep_original: bool,
    /// Threads loading blobs from packs.
    pub threads: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            min_pack_use: DEFAULT_MIN_PACK_USE,
            keep_original: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What a synth did.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    /// The snapshot laid out again.
    pub original: Id,
    /// The synthetic snapshot (the original when nothing needed moving).
    pub snapshot: Id,
    /// Distinct blobs the snapshot references.
    pub blobs: u64,
    /// Blobs stored again.
    pub blobs_rewritten: u64,
    /// Of those, patches now stored whole.
    pub patches_rewritten: u64,
    /// Plaintext bytes stored again.
    pub bytes_rewritten: u64,
    /// Stored bytes this synth added to the repository.
    pub bytes_stored: u64,
    /// Packs written.
    pub packs_written: u64,
    /// Whether the original manifest was removed.
    pub original_removed: bool,
    /// Locality before.
    pub before: Fragmentation,
    /// Locality after.
    pub after: Fragmentation,
}

/// Why synth failed.
#[derive(Debug, Error)]
pub enum SynthError {
    /// The snapshot could not be walked or is damaged.
    #[error(transparent)]
    Locality(#[from] LocalityError),
    /// Loading or storing failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A bad option.
    #[error("--min-pack-use must be between 0 and 1, not {0}")]
    MinPackUse(f64),
}

/// A blob the snapshot needs and where it is.
#[derive(Debug, Clone, Copy)]
struct Needed {
    id: Id,
    blob_type: BlobType,
    pack: Id,
    entry: BlobEntry,
}

/// Lays snapshot `id` out again (see the module documentation); calls
/// `progress` with the plaintext bytes stored so far.
pub fn synth(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    opts: &SynthOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SynthReport, SynthError> {
    if !(0.0..=1.0).contains(&opts.min_pack_use) {
        return Err(SynthError::MinPackUse(opts.min_pack_use));
    }
    // Listed before anything is stored: the files to replace are exactly
    // these, never the ones this session writes.
    let old_index = repo.index_file_ids()?;
    let before = locality::measure(repo, id, snapshot)?;
    let order = restore_order(repo, id, snapshot)?;
    let moving = choose(repo, &order, opts.min_pack_use)?;
    let stored_before = repo.session_stats();
    let mut report = SynthReport {
        original: *id,
        snapshot: *id,
        blobs: order.len() as u64,
        blobs_rewritten: moving.len() as u64,
        patches_rewritten: moving
            .iter()
            .filter(|n| n.entry.compression == Compression::Patch)
            .count() as u64,
        bytes_rewritten: 0,
        bytes_stored: 0,
        packs_written: 0,
        original_removed: false,
        before,
        after: before,
    };
    if moving.is_empty() {
        return Ok(report);
    }
    for batch in split_by_bytes(&moving, BATCH_BYTES, |n| u64::from(n.entry.raw_len)) {
        let (loaded, _) =
            load_grouped(repo, batch.iter().map(|n| (n.pack, n.entry)), opts.threads)?;
        for n in batch {
            let data = loaded
                .get(&n.id)
                .ok_or(cairn_store::Error::BlobNotFound(n.id))?;
            repo.rewrite_blob(n.blob_type, n.id, data)?;
            report.bytes_rewritten += data.len() as u64;
        }
        progress(report.bytes_rewritten);
    }
    let retired: HashSet<Id> = moving.iter().map(|n| n.id).collect();
    repo.supersede_index(&old_index, &|_, e| retired.contains(&e.id))?;
    let mut synthetic = snapshot.clone();
    if !synthetic.tags.iter().any(|t| t == SYNTHETIC_TAG) {
        synthetic.tags.push(SYNTHETIC_TAG.to_string());
    }
    synthetic.parent = Some(*id);
    let new_id = repo.save_snapshot(&synthetic)?;
    let stats = repo.session_stats();
    report.snapshot = new_id;
    report.bytes_stored = stats.bytes_stored - stored_before.bytes_stored;
    report.packs_written = stats.packs - stored_before.packs;
    if !opts.keep_original && new_id != *id {
        report.original_removed = repo.delete_snapshot(id)?;
    }
    report.after = locality::measure(repo, &new_id, &synthetic)?;
    Ok(report)
}

/// The snapshot's blobs, each once, in the order a restore needs them
/// (patch bases not included: moved patches are stored whole).
fn restore_order(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
) -> Result<Vec<Needed>, LocalityError> {
    let mut order = Vec::new();
    let mut walker = Walker::without_patch_bases(repo);
    walker.walk_snapshot::<LocalityError>(id, snapshot, &mut |v| match v {
        Visit::Blob(r) => match r.location {
            Some((pack, entry)) => {
                order.push(Needed {
                    id: r.id,
                    blob_type: r.kind.blob_type(),
                    pack,
                    entry,
                });
                Ok(())
            }
            None => Err(LocalityError::Damaged {
                snapshot: *id,
                what: format!("{} {} is missing", r.kind.label(), r.id),
            }),
        },
        Visit::Damaged(d) => Err(LocalityError::Damaged {
            snapshot: *id,
            what: format!("{} {} cannot be read: {}", d.kind.label(), d.id, d.reason),
        }),
    })?;
    Ok(order)
}

/// Runs [`synth`] when the snapshot's spread (see [`Fragmentation::spread`])
/// is above `threshold`; `None` when it is not.
pub fn synth_if_spread_above(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
    threshold: f64,
    opts: &SynthOptions,
) -> Result<Option<SynthReport>, SynthError> {
    if locality::measure(repo, id, snapshot)?.spread <= threshold {
        return Ok(None);
    }
    synth(repo, id, snapshot, opts, &|_| {}).map(Some)
}

/// The blobs to move, in restore order: patches, and blobs of packs the
/// snapshot uses less than `min_use` of.
fn choose(repo: &Repository, order: &[Needed], min_use: f64) -> Result<Vec<Needed>, SynthError> {
    let totals = repo.indexed_pack_bytes()?;
    let mut used: HashMap<Id, u64> = HashMap::new();
    let mut groups = std::collections::HashSet::new();
    for n in order
        .iter()
        .filter(|n| n.entry.compression != Compression::Patch)
    {
        // Members of a solid group share its bytes: counted once.
        if n.entry.compression != Compression::Grouped || groups.insert((n.pack, n.entry.offset)) {
            *used.entry(n.pack).or_default() += u64::from(n.entry.stored_len);
        }
    }
    let poorly_used = |pack: &Id| {
        let total = totals.get(pack).copied().unwrap_or(0).max(1) as f64;
        let share = used.get(pack).copied().unwrap_or(0) as f64 / total;
        share < min_use
    };
    Ok(order
        .iter()
        .filter(|n| n.entry.compression == Compression::Patch || poorly_used(&n.pack))
        .copied()
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::disk::{DiskImage, DiskRestoreOptions, DiskSet, backup_disk, restore_disk};
    use cairn_store::backend::retry::{RetryBackend, RetryPolicy};
    use cairn_store::backend::{FaultPlan, FaultyBackend, MemoryBackend};
    use cairn_store::{Backend, Credential, InitOptions, OpenOptions, SeededRandom, SnapshotKind};
    use std::sync::Arc;
    use std::time::Duration;

    const PW: Credential<'static> = Credential::Password(b"pw");

    fn open_options(seed: &[u8]) -> OpenOptions {
        let mut open = OpenOptions::new(None);
        open.rng = Arc::new(SeededRandom::new(seed));
        open
    }

    /// The target, the snapshots, and the disk's content at each.
    type Fixture = (Arc<MemoryBackend>, Vec<(Id, Snapshot)>, Vec<Vec<u8>>);

    /// A repository holding a first full of a 6 MiB disk and `rounds`
    /// incrementals, each after 60 scattered 4 KiB writes (so they hold
    /// patches); returns the snapshots and the disk's content at each.
    fn fragmented(rounds: usize) -> Fixture {
        let backend = Arc::new(MemoryBackend::new());
        let mut init = InitOptions::for_tests();
        init.pack_size = 256 << 10;
        let repo = Repository::init(backend.clone(), &PW, &init, open_options(b"synth")).unwrap();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut data = cairn_chunker::testdata::pseudo_random(7, 6 << 20);
        let (mut snaps, mut contents) = (Vec::new(), Vec::new());
        let mut parent: Option<DiskImage> = None;
        for round in 0..=rounds {
            if round > 0 {
                let blocks = data.len() / 4096;
                for i in 0..60 {
                    let block = (i * 7919 + round * 104_729) % blocks;
                    let fresh =
                        cairn_chunker::testdata::pseudo_random((round * 1000 + i) as u64, 4096);
                    data[block * 4096..(block + 1) * 4096].copy_from_slice(&fresh);
                }
            }
            std::fs::write(&path, &data).unwrap();
            let (image, _) =
                backup_disk(&repo, &chunker, &path, parent.as_ref(), 2, &|_| {}).unwrap();
            let set = DiskSet {
                version: 1,
                disks: vec![image.clone()],
            };
            let root = repo
                .save_blob(BlobType::Meta, &serde_json::to_vec(&set).unwrap())
                .unwrap()
                .id;
            let snapshot = Snapshot {
                time: 1_800_000_000 + round as i64,
                time_nanos: 0,
                hostname: "h".into(),
                username: "u".into(),
                kind: SnapshotKind::Disk,
                paths: vec!["/dev/vda".into()],
                tags: vec![],
                parent: None,
                root,
                program_version: "test".into(),
                stats: Default::default(),
                original: None,
            };
            snaps.push((repo.save_snapshot(&snapshot).unwrap(), snapshot));
            contents.push(data.clone());
            parent = Some(image);
        }
        (backend, snaps, contents)
    }

    fn restores_exactly(repo: &Repository, snapshot: &Snapshot, want: &[u8]) {
        let set = DiskSet::load(repo, &snapshot.root).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let opts = DiskRestoreOptions {
            threads: 2,
            verify: true,
        };
        restore_disk(repo, &set.disks[0], &out, &opts, &|_| {}).unwrap();
        assert!(std::fs::read(&out).unwrap() == want, "restore differs");
    }

    fn quick_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 12,
            base_delay: Duration::from_micros(50),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn synth_stores_patches_whole_in_restore_order_and_restores_exactly() {
        let (backend, snaps, contents) = fragmented(4);
        let repo = Repository::open(backend, &PW, open_options(b"s1")).unwrap();
        let (last_id, last) = snaps.last().unwrap().clone();
        let report = synth(&repo, &last_id, &last, &SynthOptions::default(), &|_| {}).unwrap();
        assert!(report.before.patches > 0, "{report:?}");
        assert_eq!(
            report.patches_rewritten, report.before.patches,
            "{report:?}"
        );
        assert_eq!(report.after.patches, 0, "{report:?}");
        assert!(report.after.packs <= report.before.packs, "{report:?}");
        assert!(report.original_removed);
        // The rewrite stores no more than the snapshot's own size.
        assert!(report.bytes_rewritten <= report.before.bytes, "{report:?}");
        let synthetic = repo.load_snapshot(&report.snapshot).unwrap();
        assert!(synthetic.tags.iter().any(|t| t == SYNTHETIC_TAG));
        assert_eq!(synthetic.parent, Some(last_id));
        assert_eq!((synthetic.time, synthetic.root), (last.time, last.root));
        assert!(repo.load_snapshot(&last_id).is_err(), "original removed");
        // Every other snapshot still restores; so does the synthetic one,
        // also after reopening (one location per blob in the new index).
        for ((_, s), want) in snaps.iter().zip(&contents).take(snaps.len() - 1) {
            restores_exactly(&repo, s, want);
        }
        restores_exactly(&repo, &synthetic, contents.last().unwrap());
        // A second synth finds it laid out well.
        let again = synth(
            &repo,
            &report.snapshot,
            &synthetic,
            &SynthOptions::default(),
            &|_| {},
        )
        .unwrap();
        assert_eq!(again.blobs_rewritten, 0, "{again:?}");
        assert_eq!(again.snapshot, report.snapshot);
    }

    #[test]
    fn synth_through_transient_faults_and_a_vanishing_target_keeps_the_repository_valid() {
        let (backend, snaps, contents) = fragmented(3);
        let (last_id, last) = snaps.last().unwrap().clone();
        // 10 % of calls fail transiently: retries carry synth through.
        let faulty: Arc<dyn Backend> = Arc::new(RetryBackend::new(
            Arc::new(FaultyBackend::new(
                backend.clone(),
                FaultPlan::new(3).fail(0.10),
            )),
            quick_retries(),
        ));
        {
            let repo = Repository::open(faulty, &PW, open_options(b"s2")).unwrap();
            let opts = SynthOptions {
                keep_original: true,
                ..SynthOptions::default()
            };
            let report = synth(&repo, &last_id, &last, &opts, &|_| {}).unwrap();
            assert!(report.blobs_rewritten > 0);
            assert!(!report.original_removed);
        }
        // The target goes away part way through a full rewrite of the
        // first snapshot, at several points (while walking, loading,
        // uploading packs, writing the index): synth fails, every snapshot
        // still restores, and a rerun completes (each attempt keeps what
        // it indexed, so the later ones have less to move).
        let (first_id, first) = snaps[0].clone();
        for gone_after in [20, 40, 60, 80] {
            let vanishing: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
                backend.clone(),
                FaultPlan::new(gone_after).gone_after(gone_after),
            ));
            let repo = Repository::open(vanishing, &PW, open_options(b"s3")).unwrap();
            let all = SynthOptions {
                min_pack_use: 1.0,
                keep_original: true,
                ..SynthOptions::default()
            };
            let result = synth(&repo, &first_id, &first, &all, &|_| {});
            assert!(result.is_err(), "gone after {gone_after} calls: {result:?}");
            drop(repo);
            let repo = Repository::open(backend.clone(), &PW, open_options(b"s4")).unwrap();
            for ((_, s), want) in snaps.iter().zip(&contents) {
                restores_exactly(&repo, s, want);
            }
        }
        let repo = Repository::open(backend, &PW, open_options(b"s5")).unwrap();
        let report = synth(&repo, &first_id, &first, &SynthOptions::default(), &|_| {}).unwrap();
        let synthetic = repo.load_snapshot(&report.snapshot).unwrap();
        restores_exactly(&repo, &synthetic, &contents[0]);
    }
}
