//! Chunked lists of extents: how a disk's (or a large file's) ordered chunk
//! list is stored, so that a small change to the source changes little
//! metadata.
//!
//! A flat list of every chunk of a disk would be rewritten whole by every
//! backup (0.13% of the disk per snapshot at 16 KiB chunks, see
//! docs/chunk-size-study.md). Instead the list is cut into pages with
//! boundaries chosen by content — a page ends after an entry whose hash has
//! its low six bits zero (64 entries on average, at most 512) — and the
//! pages' ids form the next level up, cut the same way, until one page
//! remains. Unchanged runs of chunks give byte-identical pages, which
//! deduplicate; a local change rewrites one page per level. The page format
//! is in docs/format.md §3.1.

use cairn_store::{BlobType, Id, Repository};
use thiserror::Error;

/// One run of a source's bytes: a stored blob, or zeros that store nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub len: u64,
    /// The blob holding the bytes; `None` for a run of zeros (a hole).
    pub blob: Option<Id>,
}

/// The root of a stored list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListRoot {
    /// The top page.
    pub page: Id,
    /// Its level (0 when the whole list fits one page).
    pub level: u8,
    /// Total bytes the list covers.
    pub bytes: u64,
    /// Number of extents.
    pub extents: u64,
}

/// Errors reading a stored list.
#[derive(Debug, Error)]
pub enum ListError {
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A page does not parse or does not fit its parent.
    #[error("damaged extent list page {page}: {reason}")]
    Damaged {
        /// The page.
        page: Id,
        /// What is wrong.
        reason: String,
    },
}

const PAGE_VERSION: u8 = 1;
const KIND_BLOB: u8 = 0;
const KIND_ZERO: u8 = 1;
/// A page ends after an entry whose hash has these bits zero (64 on average).
const BOUNDARY_MASK: u32 = 63;
/// No page holds more entries than this.
const MAX_ENTRIES: usize = 512;
/// Levels above which a list is refused (2^64 bytes is reached far earlier).
const MAX_LEVEL: u8 = 16;

/// A page entry pointing to a child page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChildRef {
    page: Id,
    bytes: u64,
    extents: u64,
}

/// One level's page under construction.
#[derive(Default)]
struct PageBuf {
    encoded: Vec<u8>,
    count: u32,
    bytes: u64,
    extents: u64,
}

impl PageBuf {
    fn start(&mut self, level: u8) {
        if self.encoded.is_empty() {
            self.encoded
                .extend_from_slice(&[PAGE_VERSION, level, 0, 0, 0, 0]);
        }
    }

    /// Appends one encoded entry; returns whether the page should end here.
    fn push(&mut self, level: u8, entry: &[u8], bytes: u64, extents: u64) -> bool {
        self.start(level);
        self.encoded.extend_from_slice(entry);
        self.count += 1;
        self.bytes += bytes;
        self.extents += extents;
        let h = blake3::hash(entry);
        let low = u32::from_le_bytes([
            h.as_bytes()[0],
            h.as_bytes()[1],
            h.as_bytes()[2],
            h.as_bytes()[3],
        ]);
        low & BOUNDARY_MASK == 0 || self.count as usize >= MAX_ENTRIES
    }

    fn take(&mut self, level: u8) -> (Vec<u8>, u64, u64) {
        self.start(level);
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded[2..6].copy_from_slice(&self.count.to_le_bytes());
        let out = (encoded, self.bytes, self.extents);
        *self = PageBuf::default();
        out
    }
}

fn encode_extent(e: &Extent, out: &mut Vec<u8>) {
    match e.blob {
        Some(id) => {
            out.push(KIND_BLOB);
            out.extend_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&id.0);
        }
        None => {
            out.push(KIND_ZERO);
            out.extend_from_slice(&e.len.to_le_bytes());
        }
    }
}

fn encode_child(c: &ChildRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&c.page.0);
    out.extend_from_slice(&c.bytes.to_le_bytes());
    out.extend_from_slice(&c.extents.to_le_bytes());
}

/// Builds a stored list from extents pushed in order. Memory: one page per
/// level.
pub struct ListWriter<'r> {
    repo: &'r Repository,
    levels: Vec<PageBuf>,
    scratch: Vec<u8>,
    /// Bytes of metadata blobs that were new.
    pub stored_new: u64,
}

impl<'r> ListWriter<'r> {
    /// An empty list that stores its pages in `repo`.
    pub fn new(repo: &'r Repository) -> Self {
        ListWriter {
            repo,
            levels: vec![PageBuf::default()],
            scratch: Vec::with_capacity(64),
            stored_new: 0,
        }
    }

