//! `cairn run JOB`: a whole job, in-process.
//!
//! The steps, in order:
//!
//! 1. priority (`nice`, `ionice`), the job lock (a run never overlaps
//!    itself), signal handling (SIGINT/SIGTERM/SIGHUP thaw and record);
//! 2. the `pre` hook: if it fails, nothing else runs but `on_failure`;
//! 3. the point-in-time view: `freeze` the listed file systems, run
//!    `snapshot_create` and thaw at once (the backup then reads
//!    `snapshot_paths`), or, without a snapshot command, keep the freeze for
//!    the backup itself; `snapshot_remove` runs after the backup whatever
//!    happened to it;
//! 4. the backup (the library pipeline of `cairn backup`), then, with
//!    `synth_above`, `cairn synth` of the new snapshot when its spread is
//!    above that (a failed synth is a warning: the backup is saved);
//! 5. repository maintenance: `forget` by the job's retention, restricted
//!    to the job's own snapshots (its host, paths and tags), so that a job
//!    never removes another machine's snapshots in a shared repository.
//!    Then `prune` (unless `prune = false`) when forget removed a
//!    snapshot or an earlier prune left a plan to finish ([`maintain`]);
//! 6. `check`, with the job's subset of packs read in full;
//! 7. `post` after success, `on_failure` after a failure (with
//!    CAIRN_RESULT, CAIRN_EXIT_CODE, CAIRN_ERROR and CAIRN_SNAPSHOT set);
//! 8. the status file, the history line and the metrics file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cairn_store::{Id, Repository};

use super::config::{CheckSpec, Config, FreezerKind, Job, Retention};
use super::freeze::{self, CommandFreezer, Freezer, IoctlFreezer};
use super::hooks::{self, Hook, log_stderr};
use super::status::{self, RunResult, RunStatus};
use super::{lock, priority, signals};
use crate::backup::{BackupDone, BackupRequest, backup};
use crate::check::{CheckOptions, check};
use crate::exit::{self, Outcome};
use crate::prune::{DEFAULT_MAX_UNUSED, PruneError, prune_locked};
use crate::repo::{RepoSpec, hostname};
use crate::select::SnapshotFilter;
use crate::synth::{SynthOptions, synth_if_spread_above};
use crate::target_opts::TargetOptions;
use crate::units::{Percent, format_bytes};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The repository spec of a job: its location and secret source, never
/// the environment's.
pub fn repo_spec(config: &Config, job: &Job) -> RepoSpec {
    let target = TargetOptions {
        limit_upload: job.limit_upload.and_then(|r| r.0),
        limit_download: job.limit_download.and_then(|r| r.0),
        retries: job.retries.unwrap_or(crate::target_opts::DEFAULT_RETRIES),
        transfers: job.transfers.map(usize::from),
        ..TargetOptions::default()
    };
    RepoSpec {
        location: job.repository.clone(),
        password_file: job.password_file.clone(),
        password_command: job.password_command.clone(),
        key_file: job.key_file.clone(),
        cache_dir: config.cache_dir.clone(),
        no_cache: false,
        target,
        source: false,
    }
}

/// The freezer a job's settings name.
pub fn freezer_for(job: &Job, env: &[(String, String)]) -> Arc<dyn Freezer> {
    match (job.freezer, &job.freeze_command, &job.thaw_command) {
        (FreezerKind::Command, Some(freeze), Some(thaw)) => Arc::new(CommandFreezer {
            freeze: freeze.clone(),
            thaw: thaw.clone(),
            timeout: job.hooks.timeout.0,
            env: env.to_vec(),
        }),
        _ => Arc::new(IoctlFreezer),
    }
}

