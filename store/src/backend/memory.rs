//! A repository held in memory, for tests.
//!
//! It has the same semantics as every other backend (it runs the same
//! [`conformance`](super::conformance) suite) plus helpers no real target
//! offers: corrupting a stored object, overwriting one in place (as a
//! hostile or broken target might), and counting objects.

use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The stored objects by handle. Values are shared so that a read copies
/// the bytes outside the lock.
type Objects = BTreeMap<Handle, Arc<Vec<u8>>>;

/// A repository in memory. Cheap to create; every instance is empty and
/// independent.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<Objects>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flips the bits of `xor_mask` in byte `byte_offset` of a stored object,
    /// for corruption tests. False (and nothing changed) if the object does
    /// not exist or is not that long.
    pub fn corrupt(&self, handle: &Handle, byte_offset: usize, xor_mask: u8) -> bool {
        let mut objects = self.lock();
        let Some(data) = objects.get_mut(handle) else {
            return false;
        };
        match Arc::make_mut(data).get_mut(byte_offset) {
            Some(byte) => {
                *byte ^= xor_mask;
                true
            }
            None => false,
        }
    }

    /// How many objects are stored, of every kind.
    pub fn object_count(&self) -> usize {
        self.lock().len()
    }

    /// Stores `data` under `handle`, replacing any object there and without
    /// checking the name: what a hostile or broken target could do, for
    /// tests that the repository code notices.
    pub fn raw_put(&self, handle: &Handle, data: &[u8]) {
        self.lock().insert(handle.clone(), Arc::new(data.to_vec()));
    }

    /// The map, even if a thread panicked while holding it: every update is
    /// a single insert, remove or byte flip, so the map is always whole.
    fn lock(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored bytes of `handle`, or NotFound.
    fn get(&self, handle: &Handle) -> Result<Arc<Vec<u8>>, BackendError> {
        handle.validate()?;
        self.lock()
            .get(handle)
            .cloned()
            .ok_or_else(|| not_found(handle))
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(handle, _)| handle.kind == kind && handle.validate().is_ok())
            .map(|(handle, data)| ObjectInfo {
                handle: handle.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        Ok(self.get(handle)?.as_ref().clone())
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let data = self.get(handle)?;
        let size = data.len() as u64;
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .and_then(|range| data.get(range));
        match range {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(BackendError::OutOfRange {
                object: handle.to_string(),
                offset,
                len,
                size,
            }),
        }
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        // Copy before taking the lock, so large writes do not serialize.
        let data = Arc::new(data.to_vec());
        let mut objects = self.lock();
        if objects.contains_key(handle) {
            return Err(BackendError::AlreadyExists {
                object: handle.to_string(),
            });
        }
        objects.insert(handle.clone(), data);
        Ok(())
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        let data = Arc::new(data.to_vec());
        match self.lock().get_mut(handle) {
            Some(stored) => {
                *stored = data;
                Ok(())
            }
            None => Err(not_found(handle)),
        }
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        handle.validate()?;
        match self.lock().remove(handle) {
            Some(_) => Ok(()),
            None => Err(not_found(handle)),
        }
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        let data = self.get(handle)?;
        Ok(ObjectInfo {
            handle: handle.clone(),
            size: data.len() as u64,
        })
    }
}

/// The NotFound error for `handle`.
fn not_found(handle: &Handle) -> BackendError {
    BackendError::NotFound {
        object: handle.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::conformance;

    fn pack(tag: &[u8]) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(tag))
    }

    #[test]
    fn conformance_suite() {
        let backend = MemoryBackend::new();
        conformance::run_all(&backend);
        assert_eq!(backend.object_count(), 0);
    }

    #[test]
    fn corrupt_flips_bits_of_stored_objects_only() {
        let backend = MemoryBackend::new();
        let h = pack(b"c");
        backend.write_new(&h, &[0x0f, 0xf0]).unwrap();
        assert!(backend.corrupt(&h, 1, 0x01));
        assert_eq!(backend.read(&h).unwrap(), [0x0f, 0xf1]);
        assert!(!backend.corrupt(&h, 2, 0x01));
        assert!(!backend.corrupt(&pack(b"missing"), 0, 0x01));
        assert_eq!(backend.read(&h).unwrap(), [0x0f, 0xf1]);
    }

    #[test]
    fn replace_swaps_existing_objects_only() {
        let backend = MemoryBackend::new();
        let config = Handle::config();
        assert!(backend.replace(&config, b"x").unwrap_err().is_not_found());
        assert_eq!(backend.object_count(), 0);
        backend.write_new(&config, b"old").unwrap();
        backend.replace(&config, b"newer").unwrap();
        assert_eq!(backend.read(&config).unwrap(), b"newer");
        assert_eq!(backend.object_count(), 1);
    }

    #[test]
    fn raw_put_overwrites_and_counts() {
        let backend = MemoryBackend::new();
        let h = pack(b"r");
        backend.write_new(&h, b"honest").unwrap();
        backend.raw_put(&h, b"swapped");
        assert_eq!(backend.read(&h).unwrap(), b"swapped");
        assert_eq!(backend.object_count(), 1);
        // Names no target should hold are stored but never listed or read.
        let bad = Handle {
            kind: ObjectKind::Pack,
            name: "../x".into(),
        };
        backend.raw_put(&bad, b"x");
        assert_eq!(backend.object_count(), 2);
        assert_eq!(backend.list(ObjectKind::Pack).unwrap().len(), 1);
        assert!(matches!(
            backend.read(&bad),
            Err(BackendError::InvalidName { .. })
        ));
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let backend = MemoryBackend::new();
        let h = pack(b"p");
        backend.write_new(&h, b"kept").unwrap();
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = backend.objects.lock();
                panic!("poison the lock");
            })
            .join()
        });
        assert!(backend.objects.is_poisoned());
        assert_eq!(backend.read(&h).unwrap(), b"kept");
    }
}
