//! Prune: delete the packs no snapshot needs, repack the mostly unused
//! ones, and rewrite the index, without making backups wait.
//!
//! Backups hold shared locks, and so does prune (its lock excludes only
//! other prunes, checks and exclusive locks: see
//! `cairn_store::lock::LockInfo::conflicts_with`). Deletion is therefore
//! split in two phases (docs/format.md §2.12):
//!
//! - **mark** ([`mark`]): walk every snapshot, count each pack's used and
//!   unused bytes, copy the used blobs of mostly unused packs into new
//!   packs, write one index that supersedes every old one and names only
//!   the packs kept (and the new ones), delete the old index files, then
//!   write a *plan* naming the condemned packs and every lock present at
//!   that point. Nothing is deleted but index files.
//! - **sweep** ([`sweep`]): once no lock named by a plan is live, walk the
//!   snapshots again (a backup that was running may have written one that
//!   needs a condemned pack), re-index condemned packs that hold a blob a
//!   snapshot needs, delete the rest and then the plan. It runs at the start
//!   of every prune, and at the end of the one that wrote the plan when no
//!   other lock was present.
//!
//! Every step can be repeated: a prune killed anywhere leaves a repository
//! that checks clean (condemned packs are unindexed leftovers until they
//! are swept), and the next prune finishes the job. For tests,
//! `CAIRN_TEST_CRASH_AFTER=<step>` aborts the process right after the named
//! step (see [`crash_point`]).
//!
//! Memory: 16 bytes per reachable blob (twice: reached and claimed), 40
//! bytes or so per pack, and one index file at a time plus the entries of
//! the packs kept since the last index file written (flushed every
//! [`KEPT_PER_INDEX`] blobs); pack contents are never held beyond one
//! ranged read while repacking.

pub(crate) mod indexes;
mod mark;
mod sweep;
mod walk;

use cairn_store::{Id, LockHolder, Repository};
use serde::Serialize;
use thiserror::Error;

use crate::reach::WalkError;
use crate::repo::hostname;

pub use mark::mark;
pub use sweep::sweep_all;

/// Blobs of kept packs gathered before they are written out as an index
/// file of their own (the last one supersedes the old index files).
pub const KEPT_PER_INDEX: usize = 200_000;

/// The default repack threshold (`--max-unused 10%`, a job's
/// `max_unused`).
pub const DEFAULT_MAX_UNUSED: f64 = 0.10;

/// The environment variable naming a step after which prune aborts (tests
/// of crash safety only).
pub const CRASH_ENV: &str = "CAIRN_TEST_CRASH_AFTER";

/// Aborts the process (as `kill -9` would end it: no destructors, no lock
/// released) when [`CRASH_ENV`] names `step`. The steps, in order: `repack`
/// (new packs uploaded and indexed), `index` (the superseding index
/// written), `delete-index` (old index files deleted), `plan` (the plan
/// written), `sweep-reindex` (condemned packs a snapshot needs re-indexed),
/// `sweep-delete-one` (the first condemned pack deleted), `sweep-delete`
/// (every condemned pack deleted, the plan not yet).
pub fn crash_point(step: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|s| s == step) {
        eprintln!("{CRASH_ENV}={step}: aborting");
        std::process::abort();
    }
}

/// How to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack a pack whose unused share of blob bytes is above this
    /// (0.0..=1.0).
    pub max_unused: f64,
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// This host's name (to tell which locks are stale).
    pub hostname: String,
    /// The holder of this prune's own lock, left out of plans.
    pub own_lock: Option<LockHolder>,
}

/// Why a prune stopped.
#[derive(Debug, Error)]
pub enum PruneError {
    /// The repository failed (target, cache, a damaged index file).
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Something a snapshot needs is missing or damaged: deleting anything
    /// could make it worse.
    #[error(
        "{0}; nothing was deleted. Run `cairn check` to see which snapshots are affected, then remove those (cairn forget ID) or repair the repository before pruning"
    )]
    Unsafe(String),
}

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    /// Plans completed (and deleted).
    pub plans_done: usize,
    /// Plans left for a later prune because a lock they name is live.
    pub plans_waiting: usize,
    /// The holders of those live locks (`host pid N since T`).
    pub waiting_for: Vec<String>,
    /// Condemned packs deleted.
    pub packs_deleted: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Condemned packs kept because an index names them now.
    pub packs_kept_indexed: usize,
    /// Condemned packs kept and re-indexed because a snapshot needs them.
    pub packs_reindexed: usize,
}

/// What the mark phase found and did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MarkReport {
    /// Snapshots walked.
    pub snapshots: usize,
    /// Distinct blobs they reach.
    pub blobs_reachable: usize,
    /// Index files replaced by the new one.
    pub index_files_replaced: usize,
    /// Packs kept as they are.
    pub packs_kept: usize,
    /// Blobs in them that are used.
    pub blobs_kept: u64,
    /// Packs whose used blobs are copied and which are then condemned.
    pub packs_repacked: usize,
    /// Blobs copied.
    pub blobs_repacked: u64,
    /// Their stored bytes.
    pub bytes_repacked: u64,
    /// Indexed packs with nothing used, condemned.
    pub packs_unused: usize,
    /// Packs no index names, condemned (left by crashed or running
    /// backups; only deleted if still unindexed and unneeded at the sweep).
    pub packs_unindexed: usize,
    /// Packs condemned in all, and their bytes on the target.
    pub packs_condemned: usize,
    /// Bytes of the condemned packs.
    pub bytes_condemned: u64,
    /// The plan written (none when nothing was condemned or on a dry run).
    pub plan: Option<Id>,
    /// Locks the plan waits for.
    pub plan_locks: usize,
    /// Why nothing was marked, when the mark phase was skipped.
    pub skipped: Option<String>,
}

/// Everything a prune did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PruneReport {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Plans of earlier prunes on the target (a dry run leaves them).
    pub plans_pending: usize,
    /// Plans of earlier prunes swept first.
    pub earlier: SweepReport,
    /// This prune's mark phase.
    pub mark: MarkReport,
    /// This prune's own plan swept at its end (when no other lock was
    /// present).
    pub now: SweepReport,
}

/// Runs a prune: sweeps earlier plans, marks, and sweeps its own plan when
/// nothing else holds a lock. `say` gets a line per phase.
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    say: &mut dyn FnMut(&str),
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    report.plans_pending = repo.plan_ids()?.len();
    if !opts.dry_run && report.plans_pending > 0 {
        say("sweeping the plans of earlier prunes");
        report.earlier = sweep_all(repo, opts, say)?;
    }
    let waiting = sweep::waiting_packs(repo)?;
    report.mark = mark(repo, opts, &waiting, say)?;
    if let Some(plan) = report.mark.plan
        && report.mark.plan_locks == 0
    {
        say("no other lock was present: sweeping now");
        report.now = sweep::sweep_one(repo, opts, &plan, say)?;
    }
    Ok(report)
}

/// Takes a prune lock on `repo` and prunes with this host's name
/// (`cairn prune`, `cairn forget --prune` and the maintenance of
/// `cairn run`). The lock is released when the prune ends.
pub fn prune_locked(
    repo: &Repository,
    max_unused: f64,
    dry_run: bool,
    say: &mut dyn FnMut(&str),
) -> Result<PruneReport, PruneError> {
    let host = hostname();
    let lock = repo.lock(&host, cairn_store::lock::PRUNE, false)?;
    let opts = PruneOptions {
        max_unused,
        dry_run,
        hostname: host,
        own_lock: Some(LockHolder::of(lock.info())),
    };
    prune(repo, &opts, say)
}