/// Runs job `name` of `config` and records its status. Returns how it
/// ended, like any command; the error of a failed run (after its
/// `on_failure` hook ran and its status was recorded).
pub fn run(config: &Config, name: &str, job: &Job) -> anyhow::Result<Outcome> {
    if let Some(nice) = job.nice
        && let Err(e) = priority::set_nice(nice)
    {
        log_stderr(&format!("warning: cannot set nice {}: {e}", nice.0));
    }
    if let Some(io) = job.ionice
        && let Err(e) = priority::set_ionice(io)
    {
        log_stderr(&format!(
            "warning: cannot set ionice {}: {e}",
            io.class_name()
        ));
    }
    let _lock = lock::acquire(&config.lock_dir(), name)?;
    let state_dir = config.state_dir.clone();
    let metrics_dir = config.metrics_dir();
    let start = now();
    let shared = Arc::new(Mutex::new(RunStatus {
        job: name.to_string(),
        start,
        end: start,
        result: RunResult::Failed,
        exit_code: exit::FAILURE,
        snapshot: None,
        bytes_read: 0,
        bytes_new: 0,
        bytes_stored: 0,
        files: 0,
        synthetic: None,
        snapshots_forgotten: 0,
        packs_deleted: 0,
        bytes_freed: 0,
        repo_bytes: None,
        errors: Vec::new(),
        last_success: None,
    }));
    {
        let shared = shared.clone();
        let (state_dir, metrics_dir) = (state_dir.clone(), metrics_dir.clone());
        signals::handle(move |sig| {
            let mut s = match shared.lock() {
                Ok(s) => s.clone(),
                Err(p) => p.into_inner().clone(),
            };
            s.end = now();
            s.result = RunResult::Interrupted;
            s.exit_code = (128 + sig).clamp(0, 255) as u8;
            s.errors.push(format!("interrupted by signal {sig}"));
            if let Err(e) = status::record(&state_dir, &metrics_dir, &mut s) {
                log_stderr(&format!("error: {e}"));
            }
        })
        .context("cannot set up signal handling")?;
    }
    freeze::thaw_on_panic();
    log_stderr(&format!("job {name}: started"));
    crate::log::event("start", serde_json::json!({ "job": name }));

    let env = vec![("CAIRN_JOB".to_string(), name.to_string())];
    let result = steps(config, job, &env, &shared);
    // After a signal, the signal thread thaws, records and exits: nothing
    // more may run here (a killed hook looks like a failed one).
    signals::park_if_interrupted();
    let snapshot = with(&shared, |s| s.snapshot.clone()).unwrap_or_default();
    let result = match result {
        Ok(outcome) => {
            let env = ended_env(&env, ended(&Ok(outcome)), None, &snapshot);
            match run_hook(job, "post", job.hooks.post.as_deref(), &env) {
                Ok(()) => Ok(outcome),
                Err(e) => Err(anyhow::Error::new(e).context("the post hook failed")),
            }
        }
        Err(e) => Err(e),
    };
    let (code, result_kind) = ended(&result);
    if let Err(e) = &result {
        // The binary prints the error itself when the run returns.
        let message = exit::error_message(e);
        with(&shared, |s| s.errors.push(message.clone()));
        let env = ended_env(&env, (code, result_kind), Some(message), &snapshot);
        if let Err(e) = run_hook(job, "on_failure", job.hooks.on_failure.as_deref(), &env) {
            log_stderr(&format!("error: {e}"));
            with(&shared, |s| s.errors.push(e.to_string()));
        }
    }
    signals::park_if_interrupted();
    let mut s = with(&shared, |s| s.clone());
    s.end = now();
    s.result = result_kind;
    s.exit_code = code;
    status::record(&state_dir, &metrics_dir, &mut s)?;
    crate::log::event("end", serde_json::to_value(&s).unwrap_or_default());
    log_stderr(&format!(
        "job {name}: {} in {:.1} s (exit {code})",
        result_kind.name(),
        s.duration()
    ));
    result
}

/// The exit code and result of a run that ended with `result`.
fn ended(result: &anyhow::Result<Outcome>) -> (u8, RunResult) {
    match result {
        Ok(o) => (
            o.code(),
            match o {
                Outcome::Clean => RunResult::Success,
                Outcome::Warnings(_) => RunResult::Warnings,
                Outcome::Damage(_) => RunResult::Damage,
            },
        ),
        Err(e) => (exit::code_for_error(e), RunResult::Failed),
    }
}

