//! Pack files written around the page cache (`O_DIRECT`) on local disks.
//!
//! A pack is written once and not read again by the backup that writes
//! it, so passing it through the page cache only costs: every byte is
//! copied into a freshly allocated cache page, and the backup pushes the
//! guest's own working set out of the cache (and, under a systemd unit's
//! memory limit, fills the unit's share with pages it will never read). In
//! a VM whose host reclaims free guest memory (virtio-balloon free page
//! reporting, as on the Firecracker guests we benchmark on), a fresh cache
//! page costs a fault on the host too: buffered 16 MiB pack writes ran at
//! 70-130 MB/s and took a third of a first full backup's CPU there, while
//! direct writes of the same bytes ran at disk speed (BENCHMARKS.md).
//!
//! Direct I/O wants the memory, the file offset and the length aligned to
//! the device's logical block. A pack's bytes sit in an ordinary `Vec`, so
//! they are copied, a piece at a time, into a page-aligned bounce buffer
//! (a memcpy costs ~1% of what the page-cache copy did); the unaligned
//! tail of the file, under one block, is written through the page cache.
//! Anything the kernel refuses to do directly (`EINVAL`: a filesystem
//! without direct I/O, a device with larger blocks) continues through the
//! page cache from the same offset, so a direct write is never the reason
//! a write fails.
//!
//! Only local disk filesystems are written this way. On NFS or SMB, direct
//! writes go to the server one piece at a time and wait for each, where
//! buffered writes are pipelined by the client.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Memory and file-offset alignment of direct writes: a page, which covers
/// every device with 512-byte or 4 KiB logical blocks.
const ALIGN: usize = 4096;
/// Bytes copied and written per direct write.
const PIECE: usize = 1 << 20;
/// Smaller objects (indexes, snapshots, locks) go through the page cache:
/// they are few, and some are read back soon.
const MIN_DIRECT: usize = 256 << 10;

/// Filesystems (statfs `f_type`) on local block devices whose direct I/O
/// we rely on: ext2/3/4, XFS, Btrfs and F2FS.
const LOCAL_DISK_FILESYSTEMS: [u64; 4] = [0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010];

/// Whether `dir` is on a local disk file system whose direct I/O we rely
/// on (false where it cannot be told).
pub fn on_local_disk(dir: &Path) -> bool {
    rustix::fs::statfs(dir)
        .ok()
        .and_then(|st| u64::try_from(st.f_type).ok())
        .is_some_and(|fs_type| LOCAL_DISK_FILESYSTEMS.contains(&fs_type))
}

/// Writes files with direct I/O through a small pool of bounce buffers
/// (one per concurrent writer, each [`PIECE`] plus an alignment's slack).
#[derive(Debug, Default)]
pub(super) struct DirectWriter {
    bounces: Mutex<Vec<Vec<u8>>>,
}

impl DirectWriter {
    /// A writer for files under `dir`, or `None` where direct writes are
    /// not used: a filesystem other than a local disk's, or one that cannot
    /// be asked.
    pub(super) fn for_dir(dir: &Path) -> Option<DirectWriter> {
        on_local_disk(dir).then(DirectWriter::default)
    }

    /// Writes `data` at the start of the empty `file`, directly where the
    /// file and the kernel allow it; returns how many bytes went directly.
    pub(super) fn write_all(&self, file: &File, data: &[u8]) -> io::Result<usize> {
        let aligned = data.len() - data.len() % ALIGN;
        if aligned < MIN_DIRECT || set_direct(file, true).is_err() {
            file.write_all_at(data, 0)?;
            return Ok(0);
        }
        let mut bounce = self.take_bounce();
        let direct = write_direct(file, &data[..aligned], aligned_piece(&mut bounce));
        self.return_bounce(bounce);
        set_direct(file, false)?;
        let done = direct?;
        file.write_all_at(&data[done..], offset(done))?;
        Ok(done)
    }

    fn take_bounce(&self) -> Vec<u8> {
        let pooled = self
            .bounces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        pooled.unwrap_or_else(|| vec![0; PIECE + ALIGN])
    }

    fn return_bounce(&self, bounce: Vec<u8>) {
        self.bounces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bounce);
    }
}

