//! Typed errors of the repository library.
//!
//! Every variant names the object at fault and, where a user can act, what to
//! do; the binary adds its own context on top and maps variants to exit codes.

use crate::backend::BackendError;
use crate::id::Id;

/// Everything that can go wrong in cairn-store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No key file of the repository opens with the given password or key file.
    #[error(
        "wrong password or key file: none of the {key_files} key file(s) in the repository opens with it"
    )]
    WrongPassword {
        /// How many key files were tried.
        key_files: usize,
    },
    /// The target holds no cairn repository (no `config`, or not cairn's).
    #[error(
        "{location} is not a cairn repository ({reason}); check the repository path, or run `cairn init` to create one"
    )]
    NotARepository {
        /// The target's location as the user gave it.
        location: String,
        /// What was missing or foreign.
        reason: String,
    },
    /// An object was written by a newer format version than this build reads.
    #[error(
        "{object} uses format version {found}, but this cairn reads up to version {supported}; upgrade cairn"
    )]
    UnsupportedVersion {
        /// The object whose version is unsupported.
        object: String,
        /// The version found.
        found: u32,
        /// The newest version this build supports.
        supported: u32,
    },
    /// An object read from the target failed authentication or does not parse.
    #[error("corrupt {object}: {reason}")]
    Corrupt {
        /// The object (kind and name), or the blob and its pack.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob the caller asked for is in no index file.
    #[error("blob {0} is not in the repository index")]
    BlobNotFound(Id),
    /// A snapshot id or prefix matched nothing, or more than one snapshot.
    #[error("snapshot {0}")]
    SnapshotNotFound(String),
    /// The target failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The local cache failed; it is disposable, so deleting it is always safe.
    #[error("local cache {path}: {message}; the cache is disposable: delete it and retry")]
    Cache {
        /// The cache file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An argument from the caller is out of range.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Another `init` of the same location finished its config first, or
    /// (on a target that ignores create-only writes) replaced this one's.
    #[error(
        "another cairn init created a repository at {location} at the same time as this one, and its config is the one stored; this init removed its key file and created nothing. Use that repository with its own password, or choose another location"
    )]
    InitRaced {
        /// The target's location.
        location: String,
    },
    /// An operation that needs the repository alone finds it locked by another.
    #[error("repository is locked {0}")]
    Locked(String),
    /// A key id or prefix matched no key file, or more than one.
    #[error("key {0}")]
    KeyNotFound(String),
    /// Removing the key file that opened the repository was asked for.
    #[error(
        "key {0} is the key this command opened the repository with; open the repository with another key to remove it, or use `cairn key passwd` to replace it"
    )]
    KeyInUse(Id),
    /// A key rotation would have to rewrite key files the credential given
    /// does not open (each key file wraps the key set under its own
    /// password), so it was refused before anything changed.
    #[error(
        "key rotation rewrites every key file, and the password or key given does not open {0}. Nothing was changed. Rotate with --remove-other-keys to remove them (their holders lose access; add keys for them again with `cairn key add`), or remove them first with `cairn key remove ID` and add them again after the rotation"
    )]
    OtherKeys(String),
    /// Removing the only usable key file was asked for.
    #[error(
        "key {0} is the repository's last usable key; removing it would make the repository unreadable. Add another key first (`cairn key add`)"
    )]
    LastKey(Id),
}

impl Error {
    /// Whether the error is about the object read (damaged, missing, of
    /// an unknown version) rather than about the target, the cache or the
    /// caller: what a command reports and goes on past.
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Corrupt { .. } | Error::BlobNotFound(_) | Error::UnsupportedVersion { .. } => {
                true
            }
            Error::Backend(b) => matches!(
                b,
                BackendError::NotFound { .. } | BackendError::OutOfRange { .. }
            ),
            _ => false,
        }
    }

    /// Shorthand for a [`Error::Corrupt`] error.
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of cairn-store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
