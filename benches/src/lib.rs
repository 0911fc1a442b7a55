//! Shared helpers for cairn's benchmarks and measurement tools.

use std::path::Path;

/// Up to `limit` bytes of real files from /usr (sorted walk of /usr/lib,
/// /usr/bin, /usr/share), concatenated: realistic mixed content for chunker
/// benchmarks. Falls back to repeating what it found if /usr is smaller.
pub fn usr_corpus(limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    for root in ["/usr/lib", "/usr/bin", "/usr/share"] {
        collect(Path::new(root), limit, &mut out);
    }
    if out.is_empty() {
        out = cairn_chunker::testdata::pseudo_random(9, limit);
    }
    while out.len() < limit {
        let take = (limit - out.len()).min(out.len());
        out.extend_from_within(..take);
    }
    out
}

fn collect(dir: &Path, limit: usize, out: &mut Vec<u8>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if out.len() >= limit {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(&path, limit, out);
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            let take = bytes.len().min(limit - out.len());
            out.extend_from_slice(&bytes[..take]);
        }
    }
}
