//! Opening a repository from what the user gave: a location, and a password
//! or key from the environment, a file, a command or the terminal.
//!
//! Locations are parsed by [`cairn_objstore::Location`]: a directory, an
//! `s3://` bucket or an `azure://` container (their endpoints and
//! credentials come from the environment, see docs/targets.md), or an
//! `sftp://` URL (crate `cairn-sftp`; keys and host keys from the
//! environment and `~/.ssh`). Every target is wrapped with the retries and
//! bandwidth caps of [`TargetOptions`].
//!
//! Secrets never come from the command line (they would show in `ps` and
//! shell history): `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD_COMMAND`,
//! `CAIRN_KEY_FILE` (a raw 32-byte key), or a prompt on the terminal. They
//! are wiped from memory after use. The source repository of `copy` (and of
//! `init --copy-chunker-params-from`) takes its secret from the same
//! variables prefixed `CAIRN_FROM_` instead ([`RepoSpec::source_from_env`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_objstore::{AzureConfig, Location, ObjectBackend, Options, S3Config};

use crate::target_opts::{TargetOptions, wrap_backend, wrap_hooked};
use cairn_store::backend::LocalBackend;
use cairn_store::keyfile::parse_raw_key;
use cairn_store::{Backend, Credential, OpenOptions, Repository};
use thiserror::Error;
use zeroize::Zeroizing;

/// Where the repository is and how to unlock it.
#[derive(Debug, Clone, Default)]
pub struct RepoSpec {
    /// The location: `/path`, `local:/path`, `s3://bucket/prefix`,
    /// `azure://container/prefix` or `sftp://user@host/path`.
    pub location: String,
    /// A file holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// A shell command printing the password.
    pub password_command: Option<String>,
    /// A raw key file (32 bytes or 64 hex digits).
    pub key_file: Option<PathBuf>,
    /// The cache directory; `None` for the default.
    pub cache_dir: Option<PathBuf>,
    /// Keep no cache on disk.
    pub no_cache: bool,
    /// Retries and bandwidth caps around the target.
    pub target: TargetOptions,
    /// Whether this is the source repository of a copy: its secret comes
    /// from the `CAIRN_FROM_*` variables, and prompts and messages say so.
    pub source: bool,
}

/// The target of a repository being created, two ways.
#[derive(Clone)]
pub struct NewTarget {
    /// The target as calls reach it: no retries, no bandwidth caps. For
    /// probing what the target itself does (`cairn init`).
    pub direct: Arc<dyn Backend>,
    /// The target with the retries and bandwidth caps: for everything else.
    pub wrapped: Arc<dyn Backend>,
}

