//! `cairn synth`: a synthetic full of a snapshot (see `cairn::synth`).

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::locality::Fragmentation;
use cairn::progress::Progress;
use cairn::repo::hostname;
use cairn::select;
use cairn::synth::{DEFAULT_MIN_PACK_USE, SynthOptions, synth};
use cairn::units::format_bytes;

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn synth`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes a new snapshot with the same content whose blobs are laid out in \
restore order in fresh packs, from the repository alone (the source is not \
read), so restoring it reads few packs, sequentially. Moved: blobs stored \
as patches (stored whole again) and blobs of packs this snapshot uses less \
than --min-pack-use of. The original manifest is then removed (the new one \
keeps its time, paths and tags, adds the tag `synthetic`, and names the \
original as its parent) unless --keep-original. Old copies become unused \
space that prune reclaims. Safe to interrupt and to run beside backups.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The snapshot (id, unique prefix or `latest`).
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Move the blobs of packs this snapshot uses less than this share of
    /// (0 to 1; 1 rewrites everything).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_MIN_PACK_USE)]
    min_pack_use: f64,
    /// Keep the original manifest beside the synthetic one.
    #[arg(long)]
    keep_original: bool,
}

/// Runs `cairn synth`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let _lock = repo.lock(&hostname(), cairn_store::lock::SYNTH, false)?;
    // After the lock, so that the index seen is at least as new as any
    // index rewrite that finished before it.
    repo.refresh_index()?;
    let (id, snapshot) = select::resolve(&repo, &args.snapshot, &args.filter.filter())?;
    let opts = SynthOptions {
        min_pack_use: args.min_pack_use,
        keep_original: args.keep_original,
        ..SynthOptions::default()
    };
    let total = snapshot.stats.bytes_total.max(snapshot.stats.bytes_read);
    let progress = Progress::new(args.repo.progress(), "synth", total);
    let report = synth(&repo, &id, &snapshot, &opts, &|d| progress.update(d))
        .with_context(|| format!("synth of snapshot {} failed", id.short(8)))?;
    progress.finish();
    if args.repo.json {
        print_json(&report)?;
        return Ok(Outcome::Clean);
    }
    let mut out = String::new();
    if report.blobs_rewritten == 0 {
        out += &format!(
            "snapshot {} is laid out well already ({}); nothing to do\n",
            id.short(8),
            describe(&report.before)
        );
    } else {
        out += &format!(
            "snapshot {} -> {}: {} of {} blobs moved ({} patches stored whole), {} stored in {} new packs\n",
            id.short(8),
            report.snapshot.short(8),
            report.blobs_rewritten,
            report.blobs,
            report.patches_rewritten,
            format_bytes(report.bytes_stored),
            report.packs_written
        );
        out += &format!(
            "before: {}\nafter:  {}\n",
            describe(&report.before),
            describe(&report.after)
        );
        if !report.original_removed {
            out += &format!("the original manifest {} is kept\n", id.short(8));
        }
    }
    print(&out)?;
    Ok(Outcome::Clean)
}

/// One line about a snapshot's locality.
pub fn describe(f: &Fragmentation) -> String {
    format!(
        "{} packs for {} ({:.1} packs/GiB, spread {:.2}), read amplification {:.2}x, {} patches",
        f.packs,
        format_bytes(f.bytes),
        f.packs_per_gib,
        f.spread,
        f.read_amplification,
        f.patches
    )
}
