//! Options every repository command shares, and small helpers for output.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use cairn::repo::RepoSpec;
use cairn::target_opts::{DEFAULT_RETRIES, MAX_TRANSFERS, RateLimit, TargetOptions};
use cairn_store::KdfParams;
use cairn_store::backend::RetryStats;
use std::sync::Arc;

/// Argon2id cost of a new password's key file (`init`, `key add`, `key
/// passwd`). The defaults ([`KdfParams::DEFAULT`]: 32 MiB, 6 passes, 4
/// lanes) keep the KDF below the working set of a backup; the lanes are
/// computed in parallel, so a key file opens in about half the time of one
/// lane on two cores at the same memory and work.
#[derive(Debug, Clone, clap::Args)]
pub struct KdfArgs {
    /// Argon2id memory for the new key file, in MiB.
    #[arg(long, value_name = "MiB", default_value_t = KdfParams::DEFAULT.memory_kib / 1024)]
    pub kdf_memory: u32,
    /// Argon2id passes over that memory.
    #[arg(long, value_name = "N", default_value_t = KdfParams::DEFAULT.iterations)]
    pub kdf_iterations: u32,
    /// Argon2id lanes (computed in parallel, one per core).
    #[arg(long, value_name = "N", default_value_t = KdfParams::DEFAULT.parallelism)]
    pub kdf_lanes: u32,
}

impl KdfArgs {
    /// The parameters, checked.
    pub fn params(&self) -> anyhow::Result<KdfParams> {
        let p = KdfParams {
            memory_kib: self.kdf_memory.saturating_mul(1024),
            iterations: self.kdf_iterations,
            parallelism: self.kdf_lanes,
        };
        p.validate()?;
        Ok(p)
    }
}

/// Where the repository is; the secret comes from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// The repository: a directory (`/path` or `local:/path`; a mounted
    /// SMB/NFS share works). The password comes from CAIRN_PASSWORD_FILE,
    /// CAIRN_PASSWORD_COMMAND, CAIRN_KEY_FILE or a terminal prompt.
    #[arg(short = 'r', long, env = "CAIRN_REPO", value_name = "REPO")]
    pub repo: Option<String>,
    /// Cache directory (default: $XDG_CACHE_HOME/cairn).
    #[arg(long, env = "CAIRN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep no local cache (slower opens on large repositories).
    #[arg(long)]
    pub no_cache: bool,
    /// Print JSON on standard output instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print only errors and warnings.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: the parent snapshot used, per-disk figures, repository
    /// counters.
    #[arg(short, long)]
    pub verbose: bool,
    /// Cap uploads to the target at RATE bytes per second: 512K, 10M, 1.5M
    /// (binary multiples), or "off".
    #[arg(long, env = "CAIRN_LIMIT_UPLOAD", value_name = "RATE")]
    pub limit_upload: Option<RateLimit>,
    /// Cap downloads from the target at RATE bytes per second, like
    /// --limit-upload.
    #[arg(long, env = "CAIRN_LIMIT_DOWNLOAD", value_name = "RATE")]
    pub limit_download: Option<RateLimit>,
    /// Retry a call to the target that failed transiently (a reset
    /// connection, a timeout, a 5xx answer) up to N times: N + 1 attempts
    /// in all, for every kind of target, with random waits of up to 0.2 s,
    /// 0.4 s, 0.8 s ... (at most 10 s each; 6.2 s in all for 5) between
    /// them; 0 to never retry.
    #[arg(long, env = "CAIRN_RETRIES", value_name = "N", default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// Run at most N calls against the target at once: pack uploads of a
    /// backup (each holds its pack in memory, 16 MiB by default), downloads
    /// of a restore, copy and check --read-data, and the small calls.
    /// Default: 8 for S3, Azure and SFTP (latency-bound: more than cores
    /// keeps the link busy), one per core (2 to 8) for a directory. Also
    /// the SFTP connections, unless CAIRN_SFTP_CONNECTIONS is set.
    #[arg(long, env = "CAIRN_TRANSFERS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_TRANSFERS as i64))]
    pub transfers: Option<u16>,
    /// The retry counters of the target these options open (shared with
    /// every [`TargetOptions`] made from them).
    #[arg(skip)]
    pub retry_stats: Arc<RetryStats>,
}

impl RepoArgs {
    /// The repository spec these options and the environment give.
    pub fn spec(&self) -> RepoSpec {
        let mut spec = RepoSpec::from_env(self.repo.clone());
        if self.cache_dir.is_some() {
            spec.cache_dir = self.cache_dir.clone();
        }
        spec.no_cache = self.no_cache;
        spec.target = self.target_options();
        spec
    }

    /// The bandwidth caps and retries for the target (see
    /// `cairn::target_opts::wrap_backend`).
    pub fn target_options(&self) -> TargetOptions {
        TargetOptions {
            limit_upload: self.limit_upload.and_then(|r| r.0),
            limit_download: self.limit_download.and_then(|r| r.0),
            retries: self.retries,
            transfers: self.transfers.map(usize::from),
            warn_on_retry: true,
            retry_stats: self.retry_stats.clone(),
        }
    }

    /// Whether to show a progress line (a terminal, not quiet, not JSON).
    pub fn progress(&self) -> bool {
        !self.quiet && !self.json && io::stderr().is_terminal()
    }
}

/// Worker threads of a command that waits on downloads (restore, export):
/// `requested`, or else one per core and at least as many as the target's
/// transfers, so that every transfer slot can be kept busy.
pub fn io_threads(requested: usize, spec: &RepoSpec) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(spec.transfers())
}

/// Where the job configuration is (`cairn run`, `cairn schedule`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The configuration file declaring the jobs.
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE", default_value = cairn::job::config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl ConfigArgs {
    /// Reads the configuration and picks job `name`.
    pub fn job(
        &self,
        name: &str,
    ) -> anyhow::Result<(cairn::job::config::Config, cairn::job::config::Job)> {
        let config = cairn::job::config::Config::load(&self.config)?;
        let job = config.job(name, &self.config)?.clone();
        Ok((config, job))
    }
}

/// Writes `text` to standard output; a closed pipe is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// Prints `value` as pretty JSON on standard output.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    json.push('\n');
    print(&json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        repo: RepoArgs,
    }

    #[test]
    fn target_flags_parse_into_options() {
        let cli = Cli::try_parse_from([
            "cairn",
            "--limit-upload",
            "10M",
            "--limit-download",
            "off",
            "--retries",
            "2",
            "--transfers",
            "3",
        ])
        .unwrap();
        let opts = cli.repo.target_options();
        assert_eq!(opts.limit_upload.map(|r| r.get()), Some(10 << 20));
        assert_eq!(opts.limit_download, None);
        assert_eq!(opts.retries, 2);
        assert_eq!(opts.transfers, Some(3));
        for bad in ["0", "257", "many"] {
            let e = Cli::try_parse_from(["cairn", "--transfers", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        // The counters are shared with the options made from the flags.
        assert!(Arc::ptr_eq(&opts.retry_stats, &cli.repo.retry_stats));
    }

    #[test]
    fn bad_rates_are_usage_errors_naming_the_flag() {
        let e = Cli::try_parse_from(["cairn", "--limit-upload", "0"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let text = e.to_string();
        assert!(
            text.contains("--limit-upload") && text.contains("zero"),
            "{text}"
        );
    }
}
