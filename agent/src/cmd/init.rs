//! `cairn init`: create a repository.

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::repo::{RepoError, hostname, read_secret, username};
use cairn_chunker::ChunkerParams;
use cairn_objstore::Location;
use cairn_store::keyfile::KeyFileInfo;
use cairn_store::{ChunkSizes, ChunkerConfig, InitOptions, KdfParams, Repository};

use super::common::{RepoArgs, print, print_json};

/// Options of `cairn init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Argon2id memory for the password's key file, in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 64)]
    kdf_memory: u32,
    /// Argon2id passes over that memory.
    #[arg(long, value_name = "N", default_value_t = 3)]
    kdf_iterations: u32,
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
        _ => Some(spec.create_backend()?),
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
    let backend = match early {
        Some(b) => b,
        None => spec.create_backend()?,
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
    init.kdf = KdfParams {
        memory_kib: args.kdf_memory.saturating_mul(1024),
        iterations: args.kdf_iterations,
        parallelism: 1,
    };
    init.kdf.validate()?;
    init.pack_size = args.pack_size.saturating_mul(1 << 20);
    init.compression_level = args.compression;
    init.key_info = KeyFileInfo {
        created: cairn_store::lock::now_secs(),
        hostname: hostname(),
        username: username(),
        epoch: None,
    };
    let target = backend.clone();
    let repo = Repository::init(backend, &secret.credential(), &init, spec.open_options())?;
    let id = repo.config().repo_id;
    // Object stores: check that the service really refuses to overwrite
    // (docs/targets.md); warn if not, since locks then cannot be trusted.
    let create_only = match &location {
        Location::Local(_) => Some(true),
        _ => match cairn_objstore::backend::honours_create_only(&*target) {
            Ok(honoured) => Some(honoured),
            Err(e) => {
                eprintln!("warning: could not check that the target refuses overwrites: {e}");
                None
            }
        },
    };
    if create_only == Some(false) {
        eprintln!(
            "warning: {location} accepted an overwrite of an existing object (it ignores If-None-Match): \
             backups work, but operations that need a lock (prune, forget) are not safe against \
             other agents on this target"
        );
    }
    if args.repo.json {
        print_json(&serde_json::json!({
            "repository": location.to_string(),
            "id": id,
            "create_only_writes": create_only,
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
