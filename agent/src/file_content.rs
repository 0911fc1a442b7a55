//! A restored file's content: fetched pack by pack, written where it goes
//! (directly, around the page cache, for large files), and checked.
//!
//! A file's extents are taken a few MiB at a time, in file order, and the
//! blobs of such a batch are fetched grouped by the pack holding them,
//! with coalesced ranged reads (one request for a run of neighbouring
//! blobs, which is what a file's chunks usually are). Each blob is
//! decompressed straight into a per-worker buffer where the batch's runs
//! of touching extents are laid out so that every byte sits as far from a
//! 4 KiB boundary as its file offset does; a run is then written with one
//! call, its whole blocks with `O_DIRECT` in a file of at least
//! [`DIRECT_FROM`] bytes on a local disk (see `direct_io`: the copy into page-cache folios
//! was 46% of a tree restore's CPU on our guests), its partial first and
//! last blocks through the page cache. Holes are skipped and stay holes.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use cairn_store::{BlobEntry, Id, Repository};
use thiserror::Error;

use crate::direct_io::{AlignedBuf, DIRECT_ALIGN, DirectFileIo};
use crate::fetch::{MAX_GAP, MAX_READ};
use crate::tree::{Content, TreeError};

/// Why a file's content could not be written or checked.
#[derive(Debug, Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("blob {0} does not have its extent's length")]
    Length(Id),
    #[error("content differs")]
    Mismatch,
    #[error("the extents add up to more than 2^64 bytes")]
    Overflow,
}

impl From<cairn_store::Error> for WriteError {
    fn from(e: cairn_store::Error) -> Self {
        WriteError::Tree(TreeError::Store(e))
    }
}

/// Files of at least this many bytes are written with direct I/O; smaller
/// ones through the page cache, where a write returns without waiting for
/// the disk and most of a file is its partial blocks anyway.
pub(crate) const DIRECT_FROM: u64 = 256 << 10;

/// Plaintext fetched at once by one restore worker.
const FETCH_BATCH_BYTES: u64 = 8 << 20;
/// Blobs fetched at once by one restore worker.
const FETCH_BATCH_BLOBS: usize = 1024;

/// Files written through the page cache with at least this much data have
/// their writeback started when done (small files are left to the kernel:
/// a call per file costs more than it saves).
const WRITEBACK_FROM: u64 = 1 << 20;

/// Writes the extents at their offsets into `file`, created empty, using
/// `buf` (a worker's, kept between files) to assemble them; holes are
/// skipped and a trailing one made by setting the size, so they stay
/// sparse. `direct`: write with direct I/O where the file system takes
/// it. Returns the bytes written.
pub(crate) fn write_content(
    repo: &Repository,
    file: &File,
    content: &Content,
    direct: bool,
    buf: &mut AlignedBuf,
) -> Result<u64, WriteError> {
    let out = if direct {
        DirectFileIo::new(file)
    } else {
        DirectFileIo::plain(file)
    };
    let mut offset = 0u64;
    let mut written = 0u64;
    let mut batch: Vec<(u64, Id, u64)> = Vec::new();
    let mut batch_bytes = 0u64;
    // Where the batch being collected starts: writeback is started for
    // each written batch's range alone, not the whole file again.
    let mut batch_from = 0u64;
    // Where the last blob ends: the file's size once the batches are written.
    let mut data_end = 0u64;
    content.for_each_extent(repo, |e| {
        if let Some(id) = e.blob {
            batch.push((offset, id, e.len));
            data_end = offset.saturating_add(e.len);
            batch_bytes = batch_bytes.saturating_add(e.len);
            if batch_bytes >= FETCH_BATCH_BYTES || batch.len() >= FETCH_BATCH_BLOBS {
                written += write_batch(repo, &out, &std::mem::take(&mut batch), buf)?;
                batch_bytes = 0;
                let end = offset.saturating_add(e.len);
                if !out.is_direct() {
                    start_writeback(file, batch_from, end - batch_from);
                }
                batch_from = end;
            }
        }
        offset = offset.checked_add(e.len).ok_or(WriteError::Overflow)?;
        Ok::<(), WriteError>(())
    })?;
    written += write_batch(repo, &out, &batch, buf)?;
    if offset > data_end {
        file.set_len(offset)?;
    }
    if written >= WRITEBACK_FROM && !out.is_direct() {
        start_writeback(file, batch_from, offset.saturating_sub(batch_from));
    }
    Ok(written)
}

