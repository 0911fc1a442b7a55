//! Reading one file, disk image or block device through the chunker.
//!
//! Large inputs are memory-mapped and chunked in place: the chunker works on
//! borrowed slices, so a mapped disk is never copied, and the parallel path
//! can split it across threads. Small files are streamed through
//! [`StreamChunker`], which reads them into one buffer: mapping a 4 KiB file
//! costs more in system calls and page-table work than reading it. If a
//! mapping cannot be made (some file systems and devices refuse), the input
//! is streamed instead.
//!
//! Time spent reading is measured apart from time spent chunking: a timing
//! wrapper around the reader for streams, and for mappings an explicit pass
//! that faults pages in ahead of the chunker. So the chunking throughput that
//! `cairn chunk` reports is that of the chunker, not of the disk.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_chunker::{Chunk, Chunker, StreamChunker};
use memmap2::{Mmap, MmapOptions};

use crate::stats::Accumulator;
use crate::walk::InputKind;

/// Inputs of at least this many bytes are memory-mapped.
pub const MMAP_MIN: u64 = 1 << 20;

/// Largest buffer for a streamed input (the chunker raises it to at least one
/// maximum chunk size).
const STREAM_BUFFER: usize = 4 << 20;

/// Bytes faulted in ahead of the chunker, beyond what it may scan ahead.
const PREFAULT_AHEAD: usize = 64 << 20;

/// How to read inputs.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Threads for chunking one mapped input.
    pub threads: usize,
    /// Inputs of at least this many bytes are mapped, smaller ones streamed.
    pub mmap_min: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            mmap_min: MMAP_MIN,
        }
    }
}

/// Chunks one input into `acc`.
///
/// Errors name the path. If reading fails part-way, the chunks read before
/// the error have been counted.
pub fn chunk_input(
    path: &Path,
    kind: InputKind,
    chunker: &Chunker,
    options: ReadOptions,
    acc: &mut Accumulator,
) -> anyhow::Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = input_len(&mut file, kind)
        .with_context(|| format!("cannot find the size of {}", path.display()))?;
    acc.count_file();
    if len >= options.mmap_min.max(1)
        && let Some(map) = map(&file, len)
    {
        chunk_mapped(&map, chunker, options.threads, acc);
        return Ok(());
    }
    chunk_stream(file, len, chunker, acc).with_context(|| format!("cannot read {}", path.display()))
}

/// The size of a file, or of a block device (whose metadata says 0).
fn input_len(file: &mut File, kind: InputKind) -> io::Result<u64> {
    match kind {
        InputKind::File => Ok(file.metadata()?.len()),
        InputKind::BlockDevice => {
            let len = file.seek(SeekFrom::End(0))?;
            file.seek(SeekFrom::Start(0))?;
            Ok(len)
        }
    }
}

/// Maps `len` bytes of `file` read-only, or `None` if that is not possible
/// (the caller then streams the input).
fn map(file: &File, len: u64) -> Option<Mmap> {
    let len = usize::try_from(len).ok()?;
    // SAFETY: the mapping is read-only and private to this process, and the
    // slice it gives is only read, by the chunker and the hasher, while the
    // `Mmap` lives. What the compiler cannot rule out is another process
    // changing the file meanwhile. Writes then show up in the slice (chunks
    // and hashes may describe a mix of old and new data, as any reader of a
    // live file would see), and a truncation makes further reads of the lost
    // pages fault with SIGBUS, which ends the process rather than letting it
    // read invalid memory. Backing up a file while it is rewritten is the
    // same hazard every mmap-based reader (ripgrep, restic) accepts; disks
    // and images are expected to be quiescent or snapshotted.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.ok()?;
    #[cfg(unix)]
    {
        // Only a hint to the kernel's read-ahead; chunking is correct without it.
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Some(map)
}

/// Chunks a mapped input, faulting pages in ahead of the chunker so that
/// page-in time counts as reading, not chunking.
fn chunk_mapped(data: &[u8], chunker: &Chunker, threads: usize, acc: &mut Accumulator) {
    let max_size = chunker.params().max_size;
    // The parallel path works on windows of `threads` segments of 16 MiB
    // past the current chunk; keep a window or two ahead of that (the exact
    // figure is the chunker's business, so this is generous, not tight).
    let ahead = PREFAULT_AHEAD + threads * (64 << 20) + 2 * max_size;
    let mut faulted = 0;
    let mut pos = 0;
    let mut chunks = chunker.chunks_parallel(data, threads);
    loop {
        if faulted < data.len() && faulted < pos + ahead / 2 {
            let start = Instant::now();
            let end = data.len().min(pos + ahead);
            fault_in(&data[faulted..end]);
            faulted = end;
            acc.timings.reading += start.elapsed();
        }
        let start = Instant::now();
        let next = chunks.next();
        acc.timings.chunking += start.elapsed();
        let Some(Chunk { data: chunk, .. }) = next else {
            break;
        };
        pos += chunk.len();
        acc.record(chunk, max_size);
    }
}

/// Touches one byte per 4 KiB page so that the kernel reads it in.
fn fault_in(data: &[u8]) {
    let sum = data.iter().step_by(4096).fold(0u8, |a, &b| a ^ b);
    std::hint::black_box(sum);
}

/// Chunks a stream with one buffer sized to the input.
fn chunk_stream(file: File, len: u64, chunker: &Chunker, acc: &mut Accumulator) -> io::Result<()> {
    let max_size = chunker.params().max_size;
    let spent = Cell::new(Duration::ZERO);
    let reader = TimedReader {
        inner: file,
        spent: &spent,
    };
    // One byte more than the input, so that a small file is read and its end
    // seen in one refill.
    let buffer = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(STREAM_BUFFER);
    let mut stream = StreamChunker::with_buffer_size(chunker, reader, buffer);
    loop {
        let read_before = spent.get();
        let start = Instant::now();
        let next = stream.next_chunk();
        let elapsed = start.elapsed();
        let read = spent.get().saturating_sub(read_before);
        acc.timings.reading += read;
        acc.timings.chunking += elapsed.saturating_sub(read);
        match next? {
            Some(chunk) => acc.record(chunk.data, max_size),
            None => return Ok(()),
        }
    }
}

/// A reader that adds the time spent in `read` to a shared counter, which
/// stays readable while [`StreamChunker`] owns the reader.
struct TimedReader<'a, R> {
    inner: R,
    spent: &'a Cell<Duration>,
}

