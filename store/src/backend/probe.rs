//! Probing whether a target refuses to overwrite, as `write_new` promises.
//!
//! Some S3-compatible servers accept `If-None-Match: *` and overwrite
//! anyway (Garage, s3rver). Nothing cairn stores depends on create-only
//! writes except the config of a repository being created (docs/targets.md,
//! "What cairn relies on from a target"), so the probe informs rather than
//! protects: `cairn init` warns when it fails, so that the operator knows
//! what is weaker there.
//!
//! The probe writes a uniquely named object twice and expects the second
//! write to fail with AlreadyExists, then deletes it. The object lives in
//! `locks/` under a name that is not an object id (`probe-<32 hex digits>`):
//! lock listings skip such names, and `cairn unlock --force` removes one
//! left behind by a crash. A sequential probe sees a server that overwrites;
//! it cannot prove the absence of a race between concurrent creators (which
//! is why nothing may depend on the answer).
//!
//! Call it on the target itself, not through the retry wrapper: that one
//! asks whether an object exists before every write and would answer for
//! the target.

use super::{Backend, BackendError, Handle, ObjectKind};
use crate::random::RandomSource;

/// The name prefix of probe objects (under `locks/`).
pub const PROBE_PREFIX: &str = "probe-";

/// What the probe found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    /// The second write of a name failed with AlreadyExists.
    Honoured,
    /// The second write of a name succeeded: the target overwrites.
    Ignored,
}

/// Why the probe could not tell.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A probe call failed.
    #[error("cannot check whether {location} refuses to overwrite objects: {source}")]
    Target {
        /// The target.
        location: String,
        /// The failure.
        #[source]
        source: BackendError,
    },
    /// The probe found its answer, but its object could not be removed
    /// (it is harmless where it is).
    #[error(
        "{location}: cannot remove the probe object {object} ({source}); it is harmless, and `cairn unlock --force` removes it"
    )]
    Cleanup {
        /// The target.
        location: String,
        /// The probe object.
        object: String,
        /// What the probe found.
        found: CreateOnly,
        /// The failure.
        #[source]
        source: BackendError,
    },
    /// The random number generator failed.
    #[error("cannot name a probe object: {0}")]
    Random(String),
}

/// Writes a fresh probe object twice, removes it, and says whether the
/// second write was refused.
pub fn probe_create_only(
    backend: &dyn Backend,
    rng: &dyn RandomSource,
) -> Result<CreateOnly, ProbeError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)
        .map_err(|e| ProbeError::Random(e.to_string()))?;
    let handle = Handle {
        kind: ObjectKind::Lock,
        name: format!("{PROBE_PREFIX}{}", hex::encode(salt)),
    };
    let failed = |source| ProbeError::Target {
        location: backend.location(),
        source,
    };
    backend
        .write_new(&handle, b"cairn create-only probe: first write\n")
        .map_err(failed)?;
    let found = match backend.write_new(&handle, b"cairn create-only probe: second write\n") {
        Err(BackendError::AlreadyExists { .. }) => Ok(CreateOnly::Honoured),
        Ok(()) => Ok(CreateOnly::Ignored),
        Err(e) => Err(failed(e)),
    };
    let removed = match backend.delete(&handle) {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    };
    match (found, removed) {
        (Ok(found), Ok(())) => Ok(found),
        (Ok(found), Err(source)) => Err(ProbeError::Cleanup {
            location: backend.location(),
            object: handle.to_string(),
            found,
            source,
        }),
        (Err(e), _) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MemoryBackend, OverwritingBackend, RetryBackend, RetryPolicy};
    use crate::random::SeededRandom;
    use std::sync::Arc;

    #[test]
    fn tells_a_refusing_target_from_an_overwriting_one_and_cleans_up() {
        let rng = SeededRandom::new(b"probe");
        let memory = Arc::new(MemoryBackend::new());
        assert_eq!(
            probe_create_only(memory.as_ref(), &rng).unwrap(),
            CreateOnly::Honoured
        );
        let lax = OverwritingBackend::new(memory.clone());
        assert_eq!(probe_create_only(&lax, &rng).unwrap(), CreateOnly::Ignored);
        assert_eq!(lax.overwrites(), 1);
        assert_eq!(memory.object_count(), 0);
    }

    #[test]
    fn through_the_retry_wrapper_an_overwriting_target_looks_honest() {
        // Why the probe must see the target itself: the wrapper's stat
        // before each write refuses the second write on its own.
        let lax: Arc<dyn Backend> =
            Arc::new(OverwritingBackend::new(Arc::new(MemoryBackend::new())));
        let wrapped = RetryBackend::new(lax, RetryPolicy::DEFAULT);
        let rng = SeededRandom::new(b"probe");
        assert_eq!(
            probe_create_only(&wrapped, &rng).unwrap(),
            CreateOnly::Honoured
        );
    }

    #[test]
    fn probe_objects_are_not_taken_for_locks() {
        let memory = Arc::new(MemoryBackend::new());
        let keys = crate::MasterKeys::generate(&SeededRandom::new(b"k")).unwrap();
        let h = Handle {
            kind: ObjectKind::Lock,
            name: format!("{PROBE_PREFIX}{}", "0".repeat(32)),
        };
        memory.write_new(&h, b"left by a crash").unwrap();
        assert!(
            crate::lock::list_locks(memory.as_ref(), &keys)
                .unwrap()
                .is_empty()
        );
        assert_eq!(crate::lock::remove_all_locks(memory.as_ref()).unwrap(), 1);
    }
}
