//! Pack uploads in the background.
//!
//! A worker thread that fills a pack hands it here and goes back to
//! chunking and compressing while the pack goes up on a thread of its own.
//! At most `limit` packs upload at once ([`OpenOptions::transfers`], the
//! agent's `--transfers`): on a remote target, where one upload mostly
//! waits on round trips, several in flight keep the link busy without
//! tying up the CPU workers; and a worker that finishes one pack more waits
//! for a slot, which bounds memory to about `limit` packs.
//!
//! The session records an upload (its blobs are then in an uploaded pack,
//! waiting for an index file) the next time a pack is handed over or the
//! session flushes. Until then the pack's bytes stay here, so a blob can be
//! loaded back at every moment of its life: in the open pack, uploading, or
//! uploaded. An upload that failed is reported by that next call; the
//! backup then stops, as it did when uploads ran on the workers.
//!
//! [`OpenOptions::transfers`]: super::OpenOptions::transfers

use crate::backend::{Backend, BackendError, Handle, ObjectKind};
use crate::id::Id;
use crate::pack::FinishedPack;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// An upload that finished, and how.
pub(super) type Finished = (Arc<FinishedPack>, Result<(), BackendError>);

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
    /// Every pack handed over and not yet recorded by the session.
    packs: HashMap<Id, Arc<FinishedPack>>,
    /// Finished uploads the session has not recorded yet.
    finished: Vec<Finished>,
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
        self.state().packs.insert(pack.id, pack.clone());
        pack
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

    fn finish(&self, pack: Arc<FinishedPack>, result: Result<(), BackendError>) {
        let mut s = self.state();
        s.running -= 1;
        s.finished.push((pack, result));
        drop(s);
        self.changed.notify_all();
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
    pub(super) fn pack(&self, id: &Id) -> Option<Arc<FinishedPack>> {
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
