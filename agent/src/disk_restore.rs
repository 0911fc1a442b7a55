//! Restoring a disk: assembled in windows, written with `O_DIRECT`.
//!
//! A restore that writes each blob where it goes with its own `pwrite`
//! copies every byte into the page cache (perf of a disk restore: 30% of
//! its CPU in the kernel's copy into page-cache folios) and leaves the
//! writeback to the final fsync. Here the disk is restored front to back
//! in windows of about [`WINDOW`] bytes. A window's blobs are fetched pack
//! by pack on worker threads (coalesced ranged reads, every blob verified
//! against its id) and copied to their place in an aligned buffer; a writer
//! thread then writes the window with direct writes while the next window
//! is fetched, so the device works while the CPUs decompress.
//!
//! What is written depends on the target:
//! - a new image file: only 4 KiB blocks that are not all zero, so holes
//!   are kept at block granularity (zeros inside stored chunks too), and
//!   long zero extents are not assembled at all;
//! - a block device: every block (its old contents are not zeros);
//! - an image of the right size already there (the rerun of an interrupted
//!   restore): each window is read first, blobs already in place are not
//!   fetched, and only the blocks that changed are written.
//!
//! Windows start on a 4 KiB boundary; the partial block at a window's end
//! is carried into the next window, so every write but the disk's last
//! block is aligned. Images on file systems other than a local disk's
//! (NFS, SMB, tmpfs), and any that refuse `O_DIRECT` after all, get the
//! same writes through the page cache; block devices are always written
//! directly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use cairn_store::backend::local::on_local_disk;
use cairn_store::pack::OpenedBlob;
use cairn_store::{BlobEntry, Compression, Id, Repository};

use crate::chunklist::{Extent, ListError, ListReader};
use crate::direct_io::{AlignedBuf, DIRECT_ALIGN, DirectFileIo};
use crate::disk::{
    DiskError, DiskImage, DiskRestoreOptions, DiskRestoreStats, io_err, is_zero, lock,
};
use crate::fetch::{MAX_GAP, MAX_READ, locate};
use crate::parallel::on_threads;

/// Disk bytes assembled per window. Two windows are in memory (one being
/// fetched, one being written); a window's blobs are fetched together, so
/// a larger window coalesces the reads of a fragmented snapshot better.
/// 16 MiB windows were 5% faster on the churned peers image and peaked
/// 20 MiB higher (83 against 63 MiB), above restic's restore (74 MiB).
pub const WINDOW: usize = 8 << 20;
/// Plaintext bytes of one pack fetched by one worker at a time: a window
/// of a first full often lies in one pack, and this splits it over the
/// workers.
const GROUP_BYTES: u64 = 2 << 20;
/// Zero extents at least this long end a window of a new image file and
/// are skipped (left as holes) instead of assembled.
const SKIP_ZEROS: u64 = 1 << 20;

/// How a window is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A new sparse image: blocks that are not all zero.
    Sparse,
    /// A block device: every block.
    Whole,
    /// A rerun onto an image of the right size: blocks that changed.
    Resume,
}

/// Restores one disk to an image file (created sparse) or a block device.
pub fn restore_disk(
    repo: &Repository,
    image: &DiskImage,
    target: &Path,
    opts: &DiskRestoreOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DiskRestoreStats, DiskError> {
    let existing = std::fs::metadata(target).ok();
    let is_device = existing
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!is_device)
        .truncate(false)
        .open(target)
        .map_err(|e| io_err(target, "open for writing", e))?;
    // A rerun of an interrupted restore checks what is there before writing.
    let resume = existing
        .as_ref()
        .is_some_and(|m| m.is_file() && m.len() == image.size);
    let mode = if is_device {
        let mut f = &file;
        let dev_size = f
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err(target, "size", e))?;
        if dev_size < image.size {
            return Err(io_err(
                target,
                "restore",
                format!("device has {dev_size} bytes, the disk needs {}", image.size),
            ));
        }
        Mode::Whole
    } else if resume {
        Mode::Resume
    } else {
        file.set_len(0).map_err(|e| io_err(target, "truncate", e))?;
        file.set_len(image.size)
            .map_err(|e| io_err(target, "set size", e))?;
        Mode::Sparse
    };
    let stats = restore_into(repo, image, &file, target, mode, opts, progress)?;
    file.sync_all().map_err(|e| io_err(target, "fsync", e))?;
    if opts.verify {
        verify_disk(repo, image, &file, target)?;
    }
    Ok(stats)
}

