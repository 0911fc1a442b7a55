//! Fuzz target `chunker`: arbitrary parameters, seeds, data and read sizes.
//!
//! Invalid parameters must be refused with an error (never a panic), and
//! exactly the invalid ones: the target checks `Chunker::new` against the
//! documented rules. For valid parameters every way of chunking must give
//! the same chunks, and those chunks must obey the size rules:
//! - `chunks()` concatenates to the input; every chunk but the last has
//!   `min <= len <= max`, the last `1 <= len <= max`;
//! - `chunks()` with every scan kernel this CPU has, `chunks_parallel(.., 2)`,
//!   the parallel path with 2 to 4 threads and small segments,
//!   `StreamChunker` over a reader that returns the data in the fuzzer's
//!   split sizes (with `Interrupted` errors mixed in), repeated
//!   `find_boundary`, and (for inputs small enough) the reference definition
//!   all agree;
//! - `find_boundary` on a prefix without `last` either asks for more data or
//!   gives the cut it gives on the whole rest.
//!
//! The data is built from pieces: raw fuzzer bytes, long pseudo-random runs
//! (to cross the chunker's scan blocks and parallel segments, which raw
//! fuzzer inputs of a few KiB never reach) and runs of one byte
//! value (degenerate inputs where every or no position is a candidate).

#![no_main]

use std::io::{self, Read};

use arbitrary::Arbitrary;
use cairn_chunker::{
    AVG_SIZE_CEILING, AVG_SIZE_FLOOR, Chunker, ChunkerParams, GearTable, Kernel, MAX_NORMALIZATION,
    MAX_SIZE_CEILING, MIN_SIZE_FLOOR, StreamChunker, reference, testdata,
};
use libfuzzer_sys::fuzz_target;

/// Upper bound on the generated data: several of the chunker's 128 KiB scan
/// blocks. Parallel segment joins are reached with small segments instead
/// of large data, which keeps runs short (degenerate data, where every
/// position is a cut candidate, chunks far slower than random data).
const MAX_DATA: usize = 4 << 20;
/// Inputs up to this size are also checked against the (slow) reference.
const REFERENCE_MAX: usize = 256 << 10;
/// Above this maximum chunk size the stream check is skipped: its buffer is
/// at least one maximum chunk, and allocating up to 1 GiB per run would make
/// the fuzzer crawl (and trip its malloc limit).
const STREAM_MAX_SIZE: usize = 64 << 20;

#[derive(Debug, Arbitrary)]
enum RawParams {
    /// Sizes in the useful range, often valid: exponents and fractions.
    Shaped {
        avg_log2: u8,
        min_div: u8,
        max_mul: u8,
        normalization: u8,
    },
    /// Any values at all, mostly invalid.
    Raw {
        min: u64,
        avg: u64,
        max: u64,
        normalization: u32,
    },
}

impl RawParams {
    fn params(&self) -> ChunkerParams {
        match *self {
            Self::Shaped {
                avg_log2,
                min_div,
                max_mul,
                normalization,
            } => {
                // avg 2^6 .. 2^21: a few below the floor, mostly small enough
                // that fuzzer-sized inputs hold several chunks.
                let avg = 1usize << (6 + avg_log2 % 16);
                let min = (avg >> (min_div % 6)).max(1);
                let min = if min_div & 0x80 != 0 { min + 1 } else { min };
                let max = avg.saturating_mul(1 + usize::from(max_mul % 8));
                let max = if max_mul & 0x80 != 0 { max - 1 } else { max };
                ChunkerParams {
                    min_size: min,
                    avg_size: avg,
                    max_size: max,
                    normalization: u32::from(normalization % 5),
                }
            }
            Self::Raw {
                min,
                avg,
                max,
                normalization,
            } => ChunkerParams {
                min_size: min as usize,
                avg_size: avg as usize,
                max_size: max as usize,
                normalization,
            },
        }
    }
}

/// The documented validity rules, written out independently of the crate.
fn expected_valid(p: &ChunkerParams) -> bool {
    p.min_size >= MIN_SIZE_FLOOR
        && p.avg_size.is_power_of_two()
        && (AVG_SIZE_FLOOR..=AVG_SIZE_CEILING).contains(&p.avg_size)
        && p.max_size <= MAX_SIZE_CEILING
        && p.min_size <= p.avg_size
        && p.avg_size <= p.max_size
        && p.normalization <= MAX_NORMALIZATION
        && p.normalization < p.avg_size.trailing_zeros()
}

#[derive(Debug, Arbitrary)]
enum Piece {
    Bytes(Vec<u8>),
    Random { seed: u64, len: u32 },
    Repeat { byte: u8, len: u32 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    params: RawParams,
    seed: [u8; 32],
    pieces: Vec<Piece>,
    /// Sizes of successive reads; 0 is an `Interrupted` error.
    splits: Vec<u16>,
    /// Stream buffer size (raised by the chunker to one maximum chunk).
    buffer: u32,
    /// Where to cut the prefix for the `find_boundary(.., false)` check.
    prefix: u32,
    /// Extra threads (0 to 2) for the small-segment parallel check.
    threads: u8,
    /// Segment size for it (raised by the chunker to one maximum chunk).
    segment: u32,
}

/// A piece length from a fuzzer value: usually up to 64 KiB, so that runs
/// stay fast, and for one value in 16 up to [`MAX_DATA`], to reach the
/// parallel windows.
fn piece_len(raw: u32) -> usize {
    if raw >> 28 == 0xF {
        (raw & 0x0FFF_FFFF) as usize % (MAX_DATA + 1)
    } else {
        (raw & 0xFFFF) as usize
    }
}

fn build_data(pieces: &[Piece]) -> Vec<u8> {
    let mut data = Vec::new();
    for piece in pieces {
        let room = MAX_DATA - data.len();
        match piece {
            Piece::Bytes(bytes) => data.extend_from_slice(&bytes[..bytes.len().min(room)]),
            Piece::Random { seed, len } => {
                let len = piece_len(*len).min(room);
                data.extend_from_slice(&testdata::pseudo_random(*seed, len));
            }
            Piece::Repeat { byte, len } => {
                let len = piece_len(*len).min(room);
                data.resize(data.len() + len, *byte);
            }
        }
    }
    data
}

/// Returns the data in the given read sizes, with `Interrupted` for a 0.
struct SplitReader<'a> {
    data: &'a [u8],
    pos: usize,
    splits: &'a [u16],
    next: usize,
    interrupted: bool,
}

