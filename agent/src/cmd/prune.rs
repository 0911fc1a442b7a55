//! `cairn prune`: delete what no snapshot needs and repack mostly unused
//! packs (see `cairn::prune` for how it stays safe beside running backups).

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::prune::{PruneReport, prune_locked};
use cairn::units::{Percent, format_bytes};
use cairn_store::Repository;

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn prune`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prune never makes backups wait: it marks what to delete (writing a new index \
and a plan), and deletes the condemned packs only once every backup that was \
running when it marked them has finished; a plan still waiting is finished \
by the next prune. Prune refuses to delete anything when a snapshot reaches \
something missing or damaged: run `cairn check` first.")]
pub struct Args {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Repack a pack when more than this share of its bytes is unused
    /// (0% repacks every pack with any unused blob; 100% never repacks).
    #[arg(long, value_name = "PERCENT", default_value = "10%")]
    pub max_unused: Percent,
    /// Show what would be deleted and repacked; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Runs `cairn prune`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let report = prune_with_lock(&repo, &args.repo, args.max_unused, args.dry_run)?;
    print_report(&args.repo, &report)?;
    Ok(Outcome::Clean)
}

/// Prunes an open repository under a prune lock (also run by
/// `cairn forget --prune`); phase lines go to standard error unless quiet.
pub fn prune_with_lock(
    repo: &Repository,
    repo_args: &RepoArgs,
    max_unused: Percent,
    dry_run: bool,
) -> anyhow::Result<PruneReport> {
    let chatty = !repo_args.quiet && !repo_args.json;
    let report = prune_locked(repo, max_unused.0, dry_run, &mut |line| {
        if chatty || line.starts_with("warning") {
            eprintln!("{line}");
        }
    })
    .context("prune could not finish")?;
    Ok(report)
}

/// Prints a prune's report: JSON, or the human summary unless quiet.
pub fn print_report(repo_args: &RepoArgs, report: &PruneReport) -> anyhow::Result<()> {
    if repo_args.json {
        print_json(report)
    } else if !repo_args.quiet {
        print(&summary(report))
    } else {
        Ok(())
    }
}

/// The human summary of a prune.
fn summary(r: &PruneReport) -> String {
    let m = &r.mark;
    let mut out = String::new();
    let swept = |out: &mut String, what: &str, s: &cairn::prune::SweepReport| {
        if s.plans_done + s.plans_waiting == 0 {
            return;
        }
        *out += &format!(
            "{what}: {} plan(s) done, {} pack(s) deleted ({}), {} kept because a snapshot or index needs them\n",
            s.plans_done,
            s.packs_deleted,
            format_bytes(s.bytes_freed),
            s.packs_kept_indexed + s.packs_reindexed
        );
        for w in &s.waiting_for {
            *out += &format!("  waiting for a backup that holds a lock: {w}\n");
        }
    };
    swept(&mut out, "earlier prunes", &r.earlier);
    if r.dry_run && r.plans_pending > 0 {
        out += &format!(
            "{} plan(s) of earlier prunes would be swept first\n",
            r.plans_pending
        );
    }
    if let Some(why) = &m.skipped {
        out += &format!("nothing marked: {why}\n");
        return out;
    }
    out += &format!(
        "{} snapshot(s), {} blob(s) reachable; {} pack(s) kept ({} blobs)\n",
        m.snapshots, m.blobs_reachable, m.packs_kept, m.blobs_kept
    );
    let verb = if r.dry_run { "would " } else { "" };
    out += &format!(
        "{verb}repack {} pack(s) ({} blob(s), {}), {verb}condemn {} pack(s) ({}): {} unused, {} in no index\n",
        m.packs_repacked,
        m.blobs_repacked,
        format_bytes(m.bytes_repacked),
        m.packs_condemned,
        format_bytes(m.bytes_condemned),
        m.packs_unused,
        m.packs_unindexed
    );
    if r.dry_run {
        out += "dry run: nothing changed\n";
        return out;
    }
    swept(&mut out, "this prune", &r.now);
    if m.plan.is_some() && m.plan_locks > 0 {
        out += &format!(
            "{} other lock(s) were held (backups running): the condemned packs are deleted by the next prune once those have finished\n",
            m.plan_locks
        );
    }
    out
}
