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
//! against a chunk that is itself a patch is made against that patch's base
//! (so it carries every block changed since the base; when that grows past
//! half of the chunk the chunk is stored whole again and becomes the next
//! base). A restore therefore reads at most one extra blob per patch.
//!
//! Encoding (docs/format.md §2.6.1), before compression and encryption:
//!
//! ```text
//! u8       version (1)
//! [u8;32]  base blob id
//! u32      base length (plaintext bytes of the base)
//! u32      number of operations
//! ops      each: u8 kind (0 copy, 1 literal), u32 length, and for a copy
//!          u32 offset in the base
//! bytes    the literal bytes of every literal operation, in order
//! ```
//!
//! Every integer is little-endian. The operations' lengths add up to the
//! blob's length; copies lie within the base.

use crate::id::Id;
use crate::wire::Reader;

/// Version byte of the encoding.
pub const PATCH_VERSION: u8 = 1;

/// Encoded size of the fixed header.
const HEADER_LEN: usize = 1 + 32 + 4 + 4;

/// One operation of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    /// `len` bytes of the base from `base_offset`.
    Copy {
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
    fn len(&self) -> u32 {
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
    /// The base given is not the one the patch was made against.
    #[error("patch applied to the wrong base")]
    WrongBase,
}

/// A parsed patch, borrowing its literal bytes from the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch<'a> {
    /// The blob the copies read from.
    pub base: Id,
    /// The base's plaintext length.
    pub base_len: u32,
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
        if r.u8().ok_or(bad("truncated header"))? != PATCH_VERSION {
            return Err(bad("unknown version"));
        }
        let base = r.id().ok_or(bad("truncated header"))?;
        let base_len = r.u32().ok_or(bad("truncated header"))?;
        let count = r.u32().ok_or(bad("truncated header"))? as usize;
        // Each operation takes at least five bytes: the count cannot claim
        // more than the input holds.
        if count > r.remaining() / 5 {
            return Err(bad("more operations than bytes"));
        }
        let mut ops = Vec::with_capacity(count);
        let mut literal_total = 0u64;
        for _ in 0..count {
            let kind = r.u8().ok_or(bad("truncated operation"))?;
            let len = r.u32().ok_or(bad("truncated operation"))?;
            let op = match kind {
                0 => {
                    let base_offset = r.u32().ok_or(bad("truncated operation"))?;
                    if u64::from(base_offset) + u64::from(len) > u64::from(base_len) {
                        return Err(bad("copy past the end of the base"));
                    }
                    PatchOp::Copy { base_offset, len }
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
            base,
            base_len,
            ops,
            literals,
        })
    }

    /// Length of the blob the patch produces.
    pub fn output_len(&self) -> u64 {
        self.ops.iter().map(|op| u64::from(op.len())).sum()
    }

    /// Rebuilds the blob from its base. `expected_len` bounds the output (the
    /// index's length for the blob), so a forged patch cannot make it large.
    pub fn apply(&self, base: &[u8], expected_len: usize) -> Result<Vec<u8>, PatchError> {
        if base.len() as u64 != u64::from(self.base_len) {
            return Err(PatchError::WrongBase);
        }
        if self.output_len() != expected_len as u64 {
            return Err(PatchError::Malformed("length differs from the index"));
        }
        let mut out = Vec::with_capacity(expected_len);
        let mut lit = 0usize;
        for op in &self.ops {
            match *op {
                PatchOp::Copy { base_offset, len } => {
                    let from = base_offset as usize;
                    let piece = base
                        .get(from..from + len as usize)
                        .ok_or(PatchError::Malformed("copy past the end of the base"))?;
                    out.extend_from_slice(piece);
                }
                PatchOp::Literal { len } => {
                    let piece = self
                        .literals
                        .get(lit..lit + len as usize)
                        .ok_or(PatchError::Malformed("literal past the end"))?;
                    out.extend_from_slice(piece);
                    lit += len as usize;
                }
            }
        }
        Ok(out)
    }

    /// The offset of the base's first byte relative to the patched blob's
    /// first byte, as the first copy implies (`None` if nothing is copied).
    /// Patches made by [`diff_aligned`] copy with one constant shift, so this
    /// places the base on the disk for the next patch at the same offsets.
    pub fn base_shift(&self) -> Option<i64> {
        let mut out_pos = 0i64;
        for op in &self.ops {
            if let PatchOp::Copy { base_offset, .. } = *op {
                return Some(out_pos - i64::from(base_offset));
            }
            out_pos += i64::from(op.len());
        }
        None
    }
}

