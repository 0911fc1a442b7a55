//! Fault injection, **a test tool**: a backend that fails, delays or
//! truncates a chosen share of calls, or goes away altogether.
//!
//! Remote targets misbehave in ways a local disk never does, and the code
//! that copes with it (the [retry wrapper](super::retry), the repository's
//! write order and its authentication of everything it reads) is only
//! believable when tested against those faults. [`FaultyBackend`] wraps any
//! backend and, following a [`FaultPlan`]:
//!
//! - fails a share of calls, per operation, with a transient error
//!   (a reset connection). For `write_new`, `replace` and `delete` a share of those
//!   failures happens *after* the call reached the target ("landed"): the
//!   object is written or deleted, only the reply is lost;
//! - delays a share of calls (on the injected [`Clock`]);
//! - truncates a share of successful reads: fewer bytes come back with no
//!   error, as from a broken transfer. This is never harmless: the retry
//!   wrapper catches short ranged reads, and the repository catches
//!   everything else because every object it reads is authenticated or
//!   named by its hash (tests prove both);
//! - "goes away": after a number of successful calls, every call fails
//!   with a permanent error, until [`FaultyBackend::recover`].
//!
//! Decisions are deterministic: each is a hash of the seed, the operation,
//! the object and how many times that operation has been called on that
//! object. The same calls on the same objects meet the same faults whatever
//! the thread interleaving.

use super::clock::{Clock, SystemClock};
use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The operations of a backend, for per-operation fault rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `list`.
    List,
    /// `read` (a whole object).
    Read,
    /// `read_range`.
    ReadRange,
    /// `write_new`.
    WriteNew,
    /// `delete`.
    Delete,
    /// `stat`.
    Stat,
    /// `replace`.
    Replace,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; OPS] = [
        Op::List,
        Op::Read,
        Op::ReadRange,
        Op::WriteNew,
        Op::Delete,
        Op::Stat,
        Op::Replace,
    ];

    /// The operation's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Read | Op::ReadRange => "read",
            Op::WriteNew => "write",
            Op::Delete => "delete",
            Op::Stat => "stat",
            Op::Replace => "replace",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many operations [`Op`] has.
pub const OPS: usize = 7;

/// What to inject. Rates are probabilities in `[0, 1]`; everything is off
/// in [`FaultPlan::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Determines every decision.
    pub seed: u64,
    /// Share of calls failing transiently, per [`Op`] (indexed by
    /// `Op as usize`).
    pub fail: [f64; OPS],
    /// Share of injected `write_new`/`delete`/`replace` failures that
    /// happen after the call took effect on the target.
    pub landed: f64,
    /// Share of calls delayed, and by how long.
    pub delay: (f64, Duration),
    /// Share of successful reads truncated, per [`Op`] (only `Read` and
    /// `ReadRange` are used).
    pub truncate: [f64; OPS],
    /// After this many successful calls, the target goes away.
    pub gone_after: Option<u64>,
}

impl FaultPlan {
    /// A plan injecting nothing yet; half of the write and delete failures
    /// added later land on the target.
    pub fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            fail: [0.0; OPS],
            landed: 0.5,
            delay: (0.0, Duration::ZERO),
            truncate: [0.0; OPS],
            gone_after: None,
        }
    }

    /// Fails `rate` of the calls of every operation.
    pub fn fail(mut self, rate: f64) -> Self {
        self.fail = [rate; OPS];
        self
    }

    /// Fails `rate` of the calls of `op`.
    pub fn fail_op(mut self, op: Op, rate: f64) -> Self {
        self.fail[op.index()] = rate;
        self
    }

    /// Lets `share` of the injected write and delete failures land first.
    pub fn landed(mut self, share: f64) -> Self {
        self.landed = share;
        self
    }

    /// Delays `rate` of the calls by `by`.
    pub fn delay(mut self, rate: f64, by: Duration) -> Self {
        self.delay = (rate, by);
        self
    }

    /// Truncates `rate` of the successful reads, whole and ranged.
    pub fn truncate_reads(mut self, rate: f64) -> Self {
        self.truncate[Op::Read.index()] = rate;
        self.truncate[Op::ReadRange.index()] = rate;
        self
    }

    /// Truncates `rate` of the successful reads of `op` (`Read` or
    /// `ReadRange`).
    pub fn truncate_op(mut self, op: Op, rate: f64) -> Self {
        self.truncate[op.index()] = rate;
        self
    }

    /// Makes the target go away after `calls` successful calls.
    pub fn gone_after(mut self, calls: u64) -> Self {
        self.gone_after = Some(calls);
        self
    }
}

