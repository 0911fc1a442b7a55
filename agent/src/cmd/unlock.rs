//! `cairn unlock`: remove stale locks (or, with `--force`, every lock).

use cairn::exit::Outcome;
use cairn::repo::hostname;

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn unlock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Remove every lock, live ones too. Only when you know no other cairn
    /// process works on the repository: a backup that loses its lock can
    /// have its new data pruned.
    #[arg(long)]
    force: bool,
}

/// Runs `cairn unlock`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let repo = cairn::repo::open(&args.repo.spec())?;
    let removed = if args.force {
        repo.remove_all_locks()?
    } else {
        repo.remove_stale_locks(&hostname())?
    };
    let remaining = repo.list_locks()?.len();
    if args.repo.json {
        print_json(&serde_json::json!({ "removed": removed, "remaining": remaining }))?;
    } else if !args.repo.quiet {
        let mut out = format!("removed {removed} lock(s)\n");
        if remaining > 0 {
            out += &format!(
                "{remaining} lock(s) remain: held by running operations (or unreadable); use --force only if no cairn process is running\n"
            );
        }
        print(&out)?;
    }
    Ok(Outcome::Clean)
}
