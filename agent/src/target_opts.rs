//! Options that apply to every storage target whatever its kind: bandwidth
//! caps, retries and the number of transfers at once, and the function that
//! wraps a backend with them.
//!
//! They are kept apart from opening the target (`repo.rs`) because they are
//! behaviour added around any backend (see the store's `backend::retry` and
//! `backend::throttle`): a directory, SFTP or object storage get the same
//! wrappers. The command line gives them as `--limit-upload`,
//! `--limit-download`, `--retries` and `--transfers` (or
//! `CAIRN_LIMIT_UPLOAD`, `CAIRN_LIMIT_DOWNLOAD`, `CAIRN_RETRIES`,
//! `CAIRN_TRANSFERS`).

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;

use cairn_store::Backend;
use cairn_store::backend::clock::{Clock, SystemClock};
use cairn_store::backend::retry::{RetryEvent, RetryStats};
use cairn_store::backend::{
    LimitedBackend, RateLimiter, RetryBackend, RetryPolicy, ThrottledBackend,
};

/// Retries after a first failed attempt, unless the user says otherwise.
pub const DEFAULT_RETRIES: u32 = 5;

/// Transfers at once to a remote target (S3, Azure, SFTP) unless the user
/// says otherwise: such targets are latency-bound, so more transfers than
/// cores keep the link busy; 8 of 16 MiB packs is 128 MiB of uploads in
/// flight at most.
pub const DEFAULT_REMOTE_TRANSFERS: usize = 8;

/// The most transfers `--transfers` accepts.
pub const MAX_TRANSFERS: usize = 256;

/// Transfers at once to a target, unless `--transfers` says otherwise: 8
/// for a remote one, one per core (2 to 8) for a directory, whose calls
/// are file I/O bound by the disk (or a mounted share) rather than by
/// round trips.
pub fn default_transfers(remote: bool) -> usize {
    if remote {
        DEFAULT_REMOTE_TRANSFERS
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
    }
}

/// The wrappers a target gets.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Upload cap in bytes per second (`None`: unlimited).
    pub limit_upload: Option<NonZeroU64>,
    /// Download cap in bytes per second (`None`: unlimited).
    pub limit_download: Option<NonZeroU64>,
    /// Retries of a call that failed transiently (0: none).
    pub retries: u32,
    /// Calls at once against the target (`None`: [`default_transfers`]).
    pub transfers: Option<usize>,
    /// Print a warning on standard error before each retry.
    pub warn_on_retry: bool,
    /// Counters of the retry wrapper, shared with whoever reports them.
    pub retry_stats: Arc<RetryStats>,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            limit_upload: None,
            limit_download: None,
            retries: DEFAULT_RETRIES,
            transfers: None,
            warn_on_retry: true,
            retry_stats: Arc::default(),
        }
    }
}

impl TargetOptions {
    /// The transfers at once for a target, remote or not.
    pub fn transfers_for(&self, remote: bool) -> usize {
        self.transfers
            .unwrap_or_else(|| default_transfers(remote))
            .clamp(1, MAX_TRANSFERS)
    }
}

/// Wraps a freshly opened target with the options: retries outside, then
/// the cap on calls at once (a call waiting out its backoff holds no slot),
/// the bandwidth caps inside (so a retried upload is paid for again, as
/// its bytes are sent again), and innermost the test hooks, if a test set
/// any ([`crate::test_hooks`]). `transfers` is the cap on calls at once
/// ([`TargetOptions::transfers_for`]).
pub fn wrap_backend(
    inner: Arc<dyn Backend>,
    opts: &TargetOptions,
    transfers: usize,
) -> Arc<dyn Backend> {
    wrap_hooked(crate::test_hooks::wrap(inner), opts, transfers)
}

/// [`wrap_backend`] of a target that already has its test hooks
/// ([`crate::test_hooks::wrap`]): for callers that also need the target
/// as calls reach it, such as the probe of `cairn init`.
pub fn wrap_hooked(
    hooked: Arc<dyn Backend>,
    opts: &TargetOptions,
    transfers: usize,
) -> Arc<dyn Backend> {
    wrap_backend_on(hooked, opts, transfers, Arc::new(SystemClock::new()))
}

