//! The chunker: boundary search over slices, a chunk iterator, and the
//! candidate bookkeeping they share with the streaming and parallel paths.

use std::collections::VecDeque;

use crate::resolve::{HashMemo, Resolution, Resolver};
use crate::{Candidate, ChunkerParams, GearTable, Kernel, ParamsError};

/// Bytes scanned per step by the slice iterator and the stream adapter.
/// Large enough to amortize a kernel's set-up (a warm-up round), small
/// enough that the scan stays close behind the cuts and skips most of each
/// chunk's minimum. An odd number of 4 KiB rounds: the byte-sliced kernel's lanes
/// are then an odd number of cache lines apart (see `scan/sliced.rs`).
const SCAN_BLOCK: usize = 63 * 4096;

/// A content-defined chunker: validated parameters, a keyed gear table and
/// the fastest scan kernel of this CPU.
#[derive(Debug, Clone)]
pub struct Chunker {
    params: ChunkerParams,
    table: GearTable,
    resolver: Resolver,
    relaxed: u32,
    kernel: Kernel,
}

/// One chunk: its offset in the input and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Offset of the first byte in the whole input.
    pub offset: u64,
    /// The chunk's bytes, borrowed from the input or the stream buffer.
    pub data: &'a [u8],
}

impl Chunker {
    /// A chunker with the given parameters and gear table, using the fastest
    /// kernel this CPU supports.
    pub fn new(params: ChunkerParams, table: GearTable) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            params,
            resolver: Resolver::new(&params),
            relaxed: params.thresholds().relaxed,
            table,
            kernel: Kernel::detect(),
        })
    }

    /// The same chunker using `kernel` (falls back to scalar if this CPU
    /// lacks it). For tests and benchmarks: boundaries never depend on it.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The parameters.
    pub fn params(&self) -> &ChunkerParams {
        &self.params
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The gear table.
    pub fn table(&self) -> &GearTable {
        &self.table
    }

    /// Length of the chunk at the start of `data`: the pure boundary finder.
    ///
    /// `last` says `data` runs to the end of the input. Returns `None` when
    /// `data` is empty, or when it is not `last` and holds no boundary yet
    /// (pass more data). Never allocates; skips the first `min_size` bytes.
    pub fn find_boundary(&self, data: &[u8], last: bool) -> Option<usize> {
        use crate::scan::scalar::first_below;
        let p = &self.params;
        let t = self.params.thresholds();
        let limit = data.len().min(p.max_size);
        if limit >= p.min_size {
            let first = p.min_size - 1;
            let h = crate::scan::state_before(&self.table, data, first);
            let strict_end = limit.min(p.avg_size - 1).max(first);
            let h = match first_below(&self.table, &data[first..strict_end], h, t.strict) {
                Ok(e) => return Some(first + e + 1),
                Err(h) => h,
            };
            if let Ok(e) = first_below(&self.table, &data[strict_end..limit], h, t.relaxed) {
                return Some(strict_end + e + 1);
            }
            if limit == p.max_size {
                return Some(limit);
            }
        }
        (last && !data.is_empty()).then_some(data.len())
    }

    /// Iterates over the chunks of `data` (for example a memory-mapped disk).
    pub fn chunks<'a>(&'a self, data: &'a [u8]) -> Chunks<'a> {
        Chunks {
            chunker: self,
            data,
            pos: 0,
            cuts: CutState::default(),
            threads: 1,
            segment: crate::parallel::SEGMENT,
            pending: VecDeque::new(),
        }
    }

    /// Iterates over the chunks of `data`, scanning on `threads` threads.
    ///
    /// Gives exactly the chunks of [`chunks`](Self::chunks). The input is
    /// taken in windows of `threads` segments (32 MiB or 64 average chunk
    /// sizes, less for inputs smaller than a window); each thread chunks its
    /// segment speculatively and the chains are joined where they meet,
    /// which takes a serial walk of a chunk or two per segment (see the
    /// `parallel` module). Memory stays bounded by the window.
    pub fn chunks_parallel<'a>(&'a self, data: &'a [u8], threads: usize) -> Chunks<'a> {
        let segment = crate::parallel::segment_size(data.len(), threads, self.params.avg_size);
        self.chunks_parallel_with_segment(data, threads, segment)
    }

    /// [`chunks_parallel`](Self::chunks_parallel) with `segment` bytes per
    /// thread per window (at least one maximum chunk size). A tuning knob:
    /// boundaries never depend on it.
    pub fn chunks_parallel_with_segment<'a>(
        &'a self,
        data: &'a [u8],
        threads: usize,
        segment: usize,
    ) -> Chunks<'a> {
        Chunks {
            threads: threads.max(1),
            segment: segment.max(self.params.max_size),
            ..self.chunks(data)
        }
    }

    pub(crate) fn resolver(&self) -> &Resolver {
        &self.resolver
    }
}

/// Candidates found so far and how far they reach; shared by the slice
/// iterator and the stream adapter.
#[derive(Debug, Default)]
pub(crate) struct CutState {
    /// Relaxed candidates, ascending; the ones before `cursor` are used up.
    pub candidates: Vec<Candidate>,
    pub cursor: usize,
    /// Every position below this (and at or past the current chunk's first
    /// position) has been scanned.
    pub scanned_end: usize,
    /// The resolver's last computed hash.
    pub memo: HashMemo,
    /// Chunks whose first tested position lies below this are in a region
    /// where candidates came too densely to list (low-entropy data whose
    /// hash passes the threshold everywhere); they are cut by the scalar
    /// boundary finder instead.
    pub dense_until: usize,
}

