//! File-tree backup: walk paths, chunk and store changed files, write one
//! tree blob per directory (format in [`crate::tree`]).
//!
//! # Pipeline
//! One *walker* (the calling thread) lists directories in sorted order,
//! takes every entry's metadata and decides what needs reading: a regular
//! file whose size, mtime, ctime, inode and device match the parent
//! snapshot's node keeps that node's content without being opened. Files to
//! read go over a bounded channel to `threads` *workers*, which read, chunk
//! and hash them, each answering on the file's own one-shot channel; new
//! chunks go, a group at a time, to `threads` *compressors* that compress,
//! encrypt and store them, so that every core compresses to the end even
//! when one large file is left to read. When a
//! directory's listing is done, the walker hands it, with those pending
//! answers, to one *finalizer* over another bounded channel; directories
//! arrive there in post-order (children before parents), so the finalizer
//! can fill in each file's content and each subdirectory's tree id, then
//! store the tree. On a cold cache the walker would wait on every directory
//! listing and the workers on every file's first read: two helpers list
//! the next directories ahead of the walker ([`crate::dir_ahead`]), and the
//! walker asks the kernel to read each file it queues (`WILLNEED`). Output
//! order is fixed by the walk, never by which worker finishes first: the
//! same input gives the same tree ids. Memory is bounded by the channels
//! and the widths of the directories on the current path.
//!
//! # Errors
//! A failure of the repository aborts the backup ([`BackupError`]). Problems
//! with single files (unreadable, vanished, changed while read) are
//! [`Warning`]s: an unreadable file is left out, a file that changed while
//! read is stored as read, and the backup goes on.
//!
//! # Snapshot root
//! Paths are made absolute (lexically: `.` and `..` are resolved without
//! following symlinks) and kept whole, as restic does: backing up `/home/a`
//! gives a root tree with `home`, whose tree holds `a`. The directories on
//! the way (`home`) carry their real metadata but only the named children.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use cairn_chunker::{Chunker, StreamChunker};
use cairn_store::group::TARGET_GROUP_LEN;
use cairn_store::{BlobType, Id, Repository};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use thiserror::Error;

use crate::chunklist::{Extent, ListWriter};
use crate::dir_ahead::{self, DirAhead};
use crate::tree::{
    Content, MAX_INLINE_EXTENTS, MAX_XATTR_VALUE, MAX_XATTRS, Node, NodeKind, Time, Tree,
    TreeError, Xattr, join_bytes, load_tree, save_tree,
};
pub use crate::walk::Warning;

/// Files up to this size are read with one read into a buffer; larger ones
/// are streamed through the chunker's buffer.
const SMALL_FILE: u64 = 1 << 20;

/// The signature a valid `CACHEDIR.TAG` starts with (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Directories waiting for the finalizer.
const DIR_QUEUE: usize = 64;

/// Called with a file's path just before a worker opens it (tests use it to
/// make a file vanish between listing and reading).
pub type ReadHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// How to back up.
#[derive(Clone, Default)]
pub struct FileBackupOptions {
    /// Do not descend into directories on other file systems than the named
    /// path's (their mount points are kept, empty).
    pub one_file_system: bool,
    /// Glob patterns of paths to leave out. A pattern without `/` matches a
    /// name at any depth (`*.tmp`); one starting with `/` matches absolute
    /// paths (`/var/cache/**`); others match path endings (`build/out`).
    /// `*` does not cross `/`, `**` does.
    pub excludes: Vec<String>,
    /// Leave out directories holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Workers that read and chunk files (0: one per core).
    pub threads: usize,
    /// Test hook, see [`ReadHook`].
    pub before_read: Option<ReadHook>,
    /// Test hook called with a file's path after a worker has opened and
    /// examined it, just before reading it (tests shrink or grow the file
    /// there: a change while it is read, at a known point).
    pub after_open: Option<ReadHook>,
}

impl std::fmt::Debug for FileBackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackupOptions")
            .field("one_file_system", &self.one_file_system)
            .field("excludes", &self.excludes)
            .field("exclude_caches", &self.exclude_caches)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default)]
pub struct FileBackupSummary {
    /// The root tree (for the snapshot's `root`).
    pub root: Id,
    /// Regular files in the snapshot (read or unchanged).
    pub files: u64,
    /// Bytes in all regular files of the snapshot (read or reused).
    pub bytes_total: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, hardlinks, devices, fifos and sockets.
    pub others: u64,
    /// Regular files taken from the parent snapshot without reading.
    pub files_unchanged: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Plaintext bytes of new data blobs.
    pub bytes_new: u64,
    /// Bytes stored for new blobs (data, trees and list pages).
    pub bytes_stored: u64,
    /// Chunks read (including all-zero ones, which store nothing).
    pub chunks: u64,
    /// Chunks that were new to the repository.
    pub chunks_new: u64,
    /// Problems with single files, sorted by path.
    pub warnings: Vec<Warning>,
}

