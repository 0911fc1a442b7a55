//! Reachability: every blob a snapshot needs.
//!
//! A snapshot reaches its root blob and, through it, metadata blobs (a file
//! snapshot's trees, one per directory; a disk snapshot's disk set) and the
//! pages of extent lists (a disk's chunk list, a large file's), and data
//! blobs (chunks). A data blob stored as a patch (docs/format.md §2.5.1)
//! also reaches its bases: a blob is reachable when a snapshot references it
//! *or* it is a base of a reachable patch. `check` uses this to find what is
//! missing or damaged and which snapshots that affects; prune and copy use
//! the same walk to decide what to keep or send.
//!
//! [`Walker::walk_snapshot`] reports each reachable blob once per walker
//! (across every snapshot walked with it) to a visitor, with where the index
//! says it is. Memory stays bounded by the number of distinct blobs, not by
//! their bytes or the sizes of the sources: the walker remembers 16 bytes
//! per blob reported (the first half of its id; a collision of those 128
//! bits among billions of blobs has a chance below 10^-18, and would only
//! make the walk skip a blob it had already reported in the other's name),
//! holds one tree at a time plus the ids of directories still to visit, and
//! one page per level of an extent list. A metadata blob seen before is not
//! read again: everything under it was reported when it was first seen, so
//! walking many similar snapshots costs little more than walking one.
//!
//! A metadata blob that cannot be read or parsed, or a patch whose encoding
//! cannot be read, is reported as [`Visit::Damaged`] and the walk goes on
//! without what lies under it; the visitor decides whether that is a
//! finding (check) or a reason to stop (prune, copy). Failures that say
//! nothing about the repository's content (the target unreachable, the
//! local cache failing) end the walk with [`WalkError`].
//!
//! The reachable set of a repository, as prune needs it (stopping at the
//! first missing or damaged blob, since deleting anything then is unsafe):
//!
//! ```ignore
//! let mut walker = Walker::new(&repo);
//! for (id, snapshot) in repo.list_snapshots()? {
//!     walker.walk_snapshot::<anyhow::Error>(&id, &snapshot, &mut |v| match v {
//!         Visit::Blob(r) if r.location.is_none() => anyhow::bail!("{} {} is missing", r.kind.label(), r.id),
//!         Visit::Blob(_) => Ok(()),
//!         Visit::Damaged(d) => anyhow::bail!("{} {}: {}", d.kind.label(), d.id, d.reason),
//!     })?;
//! }
//! let used = walker.into_seen(); // 16-byte prefixes of every reachable blob
//! ```

use std::collections::HashSet;

use cairn_store::{BlobEntry, BlobType, Id, Repository, Snapshot, SnapshotKind};
use serde::Serialize;
use thiserror::Error;

use crate::chunklist::{ListError, ListRoot, PageItem, read_page};
use crate::disk::{DiskError, DiskSet};
use crate::tree::{Content, NodeKind, TreeError, load_tree};

/// What a reachable blob is to the snapshot that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobKind {
    /// A directory of a file snapshot (the root tree included).
    Tree,
    /// The root of a disk snapshot: the list of its disks.
    DiskSet,
    /// A page of an extent list (a disk's chunks, or a large file's).
    ListPage,
    /// File contents or a disk chunk.
    Data,
    /// A whole blob that a reachable data blob is stored as a patch of.
    PatchBase,
}

impl BlobKind {
    /// The type of pack the blob is stored in.
    pub fn blob_type(self) -> BlobType {
        match self {
            BlobKind::Tree | BlobKind::DiskSet | BlobKind::ListPage => BlobType::Meta,
            BlobKind::Data | BlobKind::PatchBase => BlobType::Data,
        }
    }

    /// A short name for messages.
    pub fn label(self) -> &'static str {
        match self {
            BlobKind::Tree => "tree",
            BlobKind::DiskSet => "disk set",
            BlobKind::ListPage => "extent list page",
            BlobKind::Data => "data blob",
            BlobKind::PatchBase => "patch base",
        }
    }
}

