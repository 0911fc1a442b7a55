//! The configuration file (`/etc/cairn/cairn.toml`): global settings and
//! the jobs `cairn run` and `cairn schedule` act on.
//!
//! Parsed with serde and the `toml` crate; every table refuses unknown keys
//! (a misspelt `keep_daly` must not silently keep nothing), and every error
//! names the file, the line and the key, because the person reading it is
//! an operator at a terminal or in a mail from cron. Values with their own
//! syntax (rates, durations, retention spans, check subsets) are parsed while
//! deserializing, so their errors carry the value's position too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::check::ReadData;
use crate::retention::{GroupBy, Policy, Within};
use crate::target_opts::RateLimit;
use crate::units::Percent;

/// Where the configuration is read from unless `--config`/`CAIRN_CONFIG`
/// says otherwise.
pub const DEFAULT_PATH: &str = "/etc/cairn/cairn.toml";
/// Default directory of status files and run history.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cairn";

/// What the default recovery point objective allows beyond the schedule's
/// period and randomized delay: time for the run itself to finish.
pub const RPO_SLACK: Duration = Duration::from_secs(3600);

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Status files and run history (created 0700).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Lock files of running jobs (default: /run/cairn as root,
    /// $XDG_RUNTIME_DIR/cairn otherwise, else `state_dir`).
    #[serde(default)]
    pub runtime_dir: Option<PathBuf>,
    /// Prometheus textfile-collector directory (default: `state_dir`/metrics).
    #[serde(default)]
    pub metrics_dir: Option<PathBuf>,
    /// The repository cache (default: cairn's usual one).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The jobs, by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, Job>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// One backup job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The repository location, as `--repo` takes it.
    pub repository: String,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A shell command printing the password.
    #[serde(default)]
    pub password_command: Option<String>,
    /// A raw key file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Files and directories to back up.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Block devices or disk images to back up at block level.
    #[serde(default)]
    pub disks: Vec<PathBuf>,
    /// Exclude globs, as `--exclude` takes them.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Files of exclude globs.
    #[serde(default)]
    pub exclude_files: Vec<PathBuf>,
    /// Leave out directories tagged with a CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Stay on the file system of each path.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags of the snapshots.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host name recorded instead of the machine's.
    #[serde(default)]
    pub host: Option<String>,
    /// Worker threads (0: one per core).
    #[serde(default)]
    pub threads: usize,
    /// CPU priority, -20 (highest) to 19 (lowest).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub nice: Option<Nice>,
    /// I/O priority: `idle`, `best-effort[:0-7]` or `realtime[:0-7]`.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub ionice: Option<IoNice>,
    /// Upload cap, as `--limit-upload` takes it.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub limit_upload: Option<RateLimit>,
    /// Download cap.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub limit_download: Option<RateLimit>,
    /// Retries of transient target errors.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Calls at once against the target, as `--transfers` takes it.
    #[serde(default)]
    pub transfers: Option<u16>,
    /// Retention applied after each backup (forget).
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Prune after a retention run that forgot snapshots (or when an
    /// earlier prune left a plan to finish): default true.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// The prune's repack threshold, as `cairn prune --max-unused` takes it
    /// (default 10%).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub max_unused: Option<Percent>,
    /// The synthetic-full policy: after the backup, lay the new snapshot
    /// out again in restore order (`cairn synth`, docs/synth.md) when its
    /// spread is above this, as `cairn backup --synth-above` does (e.g.
    /// 1.5; absent: never).
    #[serde(default)]
    pub synth_above: Option<f64>,
    /// The recovery point objective: the longest a job may go without a
    /// successful backup before `cairn report` shows it red (default: see
    /// [`Job::rpo`]).
    #[serde(default)]
    pub rpo: Option<Seconds>,
    /// Check after the backup: `structure`, `all`, `N%` or `n/m` of the
    /// packs read in full (nothing when absent).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub check: Option<CheckSpec>,
    /// Commands run around the job.
    #[serde(default)]
    pub hooks: Hooks,
    /// Mount points frozen around taking the point-in-time view.
    #[serde(default)]
    pub freeze: Vec<PathBuf>,
    /// How to freeze them.
    #[serde(default)]
    pub freezer: FreezerKind,
    /// With `freezer = "command"`: run with CAIRN_FREEZE_PATH set.
    #[serde(default)]
    pub freeze_command: Option<String>,
    /// With `freezer = "command"`: undoes `freeze_command`.
    #[serde(default)]
    pub thaw_command: Option<String>,
    /// The longest a freeze may last; a watchdog thaws after it.
    #[serde(default = "default_freeze_timeout")]
    pub freeze_timeout: Seconds,
    /// Takes a point-in-time snapshot (LVM, ZFS, btrfs) while frozen.
    #[serde(default)]
    pub snapshot_create: Option<String>,
    /// Removes what `snapshot_create` made, after the backup.
    #[serde(default)]
    pub snapshot_remove: Option<String>,
    /// What the backup reads when a snapshot is made: the snapshot's
    /// devices or mounted paths, in place of `paths`/`disks`.
    #[serde(default)]
    pub snapshot_paths: Vec<PathBuf>,
    /// When to run: a systemd OnCalendar expression (`daily`, `*-*-* 02:30`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// A cron schedule to use instead of translating `schedule`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Spread start times over up to this long.
    #[serde(default = "default_randomized_delay")]
    pub randomized_delay: Seconds,
}

fn default_true() -> bool {
    true
}

fn default_freeze_timeout() -> Seconds {
    Seconds(Duration::from_secs(300))
}

fn default_randomized_delay() -> Seconds {
    Seconds(Duration::from_secs(900))
}

/// The retention rules of a job, as `cairn forget` takes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// `--keep-last`.
    #[serde(default)]
    pub keep_last: u32,
    /// `--keep-hourly`.
    #[serde(default)]
    pub keep_hourly: u32,
    /// `--keep-daily`.
    #[serde(default)]
    pub keep_daily: u32,
    /// `--keep-weekly`.
    #[serde(default)]
    pub keep_weekly: u32,
    /// `--keep-monthly`.
    #[serde(default)]
    pub keep_monthly: u32,
    /// `--keep-yearly`.
    #[serde(default)]
    pub keep_yearly: u32,
    /// `--keep-within`.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub keep_within: Option<Within>,
    /// `--keep-tag`.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// `--group-by` (default host,paths).
    #[serde(default, deserialize_with = "parsed_opt")]
    pub group_by: Option<GroupBy>,
}

