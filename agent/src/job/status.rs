//! What a run leaves behind for people and monitoring: a status file (the
//! last run, JSON), a run history (one JSON line per run, appended, for
//! `cairn report`), and a Prometheus textfile-collector file.
//!
//! The status file and history live in the state directory (0700, files
//! 0600: they name paths and errors); the metrics file goes where
//! node_exporter's textfile collector reads (0644), written atomically so
//! that a scrape never sees half a file. `last_success` is carried over
//! from the previous status, so that a failing job's metric keeps the time
//! of its last good run and an alert on its age fires.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{append_line, private_dir, write_atomic};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Everything done.
    Success,
    /// Done, with warnings (files skipped).
    Warnings,
    /// The check found damage.
    Damage,
    /// A step failed.
    Failed,
    /// A signal stopped it.
    Interrupted,
}

impl RunResult {
    /// The name used in the status file, hooks' CAIRN_RESULT and logs.
    pub fn name(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Warnings => "warnings",
            RunResult::Damage => "damage",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
        }
    }
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// The job.
    pub job: String,
    /// Start, seconds since the Unix epoch.
    pub start: f64,
    /// End, seconds since the Unix epoch.
    pub end: f64,
    /// How it ended.
    pub result: RunResult,
    /// The process exit code of the run.
    pub exit_code: u8,
    /// The snapshot written, if any.
    pub snapshot: Option<String>,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Bytes of new data.
    pub bytes_new: u64,
    /// Bytes stored in the repository for the new data.
    pub bytes_stored: u64,
    /// Files in the snapshot.
    pub files: u64,
    /// The synthetic snapshot that replaced the new one, when the job's
    /// synth policy laid it out again (`snapshot` is then this id too).
    #[serde(default)]
    pub synthetic: Option<String>,
    /// Snapshots removed by the retention policy.
    pub snapshots_forgotten: u64,
    /// Packs the prune after forget deleted (0 when it did not run).
    #[serde(default)]
    pub packs_deleted: u64,
    /// Bytes on the target those packs held.
    #[serde(default)]
    pub bytes_freed: u64,
    /// Stored bytes of every indexed pack after the run: the repository's
    /// size, for `cairn report` (absent when the repository was not
    /// opened).
    #[serde(default)]
    pub repo_bytes: Option<u64>,
    /// Problems: the error that ended the run, warnings of skipped files,
    /// failed hooks, check findings.
    pub errors: Vec<String>,
    /// The end of the last successful run of the job (this one included).
    pub last_success: Option<f64>,
}

impl RunStatus {
    /// Seconds the run took.
    pub fn duration(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }

    /// Whether the run counts as a success for `last_success` (warnings
    /// do: a snapshot was written).
    pub fn succeeded(&self) -> bool {
        matches!(self.result, RunResult::Success | RunResult::Warnings)
    }
}

/// The status file of `job`.
pub fn status_path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join(format!("{job}.status.json"))
}

/// The history file of `job`.
pub fn history_path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join(format!("{job}.history.jsonl"))
}

/// The metrics file of `job`.
pub fn metrics_path(metrics_dir: &Path, job: &str) -> PathBuf {
    metrics_dir.join(format!("cairn_{job}.prom"))
}