/// The environment of the `post` and `on_failure` hooks.
fn ended_env(
    base: &[(String, String)],
    (code, result): (u8, RunResult),
    error: Option<String>,
    snapshot: &str,
) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    env.extend([
        ("CAIRN_RESULT".into(), result.name().into()),
        ("CAIRN_EXIT_CODE".into(), code.to_string()),
        ("CAIRN_SNAPSHOT".into(), snapshot.to_string()),
    ]);
    if let Some(e) = error {
        env.push(("CAIRN_ERROR".into(), e));
    }
    env
}

/// Marks the start of a step in the `--json` event stream.
fn stage(name: &str) {
    crate::log::event("stage", serde_json::json!({ "stage": name }));
}

/// Applies `f` to the shared status (a poisoned lock still holds it).
fn with<T>(shared: &Mutex<RunStatus>, f: impl FnOnce(&mut RunStatus) -> T) -> T {
    match shared.lock() {
        Ok(mut s) => f(&mut s),
        Err(p) => f(&mut p.into_inner()),
    }
}

/// Runs one of the job's hooks, if set.
fn run_hook(
    job: &Job,
    name: &str,
    command: Option<&str>,
    env: &[(String, String)],
) -> Result<(), hooks::HookError> {
    let Some(command) = command else {
        return Ok(());
    };
    stage(name);
    log_stderr(&format!("running hook {name}"));
    hooks::run(
        &Hook {
            name,
            command,
            timeout: job.hooks.timeout.0,
            env,
        },
        &log_stderr,
    )
}

/// Steps 2 to 6.
fn steps(
    config: &Config,
    job: &Job,
    env: &[(String, String)],
    shared: &Mutex<RunStatus>,
) -> anyhow::Result<Outcome> {
    run_hook(job, "pre", job.hooks.pre.as_deref(), env)
        .context("the pre hook failed, so the backup did not run")?;
    let spec = repo_spec(config, job);
    let repo = crate::repo::open(&spec)?;
    let done = point_in_time_backup(job, env, &repo)?;
    for w in &done.warnings {
        log_stderr(&format!("warning: {w}"));
    }
    log_stderr(&format!(
        "snapshot {} saved: read {}, {} new, stored {}",
        done.id.short(8),
        format_bytes(done.stats.bytes_read),
        format_bytes(done.stats.bytes_new),
        format_bytes(done.stats.bytes_stored)
    ));
    with(shared, |s| {
        s.snapshot = Some(done.id.to_hex());
        s.bytes_read = done.stats.bytes_read;
        s.bytes_new = done.stats.bytes_new;
        s.bytes_stored = done.stats.bytes_stored;
        s.files = done.stats.files;
        s.errors.extend(done.warnings.iter().cloned());
    });
    let synth_failed = synth_by_policy(job, &repo, &done.id, shared);
    let maintained = maintain(job, &repo)?;
    with(shared, |s| {
        s.snapshots_forgotten = maintained.forgotten;
        s.packs_deleted = maintained.packs_deleted;
        s.bytes_freed = maintained.bytes_freed;
    });
    // Packs the check could not read (the target failed): warnings.
    let mut check_unverified = 0;
    let problems = match job.check {
        Some(CheckSpec::Read(read_data)) => {
            stage("check");
            let _lock = repo.lock(&hostname(), "check", false)?;
            let report = check(
                &repo,
                &CheckOptions {
                    read_data,
                    salt: crate::check::run_salt(),
                    readers: spec.transfers(),
                },
                &mut |phase| log_stderr(&format!("check: {phase}")),
            )
            .context("check could not finish")?;
            with(shared, |s| {
                s.errors.extend(
                    report
                        .problems
                        .iter()
                        .map(|p| format!("check: {}: {}", p.object, p.reason)),
                );
                s.errors.extend(
                    report
                        .packs_unverified
                        .iter()
                        .map(|p| format!("check: {} was not verified: {}", p.object, p.reason)),
                );
            });
            check_unverified = report.packs_unverified_total;
            report.problems_total
        }
        Some(CheckSpec::None) | None => 0,
    };
    match repo.indexed_pack_bytes() {
        Ok(packs) => with(shared, |s| s.repo_bytes = Some(packs.values().sum())),
        Err(e) => log_stderr(&format!("warning: cannot size the repository: {e}")),
    }
    Ok(if problems > 0 {
        Outcome::Damage(problems)
    } else {
        Outcome::from_warnings(done.warnings.len() + usize::from(synth_failed) + check_unverified)
    })
}

