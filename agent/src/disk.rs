//! Block-level disk backups and restores.
//!
//! A disk (block device or raw image) is read in large windows with
//! positioned reads (not mapped: a failing sector must be an error naming
//! its offset, not a SIGBUS) and cut by the chunker in place, the last chunk
//! of each window carried into the next so cuts equal those of the whole
//! disk in one piece; worker threads hash each chunk with the repository's keyed
//! BLAKE3 and store only chunks the repository lacks. All-zero chunks store
//! nothing: they become zero extents and restore as holes. The ordered chunk
//! list is a [`chunklist`](crate::chunklist) so a small change to the disk
//! changes little metadata. An unchanged disk therefore costs a read, a
//! chunking and a hash per chunk, spread over every core.
//!
//! Restores are in [`crate::disk_restore`].

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use cairn_chunker::Chunker;
use cairn_store::group::DISK_GROUP_LEN;
use cairn_store::repository::SaveOutcome;
use cairn_store::{BlobType, Id, Repository};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chunklist::{Extent, ListError, ListRoot, ListWriter};
use crate::direct_io::{DIRECT_ALIGN, DirectFileIo};
use crate::disk_cut::{Cut, Cutter, Known};
use crate::disk_patch::{ParentCursor, ParentExtent, PatchCounters, save_as_patch};
use crate::disk_read::{ReadAt, Unreadable, read_tolerant};
use crate::parallel::split_by_bytes;

/// The root blob of a disk snapshot: the disks it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSet {
    /// Format version of this document (1).
    pub version: u32,
    /// The disks, in the order given.
    pub disks: Vec<DiskImage>,
}

impl DiskSet {
    /// Loads and parses the root blob of a disk snapshot.
    pub fn load(repo: &Repository, root: &Id) -> Result<DiskSet, DiskError> {
        DiskSet::decode(root, &repo.load_blob(root)?)
    }

    /// Parses the root blob `root` of a disk snapshot from its bytes.
    pub fn decode(root: &Id, bytes: &[u8]) -> Result<DiskSet, DiskError> {
        serde_json::from_slice(bytes).map_err(|e| {
            DiskError::List(ListError::Damaged {
                page: *root,
                reason: format!("the disk set does not parse: {e}"),
            })
        })
    }
}

/// One backed-up disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskImage {
    /// Short name used by `restore --disk` (the file name of the source).
    pub name: String,
    /// The source path as given.
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// The ordered extents.
    pub extents: ListRoot,
}

/// Counters of one disk backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskBackupStats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of new chunks.
    pub bytes_new: u64,
    /// Bytes stored for them (compressed, encrypted), metadata included.
    pub bytes_stored: u64,
    /// Chunks seen.
    pub chunks: u64,
    /// New chunks.
    pub chunks_new: u64,
    /// Bytes in all-zero chunks (stored as holes).
    pub bytes_zero: u64,
    /// New chunks stored as patches of the parent's chunk at the same
    /// offsets (see [`crate::disk_patch`]).
    pub chunks_patched: u64,
    /// Bytes of an image file's holes, known to be zero without reading.
    pub bytes_in_holes: u64,
    /// Bytes that could not be read (media errors), stored as zeros
    /// (see [`crate::disk_read`]).
    pub bytes_unreadable: u64,
    /// Offset of the first unreadable byte, if any.
    pub first_unreadable: Option<u64>,
}

/// Counters of one disk restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskRestoreStats {
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes left as holes (or zero-filled on a device).
    pub bytes_zero: u64,
    /// Bytes that were already correct in the target (rerun of a restore).
    pub bytes_skipped: u64,
    /// Blobs fetched from the repository.
    pub blobs_fetched: u64,
    /// Ranged reads issued to the target.
    pub packs_read: u64,
}

/// Errors of disk backup and restore.
#[derive(Debug, Error)]
pub enum DiskError {
    /// The source or target could not be opened, read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// The stored list is damaged.
    #[error(transparent)]
    List(#[from] ListError),
    /// Restored data does not match the snapshot.
    #[error(
        "verification of {path} failed at offset {offset}: the written data differs from the snapshot"
    )]
    Verify {
        /// The target.
        path: String,
        /// Where.
        offset: u64,
    },
}

