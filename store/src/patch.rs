//! Patch blobs: a data blob stored as the blocks that differ from another.
//!
//! A virtual disk changes by scattered 4 KiB block writes (database pages,
//! swap, journal blocks). Content-defined chunking makes each such write cost
//! a whole chunk: with 16 KiB chunks a 4 KiB write stores 16-30 KiB. A patch
//! blob stores only what differs from the chunk the previous backup had at
//! the same disk offsets (its *base*): runs of "copy these bytes of the base"
//! and literal bytes. The blob keeps its ordinary id (the keyed hash of its
//! full plaintext), so deduplication, disk maps and restores see an ordinary
//! blob; only the repository knows it is stored as a patch.
//!
//! Chains are not allowed: a base is always a blob stored whole. A new patch
//! against a chunk that is itself a patch is made against that patch's bases
//! (so it carries every block changed since them; when that grows past half
//! of the chunk the chunk is stored whole again and becomes the next base).
//! A patch may have up to [`MAX_BASES`] bases, because a changed block can
//! move a chunk boundary: the new chunk then spans parts of two old ones. A
//! restore reads at most that many extra blobs per patch.
//!
//! Encoding (docs/format.md §2.6.1), before compression and encryption:
//!
//! ```text
//! u8       version (1)
//! u8       number of bases, 1..=4
//! bases    each: [u8;32] blob id, u32 length (plaintext bytes)
//! u32      number of operations
//! ops      each: u8 kind (0 copy, 1 literal), u32 length, and for a copy
//!          u8 base number and u32 offset in that base
//! bytes    the literal bytes of every literal operation, in order
//! ```
//!
//! Every integer is little-endian. The operations' lengths add up to the
//! blob's length; copies lie within their base.

use crate::id::Id;
use crate::wire::Reader;

/// Version byte of the encoding.
pub const PATCH_VERSION: u8 = 1;

/// Most bases one patch may copy from.
pub const MAX_BASES: usize = 4;

/// One operation of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    /// `len` bytes of base number `base` from `base_offset`.
    Copy {
        /// Which base (index into the patch's bases).
        base: u8,
        /// Offset in the base.
        base_offset: u32,
        /// Bytes copied.
        len: u32,
    },
    /// The next `len` literal bytes.
    Literal {
        /// Bytes taken from the patch's literal section.
        len: u32,
    },
}

impl PatchOp {
    /// The bytes of output the operation makes.
    pub fn output_len(&self) -> u32 {
        match *self {
            PatchOp::Copy { len, .. } | PatchOp::Literal { len } => len,
        }
    }
}

/// Why a patch does not parse or apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The bytes are not a patch of a known version.
    #[error("malformed patch: {0}")]
    Malformed(&'static str),
    /// The bases given are not the ones the patch was made against.
    #[error("patch applied to the wrong bases")]
    WrongBase,
}

/// A parsed patch, borrowing its literal bytes from the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch<'a> {
    /// The blobs the copies read from, with their plaintext lengths.
    pub bases: Vec<(Id, u32)>,
    /// The operations, in output order.
    pub ops: Vec<PatchOp>,
    /// The literal bytes of every literal operation, concatenated.
    pub literals: &'a [u8],
}

