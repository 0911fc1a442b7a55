//! A cap on how many calls run against a target at once (`--transfers`).
//!
//! Remote targets are latency-bound: one upload or download at a time
//! leaves the link idle between round trips, so cairn keeps several in
//! flight (the backup's background pack uploads, the restorer's and copy's
//! worker threads, check's pack readers). Too many would swamp a slow link,
//! a small server or the guest's memory (each upload holds its pack).
//! [`LimitedBackend`] makes the number a setting: every call (upload,
//! download, listing, stat, delete) holds one of `limit` permits while it
//! runs and waits for one when all are taken.
//!
//! It goes inside the retry wrapper, so a call waiting out its backoff
//! holds no permit, and outside the bandwidth caps, so a permit is held
//! while a capped transfer trickles.

use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Counting permits: at most `limit` holders at once.
#[derive(Debug)]
pub struct TransferLimit {
    limit: usize,
    in_flight: Mutex<usize>,
    freed: Condvar,
}

impl TransferLimit {
    /// `limit` permits (at least 1).
    pub fn new(limit: usize) -> Self {
        TransferLimit {
            limit: limit.max(1),
            in_flight: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// How many calls may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a permit, waiting while all are held; it is given back when
    /// the returned guard is dropped.
    pub fn acquire(&self) -> Permit<'_> {
        let mut n = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *n >= self.limit {
            n = self.freed.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
        *n += 1;
        Permit { limit: self }
    }
}

/// A held permit of a [`TransferLimit`].
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a TransferLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut n = self
            .limit
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *n -= 1;
        drop(n);
        self.limit.freed.notify_one();
    }
}

/// A backend that runs at most `limit` calls at once.
pub struct LimitedBackend<B: Backend + ?Sized> {
    inner: Arc<B>,
    limit: TransferLimit,
}

impl<B: Backend + ?Sized> std::fmt::Debug for LimitedBackend<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedBackend")
            .field("location", &self.inner.location())
            .field("limit", &self.limit.limit())
            .finish()
    }
}

impl<B: Backend + ?Sized> LimitedBackend<B> {
    /// Wraps `inner`, allowing `limit` calls at once (at least 1).
    pub fn new(inner: Arc<B>, limit: usize) -> Self {
        LimitedBackend {
            inner,
            limit: TransferLimit::new(limit),
        }
    }

    /// How many calls may run at once.
    pub fn limit(&self) -> usize {
        self.limit.limit()
    }
}

impl<B: Backend + ?Sized> Backend for LimitedBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        let _permit = self.limit.acquire();
        self.inner.list(kind)
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        let _permit = self.limit.acquire();
        self.inner.read(handle)
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let _permit = self.limit.acquire();
        self.inner.read_range(handle, offset, len)
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        self.inner.prefetch(handle, offset, len);
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let _permit = self.limit.acquire();
        self.inner.write_new(handle, data)
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        let _permit = self.limit.acquire();
        self.inner.delete(handle)
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        let _permit = self.limit.acquire();
        self.inner.replace(handle, data)
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        let _permit = self.limit.acquire();
        self.inner.stat(handle)
    }
}

/// Counts the calls running against a backend at once and remembers the
/// most seen, **a test tool** (the agent's `CAIRN_TEST_MAX_IN_FLIGHT` hook
/// and the tests of [`LimitedBackend`]).
pub struct InFlightCounter {
    inner: Arc<dyn Backend>,
    state: Mutex<(usize, usize)>,
    on_new_max: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

impl InFlightCounter {
    /// Counts the calls to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        InFlightCounter {
            inner,
            state: Mutex::new((0, 0)),
            on_new_max: None,
        }
    }

    /// Calls `report` with every new maximum (under the counter's lock, so
    /// reports arrive in increasing order).
    pub fn on_new_max(mut self, report: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_new_max = Some(Box::new(report));
        self
    }

    /// The most calls seen running at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    fn counted<T>(&self, call: impl FnOnce() -> T) -> T {
        {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.0 += 1;
            if s.0 > s.1 {
                s.1 = s.0;
                if let Some(report) = &self.on_new_max {
                    report(s.1);
                }
            }
        }
        let r = call();
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 -= 1;
        r
    }
}

