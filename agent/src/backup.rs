//! One backup, start to snapshot: the pipeline behind `cairn backup` and
//! `cairn run`.
//!
//! It lives in the library (not in the command's file) because two commands
//! take backups: `cairn backup` from command-line options and `cairn run`
//! from a job of the configuration file. Both fill a [`BackupRequest`] and
//! get a [`BackupDone`]; printing is theirs.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cairn_store::{BlobType, Id, Repository, Snapshot, SnapshotKind, SnapshotStats};

use crate::disk::{self, DiskBackupStats, DiskImage, DiskSet};
use crate::files_backup::{self, FileBackupOptions};
use crate::progress::Progress;
use crate::repo::{chunker_for, hostname, username};

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// Files and directories, or (with `disk`) block devices and images.
    pub paths: Vec<PathBuf>,
    /// Back up `paths` at block level.
    pub disk: bool,
    /// Tags of the snapshot.
    pub tags: Vec<String>,
    /// The host name recorded (`None`: this machine's).
    pub host: Option<String>,
    /// Exclude globs (see [`FileBackupOptions::excludes`]).
    pub excludes: Vec<String>,
    /// Files holding more exclude globs.
    pub exclude_files: Vec<PathBuf>,
    /// Leave out directories tagged with a CACHEDIR.TAG.
    pub exclude_caches: bool,
    /// Stay on the file system of each named path.
    pub one_file_system: bool,
    /// Use no parent snapshot.
    pub force: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Show a progress line per disk on standard error.
    pub progress: bool,
}

/// What a finished backup produced.
#[derive(Debug, Clone)]
pub struct BackupDone {
    /// The snapshot written.
    pub id: Id,
    /// Its counters (duration included).
    pub stats: SnapshotStats,
    /// Problems with single files, already counted in `stats.errors`.
    pub warnings: Vec<String>,
    /// The parent snapshot used, if any.
    pub parent: Option<Id>,
    /// Per-disk figures of a disk backup (empty for files).
    pub disks: Vec<(DiskImage, DiskBackupStats)>,
    /// Wall-clock seconds from start to the snapshot written.
    pub seconds: f64,
}