/// Restores `image` into the open `file` (sized already), written as
/// `mode` says. Three stages overlap: this thread plans windows (walks the
/// list, locates blobs in the index), a filler fetches a window's blobs on
/// `opts.threads` workers, a writer writes the window before it.
fn restore_into(
    repo: &Repository,
    image: &DiskImage,
    file: &File,
    target: &Path,
    mode: Mode,
    opts: &DiskRestoreOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DiskRestoreStats, DiskError> {
    let out = Target::new(file, target, mode == Mode::Whole || on_local_disk(target));
    let mut reader = ListReader::new(repo, &image.extents)?;
    let threads = opts.threads.max(1);
    let (planned, covered) = std::thread::scope(|s| {
        let (plans, to_fill) = sync_channel::<Window>(1);
        let (jobs, to_write) = sync_channel::<WriteJob>(1);
        let (give_back, free) = sync_channel::<AlignedBuf>(2);
        for _ in 0..2 {
            // Cannot fail: the channel has room for both.
            let _ = give_back.send(AlignedBuf::default());
        }
        let writer = s.spawn(|| write_windows(&out, to_write, give_back));
        let filler = s.spawn(|| {
            let filler = Filler {
                repo,
                out: &out,
                mode,
                threads,
            };
            filler.run(to_fill, free, jobs, progress)
        });
        let mut windows = Windows::new(repo, &mut reader, image.extents.page, mode, image.size);
        let planned = (|| {
            while let Some(window) = windows.next()? {
                // The filler stopped (an error it reports) if this fails.
                if plans.send(window).is_err() {
                    break;
                }
            }
            Ok::<(), DiskError>(())
        })();
        drop(plans);
        let panicked = || io_err(target, "restore", "a worker thread panicked");
        let filled = filler.join().unwrap_or_else(|_| Err(panicked()));
        let written = writer.join().unwrap_or_else(|_| Err(panicked()));
        (planned.and(written).and(filled), windows.pos)
    });
    let stats = planned?;
    if covered != image.size {
        return Err(DiskError::List(ListError::Damaged {
            page: image.extents.page,
            reason: format!("extents cover {covered} bytes, the disk has {}", image.size),
        }));
    }
    Ok(stats)
}

/// Where a blob goes in a window's buffer.
#[derive(Debug, Clone, Copy)]
struct Placement {
    at: usize,
    len: usize,
}

/// A blob of a window: where it is stored and every place it goes.
struct Located {
    pack: Id,
    entry: BlobEntry,
    places: Vec<Placement>,
}

/// One window of the disk, planned: what goes where in its buffer.
struct Window {
    /// Disk offset of the buffer's first byte (block aligned).
    start: u64,
    /// Bytes of the window: the partial block carried from the window
    /// before (or zeros after a hole), then the extents.
    len: usize,
    /// Bytes to write: `len`, less a partial last block carried into the
    /// next window, or more (zeros) up to the block's end before a skipped
    /// zero run.
    write_len: usize,
    /// Its blobs, located.
    blobs: Vec<Located>,
    /// Zero extents (buffer ranges).
    zeros: Vec<Range<usize>>,
    /// Bytes at the front from before the window's first extent.
    head: usize,
    /// Whether those are zeros (after a hole) rather than the tail of the
    /// window before.
    head_zero: bool,
    /// Zeros after the window left as a hole, not assembled.
    hole: u64,
}

/// Cuts the extent list into windows.
struct Windows<'r, 'a> {
    repo: &'a Repository,
    reader: &'r mut ListReader<'a>,
    /// The list's top page, named by errors.
    page: Id,
    mode: Mode,
    size: u64,
    /// Disk offset of the next extent byte.
    pos: u64,
    /// The rest of a zero extent split at a window's end.
    pending: Option<Extent>,
    /// Bytes from `pos`'s block start to `pos`, carried into the next window.
    carry: usize,
    /// Whether the carried bytes are zeros (after a hole).
    carry_zero: bool,
    done: bool,
}

impl<'r, 'a> Windows<'r, 'a> {
    fn new(
        repo: &'a Repository,
        reader: &'r mut ListReader<'a>,
        page: Id,
        mode: Mode,
        size: u64,
    ) -> Self {
        Windows {
            repo,
            reader,
            page,
            mode,
            size,
            pos: 0,
            pending: None,
            carry: 0,
            carry_zero: false,
            done: false,
        }
    }

    /// The next extent (or the rest of a split one); one that would run
    /// past the disk is an error (before anything is sized by it).
    fn next_extent(&mut self) -> Result<Option<Extent>, DiskError> {
        if let Some(e) = self.pending.take() {
            return Ok(Some(e));
        }
        let Some(e) = self.reader.next_extent()? else {
            return Ok(None);
        };
        if e.len > self.size - self.pos {
            return Err(self.damaged(format!(
                "an extent of {} bytes at offset {} runs past the disk's {} bytes",
                e.len, self.pos, self.size
            )));
        }
        Ok(Some(e))
    }

    fn damaged(&self, reason: String) -> DiskError {
        DiskError::List(ListError::Damaged {
            page: self.page,
            reason,
        })
    }

    /// Plans the next window, or `None` after the last.
    fn next(&mut self) -> Result<Option<Window>, DiskError> {
        if self.done {
            return Ok(None);
        }
        let head = self.carry;
        let start = self.pos - head as u64;
        let mut w = Window {
            start,
            len: head,
            write_len: 0,
            blobs: Vec::new(),
            zeros: Vec::new(),
            head,
            head_zero: self.carry_zero,
            hole: 0,
        };
        let mut blobs: HashMap<Id, Vec<Placement>> = HashMap::new();
        let mut gap = None;
        while w.len < WINDOW {
            let Some(e) = self.next_extent()? else {
                self.done = true;
                break;
            };
            match e.blob {
                Some(id) => {
                    let len = e.len as usize;
                    blobs
                        .entry(id)
                        .or_default()
                        .push(Placement { at: w.len, len });
                    w.len += len;
                    self.pos += e.len;
                }
                None if self.mode == Mode::Sparse && e.len >= SKIP_ZEROS => {
                    gap = Some(e.len);
                    break;
                }
                None => {
                    let take = e.len.min((WINDOW - w.len) as u64);
                    if take < e.len {
                        self.pending = Some(Extent {
                            len: e.len - take,
                            blob: None,
                        });
                    }
                    w.zeros.push(w.len..w.len + take as usize);
                    w.len += take as usize;
                    self.pos += take;
                }
            }
        }
        let end = start + w.len as u64;
        let block = DIRECT_ALIGN as u64;
        let written_to = if self.done || end == self.size {
            end
        } else if gap.is_some() {
            // The partial block before the hole is written padded with zeros.
            end.next_multiple_of(block)
        } else {
            end / block * block
        };
        w.write_len = (written_to - start) as usize;
        self.carry = w.len.saturating_sub(w.write_len);
        self.carry_zero = false;
        if let Some(len) = gap {
            w.hole = len;
            self.pos += len;
            // The next window starts with the hole's end in its first block.
            self.carry = (self.pos % block) as usize;
            self.carry_zero = true;
        }
        if w.write_len == 0 && w.len == 0 && self.done {
            return Ok(None);
        }
        w.blobs = blobs
            .into_iter()
            .map(|(id, places)| self.locate(id, places))
            .collect::<Result<_, DiskError>>()?;
        self.prefetch(&w.blobs);
        Ok(Some(w))
    }

    /// Where blob `id` is stored; its length in the index must be the one
    /// the disk map gives it (checked before any buffer is sized by it).
    fn locate(&self, id: Id, places: Vec<Placement>) -> Result<Located, DiskError> {
        let (pack, entry) = locate(self.repo, &id)?;
        if let Some(p) = places.iter().find(|p| p.len != entry.raw_len as usize) {
            return Err(self.damaged(format!(
                "blob {id} has {} bytes in the index, the disk map says {}",
                entry.raw_len, p.len
            )));
        }
        Ok(Located {
            pack,
            entry,
            places,
        })
    }

    /// Announces a planned window's pack reads to the target, so that a
    /// local repository's packs are read ahead by the kernel while the
    /// window before is fetched (cold pack reads were a fifth of a restore).
    fn prefetch(&self, blobs: &[Located]) {
        let mut by_pack: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
        for b in blobs {
            by_pack.entry(b.pack).or_default().push(b.entry);
        }
        for (pack, entries) in by_pack {
            self.repo
                .prefetch_pack_blobs(&pack, &entries, MAX_GAP, MAX_READ);
        }
    }
}

/// Fetches planned windows into buffers and hands them to the writer.
struct Filler<'a> {
    repo: &'a Repository,
    out: &'a Target<'a>,
    mode: Mode,
    threads: usize,
}

