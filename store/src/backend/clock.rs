//! Time for the wrapper backends: a monotonic clock that can also sleep.
//!
//! The retry wrapper waits between attempts, the throttle waits for its
//! token bucket to refill and the fault injector delays calls. Behind this
//! trait they run on real time ([`SystemClock`]) in the agent and on
//! virtual time ([`ManualClock`]) in tests, so that no test sleeps for real
//! or depends on how fast the machine is.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A monotonic clock that can sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since an origin fixed when the clock was made.
    fn now(&self) -> Duration;

    /// Blocks the calling thread for `d` (no busy-waiting).
    fn sleep(&self, d: Duration);
}

/// Real time: [`Instant`] and [`std::thread::sleep`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// Virtual time, **for tests**: `sleep` returns at once and moves the clock
/// forward by the requested duration, and every sleep is recorded.
///
/// With several threads sleeping at once the virtual time is the sum of
/// their sleeps (not the longest), so it overstates real elapsed time; tests
/// use it for lower bounds and for the exact sleeps of one thread.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock at zero that has never slept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `d` without recording a sleep (time
    /// passing while nothing waits).
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update cannot fail: the closure always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(nanos))
            });
    }

    /// Every sleep so far, in the order they were asked for.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.log().clone()
    }

    /// The sum of every sleep so far.
    pub fn slept(&self) -> Duration {
        self.log().iter().sum()
    }

    /// The sleep log, even if a thread panicked while holding it (every
    /// update is one push, so the log is always whole).
    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Duration>> {
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, d: Duration) {
        self.log().push(d);
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        c.sleep(Duration::from_millis(30));
        c.advance(Duration::from_millis(5));
        c.sleep(Duration::from_millis(7));
        assert_eq!(c.now(), Duration::from_millis(42));
        assert_eq!(
            c.sleeps(),
            [Duration::from_millis(30), Duration::from_millis(7)]
        );
        assert_eq!(c.slept(), Duration::from_millis(37));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        c.sleep(Duration::ZERO);
        assert!(c.now() >= a);
    }
}
