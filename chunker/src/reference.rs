//! The reference definition of cairn's chunk boundaries.
//!
//! This module *is* the specification: plain, position by position, with no
//! tricks. Every fast path in the crate must produce exactly the boundaries
//! this code produces (the property tests check it); `docs/format.md` states
//! the same rules in prose.
//!
//! Definitions, for input `d` and gear table `G`:
//! - the hash at position `e` is `h(e) = XOR_{k=0}^{min(e,31)} G[d[e-k]] << k`
//!   over 32-bit words (bits shifted past bit 31 are dropped): a window of the
//!   32 bytes ending at `e`; equivalently `h(e) = (h(e-1) << 1) ^ G[d[e]]`;
//! - a chunk starting at `c` ends after the first position `e >= c + min - 1`
//!   where `h(e) < strict` while the chunk would be shorter than `avg`, or
//!   `h(e) < relaxed` once it would be `avg` or longer; failing that, it ends
//!   at `c + max`, or at the end of the input.
//!
//! Because `min >= 64 > 32`, the window of every tested position lies inside
//! its chunk, so a boundary depends only on the chunk's own bytes.

use crate::{ChunkerParams, GearTable};

/// The gear hash of the window ending at `end` (inclusive).
pub fn window_hash(table: &GearTable, data: &[u8], end: usize) -> u32 {
    let g = table.values();
    let first = end.saturating_sub(31);
    data[first..=end]
        .iter()
        .fold(0u32, |h, &b| (h << 1) ^ g[b as usize])
}

/// Length of the chunk at the start of `data`, by the definition.
///
/// `last` says that `data` holds everything up to the end of the input.
/// Returns `None` when more input is needed to decide (not `last` and no cut
/// within `data`), and `None` for empty input. `params` must be valid.
pub fn cut(table: &GearTable, params: &ChunkerParams, data: &[u8], last: bool) -> Option<usize> {
    let t = params.thresholds();
    let limit = data.len().min(params.max_size);
    for len in params.min_size..=limit {
        let threshold = if len < params.avg_size {
            t.strict
        } else {
            t.relaxed
        };
        if window_hash(table, data, len - 1) < threshold || len == params.max_size {
            return Some(len);
        }
    }
    (last && !data.is_empty()).then_some(data.len())
}

/// All chunk lengths of `data`, by the definition.
pub fn chunk_lengths(table: &GearTable, params: &ChunkerParams, data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(len) = cut(table, params, &data[pos..], true) {
        out.push(len);
        pos += len;
    }
    out
}
