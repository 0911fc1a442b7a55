//! Crash points, **a test tool**: a backend that counts and logs the calls
//! made to another, and stops the process right after a chosen one.
//!
//! The write order of docs/format.md §2.9 promises that a crash at any
//! point leaves a valid repository. The only points that matter are the
//! calls that change the target (`write_new`, `replace` and `delete`): between two of
//! them the target does not change, so stopping after a read leaves the
//! same target as stopping after the mutation before it. [`OpRecorder`]
//! therefore numbers the *successful mutations* of a whole process (every
//! [`CrashingBackend`] sharing it — `copy` opens two targets), and:
//!
//! - appends one line per successful call to a log file, `M<n> <op>
//!   <object>` for the n-th mutation and `R <op> <object>` for a read, so a
//!   first run of an operation tells how many crash points it has;
//! - right after mutation number `n` returns (and before any later
//!   mutation starts, on any thread) calls its crash action, by default
//!   [`std::process::abort`]: no destructors run, no lock is released, no
//!   buffer is flushed — what a power cut or `kill -9` leaves.
//!
//! Put it innermost, directly around the real backend, so that retries and
//! injected faults above it are exercised and only calls that reached the
//! target are counted.

use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What happens at the crash point; receives the line describing the call.
pub type CrashAction = Box<dyn Fn(&str) + Send + Sync>;

/// The count, the log and the crash point shared by every
/// [`CrashingBackend`] of a process. See the module documentation.
pub struct OpRecorder {
    mutations: AtomicU64,
    crash_at: Option<u64>,
    log: Option<Mutex<File>>,
    action: CrashAction,
}

impl fmt::Debug for OpRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpRecorder")
            .field("mutations", &self.mutations())
            .field("crash_at", &self.crash_at)
            .field("logging", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl OpRecorder {
    /// A recorder that crashes (aborts the process) right after successful
    /// mutation number `crash_at` (counted from 1; `None`: never) and
    /// appends every successful call to `log` (created if missing).
    pub fn new(crash_at: Option<u64>, log: Option<&Path>) -> std::io::Result<OpRecorder> {
        let log = match log {
            Some(path) => Some(Mutex::new(
                File::options().create(true).append(true).open(path)?,
            )),
            None => None,
        };
        Ok(OpRecorder {
            mutations: AtomicU64::new(0),
            crash_at,
            log,
            action: Box::new(|line| {
                eprintln!("test crash point reached after {line}: aborting");
                std::process::abort();
            }),
        })
    }

    /// Replaces the crash action (unit tests record instead of aborting).
    pub fn with_action(mut self, action: CrashAction) -> OpRecorder {
        self.action = action;
        self
    }

    /// Successful mutations so far.
    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    /// Called before a mutation starts: a mutation after the crash point
    /// (one racing on another thread) never reaches the target.
    fn before_mutation(&self, op: &str, object: &str) {
        if self.crash_at.is_some_and(|at| self.mutations() >= at) {
            (self.action)(&format!("(a later {op} {object} was not started)"));
        }
    }

    /// Records a call that succeeded, and crashes if it was the chosen one.
    fn succeeded(&self, op: &str, object: &str, mutates: bool) {
        let line = if mutates {
            let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
            format!("M{n} {op} {object}")
        } else {
            format!("R {op} {object}")
        };
        if let Some(log) = &self.log {
            let mut file = log.lock().unwrap_or_else(PoisonError::into_inner);
            // A test tool: a log that cannot be written must not change
            // what the operation does, the test sees the short log.
            let _ = writeln!(file, "{line}");
        }
        if mutates && self.crash_at.is_some_and(|at| self.mutations() >= at) {
            (self.action)(&line);
        }
    }

    /// Counts the mutation lines (`M<n> ...`) of a log written by a
    /// recorder: the number of crash points of the logged run.
    pub fn mutations_in_log(log: &str) -> u64 {
        log.lines().filter(|l| l.starts_with('M')).count() as u64
    }
}

/// A backend whose successful calls an [`OpRecorder`] counts, logs and may
/// crash after. For tests only.
pub struct CrashingBackend<B: Backend + ?Sized> {
    inner: Arc<B>,
    recorder: Arc<OpRecorder>,
}

impl<B: Backend + ?Sized> fmt::Debug for CrashingBackend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashingBackend")
            .field("location", &self.inner.location())
            .field("recorder", &self.recorder)
            .finish()
    }
}

impl<B: Backend + ?Sized> CrashingBackend<B> {
    /// Wraps `inner`, counting on `recorder`.
    pub fn new(inner: Arc<B>, recorder: Arc<OpRecorder>) -> Self {
        CrashingBackend { inner, recorder }
    }

