//! The portable scanner: one rolling gear hash, two bytes per step.
//!
//! A plain gear loop is one dependency chain, `h = (h << 1) ^ G[b]`: two
//! instructions of latency per byte. Taking bytes in pairs, the hash two
//! bytes on is `(h << 2) ^ ((G[a] << 1) ^ G[b])`, whose right-hand part does
//! not depend on `h`, so the chain is two instructions per two bytes; the
//! hash at the first byte of the pair is computed beside it for its test.

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
    let mut pairs = data.chunks_exact(2);
    let mut pos = start;
    for pair in &mut pairs {
        let (a, b) = (g[pair[0] as usize], g[pair[1] as usize]);
        let first = (h << 1) ^ a;
        h = (h << 2) ^ ((a << 1) ^ b);
        if first.min(h) < threshold {
            for (offset, hash) in [(0, first), (1, h)] {
                if hash < threshold {
                    if out.len() >= cap {
                        return false;
                    }
                    out.push(Candidate { pos: pos + offset });
                }
            }
        }
        pos += 2;
    }
    for &byte in pairs.remainder() {
        h = (h << 1) ^ g[byte as usize];
        if h < threshold {
            if out.len() >= cap {
                return false;
            }
            out.push(Candidate { pos });
        }
    }
    true
}

/// The index in `data` of the first position whose hash is below
/// `threshold`, continuing from state `h` (the hash before `data[0]`); or,
/// if there is none, the state after the last byte. Two bytes per step, as
/// [`replay`].
pub(crate) fn first_below(
    table: &GearTable,
    data: &[u8],
    mut h: u32,
    threshold: u32,
) -> Result<usize, u32> {
    let g = table.values();
    let mut pairs = data.chunks_exact(2);
    let mut pos = 0;
    for pair in &mut pairs {
        let (a, b) = (g[pair[0] as usize], g[pair[1] as usize]);
        let first = (h << 1) ^ a;
        h = (h << 2) ^ ((a << 1) ^ b);
        if first.min(h) < threshold {
            return Ok(if first < threshold { pos } else { pos + 1 });
        }
        pos += 2;
    }
    for &byte in pairs.remainder() {
        h = (h << 1) ^ g[byte as usize];
        if h < threshold {
            return Ok(pos);
        }
        pos += 1;
    }
    Err(h)
}
