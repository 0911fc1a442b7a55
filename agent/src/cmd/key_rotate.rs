//! `cairn key rotate [--rewrite [--resume]] [--remove-other-keys]`: a new
//! data-key epoch, and optionally every object re-encrypted under it.
//!
//! Kept apart from `cmd/key.rs` because it is the one key command that
//! touches data (with `--rewrite`) and has a report of its own.

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::prune::crash_point;
use cairn::rekey::{RewriteReport, rewrite};
use cairn::repo::{hostname, read_secret};
use cairn_store::{KeyRewrap, Repository};
use serde::Serialize;

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn key rotate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// Also re-encrypt every pack, index and snapshot under the new key,
    /// then remove the old keys from the key files (snapshots get new ids;
    /// the mapping is printed). Holds an exclusive lock throughout.
    #[arg(long)]
    pub rewrite: bool,
    /// With --rewrite: add no new epoch, finish re-encrypting under the
    /// current one (after an interrupted --rewrite, or to finish an earlier
    /// rotation without --rewrite).
    #[arg(long, requires = "rewrite")]
    pub resume: bool,
    /// Remove the key files the given password or key does not open (their
    /// holders lose access) instead of refusing to rotate.
    #[arg(long)]
    pub remove_other_keys: bool,
}

/// What `key rotate` did, for --json.
#[derive(Debug, Serialize)]
struct Report {
    /// The rotation (absent with --resume).
    rotated: Option<KeyRewrap>,
    /// The rewrite (with --rewrite).
    rewrite: Option<RewriteReport>,
}

/// Runs `cairn key rotate`.
pub fn run(r: &RepoArgs, args: &RotateArgs) -> anyhow::Result<Outcome> {
    let spec = r.spec();
    let secret = read_secret(&spec, false)?;
    let credential = secret.credential();
    let mut repo = Repository::open(spec.backend()?, &credential, spec.open_options())?;
    let host = hostname();
    let lock = repo.lock(&host, "key rotate", true)?;
    let mut report = Report {
        rotated: None,
        rewrite: None,
    };
    if !args.resume {
        let rotated = repo
            .rotate_key(&credential, args.remove_other_keys)
            .context("key rotation failed")?;
        repo.rekey_lock(&lock)
            .context("cannot write the lock under the new key")?;
        crash_point("rotate-keys");
        report.rotated = Some(rotated);
    }
    if args.rewrite {
        let chatty = !r.quiet && !r.json;
        let done = rewrite(
            &mut repo,
            &credential,
            args.remove_other_keys,
            &host,
            &mut |line| {
                if chatty {
                    eprintln!("{line}");
                }
            },
        )
        .context("the rewrite could not finish; run `cairn key rotate --rewrite --resume` to finish it (every snapshot stays readable meanwhile)")?;
        report.rewrite = Some(done);
    }
    drop(lock);
    let mut warnings = 0;
    if let Some(why) = report
        .rewrite
        .as_ref()
        .and_then(|w| w.config_not_replaced.as_ref())
    {
        eprintln!(
            "warning: the config could not be sealed under the new key ({why}); its old key \
             epoch stays in the key files for the config alone, so whoever holds the retired \
             keys can still forge the config (not data). Run `cairn key rotate --rewrite \
             --resume` against a target that can replace a file atomically to finish"
        );
        warnings += 1;
    }
    if r.json {
        print_json(&report)?;
    } else if !r.quiet {
        print(&summary(&report))?;
    }
    Ok(Outcome::from_warnings(warnings))
}

fn summary(report: &Report) -> String {
    let mut out = String::new();
    if let Some(k) = &report.rotated {
        out += &format!(
            "new key epoch {}; {} key file(s) rewritten",
            k.current_epoch,
            k.replaced.len()
        );
        if !k.removed.is_empty() {
            out += &format!(", {} other key file(s) removed", k.removed.len());
        }
        out += "\n";
    }
    if let Some(w) = &report.rewrite {
        out += &format!(
            "re-encrypted under epoch {}: {} pack(s) ({} blob(s)), {} index file(s) replaced, {} snapshot(s) rewritten\n",
            w.epoch,
            w.packs_rewritten,
            w.blobs_copied,
            w.index_files_replaced,
            w.snapshots.len()
        );
        for m in &w.snapshots {
            out += &format!("snapshot {} is now {}\n", m.old.short(8), m.new.short(8));
        }
        if let Some(c) = w.config.filter(|c| c.replaced) {
            out += &format!(
                "config sealed again under epoch {} (was epoch {})\n",
                c.epoch, c.from_epoch
            );
        }
        let dropped: Vec<String> = w.epochs_dropped.iter().map(u32::to_string).collect();
        out += &format!(
            "old key epochs removed from the key files: {}\n",
            if dropped.is_empty() {
                "none".to_string()
            } else {
                dropped.join(", ")
            }
        );
    }
    out
}
