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
//! by applying it). Blobs are read from the source by `transfers` threads
//! at once, in batches as the walk finds them (each blob is a ranged read,
//! so one at a time would wait on a round trip per blob); the destination
//! uploads its packs in the background. The manifest gets an `original` field naming the source
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

use crate::parallel::on_threads;
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
/// those `dest` has a copy of, reading `transfers` blobs from the source at
/// once. Checks compatibility first. Callers hold a shared lock on each
/// repository.
pub fn copy_snapshots(
    source: &Repository,
    dest: &Repository,
    snapshots: &[(Id, Snapshot)],
    transfers: usize,
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
        let mut sender = Sender {
            source,
            dest,
            transfers,
            batch: Vec::new(),
            report: &mut report,
        };
        send_blobs(&mut sender, &mut walker, id, snapshot)?;
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

/// Blobs this many at most wait to be sent together.
const BATCH: usize = 256;

/// Sends blobs from the source to the destination, several at once.
struct Sender<'a> {
    source: &'a Repository,
    dest: &'a Repository,
    transfers: usize,
    batch: Vec<Id>,
    report: &'a mut CopyReport,
}

impl Sender<'_> {
    /// Queues a blob; a full batch is sent.
    fn push(&mut self, id: Id) -> Result<(), CopyError> {
        self.batch.push(id);
        if self.batch.len() >= BATCH {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Sends the queued blobs, `transfers` at once, in runs of
    /// [`RUN`] neighbours (the destination groups the data blobs of a run
    /// again, as the source stored them).
    fn send_batch(&mut self) -> Result<(), CopyError> {
        let batch = std::mem::take(&mut self.batch);
        let runs: Vec<Vec<Id>> = batch.chunks(RUN).map(<[Id]>::to_vec).collect();
        let report = std::sync::Mutex::new(&mut *self.report);
        on_threads(self.transfers, runs, |run| {
            let sent = send(self.source, self.dest, &run)?;
            let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
            for s in sent {
                match s {
                    Some((raw, stored)) => {
                        report.blobs_sent += 1;
                        report.bytes_sent += raw;
                        report.bytes_stored += stored;
                    }
                    None => report.blobs_present += 1,
                }
            }
            Ok::<(), CopyError>(())
        })
    }
}

/// Blobs sent together, as neighbours.
const RUN: usize = 16;

/// Sends every blob `snapshot` reaches that the destination lacks; patches
/// last.
fn send_blobs(
    sender: &mut Sender<'_>,
    walker: &mut Walker<'_>,
    id: &Id,
    snapshot: &Snapshot,
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
            if sender.dest.has_blob(&r.id) {
                sender.report.blobs_present += 1;
            } else if entry.compression == Compression::Patch {
                patches.push(r.id);
            } else {
                sender.push(r.id)?;
            }
            Ok(())
        }
    })?;
    // Every base is sent (or queued) before the first patch is.
    sender.send_batch()?;
    for patch in patches {
        sender.push(patch)?;
    }
    sender.send_batch()
}

/// Moves a run of blobs in their stored form; for each, its plaintext and
/// stored sizes if the destination lacked it, `None` if it had it.
fn send(
    source: &Repository,
    dest: &Repository,
    ids: &[Id],
) -> Result<Vec<Option<(u64, u64)>>, CopyError> {
    let stored = ids
        .iter()
        .map(|id| source.load_stored_blob(id))
        .collect::<Result<Vec<_>, _>>()?;
    let saved = dest.save_stored_blobs(&stored)?;
    Ok(saved
        .iter()
        .zip(&stored)
        .map(|(saved, stored)| {
            saved
                .new
                .then(|| (u64::from(stored.raw_len), saved.stored_len))
        })
        .collect())
}