impl Retention {
    /// The policy these rules make.
    pub fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
        }
    }
}

/// The commands run around a job (via `/bin/sh -c`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Before anything; a failure aborts the job.
    #[serde(default)]
    pub pre: Option<String>,
    /// After a successful job.
    #[serde(default)]
    pub post: Option<String>,
    /// After a failed job.
    #[serde(default)]
    pub on_failure: Option<String>,
    /// The longest each hook may run before it is killed.
    #[serde(default = "default_hook_timeout")]
    pub timeout: Seconds,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            pre: None,
            post: None,
            on_failure: None,
            timeout: default_hook_timeout(),
        }
    }
}

fn default_hook_timeout() -> Seconds {
    Seconds(Duration::from_secs(600))
}

/// How `freeze` paths are frozen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerKind {
    /// The FIFREEZE/FITHAW ioctls (root only).
    #[default]
    Fsfreeze,
    /// `freeze_command` and `thaw_command`.
    Command,
}

/// A length of time: whole seconds (`30`) or a number with a unit
/// (`30s`, `5m`, `2h`, `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let bad = || {
            format!(
                "invalid duration {s:?}: use seconds, or a number with s, m, h or d (e.g. 90s, 5m, 2h)"
            )
        };
        let n: u64 = n.parse().map_err(|_| bad())?;
        let mult = match unit.trim() {
            "" | "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .map(|s| Seconds(Duration::from_secs(s)))
            .ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Seconds(Duration::from_secs(n))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A CPU priority (nice value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nice(pub i32);

impl FromStr for Nice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i32>() {
            Ok(n) if (-20..=19).contains(&n) => Ok(Nice(n)),
            _ => Err(format!(
                "invalid nice value {s:?}: use -20 (highest) to 19 (lowest)"
            )),
        }
    }
}

/// An I/O scheduling class and level (as ionice(1) and systemd's
/// IOSchedulingClass/IOSchedulingPriority name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoNice {
    /// Only when the disk is otherwise idle.
    Idle,
    /// The default class, level 0 (highest) to 7.
    BestEffort(u8),
    /// Always first (root only), level 0 to 7.
    Realtime(u8),
}

