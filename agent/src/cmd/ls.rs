//! `cairn ls`: list what a snapshot holds.

use std::path::PathBuf;

use anyhow::Context;
use cairn::disk::DiskSet;
use cairn::exit::Outcome;
use cairn::select;
use cairn::tree::NodeKind;
use cairn::units::{format_bytes, format_time};
use cairn_store::SnapshotKind;

use super::common::{RepoArgs, print, print_json};
use super::snapshots::FilterArgs;

/// Options of `cairn ls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// The snapshot: an id, a unique id prefix, or `latest`.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Only paths under this one.
    #[arg(value_name = "PATH")]
    under: Option<PathBuf>,
    /// Long listing: kind, mode, owner, size, time.
    #[arg(short, long)]
    long: bool,
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Hardlink => 'h',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
    }
}

/// Runs `cairn ls`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let (id, snap) = select::resolve(&repo, &args.snapshot, &args.filter.filter())?;
    if snap.kind == SnapshotKind::Disk {
        let set = DiskSet::load(&repo, &snap.root)
            .with_context(|| format!("snapshot {}", id.short(8)))?;
        if args.repo.json {
            return print_json(&set).map(|_| Outcome::Clean);
        }
        let mut out = String::new();
        for d in &set.disks {
            out += &format!(
                "{}  {}  sector {}  from {}\n",
                d.name,
                format_bytes(d.size),
                d.sector_size,
                d.source
            );
        }
        return print(&out).map(|_| Outcome::Clean);
    }
    let mut out = String::new();
    let mut items = Vec::new();
    cairn::treediff::walk(&repo, &snap.root, &mut |path, node| {
        if args.under.as_ref().is_some_and(|u| !path.starts_with(u)) {
            return Ok(());
        }
        if args.repo.json {
            items.push(serde_json::json!({
                "path": path, "kind": format!("{:?}", node.kind).to_lowercase(), "mode": node.mode,
                "uid": node.uid, "gid": node.gid, "size": node.size, "mtime": node.mtime.sec,
            }));
        } else if args.long {
            out += &format!(
                "{}{:04o} {:>8} {:>8} {:>12} {}  {}\n",
                kind_char(node.kind),
                node.mode & 0o7777,
                node.user.clone().unwrap_or_else(|| node.uid.to_string()),
                node.group.clone().unwrap_or_else(|| node.gid.to_string()),
                node.size,
                format_time(node.mtime.sec),
                path.display()
            );
        } else {
            out += &format!("{}\n", path.display());
        }
        Ok(())
    })?;
    if args.repo.json {
        print_json(&items)?;
    } else {
        print(&out)?;
    }
    Ok(Outcome::Clean)
}
