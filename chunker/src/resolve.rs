//! Applying the chunk-size rules to scanned candidates.
//!
//! Scanners report every position whose hash is below the *relaxed*
//! threshold. Positions below the strict threshold are a subset of those, so
//! this one list is enough to find every cut: walking it from a chunk's start
//! in order, the first candidate at or past the minimum size that is below the
//! threshold for its length (strict before the average size, relaxed after)
//! ends the chunk, and without one the chunk ends at the maximum size.

use crate::{Candidate, ChunkerParams, GearTable};

/// The outcome of looking for the end of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The chunk ends at this (exclusive) position.
    Cut(usize),
    /// Positions from this one on must be scanned before a cut can be found;
    /// a position at or past the end of the data means more data is needed.
    NeedScan(usize),
    /// The input ends here and holds no more chunks.
    Done,
}

/// The last hash the resolver computed, to roll forward from.
///
/// Candidates carry no hash. The resolver needs one only for candidates
/// before the average size (to test the strict threshold); consecutive ones
/// are usually close, often adjacent in low-entropy data, so rolling from
/// the previous hash costs a step per byte instead of a 32-byte window.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashMemo {
    at: Option<(usize, u32)>,
}

impl HashMemo {
    /// The gear hash at `pos` of `data`.
    pub fn hash_at(&mut self, table: &GearTable, data: &[u8], pos: usize) -> u32 {
        let g = table.values();
        let h = match self.at {
            Some((at, h)) if at <= pos && pos - at <= 32 => data[at + 1..=pos]
                .iter()
                .fold(h, |h, &b| (h << 1) ^ g[b as usize]),
            _ => crate::reference::window_hash(table, data, pos),
        };
        self.at = Some((pos, h));
        h
    }

    /// Forgets the remembered hash (the data it was computed over moved).
    pub fn forget(&mut self) {
        self.at = None;
    }
}

/// The chunk-size rules, ready to apply.
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    min: usize,
    avg: usize,
    max: usize,
    strict: u32,
}

impl Resolver {
    /// Rules for `params`, which must be valid.
    pub fn new(params: &ChunkerParams) -> Self {
        Self {
            min: params.min_size,
            avg: params.avg_size,
            max: params.max_size,
            strict: params.thresholds().strict,
        }
    }

    /// First position whose hash matters for the chunk starting at `start`.
    #[inline]
    pub fn first_position(&self, start: usize) -> usize {
        start + self.min - 1
    }

    /// Finds the end of the chunk starting at `start`.
    ///
    /// `candidates` are all positions in `first_position(start)..scanned_end`
    /// whose hash is below the relaxed threshold, ascending (positions before
    /// `first_position(start)` may be present and are skipped). `data_end` is
    /// the end of the data available, `last` whether the input ends there.
    /// `*cursor` is advanced past the candidates used up. The strict test
    /// recomputes hashes from `data` with `table`, through `memo`.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        &self,
        table: &GearTable,
        data: &[u8],
        memo: &mut HashMemo,
        start: usize,
        candidates: &[Candidate],
        cursor: &mut usize,
        scanned_end: usize,
        last: bool,
    ) -> Resolution {
        let data_end = data.len();
        if start >= data_end {
            return if last {
                Resolution::Done
            } else {
                Resolution::NeedScan(start)
            };
        }
        let first = self.first_position(start);
        let at_max = start + self.max - 1;
        while let Some(c) = candidates.get(*cursor) {
            if c.pos < first {
                *cursor += 1;
                continue;
            }
            if c.pos >= at_max {
                break;
            }
            let len = c.pos - start + 1;
            *cursor += 1;
            if len >= self.avg || memo.hash_at(table, data, c.pos) < self.strict {
                return Resolution::Cut(c.pos + 1);
            }
        }
        // No candidate ends the chunk before its maximum size, as far as
        // positions are scanned.
        let scanned = scanned_end.max(first);
        if at_max < data_end {
            // A chunk of maximum size fits in the data.
            if scanned >= at_max {
                return Resolution::Cut(at_max + 1);
            }
        } else if scanned >= data_end {
            // Everything available is scanned and holds no cut.
            return if last {
                Resolution::Cut(data_end)
            } else {
                Resolution::NeedScan(data_end)
            };
        }
        Resolution::NeedScan(scanned)
    }
}