    /// Appends an extent. Adjacent zero runs are not merged here: the caller
    /// decides the granularity.
    pub fn push(&mut self, extent: Extent) -> Result<(), cairn_store::Error> {
        self.scratch.clear();
        encode_extent(&extent, &mut self.scratch);
        let entry = std::mem::take(&mut self.scratch);
        let end = self.levels[0].push(0, &entry, extent.len, 1);
        self.scratch = entry;
        if end {
            self.close_page(0)?;
        }
        Ok(())
    }

    fn store_page(&mut self, level: usize) -> Result<ChildRef, cairn_store::Error> {
        let (encoded, bytes, extents) = self.levels[level].take(level as u8);
        let saved = self.repo.save_blob(BlobType::Meta, &encoded)?;
        self.stored_new += saved.stored_len;
        Ok(ChildRef {
            page: saved.id,
            bytes,
            extents,
        })
    }

    /// Stores the page of `level` and pushes its reference one level up.
    fn close_page(&mut self, level: usize) -> Result<(), cairn_store::Error> {
        let child = self.store_page(level)?;
        if self.levels.len() == level + 1 {
            self.levels.push(PageBuf::default());
        }
        let mut entry = Vec::with_capacity(48);
        encode_child(&child, &mut entry);
        if self.levels[level + 1].push((level + 1) as u8, &entry, child.bytes, child.extents) {
            self.close_page(level + 1)?;
        }
        Ok(())
    }

    /// Stores the remaining pages and returns the root.
    pub fn finish(mut self) -> Result<ListRoot, cairn_store::Error> {
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            if top {
                // The top level: one page, the root (possibly empty).
                let child = self.store_page(level)?;
                return Ok(ListRoot {
                    page: child.page,
                    level: level as u8,
                    bytes: child.bytes,
                    extents: child.extents,
                });
            }
            if self.levels[level].count > 0 {
                self.close_page(level)?;
            }
            level += 1;
        }
    }
}

/// Parses one page: its level and raw entries.
fn parse_page(page: &Id, bytes: &[u8], expect_level: u8) -> Result<Vec<PageEntry>, ListError> {
    let bad = |reason: &str| ListError::Damaged {
        page: *page,
        reason: reason.to_string(),
    };
    let (Some(&version), Some(&level), Some(count)) =
        (bytes.first(), bytes.get(1), bytes.get(2..6))
    else {
        return Err(bad("shorter than a page header"));
    };
    if version != PAGE_VERSION {
        return Err(bad("unknown page version"));
    }
    if level != expect_level {
        return Err(bad("page level differs from its place in the list"));
    }
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    if count > MAX_ENTRIES {
        return Err(bad("too many entries"));
    }
    let mut out = Vec::with_capacity(count);
    let mut rest = &bytes[6..];
    for _ in 0..count {
        let (entry, tail) = if level == 0 {
            match rest.split_first() {
                Some((&KIND_BLOB, t)) if t.len() >= 40 => {
                    let len = u64::from_le_bytes(t[..8].try_into().map_err(|_| bad("truncated"))?);
                    let id = Id::from_slice(&t[8..40]).ok_or_else(|| bad("truncated"))?;
                    (
                        PageEntry::Extent(Extent {
                            len,
                            blob: Some(id),
                        }),
                        &t[40..],
                    )
                }
                Some((&KIND_ZERO, t)) if t.len() >= 8 => {
                    let len = u64::from_le_bytes(t[..8].try_into().map_err(|_| bad("truncated"))?);
                    (PageEntry::Extent(Extent { len, blob: None }), &t[8..])
                }
                _ => return Err(bad("invalid extent entry")),
            }
        } else {
            if rest.len() < 48 {
                return Err(bad("truncated child entry"));
            }
            let page = Id::from_slice(&rest[..32]).ok_or_else(|| bad("truncated"))?;
            let bytes = u64::from_le_bytes(rest[32..40].try_into().map_err(|_| bad("truncated"))?);
            let extents =
                u64::from_le_bytes(rest[40..48].try_into().map_err(|_| bad("truncated"))?);
            (
                PageEntry::Child(ChildRef {
                    page,
                    bytes,
                    extents,
                }),
                &rest[48..],
            )
        };
        out.push(entry);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// One entry of a stored list page, for walkers that visit the pages
/// themselves (reachability: check, prune, copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageItem {
    /// An extent (the entries of level-0 pages).
    Extent(Extent),
    /// A child page, one level down.
    Child(Id),
}

/// Loads and parses the page `page`, which sits at `level` of its list.
pub fn read_page(repo: &Repository, page: &Id, level: u8) -> Result<Vec<PageItem>, ListError> {
    if level > MAX_LEVEL {
        return Err(ListError::Damaged {
            page: *page,
            reason: "too many levels".into(),
        });
    }
    decode_page(page, &repo.load_blob(page)?, level)
}

/// Parses the stored bytes of page `page`, expected at `level` of its list
/// (no repository needed: the fuzz target `agent_metadata` calls it on
/// hostile bytes).
pub fn decode_page(page: &Id, bytes: &[u8], level: u8) -> Result<Vec<PageItem>, ListError> {
    Ok(parse_page(page, bytes, level)?
        .into_iter()
        .map(|e| match e {
            PageEntry::Extent(x) => PageItem::Extent(x),
            PageEntry::Child(c) => PageItem::Child(c.page),
        })
        .collect())
}

enum PageEntry {
    Extent(Extent),
    Child(ChildRef),
}

/// Reads a stored list back, in order, one page per level in memory.
pub struct ListReader<'r> {
    repo: &'r Repository,
    /// Per level (top first): the page's entries and the next index.
    stack: Vec<(u8, Vec<PageEntry>, usize)>,
}

