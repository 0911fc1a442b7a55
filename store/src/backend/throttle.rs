//! Bandwidth caps, so that a backup does not starve the machine it protects.
//!
//! [`ThrottledBackend`] puts a [`RateLimiter`] (a token bucket in bytes per
//! second, shared by every thread that uses the backend) in front of
//! uploads (`write_new`) and one in front of downloads (`read`,
//! `read_range`); either may be absent (unlimited). Listing, `stat` and
//! `delete` move next to nothing and are not limited.
//!
//! The bucket holds at most a tenth of a second of traffic and goes into
//! debt for requests larger than that: a caller reserves its bytes, the
//! bucket says how long until they are paid for, and the caller sleeps that
//! long (no busy-waiting). Later callers queue behind the debt, so the
//! callers are served in order and the long-run rate is the cap, whatever
//! the object sizes and however many threads share the bucket.
//!
//! Uploads pay before they are sent. Ranged reads pay their length before
//! they are sent (up to [`PREPAY_LIMIT`]; a larger read pays the rest when
//! it arrives, and a failed one is refunded), whole reads pay when their
//! bytes have arrived. The backend trait moves whole objects, so each object
//! still travels at the link's speed once paid for: the cap holds on average
//! over a few seconds, not within one object. A transport that streams
//! could call [`RateLimiter::take`] per buffer for smoother pacing.

use super::clock::{Clock, SystemClock};
use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Ranged reads reserve their length before they are sent up to this many
/// bytes; anything beyond is paid on arrival (so that a bogus huge length,
/// which the target refuses, does not wait for ever first).
pub const PREPAY_LIMIT: u64 = 16 << 20;

/// Nanoseconds per second: tokens are kept in byte-nanoseconds per second
/// (bytes × 10⁹) so that refills over any elapsed time are exact integers.
const SCALE: i128 = 1_000_000_000;

/// A token bucket of bytes per second, shared by all threads.
pub struct RateLimiter {
    rate: NonZeroU64,
    burst: u64,
    clock: Arc<dyn Clock>,
    bucket: Mutex<Bucket>,
}

/// The bucket's state.
#[derive(Debug)]
struct Bucket {
    /// Available tokens × [`SCALE`]; negative while callers wait on debt.
    tokens: i128,
    /// When `tokens` was last brought up to date.
    updated: Duration,
    /// Bytes reserved so far, minus refunds.
    taken: u64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter of `rate` bytes per second on real time.
    pub fn new(rate: NonZeroU64) -> Self {
        Self::with_clock(rate, Arc::new(SystemClock::new()))
    }

    /// A limiter of `rate` bytes per second on `clock`. The bucket starts
    /// full: a tenth of a second of traffic may pass without waiting.
    pub fn with_clock(rate: NonZeroU64, clock: Arc<dyn Clock>) -> Self {
        let burst = rate.get() / 10;
        let updated = clock.now();
        RateLimiter {
            rate,
            burst,
            clock,
            bucket: Mutex::new(Bucket {
                tokens: i128::from(burst) * SCALE,
                updated,
                taken: 0,
            }),
        }
    }

    /// The cap, in bytes per second.
    pub fn rate(&self) -> NonZeroU64 {
        self.rate
    }

    /// The most bytes that pass without waiting after an idle spell.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Bytes reserved so far (refunds deducted).
    pub fn taken(&self) -> u64 {
        self.bucket().taken
    }

    /// Reserves `bytes` and returns how long the caller must wait before
    /// sending them. Does not sleep; [`RateLimiter::take`] does.
    pub fn reserve(&self, bytes: u64) -> Duration {
        let mut b = self.refilled();
        b.tokens = b.tokens.saturating_sub(i128::from(bytes) * SCALE);
        b.taken = b.taken.saturating_add(bytes);
        if b.tokens >= 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(self.rate.get());
        // Round up: waking a nanosecond early would overdraw the bucket.
        let nanos = (-b.tokens + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Reserves `bytes` and sleeps until they are paid for.
    pub fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes);
        self.clock.sleep(wait);
    }

    /// Gives back `bytes` reserved for a transfer that did not happen.
    pub fn refund(&self, bytes: u64) {
        let mut b = self.refilled();
        let cap = i128::from(self.burst) * SCALE;
        b.tokens = b.tokens.saturating_add(i128::from(bytes) * SCALE).min(cap);
        b.taken = b.taken.saturating_sub(bytes);
    }