/// The last status of `job`, if there is a readable one.
pub fn read_status(state_dir: &Path, job: &str) -> Option<RunStatus> {
    let data = std::fs::read(status_path(state_dir, job)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Where a status could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write {path}: {source}; check the permissions of the directory (state_dir, metrics_dir)"
)]
pub struct RecordError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Records `status`: replaces the status file, appends to the history,
/// replaces the metrics file. Sets `last_success` from the previous status
/// when this run did not succeed.
pub fn record(
    state_dir: &Path,
    metrics_dir: &Path,
    status: &mut RunStatus,
) -> Result<(), RecordError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordError { path, source }
    };
    private_dir(state_dir).map_err(err(state_dir))?;
    status.last_success = if status.succeeded() {
        Some(status.end)
    } else {
        read_status(state_dir, &status.job).and_then(|s| s.last_success)
    };
    let json =
        serde_json::to_string(status).map_err(|e| err(state_dir)(std::io::Error::other(e)))?;
    let path = status_path(state_dir, &status.job);
    write_atomic(&path, format!("{json}\n").as_bytes(), 0o600).map_err(err(&path))?;
    let path = history_path(state_dir, &status.job);
    append_line(&path, &format!("{json}\n")).map_err(err(&path))?;
    std::fs::create_dir_all(metrics_dir).map_err(err(metrics_dir))?;
    let path = metrics_path(metrics_dir, &status.job);
    write_atomic(&path, render_metrics(status).as_bytes(), 0o644).map_err(err(&path))
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics of a run in the Prometheus text exposition format.
pub fn render_metrics(s: &RunStatus) -> String {
    let job = label(&s.job);
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{job=\"{job}\"}} {value}\n"
        );
    };
    if let Some(t) = s.last_success {
        metric(
            "cairn_last_success_timestamp_seconds",
            "End of the last successful run of the job.",
            t,
        );
    }
    metric(
        "cairn_last_run_timestamp_seconds",
        "End of the last run of the job.",
        s.end,
    );
    metric(
        "cairn_last_run_duration_seconds",
        "Duration of the last run.",
        s.duration(),
    );
    metric(
        "cairn_last_run_bytes_read",
        "Bytes read from the sources by the last run.",
        s.bytes_read as f64,
    );
    metric(
        "cairn_last_run_bytes_new",
        "Bytes of new data in the last run.",
        s.bytes_new as f64,
    );
    metric(
        "cairn_last_run_bytes_stored",
        "Bytes stored in the repository by the last run.",
        s.bytes_stored as f64,
    );
    metric(
        "cairn_last_run_snapshots_forgotten",
        "Snapshots removed by the retention policy in the last run.",
        s.snapshots_forgotten as f64,
    );
    metric(
        "cairn_last_run_packs_deleted",
        "Packs deleted by the prune of the last run.",
        s.packs_deleted as f64,
    );
    metric(
        "cairn_last_run_bytes_freed",
        "Bytes freed on the target by the prune of the last run.",
        s.bytes_freed as f64,
    );
    if let Some(size) = s.repo_bytes {
        metric(
            "cairn_repository_bytes",
            "Stored bytes of the repository's indexed packs after the last run.",
            size as f64,
        );
    }
    metric(
        "cairn_last_run_errors",
        "Errors and warnings of the last run.",
        s.errors.len() as f64,
    );
    metric(
        "cairn_last_exit_code",
        "Exit code of the last run (0 success, 3 warnings; see cairn --help).",
        f64::from(s.exit_code),
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn status(result: RunResult, end: f64) -> RunStatus {
        RunStatus {
            job: "we\"b".into(),
            start: end - 2.5,
            end,
            result,
            exit_code: if result == RunResult::Success { 0 } else { 1 },
            snapshot: None,
            bytes_read: 1000,
            bytes_new: 100,
            bytes_stored: 50,
            files: 3,
            synthetic: None,
            snapshots_forgotten: 0,
            packs_deleted: 0,
            bytes_freed: 0,
            repo_bytes: Some(5000),
            errors: Vec::new(),
            last_success: None,
        }
    }

    #[test]
    fn metrics_are_in_the_exposition_format() {
        let mut s = status(RunResult::Success, 1000.0);
        s.last_success = Some(1000.0);
        let text = render_metrics(&s);
        assert!(
            text.contains("cairn_last_success_timestamp_seconds{job=\"we\\\"b\"} 1000\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_last_run_duration_seconds{job=\"we\\\"b\"} 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cairn_last_exit_code gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_last_run_bytes_stored{job=\"we\\\"b\"} 50\n"),
            "{text}"
        );
        // Every sample line has a HELP and a TYPE.
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE")).count(),
            samples
        );
    }

    #[test]
    fn a_failed_run_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let (state, metrics) = (dir.path().join("state"), dir.path().join("metrics"));
        let mut ok = status(RunResult::Success, 1000.0);
        record(&state, &metrics, &mut ok).unwrap();
        let mut failed = status(RunResult::Failed, 2000.0);
        record(&state, &metrics, &mut failed).unwrap();
        assert_eq!(failed.last_success, Some(1000.0));
        assert_eq!(read_status(&state, "we\"b").unwrap(), failed);
        let history = std::fs::read_to_string(history_path(&state, "we\"b")).unwrap();
        let runs: Vec<RunStatus> = history
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].result, RunResult::Success);
        let prom = std::fs::read_to_string(metrics_path(&metrics, "we\"b")).unwrap();
        assert!(prom.contains("cairn_last_success_timestamp_seconds{job=\"we\\\"b\"} 1000\n"));
        assert!(prom.contains("cairn_last_exit_code{job=\"we\\\"b\"} 1\n"));
    }
}