/// Why a backup failed.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The repository (target) failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// The parent snapshot's trees could not be read.
    #[error("parent snapshot: {0}")]
    Parent(#[from] TreeError),
    /// A path named by the caller does not exist or cannot be examined.
    #[error("cannot back up {path}: {source}")]
    Named {
        /// The path as given.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An exclude pattern does not parse.
    #[error("invalid exclude pattern {pattern:?}: {message}")]
    Exclude {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// Nothing to back up.
    #[error("no paths to back up")]
    NoPaths,
    /// A worker thread stopped unexpectedly (a bug).
    #[error("internal error in the backup pipeline: {0}")]
    Internal(String),
}

/// Reads an exclude file: one pattern per line; blank lines and lines
/// starting with `#` are skipped, surrounding whitespace trimmed.
pub fn read_exclude_file(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Compiles exclude patterns (see [`FileBackupOptions::excludes`]).
fn compile_excludes(patterns: &[String]) -> Result<Option<GlobSet>, BackupError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let full = if pattern.starts_with('/') {
            pattern.clone()
        } else {
            format!("**/{pattern}")
        };
        let glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .build()
            .map_err(|e| BackupError::Exclude {
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| BackupError::Exclude {
        pattern: patterns.join(" "),
        message: e.to_string(),
    })
}

/// What the snapshot root holds: real paths, and the directories leading
/// to them.
enum Source {
    /// A path backed up whole.
    Real(PathBuf),
    /// A directory on the way to named paths: its real path (for metadata)
    /// and the named entries below it.
    Virtual(PathBuf, BTreeMap<Vec<u8>, Source>),
}

impl Source {
    /// The paths backed up whole, in the order the walker visits them.
    fn real_paths(&self) -> Vec<PathBuf> {
        match self {
            Source::Real(path) => vec![path.clone()],
            Source::Virtual(_, children) => {
                children.values().flat_map(Source::real_paths).collect()
            }
        }
    }
}

/// `path` made absolute, with `.` and `..` resolved lexically.
fn absolute_clean(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Builds the snapshot root from the named paths (which must exist).
fn build_root(paths: &[PathBuf]) -> Result<Source, BackupError> {
    if paths.is_empty() {
        return Err(BackupError::NoPaths);
    }
    let mut root = Source::Virtual(PathBuf::from("/"), BTreeMap::new());
    for path in paths {
        let named = |source| BackupError::Named {
            path: path.clone(),
            source,
        };
        let abs = absolute_clean(path).map_err(named)?;
        fs::symlink_metadata(&abs).map_err(named)?;
        insert_source(&mut root, &abs);
    }
    Ok(root)
}

fn insert_source(root: &mut Source, abs: &Path) {
    let names: Vec<&[u8]> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect();
    let mut node = root;
    let mut real = PathBuf::from("/");
    for name in names {
        real.push(std::ffi::OsStr::from_bytes(name));
        let Source::Virtual(_, children) = node else {
            return; // an ancestor is backed up whole already
        };
        node = children
            .entry(name.to_vec())
            .or_insert_with(|| Source::Virtual(real.clone(), BTreeMap::new()));
    }
    *node = Source::Real(abs.to_path_buf());
}

/// Backs up `paths` into `repo`; see the module docs. With `parent_root`
/// (the root tree of an earlier snapshot of the same paths), unchanged files
/// are not read. The caller flushes the repository and writes the snapshot.
pub fn backup_files(
    repo: &Repository,
    chunker: &Chunker,
    paths: &[PathBuf],
    parent_root: Option<Id>,
    opts: &FileBackupOptions,
) -> Result<FileBackupSummary, BackupError> {
    let root = build_root(paths)?;
    let excludes = compile_excludes(&opts.excludes)?;
    let parent = parent_root.map(|id| load_tree(repo, &id)).transpose()?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (work_tx, work_rx) = sync_channel::<FileJob>(threads * 4);
    let (dir_tx, dir_rx) = sync_channel::<DirJob>(DIR_QUEUE);
    let work_rx = Mutex::new(work_rx);
    let abort = AtomicBool::new(false);
    let ahead = DirAhead::new(root.real_paths(), excludes.clone(), dir_ahead::LEAD);
    let ctx = WorkerCtx {
        repo,
        chunker,
        hook: opts.before_read.clone(),
        after_open: opts.after_open.clone(),
        abort: &abort,
    };
    let (group_tx, group_rx) = sync_channel::<PendingGroup>(threads * 2);
    let group_rx = Mutex::new(group_rx);
    std::thread::scope(|scope| {
        let compressors: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| compressor(repo, &group_rx, &abort)))
            .collect();
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (ctx, work_rx, to_compress) = (&ctx, &work_rx, group_tx.clone());
                scope.spawn(move || worker(ctx, work_rx, to_compress))
            })
            .collect();
        // The workers hold the only senders: the compressors stop once
        // every worker is done.
        drop(group_tx);
        let finalizer = scope.spawn(|| finalize(repo, dir_rx, &abort));
        for _ in 0..dir_ahead::HELPERS {
            scope.spawn(|| ahead.run());
        }
        // The helpers return when the walk ends, however it ends.
        let _stop = StopOnDrop(&ahead);
        let mut walker = Walker {
            repo,
            opts,
            excludes,
            ahead: &ahead,
            work: work_tx,
            dirs: dir_tx,
            next_seq: 0,
            hardlinks: HashMap::new(),
            names: NameCache::default(),
            summary: FileBackupSummary::default(),
        };
        let walked = walker.walk_source(&root, b"", parent.as_ref(), 0);
        let summary = std::mem::take(&mut walker.summary);
        drop(walker); // closes both channels: the workers and the finalizer finish
        let finished = finalizer
            .join()
            .map_err(|_| BackupError::Internal("the finalizer panicked".into()))?;
        for w in workers {
            w.join()
                .map_err(|_| BackupError::Internal("a file reader panicked".into()))?;
        }
        let mut compressed = ChunkStats::default();
        let mut compress_failed = None;
        for c in compressors {
            match c.join() {
                Ok(Ok(stats)) => compressed.add(&stats),
                Ok(Err(e)) => compress_failed = compress_failed.or(Some(e)),
                Err(_) => return Err(BackupError::Internal("a compressor panicked".into())),
            }
        }
        // A failed save explains the errors it caused elsewhere (workers
        // stopped answering, the finalizer's channel closed, the walker's
        // too), so it takes precedence, then the finalizer's.
        if let Some(e) = compress_failed {
            return Err(e.into());
        }
        let (root_id, mut fin) = finished?;
        walked?;
        fin.chunks.add(&compressed);
        Ok(merge_summary(summary, root_id, fin))
    })
}