impl Filler<'_> {
    fn run(
        &self,
        plans: Receiver<Window>,
        free: Receiver<AlignedBuf>,
        jobs: SyncSender<WriteJob>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<DiskRestoreStats, DiskError> {
        let mut stats = DiskRestoreStats::default();
        // The tail of the window before: the head of the next.
        let mut carry: Vec<u8> = Vec::new();
        for w in plans {
            // The writer gave up (an error it reports) if none comes back.
            let Ok(mut buf) = free.recv() else {
                break;
            };
            buf.reserve(WINDOW.max(w.len).max(w.write_len));
            let head = &mut buf.bytes_mut()[..w.head];
            if w.head_zero {
                head.fill(0);
            } else if carry.len() == w.head {
                head.copy_from_slice(&carry);
            } else {
                return Err(io_err(
                    self.out.path,
                    "restore",
                    "internal error: a window's carried block went missing",
                ));
            }
            let done_to = w.start + w.write_len.min(w.len) as u64;
            let tail = w.write_len.min(w.len)..w.len;
            let job = self.fill(w, buf, &mut stats)?;
            carry.clear();
            carry.extend_from_slice(&job.buf.bytes()[tail]);
            if jobs.send(job).is_err() {
                break;
            }
            progress(done_to);
        }
        Ok(stats)
    }

    /// Fetches a window's blobs into `buf` (whose head is in place) and
    /// decides what to write.
    fn fill(
        &self,
        mut w: Window,
        mut buf: AlignedBuf,
        stats: &mut DiskRestoreStats,
    ) -> Result<WriteJob, DiskError> {
        let mut changed: Vec<Range<usize>> = Vec::new();
        if self.mode == Mode::Resume {
            // What is there already, with the carried head put back on top.
            let carried = buf.bytes()[..w.head].to_vec();
            self.out
                .read_exact(&mut buf.bytes_mut()[..w.len], w.start)?;
            if buf.bytes()[..w.head] != carried[..] {
                buf.bytes_mut()[..w.head].copy_from_slice(&carried);
                changed.push(0..w.head);
            }
            let bytes = buf.bytes();
            for b in &mut w.blobs {
                b.places.retain(|p| {
                    let there = self.repo.blob_id(&bytes[p.at..p.at + p.len]) == b.entry.id;
                    if there {
                        stats.bytes_skipped += p.len as u64;
                    }
                    !there
                });
            }
            w.blobs.retain(|b| !b.places.is_empty());
        }
        stats.bytes_zero += w.hole;
        if w.write_len > w.len {
            // The padding of the block before a hole.
            buf.bytes_mut()[w.len..w.write_len].fill(0);
        }
        for z in &w.zeros {
            stats.bytes_zero += z.len() as u64;
            let bytes = &mut buf.bytes_mut()[z.clone()];
            if self.mode == Mode::Resume {
                if !is_zero(bytes) {
                    bytes.fill(0);
                    changed.push(z.clone());
                }
            } else {
                bytes.fill(0);
            }
        }
        let fetching = w.blobs.iter().flat_map(|b| &b.places);
        stats.bytes_written += fetching.clone().map(|p| p.len as u64).sum::<u64>();
        if self.mode == Mode::Resume {
            changed.extend(fetching.map(|p| p.at..p.at + p.len));
        }
        self.fetch_into(w.blobs, &mut buf.bytes_mut()[..w.len], stats)?;
        let runs = match self.mode {
            Mode::Whole => std::iter::once(0..w.write_len).collect(),
            Mode::Sparse => nonzero_runs(&buf.bytes()[..w.write_len]),
            Mode::Resume => block_runs(changed, w.write_len),
        };
        Ok(WriteJob {
            buf,
            start: w.start,
            runs,
        })
    }

    /// Fetches `blobs` into their places in `buf`: a few MiB of a pack per
    /// job, on the workers, each blob decompressed straight into its first
    /// place (the buffer is cut into one disjoint slice per blob), then
    /// copied to its other places.
    ///
    /// Patched blobs go first: their encodings are small, and they name
    /// their bases, which are then fetched in the same jobs as the window's
    /// whole blobs. A base is the chunk the previous snapshot had at the
    /// same disk offsets, so it usually shares a solid group with chunks of
    /// this window: fetched together, the group is opened once. (Fetched
    /// after the window, the group had left the group cache, and every base
    /// cost a 1 MiB group's decryption and decompression again.)
    fn fetch_into(
        &self,
        blobs: Vec<Located>,
        buf: &mut [u8],
        stats: &mut DiskRestoreStats,
    ) -> Result<(), DiskError> {
        let (repo, threads) = (self.repo, self.threads);
        stats.blobs_fetched += blobs.len() as u64;
        let (patches, blobs): (Vec<Located>, Vec<Located>) = blobs
            .into_iter()
            .partition(|b| b.entry.compression == Compression::Patch);
        let encodings = self.patch_encodings(&patches, stats)?;
        // Bases not among the window's blobs, each fetched into its own
        // stretch of `base_buf`.
        let in_window: HashMap<Id, usize> = blobs
            .iter()
            .enumerate()
            .map(|(k, b)| (b.entry.id, k))
            .collect();
        let mut wanted: Vec<Id> = Vec::new();
        for (p, encoding) in patches.iter().zip(&encodings) {
            for base in repo.patch_encoding_bases(&p.entry, encoding)? {
                if !in_window.contains_key(&base) && !wanted.contains(&base) {
                    wanted.push(base);
                }
            }
        }
        let bases: Vec<Located> = wanted
            .iter()
            .map(|id| {
                let (pack, entry) = locate(repo, id)?;
                Ok(Located {
                    pack,
                    entry,
                    places: Vec::new(),
                })
            })
            .collect::<Result<_, DiskError>>()?;
        let mut base_buf = vec![0u8; bases.iter().map(|b| b.entry.raw_len as usize).sum()];
        {
            let firsts: Vec<Placement> = blobs.iter().map(|b| b.places[0]).collect();
            let window_slices = carve(buf, &firsts).ok_or_else(|| {
                io_err(self.out.path, "restore", "internal error: places overlap")
            })?;
            let mut base_slices = Vec::with_capacity(bases.len());
            let mut rest = base_buf.as_mut_slice();
            for b in &bases {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(b.entry.raw_len as usize);
                base_slices.push(mine);
                rest = tail;
            }
            let mut items: Vec<(&Located, &mut [u8])> = blobs
                .iter()
                .zip(window_slices)
                .chain(bases.iter().zip(base_slices))
                .collect();
            // Pack by pack, in pack order; each pack cut into jobs.
            items.sort_by_key(|(b, _)| (b.pack, b.entry.offset));
            let mut jobs: Vec<Vec<(&Located, &mut [u8])>> = Vec::new();
            let mut bytes = 0u64;
            for (b, slice) in items {
                let same_job = jobs
                    .last()
                    .and_then(|g| g.first())
                    .is_some_and(|(first, _)| first.pack == b.pack && bytes < GROUP_BYTES);
                if !same_job {
                    jobs.push(Vec::new());
                    bytes = 0;
                }
                bytes += u64::from(b.entry.raw_len);
                if let Some(job) = jobs.last_mut() {
                    job.push((b, slice));
                }
            }
            // In disk order (bases last), so that the window fills front
            // to back.
            jobs.sort_by_key(|job| {
                job.iter()
                    .map(|(b, _)| b.places.first().map_or(u64::MAX, |p| p.at as u64))
                    .min()
            });
            stats.packs_read += jobs.len() as u64;
            on_threads::<_, DiskError>(threads, jobs, |job| {
                let entries: Vec<BlobEntry> = job.iter().map(|(b, _)| b.entry).collect();
                let (located, mut dests): (Vec<&Located>, Vec<&mut [u8]>) = job.into_iter().unzip();
                let patches =
                    repo.load_pack_into(&located[0].pack, &entries, &mut dests, MAX_GAP, MAX_READ)?;
                match located.iter().zip(patches).find(|(_, p)| p.is_some()) {
                    // A base is stored whole (no chains) and the window's
                    // patches were taken out above.
                    Some((b, _)) => Err(cairn_store::Error::corrupt(
                        format!("blob {} in pack {}", b.entry.id, b.pack),
                        "opened as a patch where a whole blob was expected",
                    )
                    .into()),
                    None => Ok(()),
                }
            })?;
        }
        // A blob met more than once in the window: copied from its first place.
        for b in &blobs {
            let first = b.places[0];
            for p in &b.places[1..] {
                buf.copy_within(first.at..first.at + first.len, p.at);
            }
        }
        if patches.is_empty() {
            return Ok(());
        }
        let mut base_plain: HashMap<Id, Vec<u8>> = HashMap::new();
        let mut at = 0;
        for b in &bases {
            let len = b.entry.raw_len as usize;
            base_plain.insert(b.entry.id, base_buf[at..at + len].to_vec());
            at += len;
        }
        for (p, encoding) in patches.iter().zip(&encodings) {
            for base in repo.patch_encoding_bases(&p.entry, encoding)? {
                if let Some(&k) = in_window.get(&base) {
                    let first = blobs[k].places[0];
                    base_plain
                        .entry(base)
                        .or_insert_with(|| buf[first.at..first.at + first.len].to_vec());
                }
            }
        }
        let shared = Mutex::new(buf);
        let work: Vec<(&Located, &Vec<u8>)> = patches.iter().zip(&encodings).collect();
        let per_thread = work.len().div_ceil(threads).max(1);
        on_threads::<_, DiskError>(threads, work.chunks(per_thread).collect(), |part| {
            for (b, encoding) in part {
                let plain = repo.apply_patch(&b.entry, encoding, &base_plain)?;
                place(&mut lock(&shared), &b.entry, &plain, &b.places)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The encodings of the window's patched blobs (in order), fetched pack
    /// by pack on the workers.
    fn patch_encodings(
        &self,
        patches: &[Located],
        stats: &mut DiskRestoreStats,
    ) -> Result<Vec<Vec<u8>>, DiskError> {
        let mut by_pack: HashMap<Id, Vec<usize>> = HashMap::new();
        for (k, p) in patches.iter().enumerate() {
            by_pack.entry(p.pack).or_default().push(k);
        }
        stats.packs_read += by_pack.len() as u64;
        let found = Mutex::new(vec![Vec::new(); patches.len()]);
        on_threads::<_, DiskError>(self.threads, by_pack.into_iter().collect(), |(pack, ks)| {
            let entries: Vec<BlobEntry> = ks.iter().map(|&k| patches[k].entry).collect();
            let opened = self
                .repo
                .load_pack_opened(&pack, &entries, MAX_GAP, MAX_READ)?;
            for (&k, blob) in ks.iter().zip(opened) {
                match blob {
                    OpenedBlob::Patch(encoding) => lock(&found)[k] = encoding,
                    OpenedBlob::Whole(_) => {
                        return Err(cairn_store::Error::corrupt(
                            format!("blob {} in pack {pack}", patches[k].entry.id),
                            "indexed as a patch but opened whole",
                        )
                        .into());
                    }
                }
            }
            Ok(())
        })?;
        Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `buf` cut into one slice per place (in the order given); `None` if
/// places overlap or run past the buffer.
fn carve<'b>(buf: &'b mut [u8], places: &[Placement]) -> Option<Vec<&'b mut [u8]>> {
    let mut order: Vec<usize> = (0..places.len()).collect();
    order.sort_by_key(|&i| places[i].at);
    let mut out: Vec<Option<&'b mut [u8]>> = (0..places.len()).map(|_| None).collect();
    let mut rest = buf;
    let mut base = 0;
    for i in order {
        let p = places[i];
        let skip = p.at.checked_sub(base)?;
        if rest.len() < skip + p.len {
            return None;
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(p.len);
        out[i] = Some(mine);
        rest = tail;
        base = p.at + p.len;
    }
    out.into_iter().collect()
}

/// A window ready for the writer.
struct WriteJob {
    buf: AlignedBuf,
    start: u64,
    /// Buffer ranges to write (block aligned but for the disk's end).
    runs: Vec<Range<usize>>,
}

/// Copies a blob's plaintext to every place it occupies; its length must
/// be the one the disk map gives.
fn place(
    buf: &mut [u8],
    entry: &BlobEntry,
    bytes: &[u8],
    places: &[Placement],
) -> Result<(), DiskError> {
    for p in places {
        if p.len != bytes.len() {
            return Err(DiskError::Store(cairn_store::Error::corrupt(
                format!("blob {}", entry.id),
                format!("it has {} bytes, the disk map says {}", bytes.len(), p.len),
            )));
        }
        buf[p.at..p.at + p.len].copy_from_slice(bytes);
    }
    Ok(())
}

/// The runs of blocks of `bytes` that are not all zero (the last block
/// may be short).
fn nonzero_runs(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, block) in bytes.chunks(DIRECT_ALIGN).enumerate() {
        if is_zero(block) {
            continue;
        }
        let at = i * DIRECT_ALIGN;
        match runs.last_mut() {
            Some(run) if run.end == at => run.end = at + block.len(),
            _ => runs.push(at..at + block.len()),
        }
    }
    runs
}

/// `ranges` widened to whole blocks, merged, and cut at `len`.
fn block_runs(mut ranges: Vec<Range<usize>>, len: usize) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut runs: Vec<Range<usize>> = Vec::new();
    for r in ranges.into_iter().filter(|r| !r.is_empty()) {
        let start = r.start / DIRECT_ALIGN * DIRECT_ALIGN;
        let end = r.end.next_multiple_of(DIRECT_ALIGN).min(len);
        if start >= end {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.end >= start => run.end = run.end.max(end),
            _ => runs.push(start..end),
        }
    }
    runs
}

/// Writes windows as they come and hands their buffers back.
fn write_windows(
    out: &Target<'_>,
    jobs: Receiver<WriteJob>,
    give_back: SyncSender<AlignedBuf>,
) -> Result<(), DiskError> {
    for job in jobs {
        for run in &job.runs {
            out.write_all(&job.buf.bytes()[run.clone()], job.start + run.start as u64)?;
        }
        // The restorer may have stopped (an error): nothing to give back to.
        let _ = give_back.send(job.buf);
    }
    Ok(())
}

/// The file or device restored to, written directly where it can be;
/// errors name it.
struct Target<'a> {
    io: DirectFileIo<'a>,
    path: &'a Path,
}

impl<'a> Target<'a> {
    /// The target `plain`, written directly if `direct`: a block device, or
    /// an image on a local disk's file system (the pack writer's allow-list:
    /// on a network file system a direct write is a synchronous round trip,
    /// and tmpfs refuses it).
    fn new(plain: &'a File, path: &'a Path, direct: bool) -> Self {
        Target {
            io: if direct {
                DirectFileIo::new(plain)
            } else {
                DirectFileIo::plain(plain)
            },
            path,
        }
    }

    /// Writes all of `buf` at `offset`: the aligned part directly, the
    /// rest (the disk's last partial block) through the page cache.
    fn write_all(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        self.io
            .write_all(buf, offset)
            .map_err(|e| io_err(self.path, "write", e))
    }

    /// Fills `buf` from `offset`, directly where aligned.
    fn read_exact(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        self.io.read_exact(buf, offset).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io_err(self.path, "read", "the target is too short"),
            _ => io_err(self.path, "read", e),
        })
    }
}

