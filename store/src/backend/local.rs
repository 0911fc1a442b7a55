//! A repository in a local directory (or a mounted SMB/NFS share).
//!
//! Objects are immutable and must never be seen half-written, even after a
//! crash or power loss, and two writers racing for the same name must not
//! both "win". So [`LocalBackend::write_new`] writes the bytes to a uniquely
//! named temp file (`.tmp-<random hex>`) in the destination directory,
//! fsyncs it, then hard-links it to its final name (a create-only step that
//! fails if the name exists, atomic on POSIX filesystems and on NFS/SMB,
//! unlike `rename`, which replaces), removes the temp name and fsyncs the
//! directory so the new entry is durable too. A crashed writer can leave a
//! temp file behind, never a partial object; listings ignore temp files and
//! [`LocalBackend::remove_stale_temp_files`] deletes old ones.
//!
//! [`Backend::replace`] (the config only) takes the same temp file and
//! `rename(2)`s it over the object, which replaces it atomically, then
//! fsyncs the directory.
//!
//! cairn runs as root on guests, so files are created mode 0600 and
//! directories 0700: repository objects are never world-readable.
//!
//! On a local disk, packs are written around the page cache ([`direct`]).

mod direct;

pub use direct::on_local_disk;

use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The prefix of temp files; it can never start a valid object name.
const TEMP_PREFIX: &str = ".tmp-";
/// Mode of every file the backend creates.
const FILE_MODE: u32 = 0o600;
/// Mode of every directory the backend creates.
const DIR_MODE: u32 = 0o700;

/// A repository stored in a directory of a local or mounted filesystem.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    /// Present where large objects are written with direct I/O.
    direct: Option<Arc<direct::DirectWriter>>,
}

impl LocalBackend {
    /// Creates the repository directory `root` (and its parents) and every
    /// layout directory: `keys`, `data/00`..`data/ff`, `index`, `snapshots`
    /// and `locks`. Directories that already exist are kept as they are.
    pub fn create(root: impl AsRef<Path>) -> Result<Self, BackendError> {
        let root = root.as_ref().to_path_buf();
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(DIR_MODE);
        let mut dirs = vec![root.clone()];
        dirs.extend(
            ObjectKind::ALL
                .iter()
                .filter(|kind| **kind != ObjectKind::Config)
                .map(|kind| root.join(kind.dir())),
        );
        dirs.extend((0..=255u8).map(|b| root.join("data").join(hex::encode([b]))));
        for dir in &dirs {
            builder
                .create(dir)
                .map_err(|e| io_err("create directory", dir.display(), e))?;
        }
        sync_dir(&root)?;
        Ok(LocalBackend::at(root))
    }