pub(crate) fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> DiskError {
    DiskError::Io {
        path: path.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

/// Chunks handed to a worker at once.
const BATCH_BYTES: u64 = 1 << 20;

/// Whether every byte is zero (vectorizes: no early exit inside a block).
pub fn is_zero(data: &[u8]) -> bool {
    data.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// The name a disk gets in a snapshot: its source's file name.
pub fn disk_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "disk".to_string(), |n| n.to_string_lossy().into_owned())
}

/// Size and logical sector size of a source.
fn source_geometry(file: &mut File, path: &Path) -> Result<(u64, u32), DiskError> {
    let meta = file.metadata().map_err(|e| io_err(path, "stat", e))?;
    if meta.file_type().is_block_device() {
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err(path, "size", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_err(path, "seek", e))?;
        Ok((size, block_sector_size(file)))
    } else if meta.is_file() {
        Ok((meta.len(), 512))
    } else {
        Err(io_err(
            path,
            "open",
            "not a block device or a regular (image) file",
        ))
    }
}

fn block_sector_size(file: &File) -> u32 {
    use std::os::fd::AsRawFd;
    const BLKSSZGET: libc::c_ulong = 0x1268;
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one c_int through the pointer, which points to
    // a live local; the fd is open for the duration of the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            BLKSSZGET as _,
            &mut size as *mut libc::c_int,
        )
    };
    if rc == 0 && size > 0 {
        size as u32
    } else {
        512
    }
}

/// Backs up one disk and returns its entry for the snapshot's [`DiskSet`].
/// `parent` is this disk in the previous snapshot: new chunks are stored as
/// patches of its chunks where that is smaller.
pub fn backup_disk(
    repo: &Repository,
    chunker: &Chunker,
    path: &Path,
    parent: Option<&DiskImage>,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(DiskImage, DiskBackupStats), DiskError> {
    backup_disk_windowed(repo, chunker, path, parent, threads, progress, WINDOW)
}

/// [`backup_disk`] reading `window` bytes at a time (tests use small ones).
fn backup_disk_windowed(
    repo: &Repository,
    chunker: &Chunker,
    path: &Path,
    parent: Option<&DiskImage>,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
    window: usize,
) -> Result<(DiskImage, DiskBackupStats), DiskError> {
    backup_disk_reading(repo, chunker, path, parent, threads, progress, window, None)
}

/// [`backup_disk_windowed`] reading through `reader` when given instead of
/// the opened file (tests put a failing reader there).
#[allow(clippy::too_many_arguments, reason = "test seams of one function")]
fn backup_disk_reading(
    repo: &Repository,
    chunker: &Chunker,
    path: &Path,
    parent: Option<&DiskImage>,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
    window: usize,
    reader: Option<&dyn ReadAt>,
) -> Result<(DiskImage, DiskBackupStats), DiskError> {
    let mut file = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let (size, sector_size) = source_geometry(&mut file, path)?;
    let name = disk_name(path);
    let mut stats = DiskBackupStats::default();
    let mut writer = ListWriter::new(repo);
    if size > 0 {
        advise_sequential(&file);
        let direct = DirectFileIo::reading(&file);
        let source = Source {
            file: &file,
            reader: reader.unwrap_or(&direct),
            unreadable: Mutex::new(Unreadable::default()),
            path,
            size,
            window,
            sparse: file.metadata().is_ok_and(|m| m.is_file()),
            hole_bytes: AtomicU64::new(0),
        };
        let parent_extents = parent.map(|p| p.extents);
        run_pipeline(
            repo,
            chunker,
            &source,
            parent_extents.as_ref(),
            threads.max(1),
            &mut writer,
            &mut stats,
            progress,
        )?;
        let bad = *lock(&source.unreadable);
        stats.bytes_unreadable = bad.bytes;
        stats.first_unreadable = bad.first;
    }
    stats.bytes_stored += writer.stored_new;
    let extents = writer.finish()?;
    Ok((
        DiskImage {
            name,
            source: path.display().to_string(),
            size,
            sector_size,
            extents,
        },
        stats,
    ))
}

/// The disk being read: positioned reads, never a mapping, so that a read
/// error of a failing block device is an error naming the offset, not a
/// SIGBUS that kills the process.
struct Source<'a> {
    file: &'a File,
    /// Where the bytes are read from: the file, or a test's wrapper.
    reader: &'a dyn ReadAt,
    /// What could not be read (stored as zeros).
    unreadable: Mutex<Unreadable>,
    path: &'a Path,
    size: u64,
    /// Bytes per read window (at least four maximum chunks).
    window: usize,
    /// An image file, whose holes are found with `SEEK_HOLE` and not read.
    sparse: bool,
    /// Bytes of holes not read.
    hole_bytes: AtomicU64,
}

