//! Opening a repository from what the user gave: a location, and a password
//! or key from the environment, a file, a command or the terminal.
//!
//! Secrets never come from the command line (they would show in `ps` and
//! shell history): `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD_COMMAND`,
//! `CAIRN_KEY_FILE` (a raw 32-byte key), or a prompt on the terminal. They
//! are wiped from memory after use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_store::backend::LocalBackend;
use cairn_store::keyfile::parse_raw_key;
use cairn_store::{Backend, Credential, OpenOptions, Repository};
use thiserror::Error;
use zeroize::Zeroizing;

/// Where the repository is and how to unlock it.
#[derive(Debug, Clone, Default)]
pub struct RepoSpec {
    /// The location: `/path` or `local:/path` (remote targets come later).
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
    /// No way to get a password.
    #[error(
        "no password source: set CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND or CAIRN_KEY_FILE, or run on a terminal to be asked"
    )]
    NoPassword,
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
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        RepoSpec {
            location: location.unwrap_or_default(),
            password_file: var("CAIRN_PASSWORD_FILE").map(PathBuf::from),
            password_command: var("CAIRN_PASSWORD_COMMAND").and_then(|v| v.into_string().ok()),
            key_file: var("CAIRN_KEY_FILE").map(PathBuf::from),
            cache_dir: var("CAIRN_CACHE_DIR").map(PathBuf::from),
            no_cache: false,
        }
    }

    /// The directory a local location names.
    pub fn local_path(&self) -> Result<PathBuf, RepoError> {
        let loc = self.location.trim();
        if loc.is_empty() {
            return Err(RepoError::NoLocation);
        }
        let path = loc.strip_prefix("local:").unwrap_or(loc);
        if path.contains("://")
            || !(path.starts_with('/') || path.starts_with('.') || !path.contains(':'))
        {
            return Err(RepoError::UnsupportedLocation(loc.to_string()));
        }
        Ok(PathBuf::from(path))
    }

    /// The backend of an existing repository.
    pub fn backend(&self) -> Result<Arc<dyn Backend>, RepoError> {
        let path = self.local_path()?;
        let b = LocalBackend::open(&path).map_err(|source| RepoError::Backend {
            location: path.display().to_string(),
            source,
        })?;
        Ok(Arc::new(b))
    }

    /// The backend for a new repository (creates the directory).
    pub fn create_backend(&self) -> Result<Arc<dyn Backend>, RepoError> {
        let path = self.local_path()?;
        let b = LocalBackend::create(&path).map_err(|source| RepoError::Backend {
            location: path.display().to_string(),
            source,
        })?;
        Ok(Arc::new(b))
    }

    /// Open options: the cache directory and OS randomness.
    pub fn open_options(&self) -> OpenOptions {
        let dir = if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(cairn_store::Cache::default_dir)
        };
        OpenOptions::new(dir)
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
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| secret_err("CAIRN_PASSWORD_COMMAND", e))?;
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(secret_err(
                "CAIRN_PASSWORD_COMMAND",
                format!("exited with {}", out.status),
            ));
        }
        return non_empty(first_line(stdout), "CAIRN_PASSWORD_COMMAND's output");
    }
    prompt("repository password: ", confirm)
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
        return prompt("new password: ", true);
    }
    read_secret(&spec, true)
}

fn non_empty(p: Zeroizing<Vec<u8>>, what: &str) -> Result<Secret, RepoError> {
    if p.is_empty() {
        return Err(secret_err(what, "the password is empty"));
    }
    Ok(Secret::Password(p))
}

fn prompt(label: &str, confirm: bool) -> Result<Secret, RepoError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(RepoError::NoPassword);
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
            s("s3://b/p").local_path(),
            Err(RepoError::UnsupportedLocation(_))
        ));
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
        let k = dir.path().join("key");
        std::fs::write(&k, [9u8; 32]).unwrap();
        let spec = RepoSpec {
            key_file: Some(k),
            ..Default::default()
        };
        assert!(matches!(read_secret(&spec, false).unwrap(), Secret::Key(key) if *key == [9; 32]));
    }
}
