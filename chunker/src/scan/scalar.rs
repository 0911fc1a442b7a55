//! The portable scanner: one rolling gear hash, one byte per step.

use super::{Candidate, state_before};
use crate::GearTable;

/// Scans `start..end` (`end <= data.len()`), see [`super::Kernel::scan`].
pub(crate) fn scan(
    table: &GearTable,
    data: &[u8],
    start: usize,
    end: usize,
    threshold: u32,
    out: &mut Vec<Candidate>,
) {
    let g = table.values();
    let mut h = state_before(table, data, start);
    for (pos, &byte) in data[start..end].iter().enumerate() {
        h = (h << 1) ^ g[byte as usize];
        if h < threshold {
            out.push(Candidate {
                pos: start + pos,
                hash: h,
            });
        }
    }
}

/// Continues a scan of one lane from state `h` (the hash at `start - 1`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn replay(
    table: &GearTable,
    data: &[u8],
    start: usize,
    mut h: u32,
    threshold: u32,
    out: &mut Vec<Candidate>,
) {
    let g = table.values();
    for (pos, &byte) in data.iter().enumerate() {
        h = (h << 1) ^ g[byte as usize];
        if h < threshold {
            out.push(Candidate {
                pos: start + pos,
                hash: h,
            });
        }
    }
}
