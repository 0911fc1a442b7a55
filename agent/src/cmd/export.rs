//! `cairn export`: a disk snapshot as a raw image to a file or stdout (see
//! `cairn::export`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cairn::disk::DiskSet;
use cairn::exit::{Outcome, UsageError};
use cairn::progress::Progress;
use cairn::select;
use cairn_store::SnapshotKind;

use super::common::RepoArgs;
use super::restore::pick_disk;
use super::snapshots::FilterArgs;

/// Options of `cairn export`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes the disk front to back as a raw image, holes as zeros, so it can be \
piped (`cairn export latest | ssh host dd of=/dev/vdb bs=4M`) or saved as a \
file another hypervisor imports. Every blob is verified against its id. \
For a file snapshot use `cairn restore --target DIR` (a tar export is not \
built yet).")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The snapshot (id, unique prefix or `latest`).
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The disk to export, when the snapshot holds several.
    #[arg(long, value_name = "NAME")]
    disk: Option<String>,
    /// Where to write the image; `-` for standard output.
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// Worker threads fetching blobs (0 = one per core, at least 4).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
}

/// Runs `cairn export`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let (id, snap) = select::resolve(&repo, &args.snapshot, &args.filter.filter())?;
    if snap.kind != SnapshotKind::Disk {
        return Err(UsageError(format!(
            "snapshot {} is a file snapshot: restore it with `cairn restore {} --target DIR` (export writes disk images only)",
            id.short(8),
            id.short(8)
        ))
        .into());
    }
    let set =
        DiskSet::load(&repo, &snap.root).with_context(|| format!("snapshot {}", id.short(8)))?;
    let image = pick_disk(&set, args.disk.as_deref(), &id)?;
    let threads = if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .max(4)
    };
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
    let progress = Progress::new(
        args.repo.progress(),
        &format!("export {}", image.name),
        image.size,
    );
    cairn::export::export_disk(&repo, image, &mut out, threads, &|d| progress.update(d))
        .with_context(|| format!("export of disk {} failed", image.name))?;
    progress.finish();
    drop(out);
    if !to_stdout && !args.repo.quiet {
        eprintln!(
            "disk {} ({} bytes) written to {}",
            image.name,
            image.size,
            args.output.display()
        );
    }
    Ok(Outcome::Clean)
}
