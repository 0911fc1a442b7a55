//! `cairn backup`: back up files and directories, or disks at block level.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cairn::disk::{self, DiskBackupStats, DiskSet};
use cairn::exit::Outcome;
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
    let threads = threads(args.threads);
    let (root, mut stats, warnings) = if args.disk {
        backup_disks(&repo, &args, threads)?
    } else {
        anyhow::bail!("file backups are not wired in yet; use --disk")
    };
    stats.duration_ms = start.elapsed().as_millis() as u64;
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
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
        parent: None,
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

fn backup_disks(
    repo: &cairn_store::Repository,
    args: &Args,
    threads: usize,
) -> anyhow::Result<(cairn_store::Id, SnapshotStats, usize)> {
    let chunker = chunker_for(repo, true)?;
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
        let (image, stats) =
            disk::backup_disk(repo, &chunker, path, threads, &|done| progress.update(done))
                .with_context(|| format!("backup of disk {} failed", path.display()))?;
        progress.finish();
        if set.disks.iter().any(|d| d.name == image.name) {
            anyhow::bail!(
                "two disks named {:?}: back them up in separate snapshots",
                image.name
            );
        }
        set.disks.push(image);
        total.bytes_read += stats.bytes_read;
        total.bytes_new += stats.bytes_new;
        total.bytes_stored += stats.bytes_stored;
        total.chunks += stats.chunks;
        total.chunks_new += stats.chunks_new;
    }
    let json = serde_json::to_vec(&set).context("cannot encode the disk set")?;
    let saved = repo.save_blob(BlobType::Meta, &json)?;
    let stats = SnapshotStats {
        bytes_read: total.bytes_read,
        bytes_new: total.bytes_new,
        bytes_stored: total.bytes_stored + saved.stored_len,
        chunks: total.chunks,
        chunks_new: total.chunks_new,
        files: 0,
        errors: 0,
        duration_ms: 0,
    };
    Ok((saved.id, stats, 0))
}

fn report(args: &Args, id: &cairn_store::Id, s: &SnapshotStats, secs: f64) -> anyhow::Result<()> {
    if args.repo.json {
        return print_json(&serde_json::json!({ "snapshot": id, "stats": s, "seconds": secs }));
    }
    if args.repo.quiet {
        return Ok(());
    }
    let rate = s.bytes_read as f64 / secs.max(1e-3);
    print(&format!(
        "snapshot {} saved\n  read {} in {:.1}s ({}/s), {} chunks, {} new ({}), stored {}\n",
        id.short(8),
        format_bytes(s.bytes_read),
        secs,
        format_bytes(rate as u64),
        s.chunks,
        s.chunks_new,
        format_bytes(s.bytes_new),
        format_bytes(s.bytes_stored),
    ))
}
