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

/// Every snapshot passing `filter`, oldest first.
pub fn list(
    repo: &Repository,
    filter: &SnapshotFilter,
) -> cairn_store::Result<Vec<(Id, Snapshot)>> {
    let mut all = repo.list_snapshots()?;
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
