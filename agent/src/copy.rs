//! Copying snapshots to another repository (`cairn copy`).
//!
//! Blob ids are keyed hashes and chunk boundaries come from a secret gear
//! seed (docs/format.md §2.2), so two repositories with independent keys
//! give the same data different ids and different cuts. A copy therefore
//! needs a destination whose key set shares the source's id key and gear
//! seed (`cairn init --copy-chunker-params-from SOURCE`): then every blob
//! keeps its id, trees and extent lists are copied as they are (the ids
//! inside them stay valid), and only the snapshot manifest is written anew.
//! [`check_compatible`] refuses any other destination, comparing keyed
//! fingerprints of the secrets, never the secrets themselves.
//!
//! Each blob a snapshot reaches ([`crate::reach::Walker`], patch bases
//! included) that the destination lacks is moved in its stored form
//! ([`Repository::load_stored_blob`], [`Repository::save_stored_blob`]):
//! no recompression, a patch stays a patch. A patch is sent after the walk
//! of its snapshot, when its bases are in the destination (the walker
//! reports a patch before its bases, and the destination verifies a patch
//! by applying it). The manifest gets an `original` field naming the source
//! snapshot; a rerun skips every snapshot whose copy is there, so copying
//! is incremental twice over: by snapshot and by blob.
//!
//! Why not a rewriting copy into any repository: with foreign keys every
//! chunk would have to be read whole, cut again with the destination's
//! chunker, hashed and stored, and every tree and extent list rewritten:
//! a backup from the source repository, without the source's dedup in the
//! destination's favour. Creating the destination with shared chunker
//! secrets is free and keeps copies cheap, so only that is supported.

use std::collections::HashMap;

use cairn_store::{Compression, Id, Repository, Snapshot};
use serde::Serialize;
use thiserror::Error;

use crate::reach::{Visit, WalkError, Walker};

/// Why a copy failed.
#[derive(Debug, Error)]
pub enum CopyError {
    /// The destination's blob ids or chunking differ from the source's.
    #[error(
        "the destination repository's {what} differ from the source's, so blobs cannot be copied by id \
         (it was not created from the source's chunker secrets); create the destination with \
         `cairn init --copy-chunker-params-from SOURCE` and copy into that"
    )]
    Incompatible {
        /// What differs: "id key and gear seed" or "chunker parameters".
        what: &'static str,
    },
    /// A snapshot reaches a blob that is missing or does not read in the
    /// source.
    #[error(
        "snapshot {snapshot} of the source cannot be copied: {what}; run `cairn check` on the source, and `cairn repair snapshots` to save what is readable"
    )]
    Damaged {
        /// The snapshot.
        snapshot: Id,
        /// What is wrong.
        what: String,
    },
    /// The source or destination failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A walk of the source failed (the target or cache).
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// A snapshot copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// Its id in the source.
    pub source: Id,
    /// The copy's id in the destination.
    pub copy: Id,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Snapshots copied now.
    pub copied: Vec<Copied>,
    /// Snapshots skipped because the destination has their copy.
    pub skipped: usize,
    /// Blobs sent (the destination lacked them).
    pub blobs_sent: u64,
    /// Their plaintext bytes.
    pub bytes_sent: u64,
    /// Bytes they take in the destination (encrypted, as stored).
    pub bytes_stored: u64,
    /// Blobs the snapshots reach that the destination already had.
    pub blobs_present: u64,
}

/// Refuses a destination that does not share the source's id key, gear
/// seed and chunker parameters.
pub fn check_compatible(source: &Repository, dest: &Repository) -> Result<(), CopyError> {
    if source.keys().ids_fingerprint() != dest.keys().ids_fingerprint() {
        return Err(CopyError::Incompatible {
            what: "id key and gear seed",
        });
    }
    if source.config().chunker != dest.config().chunker {
        return Err(CopyError::Incompatible {
            what: "chunker parameters",
        });
    }
    Ok(())
}

/// For each snapshot of `dest` that is a copy, the source snapshot it was
/// copied from (and each snapshot's own id, so a copy back to where a
/// snapshot came from is recognised too), mapped to the destination's id.
fn copies_in(dest: &Repository) -> Result<HashMap<Id, Id>, CopyError> {
    let mut map = HashMap::new();
    for (id, s) in dest.list_snapshots()? {
        map.insert(id, id);
        if let Some(original) = s.original {
            map.insert(original, id);
        }
    }
    Ok(map)
}

/// Copies `snapshots` (from `source`, oldest first) into `dest`, skipping
/// those `dest` has a copy of. Checks compatibility first. Callers hold a
/// shared lock on each repository.
pub fn copy_snapshots(
    source: &Repository,
    dest: &Repository,
    snapshots: &[(Id, Snapshot)],
) -> Result<CopyReport, CopyError> {
    check_compatible(source, dest)?;
    let mut copies = copies_in(dest)?;
    let mut report = CopyReport::default();
    let mut walker = Walker::new(source);
    for (id, snapshot) in snapshots {
        let known =
            copies.contains_key(id) || snapshot.original.is_some_and(|o| copies.contains_key(&o));
        if known {
            report.skipped += 1;
            continue;
        }
        send_blobs(source, dest, &mut walker, id, snapshot, &mut report)?;
        let mut copy = snapshot.clone();
        copy.original = Some(snapshot.original.unwrap_or(*id));
        copy.parent = snapshot.parent.and_then(|p| copies.get(&p).copied());
        let copy_id = dest.save_snapshot(&copy)?;
        copies.insert(*id, copy_id);
        report.copied.push(Copied {
            source: *id,
            copy: copy_id,
        });
    }
    dest.flush()?;
    Ok(report)
}

/// Sends every blob `snapshot` reaches that `dest` lacks; patches last.
fn send_blobs(
    source: &Repository,
    dest: &Repository,
    walker: &mut Walker<'_>,
    id: &Id,
    snapshot: &Snapshot,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let mut patches = Vec::new();
    let damaged = |what: String| CopyError::Damaged {
        snapshot: *id,
        what,
    };
    walker.walk_snapshot::<CopyError>(id, snapshot, &mut |visit| match visit {
        Visit::Damaged(d) => Err(damaged(format!(
            "{} {}: {}",
            d.kind.label(),
            d.id,
            d.reason
        ))),
        Visit::Blob(r) => {
            let Some((_, entry)) = r.location else {
                return Err(damaged(format!("{} {} is missing", r.kind.label(), r.id)));
            };
            if dest.has_blob(&r.id) {
                report.blobs_present += 1;
            } else if entry.compression == Compression::Patch {
                patches.push(r.id);
            } else {
                send(source, dest, &r.id, report)?;
            }
            Ok(())
        }
    })?;
    for patch in patches {
        send(source, dest, &patch, report)?;
    }
    Ok(())
}

/// Moves one blob in its stored form.
fn send(
    source: &Repository,
    dest: &Repository,
    id: &Id,
    report: &mut CopyReport,
) -> Result<(), CopyError> {
    let stored = source.load_stored_blob(id)?;
    let saved = dest.save_stored_blob(&stored)?;
    if saved.new {
        report.blobs_sent += 1;
        report.bytes_sent += u64::from(stored.raw_len);
        report.bytes_stored += saved.stored_len;
    } else {
        report.blobs_present += 1;
    }
    Ok(())
}