impl Source<'_> {
    /// Fills `buf` from `offset`; short only at the end of the source. The
    /// holes of an image file are zero-filled here instead of being read
    /// through the kernel's page cache.
    /// The disk ranges zero-filled for holes are added to `holes`.
    fn read_window(
        &self,
        buf: &mut [u8],
        offset: u64,
        holes: &mut Vec<(u64, u64)>,
    ) -> Result<usize, DiskError> {
        if !self.sparse {
            return self.read_at(buf, offset);
        }
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let Some((data, hole)) = self.next_data(pos, end) else {
                // The rest is a hole (or SEEK_DATA is not supported: then
                // `next_data` says "all data" and this is not reached).
                self.hole_bytes.fetch_add(end - pos, Ordering::Relaxed);
                buf[(pos - offset) as usize..].fill(0);
                holes.push((pos, end));
                break;
            };
            self.hole_bytes.fetch_add(data - pos, Ordering::Relaxed);
            let (from, to) = ((data - offset) as usize, (hole - offset) as usize);
            buf[(pos - offset) as usize..from].fill(0);
            if data > pos {
                holes.push((pos, data));
            }
            let got = self.read_at(&mut buf[from..to], data)?;
            if got < to - from {
                return Ok(from + got);
            }
            pos = hole;
        }
        Ok(buf.len())
    }

    /// The next run of data in `[pos, end)`: `(start, end)` of it, clipped
    /// to `end`; `None` when only a hole remains. Where the file system
    /// cannot say, everything is data.
    fn next_data(&self, pos: u64, end: u64) -> Option<(u64, u64)> {
        use rustix::fs::{SeekFrom as Seek, seek};
        let data = match seek(self.file, Seek::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => return None,
            Err(_) => return Some((pos, end)),
        };
        if data >= end {
            return None;
        }
        let hole = seek(self.file, Seek::Hole(data)).map_or(end, |h| h.min(end));
        Some((data, hole.max(data + 1).min(end)))
    }

    /// Fills `buf` from `offset`, short only at the end of the source;
    /// bad sectors are read past (see [`crate::disk_read`]).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError> {
        read_tolerant(self.reader, buf, offset, &self.unreadable)
            .map_err(|(at, e)| io_err(self.path, &format!("read at offset {at}"), e))
    }
}

/// Tells the kernel the source is read once, front to back.
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open
    // for the duration of the call. A failure only loses read-ahead.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Bytes read from the source per window (more when the maximum chunk size
/// asks for it).
const WINDOW: usize = 2 << 20;

/// Chunks of one window handed to a worker: the window's bytes, the disk
/// offset of its first byte, the chunks as (offset in window, length), and
/// the parent's stored extents over the same range of the disk.
struct Batch {
    seq: u64,
    window: Arc<Vec<u8>>,
    /// Disk offset of `window[window_start]`.
    window_pos: u64,
    window_start: usize,
    chunks: Vec<Cut>,
    parents: Vec<ParentExtent>,
}

/// What a worker produced for one batch.
struct BatchResult {
    seq: u64,
    extents: Vec<Extent>,
    stats: DiskBackupStats,
}