/// The worker count `threads` asks for (0: one per core).
pub fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Takes a backup into `repo` under a shared lock and writes its snapshot.
/// On failure, what was uploaded is indexed (so that a rerun reuses it) and
/// no snapshot is written.
pub fn backup(repo: &Repository, req: &BackupRequest) -> anyhow::Result<BackupDone> {
    let start = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = req.host.clone().unwrap_or_else(hostname);
    let _lock = repo.lock(&hostname(), "backup", false)?;
    // Read the index again now that the lock is held: a prune deletes a
    // pack only once every lock that existed when it replaced the index is
    // gone, so a dedup set read after taking the lock never names a pack
    // it is about to delete (docs/format.md §2.12).
    repo.refresh_index()
        .context("cannot read the repository's index")?;
    let outcome = if req.disk {
        backup_disks(repo, req, &host)
    } else {
        backup_files(repo, req, &host)
    };
    let mut done = match outcome {
        Ok(done) => done,
        Err(err) => {
            if let Err(flush) = repo.flush() {
                eprintln!("warning: could not index the data uploaded before the failure: {flush}");
            }
            return Err(err);
        }
    };
    done.stats.duration_ms = start.elapsed().as_millis() as u64;
    let paths: Vec<String> = absolute_paths(&req.paths)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let snapshot = Snapshot {
        time: started_at.as_secs() as i64,
        time_nanos: started_at.subsec_nanos(),
        hostname: host,
        username: username(),
        kind: if req.disk {
            SnapshotKind::Disk
        } else {
            SnapshotKind::Files
        },
        paths,
        tags: req.tags.clone(),
        parent: done.parent,
        root: done.root,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        stats: done.stats.clone(),
        original: None,
    };
    let id = repo
        .save_snapshot(&snapshot)
        .context("cannot write the snapshot")?;
    Ok(BackupDone {
        id,
        stats: done.stats,
        warnings: done.warnings,
        parent: done.parent,
        disks: done.disks,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A backup's content, before its snapshot is written.
struct Content {
    root: Id,
    stats: SnapshotStats,
    warnings: Vec<String>,
    parent: Option<Id>,
    disks: Vec<(DiskImage, DiskBackupStats)>,
}

fn backup_disks(repo: &Repository, req: &BackupRequest, host: &str) -> anyhow::Result<Content> {
    let chunker = chunker_for(repo, true)?;
    let parent = if req.force {
        None
    } else {
        find_parent(repo, SnapshotKind::Disk, host, &absolute_paths(&req.paths)?)?
    };
    let parent_set = match parent {
        Some((_, root)) => {
            Some(DiskSet::load(repo, &root).context("cannot read the parent snapshot's disks")?)
        }
        None => None,
    };
    let mut set = DiskSet {
        version: 1,
        disks: Vec::new(),
    };
    let mut total = DiskBackupStats::default();
    let mut disks = Vec::new();
    let mut warnings = Vec::new();
    for path in &req.paths {
        let progress = Progress::new(
            req.progress,
            &path.display().to_string(),
            std::fs::metadata(path).map_or(0, |m| m.len()),
        );
        let name = disk::disk_name(path);
        let parent_image = parent_set
            .as_ref()
            .and_then(|set| set.disks.iter().find(|d| d.name == name));
        let (image, stats) = disk::backup_disk(
            repo,
            &chunker,
            path,
            parent_image,
            threads(req.threads),
            &|done| progress.update(done),
        )
        .with_context(|| format!("backup of disk {} failed", path.display()))?;
        progress.finish();
        if set.disks.iter().any(|d| d.name == image.name) {
            anyhow::bail!(
                "two disks named {:?}: back them up in separate snapshots",
                image.name
            );
        }
        if let Some(first) = stats.first_unreadable {
            warnings.push(format!(
                "{}: {} bytes could not be read (media errors, the first at offset {first}); they are stored as zeros",
                path.display(),
                stats.bytes_unreadable
            ));
        }
        set.disks.push(image.clone());
        total.add(&stats);
        disks.push((image, stats));
    }
    let json = serde_json::to_vec(&set).context("cannot encode the disk set")?;
    let saved = repo.save_blob(BlobType::Meta, &json)?;
    let stats = SnapshotStats {
        bytes_total: set.disks.iter().map(|d| d.size).sum(),
        bytes_read: total.bytes_read,
        bytes_new: total.bytes_new,
        bytes_stored: total.bytes_stored + saved.stored_len,
        chunks: total.chunks,
        chunks_new: total.chunks_new,
        files: 0,
        errors: warnings.len() as u64,
        duration_ms: 0,
    };
    Ok(Content {
        root: saved.id,
        stats,
        warnings,
        parent: parent.map(|p| p.0),
        disks,
    })
}

fn backup_files(repo: &Repository, req: &BackupRequest, host: &str) -> anyhow::Result<Content> {
    let chunker = chunker_for(repo, false)?;
    let mut excludes = req.excludes.clone();
    for file in &req.exclude_files {
        excludes.extend(
            files_backup::read_exclude_file(file)
                .with_context(|| format!("cannot read exclude file {}", file.display()))?,
        );
    }
    let paths = absolute_paths(&req.paths)?;
    let parent = if req.force {
        None
    } else {
        find_parent(repo, SnapshotKind::Files, host, &paths)?
    };
    let opts = FileBackupOptions {
        one_file_system: req.one_file_system,
        excludes,
        exclude_caches: req.exclude_caches,
        threads: threads(req.threads),
        before_read: None,
        after_open: None,
    };
    let summary = files_backup::backup_files(repo, &chunker, &paths, parent.map(|p| p.1), &opts)?;
    let stats = SnapshotStats {
        bytes_total: summary.bytes_total,
        bytes_read: summary.bytes_read,
        bytes_new: summary.bytes_new,
        bytes_stored: summary.bytes_stored,
        chunks: summary.chunks,
        chunks_new: summary.chunks_new,
        files: summary.files,
        errors: summary.warnings.len() as u64,
        duration_ms: 0,
    };
    Ok(Content {
        root: summary.root,
        stats,
        warnings: summary.warnings.iter().map(|w| w.to_string()).collect(),
        parent: parent.map(|p| p.0),
        disks: Vec::new(),
    })
}

fn absolute_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())))
        .collect()
}

/// The latest snapshot of this kind and host with exactly these paths: its
/// unchanged files are reused without reading them, and its disks' chunks
/// are the bases of patches. Returns its id and root.
fn find_parent(
    repo: &Repository,
    kind: SnapshotKind,
    host: &str,
    paths: &[PathBuf],
) -> anyhow::Result<Option<(Id, Id)>> {
    let wanted: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let list = repo.list_snapshots()?;
    Ok(list
        .iter()
        .rev()
        .find(|(_, s)| s.kind == kind && s.hostname == host && s.paths == wanted)
        .map(|(id, s)| (*id, s.root)))
}
