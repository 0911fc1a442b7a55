//! `cairn backup`: back up files and directories, or disks at block level.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cairn::disk::{self, DiskBackupStats, DiskSet};
use cairn::exit::Outcome;
use cairn::files_backup::{self, FileBackupOptions};
use cairn::progress::Progress;
use cairn::repo::{chunker_for, hostname, username};
use cairn::units::format_bytes;
use cairn_store::{BlobType, Snapshot, SnapshotKind, SnapshotStats};

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Back up the given block devices or raw disk images at block level.
    #[arg(long)]
    disk: bool,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Leave out paths matching this glob (repeatable): `*.tmp` at any depth,
    /// `/var/cache/**` absolute, `build/out` as a path ending.
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Read more exclude globs from this file (one per line, # comments).
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Leave out directories tagged with a valid CACHEDIR.TAG.
    #[arg(long)]
    exclude_caches: bool,
    /// Stay on the file system of each named path.
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Use no parent snapshot: back up every file's contents even if the
    /// parent says it is unchanged (default: unchanged size, mtime, ctime and
    /// inode are reused), and store changed disk chunks whole rather than as
    /// patches of the parent's.
    #[arg(long)]
    force: bool,
    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Files, directories, block devices or disk images.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Runs `cairn backup`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let repo = cairn::repo::open(&args.repo.spec())?;
    let host = args.host.clone().unwrap_or_else(hostname);
    let _lock = repo.lock(&hostname(), "backup", false)?;
    // Read the index again now that the lock is held: a prune deletes a
    // pack only once every lock that existed when it replaced the index is
    // gone, so a dedup set read after taking the lock never names a pack
    // it is about to delete (docs/format.md §2.12).
    repo.refresh_index()
        .context("cannot read the repository's index")?;
    let threads = threads(args.threads);
    let outcome = if args.disk {
        backup_disks(&repo, &args, &host, threads)
    } else {
        backup_files(&repo, &args, &host, threads)
    };
    let (root, mut stats, warnings, parent) = match outcome {
        Ok(done) => done,
        Err(err) => {
            // Index what was uploaded, so that rerunning the backup reuses it
            // instead of uploading it again. No snapshot is written.
            if let Err(flush) = repo.flush() {
                eprintln!("warning: could not index the data uploaded before the failure: {flush}");
            }
            return Err(err);
        }
    };
    stats.duration_ms = start.elapsed().as_millis() as u64;
    let paths: Vec<String> = args
        .paths
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .collect();
    let snapshot = Snapshot {
        time: started_at.as_secs() as i64,
        time_nanos: started_at.subsec_nanos(),
        hostname: host,
        username: username(),
        kind: if args.disk {
            SnapshotKind::Disk
        } else {
            SnapshotKind::Files
        },
        paths,
        tags: args.tags.clone(),
        parent,
        root,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        stats: stats.clone(),
    };
    let id = repo
        .save_snapshot(&snapshot)
        .context("cannot write the snapshot")?;
    report(&args, &id, &stats, start.elapsed().as_secs_f64())?;
    Ok(Outcome::from_warnings(warnings))
}