impl CutState {
    /// Finds the end of the chunk at `start` in `data`, scanning as needed.
    /// Returns `None` if more data is needed (or, when `last`, if `start` is
    /// the end of the data).
    pub fn next_cut(
        &mut self,
        chunker: &Chunker,
        data: &[u8],
        start: usize,
        last: bool,
    ) -> Option<usize> {
        loop {
            if chunker.resolver().first_position(start) < self.dense_until {
                let len = chunker.find_boundary(&data[start..], last)?;
                return Some(start + len);
            }
            let resolution = chunker.resolver().resolve(
                &chunker.table,
                data,
                &mut self.memo,
                start,
                &self.candidates,
                &mut self.cursor,
                self.scanned_end,
                last,
            );
            match resolution {
                Resolution::Cut(end) => return Some(end),
                Resolution::Done => return None,
                Resolution::NeedScan(from) if from >= data.len() => return None,
                Resolution::NeedScan(from) => self.scan_from(chunker, data, from),
            }
        }
    }

    fn scan_from(&mut self, chunker: &Chunker, data: &[u8], from: usize) {
        if self.cursor == self.candidates.len() {
            self.candidates.clear();
            self.cursor = 0;
        }
        let end = data.len().min(from + SCAN_BLOCK);
        // Sixteen times the expected number of candidates, and some slack.
        let expected = ((end - from) as u64 * chunker.relaxed as u64) >> 32;
        let cap = self.candidates.len() + 16 * expected as usize + 64;
        let listed = chunker.kernel.scan_capped(
            &chunker.table,
            data,
            from,
            end,
            chunker.relaxed,
            &mut self.candidates,
            cap,
        );
        if listed {
            self.scanned_end = end;
        } else {
            self.dense_until = end;
        }
    }

    /// Forgets everything before `shift` (the data moved down by `shift`).
    pub fn shift_down(&mut self, shift: usize) {
        self.candidates.drain(..self.cursor);
        self.cursor = 0;
        self.candidates.retain(|c| c.pos >= shift);
        for c in &mut self.candidates {
            c.pos -= shift;
        }
        self.scanned_end = self.scanned_end.saturating_sub(shift);
        self.dense_until = self.dense_until.saturating_sub(shift);
        self.memo.forget();
    }
}

/// Iterator over the chunks of a slice; see [`Chunker::chunks`].
#[derive(Debug)]
pub struct Chunks<'a> {
    chunker: &'a Chunker,
    data: &'a [u8],
    pos: usize,
    cuts: CutState,
    threads: usize,
    segment: usize,
    /// Chunk ends computed ahead by the parallel path.
    pending: VecDeque<usize>,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let end = if self.threads > 1 {
            if self.pending.is_empty() && self.pos < self.data.len() {
                crate::parallel::chunk_window(
                    self.chunker,
                    self.data,
                    self.pos,
                    self.threads,
                    self.segment,
                    &mut self.pending,
                );
            }
            self.pending.pop_front()?
        } else {
            self.cuts
                .next_cut(self.chunker, self.data, self.pos, true)?
        };
        let chunk = Chunk {
            offset: self.pos as u64,
            data: &self.data[self.pos..end],
        };
        self.pos = end;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StreamChunker, reference};

    /// A seed under which 32 zero bytes hash below the relaxed threshold of
    /// 4/16/64 KiB parameters (found by search): in a run of zeros, every
    /// position is a candidate.
    fn dense_zero_seed() -> GearTable {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&12307u32.to_le_bytes());
        GearTable::from_seed(&seed)
    }

    fn zeros_with_random_ends() -> Vec<u8> {
        let mut data = crate::testdata::pseudo_random(5, 300_000);
        data.extend(std::iter::repeat_n(0u8, 1_500_000));
        data.extend(crate::testdata::pseudo_random(6, 300_000));
        data
    }

    #[test]
    fn dense_candidates_switch_to_the_boundary_finder_and_back() {
        let params = ChunkerParams::new(4096, 16384, 65536);
        let table = dense_zero_seed();
        let zeros = [0u8; 64];
        assert!(reference::window_hash(&table, &zeros, 63) < params.thresholds().relaxed);
        let data = zeros_with_random_ends();
        let want = reference::chunk_lengths(&table, &params, &data);
        for kernel in Kernel::available() {
            let chunker = Chunker::new(params, table.clone())
                .expect("valid params")
                .with_kernel(kernel);
            let mut state = CutState::default();
            let mut pos = 0;
            let mut got = Vec::new();
            let mut went_dense = false;
            while let Some(end) = state.next_cut(&chunker, &data, pos, true) {
                went_dense |= state.dense_until > 0;
                got.push(end - pos);
                pos = end;
            }
            assert!(
                went_dense,
                "{kernel:?}: the zero run should be too dense to list"
            );
            assert_eq!(got, want, "{kernel:?}");
            assert!(
                state.scanned_end > 1_800_000,
                "{kernel:?}: listing resumes after the run"
            );
        }
    }

    #[test]
    fn dense_regions_stream_correctly_across_buffer_refills() {
        let params = ChunkerParams::new(4096, 16384, 65536);
        let table = dense_zero_seed();
        let data = zeros_with_random_ends();
        let want = reference::chunk_lengths(&table, &params, &data);
        let chunker = Chunker::new(params, table).expect("valid params");
        let mut stream = StreamChunker::with_buffer_size(&chunker, &data[..], 100_000);
        let mut got = Vec::new();
        while let Some(c) = stream.next_chunk().expect("in-memory reads do not fail") {
            got.push(c.data.len());
        }
        assert_eq!(got, want);
    }
}