/// A reachable blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Its id.
    pub id: Id,
    /// What it is.
    pub kind: BlobKind,
    /// Its pack and entry as the index says; `None` when the index does not
    /// name it (the blob is missing).
    pub location: Option<(Id, BlobEntry)>,
}

/// A metadata blob (or a patch encoding) that could not be read, so what
/// it references is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The blob.
    pub id: Id,
    /// What it is.
    pub kind: BlobKind,
    /// Why it could not be read.
    pub reason: String,
}

/// What the walker reports.
#[derive(Debug, Clone, Copy)]
pub enum Visit<'a> {
    /// A reachable blob, reported once per walker. Missing blobs are
    /// reported too, with no location.
    Blob(&'a Reached),
    /// A blob that is in the index but could not be read or parsed; what
    /// lies under it is not reported.
    Damaged(&'a Damage),
}

/// A failure that ends a walk: not about one blob, but the target or the
/// local cache.
#[derive(Debug, Error)]
#[error("walking the blobs of snapshot {snapshot}: {source}")]
pub struct WalkError {
    /// The snapshot being walked.
    pub snapshot: Id,
    /// Why.
    #[source]
    pub source: cairn_store::Error,
}

/// Walks snapshots and reports every blob they reach, each once.
pub struct Walker<'r> {
    repo: &'r Repository,
    seen: HashSet<u128>,
    follow_bases: bool,
}

/// Whether a store error says something about the object read (damaged,
/// missing, of an unknown version) rather than about the target or cache.
pub fn is_damage(e: &cairn_store::Error) -> bool {
    e.is_damage()
}

/// A failed read of a blob: damage to report, or an error that ends the walk.
enum Failure {
    Damage(String),
    Fatal(cairn_store::Error),
}

impl From<cairn_store::Error> for Failure {
    fn from(e: cairn_store::Error) -> Self {
        if is_damage(&e) {
            Failure::Damage(e.to_string())
        } else {
            Failure::Fatal(e)
        }
    }
}

impl From<ListError> for Failure {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Store(s) => s.into(),
            other => Failure::Damage(other.to_string()),
        }
    }
}

impl From<TreeError> for Failure {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Store(s) => s.into(),
            TreeError::List(l) => l.into(),
            other => Failure::Damage(other.to_string()),
        }
    }
}

impl From<DiskError> for Failure {
    fn from(e: DiskError) -> Self {
        match e {
            DiskError::Store(s) => s.into(),
            DiskError::List(l) => l.into(),
            other => Failure::Damage(other.to_string()),
        }
    }
}

/// The visitor's result or a walk error, inside one walk.
enum Stop<E> {
    Visitor(E),
    Walk(cairn_store::Error),
}

impl<'r> Walker<'r> {
    /// A walker that has seen nothing yet.
    pub fn new(repo: &'r Repository) -> Self {
        Walker {
            repo,
            seen: HashSet::new(),
            follow_bases: true,
        }
    }

    /// A walker that reports the blobs snapshots reference and not the
    /// bases of patches: what a snapshot is made of rather than what its
    /// blobs are stored with (a synthetic full stores patches whole, so it
    /// needs every directly referenced blob reported as such).
    pub fn without_patch_bases(repo: &'r Repository) -> Self {
        Walker {
            follow_bases: false,
            ..Walker::new(repo)
        }
    }

    /// Number of distinct blobs reported so far.
    pub fn blobs_seen(&self) -> usize {
        self.seen.len()
    }

    /// Whether the walker has reported `id` (by its 16-byte prefix): after
    /// walking every snapshot, whether a blob is reachable (prune's test).
    pub fn has_seen(&self, id: &Id) -> bool {
        self.seen.contains(&id.prefix_u128())
    }

    /// The 16-byte prefixes of every blob reported: the reachable set.
    pub fn into_seen(self) -> HashSet<u128> {
        self.seen
    }