impl IoNice {
    /// The systemd IOSchedulingClass value.
    pub fn class_name(self) -> &'static str {
        match self {
            IoNice::Idle => "idle",
            IoNice::BestEffort(_) => "best-effort",
            IoNice::Realtime(_) => "realtime",
        }
    }

    /// The level within the class (none for idle).
    pub fn level(self) -> Option<u8> {
        match self {
            IoNice::Idle => None,
            IoNice::BestEffort(l) | IoNice::Realtime(l) => Some(l),
        }
    }
}

impl FromStr for IoNice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid ionice {s:?}: use idle, best-effort, best-effort:N or realtime:N with N from 0 (highest) to 7"
            )
        };
        let (class, level) = match s.trim().split_once(':') {
            Some((c, l)) => (c, Some(l.trim().parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        if level.is_some_and(|l| l > 7) {
            return Err(bad());
        }
        match class {
            "idle" if level.is_none() => Ok(IoNice::Idle),
            "best-effort" => Ok(IoNice::BestEffort(level.unwrap_or(4))),
            "realtime" => Ok(IoNice::Realtime(level.unwrap_or(4))),
            _ => Err(bad()),
        }
    }
}

/// What a job checks after its backup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckSpec {
    /// No check.
    None,
    /// A check with these packs read in full.
    Read(ReadData),
}

impl FromStr for CheckSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" | "off" => Ok(CheckSpec::None),
            "structure" => Ok(CheckSpec::Read(ReadData::Nothing)),
            "all" => Ok(CheckSpec::Read(ReadData::All)),
            t => t
                .parse()
                .map(CheckSpec::Read)
                .map_err(|e: crate::check::SubsetError| format!("{e}; or none, structure, all")),
        }
    }
}

/// Deserializes an optional value from a string through its `FromStr`, so
/// that a bad value is reported at its position in the file.
fn parsed_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Int(n) => n.to_string(),
        Raw::Text(t) => t,
    };
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error(
        "cannot read the configuration {path}: {source}; create it (see docs/jobs.md) or give another with --config FILE or CAIRN_CONFIG"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse, or a value is wrong.
    #[error("{path}:{line}:{column}: {key}{message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// `key "name": `, or empty when no key is at fault.
        key: String,
        /// toml's or the value parser's message.
        message: String,
    },
    /// A job's settings do not fit together.
    #[error("{path}:{line}: job {job:?}: {message}")]
    Job {
        /// The file.
        path: PathBuf,
        /// Line of the job's table (0 when not found).
        line: usize,
        /// The job.
        job: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// No job of that name.
    #[error("no job {job:?} in {path}; jobs defined: {known}")]
    NoSuchJob {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        job: String,
        /// The names defined, comma-separated (or "none").
        known: String,
    },
}

impl Config {
    /// Reads and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| syntax_error(text, path, &e))?;
        for (name, job) in &config.jobs {
            job.validate(name).map_err(|message| ConfigError::Job {
                path: path.to_path_buf(),
                line: job_line(text, name),
                job: name.clone(),
                message,
            })?;
        }
        Ok(config)
    }

    /// The job called `name`.
    pub fn job(&self, name: &str, path: &Path) -> Result<&Job, ConfigError> {
        self.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            ConfigError::NoSuchJob {
                path: path.to_path_buf(),
                job: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// Where lock files go: `runtime_dir`, else /run/cairn for root,
    /// $XDG_RUNTIME_DIR/cairn for others, else the state directory.
    pub fn lock_dir(&self) -> PathBuf {
        if let Some(dir) = &self.runtime_dir {
            return dir.clone();
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/run/cairn");
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("cairn"),
            None => self.state_dir.clone(),
        }
    }

    /// Where the metrics file goes.
    pub fn metrics_dir(&self) -> PathBuf {
        self.metrics_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("metrics"))
    }
}