/// Stops the directory read-ahead when dropped.
struct StopOnDrop<'a>(&'a DirAhead);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn merge_summary(mut s: FileBackupSummary, root: Id, fin: FinalStats) -> FileBackupSummary {
    s.root = root;
    s.bytes_read += fin.chunks.bytes_read;
    s.bytes_new += fin.chunks.bytes_new;
    s.bytes_stored += fin.chunks.bytes_stored;
    s.chunks += fin.chunks.chunks;
    s.chunks_new += fin.chunks.chunks_new;
    s.files = s.files.saturating_sub(fin.omitted);
    s.warnings.extend(fin.warnings);
    s.warnings.sort_by(|a, b| a.path.cmp(&b.path));
    s
}

/// A node of a directory being listed, and what it still waits for.
struct PendingNode {
    node: Node,
    fill: Fill,
}

enum Fill {
    /// Complete.
    Done,
    /// A regular file being read by a worker.
    File(Receiver<Result<FileRead, BackupError>>),
    /// A directory: the sequence number of its [`DirJob`].
    Dir(u64),
}

/// A listed directory on its way to the finalizer.
struct DirJob {
    seq: u64,
    nodes: Vec<PendingNode>,
}

/// A file for a worker.
struct FileJob {
    path: PathBuf,
    reply: SyncSender<Result<FileRead, BackupError>>,
}

/// A worker's answer about one file.
struct FileRead {
    /// `None`: the file could not be read and is left out.
    content: Option<Content>,
    /// Its metadata when reading started, and the bytes read.
    meta: Option<Metadata>,
    size: u64,
    stats: ChunkStats,
    warning: Option<Warning>,
}

#[derive(Default, Clone, Copy)]
struct ChunkStats {
    bytes_read: u64,
    bytes_new: u64,
    bytes_stored: u64,
    chunks: u64,
    chunks_new: u64,
}

impl ChunkStats {
    fn add(&mut self, c: &ChunkStats) {
        self.bytes_read += c.bytes_read;
        self.bytes_new += c.bytes_new;
        self.bytes_stored += c.bytes_stored;
        self.chunks += c.chunks;
        self.chunks_new += c.chunks_new;
    }
}

/// User and group names by id, resolved once.
#[derive(Default)]
struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| group_name(gid))
            .clone()
    }
}

/// The outcome of one `getpwuid_r`/`getgrgid_r` call.
enum Lookup {
    Found(String),
    BufferTooSmall,
    Missing,
}

/// Retries a `get*_r` call with a growing buffer while it says ERANGE.
fn with_name_buffer(mut call: impl FnMut(&mut [libc::c_char]) -> Lookup) -> Option<String> {
    let mut len = 1024;
    while len <= 1 << 20 {
        let mut buf = vec![0 as libc::c_char; len];
        match call(&mut buf) {
            Lookup::Found(name) => return Some(name).filter(|n| !n.is_empty()),
            Lookup::Missing => return None,
            Lookup::BufferTooSmall => len *= 4,
        }
    }
    None
}

/// Turns a `get*_r` result into a [`Lookup`].
///
/// # Safety
/// When `rc == 0` and `found` is true, `name` must point to a NUL-terminated
/// string that lives as long as this call.
unsafe fn lookup_result(rc: libc::c_int, found: bool, name: *const libc::c_char) -> Lookup {
    if rc == libc::ERANGE {
        return Lookup::BufferTooSmall;
    }
    if rc != 0 || !found || name.is_null() {
        return Lookup::Missing;
    }
    // SAFETY: guaranteed by the caller.
    let name = unsafe { CStr::from_ptr(name) };
    Lookup::Found(name.to_string_lossy().into_owned())
}

