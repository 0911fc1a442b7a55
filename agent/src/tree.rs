//! The file-tree format: one metadata blob per directory.
//!
//! A file backup is a tree of [`Tree`] blobs. Each holds one directory's
//! entries ([`Node`]s) sorted by the raw bytes of their names; a
//! subdirectory's node names the blob of its own tree, so an unchanged
//! directory is one unchanged blob id, which deduplicates and which `diff`
//! skips without loading. Trees are JSON (zstd in the store compresses the
//! repeated keys away): readable by another implementation with any JSON
//! library, and extensible by adding fields. The exact schema is in
//! docs/format.md §3.2.
//!
//! Trees come from the target, which cairn does not trust: [`Tree::decode`]
//! bounds every size and checks the structure (sorted, unique names; fields
//! matching each kind) and never panics. Whether a name is safe to create on
//! disk is a separate question ([`validate_name`]) that the restore asks of
//! every entry before it touches the file system.

use std::path::{Path, PathBuf};

use cairn_store::{BlobType, Id, Repository};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::chunklist::{Extent, ListError, ListReader, ListRoot};

/// Version of the tree format written here.
pub const TREE_VERSION: u32 = 1;
/// Largest tree blob read (a directory of some million entries).
pub const MAX_TREE_BYTES: usize = 512 << 20;
/// Files with more extents than this store them in a chunked list.
pub const MAX_INLINE_EXTENTS: usize = 256;
/// Largest name accepted (Linux allows 255 bytes; other systems a little more).
pub const MAX_NAME_LEN: usize = 1024;
/// Largest symlink target or hardlink path accepted.
pub const MAX_PATH_LEN: usize = 64 << 10;
/// Most extended attributes on one node, and largest value (Linux's limit).
pub const MAX_XATTRS: usize = 4096;
/// Largest extended attribute value (Linux's XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 64 << 10;

/// Errors reading trees.
#[derive(Debug, Error)]
pub enum TreeError {
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A stored extent list is damaged.
    #[error(transparent)]
    List(#[from] ListError),
    /// A tree blob does not parse or breaks a rule of the format.
    #[error("damaged tree {tree}: {reason}")]
    Damaged {
        /// The tree blob.
        tree: Id,
        /// What is wrong.
        reason: String,
    },
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A further name of a file seen earlier in the same backup.
    Hardlink,
    /// A character device.
    Chardev,
    /// A block device.
    Blockdev,
    /// A named pipe.
    Fifo,
    /// A Unix socket (recorded, not restored).
    Socket,
}

/// A point in time: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "(i64, u32)", into = "(i64, u32)")]
pub struct Time {
    /// Seconds since 1970-01-01 UTC (negative before).
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

impl From<(i64, u32)> for Time {
    fn from((sec, nsec): (i64, u32)) -> Self {
        Time { sec, nsec }
    }
}

impl From<Time> for (i64, u32) {
    fn from(t: Time) -> Self {
        (t.sec, t.nsec)
    }
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Its name, such as `user.comment` or `system.posix_acl_access`.
    pub name: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// Where a regular file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The extents, in the node itself (files of up to
    /// [`MAX_INLINE_EXTENTS`] chunks).
    Inline(Vec<Extent>),
    /// A chunked extent list (docs/format.md §3.1).
    List(ListRoot),
}

impl Content {
    /// No bytes.
    pub fn empty() -> Self {
        Content::Inline(Vec::new())
    }