    /// Opens the repository directory `root`, which must exist
    /// ([`BackendError::NotFound`] otherwise).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, BackendError> {
        let root = root.as_ref().to_path_buf();
        let meta = fs::metadata(&root).map_err(|e| classify("open", root.display(), e))?;
        if !meta.is_dir() {
            let e = io::Error::new(ErrorKind::NotADirectory, "not a directory");
            return Err(io_err("open", root.display(), e));
        }
        Ok(LocalBackend::at(root))
    }

    fn at(root: PathBuf) -> LocalBackend {
        let direct = direct::DirectWriter::for_dir(&root).map(Arc::new);
        LocalBackend { root, direct }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes temp files (`.tmp-*`) left by crashed writers that were last
    /// modified more than `older_than` ago, and returns how many it deleted.
    ///
    /// A writer in progress keeps touching its temp file, so choose
    /// `older_than` well above the time one write can stall (an hour is
    /// safe). Removing the temp name of a write that did complete is
    /// harmless: the object keeps its own name.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, BackendError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for dir in self.object_dirs()? {
            for path in temp_files_in(&dir)? {
                if is_older_than(&path, now, older_than) && remove_if_present(&path)? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Every directory that may hold objects (and so temp files): the root,
    /// the kind directories and whatever fan-out directories exist.
    fn object_dirs(&self) -> Result<Vec<PathBuf>, BackendError> {
        let mut dirs = vec![self.root.clone()];
        for kind in ObjectKind::ALL {
            match kind {
                ObjectKind::Config => {}
                ObjectKind::Pack => dirs.extend(self.fan_out_dirs()?.into_iter().map(|(_, d)| d)),
                kind => dirs.push(self.root.join(kind.dir())),
            }
        }
        Ok(dirs)
    }

    /// The subdirectories of `data/` with two-character names, with those
    /// names. A missing `data/` gives none.
    fn fan_out_dirs(&self) -> Result<Vec<(String, PathBuf)>, BackendError> {
        let data = self.root.join(ObjectKind::Pack.dir());
        let mut out = Vec::new();
        for (name, path) in dir_entries(&data)? {
            if name.len() == 2 && fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                out.push((name, path));
            }
        }
        Ok(out)
    }

    /// Where `handle` lives (after [`Handle::validate`]).
    fn path_of(&self, handle: &Handle) -> PathBuf {
        self.root.join(handle.path())
    }

    /// Lists the objects of `kind` in `dir`, keeping only files whose name
    /// is valid and whose path is where that handle lives.
    fn list_dir(&self, kind: ObjectKind, dir: &Path) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut out = Vec::new();
        for (name, path) in dir_entries(dir)? {
            let handle = Handle { kind, name };
            if handle.validate().is_err() || self.path_of(&handle) != path {
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => out.push(ObjectInfo {
                    handle,
                    size: meta.len(),
                }),
                Ok(_) => {}
                // Deleted between the directory read and the stat.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("list", path.display(), e)),
            }
        }
        Ok(out)
    }

    /// An error for a kind directory that is missing: none if the root is
    /// there (the kind simply has no objects), NotFound for the root if not,
    /// so an unmounted share is not mistaken for an empty repository.
    fn check_root(&self) -> Result<(), BackendError> {
        match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(io_err(
                "list",
                self.root.display(),
                io::Error::new(ErrorKind::NotADirectory, "not a directory"),
            )),
            Err(e) => Err(classify("list", self.root.display(), e)),
        }
    }

    /// Writes `data` to a new temp file in `dir` and fsyncs it; returns its
    /// path and the still-open file. Creates `dir` (not its parents) if a
    /// fan-out directory is missing.
    fn write_temp(&self, dir: &Path, data: &[u8]) -> Result<(PathBuf, File), BackendError> {
        let tmp = dir.join(temp_name()?);
        let file = match create_file(&tmp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_dir(dir)?;
                create_file(&tmp)
            }
            other => other,
        }
        .map_err(|e| io_err("create temp file", tmp.display(), e))?;
        let written = match &self.direct {
            Some(direct) => direct.write_all(&file, data).map(drop),
            None => (&file).write_all(data),
        };
        let result = written
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("write", tmp.display(), e));
        if let Err(e) = result {
            // Best effort: a leftover temp file is removed later by
            // remove_stale_temp_files; the write error is what matters.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((tmp, file))
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.check_root()?;
        match kind {
            ObjectKind::Config => match self.stat(&Handle::config()) {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            },
            ObjectKind::Pack => {
                let mut out = Vec::new();
                for (_, dir) in self.fan_out_dirs()? {
                    out.extend(self.list_dir(kind, &dir)?);
                }
                Ok(out)
            }
            kind => self.list_dir(kind, &self.root.join(kind.dir())),
        }
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        handle.validate()?;
        fs::read(self.path_of(handle)).map_err(|e| classify("read", handle, e))
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        handle.validate()?;
        let file = File::open(self.path_of(handle)).map_err(|e| classify("read", handle, e))?;
        let size = file
            .metadata()
            .map_err(|e| classify("read", handle, e))?
            .len();
        let out_of_range = || BackendError::OutOfRange {
            object: handle.to_string(),
            offset,
            len,
            size,
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(out_of_range());
        }
        let mut buf = vec![0; usize::try_from(len).map_err(|_| out_of_range())?];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| io_err("read", handle, e))?;
        Ok(buf)
    }

    fn prefetch(&self, handle: &Handle, offset: u64, len: u64) {
        if handle.validate().is_err() {
            return;
        }
        if let Ok(file) = File::open(self.path_of(handle)) {
            // Starts the reads into the page cache and returns.
            let _ = rustix::fs::fadvise(
                &file,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::WillNeed,
            );
        }
    }

    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        let dest = self.path_of(handle);
        // Cheap early refusal; the hard link below is what enforces it.
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(already_exists(handle));
        }
        let dir = parent_of(&dest)?;
        let (tmp, file) = self.write_temp(dir, data)?;
        let linked = link_new(&tmp, &dest, &file);
        // The object (if linked) keeps its own name; a temp name that cannot
        // be removed is left for remove_stale_temp_files.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => sync_dir(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(already_exists(handle)),
            Err(e) => Err(io_err("write", handle, e)),
        }
    }

    /// Writes a temp file in the object's directory (fsynced), renames it
    /// over the object (`rename(2)` replaces atomically: a reader opens
    /// the old file or the new one) and fsyncs the directory.
    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        let dest = self.path_of(handle);
        match fs::metadata(&dest) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(BackendError::NotFound {
                    object: handle.to_string(),
                });
            }
            Err(e) => return Err(classify("replace", handle, e)),
        }
        let dir = parent_of(&dest)?;
        let (tmp, file) = self.write_temp(dir, data)?;
        drop(file);
        if let Err(e) = fs::rename(&tmp, &dest) {
            // Best effort, as in write_temp.
            let _ = fs::remove_file(&tmp);
            return Err(io_err("replace", handle, e));
        }
        sync_dir(dir)
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        handle.validate()?;
        let path = self.path_of(handle);
        fs::remove_file(&path).map_err(|e| classify("delete", handle, e))?;
        sync_dir(parent_of(&path)?)
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        handle.validate()?;
        let meta = fs::metadata(self.path_of(handle)).map_err(|e| classify("stat", handle, e))?;
        if !meta.is_file() {
            return Err(BackendError::NotFound {
                object: handle.to_string(),
            });
        }
        Ok(ObjectInfo {
            handle: handle.clone(),
            size: meta.len(),
        })
    }
}

