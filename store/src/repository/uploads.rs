//! Pack uploads in the background.
//!
//! A worker thread that fills a pack hands it here and goes back to
//! chunking and compressing while the pack goes up on a thread of its own.
//! At most `limit` packs upload at once ([`OpenOptions::transfers`], the
//! agent's `--transfers`): on a remote target, where one upload mostly
//! waits on round trips, several in flight keep the link busy without
//! tying up the CPU workers. Memory is bounded by `limit` pack buffers,
//! open or handed over and not yet uploaded, plus the open pack of the
//! other blob type: a new pack opens only while fewer than `limit` finished
//! ones are in memory, checked with its slot held
//! ([`Uploads::wait_for_room`]). A worker's wait for a slot in
//! [`Uploads::start`] alone bounded them before, and each worker blocked
//! there held a full pack while the others filled the next: five 16 MiB
//! data packs alive at once on 2 cores; a wait before each append, outside
//! the slot, let two workers pass it at once and a third pack open
//! (heaptrack, BENCHMARKS.md).
//!
//! The session records an upload (its blobs are then in an uploaded pack,
//! waiting for an index file) the next time a pack is handed over or the
//! session flushes. A pack's bytes are let go as soon as its upload
//! succeeds, not at that next call: holding them until then cost one or two
//! packs of peak memory (35-50 MB on a local full backup, BENCHMARKS.md).
//! Until the session records it, an uploaded pack stays listed here as on
//! the target, so a blob can be loaded back at every moment of its life:
//! from the open pack, from memory while uploading, from the target once
//! uploaded. An upload that failed keeps its bytes until the session
//! records the failure at that next call; the backup then stops, as it did
//! when uploads ran on the workers.
//!
//! [`OpenOptions::transfers`]: super::OpenOptions::transfers

use crate::backend::{Backend, BackendError, Handle, ObjectKind};
use crate::id::Id;
use crate::index::BlobEntry;
use crate::pack::FinishedPack;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// An upload that finished, and how.
pub(super) struct Finished {
    /// The pack's object id.
    pub(super) id: Id,
    /// Its blobs, in order.
    pub(super) entries: Vec<BlobEntry>,
    /// Whether it is on the target.
    pub(super) result: Result<(), BackendError>,
}

/// Where the bytes of a pack handed over and not yet recorded are.
#[derive(Clone)]
pub(super) enum HeldPack {
    /// Still in memory: uploading, or its upload failed.
    InMemory(Arc<FinishedPack>),
    /// Uploaded: read it from the target.
    OnTarget,
}

/// The packs being uploaded and those whose upload finished.
pub(super) struct Uploads {
    limit: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Uploads started and not yet finished.
    running: usize,
    /// Packs handed over whose upload has not finished (started or not).
    unfinished: usize,
    /// Every pack handed over and not yet recorded by the session.
    packs: HashMap<Id, HeldPack>,
    /// Finished uploads the session has not recorded yet.
    finished: Vec<Finished>,
    /// Buffers of uploaded packs, for the next packs to be written in.
    spare: Vec<Vec<u8>>,
    /// Packs opened and not yet handed over.
    open: usize,
    /// The most pack buffers in memory at once: open, or handed over and
    /// not uploaded.
    peak_in_memory: usize,
}

impl State {
    fn note_in_memory(&mut self) {
        self.peak_in_memory = self.peak_in_memory.max(self.open + self.unfinished);
    }
}