#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    repo: &Repository,
    chunker: &Chunker,
    source: &Source<'_>,
    parent: Option<&ListRoot>,
    threads: usize,
    writer: &mut ListWriter<'_>,
    stats: &mut DiskBackupStats,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), DiskError> {
    let (work_tx, work_rx) = sync_channel::<Batch>(threads);
    let (done_tx, done_rx) = sync_channel::<Result<BatchResult, DiskError>>(threads * 4);
    let work_rx = Mutex::new(work_rx);
    // Set on the first failure: the reader stops, workers drain the queue
    // without working, so no thread stays blocked on a full channel.
    let abort = AtomicBool::new(false);
    let counters = PatchCounters::default();
    let result = std::thread::scope(|s| -> Result<(), DiskError> {
        let reader_done = done_tx.clone();
        let abort_ref = &abort;
        s.spawn(move || {
            if let Err(e) =
                read_and_cut(repo, chunker, source, parent, threads, &work_tx, abort_ref)
            {
                abort_ref.store(true, Ordering::Relaxed);
                let _ = reader_done.send(Err(e));
            }
        });
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (work_rx, abort, counters) = (&work_rx, &abort, &counters);
            s.spawn(move || {
                loop {
                    let next = work_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(batch)) = next else { return };
                    if abort.load(Ordering::Relaxed) {
                        continue;
                    }
                    let result = process_batch(repo, &batch, counters);
                    if result.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    if done_tx.send(result).is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        drop(done_tx);
        let result = collect_in_order(done_rx, writer, stats, progress);
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        result
    });
    stats.chunks_patched += counters.patched();
    stats.bytes_in_holes += source.hole_bytes.load(Ordering::Relaxed);
    result
}

/// One read of the source, with `head` bytes of room before the data for
/// the chunk carried over from the previous window.
struct Segment {
    buf: Vec<u8>,
    /// Where the read bytes start in `buf`: at least the `head` asked for,
    /// moved up so that they are aligned for a direct read.
    head: usize,
    /// Disk offset of `buf[head]`.
    pos: u64,
    /// Bytes read into `buf[head..]`.
    got: usize,
    /// Whether this read reached the end of the source.
    last: bool,
    /// Disk ranges of the image's holes in this read (zero-filled).
    holes: Vec<(u64, u64)>,
}

/// Reads the source front to back into recycled buffers, one window ahead
/// of the cutter, so that the disk is read while the previous window is
/// cut and hashed (a read and the chunking used to take turns).
fn read_ahead(
    source: &Source<'_>,
    head: usize,
    window_len: usize,
    free: &Mutex<Vec<Vec<u8>>>,
    out: &SyncSender<Result<Segment, DiskError>>,
    abort: &AtomicBool,
) {
    let mut pos = 0u64;
    while pos < source.size && !abort.load(Ordering::Relaxed) {
        // A reused buffer's bytes are overwritten, not zeroed first: zeroing
        // 16 MiB per window was 12% of an unchanged backup's time.
        let mut buf = lock(free).pop().unwrap_or_default();
        let want = (window_len as u64).min(source.size - pos) as usize;
        // Allocated once with room to align the data (which then never
        // moves: resizing stays within the capacity).
        let room = head + window_len + DIRECT_ALIGN;
        if buf.capacity() < room {
            buf = Vec::with_capacity(room);
        }
        let misalign = (buf.as_ptr() as usize + head) % DIRECT_ALIGN;
        let head = head + (DIRECT_ALIGN - misalign) % DIRECT_ALIGN;
        if buf.len() < head + want {
            buf.resize(head + want, 0);
        }
        buf.truncate(head + want);
        let mut holes = Vec::new();
        let segment = source
            .read_window(&mut buf[head..], pos, &mut holes)
            .map(|got| Segment {
                last: got < want || pos + got as u64 >= source.size,
                buf,
                head,
                pos,
                got,
                holes,
            });
        let stop = match &segment {
            Ok(s) => {
                pos += s.got as u64;
                s.last
            }
            Err(_) => true,
        };
        if out.send(segment).is_err() || stop {
            return;
        }
    }
}

/// Reads the source window by window (on a read-ahead thread), cuts each
/// into chunks and hands them out in batches. A window's last chunk is
/// carried into the next window (it may have been cut short by the
/// window's end), so the cuts are exactly those of the whole source in one
/// piece.
fn read_and_cut(
    repo: &Repository,
    chunker: &Chunker,
    source: &Source<'_>,
    parent: Option<&ListRoot>,
    threads: usize,
    work: &SyncSender<Batch>,
    abort: &AtomicBool,
) -> Result<(), DiskError> {
    let window_len = source.window.max(4 * chunker.params().max_size);
    let head = chunker.params().max_size;
    // Patches look at the parent's chunks overlapping each batch; the cutter
    // re-uses the parent's cuts where the disk is unchanged.
    let mut overlaps = parent.map(|p| ParentCursor::new(repo, p)).transpose()?;
    let mut cutter = parent
        .map(|p| Cutter::new(repo, chunker, p, threads))
        .transpose()?;
    let free: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let (seg_tx, seg_rx) = sync_channel::<Result<Segment, DiskError>>(1);
    std::thread::scope(|s| {
        let free_ref = &free;
        s.spawn(move || read_ahead(source, head, window_len, free_ref, &seg_tx, abort));
        let mut carry: Vec<u8> = Vec::new();
        let mut holes: Vec<(u64, u64)> = Vec::new();
        let mut seq = 0u64;
        let mut sent: VecDeque<Arc<Vec<u8>>> = VecDeque::new();
        for segment in seg_rx {
            if abort.load(Ordering::Relaxed) {
                break;
            }
            let Segment {
                mut buf,
                head,
                pos,
                got,
                last,
                holes: read_holes,
            } = segment?;
            let start = head - carry.len();
            buf[start..head].copy_from_slice(&carry);
            buf.truncate(head + got);
            // Disk offset of buf[start].
            let base = pos - carry.len() as u64;
            // The holes still in reach: the carried bytes may lie in one.
            holes.retain(|h| h.1 > base);
            for h in read_holes {
                match holes.last_mut() {
                    Some(prev) if prev.1 == h.0 => prev.1 = h.1,
                    _ => holes.push(h),
                }
            }
            let (chunks, consumed) = match cutter.as_mut() {
                Some(cutter) => {
                    let (cuts, used) = cutter.cut(&buf[start..], base, last, &holes)?;
                    let chunks: Vec<Cut> = cuts
                        .into_iter()
                        .map(|(o, l, k)| (start + o, l, k))
                        .collect();
                    (chunks, start + used)
                }
                None => {
                    let mut chunks: Vec<Cut> = chunker
                        .chunks_parallel(&buf[start..], threads)
                        .map(|c| (start + c.offset as usize, c.data.len(), Known::Unknown))
                        .collect();
                    let consumed = if last {
                        buf.len()
                    } else {
                        // Keep the last chunk for the next window.
                        chunks.pop().map_or(start, |(offset, _, _)| offset)
                    };
                    (chunks, consumed)
                }
            };
            carry = buf[consumed..].to_vec();
            let window = Arc::new(buf);
            sent.push_back(window.clone());
            for group in batches(&chunks) {
                let parents = match (&mut overlaps, group.first(), group.last()) {
                    (Some(cursor), Some(first), Some(last)) => cursor.overlapping(
                        base + (first.0 - start) as u64,
                        base + (last.0 + last.1 - start) as u64,
                    )?,
                    _ => Vec::new(),
                };
                let batch = Batch {
                    seq,
                    window: window.clone(),
                    window_pos: base,
                    window_start: start,
                    chunks: group.to_vec(),
                    parents,
                };
                if work.send(batch).is_err() {
                    return Ok(());
                }
                seq += 1;
            }
            recycle_windows(&mut sent, &free);
            if last {
                break;
            }
        }
        Ok(())
    })
}

/// Windows kept for reuse; more are freed.
const MAX_WINDOWS_KEPT: usize = 3;

/// Hands the windows the workers are done with back to the read-ahead
/// thread: a fresh 16 MiB buffer per window costs a page fault per 4 KiB
/// and a zero fill, which once made disk backups spend more time in the
/// kernel than in cairn (see BENCHMARKS.md, cairn against restic and borg).
fn recycle_windows(sent: &mut VecDeque<Arc<Vec<u8>>>, free: &Mutex<Vec<Vec<u8>>>) {
    let mut i = 0;
    while i < sent.len() {
        if Arc::strong_count(&sent[i]) == 1 {
            if let Some(buf) = sent.remove(i).and_then(|w| Arc::try_unwrap(w).ok()) {
                let mut free = lock(free);
                if free.len() < MAX_WINDOWS_KEPT {
                    free.push(buf);
                }
            }
        } else {
            i += 1;
        }
    }
    // Windows still in use are not waited for; bound what is remembered.
    while sent.len() > 2 * MAX_WINDOWS_KEPT {
        sent.pop_front();
    }
}

/// Splits a window's chunks into groups of about `BATCH_BYTES`.
fn batches(chunks: &[Cut]) -> Vec<&[Cut]> {
    split_by_bytes(chunks, BATCH_BYTES, |&(_, len, _)| len as u64)
}

fn process_batch(
    repo: &Repository,
    batch: &Batch,
    counters: &PatchCounters,
) -> Result<BatchResult, DiskError> {
    let mut stats = DiskBackupStats::default();
    let mut extents = Vec::with_capacity(batch.chunks.len());
    // New chunks not stored as patches: saved together, in solid groups
    // of neighbours (they compress better together than alone).
    let mut whole: Vec<(Id, &[u8])> = Vec::new();
    let mut whole_bytes = 0;
    for &(offset, len, known) in &batch.chunks {
        let bytes = &batch.window[offset..offset + len];
        stats.chunks += 1;
        stats.bytes_read += len as u64;
        let zero = match known {
            Known::Zero => true,
            Known::Blob(_) => false,
            Known::Unknown => is_zero(bytes),
        };
        if zero {
            stats.bytes_zero += len as u64;
            extents.push(Extent {
                len: len as u64,
                blob: None,
            });
            continue;
        }
        let id = match known {
            Known::Blob(id) => id,
            _ => repo.blob_id(bytes),
        };
        if !repo.has_blob(&id) {
            let pos = batch.window_pos + (offset - batch.window_start) as u64;
            match save_as_patch(repo, id, bytes, pos, &batch.parents, counters)? {
                Some(saved) => stats.add_saved(&saved, len),
                None => {
                    whole.push((id, bytes));
                    whole_bytes += len;
                    if whole_bytes >= DISK_GROUP_LEN {
                        save_whole(repo, &mut whole, &mut stats)?;
                        whole_bytes = 0;
                    }
                }
            }
        }
        extents.push(Extent {
            len: len as u64,
            blob: Some(id),
        });
    }
    save_whole(repo, &mut whole, &mut stats)?;
    Ok(BatchResult {
        seq: batch.seq,
        extents,
        stats,
    })
}

/// Saves the queued new chunks of a batch, grouped, and counts them.
fn save_whole(
    repo: &Repository,
    whole: &mut Vec<(Id, &[u8])>,
    stats: &mut DiskBackupStats,
) -> Result<(), DiskError> {
    if whole.is_empty() {
        return Ok(());
    }
    let saved = repo.save_group(BlobType::Data, whole, DISK_GROUP_LEN)?;
    for (s, (_, data)) in saved.iter().zip(whole.iter()) {
        stats.add_saved(s, data.len());
    }
    whole.clear();
    Ok(())
}

/// Appends batches to the list in source order, merging adjacent zero runs.
fn collect_in_order(
    done: Receiver<Result<BatchResult, DiskError>>,
    writer: &mut ListWriter<'_>,
    stats: &mut DiskBackupStats,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), DiskError> {
    let mut waiting: BTreeMap<u64, BatchResult> = BTreeMap::new();
    let mut next = 0u64;
    let mut zero_run = 0u64;
    for result in done {
        let r = result?;
        waiting.insert(r.seq, r);
        while let Some(r) = waiting.remove(&next) {
            next += 1;
            stats.add(&r.stats);
            progress(stats.bytes_read);
            for e in r.extents {
                match e.blob {
                    None => zero_run += e.len,
                    Some(_) => {
                        if zero_run > 0 {
                            writer.push(Extent {
                                len: std::mem::take(&mut zero_run),
                                blob: None,
                            })?;
                        }
                        writer.push(e)?;
                    }
                }
            }
        }
    }
    if zero_run > 0 {
        writer.push(Extent {
            len: zero_run,
            blob: None,
        })?;
    }
    Ok(())
}

impl DiskBackupStats {
    /// Counts a chunk of `len` bytes the repository was asked to store.
    fn add_saved(&mut self, saved: &SaveOutcome, len: usize) {
        if saved.new {
            self.chunks_new += 1;
            self.bytes_new += len as u64;
            self.bytes_stored += saved.stored_len;
        }
    }

    /// Adds another batch's or disk's counters to these.
    pub fn add(&mut self, b: &DiskBackupStats) {
        self.bytes_read += b.bytes_read;
        self.bytes_new += b.bytes_new;
        self.bytes_stored += b.bytes_stored;
        self.chunks += b.chunks;
        self.chunks_new += b.chunks_new;
        self.bytes_zero += b.bytes_zero;
        self.chunks_patched += b.chunks_patched;
        self.bytes_in_holes += b.bytes_in_holes;
        self.bytes_unreadable += b.bytes_unreadable;
        self.first_unreadable = self.first_unreadable.or(b.first_unreadable);
    }
}

/// Options of a disk restore.
#[derive(Debug, Clone, Copy)]
pub struct DiskRestoreOptions {
    /// Worker threads fetching packs.
    pub threads: usize,
    /// Re-read everything written and check it against the snapshot.
    pub verify: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use crate::disk_restore::restore_disk;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunklist::ListReader;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_read_error_in_the_middle_is_stored_as_zeros_and_the_rest_restores() {
        use crate::disk_read::tests::{Failing, byte};
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let len = 3u64 << 20;
        // The file gives the size; the bytes come from the failing reader,
        // which answers EIO for 5000 bytes in the middle of the disk.
        std::fs::write(&path, vec![1u8; len as usize]).unwrap();
        let bad = 1_500_000..1_505_000;
        let failing = Failing {
            len,
            bad: bad.clone(),
            other: None,
        };
        let (image, stats) = backup_disk_reading(
            &repo,
            &chunker,
            &path,
            None,
            2,
            &|_| {},
            1 << 20,
            Some(&failing),
        )
        .unwrap();
        // Zeros from the first failing byte to the end of the 4 KiB block
        // after the last one.
        let zeroed = 1_500_000..1_507_328;
        assert_eq!(stats.first_unreadable, Some(zeroed.start));
        assert_eq!(stats.bytes_unreadable, zeroed.end - zeroed.start);
        assert_eq!(image.size, len);
        repo.flush().unwrap();
        let restored = restored(&repo, &image, dir.path());
        assert_eq!(restored.len() as u64, len);
        for (i, &b) in restored.iter().enumerate() {
            let i = i as u64;
            let want = if zeroed.contains(&i) { 0 } else { byte(i) };
            assert_eq!(b, want, "byte {i}");
        }
        // Any other error still aborts, naming the offset.
        let gone = Failing {
            len,
            bad,
            other: Some(libc::ENODEV),
        };
        let err = backup_disk_reading(
            &repo,
            &chunker,
            &path,
            None,
            2,
            &|_| {},
            1 << 20,
            Some(&gone),
        )
        .unwrap_err();
        assert!(err.to_string().contains("offset 1500000"), "{err}");
    }

    #[test]
    fn windowed_reading_cuts_like_the_whole_disk_at_once() {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut data = cairn_chunker::testdata::pseudo_random(5, 3 << 20);
        data[1 << 20..(1 << 20) + 300_000].fill(0);
        std::fs::write(&path, &data).unwrap();
        let want: Vec<u64> = chunker.chunks(&data).map(|c| c.data.len() as u64).collect();
        for (window, threads) in [(256 << 10, 1), (300_001, 2), (64 << 20, 2)] {
            let (image, stats) =
                backup_disk_windowed(&repo, &chunker, &path, None, threads, &|_| {}, window)
                    .unwrap();
            assert_eq!(stats.bytes_read, data.len() as u64);
            assert_eq!(stats.chunks, want.len() as u64, "window {window}");
            let mut reader = ListReader::new(&repo, &image.extents).unwrap();
            let mut offset = 0usize;
            while let Some(e) = reader.next_extent().unwrap() {
                let bytes = &data[offset..offset + e.len as usize];
                match e.blob {
                    Some(id) => assert_eq!(repo.load_blob(&id).unwrap(), bytes),
                    None => assert!(is_zero(bytes)),
                }
                offset += e.len as usize;
            }
            assert_eq!(offset, data.len());
        }
    }

    #[test]
    fn scattered_block_writes_are_stored_as_patches_and_restore_exactly() {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut data = cairn_chunker::testdata::pseudo_random(11, 8 << 20);
        std::fs::write(&path, &data).unwrap();
        let (first, _) =
            backup_disk_windowed(&repo, &chunker, &path, None, 2, &|_| {}, 1 << 20).unwrap();
        // 40 scattered 4 KiB block writes, as a database or swap makes.
        let blocks = data.len() / 4096;
        for i in 0..40 {
            let block = (i * 7919 + 13) % blocks;
            let fresh = cairn_chunker::testdata::pseudo_random(100 + i as u64, 4096);
            data[block * 4096..(block + 1) * 4096].copy_from_slice(&fresh);
        }
        std::fs::write(&path, &data).unwrap();
        let (second, stats) =
            backup_disk_windowed(&repo, &chunker, &path, Some(&first), 2, &|_| {}, 1 << 20)
                .unwrap();
        assert!(stats.chunks_patched >= 35, "{stats:?}");
        // Whole chunks would store ~16-30 KiB per write; patches about one
        // block plus the changed list pages (measured: 1.30x the blocks).
        assert!(
            stats.bytes_stored < 40 * 4096 * 3 / 2,
            "stored {} for 40 block writes: {stats:?}",
            stats.bytes_stored
        );
        // A third backup patches against the first backup's chunks (no
        // chains) and restores exactly.
        data[4096..8192].fill(7);
        std::fs::write(&path, &data).unwrap();
        let (third, _) =
            backup_disk_windowed(&repo, &chunker, &path, Some(&second), 2, &|_| {}, 1 << 20)
                .unwrap();
        repo.flush().unwrap();
        assert!(restored(&repo, &third, dir.path()) == data);
        assert!(
            restored(&repo, &first, dir.path())
                == cairn_chunker::testdata::pseudo_random(11, 8 << 20)
        );
    }

    #[test]
    fn holes_of_a_sparse_image_are_not_read_and_cut_like_zeros() {
        use std::os::unix::fs::MetadataExt;
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sparse, dense) = (dir.path().join("sparse"), dir.path().join("dense"));
        let len = 12usize << 20;
        let runs: Vec<(usize, Vec<u8>)> = [(1 << 20, 300_000), (5 << 20, 4096), (9 << 20, 2 << 20)]
            .into_iter()
            .map(|(at, n)| (at, cairn_chunker::testdata::pseudo_random(at as u64, n)))
            .collect();
        let runs: Vec<(usize, &[u8])> = runs.iter().map(|(at, b)| (*at, b.as_slice())).collect();
        let data = sparse_image(&sparse, len, &runs);
        std::fs::write(&dense, &data).unwrap();
        let (a, sa) =
            backup_disk_windowed(&repo, &chunker, &sparse, None, 2, &|_| {}, 1 << 20).unwrap();
        let (b, sb) =
            backup_disk_windowed(&repo, &chunker, &dense, None, 2, &|_| {}, 1 << 20).unwrap();
        assert_eq!(a.extents, b.extents, "holes must cut like written zeros");
        assert_eq!(sb.bytes_in_holes, 0);
        if std::fs::metadata(&sparse).unwrap().blocks() * 512 < len as u64 / 2 {
            assert!(sa.bytes_in_holes >= 6 << 20, "{sa:?}");
        }
        repo.flush().unwrap();
        assert!(restored(&repo, &a, dir.path()) == data);
    }

    /// Restores `image` into `dir/restored` with `--verify` and returns
    /// its bytes.
    fn restored(repo: &Repository, image: &DiskImage, dir: &Path) -> Vec<u8> {
        let out = dir.join("restored");
        let opts = DiskRestoreOptions {
            threads: 2,
            verify: true,
        };
        restore_disk(repo, image, &out, &opts, &|_| {}).unwrap();
        std::fs::read(&out).unwrap()
    }

    /// Writes a sparse image of `len` bytes holding `runs` (offset, bytes)
    /// and nothing else; returns the image's bytes.
    fn sparse_image(path: &Path, len: usize, runs: &[(usize, &[u8])]) -> Vec<u8> {
        let mut data = vec![0u8; len];
        let file = File::create(path).unwrap();
        file.set_len(len as u64).unwrap();
        for &(at, bytes) in runs {
            file.write_all_at(bytes, at as u64).unwrap();
            data[at..at + bytes.len()].copy_from_slice(bytes);
        }
        data
    }

    #[test]
    fn incrementals_over_holes_cut_like_a_full_backup() {
        // The cutter takes the parent's zero runs over holes as verified
        // without scanning them. Where data was written into a parent's
        // hole, or a hole replaced data, the cuts must still be those of a
        // backup without a parent.
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let len = 12usize << 20;
        const MIB: usize = 1 << 20;
        let old = cairn_chunker::testdata::pseudo_random(1, 3 * MIB);
        let new = cairn_chunker::testdata::pseudo_random(2, 64 << 10);
        let before = dir.path().join("before");
        sparse_image(&before, len, &[(MIB, &old), (7 * MIB, &old[..4096])]);
        let after = dir.path().join("after");
        let data = sparse_image(
            &after,
            len,
            &[
                (MIB, &old[..MIB]),
                // [2, 3) MiB is now a hole; [3, 4) MiB is unchanged.
                (3 * MIB, &old[2 * MIB..]),
                // Data in the parent's hole at [4, 7) MiB.
                (5 * MIB, &new),
                (7 * MIB, &old[..4096]),
            ],
        );
        let backup = |path: &Path, parent: Option<&DiskImage>| {
            backup_disk_windowed(&repo, &chunker, path, parent, 2, &|_| {}, 1 << 20).unwrap()
        };
        let (parent, _) = backup(&before, None);
        let (same, _) = backup(&before, Some(&parent));
        assert_eq!(same.extents, parent.extents);
        let (full, _) = backup(&after, None);
        let (incremental, _) = backup(&after, Some(&parent));
        assert_eq!(incremental.extents, full.extents);
        repo.flush().unwrap();
        assert!(restored(&repo, &incremental, dir.path()) == data);
    }

    /// A disk of random data with runs of zeros, deterministic from `seed`.
    fn disk_with_zero_runs(seed: u64, len: usize) -> Vec<u8> {
        let mut data = cairn_chunker::testdata::pseudo_random(seed, len);
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % len;
            let run = (x >> 32) as usize % (700 << 10);
            data[at..(at + run).min(len)].fill(0);
        }
        data
    }

    #[test]
    fn cuts_re_used_from_the_parent_equal_chunking_the_whole_disk() {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let len = 6 << 20;
        type Edit = fn(&mut Vec<u8>);
        let edits: [(&str, Edit); 8] = [
            ("unchanged", |_| {}),
            ("scattered blocks", |d| {
                for i in 0..30 {
                    let at = (i * 7919 * 4096 + 12_345) % (d.len() - 4096);
                    d[at..at + 4096]
                        .copy_from_slice(&cairn_chunker::testdata::pseudo_random(i as u64, 4096));
                }
            }),
            ("zeros written over data", |d| {
                d[1_000_000..1_900_000].fill(0)
            }),
            ("data written over zeros", |d| {
                for b in d.iter_mut().step_by(5000) {
                    *b = b.wrapping_add(1);
                }
            }),
            ("one byte in a zero run", |d| {
                let z = d.iter().position(|&b| b == 0).unwrap_or(0);
                let at = z + 100_000.min(d.len() - z - 1);
                d[at] = 1;
            }),
            ("grown", |d| {
                d.extend_from_slice(&cairn_chunker::testdata::pseudo_random(77, 1_234_567))
            }),
            ("shrunk", |d| d.truncate(d.len() - 777_777)),
            ("all new", |d| {
                *d = cairn_chunker::testdata::pseudo_random(99, d.len())
            }),
        ];
        for seed in 1..4u64 {
            for (name, edit) in edits {
                let before = disk_with_zero_runs(seed, len);
                std::fs::write(&path, &before).unwrap();
                let (parent, _) =
                    backup_disk_windowed(&repo, &chunker, &path, None, 2, &|_| {}, 256 << 10)
                        .unwrap();
                let mut after = before.clone();
                edit(&mut after);
                std::fs::write(&path, &after).unwrap();
                for window in [256 << 10, 300_001, 8 << 20] {
                    let (fresh, _) =
                        backup_disk_windowed(&repo, &chunker, &path, None, 2, &|_| {}, window)
                            .unwrap();
                    let (reused, _) = backup_disk_windowed(
                        &repo,
                        &chunker,
                        &path,
                        Some(&parent),
                        2,
                        &|_| {},
                        window,
                    )
                    .unwrap();
                    assert_eq!(
                        fresh.extents, reused.extents,
                        "seed {seed}, {name}, window {window}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 10000]));
        let mut v = vec![0u8; 10000];
        v[9999] = 1;
        assert!(!is_zero(&v));
    }
}