/// Hard-links `tmp` to `dest`, failing with `AlreadyExists` if `dest`
/// exists.
///
/// Over NFS a retransmitted LINK can report EEXIST for a link that the first
/// transmission made; as open(2) advises, the temp file's link count (2 if
/// our link exists) tells success from a real collision.
fn link_new(tmp: &Path, dest: &Path, file: &File) -> io::Result<()> {
    match fs::hard_link(tmp, dest) {
        Ok(()) => Ok(()),
        // Our inode got its second name, so the link was made.
        Err(_) if file.metadata().is_ok_and(|m| m.nlink() >= 2) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A fresh temp file name: the prefix and 128 random bits in hex.
fn temp_name() -> Result<String, BackendError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| BackendError::Io {
        op: "write",
        object: "temp file name".into(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(format!("{TEMP_PREFIX}{}", hex::encode(bytes)))
}

/// Creates a new file (mode 0600) for writing; fails if `path` exists.
fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates one directory (mode 0700; a concurrent creator is fine) and
/// fsyncs its parent so the new entry is durable.
fn create_dir(dir: &Path) -> Result<(), BackendError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => sync_dir(parent_of(dir)?),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create directory", dir.display(), e)),
    }
}

/// Fsyncs a directory, making the entries created or removed in it durable.
///
/// Filesystems that cannot fsync a directory (EINVAL, as some network
/// filesystems answer) are tolerated, as PostgreSQL does: there is nothing
/// more a program can do on them.
fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    let synced = File::open(dir).and_then(|d| d.sync_all());
    match synced {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported) => Ok(()),
        Err(e) => Err(io_err("sync directory", dir.display(), e)),
    }
}

/// The directory holding `path` (object paths always have one).
fn parent_of(path: &Path) -> Result<&Path, BackendError> {
    path.parent().ok_or_else(|| BackendError::InvalidName {
        object: path.display().to_string(),
    })
}

/// The entries of `dir` with UTF-8 names, as (name, path); a missing
/// directory has none. Other names cannot be objects and are skipped.
fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackendError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir.display(), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir.display(), e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

/// The temp files in `dir` (none if it is missing).
fn temp_files_in(dir: &Path) -> Result<Vec<PathBuf>, BackendError> {
    Ok(dir_entries(dir)?
        .into_iter()
        .filter(|(name, _)| name.starts_with(TEMP_PREFIX))
        .map(|(_, path)| path)
        .collect())
}

