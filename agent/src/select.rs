//! Choosing snapshots: by id, unique id prefix or `latest`, narrowed by host,
//! tag and path, as users script them.

use cairn_store::{Id, Repository, Snapshot};

/// Filters that narrow which snapshots count.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of these hosts (any, when empty).
    pub hosts: Vec<String>,
    /// Only snapshots carrying all of these tags.
    pub tags: Vec<String>,
    /// Only snapshots of exactly these source paths (any, when empty).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}

/// Every readable snapshot passing `filter`, oldest first. A manifest that
/// cannot be read is left out with a warning on standard error, so that one
/// damaged manifest does not stop every command (`check` names it, `repair
/// snapshots` reports it, `forget` removes it by id).
pub fn list(
    repo: &Repository,
    filter: &SnapshotFilter,
) -> cairn_store::Result<Vec<(Id, Snapshot)>> {
    let listing = repo.list_snapshots_reporting()?;
    for (id, e) in &listing.unreadable {
        eprintln!(
            "warning: snapshot {id} is unreadable and skipped ({e}); `cairn check` reports it, `cairn forget {id}` removes it"
        );
    }
    let mut all = listing.snapshots;
    all.retain(|(_, s)| filter.matches(s));
    Ok(all)
}

/// Resolves `spec` (id, prefix or `latest`) among the snapshots passing
/// `filter`.
pub fn resolve(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
) -> cairn_store::Result<(Id, Snapshot)> {
    let all = list(repo, filter)?;
    Repository::resolve_snapshot(spec, &all).cloned()
}
