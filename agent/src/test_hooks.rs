//! Test hooks read from the environment, **for the reliability tests only**
//! (docs/reliability.md): they make the real binary crash at a chosen
//! target operation, log its target operations, or meet injected target
//! faults, so that end-to-end tests exercise exactly what users run.
//!
//! - `CAIRN_TEST_CRASH_AT_OP=N`: abort the process (no destructors, no lock
//!   release) right after the N-th successful *mutation* of the target (a
//!   write or a delete, counted over every target the process opens). Reads
//!   are not crash points: they leave the target as the mutation before
//!   them did (see the store's `backend::crashpoint`).
//! - `CAIRN_TEST_OP_LOG=FILE`: append one line per successful target call
//!   (`M<n> write pack <id>`, `R read index <id>`), so a first run tells how
//!   many crash points an operation has.
//! - `CAIRN_TEST_FAULTS=seed=S,fail=R,truncate=R,delay=R:50ms,landed=S`:
//!   inject faults (the store's `FaultPlan`) into every call to the target.
//! - `CAIRN_TEST_IGNORE_CREATE_ONLY=1`: the target overwrites an existing
//!   object instead of refusing a create-only write, as some S3-compatible
//!   servers do (the store's `OverwritingBackend`; docs/targets.md).
//! - `CAIRN_TEST_MAX_IN_FLIGHT=FILE`: write to FILE the most calls seen
//!   running against the target at once (rewritten at every new maximum;
//!   the store's `InFlightCounter`), counted above the injected faults so
//!   that an injected delay counts as a call in flight.
//!
//! They are read once, when the binary starts ([`install_from_env`]); a
//! value that does not parse is an error, never silently ignored. The
//! wrappers go innermost, directly around the real backend, so the retry
//! wrapper sees the injected faults and only calls that reached the target
//! are counted.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cairn_store::Backend;
use cairn_store::backend::{
    CrashingBackend, FaultPlan, FaultSpecError, FaultyBackend, InFlightCounter, OpRecorder,
    OverwritingBackend,
};

/// Abort after the N-th successful mutation of the target.
pub const CRASH_AT_OP_ENV: &str = "CAIRN_TEST_CRASH_AT_OP";
/// Append every successful target call to this file.
pub const OP_LOG_ENV: &str = "CAIRN_TEST_OP_LOG";
/// Inject these faults into every target call.
pub const FAULTS_ENV: &str = "CAIRN_TEST_FAULTS";
/// Make the target overwrite instead of refusing a create-only write.
pub const IGNORE_CREATE_ONLY_ENV: &str = "CAIRN_TEST_IGNORE_CREATE_ONLY";
/// Write the most calls in flight at once to this file.
pub const MAX_IN_FLIGHT_ENV: &str = "CAIRN_TEST_MAX_IN_FLIGHT";

/// A test hook set to a value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TestHookError {
    /// The crash point is not a positive whole number.
    #[error(
        "{CRASH_AT_OP_ENV}={0:?} is not a positive whole number; this test hook \
         (docs/reliability.md) takes the number of the target write or delete to \
         crash after: fix it or unset it"
    )]
    CrashPoint(String),
    /// The operation log cannot be opened.
    #[error("{OP_LOG_ENV}: cannot open {path} for appending: {source}; fix the path or unset it")]
    OpLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fault plan does not parse.
    #[error("{FAULTS_ENV} (a test hook, docs/reliability.md): {0}; fix it or unset it")]
    Faults(#[from] FaultSpecError),
    /// The overwrite switch is neither 1 nor 0.
    #[error("{IGNORE_CREATE_ONLY_ENV}={0:?} is not 1 or 0 (a test hook): fix it or unset it")]
    IgnoreCreateOnly(String),
}

/// The hooks in force in this process.
#[derive(Debug, Default)]
pub struct TestHooks {
    recorder: Option<Arc<OpRecorder>>,
    faults: Option<FaultPlan>,
    ignore_create_only: bool,
    max_in_flight: Option<PathBuf>,
}

static HOOKS: OnceLock<TestHooks> = OnceLock::new();