/// Problems with what the user gave, before the repository is reached.
#[derive(Debug, Error)]
pub enum RepoError {
    /// No location given.
    #[error("no repository given: pass --repo or set CAIRN_REPO")]
    NoLocation,
    /// A location of a kind this build does not support.
    #[error("unsupported repository location {0:?}: use a directory path (/path or local:/path)")]
    UnsupportedLocation(String),
    /// A malformed location.
    #[error(transparent)]
    Location(#[from] cairn_objstore::LocationError),
    /// An object-storage target that could not be opened (missing bucket,
    /// bad credentials, unreachable endpoint).
    #[error(transparent)]
    Target(#[from] cairn_objstore::OpenError),
    /// An SFTP location that does not parse, or SFTP settings in the
    /// environment that are wrong.
    #[error("{location}: {message}")]
    Sftp {
        /// The location.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// `init` at a location that already holds a repository.
    #[error("{0} already holds a repository; choose another location")]
    AlreadyARepository(String),
    /// No way to get a password (the prefix of the variables to set:
    /// `CAIRN_` or, for a copy's source repository, `CAIRN_FROM_`).
    #[error(
        "no password source for the {what}: set {prefix}PASSWORD_FILE, {prefix}PASSWORD_COMMAND or {prefix}KEY_FILE, or run on a terminal to be asked"
    )]
    NoPassword {
        /// `CAIRN_` or `CAIRN_FROM_`.
        prefix: &'static str,
        /// `repository` or `source repository`.
        what: &'static str,
    },
    /// Reading a password or key source failed.
    #[error("{what}: {message}")]
    Secret {
        /// The source.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The target failed.
    #[error("repository at {location}: {source}")]
    Backend {
        /// Where.
        location: String,
        /// Why.
        #[source]
        source: cairn_store::BackendError,
    },
}

impl RepoSpec {
    /// The spec from the environment (`CAIRN_*`) and the given location.
    pub fn from_env(location: Option<String>) -> Self {
        Self::from_env_prefixed(location, false)
    }

    /// The spec of a copy's source repository at `location`: its password
    /// or key from `CAIRN_FROM_PASSWORD_FILE`, `CAIRN_FROM_PASSWORD_COMMAND`,
    /// `CAIRN_FROM_KEY_FILE` or a prompt (the cache directory is shared).
    pub fn source_from_env(location: String) -> Self {
        Self::from_env_prefixed(Some(location), true)
    }

    /// The spec of a copy's source at `location` ([`Self::source_from_env`])
    /// with this spec's cache and target options.
    pub fn source_spec(&self, location: String) -> Self {
        RepoSpec {
            cache_dir: self.cache_dir.clone(),
            no_cache: self.no_cache,
            target: self.target.clone(),
            ..Self::source_from_env(location)
        }
    }

    fn from_env_prefixed(location: Option<String>, source: bool) -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let prefix = env_prefix(source);
        RepoSpec {
            location: location.unwrap_or_default(),
            password_file: var(&format!("{prefix}PASSWORD_FILE")).map(PathBuf::from),
            password_command: var(&format!("{prefix}PASSWORD_COMMAND"))
                .and_then(|v| v.into_string().ok()),
            key_file: var(&format!("{prefix}KEY_FILE")).map(PathBuf::from),
            cache_dir: var("CAIRN_CACHE_DIR").map(PathBuf::from),
            no_cache: false,
            target: TargetOptions::default(),
            source,
        }
    }

    /// How many calls may run against the target at once: `--transfers`,
    /// else the default for its kind (remote or a directory).
    pub fn transfers(&self) -> usize {
        let remote = !matches!(self.parsed_location(), Ok(Location::Local(_)));
        self.target.transfers_for(remote)
    }

    /// The parsed location.
    pub fn parsed_location(&self) -> Result<Location, RepoError> {
        match Location::parse(&self.location) {
            Err(cairn_objstore::LocationError::Empty) => Err(RepoError::NoLocation),
            other => Ok(other?),
        }
    }

    /// The directory a local location names.
    pub fn local_path(&self) -> Result<PathBuf, RepoError> {
        match self.parsed_location()? {
            Location::Local(path) => Ok(path),
            _ => Err(RepoError::UnsupportedLocation(
                self.location.trim().to_string(),
            )),
        }
    }

    /// The backend of an existing repository, wrapped with the retries and
    /// bandwidth caps.
    pub fn backend(&self) -> Result<Arc<dyn Backend>, RepoError> {
        let inner: Arc<dyn Backend> = match self.parsed_location()? {
            Location::Local(path) => {
                let b = LocalBackend::open(&path).map_err(|source| RepoError::Backend {
                    location: path.display().to_string(),
                    source,
                })?;
                Arc::new(b)
            }
            Location::Sftp(_) => Arc::new(self.open_sftp(false)?),
            other => {
                let remote = Arc::new(open_remote(&other)?);
                let wrapped = wrap_backend(remote.clone(), &self.target, self.transfers());
                // Through the retries: a transient failure of this first
                // request is retried like any other call.
                remote.check_reachable(wrapped.as_ref())?;
                return Ok(wrapped);
            }
        };
        Ok(wrap_backend(inner, &self.target, self.transfers()))
    }

    /// Connects to an SFTP location (`create`: make the repository's
    /// directories, for `init`).
    fn open_sftp(&self, create: bool) -> Result<cairn_sftp::SftpBackend, RepoError> {
        let location = self.location.trim();
        let err = |message: String| RepoError::Sftp {
            location: location.to_string(),
            message,
        };
        let loc = cairn_sftp::SftpLocation::parse(location).map_err(|e| err(e.to_string()))?;
        let mut opts = cairn_sftp::SftpOptions::from_env().map_err(|e| err(e.to_string()))?;
        // One connection serves one call: as many as transfers, unless
        // CAIRN_SFTP_CONNECTIONS says otherwise.
        if std::env::var_os(cairn_sftp::ENV_CONNECTIONS).is_none_or(|v| v.is_empty()) {
            opts.connections = self.transfers().min(cairn_sftp::MAX_CONNECTIONS);
        }
        let connected = if create {
            cairn_sftp::SftpBackend::create(&loc, &opts)
        } else {
            cairn_sftp::SftpBackend::connect(&loc, &opts)
        };
        connected.map_err(|source| RepoError::Backend {
            location: loc.to_string(),
            source,
        })
    }

    /// The backend for a new repository: creates the directory of a local
    /// one; an object store has no directory to create, so there this
    /// refuses a location that already holds a `config`.
    pub fn create_backend(&self) -> Result<Arc<dyn Backend>, RepoError> {
        Ok(self.create_target()?.wrapped)
    }

    /// [`RepoSpec::create_backend`], and the same target without the
    /// retries and bandwidth caps (the test hooks, if any, included).
    pub fn create_target(&self) -> Result<NewTarget, RepoError> {
        let target = |inner: Arc<dyn Backend>| {
            let direct = crate::test_hooks::wrap(inner);
            let wrapped = wrap_hooked(direct.clone(), &self.target, self.transfers());
            NewTarget { direct, wrapped }
        };
        match self.parsed_location()? {
            Location::Local(path) => {
                let b = LocalBackend::create(&path).map_err(|source| RepoError::Backend {
                    location: path.display().to_string(),
                    source,
                })?;
                Ok(target(Arc::new(b)))
            }
            Location::Sftp(_) => Ok(target(Arc::new(self.open_sftp(true)?))),
            other => {
                let remote = Arc::new(open_remote(&other)?);
                let new = target(remote.clone() as Arc<dyn Backend>);
                remote.check_reachable(new.wrapped.as_ref())?;
                let exists = match new.wrapped.stat(&cairn_store::Handle::config()) {
                    Ok(_) => true,
                    Err(e) if e.is_not_found() => false,
                    Err(source) => {
                        return Err(RepoError::Backend {
                            location: other.to_string(),
                            source,
                        });
                    }
                };
                if exists {
                    return Err(RepoError::AlreadyARepository(other.to_string()));
                }
                Ok(new)
            }
        }
    }

    /// Open options: the cache directory, OS randomness, and as many
    /// background pack uploads as transfers.
    pub fn open_options(&self) -> OpenOptions {
        let dir = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(cairn_store::Cache::default_dir)
        };
        let mut options = OpenOptions::new(dir);
        options.transfers = self.transfers();
        options
    }
}

