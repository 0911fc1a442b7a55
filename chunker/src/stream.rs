//! Chunking a [`Read`] stream with one reused buffer.
//!
//! The adapter reads into a buffer of a few maximum chunk sizes, finds cuts
//! with the same scanners and resolver as the slice iterator, and lends out
//! each chunk as a borrow of the buffer, so a stream of any length is chunked
//! with a fixed amount of memory and no copy per chunk. When the unconsumed
//! tail runs low, it is moved to the front and the buffer refilled.

use std::io::{self, Read};

use crate::chunker::CutState;
use crate::{Chunk, Chunker};

/// Smallest buffer, so that short maximum sizes still read in large blocks.
const MIN_BUFFER: usize = 4 << 20;

/// Chunks a reader; see the module docs.
#[derive(Debug)]
pub struct StreamChunker<'c, R> {
    chunker: &'c Chunker,
    reader: R,
    buf: Vec<u8>,
    /// Start of the next chunk in `buf`.
    pos: usize,
    /// End of the valid data in `buf`.
    filled: usize,
    /// Offset in the stream of `buf[0]`.
    base: u64,
    eof: bool,
    cuts: CutState,
}

impl<'c, R: Read> StreamChunker<'c, R> {
    /// Chunks `reader` with a buffer of four maximum chunk sizes (at least
    /// 4 MiB).
    pub fn new(chunker: &'c Chunker, reader: R) -> Self {
        let size = (4 * chunker.params().max_size).max(MIN_BUFFER);
        Self::with_buffer_size(chunker, reader, size)
    }

    /// Chunks `reader` with a buffer of `size` bytes, raised to at least one
    /// maximum chunk size. Boundaries never depend on the buffer size.
    pub fn with_buffer_size(chunker: &'c Chunker, reader: R, size: usize) -> Self {
        Self {
            chunker,
            reader,
            buf: vec![0; size.max(chunker.params().max_size)],
            pos: 0,
            filled: 0,
            base: 0,
            eof: false,
            cuts: CutState::default(),
        }
    }

    /// The next chunk, borrowed from the internal buffer until the next call;
    /// `None` at the end of the stream. Read errors are returned as they are
    /// (`Interrupted` reads are retried).
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk<'_>>> {
        loop {
            let data = &self.buf[..self.filled];
            if let Some(end) = self.cuts.next_cut(self.chunker, data, self.pos, self.eof) {
                let start = self.pos;
                self.pos = end;
                return Ok(Some(Chunk {
                    offset: self.base + start as u64,
                    data: &self.buf[start..end],
                }));
            }
            if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// Moves the unconsumed tail to the front and reads until the buffer is
    /// full or the stream ends.
    fn refill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.cuts.shift_down(self.pos);
            self.filled -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        while self.filled < self.buf.len() {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Returns the reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// The reader.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The reader, mutably (reading from it directly skips those bytes).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// Starts over on another reader, keeping the buffer: for chunking many
    /// files without allocating a buffer for each. Offsets restart at 0.
    pub fn reset<R2: Read>(self, reader: R2) -> StreamChunker<'c, R2> {
        StreamChunker {
            chunker: self.chunker,
            reader,
            buf: self.buf,
            pos: 0,
            filled: 0,
            base: 0,
            eof: false,
            cuts: CutState::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkerParams, GearTable, testdata};

    fn lengths<R: Read>(stream: &mut StreamChunker<'_, R>) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(c) = stream.next_chunk().expect("in-memory reads do not fail") {
            out.push(c.data.len());
        }
        out
    }

    #[test]
    fn reset_reuses_the_buffer_and_starts_over() {
        let chunker = Chunker::new(ChunkerParams::new(256, 1024, 4096), GearTable::for_tests())
            .expect("valid params");
        let a = testdata::pseudo_random(1, 100_000);
        let b = testdata::pseudo_random(2, 50_000);
        let mut first = StreamChunker::with_buffer_size(&chunker, &a[..], 8192);
        assert_eq!(
            lengths(&mut first),
            chunker.chunks(&a).map(|c| c.data.len()).collect::<Vec<_>>()
        );
        let capacity = first.buf.len();
        let mut second = first.reset(&b[..]);
        assert_eq!(second.buf.len(), capacity);
        let got = lengths(&mut second);
        assert_eq!(
            got,
            chunker.chunks(&b).map(|c| c.data.len()).collect::<Vec<_>>()
        );
        assert!(second.get_ref().is_empty());
    }
}
