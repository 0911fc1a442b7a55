//! Reading a disk that may have bad sectors.
//!
//! A failing block device answers some reads with `EIO`. Aborting the whole
//! backup there would leave the disk with no backup at all at the moment it
//! is most needed, so a disk backup reads on past them, as `ddrescue` does:
//! after an `EIO`, the rest of the read is retried in aligned
//! [`SALVAGE_BLOCK`]s one by one, each block that still fails is stored as
//! zeros and counted, and the backup finishes with a warning naming how many
//! bytes were unreadable and where the first was (exit code 3). Any other
//! error (the device vanished, a permission) still aborts.
//!
//! Reads go through [`ReadAt`] so that tests can put a failing reader in
//! front of an ordinary file.
//!
//! # Direct reads
//! [`DirectFileIo::reading`] reads with `O_DIRECT` wherever buffer, offset and length
//! allow it. In the guests this agent runs in, the page cache is the slow
//! part of reading a disk: fio on a virtio disk, 4 MiB sequential reads
//! after dropping the cache, gave 663-697 MiB/s buffered and 2004-2231
//! MiB/s direct (BENCHMARKS.md). A direct read also leaves the guest's page
//! cache to its workload instead of filling it with the disk being backed
//! up. Reads that are not aligned, and file systems that refuse `O_DIRECT`
//! (tmpfs), go through the page cache as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::direct_io::DirectFileIo;

/// Granularity of the retry after a read error, and of what is zeroed:
/// one file-system block (a failed 512-byte sector costs its 4 KiB block;
/// the bytes a short read returned before the error are kept).
pub const SALVAGE_BLOCK: u64 = 4096;

/// Positioned reads of a disk source.
pub trait ReadAt: Sync {
    /// Reads into `buf` from `offset`; may return fewer bytes (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

/// A source read with `O_DIRECT` where a read is aligned
/// ([`DirectFileIo::reading`]), through the page cache otherwise.
impl ReadAt for DirectFileIo<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        DirectFileIo::read_at(self, buf, offset)
    }
}

/// The unreadable parts of a source, as they were met.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable {
    /// Bytes stored as zeros because they could not be read.
    pub bytes: u64,
    /// Offset of the first unreadable byte (lowest offset met).
    pub first: Option<u64>,
}

/// Whether an error is a media error worth reading past.
fn is_media_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// Fills `buf` from `offset` through `reader`; short only at the end of the
/// source. Media errors are read past block by block (zeros, tallied in
/// `bad`); other errors are returned with the offset they happened at.
pub fn read_tolerant(
    reader: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    bad: &Mutex<Unreadable>,
) -> Result<usize, (u64, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match reader.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_media_error(&e) => {
                return Ok(done + salvage(reader, &mut buf[done..], at, bad)?);
            }
            Err(e) => return Err((at, e)),
        }
    }
    Ok(done)
}