fn user_name(uid: u32) -> Option<String> {
    with_name_buffer(|buf| {
        // SAFETY: `passwd` is plain old data; all-zero (null pointers) is a
        // valid value that getpwuid_r overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the
        // buffer's real length.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        // SAFETY: on success pw_name points into `buf`, alive here.
        unsafe { lookup_result(rc, !result.is_null(), pwd.pw_name) }
    })
}

fn group_name(gid: u32) -> Option<String> {
    with_name_buffer(|buf| {
        // SAFETY: `group` is plain old data; all-zero is a valid value that
        // getgrgid_r overwrites.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the
        // buffer's real length.
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        // SAFETY: on success gr_name points into `buf`, alive here.
        unsafe { lookup_result(rc, !result.is_null(), grp.gr_name) }
    })
}

fn time(sec: i64, nsec: i64) -> Time {
    Time {
        sec,
        nsec: u32::try_from(nsec).unwrap_or(0).min(999_999_999),
    }
}

/// Copies the `stat` fields into `node` (not names, content or kind).
fn fill_stat(node: &mut Node, meta: &Metadata) {
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.mtime = time(meta.mtime(), meta.mtime_nsec());
    // Access times are not recorded: reading a file during a backup moves
    // its atime, so recording it would make every tree blob differ from the
    // parent's on every run (borg also leaves atime out by default).
    node.atime = Time::default();
    node.ctime = time(meta.ctime(), meta.ctime_nsec());
    node.inode = meta.ino();
    node.device = meta.dev();
    node.nlink = meta.nlink();
    node.size = if meta.is_file() { meta.size() } else { 0 };
}

/// Whether a parent snapshot's node describes the same unchanged file.
fn unchanged(parent: &Node, node: &Node) -> bool {
    parent.kind == NodeKind::File
        && parent.content.is_some()
        && parent.size == node.size
        && parent.mtime == node.mtime
        && parent.ctime == node.ctime
        && parent.inode == node.inode
        && parent.device == node.device
}

/// Extended attributes of `path` (not following a symlink), sorted.
fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let len = rustix::fs::llistxattr_query(path)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; len];
    let got = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(got);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let len = rustix::fs::lgetxattr_query(path, name)?;
        let mut value = vec![0u8; len.min(MAX_XATTR_VALUE)];
        let got = if value.is_empty() {
            0
        } else {
            rustix::fs::lgetxattr(path, name, &mut value[..])?
        };
        value.truncate(got);
        out.push(Xattr {
            name: name.to_vec(),
            value,
        });
        if out.len() >= MAX_XATTRS {
            break;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether `dir` holds a valid `CACHEDIR.TAG`.
fn has_cachedir_tag(dir: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join("CACHEDIR.TAG"))
    else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    file.take(CACHEDIR_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .is_ok()
        && head == CACHEDIR_SIGNATURE
}

/// The walking thread's state.
struct Walker<'a> {
    repo: &'a Repository,
    opts: &'a FileBackupOptions,
    excludes: Option<GlobSet>,
    ahead: &'a DirAhead,
    work: SyncSender<FileJob>,
    dirs: SyncSender<DirJob>,
    next_seq: u64,
    /// First path (relative to the root) of each multiply-linked inode.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    names: NameCache,
    summary: FileBackupSummary,
}

