//! `cairn init`: create a repository.

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::repo::{NewTarget, RepoError, hostname, read_secret, username};
use cairn_chunker::ChunkerParams;
use cairn_objstore::Location;
use cairn_store::RandomSource;
use cairn_store::backend::{CreateOnly, ProbeError, probe_create_only};
use cairn_store::keyfile::KeyFileInfo;
use cairn_store::{ChunkSizes, ChunkerConfig, InitOptions, Repository};

use super::common::{KdfArgs, RepoArgs, print, print_json};

/// Options of `cairn init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    kdf: KdfArgs,
    /// Target pack size in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 16)]
    pack_size: u32,
    /// zstd level for data (1 fastest .. 19; 3 is the measured default).
    #[arg(long, value_name = "LEVEL", default_value_t = 3)]
    compression: i32,
    /// Share the chunker secrets (id key, gear seed) and parameters of the
    /// repository REPO, so that `cairn copy` can copy its snapshots here
    /// and the same data deduplicates across both. Its password comes from
    /// CAIRN_FROM_PASSWORD_FILE, CAIRN_FROM_PASSWORD_COMMAND or
    /// CAIRN_FROM_KEY_FILE; this repository's password and data keys are
    /// its own.
    #[arg(long, value_name = "REPO")]
    copy_chunker_params_from: Option<String>,
}

fn sizes(p: ChunkerParams) -> ChunkSizes {
    ChunkSizes {
        min: p.min_size as u32,
        avg: p.avg_size as u32,
        max: p.max_size as u32,
        normalization: p.normalization,
    }
}

/// Runs `cairn init`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let spec = args.repo.spec();
    let location = spec.parsed_location()?;
    // A directory is created only once the password is known; a remote
    // target has nothing to create, so it is checked (reachable, no config
    // there yet) before the password is asked for.
    let early = match &location {
        Location::Local(path) => {
            if cairn::repo::looks_like_repo(path) {
                return Err(RepoError::AlreadyARepository(path.display().to_string()).into());
            }
            None
        }
        _ => Some(spec.create_target()?),
    };
    let shared = match &args.copy_chunker_params_from {
        Some(from) => {
            let repo = cairn::repo::open(&spec.source_spec(from.clone()))
                .with_context(|| format!("cannot open {from} to copy its chunker parameters"))?;
            Some((repo.keys().clone(), repo.config().chunker))
        }
        None => None,
    };
    let secret = read_secret(&spec, true)?;
    let target = match early {
        Some(t) => t,
        None => spec.create_target()?,
    };
    let mut init = InitOptions::new(ChunkerConfig {
        format: 1,
        disk: sizes(ChunkerParams::DISK_DEFAULT),
        files: sizes(ChunkerParams::FILE_DEFAULT),
    });
    if let Some((keys, chunker)) = shared {
        init.chunker = chunker;
        init.share_ids_with = Some(keys);
    }
    init.kdf = args.kdf.params()?;
    init.pack_size = args.pack_size.saturating_mul(1 << 20);
    init.compression_level = args.compression;
    init.key_info = KeyFileInfo {
        created: cairn_store::lock::now_secs(),
        hostname: hostname(),
        username: username(),
        epoch: None,
    };
    let open = spec.open_options();
    let create_only = probe(&target, &location, open.rng.as_ref());
    let repo = Repository::init(target.wrapped, &secret.credential(), &init, open)?;
    let id = repo.config().repo_id;
    if args.repo.json {
        print_json(&serde_json::json!({
            "repository": location.to_string(),
            "id": id,
            "create_only_writes": create_only.map(|c| c == CreateOnly::Honoured),
        }))?;
    } else if !args.repo.quiet {
        print(&format!(
            "created repository {} at {}\nKeep the password safe: without it (or another key) the backups cannot be read.\n",
            id.short(12),
            location
        ))?;
    }
    Ok(Outcome::Clean)
}

/// Checks, on the target itself (below the retries, which ask whether an
/// object exists before each write), that it refuses to overwrite an
/// object, and warns once if not: what that means and what is weaker
/// (docs/targets.md, "What cairn relies on from a target"). `None` when it
/// could not tell (the reason is printed as a warning too).
fn probe(target: &NewTarget, location: &Location, rng: &dyn RandomSource) -> Option<CreateOnly> {
    let found = match probe_create_only(target.direct.as_ref(), rng) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("warning: {e}");
            match e {
                // The answer is known; only the probe object stayed behind.
                ProbeError::Cleanup { found, .. } => found,
                _ => return None,
            }
        }
    };
    if found == CreateOnly::Ignored {
        eprintln!("warning: {}", ignored_warning(location));
    }
    Some(found)
}

/// What `cairn init` says about a target that overwrites.
fn ignored_warning(location: &Location) -> String {
    format!(
        "{location} does not refuse to overwrite an existing object: a second create-only \
         write of a probe object succeeded (the server ignores If-None-Match, as Garage and \
         s3rver do). cairn stays correct on it: every object but the repository config is \
         named by the hash of its contents, so a second write stores the same bytes, and \
         locks do not depend on create-only writes. What is weaker: two `cairn init` of this \
         location at the same moment could both report success, and one of them would then \
         fail at its first command; do not run init twice at once. See docs/targets.md."
    )
}