/// Encodes a patch of `new` against base `base` (of `base_len` bytes):
/// literal bytes are taken from `new` where `ops` says so.
pub fn encode(base: &Id, base_len: u32, ops: &[PatchOp], new: &[u8]) -> Vec<u8> {
    let literal_total: usize = ops
        .iter()
        .filter(|op| matches!(op, PatchOp::Literal { .. }))
        .map(|op| op.len() as usize)
        .sum();
    let mut out = Vec::with_capacity(HEADER_LEN + ops.len() * 9 + literal_total);
    out.push(PATCH_VERSION);
    out.extend_from_slice(&base.0);
    out.extend_from_slice(&base_len.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match *op {
            PatchOp::Copy { base_offset, len } => {
                out.push(0);
                out.extend_from_slice(&len.to_le_bytes());
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
        let len = op.len() as usize;
        if let PatchOp::Literal { .. } = op {
            out.extend_from_slice(&new[pos..pos + len]);
        }
        pos += len;
    }
    out
}

/// The operations that rebuild `new` from `base` block by block, where both
/// are placed on one address line (a disk's byte offsets): `new` starts at
/// `new_pos`, `base` at `base_pos`. Blocks are the `block`-aligned pieces of
/// that line; a piece of `new` whose bytes the base holds at the same
/// address becomes a copy, anything else a literal.
///
/// Returns `None` when more than `max_literal` bytes would be literal (then
/// storing the blob whole costs about as much and needs no base).
pub fn diff_aligned(
    new: &[u8],
    new_pos: u64,
    base: &[u8],
    base_pos: i128,
    block: u64,
    max_literal: usize,
) -> Option<Vec<PatchOp>> {
    let block = block.max(1);
    let mut ops: Vec<PatchOp> = Vec::new();
    let mut literal = 0usize;
    let mut i = 0usize;
    let base_end = base_pos + base.len() as i128;
    while i < new.len() {
        let addr = new_pos + i as u64;
        let next_boundary = (addr / block + 1) * block;
        let piece = ((next_boundary - addr) as usize).min(new.len() - i);
        let a = i128::from(addr);
        let same = a >= base_pos
            && a + piece as i128 <= base_end
            && new[i..i + piece] == base[(a - base_pos) as usize..(a - base_pos) as usize + piece];
        let op = if same {
            PatchOp::Copy {
                base_offset: (a - base_pos) as u32,
                len: piece as u32,
            }
        } else {
            literal += piece;
            if literal > max_literal {
                return None;
            }
            PatchOp::Literal { len: piece as u32 }
        };
        push_merged(&mut ops, op);
        i += piece;
    }
    Some(ops)
}

/// Appends `op`, extending the last operation when they continue each other.
fn push_merged(ops: &mut Vec<PatchOp>, op: PatchOp) {
    match (ops.last_mut(), op) {
        (Some(PatchOp::Literal { len }), PatchOp::Literal { len: more }) => *len += more,
        (
            Some(PatchOp::Copy { base_offset, len }),
            PatchOp::Copy {
                base_offset: next,
                len: more,
            },
        ) if *base_offset + *len == next => *len += more,
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

    fn round_trip(new: &[u8], new_pos: u64, base: &[u8], base_pos: i128) -> Option<usize> {
        let id = Id([7; 32]);
        let ops = diff_aligned(new, new_pos, base, base_pos, 4096, usize::MAX)?;
        let enc = encode(&id, base.len() as u32, &ops, new);
        let p = Patch::decode(&enc).unwrap();
        assert_eq!(p.base, id);
        assert_eq!(p.apply(base, new.len()).unwrap(), new);
        Some(p.literals.len())
    }

    #[test]
    fn one_changed_block_costs_one_block() {
        let base = data(1, 20_000);
        let mut new = base.clone();
        // The chunk starts 1000 bytes into a block on the disk.
        new[5000] ^= 0xff;
        let lit = round_trip(&new, 1000, &base, 1000).unwrap();
        // Disk block [4096, 8192) is [3096, 7192) in the chunk.
        assert_eq!(lit, 4096);
    }

    #[test]
    fn shifted_base_and_edges_are_literal() {
        let base = data(2, 16_384);
        let mut new = data(3, 4096);
        new.extend_from_slice(&base[..12_288]);
        // new starts one block before the base on the disk.
        let lit = round_trip(&new, 8192, &base, 12_288).unwrap();
        assert_eq!(lit, 4096);
        let p = encode(
            &Id([0; 32]),
            base.len() as u32,
            &diff_aligned(&new, 8192, &base, 12_288, 4096, usize::MAX).unwrap(),
            &new,
        );
        assert_eq!(Patch::decode(&p).unwrap().base_shift(), Some(4096));
    }

    #[test]
    fn too_different_gives_none() {
        let base = data(4, 16_384);
        let new = data(5, 16_384);
        assert!(diff_aligned(&new, 0, &base, 0, 4096, 8192).is_none());
        assert_eq!(round_trip(&new, 0, &base, 0), Some(16_384));
    }

    #[test]
    fn hostile_patches_are_errors() {
        let id = Id([1; 32]);
        let good = encode(
            &id,
            10,
            &[PatchOp::Copy {
                base_offset: 2,
                len: 8,
            }],
            &[0; 8],
        );
        assert!(Patch::decode(&good).is_ok());
        for cut in 0..good.len() {
            assert!(Patch::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let past = encode(
            &id,
            10,
            &[PatchOp::Copy {
                base_offset: 3,
                len: 8,
            }],
            &[0; 8],
        );
        assert!(Patch::decode(&past).is_err());
        let mut huge_count = good.clone();
        huge_count[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Patch::decode(&huge_count).is_err());
        let p = Patch::decode(&good).unwrap();
        assert_eq!(p.apply(&[0; 9], 8), Err(PatchError::WrongBase));
        assert!(p.apply(&[0; 10], 9).is_err());
    }

    proptest! {
        #[test]
        fn diff_then_apply_rebuilds(
            base_len in 0usize..40_000,
            new_len in 0usize..40_000,
            new_pos in 0u64..20_000,
            base_pos in 0i128..20_000,
            edits in proptest::collection::vec((0usize..40_000, any::<u8>()), 0..20),
        ) {
            let base = data(9, base_len);
            let mut new: Vec<u8> = (0..new_len)
                .map(|i| {
                    let addr = new_pos as i128 + i as i128 - base_pos;
                    usize::try_from(addr).ok().and_then(|a| base.get(a)).copied().unwrap_or(0x5a)
                })
                .collect();
            for (at, v) in edits {
                if let Some(b) = new.get_mut(at) { *b = v; }
            }
            round_trip(&new, new_pos, &base, base_pos);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = Patch::decode(&bytes) {
                let _ = p.apply(&vec![0; p.base_len.min(1 << 16) as usize], 100);
            }
        }
    }
}