impl Walker<'_> {
    fn warn(&mut self, path: &Path, message: impl std::fmt::Display) {
        self.summary.warnings.push(Warning::new(path, message));
    }

    /// Lists a source directory (real or virtual) and queues it; returns
    /// its sequence number. `root_dev` is the device of the named path
    /// being walked (0 in virtual directories).
    fn walk_source(
        &mut self,
        source: &Source,
        rel: &[u8],
        parent: Option<&Tree>,
        root_dev: u64,
    ) -> Result<u64, BackupError> {
        let nodes = match source {
            Source::Real(path) => {
                let dev = fs::symlink_metadata(path).map_or(0, |m| m.dev());
                self.list_dir(path, rel, parent, dev)?
            }
            Source::Virtual(_, children) => {
                let mut nodes = Vec::with_capacity(children.len());
                for (name, child) in children {
                    let child_rel = join_bytes(rel, name);
                    let parent_node = parent.and_then(|t| t.get(name));
                    let pending = match child {
                        Source::Real(path) => {
                            let dev = fs::symlink_metadata(path).map_or(0, |m| m.dev());
                            self.entry(path, name, child_rel, parent_node, dev)?
                        }
                        Source::Virtual(path, _) => {
                            self.virtual_dir(child, path, name, &child_rel, parent_node, root_dev)?
                        }
                    };
                    nodes.extend(pending);
                }
                nodes
            }
        };
        self.send_dir(nodes)
    }

    /// A directory on the way to named paths: its metadata, the named
    /// entries below it.
    fn virtual_dir(
        &mut self,
        source: &Source,
        path: &Path,
        name: &[u8],
        rel: &[u8],
        parent_node: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<PendingNode>, BackupError> {
        let mut node = Node::new(name.to_vec(), NodeKind::Dir);
        match fs::symlink_metadata(path) {
            Ok(meta) => self.fill_meta(&mut node, &meta),
            Err(e) => self.warn(path, format!("cannot examine: {e}")),
        }
        let sub_parent = self.parent_subtree(path, parent_node);
        let seq = self.walk_source(source, rel, sub_parent.as_ref(), root_dev)?;
        self.summary.dirs += 1;
        Ok(Some(PendingNode {
            node,
            fill: Fill::Dir(seq),
        }))
    }

    fn send_dir(&mut self, mut nodes: Vec<PendingNode>) -> Result<u64, BackupError> {
        nodes.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.dirs
            .send(DirJob { seq, nodes })
            .map_err(|_| BackupError::Internal("the finalizer stopped".into()))?;
        Ok(seq)
    }

    /// The parent snapshot's tree for a directory, if it had one.
    fn parent_subtree(&mut self, path: &Path, parent_node: Option<&Node>) -> Option<Tree> {
        let id = parent_node
            .filter(|n| n.kind == NodeKind::Dir)
            .and_then(|n| n.subtree)?;
        match load_tree(self.repo, &id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.warn(
                    path,
                    format!("parent snapshot unreadable here, reading all: {e}"),
                );
                None
            }
        }
    }

    /// The nodes of a real directory's entries, sorted by name.
    fn list_dir(
        &mut self,
        dir: &Path,
        rel: &[u8],
        parent: Option<&Tree>,
        root_dev: u64,
    ) -> Result<Vec<PendingNode>, BackupError> {
        let mut names = match fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.file_name().as_bytes().to_vec()))
                .collect::<Vec<_>>(),
            Err(e) => {
                self.warn(dir, format!("cannot read directory: {e}"));
                return Ok(Vec::new());
            }
        };
        self.ahead.walked_one();
        names.sort();
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let child_rel = join_bytes(rel, &name);
            let parent_node = parent.and_then(|t| t.get(&name));
            nodes.extend(self.entry(&path, &name, child_rel, parent_node, root_dev)?);
        }
        Ok(nodes)
    }

    fn fill_meta(&mut self, node: &mut Node, meta: &Metadata) {
        fill_stat(node, meta);
        node.user = self.names.user(node.uid);
        node.group = self.names.group(node.gid);
    }

    fn excluded(&self, path: &Path) -> bool {
        self.excludes.as_ref().is_some_and(|set| set.is_match(path))
    }

    /// One entry: its node, or `None` when it is excluded or vanished.
    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        rel: Vec<u8>,
        parent_node: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<PendingNode>, BackupError> {
        if self.excluded(path) {
            return Ok(None);
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.warn(path, format!("cannot examine: {e}"));
                return Ok(None);
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_char_device() {
            NodeKind::Chardev
        } else if ft.is_block_device() {
            NodeKind::Blockdev
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            NodeKind::Socket
        };
        if kind == NodeKind::Dir && self.opts.exclude_caches && has_cachedir_tag(path) {
            return Ok(None);
        }
        let mut node = Node::new(name.to_vec(), kind);
        self.fill_meta(&mut node, &meta);
        match read_xattrs(path) {
            Ok(x) => node.xattrs = x,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => self.warn(path, format!("cannot read extended attributes: {e}")),
        }
        if kind != NodeKind::Dir && meta.nlink() > 1 {
            match self.hardlinks.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    node.kind = NodeKind::Hardlink;
                    node.link = Some(first.clone());
                    self.summary.others += 1;
                    return Ok(Some(PendingNode {
                        node,
                        fill: Fill::Done,
                    }));
                }
                None => {
                    self.hardlinks.insert((meta.dev(), meta.ino()), rel.clone());
                }
            }
        }
        let fill = match kind {
            NodeKind::Dir => self.dir_entry(path, &rel, parent_node, &meta, root_dev)?,
            NodeKind::File => self.file_entry(path, &mut node, parent_node)?,
            NodeKind::Symlink => {
                match fs::read_link(path) {
                    Ok(t) => node.target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        self.warn(path, format!("cannot read symlink: {e}"));
                        return Ok(None);
                    }
                }
                self.summary.others += 1;
                Fill::Done
            }
            _ => {
                if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
                    node.rdev = meta.rdev();
                }
                self.summary.others += 1;
                Fill::Done
            }
        };
        Ok(Some(PendingNode { node, fill }))
    }

    fn dir_entry(
        &mut self,
        path: &Path,
        rel: &[u8],
        parent_node: Option<&Node>,
        meta: &Metadata,
        root_dev: u64,
    ) -> Result<Fill, BackupError> {
        self.summary.dirs += 1;
        let other_fs = self.opts.one_file_system && root_dev != 0 && meta.dev() != root_dev;
        if other_fs {
            return Ok(Fill::Dir(self.send_dir(Vec::new())?));
        }
        let sub_parent = self.parent_subtree(path, parent_node);
        let nodes = self.list_dir(path, rel, sub_parent.as_ref(), root_dev)?;
        Ok(Fill::Dir(self.send_dir(nodes)?))
    }

    fn file_entry(
        &mut self,
        path: &Path,
        node: &mut Node,
        parent_node: Option<&Node>,
    ) -> Result<Fill, BackupError> {
        self.summary.files += 1;
        self.summary.bytes_total += node.size;
        if let Some(p) = parent_node.filter(|p| unchanged(p, node)) {
            node.content = p.content.clone();
            self.summary.files_unchanged += 1;
            return Ok(Fill::Done);
        }
        let (reply, answer) = sync_channel(1);
        read_ahead(path, node.size);
        self.work
            .send(FileJob {
                path: path.to_path_buf(),
                reply,
            })
            .map_err(|_| BackupError::Internal("the workers stopped".into()))?;
        Ok(Fill::File(answer))
    }
}

