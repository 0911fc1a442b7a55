//! Retries with exponential backoff and full jitter, around any backend.
//!
//! Remote targets fail now and then for reasons that go away (a reset
//! connection, a timeout, a throttling reply). [`RetryBackend`] repeats a
//! call that failed with a [transient](BackendError::is_transient) error,
//! waiting a random time between zero and `min(max_delay, base_delay ×
//! 2^retry)` before each new attempt ("full jitter": many agents hitting one
//! bucket do not retry in lockstep). Permanent errors (not found, access
//! denied, a target that is gone) surface at once.
//!
//! # Writes and deletes whose outcome is unknown
//!
//! A transient failure of `write_new` does not say whether the object
//! landed: the request may have reached the target and only the reply been
//! lost. Retrying such a write then finds the object there and the target
//! answers AlreadyExists, although the first attempt was in fact ours and
//! succeeded. The wrapper resolves this without trusting names:
//!
//! 1. Before the first attempt it asks the target whether the object exists
//!    (`stat`). If it does, the write is refused with AlreadyExists as the
//!    target would refuse it, and nothing is uploaded. This probe is what
//!    keeps the create-only contract exact: without it, a write of the same
//!    bytes over an object that was there *before* the call could not be told
//!    apart from a retry of our own write that landed.
//! 2. Once an attempt has failed transiently, an AlreadyExists from a later
//!    attempt means the object appeared after the probe: our landed attempt,
//!    or another writer racing us. The wrapper reads the object back and
//!    compares it with the bytes it was asked to write. Equal bytes report
//!    success; other bytes report AlreadyExists (another writer won).
//!
//! Reading back rather than trusting the name matters because not every
//! object is named by its content: the `config` is not, and a lock or key
//! file of another agent could in principle share a name. Content-named
//! objects (packs, index files, snapshots, keys and locks, named by the
//! BLAKE3 hash of their bytes) would be safe with a name check alone; the
//! read-back costs one download, only on this rare path. The one case the
//! wrapper cannot tell apart is another writer storing *identical* bytes
//! between our probe and our retry; both then see success. The outcome is
//! the same object either way (objects are immutable), and cairn never
//! relies on which of two identical writers won: every non-content-named or
//! mutually exclusive object (config, locks) carries fresh random salts.
//!
//! `replace` (the config only) needs none of this: it never removes the
//! object, so repeating one that landed replaces it with the same bytes
//! again.
//!
//! `delete` is handled the same way as `write_new`: a probe first (a missing object is
//! NotFound, as the target would say), and after a transient failure a
//! NotFound means the object is gone, which is what was asked: success.
//!
//! A `read_range` that returns fewer or more bytes than asked breaks the
//! backend contract (a truncated transfer); it is retried like a transient
//! error. A truncated whole-object `read` cannot be recognised here (the
//! size is not known without another request); the repository detects it,
//! since every object it reads is authenticated or named by its hash.

use super::clock::{Clock, SystemClock};
use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The ceiling of the first wait; it doubles with every retry.
    pub base_delay: Duration,
    /// The largest ceiling a wait can have.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The default: 6 attempts, waits of up to 200 ms, 400 ms, 800 ms,
    /// 1.6 s and 3.2 s (at most ~6.2 s in all), ceilings capped at 10 s.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(10),
    };

    /// The default policy with `retries` retries after the first attempt.
    pub fn with_retries(retries: u32) -> Self {
        RetryPolicy {
            max_attempts: retries.saturating_add(1),
            ..Self::DEFAULT
        }
    }

    /// The longest a failing call can spend waiting between its attempts:
    /// the sum of the ceilings of its retries (each wait is drawn at random
    /// below its ceiling). The default policy's 5 retries: 6.2 s.
    pub fn worst_case_wait(&self) -> Duration {
        (0..self.max_attempts.saturating_sub(1))
            .map(|retry| self.ceiling(retry))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// The ceiling of the wait before retry number `retry` (0 for the
    /// first retry): `min(max_delay, base_delay × 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of a retry wrapper, shareable with whoever reports them.
#[derive(Debug, Default)]
pub struct RetryStats {
    retries: AtomicU64,
    exhausted: AtomicU64,
    ambiguous: AtomicU64,
}

impl RetryStats {
    /// Attempts made after a transient failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Calls that still failed transiently after every attempt.
    pub fn exhausted(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Writes and deletes whose interrupted attempt turned out to have
    /// landed (reported as success; see the module documentation).
    pub fn ambiguous_resolved(&self) -> u64 {
        self.ambiguous.load(Ordering::Relaxed)
    }
}

/// What the wrapper tells an observer before it waits to retry.
pub struct RetryEvent<'a> {
    /// The operation ("read", "write", "stat", ...).
    pub op: &'static str,
    /// The object or kind the call was about.
    pub object: &'a dyn fmt::Display,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// How long the wrapper waits before the next attempt.
    pub delay: Duration,
    /// The transient error.
    pub error: &'a BackendError,
}

impl fmt::Debug for RetryEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryEvent")
            .field("op", &self.op)
            .field("object", &self.object.to_string())
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .field("delay", &self.delay)
            .field("error", &self.error)
            .finish()
    }
}