/// Why a textual fault plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fault plan {spec:?}: {reason}; write comma-separated settings such as \
     seed=7,fail=0.1,truncate=0.05,delay=0.1:50ms,landed=0.5,gone_after=100 \
     (rates from 0 to 1)"
)]
pub struct FaultSpecError {
    spec: String,
    reason: String,
}

impl std::str::FromStr for FaultPlan {
    type Err = FaultSpecError;

    /// Parses `seed=S,fail=R,truncate=R,delay=R:D,landed=S,gone_after=N`
    /// (every setting optional; `D` in `ms` or `s`): `fail` applies to
    /// every operation, `truncate` to whole and ranged reads.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| FaultSpecError {
            spec: spec.to_string(),
            reason,
        };
        let mut plan = FaultPlan::new(0);
        for setting in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| error(format!("{setting:?} is not key=value")))?;
            let rate = |v: &str| -> Result<f64, FaultSpecError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| error(format!("{key}: {v:?} is not a rate from 0 to 1")))
            };
            let whole = |v: &str| -> Result<u64, FaultSpecError> {
                v.parse::<u64>()
                    .map_err(|_| error(format!("{key}: {v:?} is not a whole number")))
            };
            plan = match key.trim() {
                "seed" => FaultPlan {
                    seed: whole(value)?,
                    ..plan
                },
                "fail" => plan.fail(rate(value)?),
                "truncate" => plan.truncate_reads(rate(value)?),
                "landed" => plan.landed(rate(value)?),
                "gone_after" => plan.gone_after(whole(value)?),
                "delay" => {
                    let (share, by) = value.split_once(':').ok_or_else(|| {
                        error(format!("delay: {value:?} is not RATE:DURATION (0.1:50ms)"))
                    })?;
                    let by = parse_duration(by).ok_or_else(|| {
                        error(format!(
                            "delay: {by:?} is not a duration such as 50ms or 2s"
                        ))
                    })?;
                    plan.delay(rate(share)?, by)
                }
                other => return Err(error(format!("unknown setting {other:?}"))),
            };
        }
        Ok(plan)
    }
}

/// `50ms` or `2s` (whole numbers).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else {
        s.strip_suffix('s')?.parse().ok().map(Duration::from_secs)
    }
}

/// How many faults a [`FaultyBackend`] has injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Transient failures, landed ones included.
    pub failures: u64,
    /// Failures of writes and deletes that took effect first.
    pub landed: u64,
    /// Delayed calls.
    pub delays: u64,
    /// Truncated reads.
    pub truncations: u64,
    /// Calls refused because the target was gone.
    pub refused_gone: u64,
}

#[derive(Debug, Default)]
struct Counters {
    failures: AtomicU64,
    landed: AtomicU64,
    delays: AtomicU64,
    truncations: AtomicU64,
    refused_gone: AtomicU64,
}

/// Why a decision is drawn (each gets its own hash).
#[derive(Debug, Clone, Copy)]
enum Draw {
    Fail = 1,
    Landed,
    Delay,
    Truncate,
    Cut,
}

/// A backend that injects faults into the calls to another. See the module
/// documentation; for tests only.
pub struct FaultyBackend<B: Backend + ?Sized> {
    inner: Arc<B>,
    plan: FaultPlan,
    clock: Arc<dyn Clock>,
    calls: Mutex<HashMap<(Op, String), u64>>,
    successes: AtomicU64,
    gone_after: AtomicU64,
    counters: Counters,
}

impl<B: Backend + ?Sized> fmt::Debug for FaultyBackend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("location", &self.inner.location())
            .field("plan", &self.plan)
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

impl<B: Backend + ?Sized> FaultyBackend<B> {
    /// Wraps `inner` with `plan`; delays sleep in real time.
    pub fn new(inner: Arc<B>, plan: FaultPlan) -> Self {
        let gone_after = plan.gone_after.unwrap_or(u64::MAX);
        FaultyBackend {
            inner,
            plan,
            clock: Arc::new(SystemClock::new()),
            calls: Mutex::new(HashMap::new()),
            successes: AtomicU64::new(0),
            gone_after: AtomicU64::new(gone_after),
            counters: Counters::default(),
        }
    }