/// What the workers share.
struct WorkerCtx<'a> {
    repo: &'a Repository,
    chunker: &'a Chunker,
    hook: Option<ReadHook>,
    after_open: Option<ReadHook>,
    abort: &'a AtomicBool,
}

/// Reads files from the queue until it closes, then hands the chunks it
/// still holds to the compressors.
fn worker(
    ctx: &WorkerCtx<'_>,
    queue: &Mutex<Receiver<FileJob>>,
    compressors: SyncSender<PendingGroup>,
) {
    let mut stream: Option<StreamChunker<'_, File>> = None;
    let mut buf = Vec::new();
    let mut groups = GroupQueue::new(compressors);
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            if !ctx.abort.load(Ordering::Relaxed) {
                groups.send();
            }
            return;
        };
        if ctx.abort.load(Ordering::Relaxed) {
            continue;
        }
        let result = read_file(ctx, &job.path, &mut stream, &mut buf, &mut groups);
        if result.is_err() {
            ctx.abort.store(true, Ordering::Relaxed);
        }
        let _ = job.reply.send(result); // the finalizer may have stopped
    }
}

/// Starts the kernel reading the first [`READ_AHEAD`] bytes of a file the
/// walker queues, so that a worker taking it finds them cached.
fn read_ahead(path: &Path, size: u64) {
    if let Ok(file) = open_for_read(path)
        && let Some(len) = std::num::NonZeroU64::new(size.min(READ_AHEAD))
    {
        let _ = rustix::fs::fadvise(&file, 0, Some(len), rustix::fs::Advice::WillNeed);
    }
}

/// Bytes of a queued file read ahead (larger files continue with the
/// kernel's own sequential read-ahead).
const READ_AHEAD: u64 = 4 << 20;

/// Opens a file for reading without following a symlink, blocking on a
/// fifo or updating its access time where the system allows.
fn open_for_read(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let open = |extra| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | extra)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

fn omitted(path: &Path, message: String) -> FileRead {
    FileRead {
        content: None,
        meta: None,
        size: 0,
        stats: ChunkStats::default(),
        warning: Some(Warning::new(path, message)),
    }
}

/// Reads, chunks and stores one file.
fn read_file<'c>(
    ctx: &WorkerCtx<'c>,
    path: &Path,
    stream: &mut Option<StreamChunker<'c, File>>,
    buf: &mut Vec<u8>,
    groups: &mut GroupQueue,
) -> Result<FileRead, BackupError> {
    if let Some(hook) = &ctx.hook {
        hook(path);
    }
    let file = match open_for_read(path) {
        Ok(f) => f,
        Err(e) => return Ok(omitted(path, format!("cannot open: {e}"))),
    };
    let before = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(omitted(path, "no longer a regular file".into())),
        Err(e) => return Ok(omitted(path, format!("cannot examine: {e}"))),
    };
    if let Some(hook) = &ctx.after_open {
        hook(path);
    }
    let mut sink = ChunkSink::new(ctx.repo, groups);
    let read = if before.len() <= SMALL_FILE {
        read_small(ctx.chunker, file, buf, &mut sink)
    } else {
        read_large(ctx.chunker, file, stream, &mut sink)
    };
    let after = match read {
        Ok(after) => after,
        Err(ReadError::Io(e)) => return Ok(omitted(path, format!("cannot read: {e}"))),
        Err(ReadError::Store(e)) => return Err(e.into()),
    };
    let changed = after.len() != before.len()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
        || sink.bytes != before.len();
    let warning = changed.then(|| {
        Warning::new(
            path,
            "changed while being read; stored as read, back it up again",
        )
    });
    let size = sink.bytes;
    let (content, stats) = sink.finish()?;
    Ok(FileRead {
        content: Some(content),
        meta: Some(before),
        size,
        stats,
        warning,
    })
}

enum ReadError {
    Io(io::Error),
    Store(cairn_store::Error),
}

