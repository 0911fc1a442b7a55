//! The bytes of a file snapshot's regular files, concatenated in archive
//! order and fetched a window ahead.
//!
//! A tar stream is written front to back, entry by entry, but fetching file
//! data one file at a time would cost a ranged read per small file. The
//! feed walks the tree with its own [`TreeCursor`], ahead of the writer:
//! it plans up to [`WINDOW_BYTES`](super::WINDOW_BYTES) of data across as
//! many files as that takes (or part of one large file), fetches the
//! window's blobs pack by pack on worker threads (coalesced ranged reads,
//! each blob verified against its id), and then hands the bytes out in
//! order through [`std::io::Read`]. The writer takes exactly each file's
//! size from it (`Read::take`); the feed checks that every file's extents
//! add up to that size, so the two walks cannot drift apart.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};

use cairn_store::{Id, Repository};

use super::ExportError;
use crate::chunklist::{Extent, ListReader};
use crate::fetch::{load_grouped, locate};
use crate::tree::{Content, NodeKind, display_path};
use crate::tree_cursor::{Entry, TreeCursor};

/// Whether `entry` carries file data in the archive: a regular file whose
/// name is safe. The writer and the feed must agree on this.
pub fn carries_data(entry: &Entry) -> bool {
    entry.refused.is_none() && entry.node.kind == NodeKind::File
}

/// A file whose extents are being planned.
struct OpenFile<'r> {
    path: Vec<u8>,
    size: u64,
    seen: u64,
    extents: Extents<'r>,
}

/// A file's extents, in the node or in a chunked list.
enum Extents<'r> {
    Inline(std::vec::IntoIter<Extent>),
    List(Box<ListReader<'r>>),
}

/// A run of the concatenated data, ready to hand out.
enum Piece {
    /// A blob of the current window, and how much of it was handed out.
    Blob(Id, usize),
    /// Zeros still to hand out (a hole in a sparse file).
    Zeros(u64),
}

/// Reads the data of every regular file of a snapshot, in archive order.
pub struct DataFeed<'r> {
    repo: &'r Repository,
    threads: usize,
    window_bytes: u64,
    cursor: TreeCursor<'r>,
    file: Option<OpenFile<'r>>,
    ready: VecDeque<Piece>,
    blobs: HashMap<Id, Vec<u8>>,
    exhausted: bool,
    failed: Option<ExportError>,
    handed_out: u64,
}

impl<'r> DataFeed<'r> {
    /// A feed over the snapshot tree `root`, fetching `window_bytes` of
    /// data at a time on `threads` workers.
    pub fn new(repo: &'r Repository, root: Id, threads: usize, window_bytes: u64) -> Self {
        DataFeed {
            repo,
            threads,
            window_bytes: window_bytes.max(1),
            cursor: TreeCursor::new(repo, root),
            file: None,
            ready: VecDeque::new(),
            blobs: HashMap::new(),
            exhausted: false,
            failed: None,
            handed_out: 0,
        }
    }

    /// Bytes handed out so far.
    pub fn handed_out(&self) -> u64 {
        self.handed_out
    }

    /// The error behind a failed read, if a read failed.
    pub fn take_error(&mut self) -> Option<ExportError> {
        self.failed.take()
    }

    /// The next extent of the concatenated data, moving to the next file
    /// when one ends.
    fn next_extent(&mut self) -> Result<Option<Extent>, ExportError> {
        loop {
            if let Some(file) = &mut self.file {
                let next = match &mut file.extents {
                    Extents::Inline(extents) => extents.next(),
                    Extents::List(reader) => reader.next_extent()?,
                };
                match next {
                    Some(e) => {
                        file.seen = file.seen.saturating_add(e.len);
                        if file.seen > file.size {
                            return Err(size_mismatch(file));
                        }
                        return Ok(Some(e));
                    }
                    None if file.seen != file.size => return Err(size_mismatch(file)),
                    None => self.file = None,
                }
            }
            let Some(entry) = self.cursor.next().transpose()? else {
                return Ok(None);
            };
            if !carries_data(&entry) {
                continue;
            }
            let extents = match entry.node.content {
                None => Extents::Inline(Vec::new().into_iter()),
                Some(Content::Inline(extents)) => Extents::Inline(extents.into_iter()),
                Some(Content::List(root)) => {
                    Extents::List(Box::new(ListReader::new(self.repo, &root)?))
                }
            };
            self.file = Some(OpenFile {
                path: entry.path,
                size: entry.node.size,
                seen: 0,
                extents,
            });
        }
    }

    /// Plans and fetches the next window; sets `exhausted` at the end.
    fn fill(&mut self) -> Result<(), ExportError> {
        let mut window = Vec::new();
        let mut data = 0u64;
        while data < self.window_bytes {
            let Some(e) = self.next_extent()? else {
                break;
            };
            if e.blob.is_some() {
                data += e.len;
            }
            window.push(e);
        }
        if window.is_empty() {
            self.exhausted = true;
            return Ok(());
        }
        let located = window
            .iter()
            .filter_map(|e| e.blob)
            .map(|id| locate(self.repo, &id))
            .collect::<Result<Vec<_>, _>>()?;
        let (blobs, _) = load_grouped(self.repo, located, self.threads)?;
        for e in &window {
            match e.blob {
                Some(id) => {
                    let len = blobs.get(&id).map(|b| b.len() as u64);
                    if len != Some(e.len) {
                        return Err(ExportError::Damaged(format!(
                            "blob {} holds {} bytes where the file needs {}",
                            id.short(8),
                            len.unwrap_or(0),
                            e.len
                        )));
                    }
                    self.ready.push_back(Piece::Blob(id, 0));
                }
                None => self.ready.push_back(Piece::Zeros(e.len)),
            }
        }
        self.blobs = blobs;
        Ok(())
    }

    /// Copies from the front piece into `buf`; returns the bytes copied.
    fn hand_out(&mut self, buf: &mut [u8]) -> usize {
        let Some(piece) = self.ready.front_mut() else {
            return 0;
        };
        let (n, done) = match piece {
            Piece::Blob(id, taken) => {
                let bytes = self.blobs.get(id).map_or(&[][..], |b| &b[*taken..]);
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                *taken += n;
                (n, n == bytes.len())
            }
            Piece::Zeros(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                buf[..n].fill(0);
                *left -= n as u64;
                (n, *left == 0)
            }
        };
        if done {
            self.ready.pop_front();
        }
        self.handed_out += n as u64;
        n
    }
}

fn size_mismatch(file: &OpenFile<'_>) -> ExportError {
    ExportError::Damaged(format!(
        "file {} has at least {} bytes of extents but its entry says {} bytes",
        display_path(&file.path).display(),
        file.seen,
        file.size
    ))
}

impl Read for DataFeed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // An empty blob or hole hands out nothing: go on to the next.
            while !self.ready.is_empty() {
                let n = self.hand_out(buf);
                if n > 0 {
                    return Ok(n);
                }
            }
            if self.exhausted || self.failed.is_some() {
                return Ok(0);
            }
            if let Err(e) = self.fill() {
                let message = e.to_string();
                self.failed = Some(e);
                return Err(io::Error::other(message));
            }
        }
    }
}