    /// Delays on `clock` (a [`ManualClock`](super::clock::ManualClock) keeps
    /// tests from sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// Calls that have succeeded so far.
    pub fn successful_calls(&self) -> u64 {
        self.successes.load(Ordering::SeqCst)
    }

    /// Makes the target go away after `calls` more successful calls.
    pub fn go_away_after(&self, calls: u64) {
        let at = self.successful_calls().saturating_add(calls);
        self.gone_after.store(at, Ordering::SeqCst);
    }

    /// Whether the target is gone (every call fails permanently).
    pub fn is_gone(&self) -> bool {
        self.successful_calls() >= self.gone_after.load(Ordering::SeqCst)
    }

    /// Brings the target back (faults of the plan still apply).
    pub fn recover(&self) {
        self.gone_after.store(u64::MAX, Ordering::SeqCst);
    }

    /// The faults injected so far.
    pub fn injected(&self) -> FaultCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            failures: get(&c.failures),
            landed: get(&c.landed),
            delays: get(&c.delays),
            truncations: get(&c.truncations),
            refused_gone: get(&c.refused_gone),
        }
    }

    /// A 64-bit value determined by the seed, the call and the purpose.
    fn draw(&self, op: Op, object: &str, nth: u64, what: Draw) -> u64 {
        let mut h = blake3::Hasher::new_derive_key("cairn fault injection 2025");
        h.update(&self.plan.seed.to_le_bytes());
        h.update(&[op as u8, what as u8]);
        h.update(&nth.to_le_bytes());
        h.update(object.as_bytes());
        let mut out = [0u8; 8];
        h.finalize_xof().fill(&mut out);
        u64::from_le_bytes(out)
    }

    /// Whether an event of probability `rate` happens for this call.
    fn happens(&self, op: Op, object: &str, nth: u64, what: Draw, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        // 53 random bits as a uniform number in [0, 1).
        let unit = (self.draw(op, object, nth, what) >> 11) as f64 / (1u64 << 53) as f64;
        unit < rate
    }

    /// How many times `op` was called on `object` before this call.
    fn nth_call(&self, op: Op, object: &str) -> u64 {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let n = calls.entry((op, object.to_string())).or_insert(0);
        *n += 1;
        *n - 1
    }

    /// Runs one call under the plan. `object` names the object (or the
    /// listed directory) for decisions and messages.
    fn call<T>(
        &self,
        op: Op,
        object: &str,
        run: impl FnOnce() -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if self.is_gone() {
            self.counters.refused_gone.fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::Service {
                op: op.name(),
                object: object.to_string(),
                message: "the target went away (injected fault)".into(),
                transient: false,
            });
        }
        let nth = self.nth_call(op, object);
        let (delay_rate, delay) = self.plan.delay;
        if self.happens(op, object, nth, Draw::Delay, delay_rate) {
            self.counters.delays.fetch_add(1, Ordering::Relaxed);
            self.clock.sleep(delay);
        }
        if self.happens(op, object, nth, Draw::Fail, self.plan.fail[op.index()]) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            let mutates = matches!(op, Op::WriteNew | Op::Delete | Op::Replace);
            if mutates && self.happens(op, object, nth, Draw::Landed, self.plan.landed) {
                // The call takes effect; only its reply is lost. A call the
                // target refused reports that refusal as it would.
                run()?;
                self.counters.landed.fetch_add(1, Ordering::Relaxed);
            }
            return Err(BackendError::Io {
                op: op.name(),
                object: object.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset (injected fault)",
                ),
            });
        }
        let r = run();
        if r.is_ok() {
            self.successes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    /// A successful read, truncated if the plan says so.
    fn maybe_truncate(&self, op: Op, object: &str, mut bytes: Vec<u8>) -> Vec<u8> {
        // The call counter has moved on: this call was number n - 1.
        let nth = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(op, object.to_string()))
            .map_or(0, |n| n.saturating_sub(1));
        if !bytes.is_empty()
            && self.happens(
                op,
                object,
                nth,
                Draw::Truncate,
                self.plan.truncate[op.index()],
            )
        {
            let keep = self.draw(op, object, nth, Draw::Cut) % bytes.len() as u64;
            bytes.truncate(keep as usize);
            self.counters.truncations.fetch_add(1, Ordering::Relaxed);
        }
        bytes
    }
}

