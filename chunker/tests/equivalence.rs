//! Every way of chunking gives exactly the boundaries of the reference.
//!
//! The reference (`cairn_chunker::reference`) is the definition; the slice
//! iterator with each kernel, the parallel scan, the stream adapter (with
//! arbitrary buffer sizes and read splits) and the pure boundary finder must
//! agree with it on random data, seeds and parameters.

use std::io::Read;

use cairn_chunker::{Chunker, ChunkerParams, GearTable, Kernel, StreamChunker, reference};
use proptest::prelude::*;

/// Data with the shapes that matter: random stretches, runs of one byte,
/// short repeated patterns (periodic hashes) and text-like bytes.
fn shaped_data() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (any::<u64>(), 1usize..40_000)
            .prop_map(|(s, n)| cairn_chunker::testdata::pseudo_random(s, n)),
        (any::<u8>(), 1usize..20_000).prop_map(|(b, n)| vec![b; n]),
        (prop::collection::vec(any::<u8>(), 1..40), 1usize..500)
            .prop_map(|(p, reps)| p.repeat(reps)),
        prop::collection::vec(b'a'..=b'z', 1..5_000),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn params() -> impl Strategy<Value = ChunkerParams> {
    (6u32..15, 0u32..=3, 1usize..=8, 1usize..=8)
        .prop_map(|(avg_bits, norm, min_div, max_mul)| {
            let avg = 1usize << avg_bits;
            let min = (avg / min_div).max(64);
            ChunkerParams::new(min, avg.max(min), avg * max_mul)
                .with_normalization(norm.min(avg_bits - 1))
        })
        .prop_filter("valid", |p| p.validate().is_ok())
}

/// A reader that hands out the data in the given read sizes, cycling.
struct Splits<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Splits<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()];
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn lengths<'a>(chunks: impl Iterator<Item = cairn_chunker::Chunk<'a>>) -> Vec<usize> {
    let mut next = 0u64;
    chunks
        .map(|c| {
            assert_eq!(c.offset, next, "chunks must be contiguous");
            next += c.data.len() as u64;
            c.data.len()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn all_paths_match_the_reference(
        data in shaped_data(),
        p in params(),
        seed in any::<[u8; 32]>(),
        threads in 2usize..5,
        segment in 1usize..100_000,
        buffer in 1usize..200_000,
        splits in prop::collection::vec(1usize..100_000, 1..6),
    ) {
        let table = GearTable::from_seed(&seed);
        let want = reference::chunk_lengths(&table, &p, &data);
        prop_assert_eq!(want.iter().sum::<usize>(), data.len());
        let chunker = Chunker::new(p, table).expect("valid params");

        for kernel in Kernel::available() {
            let c = chunker.clone().with_kernel(kernel);
            prop_assert_eq!(&lengths(c.chunks(&data)), &want, "kernel {:?}", kernel);
        }
        prop_assert_eq!(&lengths(chunker.chunks_parallel(&data, threads)), &want);
        let segmented = chunker.chunks_parallel_with_segment(&data, threads, segment);
        prop_assert_eq!(&lengths(segmented), &want, "segment {}", segment);

        let reader = Splits { data: &data, sizes: splits, i: 0 };
        let mut stream = StreamChunker::with_buffer_size(&chunker, reader, buffer);
        let mut got = Vec::new();
        let mut next = 0u64;
        while let Some(c) = stream.next_chunk().expect("in-memory reads do not fail") {
            prop_assert_eq!(c.offset, next);
            next += c.data.len() as u64;
            got.push(c.data.len());
        }
        prop_assert_eq!(&got, &want);

        let mut pos = 0;
        let mut got = Vec::new();
        while let Some(len) = chunker.find_boundary(&data[pos..], true) {
            got.push(len);
            pos += len;
        }
        prop_assert_eq!(&got, &want);
    }

    #[test]
    fn find_boundary_waits_for_more_data_only_when_it_must(
        data in shaped_data(),
        p in params(),
        cut_at in any::<prop::sample::Index>(),
    ) {
        let chunker = Chunker::new(p, GearTable::for_tests()).expect("valid params");
        let n = if data.is_empty() { 0 } else { cut_at.index(data.len() + 1) };
        let prefix = &data[..n];
        let full = reference::cut(chunker.table(), &p, &data, true);
        match chunker.find_boundary(prefix, false) {
            // A cut found in a prefix is the cut of the whole input.
            Some(len) => prop_assert_eq!(Some(len), full),
            // No cut yet: the whole input's cut lies beyond the prefix, or
            // is only the end of the whole input (which a prefix passed with
            // `last = false` cannot know is the end).
            None => prop_assert!(full.is_none_or(|len| len > n || len == data.len())),
        }
    }

    #[test]
    fn every_kernel_reports_the_scalar_candidates(
        data in shaped_data(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        shift in 0u32..32,
        power_of_two in any::<bool>(),
    ) {
        let table = GearTable::for_tests();
        let (mut start, mut end) = (a.index(data.len() + 1), b.index(data.len() + 1));
        if start > end { std::mem::swap(&mut start, &mut end); }
        // Chunker parameters only produce powers of two; other thresholds
        // must still work through the fallback.
        let threshold = if power_of_two { 1u32 << shift } else { u32::MAX >> shift };
        let mut want = Vec::new();
        Kernel::Scalar.scan(&table, &data, start, end, threshold, &mut want);
        for kernel in Kernel::available() {
            let mut got = Vec::new();
            kernel.scan(&table, &data, start, end, threshold, &mut got);
            prop_assert_eq!(&got, &want, "kernel {:?}", kernel);
        }
    }
}

#[test]
fn chunk_sizes_respect_the_bounds() {
    let data = cairn_chunker::testdata::pseudo_random(3, 8 << 20);
    let p = ChunkerParams::new(4096, 16384, 65536);
    let chunker = Chunker::new(p, GearTable::for_tests()).expect("valid params");
    let lens = lengths(chunker.chunks(&data));
    let (last, rest) = lens.split_last().expect("data is not empty");
    assert!(rest.iter().all(|&l| (p.min_size..=p.max_size).contains(&l)));
    assert!((1..=p.max_size).contains(last));
    let mean = data.len() / lens.len();
    assert!((12_000..24_000).contains(&mean), "mean chunk size {mean}");
}