    /// The bucket, refilled for the time elapsed since its last update.
    fn refilled(&self) -> MutexGuard<'_, Bucket> {
        let now = self.clock.now();
        let mut b = self.bucket();
        let elapsed = now.saturating_sub(b.updated).as_nanos();
        let refill = elapsed.saturating_mul(u128::from(self.rate.get()));
        let cap = i128::from(self.burst) * SCALE;
        if b.tokens < cap {
            let refill = i128::try_from(refill).unwrap_or(i128::MAX);
            b.tokens = b.tokens.saturating_add(refill).min(cap);
        }
        b.updated = b.updated.max(now);
        b
    }

    /// The bucket, even if a thread panicked while holding it: every
    /// update leaves it consistent.
    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A backend whose uploads and downloads are capped in bytes per second.
///
/// Generic over `B: ?Sized` so that it wraps an `Arc<dyn Backend>`; it
/// conforms whenever the inner backend does.
pub struct ThrottledBackend<B: Backend + ?Sized> {
    inner: Arc<B>,
    upload: Option<Arc<RateLimiter>>,
    download: Option<Arc<RateLimiter>>,
}

impl<B: Backend + ?Sized> fmt::Debug for ThrottledBackend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottledBackend")
            .field("location", &self.inner.location())
            .field("upload", &self.upload)
            .field("download", &self.download)
            .finish()
    }
}

