//! A disk snapshot as one raw image, front to back: windows of the disk's
//! extents, each fetched pack by pack (patches rebuilt), written in disk
//! order with zero runs as zeros.

use std::io::Write;

use cairn_store::Repository;

use crate::chunklist::{Extent, ListError, ListReader};
use crate::disk::DiskImage;
use crate::fetch::{load_grouped, locate};

use super::{ExportError, WINDOW_BYTES};

/// Writes `image` as a raw disk image to `out`; calls `progress` with the
/// bytes written so far. Returns the bytes written (the disk's size).
pub fn export_disk(
    repo: &Repository,
    image: &DiskImage,
    out: &mut dyn Write,
    threads: usize,
    progress: &dyn Fn(u64),
) -> Result<u64, ExportError> {
    export_windowed(repo, image, out, threads, progress, WINDOW_BYTES)
}

/// [`export_disk`] with windows of `window_bytes` of data.
fn export_windowed(
    repo: &Repository,
    image: &DiskImage,
    out: &mut dyn Write,
    threads: usize,
    progress: &dyn Fn(u64),
    window_bytes: u64,
) -> Result<u64, ExportError> {
    let mut reader = ListReader::new(repo, &image.extents)?;
    let mut written = 0u64;
    loop {
        let window = next_window(&mut reader, window_bytes)?;
        if window.is_empty() {
            break;
        }
        let located = window
            .iter()
            .filter_map(|e| e.blob)
            .map(|id| locate(repo, &id))
            .collect::<Result<Vec<_>, _>>()?;
        let (blobs, _) = load_grouped(repo, located, threads)?;
        for e in &window {
            match e.blob {
                Some(id) => {
                    let data = blobs.get(&id).ok_or(cairn_store::Error::BlobNotFound(id))?;
                    if data.len() as u64 != e.len {
                        return Err(ExportError::Damaged(format!(
                            "blob {id} has {} bytes, the disk map says {}",
                            data.len(),
                            e.len
                        )));
                    }
                    out.write_all(data)?;
                }
                None => write_zeros(out, e.len)?,
            }
            written += e.len;
        }
        progress(written);
    }
    if written != image.size {
        return Err(ExportError::Damaged(format!(
            "the extents cover {written} bytes, the disk has {}",
            image.size
        )));
    }
    out.flush()?;
    Ok(written)
}

/// The next extents, up to `limit` bytes of data.
fn next_window(reader: &mut ListReader<'_>, limit: u64) -> Result<Vec<Extent>, ListError> {
    let mut window = Vec::new();
    let mut bytes = 0u64;
    while bytes < limit {
        let Some(e) = reader.next_extent()? else {
            break;
        };
        if e.blob.is_some() {
            bytes += e.len;
        }
        window.push(e);
    }
    Ok(window)
}

fn write_zeros(out: &mut dyn Write, mut len: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
        len -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::disk::backup_disk;

    #[test]
    fn an_export_is_the_disk_byte_for_byte_with_holes_and_patches() {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut data = cairn_chunker::testdata::pseudo_random(5, 6 << 20);
        data[1 << 20..3 << 20].fill(0);
        std::fs::write(&path, &data).unwrap();
        let (first, _) = backup_disk(&repo, &chunker, &path, None, 2, &|_| {}).unwrap();
        for i in 0..30usize {
            let at = (4 << 20) + i * 40_960;
            data[at..at + 4096].fill(i as u8 + 1);
        }
        std::fs::write(&path, &data).unwrap();
        let (second, stats) =
            backup_disk(&repo, &chunker, &path, Some(&first), 2, &|_| {}).unwrap();
        assert!(stats.chunks_patched > 0, "{stats:?}");
        repo.flush().unwrap();
        // One window, and many (a blob may recur across windows).
        for window in [WINDOW_BYTES, 300_000] {
            let mut out = Vec::new();
            let n = export_windowed(&repo, &second, &mut out, 2, &|_| {}, window).unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(
                out == data,
                "export in windows of {window} differs from the disk"
            );
        }
    }
}
