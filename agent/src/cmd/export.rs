//! `cairn export`: a disk snapshot as a raw image, a file snapshot as a tar
//! archive, to a file or stdout (see `cairn::export`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cairn::disk::DiskSet;
use cairn::exit::{Outcome, UsageError};
use cairn::progress::Progress;
use cairn::select;
use cairn_store::SnapshotKind;

use super::common::{RepoArgs, io_threads};
use super::restore::pick_disk;
use super::snapshots::FilterArgs;

/// Options of `cairn export`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A disk snapshot is written front to back as a raw image, holes as zeros, so \
it can be piped (`cairn export latest | ssh host dd of=/dev/vdb bs=4M`) or \
saved as a file another hypervisor imports. A file snapshot is written as a \
tar archive (GNU format with pax records for extended attributes and \
nanosecond times: `tar --xattrs --xattrs-include='*' -xpf` restores it), \
paths relative to the snapshot root; sockets and entries with unsafe names \
are left out and reported (exit code 3). Every blob is verified against its \
id.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The snapshot (id, unique prefix or `latest`).
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The disk to export, when a disk snapshot holds several.
    #[arg(long, value_name = "NAME")]
    disk: Option<String>,
    /// Where to write the image or archive; `-` for standard output.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// Worker threads fetching blobs (0 = one per core, and at least as
    /// many as --transfers).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

/// Runs `cairn export`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let spec = args.repo.spec();
    let repo = cairn::repo::open(&spec)?;
    let (id, snap) = select::resolve(&repo, &args.snapshot, &args.filter.filter())?;
    let threads = io_threads(args.threads, &spec);
    let to_stdout = args.output.as_os_str() == "-";
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))
    } else {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&args.output)
                .with_context(|| format!("cannot create {}", args.output.display()))?,
        ))
    };
    let outcome = match snap.kind {
        SnapshotKind::Disk => {
            let set = DiskSet::load(&repo, &snap.root)
                .with_context(|| format!("snapshot {}", id.short(8)))?;
            let image = pick_disk(&set, args.disk.as_deref(), &id)?;
            let progress = Progress::new(
                args.repo.progress(),
                &format!("export {}", image.name),
                image.size,
            );
            cairn::export::export_disk(&repo, image, &mut out, threads, &|d| progress.update(d))
                .with_context(|| format!("export of disk {} failed", image.name))?;
            progress.finish();
            out.flush().context("cannot write the image")?;
            if !to_stdout && !args.repo.quiet {
                eprintln!(
                    "disk {} ({} bytes) written to {}",
                    image.name,
                    image.size,
                    args.output.display()
                );
            }
            Outcome::Clean
        }
        SnapshotKind::Files => {
            if args.disk.is_some() {
                return Err(UsageError(format!(
                    "snapshot {} is a file snapshot: --disk applies to disk snapshots only",
                    id.short(8)
                ))
                .into());
            }
            let total = snap.stats.bytes_total;
            let progress = Progress::new(args.repo.progress(), "export files", total);
            let summary = cairn::export::export_tar(&repo, snap.root, &mut out, threads, &|d| {
                progress.update(d)
            })
            .with_context(|| format!("export of snapshot {} failed", id.short(8)))?;
            progress.finish();
            out.flush().context("cannot write the archive")?;
            for why in &summary.skipped {
                eprintln!("warning: {why}");
            }
            if !to_stdout && !args.repo.quiet {
                eprintln!(
                    "{} entries ({} files, {} bytes) written to {}",
                    summary.entries,
                    summary.files,
                    summary.bytes,
                    args.output.display()
                );
            }
            Outcome::from_warnings(summary.skipped.len())
        }
    };
    drop(out);
    Ok(outcome)
}