/// Backs up disks; returns the root, the counters, the number of warnings
/// and the parent snapshot used.
fn backup_disks(
    repo: &cairn_store::Repository,
    args: &Args,
    host: &str,
    threads: usize,
) -> anyhow::Result<(
    cairn_store::Id,
    SnapshotStats,
    usize,
    Option<cairn_store::Id>,
)> {
    let chunker = chunker_for(repo, true)?;
    let parent = if args.force {
        None
    } else {
        find_parent(
            repo,
            SnapshotKind::Disk,
            host,
            &absolute_paths(&args.paths)?,
        )?
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
    for path in &args.paths {
        let progress = Progress::new(
            args.repo.progress(),
            &path.display().to_string(),
            std::fs::metadata(path).map_or(0, |m| m.len()),
        );
        let name = disk::disk_name(path);
        let parent_image = parent_set
            .as_ref()
            .and_then(|set| set.disks.iter().find(|d| d.name == name));
        let (image, stats) =
            disk::backup_disk(repo, &chunker, path, parent_image, threads, &|done| {
                progress.update(done)
            })
            .with_context(|| format!("backup of disk {} failed", path.display()))?;
        progress.finish();
        if args.repo.verbose && !args.repo.json {
            eprintln!(
                "disk {}: {} read, {} in zero chunks, {} chunks ({} new, {} of them as patches, {} stored)",
                image.name,
                format_bytes(stats.bytes_read),
                format_bytes(stats.bytes_zero),
                stats.chunks,
                stats.chunks_new,
                stats.chunks_patched,
                format_bytes(stats.bytes_stored)
            );
        }
        if set.disks.iter().any(|d| d.name == image.name) {
            anyhow::bail!(
                "two disks named {:?}: back them up in separate snapshots",
                image.name
            );
        }
        set.disks.push(image);
        total.add(&stats);
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
        errors: 0,
        duration_ms: 0,
    };
    Ok((saved.id, stats, 0, parent.map(|p| p.0)))
}

/// Backs up files; returns the root, the counters, the number of warnings
/// and the parent snapshot used.
fn backup_files(
    repo: &cairn_store::Repository,
    args: &Args,
    host: &str,
    threads: usize,
) -> anyhow::Result<(
    cairn_store::Id,
    SnapshotStats,
    usize,
    Option<cairn_store::Id>,
)> {
    let chunker = chunker_for(repo, false)?;
    let mut excludes = args.excludes.clone();
    for file in &args.exclude_files {
        excludes.extend(
            files_backup::read_exclude_file(file)
                .with_context(|| format!("cannot read exclude file {}", file.display()))?,
        );
    }
    let paths = absolute_paths(&args.paths)?;
    let parent = if args.force {
        None
    } else {
        find_parent(repo, SnapshotKind::Files, host, &paths)?
    };
    let opts = FileBackupOptions {
        one_file_system: args.one_file_system,
        excludes,
        exclude_caches: args.exclude_caches,
        threads,
        before_read: None,
    };
    let summary = files_backup::backup_files(repo, &chunker, &paths, parent.map(|p| p.1), &opts)?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
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
    Ok((
        summary.root,
        stats,
        summary.warnings.len(),
        parent.map(|p| p.0),
    ))
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
    repo: &cairn_store::Repository,
    kind: SnapshotKind,
    host: &str,
    paths: &[PathBuf],
) -> anyhow::Result<Option<(cairn_store::Id, cairn_store::Id)>> {
    let wanted: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let list = repo.list_snapshots()?;
    Ok(list
        .iter()
        .rev()
        .find(|(_, s)| s.kind == kind && s.hostname == host && s.paths == wanted)
        .map(|(id, s)| (*id, s.root)))
}

fn report(args: &Args, id: &cairn_store::Id, s: &SnapshotStats, secs: f64) -> anyhow::Result<()> {
    if args.repo.json {
        return print_json(&serde_json::json!({ "snapshot": id, "stats": s, "seconds": secs }));
    }
    if args.repo.quiet {
        return Ok(());
    }
    let rate = s.bytes_total.max(s.bytes_read) as f64 / secs.max(1e-3);
    let files = if s.files > 0 {
        format!(" in {} files", s.files)
    } else {
        String::new()
    };
    print(&format!(
        "snapshot {} saved\n  {}{files}, read {} in {:.1}s ({}/s), {} chunks, {} new ({}), stored {}\n",
        id.short(8),
        format_bytes(s.bytes_total),
        format_bytes(s.bytes_read),
        secs,
        format_bytes(rate as u64),
        s.chunks,
        s.chunks_new,
        format_bytes(s.bytes_new),
        format_bytes(s.bytes_stored),
    ))
}
