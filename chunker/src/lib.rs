//! cairn-chunker: content-defined chunking for cairn.
//!
//! Every disk and file cairn backs up is cut into chunks at boundaries chosen
//! by content, so that an insertion or a rewritten block changes only the
//! chunks around it and everything else deduplicates. This crate decides
//! those boundaries. It does no I/O beyond the [`StreamChunker`] adapter over
//! [`std::io::Read`] and has no dependencies.
//!
//! # Algorithm
//! A gear hash of the FastCDC family (XOR in place of addition) with
//! normalized chunking: the hash at each position covers the 32 bytes ending
//! there and is keyed by a [`GearTable`] derived from a secret seed. A chunk
//! ends at the first position past the minimum size whose hash is below the
//! strict threshold (before the average size) or the relaxed one (after it),
//! or at the maximum size. The exact rules are in
//! [`reference`](mod@reference) and `docs/format.md`.
//!
//! # Speed
//! Because the hash at a position depends only on the 32 bytes before it,
//! positions are independent. The scanners ([`Kernel`]) exploit that with
//! 64 (AVX-512 + GFNI) or 32 (AVX2) hash lanes side by side, one byte of a
//! vector register each, and [`Chunker::chunks_parallel`] splits one large
//! input across threads. The scanners report candidate positions;
//! [`resolve`] applies the size rules to that sparse list.
//!
//! # Stability contract
//! The same seed, the same [`ChunkerParams`] and the same data give the same
//! boundaries, forever, whichever kernel, thread count or buffer sizes are
//! used. Golden vectors in the tests guard this; a change to any boundary is
//! a format change (see `docs/format.md`).

mod chunker;
mod gear;
mod parallel;
mod params;
pub mod reference;
pub mod resolve;
mod scan;
mod stream;
pub mod testdata;

pub use chunker::{Chunk, Chunker, Chunks};
pub use gear::{GearTable, TEST_SEED};
pub use params::{
    AVG_SIZE_CEILING, AVG_SIZE_FLOOR, ChunkerParams, MAX_NORMALIZATION, MAX_SIZE_CEILING,
    MIN_SIZE_FLOOR, ParamsError,
};
pub use scan::{Candidate, Kernel};
pub use stream::StreamChunker;