/// Reads a small file whole and chunks the buffer; returns its metadata
/// after reading.
fn read_small(
    chunker: &Chunker,
    mut file: File,
    buf: &mut Vec<u8>,
    sink: &mut ChunkSink<'_, '_>,
) -> Result<Metadata, ReadError> {
    buf.clear();
    file.read_to_end(buf).map_err(ReadError::Io)?;
    for chunk in chunker.chunks(buf) {
        sink.push(chunk.data).map_err(ReadError::Store)?;
    }
    file.metadata().map_err(ReadError::Io)
}

/// Streams a large file through the chunker's buffer (kept across files).
fn read_large<'c>(
    chunker: &'c Chunker,
    file: File,
    stream: &mut Option<StreamChunker<'c, File>>,
    sink: &mut ChunkSink<'_, '_>,
) -> Result<Metadata, ReadError> {
    let mut s = match stream.take() {
        Some(s) => s.reset(file),
        None => StreamChunker::new(chunker, file),
    };
    let result = loop {
        match s.next_chunk() {
            Ok(Some(chunk)) => {
                if let Err(e) = sink.push(chunk.data) {
                    break Err(ReadError::Store(e));
                }
            }
            Ok(None) => break s.get_ref().metadata().map_err(ReadError::Io),
            Err(e) => break Err(ReadError::Io(e)),
        }
    };
    *stream = Some(s);
    result
}

/// New chunks a worker has not saved yet, across the files it reads: once
/// about [`TARGET_GROUP_LEN`] have gathered they go to the compressors
/// ([`compressor`]) as one group, since neighbouring chunks (of one file,
/// or of small files read one after another) compress better as one solid
/// group than alone. The worker sends what is left when its queue closes;
/// the compressors have saved everything before the backup returns (trees
/// may name queued chunks meanwhile: no snapshot is written before).
struct GroupQueue {
    group: PendingGroup,
    compressors: SyncSender<PendingGroup>,
}

/// Chunks to save as one group: ids and lengths, the bytes back to back.
#[derive(Default)]
struct PendingGroup {
    chunks: Vec<(Id, usize)>,
    bytes: Vec<u8>,
}

impl GroupQueue {
    fn new(compressors: SyncSender<PendingGroup>) -> Self {
        GroupQueue {
            group: PendingGroup::default(),
            compressors,
        }
    }

    /// Queues a new chunk; hands the group over once it is large enough.
    fn push(&mut self, id: Id, data: &[u8]) {
        self.group.chunks.push((id, data.len()));
        self.group.bytes.extend_from_slice(data);
        if self.group.bytes.len() >= TARGET_GROUP_LEN {
            self.send();
        }
    }

    /// Hands the queued chunks to a compressor (waiting while all are busy
    /// and the channel is full).
    fn send(&mut self) {
        if self.group.chunks.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        // Fails only if every compressor is gone, which only a panic does
        // (a failed save keeps draining): the join reports it.
        let _ = self.compressors.send(group);
    }
}