/// Whether `name` can name a job: it becomes part of file and unit names.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Job {
    /// Checks what serde cannot: settings that must come together or not
    /// at all. Returns the message for [`ConfigError::Job`].
    fn validate(&self, name: &str) -> Result<(), String> {
        if !valid_job_name(name) {
            return Err("a job name may hold only letters, digits, '-' and '_' (at most 64): it is used in file and systemd unit names".into());
        }
        if self.repository.trim().is_empty() {
            return Err("repository is empty: give the repository location".into());
        }
        let secrets = [
            self.password_file.is_some(),
            self.password_command.is_some(),
            self.key_file.is_some(),
        ];
        match secrets.iter().filter(|s| **s).count() {
            0 => return Err("no password source: set password_file, password_command or key_file (never the password itself)".into()),
            1 => {}
            _ => return Err("give only one of password_file, password_command and key_file".into()),
        }
        match (self.paths.is_empty(), self.disks.is_empty()) {
            (true, true) => return Err("nothing to back up: set paths (files) or disks (block devices)".into()),
            (false, false) => return Err("set either paths or disks, not both: a snapshot holds files or disks; make two jobs".into()),
            _ => {}
        }
        if self
            .transfers
            .is_some_and(|n| n == 0 || usize::from(n) > crate::target_opts::MAX_TRANSFERS)
        {
            return Err(format!(
                "transfers must be from 1 to {} (calls at once against the target)",
                crate::target_opts::MAX_TRANSFERS
            ));
        }
        if self.synth_above.is_some_and(|t| !t.is_finite() || t < 0.0) {
            return Err("synth_above must be a spread of 0 or more (1.0 is a snapshot read in one pass; 1.5 is a common threshold)".into());
        }
        if self
            .retention
            .as_ref()
            .is_some_and(|r| r.policy().is_empty())
        {
            return Err("the retention table has no keep rule: it would remove every snapshot; add keep_last, keep_daily, ... or remove the table".into());
        }
        match (self.freezer, &self.freeze_command, &self.thaw_command) {
            (FreezerKind::Command, Some(_), Some(_)) => {}
            (FreezerKind::Command, _, _) => {
                return Err(
                    "freezer = \"command\" needs both freeze_command and thaw_command".into(),
                );
            }
            (FreezerKind::Fsfreeze, None, None) => {}
            (FreezerKind::Fsfreeze, _, _) => {
                return Err(
                    "freeze_command and thaw_command are used only with freezer = \"command\""
                        .into(),
                );
            }
        }
        if self.snapshot_create.is_some() == self.snapshot_paths.is_empty() {
            return Err("snapshot_create and snapshot_paths go together: the command makes the snapshot, snapshot_paths says what the backup reads from it".into());
        }
        if self.snapshot_remove.is_some() && self.snapshot_create.is_none() {
            return Err("snapshot_remove without snapshot_create".into());
        }
        Ok(())
    }

    /// What the backup reads: the snapshot's paths when one is made, else
    /// the paths or disks.
    pub fn sources(&self) -> &[PathBuf] {
        if !self.snapshot_paths.is_empty() {
            &self.snapshot_paths
        } else if self.disks.is_empty() {
            &self.paths
        } else {
            &self.disks
        }
    }

    /// Whether the job backs up disks.
    pub fn is_disk(&self) -> bool {
        !self.disks.is_empty()
    }

    /// The recovery point objective: `rpo` when set, else the schedule's
    /// period (a day when it has no regular one) plus `randomized_delay`
    /// plus [`RPO_SLACK`] for the run itself.
    pub fn rpo(&self) -> Duration {
        if let Some(Seconds(rpo)) = self.rpo {
            return rpo;
        }
        let period = super::schedule::job_period(self).unwrap_or(Duration::from_secs(86_400));
        period + self.randomized_delay.0 + RPO_SLACK
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key at fault in a toml error: the span itself when it covers a key
/// (unknown fields), else the key assigned on the span's line.
fn key_at(text: &str, span: &std::ops::Range<usize>) -> Option<String> {
    let is_key = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let spanned = text.get(span.clone())?.trim_matches('"');
    if is_key(spanned) && text.get(span.end..)?.trim_start().starts_with('=') {
        return Some(spanned.to_string());
    }
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

fn syntax_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let (line, column) = line_col(text, span.start);
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        key: key_at(text, &span).map_or_else(String::new, |k| format!("key {k:?}: ")),
        message: e.message().trim().to_string(),
    }
}

