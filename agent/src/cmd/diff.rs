//! `cairn diff`: what changed between two snapshots.

use cairn::disk::DiskSet;
use cairn::exit::Outcome;
use cairn::select;
use cairn::treediff::ChangeKind;
use cairn::units::format_bytes;
use cairn_store::{Repository, SnapshotKind};

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The older snapshot.
    #[arg(value_name = "SNAPSHOT_A")]
    a: String,
    /// The newer snapshot.
    #[arg(value_name = "SNAPSHOT_B")]
    b: String,
}

/// Runs `cairn diff`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let filter = args.filter.filter();
    let (ida, a) = select::resolve(&repo, &args.a, &filter)?;
    let (idb, b) = select::resolve(&repo, &args.b, &filter)?;
    match (a.kind, b.kind) {
        (SnapshotKind::Files, SnapshotKind::Files) => {
            let changes = cairn::treediff::diff(&repo, &a.root, &b.root)?;
            if args.repo.json {
                let items: Vec<_> = changes
                    .iter()
                    .map(|c| serde_json::json!({"path": c.path, "change": change_word(&c.kind)}))
                    .collect();
                return print_json(&items).map(|_| Outcome::Clean);
            }
            let mut out = String::new();
            for c in &changes {
                let sign = match c.kind {
                    ChangeKind::Added => '+',
                    ChangeKind::Removed => '-',
                    ChangeKind::Modified { content: true, .. } => 'M',
                    ChangeKind::Modified { .. } => 'U',
                    ChangeKind::TypeChanged => 'T',
                };
                out += &format!("{sign}  {}\n", c.path.display());
            }
            out += &format!(
                "{} change(s) from {} to {}\n",
                changes.len(),
                ida.short(8),
                idb.short(8)
            );
            print(&out)?;
        }
        (SnapshotKind::Disk, SnapshotKind::Disk) => {
            let changed = disk_diff(&repo, &a.root, &b.root)?;
            if args.repo.json {
                return print_json(&changed).map(|_| Outcome::Clean);
            }
            let mut out = String::new();
            for (name, bytes, size) in &changed {
                out += &format!(
                    "{name}: {} of {} in chunks that differ\n",
                    format_bytes(*bytes),
                    format_bytes(*size)
                );
            }
            print(&out)?;
        }
        _ => anyhow::bail!("cannot compare a disk snapshot with a file snapshot"),
    }
    Ok(Outcome::Clean)
}

fn change_word(k: &ChangeKind) -> &'static str {
    match k {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified { content: true, .. } => "modified",
        ChangeKind::Modified { .. } => "metadata",
        ChangeKind::TypeChanged => "type",
    }
}

/// Per disk of `b`: bytes in chunks that `a`'s disk of the same name lacks.
fn disk_diff(
    repo: &Repository,
    a: &cairn_store::Id,
    b: &cairn_store::Id,
) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let (sa, sb) = (DiskSet::load(repo, a)?, DiskSet::load(repo, b)?);
    let mut out = Vec::new();
    for disk in &sb.disks {
        let mut old = std::collections::HashSet::new();
        if let Some(prev) = sa.disks.iter().find(|d| d.name == disk.name) {
            let mut r = cairn::chunklist::ListReader::new(repo, &prev.extents)?;
            while let Some(e) = r.next_extent()? {
                old.insert(e.blob);
            }
        }
        let mut r = cairn::chunklist::ListReader::new(repo, &disk.extents)?;
        let mut bytes = 0;
        while let Some(e) = r.next_extent()? {
            if !old.contains(&e.blob) {
                bytes += e.len;
            }
        }
        out.push((disk.name.clone(), bytes, disk.size));
    }
    Ok(out)
}