impl Backend for InFlightCounter {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.counted(|| self.inner.list(kind))
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        self.counted(|| self.inner.read(handle))
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.counted(|| self.inner.read_range(handle, offset, len))
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.counted(|| self.inner.write_new(handle, data))
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        self.counted(|| self.inner.delete(handle))
    }

    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.counted(|| self.inner.replace(handle, data))
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        self.counted(|| self.inner.stat(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::MemoryBackend;
    use crate::backend::conformance;

    /// A backend whose every call yields a few times, so that calls from
    /// many threads overlap.
    struct Slow(MemoryBackend);

    impl Slow {
        fn pause() {
            for _ in 0..20 {
                std::thread::yield_now();
            }
        }
    }

    impl Backend for Slow {
        fn location(&self) -> String {
            self.0.location()
        }
        fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
            Self::pause();
            self.0.list(kind)
        }
        fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
            Self::pause();
            self.0.read(h)
        }
        fn read_range(&self, h: &Handle, o: u64, l: u64) -> Result<Vec<u8>, BackendError> {
            Self::pause();
            self.0.read_range(h, o, l)
        }
        fn write_new(&self, h: &Handle, d: &[u8]) -> Result<(), BackendError> {
            Self::pause();
            self.0.write_new(h, d)
        }
        fn delete(&self, h: &Handle) -> Result<(), BackendError> {
            Self::pause();
            self.0.delete(h)
        }
        fn replace(&self, h: &Handle, d: &[u8]) -> Result<(), BackendError> {
            Self::pause();
            self.0.replace(h, d)
        }
        fn stat(&self, h: &Handle) -> Result<ObjectInfo, BackendError> {
            Self::pause();
            self.0.stat(h)
        }
    }

    fn hammer(backend: &dyn Backend, threads: usize) {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for i in 0..50u32 {
                        let h = Handle::new(
                            ObjectKind::Pack,
                            &Id::of_object(&[t as u8, i as u8, (i >> 8) as u8]),
                        );
                        backend.write_new(&h, b"bytes").unwrap();
                        backend.read_range(&h, 1, 3).unwrap();
                        backend.stat(&h).unwrap();
                        backend.list(ObjectKind::Index).unwrap();
                        backend.delete(&h).unwrap();
                    }
                });
            }
        });
    }

    #[test]
    fn never_more_calls_in_flight_than_the_limit() {
        for limit in [1, 3] {
            let counter = Arc::new(InFlightCounter::new(Arc::new(Slow(MemoryBackend::new()))));
            let limited = LimitedBackend::new(counter.clone(), limit);
            hammer(&limited, 8);
            let max = counter.max_in_flight();
            assert!((1..=limit).contains(&max), "limit {limit}: {max} in flight");
        }
    }

    #[test]
    fn the_counter_sees_parallel_calls_without_a_limit() {
        // What makes the test above meaningful: unlimited, the same load
        // runs several calls at once (8 threads, every call yielding).
        let reported = Arc::new(Mutex::new(Vec::new()));
        let log = reported.clone();
        let counter = InFlightCounter::new(Arc::new(Slow(MemoryBackend::new())))
            .on_new_max(move |n| log.lock().unwrap().push(n));
        hammer(&counter, 8);
        let reported = reported.lock().unwrap().clone();
        assert_eq!(reported.last().copied(), Some(counter.max_in_flight()));
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        assert!(counter.max_in_flight() > 1, "{reported:?}");
    }

    #[test]
    fn conforms() {
        let b = LimitedBackend::new(Arc::new(MemoryBackend::new()), 2);
        conformance::run_all(&b);
        assert_eq!(b.limit(), 2);
        assert_eq!(
            LimitedBackend::new(Arc::new(MemoryBackend::new()), 0).limit(),
            1
        );
    }
}