/// The line of `[jobs.NAME]` (or the first line naming the job), 0 if none.
fn job_line(text: &str, name: &str) -> usize {
    let header = format!("jobs.{name}");
    let quoted = format!("jobs.\"{name}\"");
    text.lines()
        .position(|l| {
            let l = l.trim();
            l.starts_with('[') && (l.contains(&header) || l.contains(&quoted))
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
state_dir = "/tmp/state"

[jobs.web]
repository = "/mnt/repo"
password_file = "/etc/cairn/web.pw"
paths = ["/srv/www"]
excludes = ["*.tmp"]
tags = ["web"]
nice = 10
ionice = "idle"
limit_upload = "10M"
check = "5%"
freeze = ["/srv/www"]
schedule = "daily"
randomized_delay = "30m"

[jobs.web.retention]
keep_last = 3
keep_daily = 7
keep_within = "2w"

[jobs.web.hooks]
pre = "echo pre"
timeout = 90
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/cairn/cairn.toml"))
    }

    #[test]
    fn a_full_job_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/state"));
        let j = c.job("web", Path::new("x")).unwrap();
        assert_eq!(j.nice, Some(Nice(10)));
        assert_eq!(j.ionice, Some(IoNice::Idle));
        assert_eq!(j.limit_upload.unwrap().0.unwrap().get(), 10 << 20);
        assert_eq!(j.check, Some(CheckSpec::Read(ReadData::Percent(5.0))));
        assert_eq!(j.randomized_delay.0, Duration::from_secs(1800));
        assert_eq!(j.hooks.timeout.0, Duration::from_secs(90));
        let p = j.retention.as_ref().unwrap().policy();
        assert_eq!((p.last, p.daily), (3, 7));
        assert_eq!(p.within.unwrap().days, 14);
        assert_eq!(j.sources(), &[PathBuf::from("/srv/www")]);
        assert_eq!(j.freezer, FreezerKind::Fsfreeze);
        assert!(j.prune, "prune is on by default");
        assert_eq!(j.max_unused, None);
        // daily + 30 min randomized delay + the slack.
        assert_eq!(j.rpo(), Duration::from_secs(86_400 + 1800) + RPO_SLACK);
    }

    #[test]
    fn prune_and_rpo_settings_parse() {
        let text = GOOD.replace(
            "schedule = \"daily\"",
            "schedule = \"daily\"\nprune = false\nmax_unused = \"25%\"\nrpo = \"26h\"",
        );
        let c = parse(&text).unwrap();
        let j = c.job("web", Path::new("x")).unwrap();
        assert!(!j.prune);
        assert_eq!(j.max_unused, Some(Percent(0.25)));
        assert_eq!(j.rpo(), Duration::from_secs(26 * 3600));
        let bad = parse(&GOOD.replace("schedule = \"daily\"", "max_unused = \"150%\""));
        assert!(bad.unwrap_err().to_string().contains("between 0% and 100%"));
    }

    #[test]
    fn transfers_parse_and_go_to_the_target_options() {
        let c = parse(&GOOD.replace("schedule = \"daily\"", "transfers = 3")).unwrap();
        let job = c.job("web", Path::new("x")).unwrap();
        assert_eq!(job.transfers, Some(3));
        let spec = crate::job::run::repo_spec(&c, job);
        assert_eq!(spec.transfers(), 3);
        for bad in ["transfers = 0", "transfers = 257"] {
            let e = parse(&GOOD.replace("schedule = \"daily\"", bad)).unwrap_err();
            assert!(
                e.to_string().contains("transfers must be from 1 to 256"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_synth_policy_parses_and_refuses_a_negative_spread() {
        let c = parse(&GOOD.replace("schedule = \"daily\"", "synth_above = 1.5")).unwrap();
        assert_eq!(c.job("web", Path::new("x")).unwrap().synth_above, Some(1.5));
        let c = parse(GOOD).unwrap();
        assert_eq!(c.job("web", Path::new("x")).unwrap().synth_above, None);
        let bad = parse(&GOOD.replace("schedule = \"daily\"", "synth_above = -1.0"));
        assert!(bad.unwrap_err().to_string().contains("synth_above"));
    }

    #[test]
    fn unknown_keys_are_reported_with_line_and_key() {
        let text = GOOD.replace("keep_daily = 7", "keep_daly = 7");
        let e = parse(&text).unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("keep_daly")).unwrap() + 1;
        assert!(
            e.starts_with(&format!(
                "/etc/cairn/cairn.toml:{line}:1: key \"keep_daly\": "
            )),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_values_are_reported_at_the_value() {
        for (from, to, what) in [
            (
                "limit_upload = \"10M\"",
                "limit_upload = \"10T\"",
                "unknown suffix",
            ),
            ("check = \"5%\"", "check = \"500%\"", "invalid subset"),
            ("nice = 10", "nice = 42", "invalid nice"),
            ("ionice = \"idle\"", "ionice = \"idle:3\"", "invalid ionice"),
            ("timeout = 90", "timeout = \"soon\"", "invalid duration"),
            (
                "keep_within = \"2w\"",
                "keep_within = \"2x\"",
                "invalid duration",
            ),
            ("tags = [\"web\"]", "tags = \"web\"", "invalid type"),
        ] {
            let text = GOOD.replace(from, to);
            let key = from.split(' ').next().unwrap();
            let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains(&format!(":{line}:")) && e.contains(&format!("key \"{key}\"")),
                "{to}: {e}"
            );
            assert!(e.contains(what), "{to}: {e}");
        }
    }

    #[test]
    fn jobs_that_do_not_fit_together_are_refused_naming_the_job() {
        for (from, to, what) in [
            (
                "password_file = \"/etc/cairn/web.pw\"",
                "",
                "no password source",
            ),
            (
                "password_file = \"/etc/cairn/web.pw\"",
                "password_file = \"/a\"\npassword_command = \"cat /a\"",
                "only one of",
            ),
            ("paths = [\"/srv/www\"]", "", "nothing to back up"),
            (
                "paths = [\"/srv/www\"]",
                "paths = [\"/a\"]\ndisks = [\"/dev/vda\"]",
                "either paths or disks",
            ),
            (
                "[jobs.web.retention]\nkeep_last = 3\nkeep_daily = 7\nkeep_within = \"2w\"",
                "[jobs.web.retention]",
                "no keep rule",
            ),
            (
                "freeze = [\"/srv/www\"]",
                "freezer = \"command\"",
                "needs both",
            ),
            (
                "freeze = [\"/srv/www\"]",
                "snapshot_create = \"lvcreate\"",
                "go together",
            ),
            ("jobs.web", "jobs.\"web.1\"", "job name"),
        ] {
            let text = GOOD.replace(from, to);
            let e = parse(&text).unwrap_err();
            assert!(matches!(e, ConfigError::Job { .. }), "{to}: {e}");
            let e = e.to_string();
            assert!(e.contains(what), "{to}: {e}");
        }
        let e = parse(&GOOD.replace("paths = [\"/srv/www\"]", ""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/cairn/cairn.toml:4: job \"web\""), "{e}");
    }

    #[test]
    fn unknown_jobs_list_the_known_ones() {
        let c = parse(GOOD).unwrap();
        let e = c.job("db", Path::new("/c.toml")).unwrap_err().to_string();
        assert_eq!(e, "no job \"db\" in /c.toml; jobs defined: web");
    }

    #[test]
    fn durations_nice_and_ionice_parse() {
        assert_eq!("5m".parse::<Seconds>().unwrap().0.as_secs(), 300);
        assert_eq!("2h".parse::<Seconds>().unwrap().0.as_secs(), 7200);
        assert_eq!("45".parse::<Seconds>().unwrap().0.as_secs(), 45);
        assert!("5y".parse::<Seconds>().is_err());
        assert_eq!(
            "best-effort:7".parse::<IoNice>().unwrap(),
            IoNice::BestEffort(7)
        );
        assert_eq!("realtime".parse::<IoNice>().unwrap(), IoNice::Realtime(4));
        assert!("best-effort:8".parse::<IoNice>().is_err());
        assert!("-21".parse::<Nice>().is_err());
        assert_eq!(
            "structure".parse::<CheckSpec>().unwrap(),
            CheckSpec::Read(ReadData::Nothing)
        );
        assert_eq!(
            "1/7".parse::<CheckSpec>().unwrap(),
            CheckSpec::Read(ReadData::Part { n: 1, m: 7 })
        );
        assert_eq!("none".parse::<CheckSpec>().unwrap(), CheckSpec::None);
    }

    #[test]
    fn an_empty_file_has_defaults_and_no_jobs() {
        let c = parse("").unwrap();
        assert!(c.jobs.is_empty());
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(
            c.metrics_dir(),
            PathBuf::from(DEFAULT_STATE_DIR).join("metrics")
        );
    }

    #[test]
    fn the_installed_default_configuration_parses_and_its_example_job_too() {
        let text = include_str!("../../../scripts/default-config.toml");
        assert!(parse(text).unwrap().jobs.is_empty());
        // Uncommenting the example (lines of '#' followed by a key or a
        // table) gives a valid job.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&uncommented).unwrap();
        let j = c.job("system", Path::new("x")).unwrap();
        assert_eq!(j.sources(), &[PathBuf::from("/mnt/srv-snap")]);
        assert_eq!(
            c.metrics_dir(),
            PathBuf::from("/var/lib/prometheus/node-exporter")
        );
    }
}
