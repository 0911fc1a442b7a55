//! `cairn repair`: rebuild the index from the packs; save what is readable
//! of damaged snapshots.
//!
//! `repair index` deletes index files, so it takes an exclusive lock.
//! `repair snapshots` only adds snapshots (and, with `--forget`, removes
//! the damaged originals, as `forget` does), so a shared lock.

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::repair::{damage_reached, find_damaged_blobs, repair_snapshot, repaired_manifest};
use cairn::repo::{hostname, read_secret};
use cairn::select;
use cairn::units::format_time;
use cairn_store::{Id, Repository};
use serde::Serialize;

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn repair`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Rebuild the index from the packs' own trailers (when index files
    /// are lost or damaged); packs whose trailer does not read are
    /// reported and left out.
    Index {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Find the snapshots that reach damaged or missing data (reading
    /// every pack they reach); with --write or --forget, save for each a
    /// new snapshot, tagged `repaired`, in which damaged chunks are zeros
    /// and unreadable directories, files lists and disks are left out.
    #[command(after_help = "\
Without --write or --forget nothing is changed: the damaged snapshots are \
listed (exit 4 when there are some). --write adds the repaired snapshots \
and keeps the originals; --forget adds them and removes the originals. The \
damaged data itself stays on the target until a prune.")]
    Snapshots {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Write the repaired snapshots (keep the damaged ones).
        #[arg(long)]
        write: bool,
        /// Write the repaired snapshots and remove the damaged originals.
        #[arg(long)]
        forget: bool,
        /// Only these snapshots (ids or unique prefixes); every snapshot
        /// passing the filters when none is given.
        #[arg(value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
    },
}

/// Runs `cairn repair`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Index { repo } => index(&repo),
        Action::Snapshots {
            repo,
            filter,
            write,
            forget,
            snapshots,
        } => repair_snapshots(&repo, &filter, write || forget, forget, &snapshots),
    }
}

fn index(args: &RepoArgs) -> anyhow::Result<Outcome> {
    let spec = args.spec();
    let backend = spec.backend()?;
    let secret = read_secret(&spec, false)?;
    let repo = Repository::open_without_index(backend, &secret.credential(), spec.open_options())?;
    let _lock = repo.lock(&hostname(), "repair index", true)?;
    let report = repo.rebuild_index().context("cannot rebuild the index")?;
    for (pack, reason) in &report.damaged_packs {
        eprintln!("warning: pack {pack} left out of the index: {reason}");
    }
    if args.json {
        print_json(&serde_json::json!({
            "packs": report.packs,
            "blobs": report.blobs,
            "damaged_packs": report.damaged_packs.iter()
                .map(|(p, r)| serde_json::json!({"pack": p, "reason": r}))
                .collect::<Vec<_>>(),
            "index_files_written": report.index_files_written,
            "index_files_removed": report.index_files_removed,
        }))?;
    } else if !args.quiet {
        print(&format!(
            "indexed {} blob(s) in {} pack(s); wrote {} index file(s), removed {}\n",
            report.blobs, report.packs, report.index_files_written, report.index_files_removed
        ))?;
    }
    Ok(Outcome::from_warnings(report.damaged_packs.len()))
}

/// One damaged snapshot in the report.
#[derive(Debug, Serialize)]
struct Damaged {
    id: Id,
    time: i64,
    damaged_blobs: usize,
    repaired_as: Option<Id>,
    forgotten: bool,
    changes: Vec<cairn::repair::Change>,
}

fn repair_snapshots(
    args: &RepoArgs,
    filter: &FilterArgs,
    write: bool,
    forget: bool,
    specs: &[String],
) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.spec())?;
    let _lock = if write {
        Some(repo.lock(&hostname(), "repair snapshots", false)?)
    } else {
        None
    };
    let all = select::list(&repo, &filter.filter())?;
    let chosen: Vec<_> = if specs.is_empty() {
        all
    } else {
        specs
            .iter()
            .map(|s| Repository::resolve_snapshot(s, &all).cloned())
            .collect::<Result<_, _>>()?
    };
    let damaged = find_damaged_blobs(&repo, &chosen)?;
    let mut found = Vec::new();
    let mut unrepairable = 0;
    for (id, snapshot) in &chosen {
        let reached = damage_reached(&repo, &damaged, id, snapshot)?;
        if reached.is_empty() {
            continue;
        }
        let mut entry = Damaged {
            id: *id,
            time: snapshot.time,
            damaged_blobs: reached.len(),
            repaired_as: None,
            forgotten: false,
            changes: Vec::new(),
        };
        if write {
            let repair = repair_snapshot(&repo, &damaged, snapshot)?;
            entry.changes = repair.changes;
            match repair.root {
                Some(root) => {
                    let new = repo.save_snapshot(&repaired_manifest(snapshot, root))?;
                    entry.repaired_as = Some(new);
                    if forget {
                        repo.delete_snapshot(id)
                            .with_context(|| format!("cannot remove snapshot {id}"))?;
                        entry.forgotten = true;
                    }
                }
                None => unrepairable += 1,
            }
        }
        found.push(entry);
    }
    repo.flush()?;
    if args.json {
        print_json(&serde_json::json!({
            "snapshots_checked": chosen.len(),
            "damaged_blobs": damaged.len(),
            "damaged_snapshots": found,
        }))?;
    } else if !args.quiet {
        print(&text_report(chosen.len(), damaged.len(), &found, write))?;
    }
    Ok(if found.is_empty() {
        Outcome::Clean
    } else if !write {
        Outcome::Damage(found.len())
    } else {
        Outcome::from_warnings(unrepairable)
    })
}

fn text_report(checked: usize, blobs: usize, found: &[Damaged], write: bool) -> String {
    let mut text = String::new();
    for d in found {
        text += &format!(
            "snapshot {} of {} reaches {} damaged or missing blob(s)\n",
            d.id.short(8),
            format_time(d.time),
            d.damaged_blobs
        );
        for c in &d.changes {
            text += &format!("  {}: {}\n", c.path, c.what);
        }
        match (d.repaired_as, d.forgotten) {
            (Some(new), true) => {
                text += &format!(
                    "  saved as {} (tag repaired); original removed\n",
                    new.short(8)
                );
            }
            (Some(new), false) => {
                text += &format!(
                    "  saved as {} (tag repaired); original kept\n",
                    new.short(8)
                );
            }
            (None, _) if write => text += "  its root does not read: nothing to save\n",
            (None, _) => {}
        }
    }
    text += &format!(
        "{checked} snapshot(s) checked, {} damaged ({blobs} damaged or missing blob(s))",
        found.len()
    );
    if !write && !found.is_empty() {
        text += "; run with --write or --forget to save what is readable";
    }
    text.push('\n');
    text
}