/// The prefix of the secret variables of a repository: `CAIRN_`, or
/// `CAIRN_FROM_` for a copy's source.
fn env_prefix(source: bool) -> &'static str {
    if source { "CAIRN_FROM_" } else { "CAIRN_" }
}

/// Sets up a remote target with the endpoint, credentials and timeouts of
/// the environment; the caller checks that it is reachable
/// ([`ObjectBackend::check_reachable`]) through the retries.
fn open_remote(location: &Location) -> Result<ObjectBackend, RepoError> {
    let config_err = |error| cairn_objstore::OpenError::Config {
        location: location.to_string(),
        error,
    };
    let options = Options::from_lookup(&cairn_objstore::config::process_env).map_err(config_err)?;
    match location {
        Location::S3(loc) => {
            let config = S3Config::from_env().map_err(config_err)?;
            Ok(ObjectBackend::s3_unchecked(loc, &config, &options)?)
        }
        Location::Azure(loc) => {
            let config = AzureConfig::from_env().map_err(config_err)?;
            Ok(ObjectBackend::azure_unchecked(loc, &config, &options)?)
        }
        Location::Sftp(_) | Location::Local(_) => {
            Err(RepoError::UnsupportedLocation(location.to_string()))
        }
    }
}

/// A password or raw key, wiped when dropped.
pub enum Secret {
    /// A password.
    Password(Zeroizing<Vec<u8>>),
    /// A raw key.
    Key(Zeroizing<[u8; 32]>),
}

