//! `cairn restore`: restore a disk to an image or device, or files to a
//! directory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cairn::disk::{self, DiskRestoreOptions, DiskSet};
use cairn::exit::Outcome;
use cairn::files_restore::{self, RestoreOptions};
use cairn::progress::Progress;
use cairn::select;
use cairn::units::format_bytes;
use cairn_store::SnapshotKind;

use super::common::{RepoArgs, io_threads, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The snapshot: an id, a unique id prefix, or `latest`.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Restore files into this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "disk_to")]
    target: Option<PathBuf>,
    /// Restore only these paths of a file snapshot (repeatable).
    #[arg(long = "include", value_name = "PATH")]
    includes: Vec<PathBuf>,
    /// Restore a disk to this image file (created sparse) or block device.
    #[arg(long, value_name = "FILE_OR_DEVICE")]
    disk_to: Option<PathBuf>,
    /// Which disk of the snapshot (its name; needed when it holds several).
    #[arg(long, value_name = "NAME")]
    disk: Option<String>,
    /// Re-read everything written and check it against the snapshot.
    #[arg(long)]
    verify: bool,
    /// Worker threads (0 = one per core, two for a files restore, and at
    /// least as many as --transfers: restores wait on downloads and writes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

/// Workers of a files restore: `requested`, or else two per core (and at
/// least `io`). A worker waits on its direct writes (`file_content`) as
/// well as on downloads; with one per core a core idled while its worker
/// waited (tree restore, 5 interleaved cold runs: wall median 3.06 s with
/// 2 workers, 2.51 s with 4, RSS +8 MB).
fn files_restore_threads(requested: usize, io: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    io.max(2 * cores)
}

/// Runs `cairn restore`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let spec = args.repo.spec();
    let repo = cairn::repo::open(&spec)?;
    let (id, snap) = select::resolve(&repo, &args.snapshot, &args.filter.filter())?;
    let threads = io_threads(args.threads, &spec);
    match (snap.kind, &args.disk_to, &args.target) {
        (SnapshotKind::Disk, Some(to), _) => {
            let set = DiskSet::load(&repo, &snap.root)
                .with_context(|| format!("snapshot {}", id.short(8)))?;
            let image = pick_disk(&set, args.disk.as_deref(), &id)?;
            let progress = Progress::new(
                args.repo.progress(),
                &format!("restore {}", image.name),
                image.size,
            );
            let stats = disk::restore_disk(
                &repo,
                image,
                to,
                &DiskRestoreOptions {
                    threads,
                    verify: args.verify,
                },
                &|d| progress.update(d),
            )
            .with_context(|| {
                format!("restore of disk {} to {} failed", image.name, to.display())
            })?;
            progress.finish();
            let secs = start.elapsed().as_secs_f64();
            if args.repo.json {
                print_json(
                    &serde_json::json!({ "snapshot": id, "disk": image.name, "target": to, "stats": stats, "seconds": secs }),
                )?;
            } else if !args.repo.quiet {
                print(&format!(
                    "restored disk {} ({}) of snapshot {} to {} in {:.1}s ({}/s){}\n",
                    image.name,
                    format_bytes(image.size),
                    id.short(8),
                    to.display(),
                    secs,
                    format_bytes((image.size as f64 / secs.max(1e-3)) as u64),
                    if args.verify { ", verified" } else { "" }
                ))?;
            }
            Ok(Outcome::Clean)
        }
        (SnapshotKind::Disk, None, _) => anyhow::bail!(
            "snapshot {} is a disk snapshot: restore it with --disk-to FILE_OR_DEVICE",
            id.short(8)
        ),
        (SnapshotKind::Files, _, None) => anyhow::bail!(
            "snapshot {} is a file snapshot: restore it with --target DIR",
            id.short(8)
        ),
        (SnapshotKind::Files, _, Some(target)) => {
            let opts = RestoreOptions {
                verify: args.verify,
                threads: files_restore_threads(args.threads, threads),
            };
            let summary =
                files_restore::restore_files(&repo, snap.root, target, &args.includes, &opts)
                    .with_context(|| {
                        format!(
                            "restore of snapshot {} to {} failed",
                            id.short(8),
                            target.display()
                        )
                    })?;
            for w in &summary.warnings {
                eprintln!("warning: {w}");
            }
            let secs = start.elapsed().as_secs_f64();
            if args.repo.json {
                print_json(&serde_json::json!({
                    "snapshot": id, "target": target, "seconds": secs,
                    "files": summary.files, "files_skipped": summary.files_skipped, "dirs": summary.dirs,
                    "others": summary.others, "bytes_written": summary.bytes_written,
                    "files_verified": summary.files_verified, "warnings": summary.warnings.len(),
                }))?;
            } else if !args.repo.quiet {
                print(&format!(
                    "restored snapshot {} to {}: {} files ({} already correct), {} dirs, {} other, {} written in {:.1}s{}\n",
                    id.short(8),
                    target.display(),
                    summary.files,
                    summary.files_skipped,
                    summary.dirs,
                    summary.others,
                    format_bytes(summary.bytes_written),
                    secs,
                    if args.verify {
                        format!(", {} verified", summary.files_verified)
                    } else {
                        String::new()
                    }
                ))?;
            }
            Ok(Outcome::from_warnings(summary.warnings.len()))
        }
    }
}

/// The disk of `set` named `name`, or its only disk when no name is given.
pub fn pick_disk<'a>(
    set: &'a DiskSet,
    name: Option<&str>,
    id: &cairn_store::Id,
) -> anyhow::Result<&'a cairn::disk::DiskImage> {
    match name {
        Some(name) => set.disks.iter().find(|d| d.name == name).with_context(|| {
            format!(
                "snapshot {} has no disk {name:?}; it has: {}",
                id.short(8),
                names(set)
            )
        }),
        None if set.disks.len() == 1 => Ok(&set.disks[0]),
        None => anyhow::bail!(
            "snapshot {} holds several disks ({}); choose one with --disk NAME",
            id.short(8),
            names(set)
        ),
    }
}

fn names(set: &DiskSet) -> String {
    set.disks
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
