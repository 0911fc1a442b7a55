//! File-tree restore: recreate a snapshot's files under a target directory.
//!
//! # Safety against hostile snapshots
//! Trees come from the target, which may have been tampered with. A restore
//! never writes outside the directory it was given:
//! - every name is checked ([`validate_name`]): empty names, `.`, `..`, and
//!   names holding `/` or NUL are refused with a warning;
//! - every directory is opened relative to its parent's descriptor with
//!   `O_NOFOLLOW | O_DIRECTORY` (`openat`), so a symlink, whether restored
//!   from the snapshot or planted in the target, is never followed;
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` after removing
//!   whatever non-directory held the name;
//! - a hardlink's path is resolved the same way from the target, component
//!   by component, and linked without following a final symlink.
//!
//! # Order
//! The walker (calling thread) creates directories (mode 0700 while they
//! are filled) and small entries; regular files go to `threads` workers
//! that load blobs, write them at their offsets (holes stay holes) and set
//! the file's metadata. A directory gets its metadata once nothing more is
//! created in it: when the walker has listed it and the last of its files
//! is written ([`OpenDir`]), on the descriptor already open, so that
//! writing into it does not disturb its times and a read-only mode does not
//! lock the restore out. Hardlinks are made once every file exists; the
//! directories they land in, and directories whose mode would keep us out
//! of them, get their metadata after that, deepest first.
//!
//! A rerun after an interruption skips files that already have the right
//! size and mtime and whose content hashes to the snapshot's blob ids.
//!
//! Each file's reads are planned by pack, and a large file's writes go
//! around the page cache (`crate::file_content`); small files are still
//! fetched one by one, in parallel over the workers.

use crate::direct_io::AlignedBuf;
use crate::file_content::{DIRECT_FROM, WriteError, content_matches, write_content};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use cairn_store::{Id, Repository};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::process::{Gid, Uid};
use thiserror::Error;

use crate::tree::{
    Content, Node, NodeKind, Time, TreeError, bytes_path, display_path, join_bytes, load_tree,
    lookup, split_path, validate_name,
};
pub use crate::walk::Warning;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Re-read every file written and check it against the blob ids.
    pub verify: bool,
    /// Workers writing files (0: one per core).
    pub threads: usize,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    /// Regular files written (or found correct and skipped).
    pub files: u64,
    /// Files already in place with the right content (a rerun).
    pub files_skipped: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, hardlinks, fifos and device nodes.
    pub others: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Files re-read and checked ([`RestoreOptions::verify`]).
    pub files_verified: u64,
    /// Problems with single entries (refused names, unsupported metadata,
    /// failed verification), sorted by path.
    pub warnings: Vec<Warning>,
}

/// Why a restore failed.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The repository failed, or a tree is damaged.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The target directory cannot be created or opened.
    #[error("cannot restore into {path}: {source}")]
    Target {
        /// The target directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An `--include` path is not in the snapshot.
    #[error("{0} is not in the snapshot")]
    IncludeNotFound(PathBuf),
    /// A worker thread stopped unexpectedly (a bug).
    #[error("internal error in the restore: {0}")]
    Internal(String),
}

impl From<cairn_store::Error> for RestoreError {
    fn from(e: cairn_store::Error) -> Self {
        RestoreError::Tree(TreeError::Store(e))
    }
}

/// Which part of the snapshot a path is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Select {
    /// Restored whole.
    Whole,
    /// A directory on the way to an included path.
    Ancestor,
    /// Left out.
    Skip,
}

/// The included paths, as components relative to the snapshot root.
struct Includes(Vec<Vec<Vec<u8>>>);

impl Includes {
    fn select(&self, rel: &[u8]) -> Select {
        if self.0.is_empty() {
            return Select::Whole;
        }
        let path = split_path(rel);
        let mut ancestor = false;
        for inc in &self.0 {
            if inc.len() <= path.len() && inc.iter().zip(&path).all(|(a, b)| a == b) {
                return Select::Whole;
            }
            if path.iter().zip(inc).all(|(a, b)| *a == b.as_slice()) {
                ancestor = true;
            }
        }
        if ancestor {
            Select::Ancestor
        } else {
            Select::Skip
        }
    }
}

fn include_components(includes: &[PathBuf]) -> Includes {
    use std::os::unix::ffi::OsStrExt;
    Includes(
        includes
            .iter()
            .map(|p| {
                split_path(p.as_os_str().as_bytes())
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .collect(),
    )
}

/// Restores the tree `root` (a snapshot's root) into `target`, which is
/// created if missing. With `includes` (paths inside the snapshot, such as
/// `/home/a`), only those subtrees and the directories leading to them.
pub fn restore_files(
    repo: &Repository,
    root: Id,
    target: &Path,
    includes: &[PathBuf],
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let includes = include_components(includes);
    for inc in &includes.0 {
        let rel = inc.join(&b'/');
        if !inc.is_empty() && lookup(repo, &root, &rel)?.is_none() {
            return Err(RestoreError::IncludeNotFound(display_path(&rel)));
        }
    }
    let target_err = |source| RestoreError::Target {
        path: target.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(target).map_err(target_err)?;
    let top =
        rustix::fs::open(target, dir_flags(), Mode::empty()).map_err(|e| target_err(e.into()))?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let shared = Shared {
        repo,
        root,
        verify: opts.verify,
        as_root: rustix::process::geteuid().is_root(),
        direct: cairn_store::backend::local::on_local_disk(target),
        summary: Mutex::new(RestoreSummary::default()),
        failure: Mutex::new(None),
        abort: AtomicBool::new(false),
    };
    let top_is_empty = is_empty_dir(&top).map_err(target_err)?;
    let top = Arc::new(OpenDir::new(&shared, top, top_is_empty));
    let (tx, rx) = sync_channel::<FileJob<'_, '_>>(threads * 4);
    let rx = Mutex::new(rx);
    let walked = std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| file_worker(&shared, &rx));
        }
        let mut walker = RestoreWalker {
            shared: &shared,
            includes,
            files: tx,
            deferred_dirs: Vec::new(),
            hardlinks: Vec::new(),
        };
        let result = walker.restore_dir(&top, &[], &root);
        let deferred_dirs = std::mem::take(&mut walker.deferred_dirs);
        let hardlinks = std::mem::take(&mut walker.hardlinks);
        drop(walker); // closes the workers' queue; the scope joins them
        result.map(|_| (deferred_dirs, hardlinks))
    });
    if let Some(e) = take(&shared.failure) {
        return Err(e);
    }
    let (deferred_dirs, hardlinks) = walked?;
    for (parent, node) in hardlinks {
        restore_hardlink(&shared, &top.fd, &parent, &node)?;
    }
    for (rel, node) in deferred_dirs {
        apply_dir_meta(&shared, &top.fd, &rel, &node);
    }
    let mut summary = take(&shared.summary);
    summary.warnings.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(summary)
}

fn take<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// What the walker and the workers share.
struct Shared<'a> {
    repo: &'a Repository,
    root: Id,
    verify: bool,
    as_root: bool,
    /// Whether large files may be written with direct I/O: the target is
    /// on a local disk (on NFS or SMB a direct write waits on the server).
    direct: bool,
    summary: Mutex<RestoreSummary>,
    failure: Mutex<Option<RestoreError>>,
    abort: AtomicBool,
}

impl Shared<'_> {
    fn warn(&self, rel: &[u8], message: impl std::fmt::Display) {
        self.count(|s| s.warnings.push(Warning::new(&display_path(rel), message)));
    }

    fn count(&self, f: impl FnOnce(&mut RestoreSummary)) {
        f(&mut self.summary.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn fail(&self, e: RestoreError) {
        self.abort.store(true, Ordering::Relaxed);
        let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(e);
    }
}

/// A directory open while it is being restored, shared by the walker and
/// the jobs of the files in it. When the last of them lets go, nothing more
/// is created in it, and its metadata (if it was given some) is applied to
/// the open descriptor: no reopening path component by path component
/// (about nine `openat` per directory at the end of a restore before), and
/// the work is spread over the workers instead of a serial pass at the end.
struct OpenDir<'a, 's> {
    fd: OwnedFd,
    /// Made by this restore (or found empty at its start): a tree's names
    /// are unique, so nothing in it needs to be looked for, replaced or
    /// checked before an entry is created, which saves two `statat` per
    /// file. Creation stays exclusive (`O_EXCL`, `mkdirat`, `symlinkat`):
    /// an entry another process puts there meanwhile is refused with a
    /// warning, never followed or overwritten.
    fresh: bool,
    shared: &'a Shared<'s>,
    /// The directory's path and node, set once the walker has listed it.
    meta: Mutex<Option<(Vec<u8>, Node)>>,
}

impl<'a, 's> OpenDir<'a, 's> {
    fn new(shared: &'a Shared<'s>, fd: OwnedFd, fresh: bool) -> Self {
        OpenDir {
            fd,
            fresh,
            shared,
            meta: Mutex::new(None),
        }
    }

    /// Applies `node`'s metadata when the last holder lets go.
    fn apply_when_done(&self, rel: Vec<u8>, node: Node) {
        *self.meta.lock().unwrap_or_else(|e| e.into_inner()) = Some((rel, node));
    }
}

impl Drop for OpenDir<'_, '_> {
    fn drop(&mut self) {
        let meta = self
            .meta
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((rel, node)) = meta
            && !self.shared.abort.load(Ordering::Relaxed)
        {
            apply_fd_meta(self.shared, &self.fd, &rel, &node);
        }
    }
}

/// A regular file for a worker.
struct FileJob<'a, 's> {
    dir: Arc<OpenDir<'a, 's>>,
    rel: Vec<u8>,
    node: Node,
}

fn file_worker(shared: &Shared<'_>, queue: &Mutex<Receiver<FileJob<'_, '_>>>) {
    // Where file content is assembled, kept from file to file.
    let mut buf = AlignedBuf::default();
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        if shared.abort.load(Ordering::Relaxed) {
            continue;
        }
        let (dir, rel) = (&job.dir, job.rel.as_slice());
        if let Err(e) = restore_file(shared, &dir.fd, dir.fresh, rel, &job.node, &mut buf) {
            shared.fail(e);
        }
    }
}

/// The walking thread's state.
struct RestoreWalker<'a, 's> {
    shared: &'a Shared<'s>,
    includes: Includes,
    files: SyncSender<FileJob<'a, 's>>,
    /// Directories whose metadata waits for the end (hardlinks land in
    /// them, or their mode would keep us out), deepest first: their path
    /// and node.
    deferred_dirs: Vec<(Vec<u8>, Node)>,
    /// Hardlinks to make at the end: the parent directory's path and node.
    hardlinks: Vec<(Vec<u8>, Node)>,
}

impl<'a, 's> RestoreWalker<'a, 's> {
    /// Restores the entries of `tree` into `dir`; returns whether a
    /// hardlink is to be made in it at the end.
    fn restore_dir(
        &mut self,
        dir: &Arc<OpenDir<'a, 's>>,
        rel: &[u8],
        tree: &Id,
    ) -> Result<bool, RestoreError> {
        let tree = load_tree(self.shared.repo, tree)?;
        let hardlinks_before = self.hardlinks.len();
        for node in tree.nodes {
            if self.shared.abort.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let child = join_bytes(rel, &node.name);
            if let Err(why) = validate_name(&node.name) {
                self.shared.warn(
                    &child,
                    format!("refused: unsafe name {:?} ({why})", node.name_path()),
                );
                continue;
            }
            match self.includes.select(&child) {
                Select::Skip => continue,
                Select::Ancestor if node.kind != NodeKind::Dir => continue,
                _ => {}
            }
            self.restore_node(dir, rel, &child, node)?;
        }
        // Hardlinks pushed since are this directory's: its subdirectories'
        // walks push theirs and return before the next entry here.
        Ok(self.hardlinks[hardlinks_before..]
            .iter()
            .any(|(parent, _)| parent.as_slice() == rel))
    }

    fn restore_node(
        &mut self,
        dir: &Arc<OpenDir<'a, 's>>,
        rel: &[u8],
        child: &[u8],
        node: Node,
    ) -> Result<(), RestoreError> {
        let shared = self.shared;
        match node.kind {
            NodeKind::Dir => {
                let Some(sub) = node.subtree else {
                    return Ok(());
                };
                let Some((fd, created)) = open_child_dir(shared, &dir.fd, child, &node.name) else {
                    return Ok(());
                };
                shared.count(|s| s.dirs += 1);
                let open = Arc::new(OpenDir::new(shared, fd, created));
                let has_hardlinks = self.restore_dir(&open, child, &sub)?;
                // Without search and write permission for us, the directory
                // could not be reopened for the hardlinks made at the end.
                let locks_us_out = !shared.as_root && node.mode & 0o700 != 0o700;
                if has_hardlinks || locks_us_out {
                    self.deferred_dirs.push((child.to_vec(), node));
                } else {
                    open.apply_when_done(child.to_vec(), node);
                }
            }
            NodeKind::File => {
                let job = FileJob {
                    dir: Arc::clone(dir),
                    rel: child.to_vec(),
                    node,
                };
                self.files
                    .send(job)
                    .map_err(|_| RestoreError::Internal("the file workers stopped".into()))?;
            }
            NodeKind::Hardlink => self.hardlinks.push((rel.to_vec(), node)),
            NodeKind::Socket => {}
            _ => restore_special(shared, &dir.fd, dir.fresh, child, &node),
        }
        Ok(())
    }
}

/// Creates (if needed) and opens the directory `name` in `dir` without
/// following a symlink, and says whether this call created it; `None`
/// (with a warning) when that is impossible.
fn open_child_dir(
    shared: &Shared<'_>,
    dir: &OwnedFd,
    rel: &[u8],
    name: &[u8],
) -> Option<(OwnedFd, bool)> {
    let created = match rustix::fs::mkdirat(dir, name, Mode::RWXU) {
        Ok(()) => true,
        Err(e) if e == rustix::io::Errno::EXIST => false,
        Err(e) => {
            shared.warn(rel, format!("cannot create directory: {e}"));
            return None;
        }
    };
    match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Some((fd, created)),
        Err(e) => {
            shared.warn(
                rel,
                format!("refused: not a directory (a symlink is never followed): {e}"),
            );
            None
        }
    }
}

/// Removes a non-directory entry `name` so it can be created anew;
/// `false` (with a warning) when a directory is in the way.
fn clear_entry(shared: &Shared<'_>, dir: &OwnedFd, rel: &[u8], name: &[u8]) -> bool {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(_) => true,
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            shared.warn(rel, "a directory is in the way; not replaced");
            false
        }
        Ok(_) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => true,
            Err(e) => {
                shared.warn(rel, format!("cannot replace the existing entry: {e}"));
                false
            }
        },
    }
}

/// Whether the directory open at `dir` holds no entries.
fn is_empty_dir(dir: &OwnedFd) -> io::Result<bool> {
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        if !matches!(entry?.file_name().to_bytes(), b"." | b"..") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Symlinks, fifos and device nodes (`fresh`: see [`OpenDir::fresh`]).
fn restore_special(shared: &Shared<'_>, dir: &OwnedFd, fresh: bool, rel: &[u8], node: &Node) {
    if !fresh && !clear_entry(shared, dir, rel, &node.name) {
        return;
    }
    let mode = Mode::from_raw_mode(node.mode & 0o7777);
    let made = match node.kind {
        NodeKind::Symlink => {
            let target = node.target.as_deref().unwrap_or_default();
            rustix::fs::symlinkat(target, dir, node.name.as_slice())
        }
        NodeKind::Fifo => rustix::fs::mkfifoat(dir, node.name.as_slice(), mode),
        NodeKind::Chardev | NodeKind::Blockdev if !shared.as_root => {
            shared.warn(rel, "device nodes are restored only when running as root");
            return;
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            let ft = if node.kind == NodeKind::Chardev {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            rustix::fs::mknodat(dir, node.name.as_slice(), ft, mode, node.rdev)
        }
        _ => return,
    };
    if let Err(e) = made {
        shared.warn(rel, format!("cannot create: {e}"));
        return;
    }
    shared.count(|s| s.others += 1);
    apply_path_meta(shared, dir, rel, node);
}

/// Owner, mode and times of an entry that cannot be opened (symlinks,
/// fifos, devices), by name, never following a symlink.
fn apply_path_meta(shared: &Shared<'_>, dir: &OwnedFd, rel: &[u8], node: &Node) {
    let name = node.name.as_slice();
    if shared.as_root
        && let Some((u, g)) = owner(node)
        && let Err(e) = rustix::fs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
    {
        shared.warn(rel, format!("cannot set owner: {e}"));
    }
    if node.kind != NodeKind::Symlink {
        // A fifo or device node just created here (chmodat cannot refuse
        // to follow a symlink; the entry is not one, we made it).
        let mode = Mode::from_raw_mode(node.mode & 0o7777);
        if let Err(e) = rustix::fs::chmodat(dir, name, mode, AtFlags::empty()) {
            shared.warn(rel, format!("cannot set mode: {e}"));
        }
    }
    if let Err(e) = rustix::fs::utimensat(dir, name, &timestamps(node), AtFlags::SYMLINK_NOFOLLOW) {
        shared.warn(rel, format!("cannot set times: {e}"));
    }
}

fn owner(node: &Node) -> Option<(Uid, Gid)> {
    // u32::MAX means "unchanged" to chown; a snapshot cannot ask for it.
    (node.uid != u32::MAX && node.gid != u32::MAX)
        .then(|| (Uid::from_raw(node.uid), Gid::from_raw(node.gid)))
}

fn timespec(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: i64::from(t.nsec.min(999_999_999)),
    }
}

fn timestamps(node: &Node) -> Timestamps {
    Timestamps {
        // Snapshots do not record atime (see files_backup): use mtime.
        last_access: timespec(if node.atime == Time::default() {
            node.mtime
        } else {
            node.atime
        }),
        last_modification: timespec(node.mtime),
    }
}

/// Owner, mode, xattrs and times of an open file or directory.
fn apply_fd_meta(shared: &Shared<'_>, fd: impl AsFd, rel: &[u8], node: &Node) {
    let fd = fd.as_fd();
    if shared.as_root
        && let Some((u, g)) = owner(node)
        && let Err(e) = rustix::fs::fchown(fd, Some(u), Some(g))
    {
        shared.warn(rel, format!("cannot set owner: {e}"));
    }
    if let Err(e) = rustix::fs::fchmod(fd, Mode::from_raw_mode(node.mode & 0o7777)) {
        shared.warn(rel, format!("cannot set mode: {e}"));
    }
    for x in &node.xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, x.name.as_slice(), &x.value, XattrFlags::empty())
        {
            let name = String::from_utf8_lossy(&x.name);
            shared.warn(rel, format!("cannot set extended attribute {name}: {e}"));
        }
    }
    if let Err(e) = rustix::fs::futimens(fd, &timestamps(node)) {
        shared.warn(rel, format!("cannot set times: {e}"));
    }
}

/// Opens the directory at `rel` (components from the target), refusing
/// symlinks at every step.
fn open_rel_dir(top: &OwnedFd, rel: &[u8]) -> io::Result<OwnedFd> {
    let mut fd = rustix::fs::openat(top, ".", dir_flags(), Mode::empty())?;
    for name in split_path(rel) {
        validate_name(name).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        fd = rustix::fs::openat(&fd, name, dir_flags(), Mode::empty())?;
    }
    Ok(fd)
}

fn apply_dir_meta(shared: &Shared<'_>, top: &OwnedFd, rel: &[u8], node: &Node) {
    match open_rel_dir(top, rel) {
        Ok(fd) => apply_fd_meta(shared, &fd, rel, node),
        Err(e) => shared.warn(rel, format!("cannot reopen to set metadata: {e}")),
    }
}

/// Writes one regular file (or skips it when a rerun finds it correct),
/// assembling its content in `buf`; in a `fresh` directory
/// ([`OpenDir::fresh`]) nothing is looked for first.
fn restore_file(
    shared: &Shared<'_>,
    dir: &OwnedFd,
    fresh: bool,
    rel: &[u8],
    node: &Node,
    buf: &mut AlignedBuf,
) -> Result<(), RestoreError> {
    let name = node.name.as_slice();
    let content = node.content.clone().unwrap_or_else(Content::empty);
    if !fresh && already_restored(shared, dir, name, node, &content)? {
        // Its content was just hashed against the snapshot: verified too.
        shared.count(|s| {
            s.files += 1;
            s.files_skipped += 1;
            s.files_verified += u64::from(shared.verify);
        });
        return Ok(());
    }
    if !fresh && !clear_entry(shared, dir, rel, name) {
        return Ok(());
    }
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(dir, name, flags, Mode::RUSR | Mode::WUSR) {
        Ok(fd) => File::from(fd),
        Err(e) => {
            shared.warn(rel, format!("cannot create: {e}"));
            return Ok(());
        }
    };
    let direct = shared.direct && node.size >= DIRECT_FROM;
    let written = match write_content(shared.repo, &file, &content, direct, buf) {
        Ok(n) => n,
        Err(WriteError::Tree(e)) => return Err(e.into()),
        Err(e) => {
            shared.warn(rel, format!("cannot write: {e}"));
            return Ok(());
        }
    };
    shared.count(|s| {
        s.files += 1;
        s.bytes_written += written;
    });
    if shared.verify {
        match content_matches(shared.repo, &file, &content) {
            Ok(true) => shared.count(|s| s.files_verified += 1),
            Ok(false) => shared.warn(
                rel,
                "verification failed: content differs from the snapshot",
            ),
            Err(WriteError::Tree(e)) => return Err(e.into()),
            Err(e) => shared.warn(rel, format!("verification failed: {e}")),
        }
    }
    apply_fd_meta(shared, &file, rel, node);
    Ok(())
}

/// Whether a rerun finds the file in place: a regular file with the right
/// size and mtime whose content hashes to the snapshot's ids.
fn already_restored(
    shared: &Shared<'_>,
    dir: &OwnedFd,
    name: &[u8],
    node: &Node,
    content: &Content,
) -> Result<bool, RestoreError> {
    let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return Ok(false);
    };
    let same = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_size as u64 == node.size
        && st.st_mtime == node.mtime.sec
        && i128::from(st.st_mtime_nsec) == i128::from(node.mtime.nsec);
    if !same {
        return Ok(false);
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return Ok(false);
    };
    match content_matches(shared.repo, &File::from(fd), content) {
        Ok(ok) => Ok(ok),
        Err(WriteError::Tree(e)) => Err(e.into()),
        Err(_) => Ok(false),
    }
}

/// Makes a hardlink `parent/name` to the snapshot path `node.link`.
fn restore_hardlink(
    shared: &Shared<'_>,
    top: &OwnedFd,
    parent: &[u8],
    node: &Node,
) -> Result<(), RestoreError> {
    let rel = join_bytes(parent, &node.name);
    let link = node.link.as_deref().unwrap_or_default();
    let components = split_path(link);
    let Some((last, dirs)) = components.split_last() else {
        shared.warn(&rel, "refused: empty hardlink path");
        return Ok(());
    };
    if let Some(why) = components.iter().find_map(|c| validate_name(c).err()) {
        shared.warn(&rel, format!("refused: unsafe hardlink path ({why})"));
        return Ok(());
    }
    let Ok(dst_dir) = open_rel_dir(top, parent) else {
        shared.warn(&rel, "cannot reopen its directory");
        return Ok(());
    };
    let src_dir = open_rel_dir(top, &dirs.join(&b'/'));
    let src_ok = src_dir.as_ref().ok().and_then(|d| {
        rustix::fs::statat(d, *last, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .filter(|st| FileType::from_raw_mode(st.st_mode) != FileType::Directory)
    });
    match (src_dir, src_ok) {
        (Ok(src_dir), Some(_)) => {
            if !clear_entry(shared, &dst_dir, &rel, &node.name) {
                return Ok(());
            }
            match rustix::fs::linkat(
                &src_dir,
                *last,
                &dst_dir,
                node.name.as_slice(),
                AtFlags::empty(),
            ) {
                Ok(()) => shared.count(|s| s.others += 1),
                Err(e) => shared.warn(&rel, format!("cannot link: {e}")),
            }
            Ok(())
        }
        _ => restore_unlinked_copy(shared, &dst_dir, &rel, node, link),
    }
}

/// The first name of a hardlinked file was not restored (left out by the
/// includes): restore the file's content under this name instead.
fn restore_unlinked_copy(
    shared: &Shared<'_>,
    dir: &OwnedFd,
    rel: &[u8],
    node: &Node,
    link: &[u8],
) -> Result<(), RestoreError> {
    match lookup(shared.repo, &shared.root, link)? {
        Some(first) if first.kind == NodeKind::File => {
            let mut copy = first;
            copy.name = node.name.clone();
            restore_file(shared, dir, false, rel, &copy, &mut AlignedBuf::default())
        }
        _ => {
            shared.warn(
                rel,
                format!(
                    "hardlink target {} is not in the snapshot",
                    bytes_path(link).display()
                ),
            );
            Ok(())
        }
    }
}