impl<B: Backend + ?Sized> Backend for FaultyBackend<B> {
    fn location(&self) -> String {
        format!("{} (with injected faults)", self.inner.location())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        let dir = format!("{}/", kind.dir());
        self.call(Op::List, &dir, || self.inner.list(kind))
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        let object = handle.to_string();
        let bytes = self.call(Op::Read, &object, || self.inner.read(handle))?;
        Ok(self.maybe_truncate(Op::Read, &object, bytes))
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let object = handle.to_string();
        let bytes = self.call(Op::ReadRange, &object, || {
            self.inner.read_range(handle, offset, len)
        })?;
        Ok(self.maybe_truncate(Op::ReadRange, &object, bytes))
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let object = handle.to_string();
        self.call(Op::WriteNew, &object, || self.inner.write_new(handle, data))
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let object = handle.to_string();
        self.call(Op::Replace, &object, || self.inner.replace(handle, data))
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        let object = handle.to_string();
        self.call(Op::Delete, &object, || self.inner.delete(handle))
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        let object = handle.to_string();
        self.call(Op::Stat, &object, || self.inner.stat(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::MemoryBackend;
    use crate::backend::clock::ManualClock;
    use crate::backend::conformance;

    fn pack(n: u32) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(&n.to_le_bytes()))
    }

    fn faulty(plan: FaultPlan) -> FaultyBackend<MemoryBackend> {
        FaultyBackend::new(Arc::new(MemoryBackend::new()), plan)
            .with_clock(Arc::new(ManualClock::new()))
    }

    /// Which of `n` stats of each of 20 objects fail, as a bit pattern.
    fn failure_pattern(b: &FaultyBackend<MemoryBackend>, n: u32) -> Vec<bool> {
        (0..20)
            .flat_map(|h| (0..n).map(move |_| h))
            .map(|h| matches!(b.stat(&pack(h)), Err(e) if e.is_transient()))
            .collect()
    }

    #[test]
    fn without_faults_it_conforms_and_passes_everything() {
        let b = faulty(FaultPlan::new(1));
        conformance::run_all(&b);
        assert_eq!(b.injected(), FaultCounts::default());
        assert!(b.location().contains("injected faults"));
    }

    #[test]
    fn decisions_follow_the_seed() {
        let plan = FaultPlan::new(42).fail(0.3);
        let a = failure_pattern(&faulty(plan.clone()), 5);
        assert_eq!(a, failure_pattern(&faulty(plan), 5));
        assert_ne!(a, failure_pattern(&faulty(FaultPlan::new(43).fail(0.3)), 5));
    }

    #[test]
    fn about_the_chosen_share_of_calls_fails() {
        let b = faulty(FaultPlan::new(7).fail_op(Op::Stat, 0.1));
        let failed = failure_pattern(&b, 500).iter().filter(|f| **f).count();
        // 10,000 calls at 10%: a fixed seed, so this is not flaky; the
        // bounds are ±6 standard deviations.
        assert!((820..1180).contains(&failed), "{failed} of 10000");
        assert_eq!(b.injected().failures, failed as u64);
        // Other operations are untouched.
        assert!(b.list(ObjectKind::Pack).is_ok());
    }

    #[test]
    fn landed_writes_and_deletes_take_effect_before_failing() {
        let b = faulty(FaultPlan::new(3).fail(1.0).landed(1.0));
        let h = pack(1);
        let e = b.write_new(&h, b"landed").unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(b.inner().read(&h).unwrap(), b"landed");
        // The target's own refusal comes through, not a fake failure.
        let e = b.write_new(&h, b"again").unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e:?}");
        assert!(b.delete(&h).unwrap_err().is_transient());
        assert!(b.inner().stat(&h).unwrap_err().is_not_found());
        assert_eq!(b.injected().landed, 2);

        let b = faulty(FaultPlan::new(3).fail(1.0).landed(0.0));
        assert!(b.write_new(&h, b"lost").unwrap_err().is_transient());
        assert!(b.inner().stat(&h).unwrap_err().is_not_found());
    }

