//! Saving what is readable of damaged snapshots (`cairn repair snapshots`).
//!
//! A pack that was damaged on the target takes its blobs with it; every
//! snapshot reaching one of them then fails to restore in full. Repair
//! finds the damaged blobs ([`find_damaged_blobs`]: every blob the
//! snapshots reach that is missing from the index, or whose pack, read in
//! full, does not yield it intact — a patch whose base is damaged counts
//! too), and writes for each affected snapshot a new one without them
//! ([`repair_snapshot`]):
//!
//! - a file or disk chunk that is damaged becomes a run of zeros of the
//!   same length (a hole), so the file or disk keeps its size and every
//!   other byte; the path and the bytes lost are reported;
//! - a directory whose tree does not read is left out, and a file whose
//!   extent list does not read (a disk whose list does not read) is left
//!   out, since what they held is unknown; both are reported;
//! - a snapshot whose root does not read cannot be repaired: reported.
//!
//! Unchanged trees and lists keep their ids: a repair writes one new tree
//! per directory on the way to a change, and one page per level of a
//! changed list. The new snapshot keeps the original's time, host and
//! paths, and gets the tag [`REPAIRED_TAG`]; the damaged original stays
//! unless the caller removes it.

use std::collections::HashMap;

use cairn_store::{BlobEntry, BlobType, Id, Repository, Snapshot, SnapshotKind};
use serde::Serialize;
use thiserror::Error;

use crate::chunklist::{Extent, ListReader, ListRoot, ListWriter};
use crate::disk::{DiskError, DiskSet};
use crate::reach::{Visit, WalkError, Walker};
use crate::tree::{Content, Tree, TreeError, display_path, join_bytes, load_tree, save_tree};

/// The tag a repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// Damaged or missing blobs, with why.
pub type DamagedBlobs = HashMap<Id, String>;

/// Why a repair stopped (not damage, which it reports: the target, the
/// cache or an encoding failing).
#[derive(Debug, Error)]
pub enum RepairError {
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A disk set could not be encoded.
    #[error("cannot encode the repaired disk set: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Every blob `snapshots` reach that is missing or does not read: walks
/// them, then reads each pack they reach in full and tries every blob of
/// it they reach.
pub fn find_damaged_blobs(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
) -> Result<DamagedBlobs, RepairError> {
    let mut damaged = DamagedBlobs::new();
    let mut by_pack: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    let mut walker = Walker::new(repo);
    for (id, snapshot) in snapshots {
        walker.walk_snapshot::<RepairError>(id, snapshot, &mut |v| {
            match v {
                Visit::Blob(r) => match r.location {
                    Some((pack, entry)) => by_pack.entry(pack).or_default().push(entry),
                    None => {
                        damaged.insert(r.id, "missing from the index".into());
                    }
                },
                Visit::Damaged(d) => {
                    damaged.insert(d.id, d.reason.clone());
                }
            }
            Ok(())
        })?;
    }
    let mut packs: Vec<_> = by_pack.into_iter().collect();
    packs.sort_by_key(|(pack, _)| *pack);
    for (pack, entries) in packs {
        for d in repo.damaged_blobs_in_pack(&pack, &entries)? {
            damaged.insert(d.id, d.reason);
        }
    }
    Ok(damaged)
}

/// The damaged blobs one snapshot reaches (walked on its own), in the order
/// met; empty when it restores in full.
pub fn damage_reached(
    repo: &Repository,
    damaged: &DamagedBlobs,
    id: &Id,
    snapshot: &Snapshot,
) -> Result<Vec<Id>, RepairError> {
    let mut reached = Vec::new();
    Walker::new(repo).walk_snapshot::<RepairError>(id, snapshot, &mut |v| {
        match v {
            Visit::Blob(r) if damaged.contains_key(&r.id) => reached.push(r.id),
            Visit::Damaged(d) => reached.push(d.id),
            Visit::Blob(_) => {}
        }
        Ok(())
    })?;
    Ok(reached)
}

/// One thing a repair changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The file, directory or disk (`disk NAME`).
    pub path: String,
    /// What was done.
    pub what: String,
}

/// What repairing one snapshot did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRepair {
    /// The new root, or `None` when the snapshot's own root does not read
    /// (nothing to save).
    pub root: Option<Id>,
    /// What changed.
    pub changes: Vec<Change>,
}