/// [`wrap_backend`] on a given clock (virtual time in tests).
fn wrap_backend_on(
    inner: Arc<dyn Backend>,
    opts: &TargetOptions,
    transfers: usize,
    clock: Arc<dyn Clock>,
) -> Arc<dyn Backend> {
    let limiter = |rate: Option<NonZeroU64>| {
        rate.map(|r| Arc::new(RateLimiter::with_clock(r, clock.clone())))
    };
    let (up, down) = (limiter(opts.limit_upload), limiter(opts.limit_download));
    let throttled: Arc<dyn Backend> = if up.is_some() || down.is_some() {
        Arc::new(ThrottledBackend::new(inner, up, down))
    } else {
        inner
    };
    let limited: Arc<dyn Backend> = Arc::new(LimitedBackend::new(throttled, transfers));
    if opts.retries == 0 {
        return limited;
    }
    let mut retry = RetryBackend::new(limited, RetryPolicy::with_retries(opts.retries))
        .with_clock(clock)
        .with_stats(opts.retry_stats.clone());
    if opts.warn_on_retry {
        retry = retry.with_observer(Arc::new(|e: &RetryEvent<'_>| {
            eprintln!("warning: {}", describe_retry(e));
        }));
    }
    Arc::new(retry)
}

/// The warning printed before a retry.
fn describe_retry(e: &RetryEvent<'_>) -> String {
    format!(
        "{} (attempt {} of {}); retrying in {:.1} s",
        e.error,
        e.attempt,
        e.max_attempts,
        e.delay.as_secs_f64()
    )
}

/// Why a rate given on the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate {input:?}: {reason}; write bytes per second with an optional binary \
     suffix K, M or G (KiB/s, MiB/s, GiB/s), for example 512K, 10M or 1.5M, or \"off\" for no limit"
)]
pub struct RateError {
    input: String,
    reason: &'static str,
}

/// A bandwidth cap as given on the command line: a rate, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(pub Option<NonZeroU64>);

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => write!(f, "{r} B/s"),
            None => f.write_str("off"),
        }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rate(s).map(RateLimit)
    }
}

