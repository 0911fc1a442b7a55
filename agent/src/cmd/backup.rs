//! `cairn backup`: back up files and directories, or disks at block level.

use anyhow::Context;
use std::path::PathBuf;

use cairn::backup::{BackupRequest, backup};
use cairn::exit::Outcome;
use cairn::units::format_bytes;
use cairn_store::SnapshotStats;

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
    /// After the backup, lay the new snapshot out again (`cairn synth`)
    /// when its restore would touch more than SPREAD times the fewest packs
    /// that could hold it (`cairn stats SNAPSHOT` shows the spread; 1.5 is
    /// a reasonable threshold for disks with scattered writes).
    #[arg(long, value_name = "SPREAD")]
    synth_above: Option<f64>,
    /// Worker threads (0 = one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Files, directories, block devices or disk images.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Runs `cairn backup`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let req = BackupRequest {
        paths: args.paths.clone(),
        disk: args.disk,
        tags: args.tags.clone(),
        host: args.host.clone(),
        excludes: args.excludes.clone(),
        exclude_files: args.exclude_files.clone(),
        exclude_caches: args.exclude_caches,
        one_file_system: args.one_file_system,
        force: args.force,
        threads: args.threads,
        progress: args.repo.progress(),
    };
    let done = backup(&repo, &req)?;
    for w in &done.warnings {
        eprintln!("warning: {w}");
    }
    if args.repo.verbose && !args.repo.json {
        for (image, stats) in &done.disks {
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
    }
    report(&args, &done.id, &done.stats, done.seconds)?;
    if let Some(threshold) = args.synth_above {
        synth_if_spread(&repo, &done.id, threshold, args.repo.quiet)?;
    }
    Ok(Outcome::from_warnings(done.warnings.len()))
}

/// The `--synth-above` policy: synth the new snapshot if it is spread out.
fn synth_if_spread(
    repo: &cairn_store::Repository,
    id: &cairn_store::Id,
    threshold: f64,
    quiet: bool,
) -> anyhow::Result<()> {
    let failed = || {
        format!(
            "the snapshot {} is saved, but its synth failed",
            id.short(8)
        )
    };
    let snapshot = repo.load_snapshot(id).with_context(failed)?;
    let synthesised = cairn::synth::synth_if_spread_above(
        repo,
        id,
        &snapshot,
        threshold,
        &cairn::synth::SynthOptions::default(),
    )
    .with_context(failed)?;
    if let Some(r) = synthesised
        && !quiet
    {
        eprintln!(
            "synth: spread {:.2} above {threshold}: {} blobs laid out again, snapshot {} replaces {}",
            r.before.spread,
            r.blobs_rewritten,
            r.snapshot.short(8),
            id.short(8)
        );
    }
    Ok(())
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
