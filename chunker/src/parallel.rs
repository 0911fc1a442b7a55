//! Scanning one large input on several threads.
//!
//! Most parallel CDC designs chunk each segment speculatively from its own
//! start and then merge at the first cut point two segments share. cairn does
//! not need speculation: a gear hash position depends only on the 32 bytes
//! before it, so each thread scans its part for candidates exactly as a single
//! thread would, and the size rules (cheap, sparse) run once over the merged
//! list. The result is the sequential boundaries by construction, with no work
//! thrown away.

use crate::{Candidate, Chunker};

/// Bytes each thread scans per window. With the candidate list this bounds
/// memory: at worst (every position a candidate, as in some degenerate
/// inputs) 16 bytes per scanned byte of a window.
pub(crate) const PART: usize = 4 << 20;

/// Scans `start..end` split into `threads` parts, appending the candidates
/// in order to `out`.
pub(crate) fn scan(
    chunker: &Chunker,
    data: &[u8],
    start: usize,
    end: usize,
    threads: usize,
    out: &mut Vec<Candidate>,
) {
    let len = end - start;
    let part = len.div_ceil(threads).max(1);
    let mut parts: Vec<Vec<Candidate>> = Vec::with_capacity(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| (start + i * part, (start + (i + 1) * part).min(end)))
            .filter(|(a, b)| a < b)
            .skip(1)
            .map(|(a, b)| {
                s.spawn(move || {
                    let mut found = Vec::new();
                    chunker.scan(data, a, b, &mut found);
                    found
                })
            })
            .collect();
        chunker.scan(data, start, (start + part).min(end), out);
        for h in handles {
            match h.join() {
                Ok(found) => parts.push(found),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    for found in parts {
        out.extend_from_slice(&found);
    }
}