/// Parses a rate in bytes per second: `1048576`, `512K`, `10M`, `1.5M`,
/// `1G`, with an optional `B`, `iB` and `/s` (`10MiB/s`); suffixes are
/// binary (K = 1024, like every size cairn takes) and case-insensitive.
/// `off`, `none` and `unlimited` mean no limit. Zero is refused: it would
/// never send a byte.
pub fn parse_rate(input: &str) -> Result<Option<NonZeroU64>, RateError> {
    let error = |reason| RateError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim().to_ascii_lowercase();
    if matches!(s.as_str(), "off" | "none" | "unlimited") {
        return Ok(None);
    }
    let s = s.strip_suffix("/s").unwrap_or(&s).trim_end();
    let number_end = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let shift = match suffix.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(error("unknown suffix")),
    };
    if fraction.contains('.') || fraction.len() > 9 {
        return Err(error("the number is malformed"));
    }
    let too_large = || error("the rate is too large");
    let digits = |d: &str| -> Result<u128, RateError> {
        if d.is_empty() {
            Ok(0)
        } else {
            d.parse::<u128>().map_err(|_| too_large())
        }
    };
    // (whole + fraction / 10^n) × 2^shift, rounded down, in exact integers.
    let scale = 10u128.pow(fraction.len() as u32);
    let scaled = digits(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(digits(fraction).ok()?))
        .ok_or_else(too_large)?;
    let bytes = scaled.checked_mul(1 << shift).ok_or_else(too_large)? / scale;
    let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
    match NonZeroU64::new(bytes) {
        Some(rate) => Ok(Some(rate)),
        None => Err(error("a rate of zero would never send a byte")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use cairn_store::backend::clock::ManualClock;
    use cairn_store::backend::{FaultPlan, FaultyBackend, MemoryBackend};
    use cairn_store::{BackendError, Handle, Id, ObjectKind};
    use std::time::Duration;

    fn rate(s: &str) -> u64 {
        parse_rate(s).unwrap().unwrap().get()
    }

    #[test]
    fn rates_parse_with_binary_suffixes() {
        assert_eq!(rate("1048576"), 1 << 20);
        assert_eq!(rate("512K"), 512 << 10);
        assert_eq!(rate("512k"), 512 << 10);
        assert_eq!(rate("10M"), 10 << 20);
        assert_eq!(rate("10MiB/s"), 10 << 20);
        assert_eq!(rate("10 MB/s"), 10 << 20);
        assert_eq!(rate(" 2g "), 2 << 30);
        assert_eq!(rate("1.5M"), 3 << 19);
        assert_eq!(rate("0.5K"), 512);
        assert_eq!(rate(".5k"), 512);
        assert_eq!(rate("100B"), 100);
        assert_eq!(rate("1.999"), 1);
        assert_eq!(rate("16G"), 16 << 30);
        for off in ["off", "OFF", "none", "unlimited"] {
            assert_eq!(parse_rate(off).unwrap(), None, "{off}");
        }
    }

    #[test]
    fn bad_rates_are_refused_with_the_reason() {
        for (input, reason) in [
            ("", "does not start with a number"),
            ("M", "does not start with a number"),
            ("fast", "does not start with a number"),
            ("10T", "unknown suffix"),
            ("10 Mbit", "unknown suffix"),
            ("-5M", "does not start with a number"),
            ("1.2.3M", "malformed"),
            ("0", "zero"),
            ("0.1", "zero"),
            ("0K", "zero"),
            ("99999999999999999999999G", "too large"),
            ("18446744073709551616", "too large"),
        ] {
            let e = parse_rate(input).unwrap_err().to_string();
            assert!(e.contains(reason), "{input:?}: {e}");
            assert!(e.contains("for example 512K"), "{e}");
        }
        assert_eq!(rate("18446744073709551615"), u64::MAX);
        assert!(
            "10M"
                .parse::<RateLimit>()
                .is_ok_and(|r| r.to_string() == "10485760 B/s")
        );
    }

    fn pack(tag: &[u8]) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(tag))
    }

    #[test]
    fn wrapped_targets_retry_and_count() {
        // A target where every call fails transiently: three retries (of the
        // probe before the write), then the error.
        let faulty = Arc::new(FaultyBackend::new(
            Arc::new(MemoryBackend::new()),
            FaultPlan::new(1).fail(1.0).landed(0.0),
        ));
        let opts = TargetOptions {
            warn_on_retry: false,
            retries: 3,
            ..TargetOptions::default()
        };
        let clock = Arc::new(ManualClock::new());
        let b = wrap_backend_on(faulty.clone(), &opts, 2, clock.clone());
        let e = b.write_new(&pack(b"x"), b"data").unwrap_err();
        assert!(e.is_transient());
        assert_eq!(opts.retry_stats.retries(), 3);
        assert_eq!(clock.sleeps().len(), 3);
        assert_eq!(b.location(), faulty.location());

        // No retries: the error comes straight through.
        let opts = TargetOptions {
            retries: 0,
            ..TargetOptions::default()
        };
        let b = wrap_backend_on(faulty, &opts, 2, clock);
        assert!(matches!(
            b.list(ObjectKind::Pack),
            Err(BackendError::Io { .. })
        ));
        assert_eq!(opts.retry_stats.retries(), 0);
    }

    #[test]
    fn wrapped_targets_run_at_most_transfers_calls_at_once() {
        use cairn_store::backend::InFlightCounter;
        let counter = Arc::new(InFlightCounter::new(Arc::new(MemoryBackend::new())));
        let b = wrap_backend_on(
            counter.clone(),
            &TargetOptions::default(),
            2,
            Arc::new(ManualClock::new()),
        );
        std::thread::scope(|s| {
            for t in 0..6u8 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..100u8 {
                        let h = pack(&[t, i]);
                        b.write_new(&h, b"data").unwrap();
                        b.read(&h).unwrap();
                    }
                });
            }
        });
        assert!((1..=2).contains(&counter.max_in_flight()));
    }

    #[test]
    fn transfers_default_by_kind_of_target_and_are_bounded() {
        let opts = TargetOptions::default();
        assert_eq!(opts.transfers_for(true), DEFAULT_REMOTE_TRANSFERS);
        assert!((2..=8).contains(&opts.transfers_for(false)));
        let opts = TargetOptions {
            transfers: Some(3),
            ..TargetOptions::default()
        };
        assert_eq!(
            (opts.transfers_for(true), opts.transfers_for(false)),
            (3, 3)
        );
        let opts = TargetOptions {
            transfers: Some(0),
            ..TargetOptions::default()
        };
        assert_eq!(opts.transfers_for(true), 1);
    }

    #[test]
    fn wrapped_targets_are_capped_in_each_direction() {
        let opts = TargetOptions {
            limit_upload: NonZeroU64::new(1000),
            limit_download: NonZeroU64::new(2000),
            ..TargetOptions::default()
        };
        let clock = Arc::new(ManualClock::new());
        let b = wrap_backend_on(Arc::new(MemoryBackend::new()), &opts, 2, clock.clone());
        let h = pack(b"capped");
        // 100 bytes of burst, then 1000 bytes at 1000 B/s: one second.
        b.write_new(&h, &[0; 1100]).unwrap();
        assert_eq!(clock.slept(), Duration::from_secs(1));
        // 200 bytes of burst, then 900 at 2000 B/s: 0.45 s more.
        b.read(&h).unwrap();
        assert_eq!(clock.slept(), Duration::from_millis(1450));
    }

    #[test]
    fn describes_retries_for_people() {
        let error = BackendError::Io {
            op: "write",
            object: "pack ab12".into(),
            source: std::io::ErrorKind::TimedOut.into(),
        };
        let text = describe_retry(&RetryEvent {
            op: "write",
            object: &"pack ab12",
            attempt: 2,
            max_attempts: 6,
            delay: Duration::from_millis(400),
            error: &error,
        });
        assert_eq!(
            text,
            "write pack ab12: timed out (attempt 2 of 6); retrying in 0.4 s"
        );
    }
}