    /// Calls `f` with every extent in order (loading list pages as needed);
    /// stops at the first error.
    pub fn for_each_extent<E: From<TreeError>>(
        &self,
        repo: &Repository,
        mut f: impl FnMut(Extent) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Content::Inline(extents) => extents.iter().try_for_each(|e| f(*e)),
            Content::List(root) => {
                let mut reader = ListReader::new(repo, root).map_err(TreeError::from)?;
                while let Some(e) = reader.next_extent().map_err(TreeError::from)? {
                    f(e)?;
                }
                Ok(())
            }
        }
    }
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The name (raw bytes: Unix names need not be UTF-8).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, when the id resolved at backup time.
    pub user: Option<String>,
    /// Group name, when the id resolved at backup time.
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Time,
    /// Access time.
    pub atime: Time,
    /// Status change time.
    pub ctime: Time,
    /// Size in bytes (regular files; 0 for directories).
    pub size: u64,
    /// Inode number at backup time (change detection, hardlinks).
    pub inode: u64,
    /// Device of the file system at backup time.
    pub device: u64,
    /// Number of hard links at backup time.
    pub nlink: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Symlink target, for symlinks.
    pub target: Option<Vec<u8>>,
    /// For a hardlink: the path of the first name of the file, relative to
    /// the snapshot root, components joined by `/`.
    pub link: Option<Vec<u8>>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// For a regular file: its bytes.
    pub content: Option<Content>,
    /// For a directory: its tree blob.
    pub subtree: Option<Id>,
}

impl Node {
    /// A node of `kind` named `name` with every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Time::default(),
            atime: Time::default(),
            ctime: Time::default(),
            size: 0,
            inode: 0,
            device: 0,
            nlink: 0,
            rdev: 0,
            target: None,
            link: None,
            xattrs: Vec::new(),
            content: None,
            subtree: None,
        }
    }

    /// The name as a path component.
    pub fn name_path(&self) -> &Path {
        bytes_path(&self.name)
    }
}

/// One directory's entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

/// Raw bytes as a path (Unix paths are bytes).
pub fn bytes_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// Joins a relative path (bytes) and a name with `/`.
pub fn join_bytes(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + name.len() + 1);
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Splits a relative path into its non-empty components.
pub fn split_path(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect()
}

/// Whether `name` may be created as one directory entry: not empty, not
/// `.` or `..`, no `/` or NUL, at most [`MAX_NAME_LEN`] bytes. Returns why
/// not.
pub fn validate_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name == b"." || name == b".." {
        return Err("name is . or ..");
    }
    if name.contains(&b'/') {
        return Err("name contains '/'");
    }
    if name.contains(&0) {
        return Err("name contains NUL");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name too long");
    }
    Ok(())
}

/// The JSON shape of a node (docs/format.md §3.2).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_bytes: Option<Vec<u8>>,
    #[serde(rename = "type")]
    kind: Option<NodeKind>,
    mode: u32,
    uid: u32,
    gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    mtime: Time,
    atime: Time,
    ctime: Time,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    device: u64,
    #[serde(default)]
    nlink: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    rdev: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<XattrJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extents: Option<Vec<(u64, Option<Id>)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    list: Option<ListRoot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subtree: Option<Id>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct XattrJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_bytes: Option<Vec<u8>>,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct TreeJson {
    version: u32,
    nodes: Vec<NodeJson>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Bytes as a string when they are UTF-8, else as an explicit byte array.
fn split_bytes(bytes: Option<Vec<u8>>) -> (Option<String>, Option<Vec<u8>>) {
    match bytes {
        None => (None, None),
        Some(b) => match String::from_utf8(b) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.into_bytes())),
        },
    }
}

/// The inverse of [`split_bytes`]; both present is an error.
fn join_fields(s: Option<String>, b: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, &'static str> {
    match (s, b) {
        (Some(_), Some(_)) => Err("both a string and a byte form of one field"),
        (Some(s), None) => Ok(Some(s.into_bytes())),
        (None, b) => Ok(b),
    }
}

impl From<&Node> for NodeJson {
    fn from(n: &Node) -> Self {
        let (name, name_bytes) = split_bytes(Some(n.name.clone()));
        let (target, target_bytes) = split_bytes(n.target.clone());
        let (link, link_bytes) = split_bytes(n.link.clone());
        let (extents, list) = match &n.content {
            None => (None, None),
            Some(Content::Inline(ext)) => {
                (Some(ext.iter().map(|e| (e.len, e.blob)).collect()), None)
            }
            Some(Content::List(root)) => (None, Some(*root)),
        };
        NodeJson {
            name,
            name_bytes,
            kind: Some(n.kind),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            mtime: n.mtime,
            atime: n.atime,
            ctime: n.ctime,
            size: n.size,
            inode: n.inode,
            device: n.device,
            nlink: n.nlink,
            rdev: n.rdev,
            target,
            target_bytes,
            link,
            link_bytes,
            xattrs: n.xattrs.iter().map(XattrJson::from).collect(),
            extents,
            list,
            subtree: n.subtree,
        }
    }
}

