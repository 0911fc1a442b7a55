//! `cairn stats`: sizes, new data per snapshot and the dedup ratio.

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::select;
use cairn::units::{format_bytes, format_time};
use cairn_store::ObjectKind;

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// One snapshot (id, prefix or `latest`); all when omitted.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: Option<String>,
}

/// Runs `cairn stats`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let filter = args.filter.filter();
    let list = match &args.snapshot {
        Some(spec) => vec![select::resolve(&repo, spec, &filter)?],
        None => select::list(&repo, &filter)?,
    };
    let packs = repo.backend().list(ObjectKind::Pack)?;
    let stored: u64 = packs.iter().map(|p| p.size).sum();
    let logical: u64 = list
        .iter()
        .map(|(_, s)| s.stats.bytes_total.max(s.stats.bytes_read))
        .sum();
    let ratio = if stored > 0 {
        logical as f64 / stored as f64
    } else {
        0.0
    };
    // One snapshot: how scattered it is (a walk of its blobs, no pack read).
    let fragmentation = match (&args.snapshot, list.as_slice()) {
        (Some(_), [(id, snapshot)]) => Some(
            cairn::locality::measure(&repo, id, snapshot)
                .with_context(|| format!("measuring the locality of snapshot {}", id.short(8)))?,
        ),
        _ => None,
    };
    if args.repo.json {
        let snaps: Vec<_> = list
            .iter()
            .map(|(id, s)| serde_json::json!({"id": id, "time": s.time, "paths": s.paths, "stats": s.stats}))
            .collect();
        return print_json(&serde_json::json!({
            "snapshots": snaps, "packs": packs.len(), "repository_bytes": stored,
            "indexed_blobs": repo.indexed_blob_count(), "logical_bytes": logical, "dedup_ratio": ratio,
            "fragmentation": fragmentation,
        }))
        .map(|_| Outcome::Clean);
    }
    let mut out = format!(
        "{:<10} {:<20} {:>11} {:>11} {:>11} {:>8}\n",
        "ID", "TIME (UTC)", "SIZE", "NEW", "STORED", "SECONDS"
    );
    for (id, s) in &list {
        out += &format!(
            "{:<10} {:<20} {:>11} {:>11} {:>11} {:>8.1}\n",
            id.short(8),
            format_time(s.time),
            format_bytes(s.stats.bytes_total.max(s.stats.bytes_read)),
            format_bytes(s.stats.bytes_new),
            format_bytes(s.stats.bytes_stored),
            s.stats.duration_ms as f64 / 1000.0
        );
    }
    out += &format!(
        "repository: {} in {} packs, {} blobs; {} snapshot(s) of {} in all: dedup and compression ratio {:.1}x\n",
        format_bytes(stored),
        packs.len(),
        repo.indexed_blob_count(),
        list.len(),
        format_bytes(logical),
        ratio
    );
    if let Some(f) = &fragmentation {
        out += &format!(
            "restore locality: {} (`cairn synth` lays a scattered snapshot out again)\n",
            super::synth::describe(f)
        );
    }
    print(&out)?;
    Ok(Outcome::Clean)
}
