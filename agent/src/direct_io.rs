//! Direct I/O (`O_DIRECT`) for what a restore writes and a disk backup
//! reads: alignment, aligned buffers, and a writer that goes around the
//! page cache where it can and through it where it must.
//!
//! In the guests this agent runs in, the page cache is the slow part of
//! moving bulk data: every byte is copied into a freshly allocated cache
//! page, and where the host reclaims free guest memory (virtio-balloon
//! free page reporting) a fresh page costs a fault on the host as well.
//! perf of a restore showed 30-46% of its CPU in the kernel's copy into
//! page-cache folios (BENCHMARKS.md). A direct write skips that copy, and a
//! restore or backup leaves the guest's page cache to its workload.
//!
//! `O_DIRECT` wants buffer address, file offset and length aligned to the
//! device's logical block; [`DIRECT_ALIGN`] covers 512-byte and 4 KiB
//! devices. What is not aligned (a file's partial first and last blocks),
//! and file systems that refuse `O_DIRECT` (tmpfs), go through the page
//! cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

/// What `O_DIRECT` asks to be aligned to: buffer address, offset and
/// length (the largest logical block size of disks in use).
pub const DIRECT_ALIGN: usize = 4096;

/// `file` opened again with `O_DIRECT` (for writing too if `write`): the
/// very file it has open, through `/proc/self/fd`, not its path, which may
/// name another file by now. `None` where the file system refuses direct
/// I/O (tmpfs).
pub fn reopen_direct(file: &File, write: bool) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// Whether an I/O of `buf` at `offset` meets `O_DIRECT`'s alignment.
pub fn direct_aligned(buf: &[u8], offset: u64) -> bool {
    !buf.is_empty()
        && (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
        && offset.is_multiple_of(DIRECT_ALIGN as u64)
        && buf.len().is_multiple_of(DIRECT_ALIGN)
}

/// Whether `e` is the kernel refusing a direct I/O (`EINVAL`).
fn is_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// A byte buffer whose usable part starts on a [`DIRECT_ALIGN`] boundary
/// (`Vec` promises no alignment; the slack at its front is skipped).
#[derive(Default)]
pub struct AlignedBuf {
    vec: Vec<u8>,
    pad: usize,
}

impl AlignedBuf {
    /// Makes room for `len` aligned bytes (the contents are not kept).
    pub fn reserve(&mut self, len: usize) {
        if self.pad + len <= self.vec.len() {
            return;
        }
        // Zeroed allocations are mapped lazily: untouched room costs no memory.
        let vec = vec![0u8; len + len / 8 + DIRECT_ALIGN];
        let pad = (DIRECT_ALIGN - vec.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
        *self = AlignedBuf { vec, pad };
    }

    /// The aligned bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.vec[self.pad..]
    }

    /// The aligned bytes, to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.pad..]
    }
}

/// A file written (and read back) directly where buffer and offset allow,
/// through the page cache elsewhere.
pub struct DirectFileIo<'a> {
    plain: &'a File,
    /// The same open file again with `O_DIRECT`, if the file system takes it.
    direct: Option<File>,
    /// Cleared when a direct I/O is refused (`EINVAL`): the rest go plain.
    usable: AtomicBool,
}

impl<'a> DirectFileIo<'a> {
    /// Direct I/O on `plain` (opened for writing) where the file system
    /// allows it.
    pub fn new(plain: &'a File) -> Self {
        DirectFileIo::with_direct(plain, reopen_direct(plain, true))
    }

    /// Direct reads of `plain` (opened for reading only: a disk source)
    /// where the file system allows it.
    pub fn reading(plain: &'a File) -> Self {
        DirectFileIo::with_direct(plain, reopen_direct(plain, false))
    }

    /// I/O on `plain` through the page cache only.
    pub fn plain(plain: &'a File) -> Self {
        DirectFileIo::with_direct(plain, None)
    }

    fn with_direct(plain: &'a File, direct: Option<File>) -> Self {
        DirectFileIo {
            plain,
            usable: AtomicBool::new(direct.is_some()),
            direct,
        }
    }

    /// Whether I/O may still go direct (tests check the fallback).
    pub fn is_direct(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }

    /// Whether the direct handle could be opened (tests compare it with
    /// [`Self::is_direct`]: no direct I/O was refused).
    #[cfg(test)]
    pub(crate) fn opened_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The direct handle, if `buf` at `offset` may use it.
    fn direct_for(&self, buf: &[u8], offset: u64) -> Option<&File> {
        self.direct
            .as_ref()
            .filter(|_| direct_aligned(buf, offset) && self.is_direct())
    }