impl From<&Xattr> for XattrJson {
    fn from(x: &Xattr) -> Self {
        let (name, name_bytes) = split_bytes(Some(x.name.clone()));
        XattrJson {
            name,
            name_bytes,
            value: hex::encode(&x.value),
        }
    }
}

impl TryFrom<XattrJson> for Xattr {
    type Error = &'static str;
    fn try_from(x: XattrJson) -> Result<Self, Self::Error> {
        let name = join_fields(x.name, x.name_bytes)?.ok_or("xattr without a name")?;
        if x.value.len() > 2 * MAX_XATTR_VALUE {
            return Err("xattr value too large");
        }
        let value = hex::decode(&x.value).map_err(|_| "xattr value is not hex")?;
        Ok(Xattr { name, value })
    }
}

impl TryFrom<NodeJson> for Node {
    type Error = &'static str;
    fn try_from(j: NodeJson) -> Result<Self, Self::Error> {
        let name = join_fields(j.name, j.name_bytes)?.ok_or("node without a name")?;
        let kind = j.kind.ok_or("node without a type")?;
        let target = join_fields(j.target, j.target_bytes)?;
        let link = join_fields(j.link, j.link_bytes)?;
        if j.xattrs.len() > MAX_XATTRS {
            return Err("too many xattrs");
        }
        let xattrs = j
            .xattrs
            .into_iter()
            .map(Xattr::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let content = match (j.extents, j.list) {
            (Some(_), Some(_)) => return Err("both inline extents and a list"),
            (Some(e), None) if e.len() > 4 * MAX_INLINE_EXTENTS => {
                return Err("too many inline extents");
            }
            (Some(e), None) => Some(Content::Inline(
                e.into_iter()
                    .map(|(len, blob)| Extent { len, blob })
                    .collect(),
            )),
            (None, Some(root)) => Some(Content::List(root)),
            (None, None) => None,
        };
        let node = Node {
            name,
            kind,
            mode: j.mode,
            uid: j.uid,
            gid: j.gid,
            user: j.user,
            group: j.group,
            mtime: j.mtime,
            atime: j.atime,
            ctime: j.ctime,
            size: j.size,
            inode: j.inode,
            device: j.device,
            nlink: j.nlink,
            rdev: j.rdev,
            target,
            link,
            xattrs,
            content,
            subtree: j.subtree,
        };
        check_node(&node)?;
        Ok(node)
    }
}

/// Bounds and the fields each kind needs.
fn check_node(n: &Node) -> Result<(), &'static str> {
    if n.name.is_empty() || n.name.len() > MAX_NAME_LEN {
        return Err("name empty or too long");
    }
    if n.mtime.nsec >= 1_000_000_000 || n.atime.nsec >= 1_000_000_000 {
        return Err("nanoseconds out of range");
    }
    let path_ok = |p: &Option<Vec<u8>>| p.as_ref().is_some_and(|p| p.len() <= MAX_PATH_LEN);
    match n.kind {
        NodeKind::File if n.content.is_none() => Err("file without content"),
        NodeKind::Dir if n.subtree.is_none() => Err("directory without a subtree"),
        NodeKind::Symlink if !path_ok(&n.target) => Err("symlink without a valid target"),
        NodeKind::Hardlink if !path_ok(&n.link) => Err("hardlink without a valid link"),
        _ => Ok(()),
    }
}

