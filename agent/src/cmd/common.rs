//! Options every repository command shares, and small helpers for output.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use cairn::repo::RepoSpec;

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
}

impl RepoArgs {
    /// The repository spec these options and the environment give.
    pub fn spec(&self) -> RepoSpec {
        let mut spec = RepoSpec::from_env(self.repo.clone());
        if self.cache_dir.is_some() {
            spec.cache_dir = self.cache_dir.clone();
        }
        spec.no_cache = self.no_cache;
        spec
    }

    /// Whether to show a progress line (a terminal, not quiet, not JSON).
    pub fn progress(&self) -> bool {
        !self.quiet && !self.json && io::stderr().is_terminal()
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