    /// Reports to `visit` every blob `snapshot` (whose id is `snapshot_id`)
    /// reaches that this walker has not reported before. Stops at the first
    /// error the visitor returns (`Err(E)`) or at a [`WalkError`].
    pub fn walk_snapshot<E: From<WalkError>>(
        &mut self,
        snapshot_id: &Id,
        snapshot: &Snapshot,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let walked = match snapshot.kind {
            SnapshotKind::Files => self.walk_files(&snapshot.root, visit),
            SnapshotKind::Disk => self.walk_disks(&snapshot.root, visit),
        };
        match walked {
            Ok(()) => Ok(()),
            Err(Stop::Visitor(e)) => Err(e),
            Err(Stop::Walk(source)) => Err(WalkError {
                snapshot: *snapshot_id,
                source,
            }
            .into()),
        }
    }

    /// Reports a blob unless seen; returns whether it was new and is in the
    /// index (so worth descending into).
    fn report<E>(
        &mut self,
        id: Id,
        kind: BlobKind,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<Option<Reached>, Stop<E>> {
        if !self.seen.insert(id.prefix_u128()) {
            return Ok(None);
        }
        let location = self.repo.locate_blob(&id).map_err(Stop::Walk)?;
        let reached = Reached { id, kind, location };
        visit(Visit::Blob(&reached)).map_err(Stop::Visitor)?;
        Ok(reached.location.is_some().then_some(reached))
    }

    /// Handles a failed read of `id`: reports damage, or ends the walk.
    fn failed<E>(
        id: Id,
        kind: BlobKind,
        failure: Failure,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        match failure {
            Failure::Damage(reason) => {
                visit(Visit::Damaged(&Damage { id, kind, reason })).map_err(Stop::Visitor)
            }
            Failure::Fatal(e) => Err(Stop::Walk(e)),
        }
    }

    /// Reports a data blob and, when it is a patch, its bases.
    fn data<E>(
        &mut self,
        id: Id,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        let Some(reached) = self.report(id, BlobKind::Data, visit)? else {
            return Ok(());
        };
        let is_patch = reached
            .location
            .is_some_and(|(_, e)| e.compression == cairn_store::Compression::Patch);
        if !is_patch || !self.follow_bases {
            return Ok(());
        }
        match self.repo.patch_bases(&id) {
            Ok(bases) => {
                for base in bases {
                    self.report(base, BlobKind::PatchBase, visit)?;
                }
                Ok(())
            }
            Err(e) => Self::failed(id, BlobKind::Data, e.into(), visit),
        }
    }

    /// Reports an extent list: its pages, top first, and their data blobs.
    fn walk_list<E>(
        &mut self,
        root: &ListRoot,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        if self.report(root.page, BlobKind::ListPage, visit)?.is_none() {
            return Ok(());
        }
        let mut stack = match read_page(self.repo, &root.page, root.level) {
            Ok(items) => vec![(root.level, items, 0usize)],
            Err(e) => return Self::failed(root.page, BlobKind::ListPage, e.into(), visit),
        };
        while let Some((level, items, next)) = stack.last_mut() {
            let Some(item) = items.get(*next).copied() else {
                stack.pop();
                continue;
            };
            *next += 1;
            let level = *level;
            match item {
                PageItem::Extent(e) => {
                    if let Some(blob) = e.blob {
                        self.data(blob, visit)?;
                    }
                }
                PageItem::Child(page) => {
                    if self.report(page, BlobKind::ListPage, visit)?.is_none() {
                        continue;
                    }
                    let child_level = level.saturating_sub(1);
                    match read_page(self.repo, &page, child_level) {
                        Ok(items) => stack.push((child_level, items, 0)),
                        Err(e) => Self::failed(page, BlobKind::ListPage, e.into(), visit)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn walk_disks<E>(
        &mut self,
        root: &Id,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        if self.report(*root, BlobKind::DiskSet, visit)?.is_none() {
            return Ok(());
        }
        let set = match DiskSet::load(self.repo, root) {
            Ok(set) => set,
            Err(e) => return Self::failed(*root, BlobKind::DiskSet, e.into(), visit),
        };
        for disk in &set.disks {
            self.walk_list(&disk.extents, visit)?;
        }
        Ok(())
    }

    fn walk_files<E>(
        &mut self,
        root: &Id,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        if self.report(*root, BlobKind::Tree, visit)?.is_none() {
            return Ok(());
        }
        // Directories still to read: each was reported and found in the
        // index when pushed.
        let mut pending = vec![*root];
        while let Some(id) = pending.pop() {
            let tree = match load_tree(self.repo, &id) {
                Ok(t) => t,
                Err(e) => {
                    Self::failed(id, BlobKind::Tree, e.into(), visit)?;
                    continue;
                }
            };
            for node in &tree.nodes {
                match (&node.kind, &node.content, &node.subtree) {
                    (NodeKind::Dir, _, Some(sub)) => {
                        pending.extend(self.report(*sub, BlobKind::Tree, visit)?.map(|r| r.id));
                    }
                    (_, Some(Content::Inline(extents)), _) => {
                        for blob in extents.iter().filter_map(|e| e.blob) {
                            self.data(blob, visit)?;
                        }
                    }
                    (_, Some(Content::List(list)), _) => self.walk_list(list, visit)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::chunklist::{Extent, ListWriter};
    use crate::tree::{Node, Tree, save_tree};
    use cairn_store::backend::MemoryBackend;
    use cairn_store::{Credential, InitOptions, OpenOptions, SeededRandom};
    use std::collections::HashMap;
    use std::sync::Arc;

    fn repo() -> (Arc<MemoryBackend>, Repository) {
        let backend = Arc::new(MemoryBackend::new());
        let mut open = OpenOptions::new(None);
        open.rng = Arc::new(SeededRandom::new(b"reach"));
        let repo = Repository::init(
            backend.clone(),
            &Credential::Password(b"pw"),
            &InitOptions::for_tests(),
            open,
        )
        .unwrap();
        (backend, repo)
    }

    fn snapshot(kind: SnapshotKind, root: Id) -> Snapshot {
        Snapshot {
            time: 0,
            time_nanos: 0,
            hostname: "h".into(),
            username: "u".into(),
            kind,
            paths: vec!["/x".into()],
            tags: vec![],
            parent: None,
            root,
            program_version: "test".into(),
            stats: Default::default(),
            original: None,
        }
    }

    fn data(repo: &Repository, i: u32) -> Id {
        let bytes = blake3::hash(&i.to_le_bytes()).as_bytes().repeat(40);
        repo.save_blob(BlobType::Data, &bytes).unwrap().id
    }

    #[derive(Debug)]
    enum TestStop {
        Walk,
    }
    impl From<WalkError> for TestStop {
        fn from(_: WalkError) -> Self {
            TestStop::Walk
        }
    }

    fn walk(
        walker: &mut Walker<'_>,
        id: &Id,
        snap: &Snapshot,
    ) -> (HashMap<Id, BlobKind>, Vec<Damage>) {
        let mut blobs = HashMap::new();
        let mut damaged = Vec::new();
        walker
            .walk_snapshot::<TestStop>(id, snap, &mut |v| {
                match v {
                    Visit::Blob(r) => {
                        assert!(blobs.insert(r.id, r.kind).is_none(), "reported twice");
                    }
                    Visit::Damaged(d) => damaged.push(d.clone()),
                }
                Ok(())
            })
            .unwrap();
        (blobs, damaged)
    }

    /// A file tree: /a (inline extents), /big (an extent list), /sub/c.
    fn file_snapshot(repo: &Repository) -> (Snapshot, Vec<(Id, BlobKind)>) {
        let mut want = Vec::new();
        let d: Vec<Id> = (0..5).map(|i| data(repo, i)).collect();
        let mut c = Node::new(b"c".to_vec(), NodeKind::File);
        c.content = Some(Content::Inline(vec![Extent {
            len: 1280,
            blob: Some(d[0]),
        }]));
        let sub = Tree { nodes: vec![c] };
        let (sub_id, _) = save_tree(repo, &sub).unwrap();
        let mut w = ListWriter::new(repo);
        for i in 0..2000u32 {
            let blob = data(repo, 100 + i);
            want.push((blob, BlobKind::Data));
            w.push(Extent {
                len: 1280,
                blob: Some(blob),
            })
            .unwrap();
        }
        let list = w.finish().unwrap();
        assert!(list.level >= 1, "the list must have several pages");
        let mut a = Node::new(b"a".to_vec(), NodeKind::File);
        a.content = Some(Content::Inline(vec![
            Extent {
                len: 1280,
                blob: Some(d[1]),
            },
            Extent {
                len: 100,
                blob: None,
            },
            Extent {
                len: 1280,
                blob: Some(d[2]),
            },
            // The same blob twice is reported once.
            Extent {
                len: 1280,
                blob: Some(d[1]),
            },
        ]));
        let mut big = Node::new(b"big".to_vec(), NodeKind::File);
        big.content = Some(Content::List(list));
        let mut subdir = Node::new(b"sub".to_vec(), NodeKind::Dir);
        subdir.subtree = Some(sub_id);
        let root = Tree {
            nodes: vec![a, big, subdir],
        };
        let (root_id, _) = save_tree(repo, &root).unwrap();
        want.extend([
            (root_id, BlobKind::Tree),
            (sub_id, BlobKind::Tree),
            (d[0], BlobKind::Data),
            (d[1], BlobKind::Data),
            (d[2], BlobKind::Data),
        ]);
        (snapshot(SnapshotKind::Files, root_id), want)
    }

    #[test]
    fn a_file_snapshot_reaches_trees_pages_and_data_once() {
        let (_, repo) = repo();
        let (snap, want) = file_snapshot(&repo);
        repo.flush().unwrap();
        let mut walker = Walker::new(&repo);
        let (blobs, damaged) = walk(&mut walker, &Id([1; 32]), &snap);
        assert!(damaged.is_empty());
        for (id, kind) in &want {
            assert_eq!(blobs.get(id), Some(kind), "{id:?}");
        }
        let pages = blobs.values().filter(|k| **k == BlobKind::ListPage).count();
        assert!(pages >= 2, "{pages} pages");
        assert_eq!(blobs.len(), want.len() + pages);
        // A second walk with the same walker reports nothing new.
        let (again, _) = walk(&mut walker, &Id([1; 32]), &snap);
        assert!(again.is_empty());
        assert!(want.iter().all(|(id, _)| walker.has_seen(id)));
        assert!(!walker.has_seen(&Id([0x42; 32])));
        assert_eq!(walker.into_seen().len(), blobs.len());
        // A fresh walker reports everything again.
        let (fresh, _) = walk(&mut Walker::new(&repo), &Id([1; 32]), &snap);
        assert_eq!(fresh, blobs);
    }

    #[test]
    fn a_disk_snapshot_reaches_its_set_pages_data_and_patch_bases() {
        use cairn_store::patch::{PlacedBase, diff_aligned};
        let (_, repo) = repo();
        let mut v1 = vec![0u8; 40_960];
        blake3::Hasher::new().finalize_xof().fill(&mut v1);
        let base = repo.save_blob(BlobType::Data, &v1).unwrap().id;
        repo.flush().unwrap();
        let mut v2 = v1.clone();
        v2[5000] ^= 0xff;
        let bases = repo.patch_base(&base).unwrap();
        let placed: Vec<PlacedBase<'_>> = bases
            .iter()
            .map(|b| PlacedBase {
                data: &b.data,
                pos: b.shift.into(),
            })
            .collect();
        let ops = diff_aligned(&v2, 0, &placed, 4096, v2.len() / 2).unwrap();
        let patched = repo.blob_id(&v2);
        repo.save_blob_patched(patched, &v2, &bases, &ops).unwrap();
        let mut w = ListWriter::new(&repo);
        w.push(Extent {
            len: v2.len() as u64,
            blob: Some(patched),
        })
        .unwrap();
        w.push(Extent {
            len: 4096,
            blob: None,
        })
        .unwrap();
        let list = w.finish().unwrap();
        let set = DiskSet {
            version: 1,
            disks: vec![crate::disk::DiskImage {
                name: "d".into(),
                source: "/d".into(),
                size: v2.len() as u64 + 4096,
                sector_size: 512,
                extents: list,
            }],
        };
        let root = repo
            .save_blob(BlobType::Meta, &serde_json::to_vec(&set).unwrap())
            .unwrap()
            .id;
        repo.flush().unwrap();
        let (blobs, damaged) = walk(
            &mut Walker::new(&repo),
            &Id([2; 32]),
            &snapshot(SnapshotKind::Disk, root),
        );
        assert!(damaged.is_empty());
        assert_eq!(blobs.get(&root), Some(&BlobKind::DiskSet));
        assert_eq!(blobs.get(&list.page), Some(&BlobKind::ListPage));
        assert_eq!(blobs.get(&patched), Some(&BlobKind::Data));
        assert_eq!(blobs.get(&base), Some(&BlobKind::PatchBase));
        assert_eq!(blobs.len(), 4);
    }

    #[test]
    fn missing_and_damaged_blobs_are_reported_and_the_walk_goes_on() {
        let (backend, repo) = repo();
        let (snap, _) = file_snapshot(&repo);
        repo.flush().unwrap();
        // Damage the pack holding the trees and pages.
        let root = load_tree(&repo, &snap.root).unwrap();
        let sub_id = root.get(b"sub").unwrap().subtree.unwrap();
        let (pack, entry) = repo.locate_blob(&sub_id).unwrap().unwrap();
        assert!(backend.corrupt(
            &cairn_store::Handle::new(cairn_store::ObjectKind::Pack, &pack),
            entry.offset as usize + 3,
            0x10,
        ));
        // And reference a blob the repository does not have.
        let mut tree = root.clone();
        let mut ghost = Node::new(b"ghost".to_vec(), NodeKind::File);
        ghost.content = Some(Content::Inline(vec![Extent {
            len: 1,
            blob: Some(Id([0xee; 32])),
        }]));
        tree.nodes.push(ghost);
        tree.sort();
        // The new root goes to a fresh pack, which is intact.
        let (root2, _) = save_tree(&repo, &tree).unwrap();
        repo.flush().unwrap();
        let mut missing = Vec::new();
        let mut damaged = Vec::new();
        Walker::new(&repo)
            .walk_snapshot::<TestStop>(
                &Id([3; 32]),
                &snapshot(SnapshotKind::Files, root2),
                &mut |v| {
                    match v {
                        Visit::Blob(r) if r.location.is_none() => missing.push(r.id),
                        Visit::Blob(_) => {}
                        Visit::Damaged(d) => damaged.push(d.id),
                    }
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(missing, vec![Id([0xee; 32])]);
        assert_eq!(damaged, vec![sub_id]);
    }

    #[test]
    fn a_visitor_error_stops_the_walk() {
        let (_, repo) = repo();
        let (snap, _) = file_snapshot(&repo);
        repo.flush().unwrap();
        let mut calls = 0;
        let r = Walker::new(&repo).walk_snapshot::<WalkStopped>(&Id([4; 32]), &snap, &mut |_| {
            calls += 1;
            Err(WalkStopped)
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[derive(Debug)]
    struct WalkStopped;
    impl From<WalkError> for WalkStopped {
        fn from(_: WalkError) -> Self {
            WalkStopped
        }
    }
}
