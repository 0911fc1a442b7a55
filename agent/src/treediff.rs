//! Listing a snapshot's tree (`cairn ls`) and comparing two (`cairn diff`).
//!
//! Both walk trees depth first in name order, so output is stable. `diff`
//! compares two trees side by side and never loads a subtree whose id is the
//! same on both sides: identical content gives identical ids, so the cost of
//! a diff follows what changed, not the size of the snapshots.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use cairn_store::{Id, Repository};

use crate::tree::{Node, NodeKind, TreeError, display_path, join_bytes, load_tree};

/// Calls `visitor` with every path under `root` (absolute, as backed up)
/// and its node, depth first in name order, a directory before its entries.
pub fn walk(
    repo: &Repository,
    root: &Id,
    visitor: &mut dyn FnMut(&Path, &Node) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    walk_tree(repo, root, b"", visitor)
}

fn walk_tree(
    repo: &Repository,
    tree: &Id,
    rel: &[u8],
    visitor: &mut dyn FnMut(&Path, &Node) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    for node in load_tree(repo, tree)?.nodes {
        let child = join_bytes(rel, &node.name);
        visitor(&display_path(&child), &node)?;
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            walk_tree(repo, &sub, &child, visitor)?;
        }
    }
    Ok(())
}

/// How a path differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// In both, of the same kind, but different.
    Modified {
        /// The bytes (files), target (symlinks, hardlinks) or device number.
        content: bool,
        /// Mode, owner, mtime or extended attributes.
        metadata: bool,
    },
    /// In both, but of different kinds (a file became a directory...).
    TypeChanged,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path (absolute, as backed up).
    pub path: PathBuf,
    /// What changed.
    pub kind: ChangeKind,
}

/// The differences from the tree `a` to the tree `b`, in path order. A
/// directory added or removed is listed with everything below it.
pub fn diff(repo: &Repository, a: &Id, b: &Id) -> Result<Vec<Change>, TreeError> {
    let mut out = Vec::new();
    diff_trees(repo, a, b, b"", &mut out)?;
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: &Id,
    b: &Id,
    rel: &[u8],
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (load_tree(repo, a)?, load_tree(repo, b)?);
    let (mut ia, mut ib) = (
        ta.nodes.into_iter().peekable(),
        tb.nodes.into_iter().peekable(),
    );
    loop {
        let step = match (ia.peek(), ib.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        match (
            ia.next_if(|_| step != Ordering::Greater),
            ib.next_if(|_| step != Ordering::Less),
        ) {
            (Some(x), Some(y)) => diff_nodes(repo, &x, &y, rel, out)?,
            (Some(x), None) => whole(repo, &x, rel, ChangeKind::Removed, out)?,
            (None, Some(y)) => whole(repo, &y, rel, ChangeKind::Added, out)?,
            (None, None) => return Ok(()),
        }
    }
}

/// Lists a node and, for a directory, everything below it, as `kind`.
fn whole(
    repo: &Repository,
    node: &Node,
    rel: &[u8],
    kind: ChangeKind,
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    let child = join_bytes(rel, &node.name);
    out.push(Change {
        path: display_path(&child),
        kind,
    });
    if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
        walk_tree(repo, &sub, &child, &mut |path, _| {
            out.push(Change {
                path: path.to_path_buf(),
                kind,
            });
            Ok(())
        })?;
    }
    Ok(())
}

fn diff_nodes(
    repo: &Repository,
    x: &Node,
    y: &Node,
    rel: &[u8],
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    let child = join_bytes(rel, &x.name);
    if x.kind != y.kind {
        out.push(Change {
            path: display_path(&child),
            kind: ChangeKind::TypeChanged,
        });
        return Ok(());
    }
    let content = content_differs(x, y);
    let metadata = metadata_differs(x, y);
    if content || metadata {
        out.push(Change {
            path: display_path(&child),
            kind: ChangeKind::Modified { content, metadata },
        });
    }
    if let (Some(a), Some(b)) = (x.subtree, y.subtree) {
        diff_trees(repo, &a, &b, &child, out)?;
    }
    Ok(())
}

/// Whether what a node holds differs (not its metadata).
fn content_differs(x: &Node, y: &Node) -> bool {
    match x.kind {
        NodeKind::File => x.size != y.size || x.content != y.content,
        NodeKind::Symlink => x.target != y.target,
        NodeKind::Hardlink => x.link != y.link,
        NodeKind::Chardev | NodeKind::Blockdev => x.rdev != y.rdev,
        NodeKind::Dir | NodeKind::Fifo | NodeKind::Socket => false,
    }
}

/// Whether the metadata a restore sets differs (mode, owner, mtime, xattrs).
fn metadata_differs(x: &Node, y: &Node) -> bool {
    x.mode != y.mode
        || x.uid != y.uid
        || x.gid != y.gid
        || x.mtime != y.mtime
        || x.xattrs != y.xattrs
}