/// Starts writing `len` bytes of a file from `from` to disk now, without
/// waiting, and lets go of pages already written (`POSIX_FADV_DONTNEED`).
/// The kernel otherwise starts writeback only when dirty pages pile up, so
/// the whole restore waited in the final sync (0.42 s after a 1.45 s
/// restore of an 850 MB tree); started early, the writes overlap the
/// fetching, and a restore does not push the guest's own data out of the
/// page cache. A hint: failure changes nothing.
fn start_writeback(file: &File, from: u64, len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// One blob of a batch, located and placed.
struct Placed {
    id: Id,
    source: Source,
    /// Where it goes in the batch buffer.
    at: usize,
    len: usize,
    /// The batch position of the same blob met earlier, copied from there.
    copy_of: Option<usize>,
}

/// Where a blob of a batch comes from.
enum Source {
    /// Its pack and index entry.
    Pack(Id, BlobEntry),
    /// Loaded already: a blob of this session, not in a pack yet.
    Loaded(Vec<u8>),
}

/// A run of touching extents: written with one call.
struct Run {
    /// Where it starts in the batch buffer (as far from a block boundary
    /// as `offset`).
    at: usize,
    /// Where it starts in the file.
    offset: u64,
    len: usize,
}

/// Fetches a batch of (file offset, blob, length), in file order, into
/// `buf` pack by pack and writes it run by run; returns the bytes written.
fn write_batch(
    repo: &Repository,
    out: &DirectFileIo<'_>,
    batch: &[(u64, Id, u64)],
    buf: &mut AlignedBuf,
) -> Result<u64, WriteError> {
    let (placed, runs, room) = lay_out(repo, batch)?;
    buf.reserve(room);
    fetch_into(repo, &placed, buf.bytes_mut())?;
    let bytes = buf.bytes();
    let mut written = 0;
    for run in &runs {
        out.write_all(&bytes[run.at..run.at + run.len], run.offset)?;
        written += run.len as u64;
    }
    Ok(written)
}

/// Locates a batch's blobs, checks each extent has its blob's length
/// (before any memory is taken for it: a hostile tree may claim any), and
/// places them: runs of touching extents one after another in the buffer,
/// each starting at the block offset of its file offset. Returns the
/// placements, the runs and the buffer bytes needed.
fn lay_out(
    repo: &Repository,
    batch: &[(u64, Id, u64)],
) -> Result<(Vec<Placed>, Vec<Run>, usize), WriteError> {
    let mut placed: Vec<Placed> = Vec::with_capacity(batch.len());
    let mut runs: Vec<Run> = Vec::new();
    let mut first_of: HashMap<Id, usize> = HashMap::new();
    let mut end = 0usize;
    for (k, &(offset, id, len)) in batch.iter().enumerate() {
        let (source, real_len) = match repo.locate_blob(&id)? {
            Some((pack, entry)) => (Source::Pack(pack, entry), u64::from(entry.raw_len)),
            None => {
                let bytes = repo.load_blob(&id)?;
                let real_len = bytes.len() as u64;
                (Source::Loaded(bytes), real_len)
            }
        };
        if real_len != len {
            return Err(WriteError::Length(id));
        }
        let len = usize::try_from(len).map_err(|_| WriteError::Length(id))?;
        let at = match runs.last_mut() {
            Some(run) if run.offset + run.len as u64 == offset => {
                run.len += len;
                end
            }
            _ => {
                let at =
                    end.next_multiple_of(DIRECT_ALIGN) + (offset % DIRECT_ALIGN as u64) as usize;
                runs.push(Run { at, offset, len });
                at
            }
        };
        end = at + len;
        let copy_of = match first_of.entry(id) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(e) => {
                e.insert(k);
                None
            }
        };
        placed.push(Placed {
            id,
            source,
            at,
            len,
            copy_of,
        });
    }
    Ok((placed, runs, end))
}

/// The blobs of a batch in one pack: their batch positions, entries and
/// places in the buffer.
#[derive(Default)]
struct PackGroup<'b> {
    ks: Vec<usize>,
    entries: Vec<BlobEntry>,
    dests: Vec<&'b mut [u8]>,
}