impl<'a> Patch<'a> {
    /// Parses an encoding; every length and offset is checked, so a hostile
    /// patch is an error, never a panic or an allocation it did not pay for.
    pub fn decode(bytes: &'a [u8]) -> Result<Patch<'a>, PatchError> {
        let mut r = Reader::new(bytes);
        let bad = PatchError::Malformed;
        let short = || bad("truncated header");
        if r.u8().ok_or_else(short)? != PATCH_VERSION {
            return Err(bad("unknown version"));
        }
        let n = r.u8().ok_or_else(short)? as usize;
        if n == 0 || n > MAX_BASES {
            return Err(bad("number of bases out of range"));
        }
        let mut bases = Vec::with_capacity(n);
        for _ in 0..n {
            bases.push((r.id().ok_or_else(short)?, r.u32().ok_or_else(short)?));
        }
        let count = r.u32().ok_or_else(short)? as usize;
        // Each operation takes at least five bytes: the count cannot claim
        // more than the input holds.
        if count > r.remaining() / 5 {
            return Err(bad("more operations than bytes"));
        }
        let mut ops = Vec::with_capacity(count);
        let mut literal_total = 0u64;
        let truncated = || bad("truncated operation");
        for _ in 0..count {
            let kind = r.u8().ok_or_else(truncated)?;
            let len = r.u32().ok_or_else(truncated)?;
            let op = match kind {
                0 => {
                    let base = r.u8().ok_or_else(truncated)?;
                    let base_offset = r.u32().ok_or_else(truncated)?;
                    let (_, base_len) = bases
                        .get(base as usize)
                        .ok_or(bad("copy from a base the patch does not name"))?;
                    if u64::from(base_offset) + u64::from(len) > u64::from(*base_len) {
                        return Err(bad("copy past the end of its base"));
                    }
                    PatchOp::Copy {
                        base,
                        base_offset,
                        len,
                    }
                }
                1 => {
                    literal_total += u64::from(len);
                    PatchOp::Literal { len }
                }
                _ => return Err(bad("unknown operation")),
            };
            ops.push(op);
        }
        if literal_total != r.remaining() as u64 {
            return Err(bad("literal bytes do not match the operations"));
        }
        let literals = r.take(r.remaining()).ok_or(bad("truncated literals"))?;
        Ok(Patch {
            bases,
            ops,
            literals,
        })
    }

    /// Length of the blob the patch produces.
    pub fn output_len(&self) -> u64 {
        self.ops.iter().map(|op| u64::from(op.output_len())).sum()
    }

    /// Rebuilds the blob from its bases (in the patch's order).
    /// `expected_len` bounds the output (the index's length for the blob),
    /// so a forged patch cannot make it large.
    pub fn apply(&self, bases: &[&[u8]], expected_len: usize) -> Result<Vec<u8>, PatchError> {
        if bases.len() != self.bases.len()
            || bases
                .iter()
                .zip(&self.bases)
                .any(|(b, (_, len))| b.len() as u64 != u64::from(*len))
        {
            return Err(PatchError::WrongBase);
        }
        if self.output_len() != expected_len as u64 {
            return Err(PatchError::Malformed("length differs from the index"));
        }
        let mut out = Vec::with_capacity(expected_len);
        let mut lit = 0usize;
        for op in &self.ops {
            let piece = match *op {
                PatchOp::Copy {
                    base,
                    base_offset,
                    len,
                } => bases
                    .get(base as usize)
                    .and_then(|b| b.get(base_offset as usize..base_offset as usize + len as usize)),
                PatchOp::Literal { len } => {
                    let piece = self.literals.get(lit..lit + len as usize);
                    lit += len as usize;
                    piece
                }
            };
            out.extend_from_slice(piece.ok_or(PatchError::Malformed("operation out of range"))?);
        }
        Ok(out)
    }

    /// Where base number `base` sits relative to the patched blob, as its
    /// first copy implies: its byte `k` lines up with the blob's byte
    /// `k + shift` (`None` if nothing is copied from it). Patches made by
    /// [`diff_aligned`] copy from each base with one constant shift, so this
    /// places the base on the disk for the next patch at the same offsets.
    pub fn base_shift(&self, base: u8) -> Option<i64> {
        let mut out_pos = 0i64;
        for op in &self.ops {
            if let PatchOp::Copy {
                base: b,
                base_offset,
                ..
            } = *op
                && b == base
            {
                return Some(out_pos - i64::from(base_offset));
            }
            out_pos += i64::from(op.output_len());
        }
        None
    }
}

/// Encodes a patch of `new` against `bases` (ids and plaintext lengths):
/// literal bytes are taken from `new` where `ops` says so. The operations'
/// lengths must add up to `new.len()` ([`crate::Repository::save_blob_patched`]
/// checks this before calling).
pub fn encode(bases: &[(Id, u32)], ops: &[PatchOp], new: &[u8]) -> Vec<u8> {
    let literal_total: usize = ops
        .iter()
        .filter(|op| matches!(op, PatchOp::Literal { .. }))
        .map(|op| op.output_len() as usize)
        .sum();
    let mut out = Vec::with_capacity(6 + bases.len() * 36 + ops.len() * 10 + literal_total);
    out.push(PATCH_VERSION);
    out.push(bases.len() as u8);
    for (id, len) in bases {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match *op {
            PatchOp::Copy {
                base,
                base_offset,
                len,
            } => {
                out.push(0);
                out.extend_from_slice(&len.to_le_bytes());
                out.push(base);
                out.extend_from_slice(&base_offset.to_le_bytes());
            }
            PatchOp::Literal { len } => {
                out.push(1);
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
    let mut pos = 0usize;
    for op in ops {
        let len = op.output_len() as usize;
        if let PatchOp::Literal { .. } = op {
            out.extend_from_slice(&new[pos..pos + len]);
        }
        pos += len;
    }
    out
}

/// A base placed on the address line of [`diff_aligned`].
#[derive(Debug, Clone, Copy)]
pub struct PlacedBase<'a> {
    /// Its plaintext.
    pub data: &'a [u8],
    /// The address of its first byte.
    pub pos: i128,
}

/// The operations that rebuild `new` from `bases` block by block, where all
/// are placed on one address line (a disk's byte offsets): `new` starts at
/// `new_pos`, each base at its `pos`. Blocks are the `block`-aligned pieces
/// of that line; a piece of `new` whose bytes a base holds at the same
/// address becomes a copy (from the first such base), anything else a
/// literal.
///
/// Returns `None` when more than `max_literal` bytes would be literal (then
/// storing the blob whole costs about as much and needs no base), or when
/// there are more than [`MAX_BASES`] bases.
pub fn diff_aligned(
    new: &[u8],
    new_pos: u64,
    bases: &[PlacedBase<'_>],
    block: u64,
    max_literal: usize,
) -> Option<Vec<PatchOp>> {
    if bases.len() > MAX_BASES {
        return None;
    }
    let block = block.max(1);
    let mut ops: Vec<PatchOp> = Vec::new();
    let mut literal = 0usize;
    let mut i = 0usize;
    while i < new.len() {
        let addr = new_pos + i as u64;
        let next_boundary = (addr / block + 1) * block;
        let piece = ((next_boundary - addr) as usize).min(new.len() - i);
        match copies_of(&new[i..i + piece], i128::from(addr), bases) {
            Some(copies) => {
                for op in copies {
                    push_merged(&mut ops, op);
                }
            }
            None => {
                literal += piece;
                if literal > max_literal {
                    return None;
                }
                push_merged(&mut ops, PatchOp::Literal { len: piece as u32 });
            }
        }
        i += piece;
    }
    Some(ops)
}

/// The copies that produce `wanted` (at address `addr`) from the bases, or
/// `None` if some byte of it is in no base or differs from the base that
/// holds it. A piece may straddle two bases where an old chunk ended.
fn copies_of(wanted: &[u8], addr: i128, bases: &[PlacedBase<'_>]) -> Option<Vec<PatchOp>> {
    let mut out = Vec::new();
    let mut done = 0usize;
    while done < wanted.len() {
        let at = addr + done as i128;
        let (n, from, take) = bases.iter().enumerate().find_map(|(n, b)| {
            let from = usize::try_from(at - b.pos).ok()?;
            let take = b.data.len().checked_sub(from)?.min(wanted.len() - done);
            (take > 0).then_some((n, from, take))
        })?;
        let base = &bases[n].data[from..from + take];
        if base != &wanted[done..done + take] {
            return None;
        }
        out.push(PatchOp::Copy {
            base: n as u8,
            base_offset: from as u32,
            len: take as u32,
        });
        done += take;
    }
    Some(out)
}

/// Appends `op`, extending the last operation when they continue each other.
fn push_merged(ops: &mut Vec<PatchOp>, op: PatchOp) {
    match (ops.last_mut(), op) {
        (Some(PatchOp::Literal { len }), PatchOp::Literal { len: more }) => *len += more,
        (
            Some(PatchOp::Copy {
                base,
                base_offset,
                len,
            }),
            PatchOp::Copy {
                base: next_base,
                base_offset: next,
                len: more,
            },
        ) if *base == next_base && *base_offset + *len == next => *len += more,
        _ => ops.push(op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    /// Diffs, encodes, decodes and applies; returns the literal bytes.
    fn round_trip(new: &[u8], new_pos: u64, bases: &[(&[u8], i128)]) -> Option<usize> {
        let placed: Vec<PlacedBase<'_>> = bases
            .iter()
            .map(|&(data, pos)| PlacedBase { data, pos })
            .collect();
        let ops = diff_aligned(new, new_pos, &placed, 4096, usize::MAX)?;
        let ids: Vec<(Id, u32)> = bases
            .iter()
            .enumerate()
            .map(|(n, (b, _))| (Id([n as u8; 32]), b.len() as u32))
            .collect();
        let enc = encode(&ids, &ops, new);
        let p = Patch::decode(&enc).unwrap();
        assert_eq!(p.bases, ids);
        let plain: Vec<&[u8]> = bases.iter().map(|b| b.0).collect();
        assert_eq!(p.apply(&plain, new.len()).unwrap(), new);
        Some(p.literals.len())
    }

    #[test]
    fn one_changed_block_costs_one_block() {
        let base = data(1, 20_000);
        let mut new = base.clone();
        // The chunk starts 1000 bytes into a block on the disk.
        new[5000] ^= 0xff;
        // Disk block [4096, 8192) is [3096, 7192) in the chunk.
        assert_eq!(round_trip(&new, 1000, &[(&base, 1000)]), Some(4096));
    }

    #[test]
    fn a_chunk_spanning_two_old_chunks_copies_from_both() {
        let disk = data(2, 40_000);
        let (a, b) = (&disk[..15_000], &disk[15_000..]);
        let mut new = disk[5_000..30_000].to_vec();
        new[20_000] ^= 1; // disk address 25_000, block [24_576, 28_672)
        assert_eq!(round_trip(&new, 5_000, &[(a, 0), (b, 15_000)]), Some(4096));
        let placed = [
            PlacedBase { data: a, pos: 0 },
            PlacedBase {
                data: b,
                pos: 15_000,
            },
        ];
        let ops = diff_aligned(&new, 5_000, &placed, 4096, usize::MAX).unwrap();
        let enc = encode(&[(Id([0; 32]), 15_000), (Id([1; 32]), 25_000)], &ops, &new);
        let p = Patch::decode(&enc).unwrap();
        assert_eq!(p.base_shift(0), Some(-5_000));
        assert_eq!(p.base_shift(1), Some(10_000));
    }

    #[test]
    fn too_different_or_too_many_bases_gives_none() {
        let base = data(4, 16_384);
        let new = data(5, 16_384);
        let placed = [PlacedBase {
            data: &base,
            pos: 0,
        }];
        assert!(diff_aligned(&new, 0, &placed, 4096, 8192).is_none());
        assert!(diff_aligned(&new, 0, &[placed[0]; 5], 4096, usize::MAX).is_none());
        assert_eq!(round_trip(&new, 0, &[(&base, 0)]), Some(16_384));
    }

    #[test]
    fn hostile_patches_are_errors() {
        let id = Id([1; 32]);
        let copy = |base, base_offset| PatchOp::Copy {
            base,
            base_offset,
            len: 8,
        };
        let good = encode(&[(id, 10)], &[copy(0, 2)], &[0; 8]);
        assert!(Patch::decode(&good).is_ok());
        for cut in 0..good.len() {
            assert!(Patch::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Patch::decode(&encode(&[(id, 10)], &[copy(0, 3)], &[0; 8])).is_err());
        assert!(Patch::decode(&encode(&[(id, 10)], &[copy(1, 0)], &[0; 8])).is_err());
        assert!(Patch::decode(&encode(&[], &[], &[])).is_err());
        assert!(Patch::decode(&encode(&[(id, 1); 5], &[], &[])).is_err());
        let mut huge_count = good.clone();
        huge_count[38..42].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Patch::decode(&huge_count).is_err());
        let p = Patch::decode(&good).unwrap();
        assert_eq!(p.apply(&[&[0; 9]], 8), Err(PatchError::WrongBase));
        assert_eq!(p.apply(&[], 8), Err(PatchError::WrongBase));
        assert!(p.apply(&[&[0; 10]], 9).is_err());
    }

    proptest! {
        #[test]
        fn diff_then_apply_rebuilds(
            disk_len in 0usize..60_000,
            cuts in proptest::collection::vec(0usize..60_000, 0..3),
            new_range in (0usize..60_000, 0usize..60_000),
            edits in proptest::collection::vec((0usize..60_000, any::<u8>()), 0..20),
        ) {
            // Old chunks cut the old disk at `cuts`; the new chunk is a range
            // of the new disk, which is the old one with some bytes edited.
            let old = data(9, disk_len);
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c < disk_len).collect();
            bounds.push(0);
            bounds.push(disk_len);
            bounds.sort_unstable();
            bounds.dedup();
            let bases: Vec<(&[u8], i128)> = bounds
                .windows(2)
                .map(|w| (&old[w[0]..w[1]], w[0] as i128))
                .collect();
            prop_assume!(!bases.is_empty());
            let mut disk = old.clone();
            for (at, v) in edits {
                if let Some(b) = disk.get_mut(at) { *b = v; }
            }
            let (s, e) = (new_range.0.min(new_range.1).min(disk_len), new_range.0.max(new_range.1).min(disk_len));
            round_trip(&disk[s..e], s as u64, &bases);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = Patch::decode(&bytes) {
                let bases: Vec<Vec<u8>> = p.bases.iter().map(|(_, len)| vec![0; (*len).min(1 << 16) as usize]).collect();
                let refs: Vec<&[u8]> = bases.iter().map(|b| b.as_slice()).collect();
                let _ = p.apply(&refs, 100);
            }
        }
    }
}
