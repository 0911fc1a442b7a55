//! `cairn snapshots`: list snapshots.

use cairn::exit::Outcome;
use cairn::select::{self, SnapshotFilter};
use cairn::units::format_bytes;

use super::common::{RepoArgs, print, print_json};

/// Filters shared by commands that pick snapshots.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this source path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    /// The filter.
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
    }
}

/// Options of `cairn snapshots`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// Runs `cairn snapshots`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let list = select::list(&repo, &args.filter.filter())?;
    if args.repo.json {
        let items: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["id"] = serde_json::json!(id);
                v
            })
            .collect();
        return print_json(&items).map(|_| Outcome::Clean);
    }
    let mut out = format!(
        "{:<10} {:<20} {:<12} {:<6} {:>10} {:>10}  {}\n",
        "ID", "TIME (UTC)", "HOST", "KIND", "SIZE", "NEW", "PATHS / TAGS"
    );
    for (id, s) in &list {
        let kind = match s.kind {
            cairn_store::SnapshotKind::Files => "files",
            cairn_store::SnapshotKind::Disk => "disk",
        };
        let tags = if s.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.tags.join(","))
        };
        out += &format!(
            "{:<10} {:<20} {:<12} {:<6} {:>10} {:>10}  {}{}\n",
            id.short(8),
            cairn::units::format_time(s.time),
            s.hostname,
            kind,
            format_bytes(s.stats.bytes_total.max(s.stats.bytes_read)),
            format_bytes(s.stats.bytes_stored),
            s.paths.join(" "),
            tags
        );
    }
    out += &format!("{} snapshot(s)\n", list.len());
    print(&out)?;
    Ok(Outcome::Clean)
}