impl<R: Read> Read for TimedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        let result = self.inner.read(buf);
        self.spent.set(self.spent.get() + start.elapsed());
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use cairn_chunker::{ChunkerParams, GearTable, TEST_SEED, testdata};

    fn chunker() -> Chunker {
        let params = ChunkerParams::new(1024, 4096, 16384);
        Chunker::new(params, GearTable::from_seed(&TEST_SEED)).unwrap()
    }

    fn report(path: &Path, options: ReadOptions) -> crate::stats::Report {
        let mut acc = Accumulator::new();
        chunk_input(path, InputKind::File, &chunker(), options, &mut acc).unwrap();
        acc.report(crate::stats::ReportContext {
            seed: "test",
            params: chunker().params().to_owned().into(),
            kernel: String::new(),
            threads: options.threads,
            wall: Duration::ZERO,
            warnings: vec![],
        })
    }

    #[test]
    fn mapped_and_streamed_inputs_give_the_library_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data = testdata::pseudo_random(7, 3 << 20);
        std::fs::write(&path, &data).unwrap();
        let expected: Vec<usize> = chunker().chunks(&data).map(|c| c.data.len()).collect();

        for options in [
            ReadOptions {
                threads: 1,
                mmap_min: 0,
            },
            ReadOptions {
                threads: 2,
                mmap_min: 0,
            },
            ReadOptions {
                threads: 1,
                mmap_min: u64::MAX,
            },
        ] {
            let r = report(&path, options);
            assert_eq!(r.chunks, expected.len() as u64, "{options:?}");
            assert_eq!(r.bytes, data.len() as u64);
            assert_eq!(r.chunk_size.min, expected.iter().min().map(|&m| m as u64));
            assert_eq!(r.chunk_size.max, expected.iter().max().map(|&m| m as u64));
        }
    }

    #[test]
    fn empty_file_counts_as_a_file_without_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let r = report(&path, ReadOptions::default());
        assert_eq!((r.files, r.chunks, r.bytes), (1, 0, 0));
    }

    #[test]
    fn block_device_size_comes_from_seeking() {
        // A regular file stands in for a device: seeking to its end must give
        // its length and leave the position at the start.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        std::fs::write(&path, vec![7u8; 12345]).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(input_len(&mut file, InputKind::BlockDevice).unwrap(), 12345);
        let mut first = [0u8; 1];
        file.read_exact(&mut first).unwrap();
        assert_eq!(first, [7]);
        let mut acc = Accumulator::new();
        chunk_input(
            &path,
            InputKind::BlockDevice,
            &chunker(),
            ReadOptions::default(),
            &mut acc,
        )
        .unwrap();
        assert_eq!(acc.bytes(), 12345);
    }

    #[test]
    fn open_error_names_the_path() {
        let mut acc = Accumulator::new();
        let err = chunk_input(
            Path::new("/no/such/file"),
            InputKind::File,
            &chunker(),
            ReadOptions::default(),
            &mut acc,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("cannot open /no/such/file"));
    }
}