/// The job's synthetic-full policy (`synth_above`): lays the new snapshot
/// out again when its spread is above the threshold. The backup is saved
/// whatever happens here, so a failed synth is a warning, not a failure.
/// Returns whether it failed.
fn synth_by_policy(job: &Job, repo: &Repository, id: &Id, shared: &Mutex<RunStatus>) -> bool {
    let Some(threshold) = job.synth_above else {
        return false;
    };
    stage("synth");
    let synthesised = repo
        .load_snapshot(id)
        .map_err(anyhow::Error::from)
        .and_then(|snapshot| {
            synth_if_spread_above(repo, id, &snapshot, threshold, &SynthOptions::default())
                .map_err(anyhow::Error::from)
        });
    match synthesised {
        // Spread out, but every pack it uses is used well enough.
        Ok(Some(r)) if r.snapshot == *id => {
            log_stderr(&format!(
                "synth: spread {:.2} above {threshold}, but no pack is used little enough to move",
                r.before.spread
            ));
            false
        }
        Ok(Some(r)) => {
            log_stderr(&format!(
                "synth: spread {:.2} above {threshold}: snapshot {} replaces {}",
                r.before.spread,
                r.snapshot.short(8),
                id.short(8)
            ));
            with(shared, |s| {
                s.snapshot = Some(r.snapshot.to_hex());
                s.synthetic = Some(r.snapshot.to_hex());
            });
            false
        }
        Ok(None) => {
            log_stderr(&format!("synth: spread within {threshold}, not needed"));
            false
        }
        Err(e) => {
            let message = format!(
                "synth: the snapshot {} is saved, but laying it out again failed: {e:#}",
                id.short(8)
            );
            log_stderr(&format!("warning: {message}"));
            with(shared, |s| s.errors.push(message));
            true
        }
    }
}

/// Step 3 and 4: freeze, snapshot, thaw, back up, remove the snapshot.
fn point_in_time_backup(
    job: &Job,
    env: &[(String, String)],
    repo: &Repository,
) -> anyhow::Result<BackupDone> {
    let frozen = if job.freeze.is_empty() {
        None
    } else {
        log_stderr(&format!("freezing {}", display_paths(&job.freeze)));
        Some(
            freeze::freeze_all(freezer_for(job, env), &job.freeze, job.freeze_timeout.0)
                .context("cannot freeze the file systems, so the backup did not run")?,
        )
    };
    let mut frozen = frozen;
    if let Some(create) = job.snapshot_create.as_deref() {
        // Dropping `frozen` on the error path thaws.
        run_hook(job, "snapshot_create", Some(create), env)
            .context("snapshot_create failed, so the backup did not run")?;
        if let Some(f) = frozen.take() {
            thaw(f)?;
        }
    }
    let req = BackupRequest {
        paths: job.sources().to_vec(),
        disk: job.is_disk(),
        tags: job.tags.clone(),
        host: job.host.clone(),
        excludes: job.excludes.clone(),
        exclude_files: job.exclude_files.clone(),
        exclude_caches: job.exclude_caches,
        one_file_system: job.one_file_system,
        force: false,
        threads: job.threads,
        progress: false,
    };
    stage("backup");
    let done = backup(repo, &req);
    let thawed = frozen.map(thaw).transpose();
    let removed = match job.snapshot_remove.as_deref() {
        Some(remove) => run_hook(job, "snapshot_remove", Some(remove), env).context(
            "snapshot_remove failed: remove the snapshot by hand, or it will fill its volume",
        ),
        None => Ok(()),
    };
    let done = done?;
    thawed?;
    removed?;
    Ok(done)
}

