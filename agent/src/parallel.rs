//! Small work-splitting helpers shared by the backup, restore and synth
//! pipelines: runs of items of about a byte budget, and a pool of scoped
//! threads draining a job list that stops at the first error.

use std::sync::Mutex;

/// Consecutive runs of `items` whose `len`s add up to about `budget` each
/// (a run ends at the item that reaches the budget; the last may be short).
pub fn split_by_bytes<T>(items: &[T], budget: u64, len: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, item) in items.iter().enumerate() {
        bytes += len(item);
        if bytes >= budget {
            out.push(&items[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Runs `work` on every job on `threads` scoped threads; stops taking jobs
/// at the first error and returns it.
pub fn on_threads<J: Send, E: Send>(
    threads: usize,
    jobs: Vec<J>,
    work: impl Fn(J) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let jobs = Mutex::new(jobs.into_iter());
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    if first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some()
                    {
                        return;
                    }
                    let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(job) = next else {
                        return;
                    };
                    if let Err(e) = work(job) {
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_the_budget_and_cover_everything() {
        let items = [3u64, 4, 5, 1, 1, 9, 2];
        let runs = split_by_bytes(&items, 7, |&n| n);
        assert_eq!(runs, vec![&[3, 4][..], &[5, 1, 1][..], &[9][..], &[2][..]]);
        assert!(split_by_bytes(&[] as &[u64], 7, |&n| n).is_empty());
    }

    #[test]
    fn every_job_runs_and_the_first_error_is_returned() {
        let done = std::sync::atomic::AtomicU64::new(0);
        on_threads(3, (1..=100u64).collect(), |n| {
            done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok::<(), String>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.into_inner(), 5050);
        let err = on_threads(2, (0..50u64).collect(), |n| {
            if n == 7 { Err(n) } else { Ok(()) }
        });
        assert_eq!(err, Err(7));
    }
}
