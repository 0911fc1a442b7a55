//! The portable scanner: one rolling gear hash, one byte per step.

use super::{Candidate, state_before};
use crate::GearTable;

/// Scans `start..end` (`end <= data.len()`), see [`super::Kernel::scan`].
/// Returns `false`, with `out` as it was, if `out` would grow past `cap`.
pub(crate) fn scan(
    table: &GearTable,
    data: &[u8],
    start: usize,
    end: usize,
    threshold: u32,
    out: &mut Vec<Candidate>,
    cap: usize,
) -> bool {
    let first_new = out.len();
    let h = state_before(table, data, start);
    let complete = replay(table, &data[start..end], start, h, threshold, out, cap);
    if !complete {
        out.truncate(first_new);
    }
    complete
}

/// Continues a scan from state `h` (the hash at `start - 1`) over `data`
/// (the bytes from `start` on). Returns `false` as soon as `out` would grow
/// past `cap` (leaving what it pushed; the caller truncates).
pub(crate) fn replay(
    table: &GearTable,
    data: &[u8],
    start: usize,
    mut h: u32,
    threshold: u32,
    out: &mut Vec<Candidate>,
    cap: usize,
) -> bool {
    let g = table.values();
    for (pos, &byte) in data.iter().enumerate() {
        h = (h << 1) ^ g[byte as usize];
        if h < threshold {
            if out.len() >= cap {
                return false;
            }
            out.push(Candidate { pos: start + pos });
        }
    }
    true
}