/// Re-reads the target and checks every extent against the snapshot.
fn verify_disk(
    repo: &Repository,
    image: &DiskImage,
    file: &File,
    target: &Path,
) -> Result<(), DiskError> {
    let mut reader = ListReader::new(repo, &image.extents)?;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    while let Some(e) = reader.next_extent()? {
        buf.resize(e.len as usize, 0);
        file.read_exact_at(&mut buf, offset)
            .map_err(|err| io_err(target, "verify read", err))?;
        let ok = match e.blob {
            Some(id) => repo.blob_id(&buf) == id,
            None => is_zero(&buf),
        };
        if !ok {
            return Err(DiskError::Verify {
                path: target.display().to_string(),
                offset,
            });
        }
        offset += e.len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{DiskImage, backup_disk};
    use cairn_chunker::testdata::pseudo_random;
    use std::os::unix::fs::MetadataExt;

    /// A disk of `len` (at least 72 MiB) bytes: random data with zero runs
    /// of many lengths (shorter than a block, across blocks, longer than
    /// [`SKIP_ZEROS`] and than a window), starting off block boundaries,
    /// after two full windows (whose reused buffers hold stale data), and
    /// data up to the disk's last, partial, block.
    fn disk(len: usize) -> Vec<u8> {
        let mut data = pseudo_random(42, len);
        for (at, n) in [
            (0, 100),
            (70_000, 5_000),
            ((33 << 20) + 1001, 3 << 20),
            ((40 << 20) + 7, 4096),
            ((44 << 20) + 1, 2 << 20),
            ((48 << 20) + 1, 20 << 20),
            (len - 9000, 3000),
        ] {
            data[at..at + n].fill(0);
        }
        data
    }

    fn backed_up(dir: &Path, data: &[u8]) -> (Repository, DiskImage) {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let path = dir.join("source");
        std::fs::write(&path, data).unwrap();
        let (image, _) = backup_disk(&repo, &chunker, &path, None, 2, &|_| {}).unwrap();
        repo.flush().unwrap();
        (repo, image)
    }

    const OPTS: DiskRestoreOptions = DiskRestoreOptions {
        threads: 2,
        verify: true,
    };

    #[test]
    fn images_of_every_shape_restore_byte_for_byte_and_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let data = disk((72 << 20) + 1234);
        let (repo, image) = backed_up(dir.path(), &data);
        // Where the file system takes O_DIRECT (the temp dir) and where it
        // does not (tmpfs), the bytes are the same.
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        let places = [Some(dir.path()), shm.as_ref().map(|d| d.path())];
        for place in places.into_iter().flatten() {
            let out = place.join("restored");
            let seen = Mutex::new(Vec::new());
            let stats =
                restore_disk(&repo, &image, &out, &OPTS, &|at| lock(&seen).push(at)).unwrap();
            assert!(std::fs::read(&out).unwrap() == data, "{}", out.display());
            let zeros = data.iter().filter(|&&b| b == 0).count() as u64;
            assert!(stats.bytes_zero >= 24 << 20, "{stats:?}");
            assert_eq!(stats.bytes_written + stats.bytes_zero, data.len() as u64);
            assert!(stats.bytes_zero <= zeros);
            // The zero runs of whole blocks are holes.
            let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
            assert!(allocated < data.len() as u64 - (24 << 20), "{allocated}");
            // Progress only moves forward, to the end.
            let seen = seen.into_inner().unwrap();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
            assert_eq!(seen.last(), Some(&(data.len() as u64)));
        }
    }

    #[test]
    fn a_rerun_rewrites_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let data = disk((72 << 20) + 777);
        let (repo, image) = backed_up(dir.path(), &data);
        let out = dir.path().join("restored");
        restore_disk(&repo, &image, &out, &OPTS, &|_| {}).unwrap();
        // Damage data, a hole, a window's edge and the last partial block.
        let file = OpenOptions::new().write(true).open(&out).unwrap();
        let len = data.len() as u64;
        for at in [5000, (34 << 20) + 10, WINDOW as u64 - 3, len - 5] {
            file.write_all_at(b"XYZ", at).unwrap();
        }
        drop(file);
        let stats = restore_disk(&repo, &image, &out, &OPTS, &|_| {}).unwrap();
        assert!(std::fs::read(&out).unwrap() == data);
        assert!(
            stats.bytes_written > 0 && stats.bytes_written < 1 << 20,
            "{stats:?}"
        );
        assert!(stats.bytes_skipped > 10 << 20, "{stats:?}");
        let again = restore_disk(&repo, &image, &out, &OPTS, &|_| {}).unwrap();
        assert_eq!(again.bytes_written, 0, "{again:?}");
        assert!(std::fs::read(&out).unwrap() == data);
    }

    #[test]
    fn a_device_is_written_whole_over_its_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let data = disk((72 << 20) + 4096 * 3);
        let (repo, image) = backed_up(dir.path(), &data);
        // Stands in for a block device: garbage everywhere, a bit larger.
        let out = dir.path().join("device");
        std::fs::write(&out, pseudo_random(7, data.len() + 8192)).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&out)
            .unwrap();
        let stats = restore_into(&repo, &image, &file, &out, Mode::Whole, &OPTS, &|_| {}).unwrap();
        drop(file);
        let written = std::fs::read(&out).unwrap();
        let first_diff = (0..data.len()).find(|&i| written[i] != data[i]);
        assert_eq!(first_diff, None);
        assert!(written[data.len()..] == pseudo_random(7, data.len() + 8192)[data.len()..]);
        assert_eq!(stats.bytes_written + stats.bytes_zero, data.len() as u64);
    }

    #[test]
    fn run_helpers_cover_what_they_must() {
        let mut bytes = vec![0u8; 5 * DIRECT_ALIGN + 100];
        bytes[DIRECT_ALIGN + 7] = 1;
        bytes[2 * DIRECT_ALIGN] = 1;
        bytes[5 * DIRECT_ALIGN + 99] = 1;
        assert_eq!(
            nonzero_runs(&bytes),
            [
                DIRECT_ALIGN..3 * DIRECT_ALIGN,
                5 * DIRECT_ALIGN..5 * DIRECT_ALIGN + 100
            ]
        );
        let mut buf: Vec<u8> = (0..100).collect();
        let places = [(50, 10), (0, 5), (60, 40)].map(|(at, len)| Placement { at, len });
        let slices = carve(&mut buf, &places).unwrap();
        assert_eq!(slices.iter().map(|s| s[0]).collect::<Vec<_>>(), [50, 0, 60]);
        assert_eq!(
            slices.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [10, 5, 40]
        );
        let overlapping = [(0, 10), (5, 10)].map(|(at, len)| Placement { at, len });
        assert!(carve(&mut buf, &overlapping).is_none());
        let past_the_end = [Placement { at: 90, len: 11 }];
        assert!(carve(&mut buf, &past_the_end).is_none());
        let runs = block_runs(vec![9000..9001, 10..20, 4000..4200, 20_000..30_000], 25_000);
        assert_eq!(runs, [0..12288, 16384..25_000]);
    }
}