/// Whether the file at `path` was last modified more than `age` before
/// `now` (false if that cannot be told, e.g. a clock in the future).
fn is_older_than(path: &Path, now: SystemTime, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|mtime| now.duration_since(mtime).ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// Removes a file; false if it was already gone.
fn remove_if_present(path: &Path) -> Result<bool, BackendError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove temp file", path.display(), e)),
    }
}

/// The create-only refusal for `handle`.
fn already_exists(handle: &Handle) -> BackendError {
    BackendError::AlreadyExists {
        object: handle.to_string(),
    }
}

/// Maps an I/O error about an object: NotFound and AlreadyExists become the
/// backend's own errors, anything else is [`BackendError::Io`].
fn classify(op: &'static str, object: impl std::fmt::Display, e: io::Error) -> BackendError {
    let object = object.to_string();
    match e.kind() {
        ErrorKind::NotFound => BackendError::NotFound { object },
        ErrorKind::AlreadyExists => BackendError::AlreadyExists { object },
        _ => BackendError::Io {
            op,
            object,
            source: e,
        },
    }
}

/// An I/O error as [`BackendError::Io`], whatever its kind.
fn io_err(op: &'static str, object: impl std::fmt::Display, e: io::Error) -> BackendError {
    if e.kind() == io::ErrorKind::StorageFull {
        return BackendError::NoSpace {
            op,
            object: object.to_string(),
            source: e,
        };
    }
    BackendError::Io {
        op,
        object: object.to_string(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::backend::conformance;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_full_disk_is_reported_as_such() {
        let e = io_err(
            "write",
            "/mnt/share/repo/data/ab/x",
            io::Error::from_raw_os_error(28),
        );
        assert!(matches!(e, BackendError::NoSpace { .. }), "{e:?}");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("/mnt/share/repo") && text.contains("no space left"),
            "{text}"
        );
        assert!(text.contains("cairn prune"), "{text}");
    }

    fn fresh() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::create(dir.path().join("repo")).unwrap();
        (dir, backend)
    }

    fn pack(tag: &[u8]) -> Handle {
        Handle::new(ObjectKind::Pack, &Id::of_object(tag))
    }

    /// Every `.tmp-*` file anywhere under `root`.
    fn temp_files(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else if name.starts_with(TEMP_PREFIX) {
                    found.push(entry.path());
                }
            }
        }
        found
    }

    #[test]
    fn prefetch_is_a_harmless_hint() {
        let (_dir, backend) = fresh();
        let h = pack(b"p");
        backend.write_new(&h, &[7u8; 10_000]).unwrap();
        backend.prefetch(&h, 100, 5_000);
        backend.prefetch(&h, 9_000, 1_000_000);
        backend.prefetch(&pack(b"missing"), 0, 10);
        assert_eq!(
            backend.read_range(&h, 100, 5_000).unwrap(),
            vec![7u8; 5_000]
        );
    }

    #[test]
    fn conformance_suite() {
        let (_dir, backend) = fresh();
        conformance::run_all(&backend);
        assert!(temp_files(backend.root()).is_empty());
    }

    #[test]
    fn files_are_0600_and_directories_0700() {
        let (_dir, backend) = fresh();
        let h = pack(b"perm");
        backend.write_new(&h, b"secret").unwrap();
        backend.write_new(&Handle::config(), b"cfg").unwrap();
        for handle in [&h, &Handle::config()] {
            let mode = fs::metadata(backend.root().join(handle.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{handle}");
        }
        for dir in ["", "keys", "data", "data/00", "data/ff", "index", "locks"] {
            let mode = fs::metadata(backend.root().join(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{dir:?} is {mode:o}");
        }
    }

    #[test]
    fn no_temp_file_is_left_by_writes_or_refused_writes() {
        let (_dir, backend) = fresh();
        let h = pack(b"once");
        backend.write_new(&h, b"first").unwrap();
        assert!(matches!(
            backend.write_new(&h, b"second"),
            Err(BackendError::AlreadyExists { .. })
        ));
        assert!(temp_files(backend.root()).is_empty());
        assert_eq!(backend.read(&h).unwrap(), b"first");
    }

    #[test]
    fn replace_swaps_the_bytes_keeps_the_mode_and_leaves_no_temp_file() {
        let (_dir, backend) = fresh();
        let config = Handle::config();
        assert!(
            backend.replace(&config, b"new").unwrap_err().is_not_found(),
            "a missing object is not created"
        );
        assert!(backend.stat(&config).unwrap_err().is_not_found());
        backend.write_new(&config, b"old config").unwrap();
        backend.replace(&config, b"new").unwrap();
        assert_eq!(backend.read(&config).unwrap(), b"new");
        let path = backend.root().join("config");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(temp_files(backend.root()).is_empty());
        // A directory where the object should be is not an object.
        fs::create_dir(backend.root().join("snapshots/ab")).unwrap();
        let dir = Handle {
            kind: ObjectKind::Snapshot,
            name: "ab".into(),
        };
        assert!(backend.replace(&dir, b"x").unwrap_err().is_not_found());
    }

    #[test]
    fn stale_temp_files_are_removed_and_fresh_ones_kept() {
        let (_dir, backend) = fresh();
        let old = SystemTime::now() - Duration::from_secs(7200);
        for path in ["data/ab/.tmp-0001", ".tmp-0002", "locks/.tmp-0003"] {
            let f = File::create(backend.root().join(path)).unwrap();
            f.set_modified(old).unwrap();
        }
        File::create(backend.root().join("index/.tmp-fresh")).unwrap();
        let h = pack(b"kept");
        backend.write_new(&h, b"object").unwrap();

        let removed = backend
            .remove_stale_temp_files(Duration::from_secs(3600))
            .unwrap();
        assert_eq!(removed, 3);
        assert_eq!(
            temp_files(backend.root()),
            vec![backend.root().join("index/.tmp-fresh")]
        );
        assert_eq!(backend.read(&h).unwrap(), b"object");
    }

    #[test]
    fn listings_ignore_temp_files_junk_and_misplaced_packs() {
        let (_dir, backend) = fresh();
        let h = pack(b"listed");
        backend.write_new(&h, b"x").unwrap();
        let root = backend.root();
        fs::write(root.join("data/ab/.tmp-123"), b"partial").unwrap();
        fs::write(root.join("data/ab/NOT-VALID"), b"junk").unwrap();
        // A valid pack name in the wrong fan-out directory cannot be read.
        fs::write(root.join("data/00/ab12"), b"misplaced").unwrap();
        fs::create_dir(root.join("index/0123")).unwrap();
        fs::write(root.join("snapshots/.tmp-9"), b"partial").unwrap();
        let packs = backend.list(ObjectKind::Pack).unwrap();
        assert_eq!(packs, vec![ObjectInfo { handle: h, size: 1 }]);
        assert!(backend.list(ObjectKind::Index).unwrap().is_empty());
        assert!(backend.list(ObjectKind::Snapshot).unwrap().is_empty());
    }

    #[test]
    fn missing_fan_out_directories_are_tolerated_and_recreated() {
        let (_dir, backend) = fresh();
        fs::remove_dir(backend.root().join("data/7f")).unwrap();
        assert!(backend.list(ObjectKind::Pack).unwrap().is_empty());
        let mut id = Id::of_object(b"fan");
        id.0[0] = 0x7f;
        let h = Handle::new(ObjectKind::Pack, &id);
        backend.write_new(&h, b"packed").unwrap();
        assert_eq!(backend.read(&h).unwrap(), b"packed");
        assert_eq!(backend.list(ObjectKind::Pack).unwrap().len(), 1);
    }

    #[test]
    fn open_needs_an_existing_root_and_lists_fail_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        assert!(matches!(
            LocalBackend::open(&root),
            Err(BackendError::NotFound { .. })
        ));
        LocalBackend::create(&root).unwrap();
        let backend = LocalBackend::open(&root).unwrap();
        assert!(backend.list(ObjectKind::Snapshot).unwrap().is_empty());
        fs::remove_dir_all(&root).unwrap();
        assert!(matches!(
            backend.list(ObjectKind::Snapshot),
            Err(BackendError::NotFound { .. })
        ));
    }
}
