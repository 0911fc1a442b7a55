//! A target that ignores create-only writes, **a test tool**.
//!
//! Some S3-compatible servers accept `If-None-Match: *` and then overwrite
//! anyway (Garage, s3rver), and some let several concurrent creators of one
//! key all succeed (s3s-fs). cairn must stay correct there (docs/targets.md,
//! "What cairn relies on"): content-named objects make a second write of a
//! name harmless, and locks are designed not to need create-only at all.
//! [`OverwritingBackend`] wraps any backend and gives it those semantics, so
//! that tests can prove it: `write_new` of a name that exists replaces the
//! object and reports success.
//!
//! Over a real backend the replacement is a delete followed by a create, so
//! a reader racing it may briefly find the object missing; the servers it
//! imitates replace atomically. Tests that race readers against
//! overwrites of one name should wrap a [`MemoryBackend`](super::MemoryBackend),
//! whose [`raw_put`](super::MemoryBackend::raw_put) this wrapper uses when
//! given one through [`OverwritingBackend::over_memory`].

use super::{Backend, BackendError, Handle, MemoryBackend, ObjectInfo, ObjectKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How the wrapper replaces an existing object.
enum Replace {
    /// Delete, then create again (any backend).
    DeleteThenCreate,
    /// An atomic in-place replacement.
    Memory(Arc<MemoryBackend>),
}

/// A backend whose `write_new` never fails with AlreadyExists: an existing
/// object is silently replaced, as by a server that ignores `If-None-Match`.
pub struct OverwritingBackend {
    inner: Arc<dyn Backend>,
    replace: Replace,
    overwrites: AtomicU64,
}

impl std::fmt::Debug for OverwritingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverwritingBackend")
            .field("location", &self.inner.location())
            .field("overwrites", &self.overwrites())
            .finish_non_exhaustive()
    }
}

impl OverwritingBackend {
    /// Wraps any backend; an overwrite is a delete then a create.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        OverwritingBackend {
            inner,
            replace: Replace::DeleteThenCreate,
            overwrites: AtomicU64::new(0),
        }
    }

    /// Wraps a memory backend; an overwrite replaces the object atomically.
    pub fn over_memory(inner: Arc<MemoryBackend>) -> Self {
        OverwritingBackend {
            inner: inner.clone(),
            replace: Replace::Memory(inner),
            overwrites: AtomicU64::new(0),
        }
    }

    /// How many writes replaced an existing object so far.
    pub fn overwrites(&self) -> u64 {
        self.overwrites.load(Ordering::Relaxed)
    }
}

impl Backend for OverwritingBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(kind)
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        self.inner.read(handle)
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.read_range(handle, offset, len)
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        loop {
            match self.inner.write_new(handle, data) {
                Err(BackendError::AlreadyExists { .. }) => {}
                other => return other,
            }
            self.overwrites.fetch_add(1, Ordering::Relaxed);
            match &self.replace {
                Replace::Memory(memory) => {
                    memory.raw_put(handle, data);
                    return Ok(());
                }
                // Another writer may recreate it in between: go round again.
                Replace::DeleteThenCreate => match self.inner.delete(handle) {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                },
            }
        }
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        self.inner.delete(handle)
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.inner.replace(handle, data)
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        self.inner.stat(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    #[test]
    fn a_second_write_replaces_the_first_and_succeeds() {
        let memory = Arc::new(MemoryBackend::new());
        let h = Handle::new(ObjectKind::Lock, &Id([3; 32]));
        for b in [
            OverwritingBackend::over_memory(memory.clone()),
            OverwritingBackend::new(memory.clone()),
        ] {
            b.write_new(&h, b"first").unwrap();
            b.write_new(&h, b"second").unwrap();
            assert_eq!(b.read(&h).unwrap(), b"second");
            assert_eq!(b.overwrites(), 1);
            b.delete(&h).unwrap();
        }
    }
}