/// Reads `buf` from `offset` one aligned block at a time, zeroing the
/// blocks that fail with a media error.
fn salvage(
    reader: &dyn ReadAt,
    buf: &mut [u8],
    offset: u64,
    bad: &Mutex<Unreadable>,
) -> Result<usize, (u64, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let n = ((SALVAGE_BLOCK - at % SALVAGE_BLOCK) as usize).min(buf.len() - done);
        let block = &mut buf[done..done + n];
        let mut got = 0;
        let failed = loop {
            if got == n {
                break false;
            }
            match reader.read_at(&mut block[got..], at + got as u64) {
                Ok(0) => return Ok(done + got),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_media_error(&e) => break true,
                Err(e) => return Err((at + got as u64, e)),
            }
        };
        if failed {
            block.fill(0);
            let mut tally = bad.lock().unwrap_or_else(|e| e.into_inner());
            tally.bytes += n as u64;
            tally.first = Some(tally.first.map_or(at, |f| f.min(at)));
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::direct_io::DIRECT_ALIGN;

    /// A source of `len` bytes (`byte(offset)`) whose bytes in `bad` fail
    /// with `EIO`, or with `other` when given.
    pub(crate) struct Failing {
        pub len: u64,
        pub bad: std::ops::Range<u64>,
        pub other: Option<i32>,
    }

    /// The byte a [`Failing`] source holds at `offset`.
    pub(crate) fn byte(offset: u64) -> u8 {
        (offset.wrapping_mul(2_654_435_761) >> 13) as u8 | 1
    }

    impl ReadAt for Failing {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let end = (offset + buf.len() as u64).min(self.len);
            if offset >= end {
                return Ok(0);
            }
            if offset < self.bad.end && self.bad.start < end {
                if offset >= self.bad.start {
                    let code = self.other.unwrap_or(libc::EIO);
                    return Err(io::Error::from_raw_os_error(code));
                }
                // A short read up to the bad part, as a kernel gives.
                let n = (self.bad.start - offset) as usize;
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = byte(offset + i as u64);
                }
                return Ok(n);
            }
            let n = (end - offset) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = byte(offset + i as u64);
            }
            Ok(n)
        }
    }

    #[test]
    fn media_errors_become_zeroed_blocks_and_are_tallied() {
        let src = Failing {
            len: 100_000,
            bad: 10_000..13_000,
            other: None,
        };
        let bad = Mutex::new(Unreadable::default());
        let mut buf = vec![0xffu8; 120_000];
        let got = read_tolerant(&src, &mut buf, 0, &bad).unwrap();
        assert_eq!(got, 100_000, "short only at the end");
        // What was read before the error is kept; from the failing byte to
        // the end of its block, and the next block (which fails too), are
        // zeros.
        let zeroed = 10_000..16_384;
        for (i, &b) in buf[..got].iter().enumerate() {
            let expect = if zeroed.contains(&i) {
                0
            } else {
                byte(i as u64)
            };
            assert_eq!(b, expect, "byte {i}");
        }
        let tally = *bad.lock().unwrap();
        assert_eq!(
            tally,
            Unreadable {
                bytes: 6384,
                first: Some(10_000)
            }
        );
    }

    #[test]
    fn other_errors_still_fail_with_their_offset() {
        let src = Failing {
            len: 100_000,
            bad: 50_000..60_000,
            other: Some(libc::ENODEV),
        };
        let bad = Mutex::new(Unreadable::default());
        let mut buf = vec![0u8; 100_000];
        let (at, e) = read_tolerant(&src, &mut buf, 0, &bad).unwrap_err();
        assert_eq!(at, 50_000);
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }

    /// A buffer of `len` bytes starting `skew` bytes past an aligned
    /// address, and the range of it to read into.
    fn aligned_buf(len: usize, skew: usize) -> (Vec<u8>, std::ops::Range<usize>) {
        let buf = vec![0u8; len + 2 * DIRECT_ALIGN];
        let pad = (DIRECT_ALIGN - buf.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
        (buf, pad + skew..pad + skew + len)
    }

    #[test]
    fn direct_reads_return_what_plain_reads_do() {
        // /var/tmp is on disk where /tmp may be tmpfs, which refuses
        // O_DIRECT (the test then covers only the fallback).
        let base = std::path::Path::new("/var/tmp");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let path = dir.path().join("disk.img");
        let len = 3 * (1 << 20) + 1234;
        let data: Vec<u8> = (0..len as u64).map(byte).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let direct = DirectFileIo::reading(&file);
        // Aligned and not: buffer skew, offset, length; the tail past EOF.
        let cases = [
            (0usize, 0u64, 1usize << 20),
            (0, 1 << 20, 2 << 20),
            (0, 3 << 20, 1 << 20),
            (512, 4096, 8192),
            (0, 100, 8192),
            (0, 8192, 5000),
            (0, (3 << 20) + 4096, 4096),
        ];
        for (skew, offset, want) in cases {
            let (mut buf, range) = aligned_buf(want, skew);
            let got =
                read_tolerant(&direct, &mut buf[range.clone()], offset, &Mutex::default()).unwrap();
            let start = (offset as usize).min(len);
            let end = (offset as usize + want).min(len);
            assert_eq!(got, end - start, "{skew} {offset} {want}");
            assert!(
                buf[range.start..range.start + got] == data[start..end],
                "bytes differ at skew {skew}, offset {offset}, length {want}"
            );
        }
        // Where the file system takes O_DIRECT, the aligned reads used it
        // and were not refused.
        assert_eq!(direct.is_direct(), direct.opened_direct());
    }
}