impl Read for SplitReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos..];
        if rest.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        let want = match self.splits.get(self.next % self.splits.len().max(1)) {
            None => usize::MAX,
            Some(&s) => {
                self.next += 1;
                if s == 0 && !self.interrupted {
                    // At most one Interrupted in a row, so reads progress.
                    self.interrupted = true;
                    return Err(io::ErrorKind::Interrupted.into());
                }
                usize::from(s).max(1)
            }
        };
        self.interrupted = false;
        let n = want.min(buf.len()).min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

type Cuts = Vec<(u64, usize)>;

fn cuts<'a>(chunks: impl Iterator<Item = cairn_chunker::Chunk<'a>>) -> Cuts {
    chunks.map(|c| (c.offset, c.data.len())).collect()
}

fuzz_target!(|input: Input| {
    let params = input.params.params();
    let chunker = match Chunker::new(params, GearTable::from_seed(&input.seed)) {
        Ok(chunker) => {
            assert!(expected_valid(&params), "accepted invalid {params:?}");
            assert_eq!(params.validate(), Ok(()));
            chunker
        }
        Err(e) => {
            assert!(!expected_valid(&params), "refused valid {params:?}: {e}");
            assert_eq!(params.validate(), Err(e.clone()));
            // The message must be printable (it is what users see).
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let data = build_data(&input.pieces);

    // The slice iterator: offsets, concatenation and the size rules.
    let expected = cuts(chunker.chunks(&data));
    let mut pos = 0u64;
    for (i, &(offset, len)) in expected.iter().enumerate() {
        assert_eq!(
            offset,
            pos,
            "chunk {i} does not start where {} ended",
            i.max(1) - 1
        );
        assert!(len <= params.max_size, "chunk {i} longer than max: {len}");
        if i + 1 < expected.len() {
            assert!(len >= params.min_size, "chunk {i} shorter than min: {len}");
        } else {
            assert!(len >= 1, "empty last chunk");
        }
        pos += len as u64;
    }
    assert_eq!(pos, data.len() as u64, "chunks do not cover the input");
    assert_eq!(expected.is_empty(), data.is_empty());

    // Every kernel.
    for kernel in Kernel::available() {
        let with = chunker.clone().with_kernel(kernel);
        assert_eq!(cuts(with.chunks(&data)), expected, "kernel {kernel:?}");
    }

    // The parallel path: default segments (16 MiB per thread, so only the
    // largest inputs here span more than one), and small segments from the
    // fuzzer so that speculative chains are joined many times per input.
    assert_eq!(
        cuts(chunker.chunks_parallel(&data, 2)),
        expected,
        "parallel"
    );
    let threads = 2 + usize::from(input.threads % 3);
    let segment = input.segment as usize % (1 << 20);
    assert_eq!(
        cuts(chunker.chunks_parallel_with_segment(&data, threads, segment)),
        expected,
        "parallel, {threads} threads, segment {segment}"
    );

    // The stream adapter over uneven reads.
    if params.max_size <= STREAM_MAX_SIZE {
        let reader = SplitReader {
            data: &data,
            pos: 0,
            splits: &input.splits,
            next: 0,
            interrupted: false,
        };
        let size = input.buffer as usize % (4 * params.max_size + 1);
        let mut stream = StreamChunker::with_buffer_size(&chunker, reader, size);
        let mut streamed = Vec::new();
        while let Some(chunk) = stream.next_chunk().expect("SplitReader never fails") {
            let start = chunk.offset as usize;
            assert_eq!(
                chunk.data,
                &data[start..start + chunk.data.len()],
                "stream bytes"
            );
            streamed.push((chunk.offset, chunk.data.len()));
        }
        assert_eq!(streamed, expected, "stream");
    }

    // The pure boundary finder, chunk after chunk.
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(len) = chunker.find_boundary(&data[pos..], true) {
        assert!(len > 0 && pos + len <= data.len());
        found.push((pos as u64, len));
        pos += len;
    }
    assert_eq!(found, expected, "find_boundary");

    // Without `last`, a prefix gives either nothing yet or the same cut.
    if let Some(&(_, first)) = expected.first() {
        let prefix = input.prefix as usize % (data.len() + 1);
        match chunker.find_boundary(&data[..prefix], false) {
            None => {}
            Some(len) => assert_eq!(len, first, "find_boundary on a {prefix}-byte prefix"),
        }
    }

    // The reference definition, where it is fast enough.
    if data.len() <= REFERENCE_MAX {
        let lengths = reference::chunk_lengths(chunker.table(), &params, &data);
        let lens: Vec<usize> = expected.iter().map(|&(_, l)| l).collect();
        assert_eq!(lens, lengths, "reference");
    }
});