/// Thaws, failing if the watchdog had to do it first (the backup may then
/// not be consistent).
fn thaw(frozen: freeze::Frozen) -> anyhow::Result<()> {
    let expired = frozen.expired();
    frozen.thaw().context("cannot thaw")?;
    log_stderr("thawed");
    if expired {
        anyhow::bail!(
            "the freeze lasted longer than freeze_timeout and was lifted before the point-in-time view was complete; raise freeze_timeout, or use snapshot_create so that the freeze lasts only as long as taking a snapshot"
        );
    }
    Ok(())
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the maintenance step did.
#[derive(Debug, Default)]
struct Maintained {
    forgotten: u64,
    packs_deleted: u64,
    bytes_freed: u64,
}

/// Step 5: the repository maintenance after a backup: forget by the
/// job's retention (shared lock, like `cairn forget`), then, when the job
/// prunes (`prune = true`, the default) and forget removed a snapshot or an
/// earlier prune left a plan, prune under its own lock (which never makes
/// backups wait).
fn maintain(job: &Job, repo: &Repository) -> anyhow::Result<Maintained> {
    let Some(retention) = &job.retention else {
        return Ok(Maintained::default());
    };
    stage("forget");
    let forgotten = forget(job, retention, repo)?;
    let mut done = Maintained {
        forgotten,
        ..Maintained::default()
    };
    if !job.prune || (forgotten == 0 && repo.plan_ids()?.is_empty()) {
        return Ok(done);
    }
    stage("prune");
    let max_unused = job.max_unused.unwrap_or(Percent(DEFAULT_MAX_UNUSED)).0;
    let report = match prune_locked(repo, max_unused, false, &mut |line| {
        log_stderr(&format!("prune: {line}"))
    }) {
        Ok(report) => report,
        // Another host's prune or check holds the repository: not this
        // run's failure; the space is reclaimed by a later prune.
        Err(PruneError::Store(cairn_store::Error::Locked(who))) => {
            log_stderr(&format!(
                "warning: prune skipped: the repository is locked {who}; the next run prunes"
            ));
            return Ok(done);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "prune could not finish (the backup and forget are done; the next run or `cairn prune` finishes it)",
            ));
        }
    };
    for sweep in [&report.earlier, &report.now] {
        done.packs_deleted += sweep.packs_deleted as u64;
        done.bytes_freed += sweep.bytes_freed;
    }
    log_stderr(&format!(
        "prune: deleted {} pack(s), freed {}",
        done.packs_deleted,
        format_bytes(done.bytes_freed)
    ));
    Ok(done)
}

/// Forgets the job's own snapshots (its host, paths and tags) that its
/// retention does not keep; returns how many.
fn forget(job: &Job, retention: &Retention, repo: &Repository) -> anyhow::Result<u64> {
    let _lock = repo.lock(&hostname(), "forget", false)?;
    let paths: Vec<String> = job
        .sources()
        .iter()
        .map(|p| std::path::absolute(p).map(|p| p.display().to_string()))
        .collect::<Result<_, _>>()
        .context("cannot resolve the job's paths")?;
    let filter = SnapshotFilter {
        hosts: vec![job.host.clone().unwrap_or_else(hostname)],
        tags: job.tags.clone(),
        paths,
    };
    let loaded = crate::forget::load(repo, &filter)?;
    for (id, e) in &loaded.unreadable {
        log_stderr(&format!(
            "warning: snapshot {id} is unreadable and left alone ({e})"
        ));
    }
    let remove = crate::forget::removed_by(
        &loaded.list,
        &retention.policy(),
        retention.group_by.unwrap_or_default(),
    );
    crate::forget::delete(repo, &remove)?;
    log_stderr(&format!(
        "forget: removed {} snapshot(s), kept {}",
        remove.len(),
        loaded.list.len() - remove.len()
    ));
    Ok(remove.len() as u64)
}

/// How long `cairn run --random-delay` waits: a random share of `max`
/// (drawn from the same per-run salt as check's random subset).
pub fn random_delay(max: Duration) -> Duration {
    let salt = crate::check::run_salt();
    let mut x = [0u8; 8];
    x.copy_from_slice(&salt[..8]);
    let secs = max.as_secs();
    Duration::from_secs(u64::from_le_bytes(x) % (secs + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_delays_stay_within_the_maximum() {
        assert_eq!(random_delay(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(random_delay(Duration::from_secs(60)) <= Duration::from_secs(60));
        }
    }
}
