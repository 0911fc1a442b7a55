//! Chunking one large input on several threads, with exactly the boundaries
//! of a single thread.
//!
//! The input is taken in windows of `threads` segments. Each thread chunks
//! its segment as if a chunk started at the segment's first byte (a
//! speculative chain), skipping each chunk's minimum size like the single
//! thread does. Then the true chain, coming from the previous segment, is
//! walked serially into the next segment until it lands on a cut of that
//! segment's speculative chain; from there on the two chains are the same
//! (a cut depends only on where its chunk starts), so the rest of that
//! chain is adopted as is. Content-defined chains meet within a chunk or
//! two, so the serial walk is short; if they never meet inside a segment,
//! the walk simply continues, and the result is still exact.

use std::collections::VecDeque;

use crate::Chunker;
use crate::chunker::CutState;

/// Bytes per thread per window by default, before the adjustments of
/// [`segment_size`].
pub(crate) const SEGMENT: usize = 32 << 20;

/// Smallest segment worth a thread of its own.
const MIN_SEGMENT: usize = 4 << 20;

/// Bytes per thread per window for `len` bytes on `threads` threads.
///
/// Each segment costs a serial walk of a chunk or two to join its chain, so
/// segments are long: 32 MiB, or 64 average chunks for large averages
/// (measured: 2 threads reach 1.9x one at 16 KiB averages with 32 MiB
/// segments, 1.85x at 16 MiB; at 1 MiB averages 1.8x needs 64 MiB). An
/// input smaller than a window is split evenly instead, down to 4 MiB.
pub(crate) fn segment_size(len: usize, threads: usize, avg_size: usize) -> usize {
    let long = SEGMENT.max(64 * avg_size);
    len.div_ceil(threads.max(1)).clamp(MIN_SEGMENT, long)
}

/// Chunk ends (exclusive offsets) of the chain starting at `start`, up to
/// and including the first one at or past `until` (or the end of `data`).
fn chain(chunker: &Chunker, data: &[u8], start: usize, until: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut state = CutState::default();
    let mut pos = start;
    while pos < until {
        match state.next_cut(chunker, data, pos, true) {
            Some(end) => {
                cuts.push(end);
                pos = end;
            }
            None => break,
        }
    }
    cuts
}

/// Appends to `out` the true chunk ends from `start` (a true chunk start)
/// through one window of `threads` segments. Returns nothing; the last end
/// pushed is the next window's start (the end of `data` when done).
pub(crate) fn chunk_window(
    chunker: &Chunker,
    data: &[u8],
    start: usize,
    threads: usize,
    segment: usize,
    out: &mut VecDeque<usize>,
) {
    let seg_start = |k: usize| (start + k * segment).min(data.len());
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .filter(|&k| seg_start(k) < data.len())
            .map(|k| s.spawn(move || chain(chunker, data, seg_start(k), seg_start(k + 1))))
            .collect();
        chains.push(chain(chunker, data, start, seg_start(1)));
        for h in handles {
            match h.join() {
                Ok(cuts) => chains.push(cuts),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });

    let mut chains = chains.into_iter();
    let first = chains.next().unwrap_or_default();
    let mut at = first.last().copied().unwrap_or(start);
    out.extend(first);
    let mut walk = CutState::default();
    for (k, speculative) in chains.enumerate() {
        let seg_end = seg_start(k + 2);
        // Walk the true chain until it meets the speculative one.
        loop {
            if let Ok(i) = speculative.binary_search(&at) {
                out.extend(&speculative[i + 1..]);
                at = speculative.last().copied().unwrap_or(at);
                break;
            }
            if at >= seg_end || at >= data.len() {
                break;
            }
            match walk.next_cut(chunker, data, at, true) {
                Some(end) => {
                    out.push_back(end);
                    at = end;
                }
                None => break,
            }
        }
    }
}