impl Uploads {
    /// At most `limit` uploads at once (at least one).
    pub(super) fn new(limit: usize) -> Arc<Uploads> {
        Arc::new(Uploads {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `pack` readable ([`Uploads::pack`]) until the session records
    /// its upload; [`Uploads::start`] sends it.
    pub(super) fn register(&self, pack: FinishedPack) -> Arc<FinishedPack> {
        let pack = Arc::new(pack);
        let mut s = self.state();
        s.open = s.open.saturating_sub(1);
        s.unfinished += 1;
        s.note_in_memory();
        s.packs.insert(pack.id, HeldPack::InMemory(pack.clone()));
        pack
    }

    /// Waits while `limit` packs handed over are not uploaded yet. Called
    /// before a new pack is opened, with its slot held, by a caller that
    /// has started every pack it handed over: every pack it waits on is
    /// uploading or about to be started by a thread that needs no slot, so
    /// the wait ends.
    pub(super) fn wait_for_room(&self) {
        let mut s = self.state();
        while s.unfinished >= self.limit {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Notes that a pack was opened (its buffer is in memory until the
    /// pack is handed over and uploaded).
    pub(super) fn opened(&self) {
        let mut s = self.state();
        s.open += 1;
        s.note_in_memory();
    }

    /// The most pack buffers that were in memory at once.
    pub(super) fn peak_in_memory(&self) -> usize {
        self.state().peak_in_memory
    }

    /// Waits until fewer than `limit` uploads run, then uploads `pack` on a
    /// thread of its own (here, if no thread can be started).
    pub(super) fn start(self: &Arc<Self>, backend: &Arc<dyn Backend>, pack: Arc<FinishedPack>) {
        {
            let mut s = self.state();
            while s.running >= self.limit {
                s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.running += 1;
        }
        let (me, thread_backend, thread_pack) = (self.clone(), backend.clone(), pack.clone());
        let spawned = std::thread::Builder::new()
            .name("cairn-upload".into())
            .spawn(move || {
                let result = upload(thread_backend.as_ref(), &thread_pack);
                me.finish(thread_pack, result);
            });
        if spawned.is_err() {
            let result = upload(backend.as_ref(), &pack);
            self.finish(pack, result);
        }
    }

    /// Notes how an upload ended. An uploaded pack's buffer becomes spare,
    /// unless a load of one of its blobs holds the pack for a moment (or
    /// enough are spare): then it is freed, after the lock.
    fn finish(&self, pack: Arc<FinishedPack>, result: Result<(), BackendError>) {
        let mut s = self.state();
        s.running -= 1;
        s.unfinished -= 1;
        let mut unused = None;
        let (id, entries) = if result.is_ok() {
            // Drops the listing's reference: `pack` may now be the last.
            s.packs.insert(pack.id, HeldPack::OnTarget);
            match Arc::try_unwrap(pack) {
                Ok(FinishedPack { id, bytes, entries }) => {
                    if s.spare.len() <= self.limit {
                        s.spare.push(bytes);
                    } else {
                        unused = Some(bytes);
                    }
                    (id, entries)
                }
                Err(shared) => (shared.id, shared.entries.clone()),
            }
        } else {
            (pack.id, pack.entries.clone())
        };
        s.finished.push(Finished {
            id,
            entries,
            result,
        });
        drop(s);
        self.changed.notify_all();
        drop(unused);
    }

    /// A buffer an uploaded pack was written in, if one is spare.
    ///
    /// Reusing them keeps memory flat: freed 16 MiB buffers, allocated
    /// anew on other threads, made glibc's heaps grow by 10-40 MB from run
    /// to run of the same backup (BENCHMARKS.md).
    pub(super) fn spare_buffer(&self) -> Option<Vec<u8>> {
        self.state().spare.pop()
    }

    /// The uploads that finished since the last call.
    pub(super) fn take_finished(&self) -> Vec<Finished> {
        std::mem::take(&mut self.state().finished)
    }

    /// Waits until no upload runs, then returns the finished ones.
    pub(super) fn wait_all(&self) -> Vec<Finished> {
        let mut s = self.state();
        while s.running > 0 {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut s.finished)
    }

    /// Drops a pack the session has recorded.
    pub(super) fn forget(&self, id: &Id) {
        self.state().packs.remove(id);
    }

    /// A pack handed over and not yet recorded.
    pub(super) fn pack(&self, id: &Id) -> Option<HeldPack> {
        self.state().packs.get(id).cloned()
    }
}

/// Uploads a pack. A pack of that name on the target already is this one
/// (the name is the hash of its bytes), e.g. after a retried upload whose
/// first attempt landed: that counts as success.
fn upload(backend: &dyn Backend, pack: &FinishedPack) -> Result<(), BackendError> {
    match backend.write_new(&Handle::new(ObjectKind::Pack, &pack.id), &pack.bytes) {
        Err(BackendError::AlreadyExists { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{FaultPlan, FaultyBackend, MemoryBackend};
    use crate::index::BlobType;
    use crate::keyfile::Credential;
    use crate::repository::{InitOptions, OpenOptions, Repository};
    use std::sync::Arc;
    use std::time::Duration;

    /// Incompressible bytes, different for every (thread, blob).
    fn blob(thread: u8, n: u16) -> Vec<u8> {
        let mut seed = blake3::Hasher::new();
        seed.update(&[thread]).update(&n.to_le_bytes());
        let mut out = vec![0u8; 64 << 10];
        seed.finalize_xof().fill(&mut out);
        out
    }

    #[test]
    fn no_more_pack_buffers_than_transfers_are_in_memory() {
        for transfers in [1, 2, 3] {
            // Slow uploads, so that finished packs pile up if they may.
            let plan = FaultPlan::new(7).delay(1.0, Duration::from_millis(4));
            let backend = Arc::new(FaultyBackend::new(Arc::new(MemoryBackend::new()), plan));
            let mut open = OpenOptions::new(None);
            open.transfers = transfers;
            let pw = Credential::Password(b"pw");
            let repo = Repository::init(backend, &pw, &InitOptions::for_tests(), open).unwrap();
            // Four writers, 1 MiB test packs: a pack fills every 16 blobs.
            std::thread::scope(|s| {
                for t in 0..4u8 {
                    let repo = &repo;
                    s.spawn(move || {
                        for n in 0..48u16 {
                            repo.save_blob(BlobType::Data, &blob(t, n)).unwrap();
                        }
                    });
                }
            });
            repo.flush().unwrap();
            assert_eq!(repo.session_stats().blobs_new, 4 * 48);
            let peak = repo.pack_buffers_peak();
            assert!(
                (1..=transfers).contains(&peak),
                "{peak} pack buffers with transfers {transfers}"
            );
        }
    }
}