/// Writes the repaired root of `snapshot` (its trees or disk set, and
/// extent lists, without `damaged` blobs) into `repo` and reports what
/// changed. The caller writes the snapshot manifest.
pub fn repair_snapshot(
    repo: &Repository,
    damaged: &DamagedBlobs,
    snapshot: &Snapshot,
) -> Result<SnapshotRepair, RepairError> {
    let mut r = Rewriter {
        repo,
        damaged,
        changes: Vec::new(),
        trees: HashMap::new(),
    };
    let root = match snapshot.kind {
        SnapshotKind::Files => r.tree(&snapshot.root, b"")?,
        SnapshotKind::Disk => r.disks(&snapshot.root)?,
    };
    Ok(SnapshotRepair {
        root,
        changes: r.changes,
    })
}

/// The repaired snapshot manifest: `snapshot` with its new root and the
/// [`REPAIRED_TAG`].
pub fn repaired_manifest(snapshot: &Snapshot, root: Id) -> Snapshot {
    let mut s = snapshot.clone();
    s.root = root;
    if !s.tags.iter().any(|t| t == REPAIRED_TAG) {
        s.tags.push(REPAIRED_TAG.into());
    }
    s
}

/// What became of an extent list.
enum ListFix {
    /// Nothing in it was damaged.
    Kept,
    /// Rewritten with damaged chunks as zeros: the new root, the bytes and
    /// chunks zeroed.
    Replaced(ListRoot, u64, u64),
    /// A page of it does not read.
    Lost(String),
}

struct Rewriter<'r> {
    repo: &'r Repository,
    damaged: &'r DamagedBlobs,
    changes: Vec<Change>,
    /// Trees already rewritten: old id to new (`None`: left out).
    trees: HashMap<Id, Option<Id>>,
}

/// The reason of a damage error, or the error when it is not damage.
fn damage_reason(e: cairn_store::Error) -> Result<String, RepairError> {
    if e.is_damage() {
        Ok(e.to_string())
    } else {
        Err(e.into())
    }
}

fn tree_reason(e: TreeError) -> Result<String, RepairError> {
    match e {
        TreeError::Store(s) | TreeError::List(crate::chunklist::ListError::Store(s)) => {
            damage_reason(s)
        }
        other => Ok(other.to_string()),
    }
}

fn list_reason(e: crate::chunklist::ListError) -> Result<String, RepairError> {
    tree_reason(TreeError::List(e))
}