/// A callback told about every retry (the agent prints a warning).
pub type RetryObserver = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// A backend whose calls are retried on transient errors.
///
/// Generic over `B: ?Sized` so that it wraps an `Arc<dyn Backend>` as well
/// as a concrete backend; it conforms whenever the inner backend does.
pub struct RetryBackend<B: Backend + ?Sized> {
    inner: Arc<B>,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    jitter: AtomicU64,
    stats: Arc<RetryStats>,
    observer: Option<RetryObserver>,
}

impl<B: Backend + ?Sized> fmt::Debug for RetryBackend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBackend")
            .field("location", &self.inner.location())
            .field("policy", &self.policy)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<B: Backend + ?Sized> RetryBackend<B> {
    /// Wraps `inner` with `policy`, real time and a jitter seeded from the
    /// operating system.
    pub fn new(inner: Arc<B>, policy: RetryPolicy) -> Self {
        let mut seed = [0u8; 8];
        // Jitter only needs to differ between agents; if the OS generator
        // fails, the time of day in nanoseconds still does.
        let seed = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        RetryBackend {
            inner,
            policy: RetryPolicy {
                max_attempts: policy.max_attempts.max(1),
                ..policy
            },
            clock: Arc::new(SystemClock::new()),
            jitter: AtomicU64::new(seed),
            stats: Arc::new(RetryStats::default()),
            observer: None,
        }
    }

    /// Uses `clock` to wait (a [`ManualClock`](super::clock::ManualClock)
    /// in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Draws the jitter from a stream determined by `seed` (tests).
    pub fn with_seed(self, seed: u64) -> Self {
        self.jitter.store(seed, Ordering::Relaxed);
        self
    }

    /// Counts into `stats` (shared with a reporter) instead of its own.
    pub fn with_stats(mut self, stats: Arc<RetryStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Calls `observer` before every wait.
    pub fn with_observer(mut self, observer: RetryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The policy in force.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RetryStats> {
        &self.stats
    }

    /// Attempts made after a transient failure, so far.
    pub fn retries(&self) -> u64 {
        self.stats.retries()
    }

    /// A uniformly random wait in `[0, ceiling]` (SplitMix64, lock-free).
    fn jittered(&self, ceiling: Duration) -> Duration {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .jitter
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let ceiling = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let nanos = match ceiling.checked_add(1) {
            Some(span) => z % span,
            None => z,
        };
        Duration::from_nanos(nanos)
    }

    /// Runs `call` until it succeeds, fails permanently or runs out of
    /// attempts, waiting between attempts.
    fn run<T>(
        &self,
        op: &'static str,
        object: &dyn fmt::Display,
        mut call: impl FnMut() -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut attempt = 1;
        loop {
            match call() {
                Err(e) if e.is_transient() => {
                    if attempt >= self.policy.max_attempts {
                        self.stats.exhausted.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                    let delay = self.jittered(self.policy.ceiling(attempt - 1));
                    if let Some(observer) = &self.observer {
                        observer(&RetryEvent {
                            op,
                            object,
                            attempt,
                            max_attempts: self.policy.max_attempts,
                            delay,
                            error: &e,
                        });
                    }
                    self.clock.sleep(delay);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// After an interrupted write, the target says the object exists:
    /// success if it holds our bytes, AlreadyExists if another writer's.
    fn resolve_write(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        match self.inner.read(handle) {
            Ok(stored) if stored == data => {
                self.stats.ambiguous.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // A read cut short proves nothing either way: look again.
            Ok(stored) if stored.len() < data.len() && data.starts_with(&stored) => {
                Err(BackendError::Service {
                    op: "write",
                    object: handle.to_string(),
                    message: format!(
                        "checking an interrupted write, the target returned {} of its {} bytes",
                        stored.len(),
                        data.len()
                    ),
                    transient: true,
                })
            }
            Ok(_) => Err(already_exists(handle)),
            // Deleted since: the next attempt writes it again.
            Err(e) if e.is_not_found() => Err(BackendError::Service {
                op: "write",
                object: handle.to_string(),
                message: "the object vanished while an interrupted write was checked".into(),
                transient: true,
            }),
            Err(e) => Err(e),
        }
    }
}

/// The AlreadyExists error for `handle`.
fn already_exists(handle: &Handle) -> BackendError {
    BackendError::AlreadyExists {
        object: handle.to_string(),
    }
}

impl<B: Backend + ?Sized> Backend for RetryBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.run("list", &kind.dir(), || self.inner.list(kind))
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        self.run("read", handle, || self.inner.read(handle))
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.run("read", handle, || {
            let bytes = self.inner.read_range(handle, offset, len)?;
            if bytes.len() as u64 != len {
                return Err(BackendError::Service {
                    op: "read",
                    object: handle.to_string(),
                    message: format!(
                        "the target returned {} bytes for a read of {len} bytes at offset {offset}",
                        bytes.len()
                    ),
                    transient: true,
                });
            }
            Ok(bytes)
        })
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        match self.run("stat", handle, || self.inner.stat(handle)) {
            Ok(_) => return Err(already_exists(handle)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let mut interrupted = false;
        self.run("write", handle, || {
            let r = match self.inner.write_new(handle, data) {
                Err(BackendError::AlreadyExists { .. }) if interrupted => {
                    self.resolve_write(handle, data)
                }
                r => r,
            };
            interrupted |= r.as_ref().is_err_and(BackendError::is_transient);
            r
        })
    }

    /// A replace is idempotent (it never removes the object), so an
    /// attempt whose outcome is unknown is simply made again.
    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.run("replace", handle, || self.inner.replace(handle, data))
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        self.run("stat", handle, || self.inner.stat(handle))?;
        let mut interrupted = false;
        self.run("delete", handle, || {
            let r = match self.inner.delete(handle) {
                Err(e) if e.is_not_found() && interrupted => {
                    self.stats.ambiguous.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                r => r,
            };
            interrupted |= r.as_ref().is_err_and(BackendError::is_transient);
            r
        })
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        self.run("stat", handle, || self.inner.stat(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::MemoryBackend;
    use crate::backend::clock::ManualClock;
    use crate::backend::conformance;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// What the scripted backend does with its next call.
    #[derive(Debug, Clone)]
    enum Step {
        /// Passes the call through.
        Pass,
        /// Fails transiently without touching the store.
        FailBefore,
        /// Performs the call, then fails transiently (the reply was lost).
        LandThenFail,
        /// Fails permanently.
        FailPermanently,
        /// Another writer stores these bytes, then the call fails
        /// transiently without touching the store.
        OtherWriterThenFail(Vec<u8>),
        /// A read returns one byte less than it should.
        Short,
    }

    /// A memory backend that follows a script, one step per call (then
    /// passes everything), and counts the calls that reached it.
    #[derive(Default)]
    struct Scripted {
        store: MemoryBackend,
        script: Mutex<VecDeque<Step>>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Scripted {
        fn new(steps: &[Step]) -> Arc<Self> {
            let s = Scripted::default();
            s.script.lock().unwrap().extend(steps.iter().cloned());
            Arc::new(s)
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }

        fn step<T>(
            &self,
            op: &'static str,
            h: Option<&Handle>,
            call: impl FnOnce() -> Result<T, BackendError>,
        ) -> Result<T, BackendError> {
            self.calls.lock().unwrap().push(op);
            let step = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Pass);
            let transient = || BackendError::Io {
                op,
                object: "scripted".into(),
                source: std::io::ErrorKind::ConnectionReset.into(),
            };
            match step {
                Step::Pass | Step::Short => call(),
                Step::FailBefore => Err(transient()),
                Step::LandThenFail => call().and(Err(transient())),
                Step::FailPermanently => Err(BackendError::Service {
                    op,
                    object: "scripted".into(),
                    message: "access denied".into(),
                    transient: false,
                }),
                Step::OtherWriterThenFail(bytes) => {
                    self.store.raw_put(h.unwrap(), &bytes);
                    Err(transient())
                }
            }
        }

        /// Whether the next step is a short read (consumed by `step`).
        fn next_is_short(&self) -> bool {
            matches!(self.script.lock().unwrap().front(), Some(Step::Short))
        }
    }

    /// A successful read one byte short when `short`.
    fn cut_if(short: bool, mut r: Result<Vec<u8>, BackendError>) -> Result<Vec<u8>, BackendError> {
        if let (true, Ok(bytes)) = (short, r.as_mut()) {
            bytes.pop();
        }
        r
    }

    impl Backend for Scripted {
        fn location(&self) -> String {
            "scripted".into()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
            self.step("list", None, || self.store.list(kind))
        }
        fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
            let short = self.next_is_short();
            cut_if(short, self.step("read", Some(h), || self.store.read(h)))
        }
        fn read_range(&self, h: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
            let short = self.next_is_short();
            cut_if(
                short,
                self.step("read_range", Some(h), || {
                    self.store.read_range(h, offset, len)
                }),
            )
        }
        fn write_new(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
            self.step("write_new", Some(h), || self.store.write_new(h, data))
        }
        fn replace(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
            self.step("replace", Some(h), || self.store.replace(h, data))
        }
        fn delete(&self, h: &Handle) -> Result<(), BackendError> {
            self.step("delete", Some(h), || self.store.delete(h))
        }
        fn stat(&self, h: &Handle) -> Result<ObjectInfo, BackendError> {
            self.step("stat", Some(h), || self.store.stat(h))
        }
    }

    fn wrap(inner: &Arc<Scripted>) -> (RetryBackend<Scripted>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let b = RetryBackend::new(inner.clone(), RetryPolicy::DEFAULT)
            .with_clock(clock.clone())
            .with_seed(7);
        (b, clock)
    }

    fn pack(tag: &[u8]) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(tag))
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let p = RetryPolicy::DEFAULT;
        let ms = |n| Duration::from_millis(n);
        assert_eq!(p.ceiling(0), ms(200));
        assert_eq!(p.ceiling(1), ms(400));
        assert_eq!(p.ceiling(4), ms(3200));
        assert_eq!(p.ceiling(5), ms(6400));
        assert_eq!(p.ceiling(6), ms(10_000));
        assert_eq!(p.ceiling(40), ms(10_000));
        assert_eq!(p.ceiling(u32::MAX), ms(10_000));
        assert_eq!(RetryPolicy::with_retries(0).max_attempts, 1);
        assert_eq!(
            RetryPolicy::with_retries(0).worst_case_wait(),
            Duration::ZERO
        );
        assert_eq!(p.worst_case_wait(), ms(6200));
        // 0.2 + 0.4 + ... + 6.4 s, then 10 s for every further retry.
        assert_eq!(RetryPolicy::with_retries(9).worst_case_wait(), ms(42_600));
        assert_eq!(RetryPolicy::with_retries(u32::MAX).max_attempts, u32::MAX);
    }

    #[test]
    fn jitter_stays_under_the_ceiling_and_varies() {
        let b =
            RetryBackend::new(Arc::new(MemoryBackend::new()), RetryPolicy::DEFAULT).with_seed(1);
        let ceiling = Duration::from_millis(200);
        let draws: Vec<Duration> = (0..1000).map(|_| b.jittered(ceiling)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        // Full jitter spreads over the whole range: both halves are hit.
        let low = draws.iter().filter(|d| **d < ceiling / 2).count();
        assert!((300..700).contains(&low), "{low} of 1000 in the lower half");
        assert_eq!(b.jittered(Duration::ZERO), Duration::ZERO);
        // The same seed gives the same waits.
        let again =
            RetryBackend::new(Arc::new(MemoryBackend::new()), RetryPolicy::DEFAULT).with_seed(1);
        assert_eq!(again.jittered(ceiling), draws[0]);
    }

    #[test]
    fn transient_failures_are_retried_with_growing_waits() {
        let inner = Scripted::new(&[Step::FailBefore, Step::FailBefore, Step::FailBefore]);
        let h = pack(b"r");
        inner.store.write_new(&h, b"data").unwrap();
        let (b, clock) = wrap(&inner);
        assert_eq!(b.read(&h).unwrap(), b"data");
        assert_eq!(inner.calls(), ["read"; 4]);
        assert_eq!(b.retries(), 3);
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 3);
        for (n, d) in sleeps.iter().enumerate() {
            assert!(*d <= RetryPolicy::DEFAULT.ceiling(n as u32), "{n}: {d:?}");
        }
    }

    #[test]
    fn permanent_errors_surface_at_once() {
        let inner = Scripted::new(&[Step::FailPermanently]);
        let (b, clock) = wrap(&inner);
        let e = b.list(ObjectKind::Index).unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains("access denied"));
        let e = b.read(&pack(b"missing")).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(inner.calls(), ["list", "read"]);
        assert_eq!(b.retries(), 0);
        assert!(clock.sleeps().is_empty());
    }

    #[test]
    fn gives_up_after_max_attempts_with_the_last_error() {
        let inner = Scripted::new(&vec![Step::FailBefore; 10]);
        let (b, clock) = wrap(&inner);
        let e = b.list(ObjectKind::Pack).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(inner.calls().len(), 6);
        assert_eq!(clock.sleeps().len(), 5);
        assert_eq!(b.retries(), 5);
        assert_eq!(b.stats().exhausted(), 1);
        // The worst case of the default policy: 200+400+800+1600+3200 ms.
        assert!(clock.slept() <= Duration::from_millis(6200));
    }

    #[test]
    fn a_write_that_landed_before_failing_is_a_success() {
        let inner = Scripted::new(&[Step::Pass, Step::LandThenFail]);
        let (b, _) = wrap(&inner);
        let h = pack(b"w");
        b.write_new(&h, b"ours").unwrap();
        assert_eq!(inner.calls(), ["stat", "write_new", "write_new", "read"]);
        assert_eq!(inner.store.read(&h).unwrap(), b"ours");
        assert_eq!(b.stats().ambiguous_resolved(), 1);
    }

    #[test]
    fn a_short_read_back_of_a_landed_write_is_looked_at_again() {
        let inner = Scripted::new(&[Step::Pass, Step::LandThenFail, Step::Pass, Step::Short]);
        let (b, _) = wrap(&inner);
        let h = pack(b"w");
        b.write_new(&h, b"ours").unwrap();
        assert_eq!(
            inner.calls(),
            [
                "stat",
                "write_new",
                "write_new",
                "read",
                "write_new",
                "read"
            ]
        );
        assert_eq!(b.stats().ambiguous_resolved(), 1);
    }

    #[test]
    fn a_racing_writer_with_other_bytes_still_wins() {
        let inner = Scripted::new(&[Step::Pass, Step::OtherWriterThenFail(b"theirs".to_vec())]);
        let (b, _) = wrap(&inner);
        let h = pack(b"race");
        let e = b.write_new(&h, b"ours").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
        assert_eq!(inner.store.read(&h).unwrap(), b"theirs");
        assert_eq!(b.stats().ambiguous_resolved(), 0);
    }

    #[test]
    fn an_object_there_before_the_call_is_refused_even_with_equal_bytes() {
        // Without the probe, a failed first attempt followed by
        // AlreadyExists would look like our own write landing.
        let inner = Scripted::new(&[Step::Pass, Step::FailBefore]);
        let h = pack(b"pre");
        inner.store.write_new(&h, b"same").unwrap();
        let (b, _) = wrap(&inner);
        let e = b.write_new(&h, b"same").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
        assert_eq!(inner.calls(), ["stat"]);
    }

    #[test]
    fn a_write_that_never_landed_is_simply_retried() {
        let inner = Scripted::new(&[Step::FailBefore, Step::Pass, Step::FailBefore]);
        let (b, _) = wrap(&inner);
        let h = pack(b"retry");
        b.write_new(&h, b"bytes").unwrap();
        assert_eq!(inner.calls(), ["stat", "stat", "write_new", "write_new"]);
        assert_eq!(inner.store.read(&h).unwrap(), b"bytes");
        assert_eq!(b.retries(), 2);
        assert_eq!(b.stats().ambiguous_resolved(), 0);
    }

    #[test]
    fn deletes_resolve_like_writes() {
        let inner = Scripted::new(&[Step::Pass, Step::LandThenFail]);
        let h = pack(b"d");
        inner.store.write_new(&h, b"x").unwrap();
        let (b, _) = wrap(&inner);
        b.delete(&h).unwrap();
        assert_eq!(inner.calls(), ["stat", "delete", "delete"]);
        assert_eq!(b.stats().ambiguous_resolved(), 1);
        // A missing object is NotFound, as the target says.
        assert!(b.delete(&h).unwrap_err().is_not_found());
    }

    #[test]
    fn replaces_are_retried_even_when_they_landed() {
        let config = Handle::config();
        let inner = Scripted::new(&[Step::LandThenFail, Step::FailBefore]);
        inner.store.write_new(&config, b"old").unwrap();
        let (b, _) = wrap(&inner);
        b.replace(&config, b"new").unwrap();
        assert_eq!(inner.calls(), ["replace"; 3]);
        assert_eq!(inner.store.read(&config).unwrap(), b"new");
        assert_eq!(b.retries(), 2);
        // A missing object is NotFound at once, and is not created.
        let inner = Scripted::new(&[]);
        let (b, _) = wrap(&inner);
        assert!(b.replace(&config, b"new").unwrap_err().is_not_found());
        assert_eq!(inner.calls(), ["replace"]);
        assert!(inner.store.stat(&config).unwrap_err().is_not_found());
    }

    #[test]
    fn short_ranged_reads_are_retried() {
        let inner = Scripted::new(&[Step::Short]);
        let h = pack(b"short");
        inner.store.write_new(&h, b"0123456789").unwrap();
        let (b, _) = wrap(&inner);
        assert_eq!(b.read_range(&h, 2, 5).unwrap(), b"23456");
        assert_eq!(b.retries(), 1);

        let inner = Scripted::new(&vec![Step::Short; 6]);
        inner.store.write_new(&h, b"0123456789").unwrap();
        let (b, _) = wrap(&inner);
        let e = b.read_range(&h, 2, 5).unwrap_err();
        assert!(
            e.to_string().contains("returned 4 bytes for a read of 5"),
            "{e}"
        );
    }

    #[test]
    fn the_observer_hears_every_retry() {
        let inner = Scripted::new(&[Step::FailBefore, Step::FailBefore]);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let (b, clock) = wrap(&inner);
        let b = b.with_observer(Arc::new(move |e: &RetryEvent<'_>| {
            log.lock()
                .unwrap()
                .push((e.op, e.object.to_string(), e.attempt, e.delay));
        }));
        b.list(ObjectKind::Snapshot).unwrap();
        let heard = heard.lock().unwrap().clone();
        let sleeps = clock.sleeps();
        assert_eq!(
            heard,
            [
                ("list", "snapshots".to_string(), 1, sleeps[0]),
                ("list", "snapshots".to_string(), 2, sleeps[1]),
            ]
        );
    }

    #[test]
    fn conforms_over_a_conforming_backend_and_over_dyn() {
        let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let b = RetryBackend::new(inner, RetryPolicy::DEFAULT);
        conformance::run_all(&b);
        assert_eq!(b.retries(), 0);
    }
}
