//! Measures the rate a [`ThrottledBackend`] actually achieves, in real
//! time: several threads upload (then download) 1 MiB objects to a memory
//! target capped at a given rate for a few seconds, and the achieved rate is
//! printed next to the cap. The unit tests check the token bucket's
//! arithmetic on virtual time; this is the check against the wall clock.
//!
//! ```sh
//! cargo run -p cairn-store --example throttle_rate -- [RATE_MIB_PER_S] [SECONDS] [THREADS]
//! ```

use cairn_store::backend::{Backend, MemoryBackend, RateLimiter, ThrottledBackend};
use cairn_store::{Handle, Id, ObjectKind};
use std::error::Error;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Size of each object.
const OBJECT: usize = 1 << 20;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().as_deref().unwrap_or("20").parse()?;
    let seconds: u64 = args.next().as_deref().unwrap_or("4").parse()?;
    let threads: u64 = args.next().as_deref().unwrap_or("4").parse()?;
    let rate = NonZeroU64::new(mib << 20).ok_or("the rate must not be zero")?;
    let up = Arc::new(RateLimiter::new(rate));
    let down = Arc::new(RateLimiter::new(rate));
    let backend = ThrottledBackend::new(
        Arc::new(MemoryBackend::new()),
        Some(up.clone()),
        Some(down.clone()),
    );
    let data = vec![0x5a; OBJECT];
    let handle = |t: u64, n: u64| {
        Handle::new(
            ObjectKind::Pack,
            &Id::of_object(format!("{t}/{n}").as_bytes()),
        )
    };
    let written: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();

    let phase = |name: &str, work: &(dyn Fn(u64, u64) -> Result<(), String> + Sync)| {
        let limit = Duration::from_secs(seconds);
        let bytes = AtomicU64::new(0);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let bytes = &bytes;
                    s.spawn(move || -> Result<(), String> {
                        let mut n = 0;
                        while start.elapsed() < limit {
                            work(t, n)?;
                            bytes.fetch_add(OBJECT as u64, Ordering::Relaxed);
                            n += 1;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| "a worker panicked".to_string())?)
        });
        let elapsed = start.elapsed().as_secs_f64();
        let bytes = bytes.load(Ordering::Relaxed) as f64;
        let achieved = bytes / elapsed;
        println!(
            "{name}: {threads} threads, {:.1} MiB in {elapsed:.2} s: {:.2} MiB/s against a cap of {mib} MiB/s ({:+.1}%)",
            bytes / f64::from(1 << 20),
            achieved / f64::from(1 << 20),
            (achieved / rate.get() as f64 - 1.0) * 100.0
        );
        result
    };

    phase("upload", &|t, n| {
        backend
            .write_new(&handle(t, n), &data)
            .map_err(|e| e.to_string())?;
        written[t as usize].store(n + 1, Ordering::Relaxed);
        Ok(())
    })?;
    phase("download", &|t, n| {
        let count = written[t as usize].load(Ordering::Relaxed).max(1);
        backend
            .read(&handle(t, n % count))
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(())
}