impl Secret {
    /// The credential the store takes.
    pub fn credential(&self) -> Credential<'_> {
        match self {
            Secret::Password(p) => Credential::Password(p),
            Secret::Key(k) => Credential::RawKey(k),
        }
    }
}

fn secret_err(what: impl Into<String>, message: impl std::fmt::Display) -> RepoError {
    RepoError::Secret {
        what: what.into(),
        message: message.to_string(),
    }
}

/// The first line of a password source, without its line ending.
fn first_line(mut bytes: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    if let Some(end) = bytes.iter().position(|&b| b == b'\n') {
        bytes.truncate(end);
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    bytes
}

/// Gets the secret from the configured source; `confirm` asks twice on a
/// terminal (for `init` and new keys).
pub fn read_secret(spec: &RepoSpec, confirm: bool) -> Result<Secret, RepoError> {
    if let Some(path) = &spec.key_file {
        let raw = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| secret_err(format!("key file {}", path.display()), e))?,
        );
        let key = parse_raw_key(&raw)
            .map_err(|e| secret_err(format!("key file {}", path.display()), e))?;
        return Ok(Secret::Key(Zeroizing::new(key.0)));
    }
    if let Some(path) = &spec.password_file {
        let raw = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| secret_err(format!("password file {}", path.display()), e))?,
        );
        return non_empty(first_line(raw), "the password file");
    }
    if let Some(cmd) = &spec.password_command {
        let var = format!("{}PASSWORD_COMMAND", env_prefix(spec.source));
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| secret_err(&var, e))?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(secret_err(&var, format!("exited with {}", out.status)));
        }
        return non_empty(first_line(stdout), &format!("{var}'s output"));
    }
    if spec.source {
        prompt("source repository password: ", confirm, "CAIRN_FROM_")
    } else {
        prompt("repository password: ", confirm, "CAIRN_")
    }
}

/// The new password of `key add` and `key passwd`: from
/// `CAIRN_NEW_PASSWORD_FILE`, `CAIRN_NEW_PASSWORD_COMMAND`, or asked twice
/// on the terminal; never from the command line.
pub fn read_new_password() -> Result<Secret, RepoError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let spec = RepoSpec {
        password_file: var("CAIRN_NEW_PASSWORD_FILE").map(PathBuf::from),
        password_command: var("CAIRN_NEW_PASSWORD_COMMAND").and_then(|v| v.into_string().ok()),
        ..RepoSpec::default()
    };
    if spec.password_file.is_none() && spec.password_command.is_none() {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(secret_err(
                "new password",
                "none given: set CAIRN_NEW_PASSWORD_FILE or CAIRN_NEW_PASSWORD_COMMAND, or run on a terminal to be asked",
            ));
        }
        return prompt("new password: ", true, "CAIRN_");
    }
    read_secret(&spec, true)
}

fn non_empty(p: Zeroizing<Vec<u8>>, what: &str) -> Result<Secret, RepoError> {
    if p.is_empty() {
        return Err(secret_err(what, "the password is empty"));
    }
    Ok(Secret::Password(p))
}

fn prompt(label: &str, confirm: bool, prefix: &'static str) -> Result<Secret, RepoError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        let what = if prefix == "CAIRN_FROM_" {
            "source repository"
        } else {
            "repository"
        };
        return Err(RepoError::NoPassword { prefix, what });
    }
    let first =
        Zeroizing::new(rpassword::prompt_password(label).map_err(|e| secret_err("terminal", e))?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("repeat the password: ")
                .map_err(|e| secret_err("terminal", e))?,
        );
        if *first != *again {
            return Err(secret_err("terminal", "the passwords differ"));
        }
    }
    non_empty(Zeroizing::new(first.as_bytes().to_vec()), "the password")
}

