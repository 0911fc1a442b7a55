//! Turning the paths a user names into the files to read.
//!
//! A path named on the command line must exist and be readable: if it is not,
//! the command fails at once, naming it, before any work is done (a typo
//! should not cost an hour of chunking). Inside a directory, problems are
//! different: one unreadable file among a million must not abort a backup, so
//! the walker reports it as a [`Warning`] and goes on. Only regular files are
//! taken from directories; symbolic links, sockets, pipes and device nodes
//! found inside them are skipped and counted. Entries are visited in sorted
//! order, so runs over the same tree are reproducible.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What kind of input a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file (or a disk image, which is a regular file).
    File,
    /// A block device, such as a whole disk or a partition.
    BlockDevice,
}

/// One file or device to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The path, as named or as found under a named directory.
    pub path: PathBuf,
    /// What it is.
    pub kind: InputKind,
    /// Whether the user named it directly: such inputs fail the command when
    /// they cannot be read, others only give a warning.
    pub named: bool,
}

/// A problem with one input that did not stop the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What went wrong with it.
    pub message: String,
}

impl Warning {
    /// A warning about `path` from an error (its whole chain is kept).
    pub fn new(path: &Path, error: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Checks the paths the user named, in order, and says what each is.
///
/// Fails on the first path that does not exist, cannot be examined, or is
/// neither a regular file, a block device nor a directory. Symbolic links
/// named directly are followed.
pub fn check_named(paths: &[PathBuf]) -> anyhow::Result<Vec<Named>> {
    paths
        .iter()
        .map(|path| {
            let meta =
                fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
            let kind = if meta.is_dir() {
                NamedKind::Directory
            } else if meta.is_file() {
                NamedKind::Input(InputKind::File)
            } else if is_block_device(&meta) {
                NamedKind::Input(InputKind::BlockDevice)
            } else {
                bail!(
                    "{} is not a regular file, block device or directory: name files, \
                     disk images, block devices or directories",
                    path.display()
                );
            };
            Ok(Named {
                path: path.clone(),
                kind,
            })
        })
        .collect()
}

/// A path the user named, checked by [`check_named`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The path as given.
    pub path: PathBuf,
    /// What it is.
    pub kind: NamedKind,
}

/// What a named path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedKind {
    /// A file or device to read.
    Input(InputKind),
    /// A directory to walk.
    Directory,
}

#[cfg(unix)]
fn is_block_device(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

#[cfg(not(unix))]
fn is_block_device(_meta: &fs::Metadata) -> bool {
    false
}

/// Iterates over the inputs under one named path: the path itself if it is a
/// file or device, else the regular files below it, depth first in sorted
/// order. Problems below a named directory come out as warnings.
///
/// Memory is bounded by the sum of the widths of the directories on the
/// current path, not by the size of the tree.
#[derive(Debug)]
pub struct Walker {
    /// Directories still to read, the next one last.
    dirs: Vec<PathBuf>,
    /// Inputs and warnings from the directory being read, in order.
    pending: VecDeque<Result<Input, Warning>>,
    /// The named directory, whose read errors are fatal.
    root: Option<PathBuf>,
    skipped: u64,
}

impl Walker {
    /// A walker over one checked path.
    pub fn new(named: &Named) -> Self {
        let mut walker = Self {
            dirs: Vec::new(),
            pending: VecDeque::new(),
            root: None,
            skipped: 0,
        };
        match named.kind {
            NamedKind::Input(kind) => walker.pending.push_back(Ok(Input {
                path: named.path.clone(),
                kind,
                named: true,
            })),
            NamedKind::Directory => {
                walker.root = Some(named.path.clone());
                walker.dirs.push(named.path.clone());
            }
        }
        walker
    }

    /// How many entries were skipped because they are not regular files or
    /// directories (symbolic links, sockets, pipes, device nodes).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next input, or a warning about something below the named
    /// directory that was skipped. Fails only when the named directory
    /// itself cannot be read.
    pub fn next_input(&mut self) -> Option<anyhow::Result<Result<Input, Warning>>> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Some(Ok(next));
            }
            let dir = self.dirs.pop()?;
            if let Err(e) = self.read_dir(&dir) {
                if self.root.as_deref() == Some(dir.as_path()) {
                    return Some(Err(anyhow::Error::new(e)
                        .context(format!("cannot read directory {}", dir.display()))));
                }
                return Some(Ok(Err(Warning::new(
                    &dir,
                    format!("cannot read directory: {e}"),
                ))));
            }
        }
    }

    /// Reads one directory: files and per-entry warnings go to `pending`,
    /// subdirectories onto the stack so that they are visited in order.
    fn read_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut entries = fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => subdirs.push(path),
                Ok(t) if t.is_file() => self.pending.push_back(Ok(Input {
                    path,
                    kind: InputKind::File,
                    named: false,
                })),
                Ok(_) => self.skipped += 1,
                Err(e) => self
                    .pending
                    .push_back(Err(Warning::new(&path, format!("cannot examine: {e}")))),
            }
        }
        // This directory's files come first, then its subdirectories in order.
        self.dirs.extend(subdirs.into_iter().rev());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    fn walk(named: &Named) -> (Vec<PathBuf>, Vec<Warning>, u64) {
        let mut walker = Walker::new(named);
        let (mut files, mut warnings) = (Vec::new(), Vec::new());
        while let Some(next) = walker.next_input() {
            match next.unwrap() {
                Ok(input) => files.push(input.path),
                Err(w) => warnings.push(w),
            }
        }
        (files, warnings, walker.skipped())
    }

    #[test]
    fn walks_sorted_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        for f in ["z", "b/c/x", "b/y", "a/w", "a/v"] {
            fs::write(root.join(f), f).unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("z"), root.join("link")).unwrap();

        let named = check_named(&[root.to_owned()]).unwrap();
        assert_eq!(named[0].kind, NamedKind::Directory);
        let (files, warnings, skipped) = walk(&named[0]);
        let rel: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(rel, ["z", "a/v", "a/w", "b/y", "b/c/x"]);
        assert!(warnings.is_empty());
        assert_eq!(skipped, if cfg!(unix) { 1 } else { 0 });
    }

    #[test]
    fn named_file_is_its_own_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let named = check_named(std::slice::from_ref(&file)).unwrap();
        assert_eq!(named[0].kind, NamedKind::Input(InputKind::File));
        let mut walker = Walker::new(&named[0]);
        let input = walker.next_input().unwrap().unwrap().unwrap();
        assert_eq!(input.path, file);
        assert!(input.named);
        assert!(walker.next_input().is_none());
    }

    #[test]
    fn missing_named_path_fails_naming_it() {
        let err = check_named(&[PathBuf::from("/no/such/cairn-path")]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/no/such/cairn-path"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn special_named_path_is_refused() {
        let err = check_named(&[PathBuf::from("/dev/null")]).unwrap_err();
        assert!(err.to_string().contains("/dev/null is not a regular file"));
    }
}