/// Fills every placement of `buf`: blobs stored whole decompressed
/// straight into place, pack by pack; patches loaded and copied, as are
/// blobs loaded already; repeated blobs copied from their first place.
fn fetch_into(repo: &Repository, placed: &[Placed], buf: &mut [u8]) -> Result<(), WriteError> {
    let mut patched: Vec<usize> = Vec::new();
    {
        // One disjoint slice per first occurrence, grouped by pack; the
        // placements are in increasing order.
        let mut by_pack: BTreeMap<Id, PackGroup<'_>> = BTreeMap::new();
        let mut rest: &mut [u8] = buf;
        let mut base = 0;
        for (k, p) in placed.iter().enumerate() {
            if p.copy_of.is_some() {
                continue;
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(p.at - base);
            let (mine, tail) = tail.split_at_mut(p.len);
            rest = tail;
            base = p.at + p.len;
            match &p.source {
                Source::Pack(pack, entry) => {
                    let group = by_pack.entry(*pack).or_default();
                    group.ks.push(k);
                    group.entries.push(*entry);
                    group.dests.push(mine);
                }
                Source::Loaded(bytes) => mine.copy_from_slice(bytes),
            }
        }
        for (pack, mut group) in by_pack {
            let patches =
                repo.load_pack_into(&pack, &group.entries, &mut group.dests, MAX_GAP, MAX_READ)?;
            for (k, patch) in group.ks.into_iter().zip(patches) {
                if patch.is_some() {
                    patched.push(k);
                }
            }
        }
    }
    for k in patched {
        let p = &placed[k];
        let bytes = repo.load_blob(&p.id)?;
        if bytes.len() != p.len {
            return Err(WriteError::Length(p.id));
        }
        buf[p.at..p.at + p.len].copy_from_slice(&bytes);
    }
    for p in placed {
        if let Some(first) = p.copy_of {
            let from = placed[first].at;
            buf.copy_within(from..from + p.len, p.at);
        }
    }
    Ok(())
}

/// Whether `file` holds exactly `content` (hashing each extent).
///
/// Memory stays bounded whatever lengths a (hostile) tree claims: a blob
/// extent is read only when its length is the blob's real length (from
/// the index), and a hole is compared in pieces of [`ZERO_PIECE`] bytes.
pub(crate) fn content_matches(
    repo: &Repository,
    file: &File,
    content: &Content,
) -> Result<bool, WriteError> {
    let mut offset = 0u64;
    let mut buf = Vec::new();
    let matched = content.for_each_extent(repo, |e| {
        let same = match e.blob {
            Some(id) => {
                let real = repo.locate_blob(&id)?.map(|(_, entry)| entry.raw_len);
                if real.map(u64::from) != Some(e.len) {
                    return Err(WriteError::Mismatch);
                }
                let len = usize::try_from(e.len).map_err(|_| WriteError::Mismatch)?;
                buf.resize(len, 0);
                read_exact_or_mismatch(file, &mut buf, offset)?;
                repo.blob_id(&buf) == id
            }
            None => is_zero_run(file, offset, e.len, &mut buf)?,
        };
        offset = offset.checked_add(e.len).ok_or(WriteError::Mismatch)?;
        if same {
            Ok(())
        } else {
            Err(WriteError::Mismatch)
        }
    });
    match matched {
        Ok(()) => Ok(file.metadata()?.len() == offset),
        Err(WriteError::Mismatch) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Bytes of a hole compared at once.
const ZERO_PIECE: u64 = 1 << 20;

/// Whether `len` bytes of `file` from `offset` are all zero: the file's
/// holes are skipped (`SEEK_DATA`), its data read in pieces of at most
/// [`ZERO_PIECE`] bytes.
fn is_zero_run(file: &File, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<bool, WriteError> {
    let mut done = 0u64;
    while done < len {
        match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(offset + done)) {
            // Only a hole from here to the end of the file.
            Err(rustix::io::Errno::NXIO) => return Ok(true),
            Ok(data) if data > offset + done => {
                done = (data - offset).min(len);
                continue;
            }
            // At data, or the file system cannot tell: read.
            _ => {}
        }
        let n = (len - done).min(ZERO_PIECE) as usize;
        buf.resize(n, 0);
        read_exact_or_mismatch(file, buf, offset + done)?;
        if !crate::disk::is_zero(buf) {
            return Ok(false);
        }
        done += n as u64;
    }
    Ok(true)
}

/// `read_exact_at`, with a file too short being a mismatch, not an error.
fn read_exact_or_mismatch(file: &File, buf: &mut [u8], offset: u64) -> Result<(), WriteError> {
    file.read_exact_at(buf, offset)
        .map_err(|err| match err.kind() {
            io::ErrorKind::UnexpectedEof => WriteError::Mismatch,
            _ => WriteError::Io(err),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunklist::Extent;
    use cairn_store::backend::LocalBackend;
    use cairn_store::{BlobType, Credential, InitOptions, OpenOptions, SeededRandom};
    use std::sync::Arc;

    /// On disk where possible: /tmp may be tmpfs, which refuses `O_DIRECT`.
    fn disk_tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap_or_else(|_| tempfile::tempdir().unwrap())
    }

    fn repo(dir: &std::path::Path) -> Repository {
        let mut open = OpenOptions::new(None);
        open.rng = Arc::new(SeededRandom::new(b"file content"));
        let backend = Arc::new(LocalBackend::create(dir.join("repo")).unwrap());
        let init = InitOptions::for_tests();
        Repository::init(backend, &Credential::Password(b"pw"), &init, open).unwrap()
    }

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// A file's pieces: `Some(len, seed)` a blob, `None(len)` a hole.
    enum Piece {
        Blob(usize, u64),
        Hole(u64),
    }

    /// Saves the blobs of `pieces` and returns the extents and the bytes
    /// the file must hold.
    fn content(repo: &Repository, pieces: &[Piece]) -> (Content, Vec<u8>) {
        let mut extents = Vec::new();
        let mut expected = Vec::new();
        for piece in pieces {
            match *piece {
                Piece::Blob(len, seed) => {
                    let data = bytes(len, seed);
                    let id = repo.save_blob(BlobType::Data, &data).unwrap().id;
                    extents.push(Extent {
                        len: len as u64,
                        blob: Some(id),
                    });
                    expected.extend_from_slice(&data);
                }
                Piece::Hole(len) => {
                    extents.push(Extent { len, blob: None });
                    expected.resize(expected.len() + len as usize, 0);
                }
            }
        }
        (Content::Inline(extents), expected)
    }

    fn shapes() -> Vec<Vec<Piece>> {
        use Piece::{Blob, Hole};
        vec![
            vec![],
            vec![Blob(1, 1)],
            vec![Blob(4095, 2), Blob(4097, 3), Blob(70_000, 4)],
            // A leading hole, holes inside and around block boundaries, a
            // repeated blob, a trailing hole.
            vec![
                Hole(5000),
                Blob(300_000, 5),
                Hole(1),
                Blob(200_000, 6),
                Blob(300_000, 5),
                Hole(2 << 20),
                Blob(123_457, 7),
                Hole(4096),
            ],
            // Several batches: more than FETCH_BATCH_BYTES...
            (0..50).map(|i| Blob(200_003, 100 + i)).collect(),
            // ...and more than FETCH_BATCH_BLOBS, touching.
            (0..1100).map(|i| Blob(5000, 1000 + (i % 7))).collect(),
        ]
    }

    /// Every shape, written directly or not, holds exactly its bytes, is
    /// found matching, and keeps its large holes sparse.
    #[test]
    fn every_shape_is_written_byte_for_byte() {
        let dir = disk_tempdir();
        let repo = repo(dir.path());
        let made: Vec<(Content, Vec<u8>)> = shapes()
            .iter()
            .map(|pieces| content(&repo, pieces))
            .collect();
        // Before the flush every blob is still this session's (not in a
        // pack); after it, in packs.
        for flushed in [false, true] {
            if flushed {
                repo.flush().unwrap();
            }
            let mut buf = AlignedBuf::default();
            for (n, (content, expected)) in made.iter().enumerate() {
                for direct in [true, false] {
                    let path = dir.path().join(format!("f-{n}-{direct}-{flushed}"));
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .unwrap();
                    write_content(&repo, &file, content, direct, &mut buf).unwrap();
                    // Checking needs the index (blobs in packs).
                    if flushed {
                        assert!(content_matches(&repo, &file, content).unwrap());
                    }
                    drop(file);
                    let back = std::fs::read(&path).unwrap();
                    assert!(back == *expected, "{}", path.display());
                }
            }
        }
        let sparse = dir.path().join("f-3-true-true");
        let file = File::open(&sparse).unwrap();
        // The 2 MiB hole after the first 805,001 bytes stays a hole.
        let hole_from = 5000 + 300_000 + 1 + 200_000 + 300_000;
        let next_data = rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(hole_from + 8192));
        assert!(next_data.is_ok_and(|at| at >= hole_from + (2 << 20) - 4096));
    }

    /// An extent claiming more bytes than its blob has is refused before
    /// any memory is taken for the claim.
    #[test]
    fn an_extent_longer_than_its_blob_is_refused() {
        let dir = disk_tempdir();
        let repo = repo(dir.path());
        let id = repo.save_blob(BlobType::Data, &bytes(1000, 1)).unwrap().id;
        repo.flush().unwrap();
        let content = Content::Inline(vec![Extent {
            len: 1 << 50,
            blob: Some(id),
        }]);
        let file = tempfile::tempfile_in(dir.path()).unwrap();
        let e = write_content(&repo, &file, &content, true, &mut AlignedBuf::default());
        assert!(
            matches!(e, Err(WriteError::Length(bad)) if bad == id),
            "{e:?}"
        );
    }
}
