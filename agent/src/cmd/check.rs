//! `cairn check`: verify the repository and name the snapshots any damage
//! affects (see `cairn::check` for what is checked).

use anyhow::Context;
use cairn::check::{CheckOptions, Problem, ReadData, check};
use cairn::exit::Outcome;
use cairn::repo::hostname;
use cairn::units::format_time;

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Without --read-data the structure is checked: snapshots, index files, the \
size and trailer of every pack, and that every blob a snapshot reaches \
(patch bases included) is indexed. --read-data also reads every pack and \
verifies every blob. --read-data-subset=n/m reads the packs whose id is \
n-1 modulo m, so running 1/m .. m/m (e.g. $(date +%d)/31 from cron) reads \
every pack once per cycle; --read-data-subset=N% reads a different random \
N% on each run.

Exits with 4 when damage is found; the report names the snapshots that \
cannot be restored in full. Exits with 1 when the target failed: a pack \
that could not be read after every retry is listed as not verified (not \
damaged); run the check again.")]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Read every pack and verify every blob (decrypt, decompress, id).
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read only a subset of the packs: N% (random each run) or n/m (a
    /// fixed part; 1/m..m/m cover everything).
    #[arg(long, value_name = "N%|n/m")]
    read_data_subset: Option<ReadData>,
}

/// Runs `cairn check`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let spec = args.repo.spec();
    let repo = cairn::repo::open(&spec)?;
    // Shared: a check runs beside backups, but not beside an operation
    // that deletes (a pack pruned mid-check would look missing).
    let _lock = repo.lock(&hostname(), "check", false)?;
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(subset)) => subset,
        (false, None) => ReadData::Nothing,
    };
    let opts = CheckOptions {
        read_data,
        salt: cairn::check::run_salt(),
        readers: spec.transfers(),
    };
    let chatty = !args.repo.quiet && !args.repo.json;
    let report = check(&repo, &opts, &mut |phase| {
        if chatty {
            eprintln!("{phase}");
        }
    })
    .context("check could not finish")?;
    if args.repo.json {
        print_json(&report)?;
    } else {
        let mut out = format!(
            "{} snapshot(s), {} index file(s), {} pack(s) ({} read in full), {} blob(s) reachable\n",
            report.snapshots,
            report.index_files,
            report.packs,
            report.packs_read,
            report.blobs_reachable
        );
        let leftovers = report.packs_not_indexed - report.packs_condemned;
        if leftovers > 0 {
            out += &format!(
                "{leftovers} pack(s) are in no index (left by an interrupted or running backup; not damage)\n"
            );
        }
        if report.packs_condemned > 0 {
            out += &format!(
                "{} pack(s) are condemned by {} prune plan(s) and wait for a prune to delete them (not damage)\n",
                report.packs_condemned, report.plans
            );
        }
        if !report.is_complete() {
            out += &format!(
                "{} pack(s) could not be read and were not verified:\n",
                report.packs_unverified_total
            );
            list_problems(
                &mut out,
                &report.packs_unverified,
                report.packs_unverified_total,
            );
        }
        if report.is_clean() {
            out += "no problems found\n";
        } else {
            out += &format!("{} problem(s):\n", report.problems_total);
            list_problems(&mut out, &report.problems, report.problems_total);
            out += &format!(
                "{} snapshot(s) cannot be restored in full:\n",
                report.affected.len()
            );
            for a in &report.affected {
                if a.unreadable {
                    out += &format!("  {}  (its manifest is unreadable)\n", a.id.short(8));
                } else {
                    out += &format!(
                        "  {}  {}  {}  {}\n",
                        a.id.short(8),
                        a.time.map(format_time).unwrap_or_default(),
                        a.hostname.as_deref().unwrap_or(""),
                        a.paths.join(" ")
                    );
                }
            }
        }
        print(&out)?;
    }
    let unverified = if report.is_complete() {
        String::new()
    } else {
        format!(
            "; {} pack(s) could not be read and were not verified",
            report.packs_unverified_total
        )
    };
    if report.is_clean() {
        if let Some(first) = report.packs_unverified.first() {
            anyhow::bail!(
                "{} pack(s) could not be read and were not verified (nothing read was found damaged); the first: {}: {}. Run the check again when the target answers reliably (--read-data-subset can split the work)",
                report.packs_unverified_total,
                first.object,
                first.reason
            );
        }
        return Ok(Outcome::Clean);
    }
    eprintln!(
        "error: the repository is damaged: {} problem(s), {} snapshot(s) affected{unverified}. Snapshots not listed restore in full. Keep the damaged files for analysis; a new backup stores again only data missing from the index, not data in a damaged pack the index still names",
        report.problems_total,
        report.affected.len()
    );
    Ok(Outcome::Damage(report.problems_total))
}

/// Appends one line per listed problem, and a count of those left out of
/// the list (`total` counts them all).
fn list_problems(out: &mut String, listed: &[Problem], total: usize) {
    for p in listed {
        *out += &format!("  {}: {}\n", p.object, p.reason);
    }
    if total > listed.len() {
        *out += &format!("  ... and {} more\n", total - listed.len());
    }
}