/// Saves the groups the workers hand over until every worker is done;
/// returns the counts of new chunks. Compression is most of a first
/// backup's CPU: done on the workers, a large file kept its worker busy
/// alone at the end while the others had nothing left to read (perf: one
/// worker ran 1 s after the other on an 850 MB tree); as a pool of its own,
/// every core compresses until the last group. After a failure (its own,
/// or `abort` set by another thread) it drains the channel without saving,
/// so no worker waits on it forever, and returns its first error.
fn compressor(
    repo: &Repository,
    groups: &Mutex<Receiver<PendingGroup>>,
    abort: &AtomicBool,
) -> Result<ChunkStats, cairn_store::Error> {
    let mut stats = ChunkStats::default();
    let mut failed = None;
    loop {
        let group = match groups.lock() {
            Ok(g) => g.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(group) = group else { break };
        if failed.is_some() || abort.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = save_group(repo, &group, &mut stats) {
            abort.store(true, Ordering::Relaxed);
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Saves one group and counts the new chunks in `stats`.
fn save_group(
    repo: &Repository,
    group: &PendingGroup,
    stats: &mut ChunkStats,
) -> Result<(), cairn_store::Error> {
    let mut at = 0;
    let members: Vec<(Id, &[u8])> = group
        .chunks
        .iter()
        .map(|&(id, len)| {
            at += len;
            (id, &group.bytes[at - len..at])
        })
        .collect();
    let saved = repo.save_group(BlobType::Data, &members, TARGET_GROUP_LEN)?;
    for (saved, (_, data)) in saved.iter().zip(&members) {
        if saved.new {
            stats.chunks_new += 1;
            stats.bytes_new += data.len() as u64;
            stats.bytes_stored += saved.stored_len;
        }
    }
    Ok(())
}

/// Stores chunks and collects a file's extents (new chunks go through the
/// worker's [`GroupQueue`]).
struct ChunkSink<'r, 'q> {
    repo: &'r Repository,
    queue: &'q mut GroupQueue,
    extents: Vec<Extent>,
    bytes: u64,
    stats: ChunkStats,
}

impl<'r, 'q> ChunkSink<'r, 'q> {
    fn new(repo: &'r Repository, queue: &'q mut GroupQueue) -> Self {
        ChunkSink {
            repo,
            queue,
            extents: Vec::new(),
            bytes: 0,
            stats: ChunkStats::default(),
        }
    }

    /// Stores one chunk (all-zero chunks become holes and store nothing).
    fn push(&mut self, data: &[u8]) -> Result<(), cairn_store::Error> {
        let len = data.len() as u64;
        self.bytes += len;
        self.stats.bytes_read += len;
        self.stats.chunks += 1;
        if data.iter().all(|&b| b == 0) {
            self.extents.push(Extent { len, blob: None });
            return Ok(());
        }
        let id = self.repo.blob_id(data);
        if !self.repo.has_blob(&id) {
            self.queue.push(id, data);
        }
        self.extents.push(Extent {
            len,
            blob: Some(id),
        });
        Ok(())
    }

    /// The file's content: inline, or a chunked list when long.
    fn finish(mut self) -> Result<(Content, ChunkStats), cairn_store::Error> {
        if self.extents.len() <= MAX_INLINE_EXTENTS {
            return Ok((Content::Inline(self.extents), self.stats));
        }
        let mut list = ListWriter::new(self.repo);
        for e in &self.extents {
            list.push(*e)?;
        }
        self.stats.bytes_stored += list.stored_new;
        let root = list.finish()?;
        Ok((Content::List(root), self.stats))
    }
}

/// Totals gathered by the finalizer.
#[derive(Default)]
struct FinalStats {
    /// Chunk counters of the files read, the compressors and the trees.
    chunks: ChunkStats,
    /// Files left out because they could not be read.
    omitted: u64,
    warnings: Vec<Warning>,
}

/// Completes and stores directories as they arrive (children first);
/// returns the id of the last one, the root.
fn finalize(
    repo: &Repository,
    dirs: Receiver<DirJob>,
    abort: &AtomicBool,
) -> Result<(Id, FinalStats), BackupError> {
    let result = finalize_all(repo, dirs);
    if result.is_err() {
        abort.store(true, Ordering::Relaxed);
    }
    result
}

fn finalize_all(
    repo: &Repository,
    dirs: Receiver<DirJob>,
) -> Result<(Id, FinalStats), BackupError> {
    let mut done: HashMap<u64, Id> = HashMap::new();
    let mut stats = FinalStats::default();
    let mut last = None;
    for job in dirs {
        let mut tree = Tree::default();
        for pending in job.nodes {
            if let Some(node) = complete(pending, &mut done, &mut stats)? {
                tree.nodes.push(node);
            }
        }
        let (id, stored) = save_tree(repo, &tree)?;
        stats.chunks.bytes_stored += stored;
        done.insert(job.seq, id);
        last = Some(id);
    }
    let root = last.ok_or_else(|| BackupError::Internal("no root tree".into()))?;
    Ok((root, stats))
}

/// Fills in what a node waited for; `None` drops a file that could not be read.
fn complete(
    pending: PendingNode,
    done: &mut HashMap<u64, Id>,
    stats: &mut FinalStats,
) -> Result<Option<Node>, BackupError> {
    let PendingNode { mut node, fill } = pending;
    match fill {
        Fill::Done => {}
        Fill::Dir(seq) => {
            let id = done
                .remove(&seq)
                .ok_or_else(|| BackupError::Internal("subtree finished out of order".into()))?;
            node.subtree = Some(id);
        }
        Fill::File(answer) => {
            let read = answer
                .recv()
                .map_err(|_| BackupError::Internal("a worker stopped".into()))??;
            stats.chunks.add(&read.stats);
            stats.warnings.extend(read.warning);
            let Some(content) = read.content else {
                stats.omitted += 1;
                return Ok(None);
            };
            if let Some(meta) = &read.meta {
                fill_stat(&mut node, meta);
            }
            node.size = read.size;
            node.content = Some(content);
        }
    }
    Ok(Some(node))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_and_paths() {
        let set = compile_excludes(&["*.tmp".into(), "/var/cache/**".into(), "build/out".into()])
            .unwrap()
            .unwrap();
        assert!(set.is_match("/home/a/x.tmp"));
        assert!(set.is_match("/x.tmp"));
        assert!(!set.is_match("/home/a.tmp/x"));
        assert!(set.is_match("/var/cache/apt/p"));
        assert!(set.is_match("/src/build/out"));
        assert!(!set.is_match("/src/build/outer"));
    }

    #[test]
    fn root_keeps_whole_paths_and_drops_covered_ones() {
        let root = build_root(&[PathBuf::from("/tmp"), PathBuf::from("/tmp/../tmp/.")]).unwrap();
        let Source::Virtual(_, children) = root else {
            panic!()
        };
        assert_eq!(children.len(), 1);
        assert!(matches!(children.get(&b"tmp"[..]), Some(Source::Real(_))));
    }

    #[test]
    fn exclude_file_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ex");
        fs::write(&p, "# c\n\n *.o \n/a/b\n").unwrap();
        assert_eq!(read_exclude_file(&p).unwrap(), vec!["*.o", "/a/b"]);
    }
}