    fn read_call<T>(
        &self,
        op: &str,
        object: &str,
        run: impl FnOnce() -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let r = run()?;
        self.recorder.succeeded(op, object, false);
        Ok(r)
    }

    fn mutation(
        &self,
        op: &str,
        handle: &Handle,
        run: impl FnOnce() -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let object = handle.to_string();
        self.recorder.before_mutation(op, &object);
        run()?;
        self.recorder.succeeded(op, &object, true);
        Ok(())
    }
}

impl<B: Backend + ?Sized> Backend for CrashingBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        let dir = format!("{}/", kind.dir());
        self.read_call("list", &dir, || self.inner.list(kind))
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        self.read_call("read", &handle.to_string(), || self.inner.read(handle))
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.read_call("read", &handle.to_string(), || {
            self.inner.read_range(handle, offset, len)
        })
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.mutation("write", handle, || self.inner.write_new(handle, data))
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.mutation("replace", handle, || self.inner.replace(handle, data))
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        self.mutation("delete", handle, || self.inner.delete(handle))
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        self.read_call("stat", &handle.to_string(), || self.inner.stat(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::MemoryBackend;
    use crate::backend::conformance;

    fn pack(n: u32) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(&n.to_le_bytes()))
    }

    /// A recorder whose crash action records the line instead of aborting.
    fn recording(
        crash_at: Option<u64>,
        log: Option<&Path>,
    ) -> (Arc<OpRecorder>, Arc<Mutex<Vec<String>>>) {
        let crashes = Arc::new(Mutex::new(Vec::new()));
        let seen = crashes.clone();
        let recorder = OpRecorder::new(crash_at, log)
            .unwrap()
            .with_action(Box::new(move |line| {
                seen.lock().unwrap().push(line.to_string())
            }));
        (Arc::new(recorder), crashes)
    }

    #[test]
    fn without_a_crash_point_it_conforms_and_counts_mutations() {
        let (recorder, crashes) = recording(None, None);
        let b = CrashingBackend::new(Arc::new(MemoryBackend::new()), recorder.clone());
        conformance::run_all(&b);
        assert!(recorder.mutations() > 0);
        assert!(crashes.lock().unwrap().is_empty());
    }

    #[test]
    fn logs_every_successful_call_and_numbers_mutations_across_backends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ops.log");
        let (recorder, _) = recording(None, Some(&log));
        let a = CrashingBackend::new(Arc::new(MemoryBackend::new()), recorder.clone());
        let b = CrashingBackend::new(Arc::new(MemoryBackend::new()), recorder.clone());
        a.write_new(&pack(1), b"one").unwrap();
        b.write_new(&pack(2), b"two").unwrap();
        a.read(&pack(1)).unwrap();
        // Failed calls change nothing and are not logged.
        assert!(a.write_new(&pack(1), b"again").is_err());
        assert!(a.stat(&pack(9)).is_err());
        a.delete(&pack(1)).unwrap();
        b.list(ObjectKind::Pack).unwrap();
        b.write_new(&Handle::config(), b"old").unwrap();
        b.replace(&Handle::config(), b"new").unwrap();
        // A refused replace changes nothing: not logged.
        assert!(a.replace(&Handle::config(), b"x").is_err());
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert_eq!(lines[0], format!("M1 write {}", pack(1)));
        assert_eq!(lines[1], format!("M2 write {}", pack(2)));
        assert_eq!(lines[2], format!("R read {}", pack(1)));
        assert_eq!(lines[3], format!("M3 delete {}", pack(1)));
        assert_eq!(lines[4], "R list data/");
        assert_eq!(lines[5], "M4 write config");
        assert_eq!(lines[6], "M5 replace config");
        assert_eq!(OpRecorder::mutations_in_log(&text), 5);
        assert_eq!(recorder.mutations(), 5);
    }

    #[test]
    fn crashes_right_after_the_chosen_mutation_and_before_any_later_one() {
        let (recorder, crashes) = recording(Some(2), None);
        let inner = Arc::new(MemoryBackend::new());
        let b = CrashingBackend::new(inner.clone(), recorder);
        b.write_new(&pack(1), b"one").unwrap();
        // Reads are not crash points.
        b.read(&pack(1)).unwrap();
        assert!(crashes.lock().unwrap().is_empty());
        b.delete(&pack(1)).unwrap();
        assert_eq!(*crashes.lock().unwrap(), [format!("M2 delete {}", pack(1))]);
        // The chosen mutation took effect on the target.
        assert!(inner.stat(&pack(1)).unwrap_err().is_not_found());
        // A mutation after the crash point crashes before it starts (with
        // the recording action, it then goes ahead).
        b.write_new(&pack(3), b"three").unwrap();
        assert_eq!(crashes.lock().unwrap().len(), 3, "{crashes:?}");
    }
}