impl<'r> ListReader<'r> {
    /// A reader of the list at `root`.
    pub fn new(repo: &'r Repository, root: &ListRoot) -> Result<Self, ListError> {
        if root.level > MAX_LEVEL {
            return Err(ListError::Damaged {
                page: root.page,
                reason: "too many levels".into(),
            });
        }
        let entries = parse_page(&root.page, &repo.load_blob(&root.page)?, root.level)?;
        Ok(ListReader {
            repo,
            stack: vec![(root.level, entries, 0)],
        })
    }

    /// The next extent, or `None` at the end.
    pub fn next_extent(&mut self) -> Result<Option<Extent>, ListError> {
        loop {
            let Some((level, entries, next)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(entry) = entries.get(*next) else {
                self.stack.pop();
                continue;
            };
            *next += 1;
            match entry {
                PageEntry::Extent(e) => return Ok(Some(*e)),
                PageEntry::Child(c) => {
                    let child_level = level.checked_sub(1).ok_or_else(|| ListError::Damaged {
                        page: c.page,
                        reason: "child below level 0".into(),
                    })?;
                    let page = c.page;
                    let entries = parse_page(&page, &self.repo.load_blob(&page)?, child_level)?;
                    self.stack.push((child_level, entries, 0));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_store::backend::MemoryBackend;
    use cairn_store::{Credential, InitOptions, OpenOptions, SeededRandom};
    use std::sync::Arc;

    pub(crate) fn test_repo() -> Repository {
        let init = InitOptions::for_tests();
        let mut open = OpenOptions::new(None);
        open.rng = Arc::new(SeededRandom::new(b"chunklist"));
        Repository::init(
            Arc::new(MemoryBackend::new()),
            &Credential::Password(b"pw"),
            &init,
            open,
        )
        .unwrap()
    }

    fn extents(n: u64, salt: u64) -> Vec<Extent> {
        (0..n)
            .map(|i| Extent {
                len: 1000 + i,
                blob: if i % 7 == 3 {
                    None
                } else {
                    Some(Id(*blake3::hash(&(i ^ salt).to_le_bytes()).as_bytes()))
                },
            })
            .collect()
    }

    fn store(repo: &Repository, list: &[Extent]) -> (ListRoot, u64) {
        let mut w = ListWriter::new(repo);
        for e in list {
            w.push(*e).unwrap();
        }
        let root = w.finish().unwrap();
        (root, repo.session_stats().bytes_stored)
    }

    fn read(repo: &Repository, root: &ListRoot) -> Vec<Extent> {
        let mut r = ListReader::new(repo, root).unwrap();
        let mut out = Vec::new();
        while let Some(e) = r.next_extent().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn round_trips_at_every_size() {
        let repo = test_repo();
        for n in [0u64, 1, 63, 64, 65, 700, 20_000] {
            let list = extents(n, 0);
            let (root, _) = store(&repo, &list);
            assert_eq!(read(&repo, &root), list, "n={n}");
            assert_eq!(root.extents, n);
            assert_eq!(root.bytes, list.iter().map(|e| e.len).sum::<u64>());
        }
    }

    #[test]
    fn a_local_change_stores_little_new_metadata() {
        let repo = test_repo();
        let list = extents(50_000, 0);
        let (_, before) = store(&repo, &list);
        let mut changed = list.clone();
        changed[25_000].blob = Some(Id([0xee; 32]));
        let (root, after) = store(&repo, &changed);
        assert_eq!(read(&repo, &root), changed);
        let new_bytes = after - before;
        // Three or four pages of a few KiB each, against ~2 MiB for the list.
        assert!(new_bytes < 20_000, "{new_bytes} bytes of new metadata");
    }
}