    #[test]
    fn replaces_fail_before_or_after_landing_like_writes() {
        let config = Handle::config();
        let b = faulty(FaultPlan::new(4).fail_op(Op::Replace, 1.0).landed(1.0));
        b.inner().write_new(&config, b"old").unwrap();
        assert!(b.replace(&config, b"landed").unwrap_err().is_transient());
        assert_eq!(b.inner().read(&config).unwrap(), b"landed");
        assert_eq!(b.injected().landed, 1);
        let b = faulty(FaultPlan::new(4).fail_op(Op::Replace, 1.0).landed(0.0));
        b.inner().write_new(&config, b"old").unwrap();
        assert!(b.replace(&config, b"lost").unwrap_err().is_transient());
        assert_eq!(b.inner().read(&config).unwrap(), b"old");
        // Other operations are untouched by a replace-only plan.
        b.write_new(&pack(5), b"x").unwrap();
    }

    #[test]
    fn truncated_reads_return_fewer_bytes_without_error() {
        let b = faulty(FaultPlan::new(5).truncate_reads(1.0));
        let h = pack(2);
        b.write_new(&h, &[9; 1000]).unwrap();
        assert!(b.read(&h).unwrap().len() < 1000);
        assert!(b.read_range(&h, 100, 500).unwrap().len() < 500);
        // Nothing to cut from an empty read.
        assert!(b.read_range(&h, 0, 0).unwrap().is_empty());
        assert_eq!(b.injected().truncations, 2);

        let b = faulty(FaultPlan::new(5).truncate_op(Op::ReadRange, 1.0));
        b.write_new(&h, &[9; 1000]).unwrap();
        assert_eq!(b.read(&h).unwrap().len(), 1000);
        assert!(b.read_range(&h, 0, 1000).unwrap().len() < 1000);
    }

    #[test]
    fn delays_sleep_on_the_clock() {
        let clock = Arc::new(ManualClock::new());
        let b = FaultyBackend::new(
            Arc::new(MemoryBackend::new()),
            FaultPlan::new(9).delay(1.0, Duration::from_millis(250)),
        )
        .with_clock(clock.clone());
        b.list(ObjectKind::Index).unwrap();
        b.stat(&pack(3)).unwrap_err();
        assert_eq!(clock.slept(), Duration::from_millis(500));
        assert_eq!(b.injected().delays, 2);
    }

    #[test]
    fn a_target_that_goes_away_fails_permanently_until_it_recovers() {
        let b = faulty(FaultPlan::new(1).gone_after(2));
        b.write_new(&pack(1), b"a").unwrap();
        // A failed call does not count as a success.
        assert!(b.stat(&pack(9)).unwrap_err().is_not_found());
        b.write_new(&pack(2), b"b").unwrap();
        assert!(b.is_gone());
        for r in [b.write_new(&pack(3), b"c"), b.delete(&pack(1))] {
            let e = r.unwrap_err();
            assert!(!e.is_transient(), "{e:?}");
            assert!(e.to_string().contains("went away"), "{e}");
        }
        assert!(b.list(ObjectKind::Pack).is_err());
        assert_eq!(b.injected().refused_gone, 3);
        b.recover();
        assert_eq!(b.list(ObjectKind::Pack).unwrap().len(), 2);
        b.go_away_after(1);
        b.read(&pack(1)).unwrap();
        assert!(b.read(&pack(1)).is_err());
    }

    #[test]
    fn plans_parse_from_text() {
        let plan: FaultPlan = "seed=7, fail=0.1,truncate=0.05,delay=0.2:50ms,landed=1,gone_after=9"
            .parse()
            .unwrap();
        assert_eq!(
            plan,
            FaultPlan::new(7)
                .fail(0.1)
                .truncate_reads(0.05)
                .delay(0.2, Duration::from_millis(50))
                .landed(1.0)
                .gone_after(9)
        );
        assert_eq!("".parse::<FaultPlan>().unwrap(), FaultPlan::new(0));
        assert_eq!(
            "delay=1:2s".parse::<FaultPlan>().unwrap().delay,
            (1.0, Duration::from_secs(2))
        );
        for (bad, reason) in [
            ("fail", "not key=value"),
            ("fail=1.5", "not a rate"),
            ("fail=-0.1", "not a rate"),
            ("seed=x", "not a whole number"),
            ("delay=0.1", "not RATE:DURATION"),
            ("delay=0.1:50", "not a duration"),
            ("explode=1", "unknown setting"),
        ] {
            let e = bad.parse::<FaultPlan>().unwrap_err().to_string();
            assert!(e.contains(reason), "{bad}: {e}");
            assert!(e.contains("seed=7,fail=0.1"), "{e}");
        }
    }
}
