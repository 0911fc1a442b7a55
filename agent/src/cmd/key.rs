//! `cairn key`: list, add, remove key files, change a password, rotate
//! the data key (`key rotate`, in `cmd/key_rotate.rs`).
//!
//! New passwords come from `CAIRN_NEW_PASSWORD_FILE`,
//! `CAIRN_NEW_PASSWORD_COMMAND` or a terminal prompt, never from the
//! command line. Removing and replacing keys take an exclusive lock, so two
//! removals cannot race each other down to no usable key.

use cairn::exit::Outcome;
use cairn::repo::{hostname, read_new_password, username};
use cairn::units::format_time;
use cairn_store::KeyFileInfo;

use super::common::{KdfArgs, RepoArgs, print, print_json};

/// Options of `cairn key`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the key files (the one in use is marked with *).
    List {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Add a key file for a new password (from CAIRN_NEW_PASSWORD_FILE,
    /// CAIRN_NEW_PASSWORD_COMMAND or a prompt).
    Add {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key file (by id or unique prefix). The key in use and the
    /// last usable key are refused.
    Remove {
        #[command(flatten)]
        repo: RepoArgs,
        /// The key file's id or a unique prefix of it.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Change the password: add a key file for the new password, then
    /// remove the one in use.
    Passwd {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Start a new data-key epoch: new backups are encrypted under a new
    /// key, old data stays readable. Rewrites every key file the password
    /// given opens; refuses when others exist (see --remove-other-keys).
    /// --rewrite re-encrypts everything under the new key and removes the
    /// old keys.
    Rotate {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        rotate: super::key_rotate::RotateArgs,
    },
}

fn new_info() -> KeyFileInfo {
    KeyFileInfo {
        created: cairn_store::lock::now_secs(),
        hostname: hostname(),
        username: username(),
        epoch: None,
    }
}

/// Runs `cairn key`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::List { repo: r } => {
            let repo = cairn::repo::open(&r.spec())?;
            let keys = repo.list_keys()?;
            let epochs: Vec<u32> = repo.keys().epochs().collect();
            let current = repo.keys().current_epoch();
            if r.json {
                // An array, as before rotation existed; each key file's
                // info carries its set's current epoch once rotated.
                return print_json(&keys).map(|_| Outcome::Clean);
            }
            let mut out = format!(
                "  {:<12} {:<9} {:<20} {:<16} {}\n",
                "ID", "TYPE", "CREATED (UTC)", "HOST", "USER"
            );
            for k in &keys {
                let mark = if k.current { '*' } else { ' ' };
                match &k.damaged {
                    Some(why) => out += &format!("{mark} {:<12} damaged: {why}\n", k.id.short(12)),
                    None => {
                        out += &format!(
                            "{mark} {:<12} {:<9} {:<20} {:<16} {}\n",
                            k.id.short(12),
                            if k.password { "password" } else { "raw key" },
                            format_time(k.info.created),
                            k.info.hostname,
                            k.info.username
                        )
                    }
                }
            }
            out += &format!(
                "key set: {} data-key epoch(s), new data under epoch {current}\n",
                epochs.len()
            );
            print(&out)?;
        }
        Action::Rotate { repo: r, rotate } => return super::key_rotate::run(&r, &rotate),
        Action::Add { repo: r, kdf } => {
            let params = kdf.params()?;
            let repo = cairn::repo::open(&r.spec())?;
            let secret = read_new_password()?;
            // Shared: excludes a rotation, which must see every key file.
            let _lock = repo.lock(&hostname(), "key add", false)?;
            let id = repo.add_key(&secret.credential(), &params, &new_info())?;
            report(&r, "added key", &id)?;
        }
        Action::Remove { repo: r, key } => {
            let repo = cairn::repo::open(&r.spec())?;
            let _lock = repo.lock(&hostname(), "key remove", true)?;
            let id = repo.resolve_key(&key)?;
            repo.remove_key(&id)?;
            report(&r, "removed key", &id)?;
        }
        Action::Passwd { repo: r, kdf } => {
            let params = kdf.params()?;
            let mut repo = cairn::repo::open(&r.spec())?;
            let secret = read_new_password()?;
            let lock = repo.lock(&hostname(), "key passwd", true)?;
            let id = repo.change_password(&secret.credential(), &params, &new_info())?;
            drop(lock);
            report(&r, "password changed; new key", &id)?;
        }
    }
    Ok(Outcome::Clean)
}

fn report(r: &RepoArgs, what: &str, id: &cairn_store::Id) -> anyhow::Result<()> {
    if r.json {
        print_json(&serde_json::json!({ "key": id }))
    } else if r.quiet {
        Ok(())
    } else {
        print(&format!("{what} {}\n", id.short(12)))
    }
}
