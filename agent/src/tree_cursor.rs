//! A file snapshot's entries one at a time, in archive order.
//!
//! [`treediff::walk`](crate::treediff::walk) calls back for every entry,
//! which suits a listing. A writer that must interleave two walks of the
//! same tree (the tar export reads file data ahead of the entries it is
//! writing) needs a pull-style iterator instead: [`TreeCursor`] yields each
//! entry before its directory's children (pre-order), names sorted, holding
//! only the trees on the path from the root, so memory is bounded by depth
//! times directory size, never by the number of files.
//!
//! The snapshot comes from a target cairn does not trust, so every name is
//! checked with [`validate_name`] on the way: an entry whose name could not
//! be created as one directory entry (`..`, a `/` inside it, NUL) is still
//! yielded, marked [`Entry::refused`], so the caller can report it, but a
//! refused directory is never entered.

use cairn_store::{Id, Repository};

use crate::tree::{Node, NodeKind, TreeError, join_bytes, load_tree, validate_name};

/// One entry of the snapshot.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its path relative to the snapshot root, components joined by `/`.
    pub path: Vec<u8>,
    /// Its metadata (and content or subtree).
    pub node: Node,
    /// Why its name is unsafe, when it is.
    pub refused: Option<&'static str>,
}

/// Pre-order iterator over a file snapshot's tree.
pub struct TreeCursor<'r> {
    repo: &'r Repository,
    /// For each directory being walked: its path and its remaining entries.
    stack: Vec<(Vec<u8>, std::vec::IntoIter<Node>)>,
    /// The root tree, until it is loaded by the first `next`.
    root: Option<Id>,
}

impl<'r> TreeCursor<'r> {
    /// A cursor at the start of the tree `root`.
    pub fn new(repo: &'r Repository, root: Id) -> Self {
        TreeCursor {
            repo,
            stack: Vec::new(),
            root: Some(root),
        }
    }

    fn enter(&mut self, path: Vec<u8>, tree: &Id) -> Result<(), TreeError> {
        let nodes = load_tree(self.repo, tree)?.nodes;
        self.stack.push((path, nodes.into_iter()));
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>, TreeError> {
        if let Some(root) = self.root.take() {
            self.enter(Vec::new(), &root)?;
        }
        loop {
            let Some((dir, nodes)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(node) = nodes.next() else {
                self.stack.pop();
                continue;
            };
            let path = join_bytes(dir, &node.name);
            let refused = validate_name(&node.name).err();
            if let (NodeKind::Dir, Some(sub), None) = (node.kind, node.subtree, refused) {
                self.enter(path.clone(), &sub)?;
            }
            return Ok(Some(Entry {
                path,
                node,
                refused,
            }));
        }
    }
}

impl Iterator for TreeCursor<'_> {
    type Item = Result<Entry, TreeError>;

    /// The next entry; after an error, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
