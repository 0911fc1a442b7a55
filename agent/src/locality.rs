//! How scattered a snapshot is over the repository's packs: the cost of
//! restoring it.
//!
//! Every snapshot is logically full, but after months of incrementals the
//! newest one's blobs sit in the packs of every backup that wrote one of
//! them, next to blobs other snapshots need, and its changed chunks are
//! patches whose bases sit in older packs still. A restore then reads more
//! packs, and more of each pack that it does not need (studies of dedup
//! stores measure restores slowing by large factors this way). Two figures
//! describe it, computed from the index alone (no pack is read):
//!
//! - **packs per GiB**: the distinct packs a restore touches per GiB of the
//!   snapshot's distinct blob data (a fresh full of compressible data
//!   touches a few dozen);
//! - **read amplification**: the stored bytes of the packs touched over the
//!   stored bytes of the blobs needed (1.0: every pack touched is wholly
//!   used; the cost of a restore that fetches whole packs);
//! - **spread**: the packs touched over the fewest packs that could hold
//!   what is needed (1.0 ideal; what `--synth-above` compares).
//!
//! `cairn stats SNAPSHOT` shows them and `cairn synth` (see [`crate::synth`])
//! uses them to decide whether a snapshot is worth laying out again.

use std::collections::{HashMap, HashSet};

use cairn_store::{Compression, Id, Repository, Snapshot};
use serde::Serialize;
use thiserror::Error;

use crate::reach::{BlobKind, Visit, WalkError, Walker};

/// A snapshot's restore locality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Fragmentation {
    /// Distinct blobs a restore needs (patch bases included).
    pub blobs: u64,
    /// Of those, blobs stored as patches.
    pub patches: u64,
    /// Plaintext bytes of the blobs the snapshot references (each distinct
    /// blob once; patch bases, which only rebuild them, and zero runs,
    /// which store nothing, are not counted).
    pub bytes: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
    /// Distinct packs they are in.
    pub packs: u64,
    /// Stored bytes of those packs, as far as the index names their blobs.
    pub pack_bytes: u64,
    /// Packs per GiB of `bytes`.
    pub packs_per_gib: f64,
    /// `pack_bytes / stored_bytes`.
    pub read_amplification: f64,
    /// Packs touched over the fewest packs that could hold the needed
    /// stored bytes (`stored_bytes / pack_size`, rounded up): 1.0 for an
    /// ideal layout, about 1.1 for a fresh full. The figure a synth
    /// policy compares with its threshold.
    pub spread: f64,
}

/// Why locality could not be measured.
#[derive(Debug, Error)]
pub enum LocalityError {
    /// The walk failed (target or cache).
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The repository's cache failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A blob the snapshot needs is missing or unreadable.
    #[error("snapshot {snapshot}: {what}; run `cairn check` to see the damage")]
    Damaged {
        /// The snapshot.
        snapshot: Id,
        /// What is wrong.
        what: String,
    },
}

/// Per-pack tallies of the blobs a snapshot needs, from one walk.
#[derive(Debug, Default)]
pub struct PackUse {
    /// Stored bytes of needed blobs, per pack.
    pub used: HashMap<Id, u64>,
    /// The figures.
    pub fragmentation: Fragmentation,
}

/// Measures a snapshot's locality.
pub fn measure(
    repo: &Repository,
    id: &Id,
    snapshot: &Snapshot,
) -> Result<Fragmentation, LocalityError> {
    Ok(pack_use(repo, id, snapshot)?.fragmentation)
}

/// Walks a snapshot (patch bases included: a restore reads them) and
/// tallies, per pack, the stored bytes it needs.
pub fn pack_use(repo: &Repository, id: &Id, snapshot: &Snapshot) -> Result<PackUse, LocalityError> {
    let mut f = Fragmentation::default();
    let mut used: HashMap<Id, u64> = HashMap::new();
    let mut groups = std::collections::HashSet::new();
    let mut walker = Walker::new(repo);
    walker.walk_snapshot::<LocalityError>(id, snapshot, &mut |v| match v {
        Visit::Blob(r) => {
            let Some((pack, entry)) = r.location else {
                return Err(LocalityError::Damaged {
                    snapshot: *id,
                    what: format!("{} {} is missing", r.kind.label(), r.id),
                });
            };
            f.blobs += 1;
            f.patches += u64::from(entry.compression == Compression::Patch);
            if r.kind != BlobKind::PatchBase {
                f.bytes += u64::from(entry.raw_len);
            }
            // Members of a solid group share its bytes: counted once.
            if entry.compression != Compression::Grouped || groups.insert((pack, entry.offset)) {
                f.stored_bytes += u64::from(entry.stored_len);
                *used.entry(pack).or_default() += u64::from(entry.stored_len);
            }
            Ok(())
        }
        Visit::Damaged(d) => Err(LocalityError::Damaged {
            snapshot: *id,
            what: format!("{} {} cannot be read: {}", d.kind.label(), d.id, d.reason),
        }),
    })?;
    let sizes = repo.indexed_pack_bytes()?;
    let touched: HashSet<&Id> = used.keys().collect();
    f.packs = touched.len() as u64;
    f.pack_bytes = touched
        .iter()
        .map(|p| sizes.get(*p).copied().unwrap_or(0))
        .sum();
    f.packs_per_gib = if f.bytes > 0 {
        f.packs as f64 / (f.bytes as f64 / f64::from(1u32 << 30))
    } else {
        0.0
    };
    f.read_amplification = if f.stored_bytes > 0 {
        f.pack_bytes as f64 / f.stored_bytes as f64
    } else {
        1.0
    };
    let pack_size = u64::from(repo.config().pack_size).max(1);
    let fewest = f.stored_bytes.div_ceil(pack_size).max(1);
    f.spread = f.packs as f64 / fewest as f64;
    Ok(PackUse {
        used,
        fragmentation: f,
    })
}
