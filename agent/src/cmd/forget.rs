//! `cairn forget`: remove snapshots by a retention policy (or by id).
//!
//! Forgetting deletes snapshot manifests only; the data they reference stays
//! until a prune removes what no snapshot reaches. That makes forget safe
//! beside running backups, so it takes a *shared* lock, not an exclusive
//! one: a backup never reads another snapshot's manifest after it has
//! started (it loads its parent's manifest once, at the start, and then
//! reads the parent's trees and pages, which are blobs forget does not
//! touch), and the snapshot it writes is a new object forget never sees.
//! Two forgets at once are harmless too (deleting a deleted manifest is not
//! an error). The shared lock still keeps forget out from under an
//! exclusive operation (prune, key removal), so that an operation relying
//! on a fixed set of snapshots can have one.

use cairn::exit::{Outcome, UsageError};
use cairn::repo::hostname;
use cairn::retention::{GroupBy, Policy, Within, apply};
use cairn::units::format_time;
use cairn_store::{Id, Repository};

use super::common::{RepoArgs, print, print_json};
use cairn::units::Percent;

use super::prune::{print_report, prune_with_lock};
use super::snapshots::FilterArgs;

/// Options of `cairn forget`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Snapshots are grouped by host and paths (--group-by) and each group is \
judged on its own, newest first; a snapshot is kept when any rule keeps it. \
Hours, days, ISO weeks, months and years are computed in UTC; --keep-within \
counts back from the group's newest snapshot, not from now. Without any \
--keep-* option forget refuses to run (it would remove every snapshot); \
name snapshots instead to remove exactly those. Forget removes snapshot \
manifests only: space is reclaimed by prune (--prune runs one after \
forgetting). A manifest that cannot be read \
is left alone with a warning (exit 3); name its id to remove it.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_yearly: u32,
    /// Keep every snapshot taken within DURATION before the group's newest
    /// (e.g. 36h, 7d, 2w, 1m, 1y, 1y6m).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<Within>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long = "keep-tag", value_name = "TAG")]
    keep_tags: Vec<String>,
    /// What separates groups: a comma-separated list of host, paths, tags;
    /// an empty string for one group of all snapshots.
    #[arg(long, value_name = "LIST", default_value = "host,paths")]
    group_by: GroupBy,
    /// Show what would be removed and why each snapshot is kept; change
    /// nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Run a prune after forgetting (see `cairn prune --help`).
    #[arg(long)]
    prune: bool,
    /// With --prune: repack a pack when more than this share of its bytes
    /// is unused.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value = "10%",
        requires = "prune"
    )]
    max_unused: Percent,
    /// Remove exactly these snapshots (ids or unique prefixes) instead of
    /// applying a policy.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

/// Runs `cairn forget`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within,
        tags: args.keep_tags.clone(),
    };
    match (policy.is_empty(), args.snapshots.is_empty()) {
        (true, true) => {
            return Err(UsageError(
                "no keep rule given: forget would remove every snapshot. Give at least one --keep-* option, or name the snapshots to remove".into(),
            )
            .into());
        }
        (false, false) => {
            return Err(
                UsageError("give either --keep-* rules or snapshot ids, not both".into()).into(),
            );
        }
        _ => {}
    }
    let repo = cairn::repo::open(&args.repo.spec())?;
    let lock = if args.dry_run {
        None
    } else {
        Some(repo.lock(&hostname(), "forget", false)?)
    };
    // A damaged manifest is left alone (never judged by a policy) with a
    // warning, and can be removed by its id.
    let cairn::forget::Loaded { list, unreadable } =
        cairn::forget::load(&repo, &args.filter.filter())?;

    let mut remove = Vec::new();
    let mut json_groups = serde_json::Value::Null;
    let mut text = String::new();
    if args.snapshots.is_empty() {
        let groups = apply(&list, &policy, args.group_by);
        for g in &groups {
            let kept = g.decisions.iter().filter(|d| d.keep).count();
            text += &format!(
                "{}: keep {}, remove {}\n",
                g.key,
                kept,
                g.decisions.len() - kept
            );
            for d in &g.decisions {
                let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
                text += &format!(
                    "  {:<6}  {}  {}  {}\n",
                    if d.keep { "keep" } else { "remove" },
                    d.id.short(8),
                    format_time(d.time),
                    reasons.join(", ")
                );
                if !d.keep {
                    remove.push(d.id);
                }
            }
        }
        json_groups = serde_json::to_value(&groups)?;
    } else {
        for spec in &args.snapshots {
            let spec_lc = spec.to_ascii_lowercase();
            let damaged: Vec<Id> = unreadable
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !spec_lc.is_empty() && id.to_hex().starts_with(&spec_lc))
                .collect();
            let (id, shown) = match (
                Repository::resolve_snapshot(spec, &list),
                damaged.as_slice(),
            ) {
                (Ok((id, s)), []) => (*id, format_time(s.time)),
                (Err(_), [id]) => (*id, "(unreadable manifest)".to_string()),
                (Ok(_), [_, ..]) | (Err(_), [_, _, ..]) => anyhow::bail!(
                    "snapshot {spec}: the prefix matches several snapshots; give more digits"
                ),
                (Err(e), []) => return Err(e.into()),
            };
            if !remove.contains(&id) {
                text += &format!("  remove  {}  {shown}\n", id.short(8));
                remove.push(id);
            }
        }
    }

    let mut warnings = 0;
    for (id, e) in &unreadable {
        if !remove.contains(id) {
            eprintln!(
                "warning: snapshot {id} is unreadable and left alone ({e}); remove it by its id if it cannot be repaired"
            );
            warnings += 1;
        }
    }
    let mut removed = Vec::new();
    if !args.dry_run {
        cairn::forget::delete(&repo, &remove)?;
        removed.clone_from(&remove);
    }
    drop(lock);
    if args.repo.json {
        // One JSON document: the prune's report, when one ran, goes in it.
        let pruned = match args.prune {
            true => Some(prune_with_lock(
                &repo,
                &args.repo,
                args.max_unused,
                args.dry_run,
            )?),
            false => None,
        };
        print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "groups": json_groups,
            "remove": remove,
            "removed": removed,
            "prune": pruned,
        }))?;
        return Ok(Outcome::from_warnings(warnings));
    }
    if !args.repo.quiet {
        text += &if args.dry_run {
            format!(
                "would remove {} snapshot(s) (dry run: nothing changed)\n",
                remove.len()
            )
        } else if args.prune {
            format!("removed {} snapshot(s); pruning\n", removed.len())
        } else {
            format!(
                "removed {} snapshot(s); run `cairn prune` to reclaim their space\n",
                removed.len()
            )
        };
        print(&text)?;
    }
    if args.prune {
        let report = prune_with_lock(&repo, &args.repo, args.max_unused, args.dry_run)?;
        print_report(&args.repo, &report)?;
    }
    Ok(Outcome::from_warnings(warnings))
}