impl<B: Backend + ?Sized> ThrottledBackend<B> {
    /// Wraps `inner` with an upload and a download limiter (`None` =
    /// unlimited). A limiter may be shared with other backends to cap them
    /// together.
    pub fn new(
        inner: Arc<B>,
        upload: Option<Arc<RateLimiter>>,
        download: Option<Arc<RateLimiter>>,
    ) -> Self {
        ThrottledBackend {
            inner,
            upload,
            download,
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The upload limiter, if any.
    pub fn upload(&self) -> Option<&Arc<RateLimiter>> {
        self.upload.as_ref()
    }

    /// The download limiter, if any.
    pub fn download(&self) -> Option<&Arc<RateLimiter>> {
        self.download.as_ref()
    }
}

impl<B: Backend + ?Sized> Backend for ThrottledBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(kind)
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        let bytes = self.inner.read(handle)?;
        if let Some(limit) = &self.download {
            limit.take(bytes.len() as u64);
        }
        Ok(bytes)
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let Some(limit) = &self.download else {
            return self.inner.read_range(handle, offset, len);
        };
        let prepaid = len.min(PREPAY_LIMIT);
        limit.take(prepaid);
        match self.inner.read_range(handle, offset, len) {
            Ok(bytes) => {
                let got = bytes.len() as u64;
                if got > prepaid {
                    limit.take(got - prepaid);
                } else {
                    limit.refund(prepaid - got);
                }
                Ok(bytes)
            }
            Err(e) => {
                limit.refund(prepaid);
                Err(e)
            }
        }
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        if let Some(limit) = &self.upload {
            limit.take(data.len() as u64);
        }
        self.inner.write_new(handle, data)
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        if let Some(limit) = &self.upload {
            limit.take(data.len() as u64);
        }
        self.inner.replace(handle, data)
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        self.inner.delete(handle)
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        self.inner.stat(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::MemoryBackend;
    use crate::backend::clock::ManualClock;
    use crate::backend::conformance;

    fn limiter(rate: u64) -> (RateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let rate = NonZeroU64::new(rate).unwrap();
        (RateLimiter::with_clock(rate, clock.clone()), clock)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_passes_its_burst_then_charges_by_the_rate() {
        let (l, _) = limiter(1000);
        assert_eq!(l.burst(), 100);
        assert_eq!(l.reserve(100), Duration::ZERO);
        assert_eq!(l.reserve(1000), ms(1000));
        assert_eq!(l.taken(), 1100);
    }

    #[test]
    fn debt_queues_callers_in_order() {
        let (l, clock) = limiter(1000);
        // Two callers at the same instant: the second waits for both.
        assert_eq!(l.reserve(500), ms(400));
        assert_eq!(l.reserve(500), ms(900));
        // Half a second later the first is paid and the second half-way.
        clock.advance(ms(500));
        assert_eq!(l.reserve(0), ms(400));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_its_burst() {
        let (l, clock) = limiter(1000);
        assert_eq!(l.reserve(1100), ms(1000));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(l.reserve(100), Duration::ZERO);
        assert_eq!(l.reserve(1), ms(1));
        // Partial refills are exact: 1 byte per millisecond.
        clock.advance(ms(1));
        assert_eq!(l.reserve(0), Duration::ZERO);
        assert_eq!(l.reserve(3), ms(3));
    }

    #[test]
    fn waits_round_up_to_the_nanosecond() {
        let (l, _) = limiter(3);
        // Burst 0 at 3 B/s: one byte takes 333,333,333.3 ns.
        assert_eq!(l.reserve(1), Duration::from_nanos(333_333_334));
    }

    #[test]
    fn refunds_return_tokens_up_to_the_burst() {
        let (l, _) = limiter(1000);
        assert_eq!(l.reserve(600), ms(500));
        l.refund(600);
        assert_eq!(l.taken(), 0);
        assert_eq!(l.reserve(100), Duration::ZERO);
        l.refund(1_000_000);
        assert_eq!(l.reserve(101), ms(1));
    }

    #[test]
    fn huge_requests_and_rates_do_not_overflow() {
        let (l, clock) = limiter(u64::MAX);
        assert_eq!(l.reserve(u64::MAX / 10), Duration::ZERO);
        assert!(l.reserve(u64::MAX) <= Duration::from_secs(1));
        clock.advance(Duration::from_secs(u64::MAX / 4));
        assert_eq!(l.reserve(1), Duration::ZERO);
        let (l, _) = limiter(1);
        assert_eq!(l.reserve(u64::MAX), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn the_long_run_rate_is_the_cap() {
        // One caller taking uneven amounts on virtual time: the time spent
        // is what the bytes cost at the rate, less the initial burst.
        let (l, clock) = limiter(1_000_000);
        let mut total = 0u64;
        for n in 0..1000u64 {
            let bytes = 1 + (n * 7919) % 50_000;
            l.take(bytes);
            total += bytes;
        }
        let expected = Duration::from_micros(total - l.burst());
        let elapsed = clock.now();
        assert!(elapsed >= expected && elapsed - expected < Duration::from_micros(1));
    }

    fn throttled(
        rate: u64,
    ) -> (
        ThrottledBackend<MemoryBackend>,
        Arc<RateLimiter>,
        Arc<RateLimiter>,
    ) {
        let clock = Arc::new(ManualClock::new());
        let rate = NonZeroU64::new(rate).unwrap();
        let up = Arc::new(RateLimiter::with_clock(rate, clock.clone()));
        let down = Arc::new(RateLimiter::with_clock(rate, clock));
        let b = ThrottledBackend::new(
            Arc::new(MemoryBackend::new()),
            Some(up.clone()),
            Some(down.clone()),
        );
        (b, up, down)
    }

    #[test]
    fn uploads_and_downloads_are_charged_to_their_own_limiter() {
        let (b, up, down) = throttled(1000);
        let h = Handle::new(ObjectKind::Pack, &Id::of_object(b"t"));
        b.write_new(&h, &[7; 300]).unwrap();
        assert_eq!((up.taken(), down.taken()), (300, 0));
        b.read(&h).unwrap();
        b.read_range(&h, 10, 20).unwrap();
        b.stat(&h).unwrap();
        b.list(ObjectKind::Pack).unwrap();
        assert_eq!((up.taken(), down.taken()), (300, 320));
        // A refused read costs nothing; a bogus length prepays at most the
        // limit and is refunded.
        assert!(b.read_range(&h, 0, u64::MAX).is_err());
        assert_eq!(down.taken(), 320);
        b.replace(&h, &[8; 50]).unwrap();
        assert_eq!((up.taken(), down.taken()), (350, 320));
        b.delete(&h).unwrap();
        assert_eq!(up.taken(), 350);
    }

    #[test]
    fn conforms_over_a_conforming_backend() {
        let (b, up, down) = throttled(50 << 20);
        conformance::run_all(&b);
        // The suite writes and reads over 30 MiB: every byte was charged.
        assert!(up.taken() > 30 << 20, "{}", up.taken());
        assert!(down.taken() > 30 << 20, "{}", down.taken());
        let unlimited: ThrottledBackend<dyn Backend> =
            ThrottledBackend::new(Arc::new(MemoryBackend::new()), None, None);
        conformance::run_all(&unlimited);
    }
}