/// Writes `data` (a multiple of [`ALIGN`] long) from offset 0 of `file`,
/// opened for direct I/O, copying it through `bounce` (page-aligned, a
/// multiple of [`ALIGN`] long). Returns how far it got: all of `data`, or
/// the offset where the kernel refused a direct write or wrote short, from
/// which the caller continues through the page cache.
fn write_direct(file: &File, data: &[u8], bounce: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    for piece in data.chunks(bounce.len()) {
        let staged = &mut bounce[..piece.len()];
        staged.copy_from_slice(piece);
        loop {
            match file.write_at(staged, offset(done)) {
                Ok(n) if n == staged.len() => break,
                // Zero or short: the caller writes the rest buffered,
                // where a real error (ENOSPC) is reported.
                Ok(n) => return Ok(done + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    return Ok(done);
                }
                Err(e) => return Err(e),
            }
        }
        done += piece.len();
    }
    Ok(done)
}

/// The page-aligned [`PIECE`]-byte window of a bounce buffer.
fn aligned_piece(bounce: &mut [u8]) -> &mut [u8] {
    let misalignment = bounce.as_ptr() as usize % ALIGN;
    let start = (ALIGN - misalignment) % ALIGN;
    &mut bounce[start..start + PIECE]
}

/// Turns direct I/O on or off for `file`; `EINVAL` where the filesystem
/// has none.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | rustix::fs::OFlags::DIRECT
    } else {
        flags - rustix::fs::OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

/// A byte count as a file offset (lossless: usize is at most 64 bits).
fn offset(n: usize) -> u64 {
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};

    /// Deterministic bytes that differ from piece to piece.
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

    /// A temp dir on disk: /tmp may be tmpfs (the tests then cover only
    /// the fallback through the page cache).
    fn disk_tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap_or_else(|_| tempfile::tempdir().unwrap())
    }

    fn new_file(dir: &Path, name: &str) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(name))
            .unwrap()
    }

    /// Every length around the alignment, the piece size and the
    /// threshold, from source slices at every misalignment, reads back as
    /// written; where the filesystem is a local disk's the aligned part
    /// went directly.
    #[test]
    fn every_length_and_source_alignment_round_trips() {
        let dir = disk_tempdir();
        let local_disk = DirectWriter::for_dir(dir.path()).is_some();
        let writer = DirectWriter::default();
        let lengths = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            MIN_DIRECT - 1,
            MIN_DIRECT,
            MIN_DIRECT + 1,
            PIECE - ALIGN + 1,
            PIECE,
            PIECE + 1,
            3 * PIECE + 5 * ALIGN + 123,
        ];
        for (n, &len) in lengths.iter().enumerate() {
            for shift in [0, 1, 7] {
                let source = bytes(len + shift, n as u64);
                let data = &source[shift..];
                let name = format!("f{n}-{shift}");
                let file = new_file(dir.path(), &name);
                let direct = writer.write_all(&file, data).unwrap();
                drop(file);
                assert_eq!(fs::read(dir.path().join(&name)).unwrap(), data, "{name}");
                let aligned = len - len % ALIGN;
                if local_disk && aligned >= MIN_DIRECT {
                    assert_eq!(direct, aligned, "{name}");
                } else {
                    assert!(direct <= aligned, "{name}");
                }
            }
        }
        assert!(writer.bounces.lock().unwrap().len() <= 1);
    }

    /// A direct write the kernel refuses (here: a misaligned buffer)
    /// continues through the page cache from the same offset.
    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = disk_tempdir();
        let data = bytes(3 * PIECE, 9);
        let file = new_file(dir.path(), "f");
        let mut bounce = vec![0u8; PIECE + ALIGN + 1];
        let misaligned = {
            let start = (ALIGN - bounce.as_ptr() as usize % ALIGN) % ALIGN + 1;
            &mut bounce[start..start + PIECE]
        };
        let direct_ok = set_direct(&file, true).is_ok();
        let done = write_direct(&file, &data, misaligned).unwrap();
        set_direct(&file, false).unwrap();
        if direct_ok {
            assert_eq!(done, 0, "a misaligned direct write must be refused");
        }
        file.write_all_at(&data[done..], offset(done)).unwrap();
        drop(file);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), data);
    }

    #[test]
    fn only_local_disk_file_systems_are_written_directly() {
        // procfs and tmpfs are not on a disk; a missing path cannot be told.
        assert!(!on_local_disk(Path::new("/proc")));
        assert!(!on_local_disk(Path::new("/dev/shm")));
        assert!(!on_local_disk(Path::new("/no/such/directory")));
    }

    #[test]
    fn the_bounce_window_is_aligned_and_a_piece_long() {
        for slack in 0..4 {
            let mut bounce = vec![0u8; PIECE + ALIGN + slack];
            let window = aligned_piece(&mut bounce);
            assert_eq!(window.as_ptr() as usize % ALIGN, 0);
            assert_eq!(window.len(), PIECE);
        }
    }
}