/// Opens the repository the spec names.
pub fn open(spec: &RepoSpec) -> anyhow::Result<Repository> {
    let backend = spec.backend()?;
    let secret = read_secret(spec, false)?;
    Ok(Repository::open(
        backend,
        &secret.credential(),
        spec.open_options(),
    )?)
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we
    // own; we pass its true length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The user running cairn.
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            uid.to_string()
        })
}

/// Whether `path` looks like an existing repository directory.
pub fn looks_like_repo(path: &Path) -> bool {
    path.join("config").is_file()
}

/// The chunker a repository's snapshots of this kind use: its parameters
/// and its secret gear seed.
pub fn chunker_for(repo: &Repository, disk: bool) -> anyhow::Result<cairn_chunker::Chunker> {
    let c = &repo.config().chunker;
    if c.format != 1 {
        anyhow::bail!(
            "the repository uses chunker format {}, which this cairn does not know; upgrade cairn",
            c.format
        );
    }
    let s = if disk { c.disk } else { c.files };
    let params = cairn_chunker::ChunkerParams::new(s.min as usize, s.avg as usize, s.max as usize)
        .with_normalization(s.normalization);
    let table = cairn_chunker::GearTable::from_seed(repo.keys().gear_seed());
    Ok(cairn_chunker::Chunker::new(params, table)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let s = |l: &str| RepoSpec {
            location: l.into(),
            ..Default::default()
        };
        assert_eq!(s("/x").local_path().unwrap(), PathBuf::from("/x"));
        assert_eq!(s("local:/x").local_path().unwrap(), PathBuf::from("/x"));
        assert_eq!(s("rel/dir").local_path().unwrap(), PathBuf::from("rel/dir"));
        assert!(matches!(s("").local_path(), Err(RepoError::NoLocation)));
        assert!(matches!(
            s("s3://bucket/p").local_path(),
            Err(RepoError::UnsupportedLocation(_))
        ));
        assert!(matches!(
            s("s3://b/p").local_path(),
            Err(RepoError::Location(_))
        ));
        // Nothing listens on port 1: a clear error naming the target.
        let e = s("sftp://u@127.0.0.1:1/r").backend().err().unwrap();
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        let e = s("sftp://u:pw@h/r").backend().err().unwrap();
        assert!(
            !e.to_string().contains("pw@"),
            "the password is not echoed: {e}"
        );
    }

    #[test]
    fn password_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\nignored").unwrap();
        let spec = RepoSpec {
            password_file: Some(f),
            ..Default::default()
        };
        assert!(
            matches!(read_secret(&spec, false).unwrap(), Secret::Password(p) if *p == b"secret")
        );
        let spec = RepoSpec {
            password_command: Some("printf 'abc\\r\\n'".into()),
            ..Default::default()
        };
        assert!(matches!(read_secret(&spec, false).unwrap(), Secret::Password(p) if *p == b"abc"));
        let spec = RepoSpec {
            password_command: Some("exit 3".into()),
            ..Default::default()
        };
        assert!(read_secret(&spec, false).is_err());
        let spec = RepoSpec {
            password_command: Some("exit 3".into()),
            source: true,
            ..Default::default()
        };
        let e = read_secret(&spec, false).err().unwrap().to_string();
        assert!(e.contains("CAIRN_FROM_PASSWORD_COMMAND"), "{e}");
        let k = dir.path().join("key");
        std::fs::write(&k, [9u8; 32]).unwrap();
        let spec = RepoSpec {
            key_file: Some(k),
            ..Default::default()
        };
        assert!(matches!(read_secret(&spec, false).unwrap(), Secret::Key(key) if *key == [9; 32]));
    }
}