impl Rewriter<'_> {
    fn change(&mut self, path: String, what: String) {
        self.changes.push(Change { path, what });
    }

    fn is_damaged(&self, extent: &Extent) -> bool {
        extent.blob.is_some_and(|b| self.damaged.contains_key(&b))
    }

    /// The repaired tree `id` at `path`; `None` when it does not read.
    fn tree(&mut self, id: &Id, path: &[u8]) -> Result<Option<Id>, RepairError> {
        if let Some(done) = self.trees.get(id) {
            return Ok(*done);
        }
        let shown = || display_path(path).display().to_string();
        let loaded = match self.damaged.get(id) {
            Some(reason) => Err(reason.clone()),
            None => match load_tree(self.repo, id) {
                Ok(t) => Ok(t),
                Err(e) => Err(tree_reason(e)?),
            },
        };
        let tree = match loaded {
            Ok(t) => t,
            Err(reason) => {
                self.change(
                    shown(),
                    format!("directory unreadable, left out ({reason})"),
                );
                self.trees.insert(*id, None);
                return Ok(None);
            }
        };
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let child = join_bytes(path, &node.name);
            if let Some(sub) = node.subtree {
                match self.tree(&sub, &child)? {
                    Some(new) if new == sub => {}
                    Some(new) => {
                        node.subtree = Some(new);
                        changed = true;
                    }
                    None => {
                        changed = true;
                        continue;
                    }
                }
            }
            if let Some(content) = &node.content {
                match self.content(content, &child)? {
                    None => {}
                    Some(Some(new)) => {
                        node.content = Some(new);
                        changed = true;
                    }
                    Some(None) => {
                        changed = true;
                        continue;
                    }
                }
            }
            nodes.push(node);
        }
        let new = if changed {
            save_tree(self.repo, &Tree { nodes })?.0
        } else {
            *id
        };
        self.trees.insert(*id, Some(new));
        Ok(Some(new))
    }

    /// A file's repaired content: `None` when unchanged, `Some(None)` when
    /// the file must be left out.
    fn content(
        &mut self,
        content: &Content,
        path: &[u8],
    ) -> Result<Option<Option<Content>>, RepairError> {
        let shown = display_path(path).display().to_string();
        match content {
            Content::Inline(extents) => {
                let (mut bytes, mut chunks) = (0u64, 0u64);
                let fixed: Vec<Extent> = extents
                    .iter()
                    .map(|e| {
                        if self.is_damaged(e) {
                            bytes += e.len;
                            chunks += 1;
                            Extent {
                                len: e.len,
                                blob: None,
                            }
                        } else {
                            *e
                        }
                    })
                    .collect();
                if chunks == 0 {
                    return Ok(None);
                }
                self.change(shown, zeroed(bytes, chunks));
                Ok(Some(Some(Content::Inline(fixed))))
            }
            Content::List(root) => match self.list(root)? {
                ListFix::Kept => Ok(None),
                ListFix::Replaced(new, bytes, chunks) => {
                    self.change(shown, zeroed(bytes, chunks));
                    Ok(Some(Some(Content::List(new))))
                }
                ListFix::Lost(reason) => {
                    self.change(
                        shown,
                        format!("extent list unreadable, file left out ({reason})"),
                    );
                    Ok(Some(None))
                }
            },
        }
    }

    /// Checks an extent list and rewrites it when a chunk is damaged.
    fn list(&mut self, root: &ListRoot) -> Result<ListFix, RepairError> {
        if let Some(reason) = self.damaged.get(&root.page) {
            return Ok(ListFix::Lost(reason.clone()));
        }
        let mut any = false;
        let scanned = ListReader::new(self.repo, root).and_then(|mut reader| {
            while let Some(e) = reader.next_extent()? {
                any |= self.is_damaged(&e);
            }
            Ok(())
        });
        if let Err(e) = scanned {
            return Ok(ListFix::Lost(list_reason(e)?));
        }
        if !any {
            return Ok(ListFix::Kept);
        }
        // The list read whole a moment ago: failing now is the target's.
        let mut reader = ListReader::new(self.repo, root).map_err(|e| reread(root, e))?;
        let mut writer = ListWriter::new(self.repo);
        let (mut bytes, mut chunks, mut zeros) = (0u64, 0u64, 0u64);
        loop {
            let next = reader.next_extent().map_err(|e| reread(root, e))?;
            let Some(mut e) = next else { break };
            if self.is_damaged(&e) {
                bytes += e.len;
                chunks += 1;
                e.blob = None;
            }
            // Adjacent runs of zeros are one extent (docs/format.md §3.1).
            if e.blob.is_none() {
                zeros += e.len;
                continue;
            }
            if zeros > 0 {
                writer.push(Extent {
                    len: zeros,
                    blob: None,
                })?;
                zeros = 0;
            }
            writer.push(e)?;
        }
        if zeros > 0 {
            writer.push(Extent {
                len: zeros,
                blob: None,
            })?;
        }
        Ok(ListFix::Replaced(writer.finish()?, bytes, chunks))
    }

    /// The repaired disk set at `root`; `None` when it does not read.
    fn disks(&mut self, root: &Id) -> Result<Option<Id>, RepairError> {
        let loaded = match self.damaged.get(root) {
            Some(reason) => Err(reason.clone()),
            None => match DiskSet::load(self.repo, root) {
                Ok(set) => Ok(set),
                Err(DiskError::Store(s)) => Err(damage_reason(s)?),
                Err(DiskError::List(l)) => Err(list_reason(l)?),
                Err(other) => Err(other.to_string()),
            },
        };
        let mut set = match loaded {
            Ok(set) => set,
            Err(reason) => {
                self.change("/".into(), format!("disk set unreadable ({reason})"));
                return Ok(None);
            }
        };
        let mut changed = false;
        let mut kept = Vec::with_capacity(set.disks.len());
        for mut disk in std::mem::take(&mut set.disks) {
            let shown = format!("disk {}", disk.name);
            match self.list(&disk.extents)? {
                ListFix::Kept => {}
                ListFix::Replaced(new, bytes, chunks) => {
                    self.change(shown, zeroed(bytes, chunks));
                    disk.extents = new;
                    changed = true;
                }
                ListFix::Lost(reason) => {
                    self.change(
                        shown,
                        format!("extent list unreadable, disk left out ({reason})"),
                    );
                    changed = true;
                    continue;
                }
            }
            kept.push(disk);
        }
        set.disks = kept;
        if !changed {
            return Ok(Some(*root));
        }
        let json = serde_json::to_vec(&set)?;
        Ok(Some(self.repo.save_blob(BlobType::Meta, &json)?.id))
    }
}

/// An error reading again a list that read before.
fn reread(root: &ListRoot, e: crate::chunklist::ListError) -> RepairError {
    match e {
        crate::chunklist::ListError::Store(s) => RepairError::Store(s),
        other => RepairError::Store(cairn_store::Error::corrupt(
            format!("extent list {}", root.page),
            other.to_string(),
        )),
    }
}

/// The report of zeroed chunks.
fn zeroed(bytes: u64, chunks: u64) -> String {
    format!(
        "{chunks} damaged chunk(s), {}, replaced by zeros",
        crate::units::format_bytes(bytes)
    )
}