impl TestHooks {
    /// The hooks a variable lookup gives (`var` returns a set, non-empty
    /// value).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<TestHooks, TestHookError> {
        let crash_at = var(CRASH_AT_OP_ENV)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(TestHookError::CrashPoint(v))
            })
            .transpose()?;
        let log = var(OP_LOG_ENV).map(PathBuf::from);
        let recorder = if crash_at.is_some() || log.is_some() {
            let recorder = OpRecorder::new(crash_at, log.as_deref()).map_err(|source| {
                TestHookError::OpLog {
                    path: log.clone().unwrap_or_default(),
                    source,
                }
            })?;
            Some(Arc::new(recorder))
        } else {
            None
        };
        let faults = var(FAULTS_ENV).map(|v| v.parse()).transpose()?;
        let ignore_create_only = match var(IGNORE_CREATE_ONLY_ENV) {
            None => false,
            Some(v) => match v.trim() {
                "1" => true,
                "0" => false,
                _ => return Err(TestHookError::IgnoreCreateOnly(v)),
            },
        };
        Ok(TestHooks {
            recorder,
            faults,
            ignore_create_only,
            max_in_flight: var(MAX_IN_FLIGHT_ENV).map(PathBuf::from),
        })
    }

    /// Whether no hook is set.
    pub fn is_empty(&self) -> bool {
        self.recorder.is_none()
            && self.faults.is_none()
            && !self.ignore_create_only
            && self.max_in_flight.is_none()
    }

    /// `inner` with the hooks around it: the overwriting target innermost,
    /// then the recorder, the faults, and the in-flight counter above them.
    pub fn wrap(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let inner: Arc<dyn Backend> = if self.ignore_create_only {
            Arc::new(OverwritingBackend::new(inner))
        } else {
            inner
        };
        let counted: Arc<dyn Backend> = match &self.recorder {
            Some(r) => Arc::new(CrashingBackend::new(inner, r.clone())),
            None => inner,
        };
        let faulty: Arc<dyn Backend> = match &self.faults {
            Some(plan) => Arc::new(FaultyBackend::new(counted, plan.clone())),
            None => counted,
        };
        match &self.max_in_flight {
            Some(path) => {
                let path = path.clone();
                Arc::new(InFlightCounter::new(faulty).on_new_max(move |n| {
                    // A test hook: a failed write shows as a missing figure.
                    let _ = std::fs::write(&path, n.to_string());
                }))
            }
            None => faulty,
        }
    }
}

/// Reads the hooks from the environment, once per process; later calls
/// keep the first result.
pub fn install_from_env() -> Result<(), TestHookError> {
    if HOOKS.get().is_some() {
        return Ok(());
    }
    let hooks =
        TestHooks::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))?;
    let _ = HOOKS.set(hooks);
    Ok(())
}

/// `inner` wrapped with the installed hooks (as it was when none are).
pub fn wrap(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
    match HOOKS.get() {
        Some(hooks) if !hooks.is_empty() => hooks.wrap(inner),
        _ => inner,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use cairn_store::backend::MemoryBackend;
    use cairn_store::{Handle, Id, ObjectKind};
    use std::collections::HashMap;

    fn hooks(vars: &[(&str, &str)]) -> Result<TestHooks, TestHookError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TestHooks::from_vars(|n| vars.get(n).cloned())
    }

    #[test]
    fn no_variables_no_hooks() {
        let h = hooks(&[]).unwrap();
        assert!(h.is_empty());
        let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        assert!(Arc::ptr_eq(&h.wrap(inner.clone()), &inner));
    }

    #[test]
    fn bad_values_are_errors_that_name_the_variable() {
        for v in ["0", "-1", "x", "1.5"] {
            let e = hooks(&[(CRASH_AT_OP_ENV, v)]).unwrap_err().to_string();
            assert!(e.contains(CRASH_AT_OP_ENV) && e.contains("unset it"), "{e}");
        }
        let e = hooks(&[(FAULTS_ENV, "fail=2")]).unwrap_err().to_string();
        assert!(
            e.contains(FAULTS_ENV) && e.contains("rate from 0 to 1"),
            "{e}"
        );
        let e = hooks(&[(IGNORE_CREATE_ONLY_ENV, "yes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(IGNORE_CREATE_ONLY_ENV), "{e}");
        let e = hooks(&[(OP_LOG_ENV, "/nonexistent/dir/log")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/dir/log"), "{e}");
    }

    #[test]
    fn the_log_and_the_faults_wrap_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ops");
        let h = hooks(&[
            (OP_LOG_ENV, log.to_str().unwrap()),
            (FAULTS_ENV, "seed=1,fail=1,landed=1"),
        ])
        .unwrap();
        let b = h.wrap(Arc::new(MemoryBackend::new()));
        assert!(b.location().contains("injected faults"));
        let pack = Handle::new(ObjectKind::Pack, &Id::of_object(b"p"));
        // The write lands, then its reply is lost: the log below the
        // faults counts it as a mutation of the target.
        assert!(b.write_new(&pack, b"data").unwrap_err().is_transient());
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(OpRecorder::mutations_in_log(&text), 1, "{text}");
    }

    #[test]
    fn the_overwriting_target_accepts_a_second_write() {
        let h = hooks(&[(IGNORE_CREATE_ONLY_ENV, "1")]).unwrap();
        assert!(!h.is_empty());
        let b = h.wrap(Arc::new(MemoryBackend::new()));
        let lock = Handle::new(ObjectKind::Lock, &Id::of_object(b"l"));
        b.write_new(&lock, b"one").unwrap();
        b.write_new(&lock, b"two").unwrap();
        assert_eq!(b.read(&lock).unwrap(), b"two");
        assert!(hooks(&[(IGNORE_CREATE_ONLY_ENV, "0")]).unwrap().is_empty());
    }
}
