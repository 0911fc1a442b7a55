//! `cairn copy`: copy snapshots to another repository.
//!
//! The destination is `--to-repo` (or `--repo`/`CAIRN_REPO`), opened with
//! the usual `CAIRN_PASSWORD_*` secrets; the source is `--from-repo`, with
//! `CAIRN_FROM_PASSWORD_FILE`, `CAIRN_FROM_PASSWORD_COMMAND` or
//! `CAIRN_FROM_KEY_FILE`. The work is in [`cairn::copy`].

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::repo::hostname;
use cairn::select;
use cairn::units::format_bytes;
use cairn_store::Repository;

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn copy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The destination must share the source's chunker secrets: create it with \
`cairn init --copy-chunker-params-from SOURCE` (its password and data keys \
are its own). Blobs keep their ids, so only those the destination lacks are \
sent, in their stored form; a rerun skips the snapshots already copied. \
The source's password comes from CAIRN_FROM_PASSWORD_FILE, \
CAIRN_FROM_PASSWORD_COMMAND or CAIRN_FROM_KEY_FILE (or a prompt); the \
destination's from the usual CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND \
or CAIRN_KEY_FILE.")]
pub struct Args {
    /// The destination repository (the same as --repo).
    #[command(flatten)]
    repo: RepoArgs,
    /// The destination repository (overrides --repo and CAIRN_REPO).
    #[arg(long, value_name = "REPO")]
    to_repo: Option<String>,
    /// The repository to copy from.
    #[arg(long, env = "CAIRN_FROM_REPO", value_name = "REPO")]
    from_repo: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Copy only these snapshots (ids, unique prefixes or `latest`);
    /// every snapshot passing the filters when none is given.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

/// Runs `cairn copy`.
pub fn run(mut args: Args) -> anyhow::Result<Outcome> {
    if let Some(to) = args.to_repo.take() {
        args.repo.repo = Some(to);
    }
    let dest_spec = args.repo.spec();
    let source_spec = dest_spec.source_spec(args.from_repo.clone());
    let source = cairn::repo::open(&source_spec)
        .with_context(|| format!("cannot open the source repository {}", args.from_repo))?;
    let dest = cairn::repo::open(&dest_spec).context("cannot open the destination repository")?;
    cairn::copy::check_compatible(&source, &dest)?;
    let _source_lock = source.lock(&hostname(), "copy (source)", false)?;
    let _dest_lock = dest.lock(&hostname(), "copy", false)?;
    let filter = args.filter.filter();
    let all = select::list(&source, &filter)?;
    let chosen = if args.snapshots.is_empty() {
        all
    } else {
        let mut chosen = Vec::new();
        for spec in &args.snapshots {
            let one = Repository::resolve_snapshot(spec, &all)?.clone();
            if !chosen.iter().any(|(id, _)| *id == one.0) {
                chosen.push(one);
            }
        }
        chosen.sort_by_key(|(id, s)| (s.time, s.time_nanos, *id));
        chosen
    };
    let report = cairn::copy::copy_snapshots(&source, &dest, &chosen, source_spec.transfers())?;
    if args.repo.json {
        print_json(&report)?;
    } else if !args.repo.quiet {
        let mut text = String::new();
        for c in &report.copied {
            text += &format!(
                "copied snapshot {} as {}\n",
                c.source.short(8),
                c.copy.short(8)
            );
        }
        text += &format!(
            "{} snapshot(s) copied, {} already there; {} blob(s) sent ({}, stored as {}), {} already there\n",
            report.copied.len(),
            report.skipped,
            report.blobs_sent,
            format_bytes(report.bytes_sent),
            format_bytes(report.bytes_stored),
            report.blobs_present,
        );
        print(&text)?;
    }
    Ok(Outcome::Clean)
}