    /// Writes all of `buf` at `offset`: whole blocks directly when `buf`'s
    /// address is as far from a block boundary as `offset` is (the bytes
    /// up to the first block boundary, and the last partial block, through
    /// the page cache); all of it through the page cache otherwise.
    pub fn write_all(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let head = (DIRECT_ALIGN - (offset % DIRECT_ALIGN as u64) as usize) % DIRECT_ALIGN;
            let n = if head > 0 && self.is_direct() {
                self.plain.write_at(&buf[..head.min(buf.len())], offset)
            } else {
                let whole = buf.len() / DIRECT_ALIGN * DIRECT_ALIGN;
                match self.direct_for(&buf[..whole], offset) {
                    Some(direct) => match direct.write_at(&buf[..whole], offset) {
                        Err(e) if is_refused(&e) => {
                            self.usable.store(false, Ordering::Relaxed);
                            continue;
                        }
                        other => other,
                    },
                    None => self.plain.write_at(buf, offset),
                }
            };
            match n {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads into `buf` from `offset` (maybe fewer bytes; 0 at the end):
    /// directly if `buf` and `offset` are aligned and the file system
    /// takes it, through the page cache otherwise.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if let Some(direct) = self.direct_for(buf, offset) {
            match direct.read_at(buf, offset) {
                Err(e) if is_refused(&e) => self.usable.store(false, Ordering::Relaxed),
                other => return other,
            }
        }
        self.plain.read_at(buf, offset)
    }

    /// Fills `buf` from `offset`, whole blocks directly where aligned;
    /// `UnexpectedEof` if the file ends first.
    pub fn read_exact(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let whole = buf.len() / DIRECT_ALIGN * DIRECT_ALIGN;
            let part = match self.direct_for(&buf[..whole], offset) {
                Some(_) => whole,
                None => buf.len(),
            };
            match self.read_at(&mut buf[..part], offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir on disk: /tmp may be tmpfs, which refuses `O_DIRECT`
    /// (the tests then cover only the fallback).
    fn disk_tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap_or_else(|_| tempfile::tempdir().unwrap())
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Writes at every alignment of offset and length, from buffers placed
    /// as far from a block boundary as their offsets (the direct case) and
    /// not (the plain case), read back byte for byte, directly or not.
    #[test]
    fn writes_at_any_offset_and_length_read_back() {
        let dir = disk_tempdir();
        let offsets = [0u64, 1, 511, 4096, 4097, 3 * 4096 + 100];
        let lengths = [1usize, 100, 4095, 4096, 4097, 3 * 4096, 5 * 4096 + 7];
        for direct in [true, false] {
            for (i, &offset) in offsets.iter().enumerate() {
                for (j, &len) in lengths.iter().enumerate() {
                    for congruent in [true, false] {
                        let path = dir.path().join(format!("f-{direct}-{i}-{j}-{congruent}"));
                        let file = OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create_new(true)
                            .open(&path)
                            .unwrap();
                        let io = if direct {
                            DirectFileIo::new(&file)
                        } else {
                            DirectFileIo::plain(&file)
                        };
                        let started = io.is_direct();
                        let data = bytes(len, (i * 7 + j) as u8);
                        let mut buf = AlignedBuf::default();
                        let at = (offset % DIRECT_ALIGN as u64) as usize + usize::from(!congruent);
                        buf.reserve(at + len);
                        buf.bytes_mut()[at..at + len].copy_from_slice(&data);
                        io.write_all(&buf.bytes()[at..at + len], offset).unwrap();
                        let mut back = AlignedBuf::default();
                        back.reserve(len);
                        io.read_exact(&mut back.bytes_mut()[..len], offset).unwrap();
                        assert_eq!(&back.bytes()[..len], &data[..], "{}", path.display());
                        // No misaligned direct I/O was ever tried.
                        assert_eq!(io.is_direct(), started, "{}", path.display());
                        let whole = std::fs::read(&path).unwrap();
                        assert_eq!(whole.len() as u64, offset + len as u64);
                        assert!(whole[..offset as usize].iter().all(|&b| b == 0));
                    }
                }
            }
        }
    }

    #[test]
    fn reading_past_the_end_is_unexpected_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [1u8; 100]).unwrap();
        let file = File::open(&path).unwrap();
        let io = DirectFileIo::plain(&file);
        let mut buf = [0u8; 200];
        let e = io.read_exact(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        let mut buf = AlignedBuf::default();
        for len in [1, 4096, 1 << 20, 10] {
            buf.reserve(len);
            assert!(buf.bytes().len() >= len);
            assert_eq!(buf.bytes().as_ptr() as usize % DIRECT_ALIGN, 0);
        }
    }
}