impl Tree {
    /// The JSON bytes of the tree (deterministic: same tree, same bytes).
    pub fn encode(&self) -> Vec<u8> {
        let json = TreeJson {
            version: TREE_VERSION,
            nodes: self.nodes.iter().map(NodeJson::from).collect(),
        };
        // Serializing plain structs of strings and numbers to a Vec cannot
        // fail; an empty tree is the harmless fallback if it ever did.
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// Parses and checks a tree blob `id`.
    pub fn decode(id: &Id, bytes: &[u8]) -> Result<Tree, TreeError> {
        let damaged = |reason: String| TreeError::Damaged { tree: *id, reason };
        if bytes.len() > MAX_TREE_BYTES {
            return Err(damaged(format!("{} bytes is too large", bytes.len())));
        }
        let json: TreeJson = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if json.version != TREE_VERSION {
            return Err(damaged(format!("unknown tree version {}", json.version)));
        }
        let nodes = json
            .nodes
            .into_iter()
            .map(Node::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| damaged(e.to_string()))?;
        if nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(damaged("names not sorted or not unique".into()));
        }
        Ok(Tree { nodes })
    }

    /// Sorts the nodes by name (writers call this before saving).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The node named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .and_then(|i| self.nodes.get(i))
    }
}

/// Stores a tree; returns its id and how many bytes were new.
pub fn save_tree(repo: &Repository, tree: &Tree) -> Result<(Id, u64), cairn_store::Error> {
    let out = repo.save_blob(BlobType::Meta, &tree.encode())?;
    Ok((out.id, out.stored_len))
}

/// Loads and checks the tree blob `id`.
pub fn load_tree(repo: &Repository, id: &Id) -> Result<Tree, TreeError> {
    Tree::decode(id, &repo.load_blob(id)?)
}

/// The node at `path` (relative to the tree `root`, components joined by
/// `/`), or `None` when there is none.
pub fn lookup(repo: &Repository, root: &Id, path: &[u8]) -> Result<Option<Node>, TreeError> {
    let components = split_path(path);
    let mut tree = load_tree(repo, root)?;
    for (i, name) in components.iter().enumerate() {
        let Some(node) = tree.get(name) else {
            return Ok(None);
        };
        if i + 1 == components.len() {
            return Ok(Some(node.clone()));
        }
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => tree = load_tree(repo, &sub)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// A path of the snapshot as a `PathBuf` rooted at `/`.
pub fn display_path(rel: &[u8]) -> PathBuf {
    Path::new("/").join(bytes_path(rel))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut file = Node::new(b"a\xff".to_vec(), NodeKind::File);
        file.content = Some(Content::Inline(vec![
            Extent {
                len: 10,
                blob: Some(Id([7; 32])),
            },
            Extent { len: 5, blob: None },
        ]));
        file.xattrs = vec![Xattr {
            name: b"user.x".to_vec(),
            value: vec![0, 1, 255],
        }];
        file.mtime = Time { sec: -5, nsec: 7 };
        let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
        dir.subtree = Some(Id([1; 32]));
        let mut link = Node::new(b"l".to_vec(), NodeKind::Symlink);
        link.target = Some(b"/x/\x80".to_vec());
        Tree {
            nodes: vec![file, dir, link],
        }
    }

    #[test]
    fn round_trips_including_non_utf8() {
        let t = sample();
        let bytes = t.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"name_bytes\":[97,255]"), "{text}");
        assert!(text.contains("\"target_bytes\""), "{text}");
        assert!(text.contains("\"name\":\"d\""), "{text}");
        assert_eq!(Tree::decode(&Id([0; 32]), &bytes).unwrap(), t);
    }

    #[test]
    fn refuses_unsorted_and_malformed() {
        let mut t = sample();
        t.nodes.swap(0, 1);
        assert!(Tree::decode(&Id([0; 32]), &t.encode()).is_err());
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"version\":2,\"nodes\":[]}",
            b"{\"version\":1,\"nodes\":[{\"type\":\"dir\",\"name\":\"x\",\"mode\":0,\"uid\":0,\"gid\":0,\"mtime\":[0,0],\"atime\":[0,0],\"ctime\":[0,0]}]}",
        ] {
            assert!(Tree::decode(&Id([0; 32]), bad).is_err());
        }
    }

    #[test]
    fn names_are_validated() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert!(validate_name(bad).is_err());
        }
        assert!(validate_name(b"...").is_ok());
        assert!(validate_name(b"\xff").is_ok());
    }
}
