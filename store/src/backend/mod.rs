//! The storage target: one small trait, one layout shared by every backend.
//!
//! A backend stores opaque, immutable objects. It knows nothing of keys or
//! formats; behaviour such as retries, rate limits, fault injection or caching
//! is added by wrapping a backend in another (see DESIGN.md). Every backend
//! runs the same [`conformance`] suite.

pub mod clock;
pub mod conformance;
pub mod crashpoint;
pub mod faults;
pub mod limit;
pub mod local;
pub mod memory;
pub mod overwriting;
pub mod probe;
pub mod retry;
pub mod throttle;

pub use crashpoint::{CrashingBackend, OpRecorder};
pub use faults::{FaultPlan, FaultSpecError, FaultyBackend};
pub use limit::{InFlightCounter, LimitedBackend, TransferLimit};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use overwriting::OverwritingBackend;
pub use probe::{CreateOnly, ProbeError, probe_create_only};
pub use retry::{RetryBackend, RetryPolicy, RetryStats};
pub use throttle::{RateLimiter, ThrottledBackend};

use std::fmt;

/// The kinds of object a repository stores, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The repository's `config` (exactly one object, named `config`).
    Config,
    /// Key files under `keys/`.
    Key,
    /// Packs under `data/<first two hex digits>/`.
    Pack,
    /// Index files under `index/`.
    Index,
    /// Snapshot manifests under `snapshots/`.
    Snapshot,
    /// Locks under `locks/`.
    Lock,
    /// Prune plans under `plans/`.
    Plan,
}

impl ObjectKind {
    /// Every kind, in layout order.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Plan,
    ];

    /// The directory holding objects of this kind ("" for the config).
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::Pack => "data",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
            ObjectKind::Plan => "plans",
        }
    }

    /// A lowercase name for messages.
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key file",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index file",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Lock => "lock",
            ObjectKind::Plan => "prune plan",
        }
    }
}

/// The name of one object: its kind and its name within the kind.
///
/// Names are the 64-hex-digit object id for everything but the config, whose
/// name is `config`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    /// What kind of object.
    pub kind: ObjectKind,
    /// Its name within the kind.
    pub name: String,
}

impl Handle {
    /// The handle of the repository config.
    pub fn config() -> Handle {
        Handle {
            kind: ObjectKind::Config,
            name: "config".into(),
        }
    }

    /// A handle of `kind` named by `id`.
    pub fn new(kind: ObjectKind, id: &crate::Id) -> Handle {
        Handle {
            kind,
            name: id.to_hex(),
        }
    }

    /// The object's path relative to the repository root, with `/`
    /// separators: `config`, `keys/<id>`, `data/<id[..2]>/<id>`, ...
    ///
    /// Names that could escape their directory are refused by
    /// [`Handle::validate`]; backends call it before touching the target.
    pub fn path(&self) -> String {
        match self.kind {
            ObjectKind::Config => "config".to_string(),
            ObjectKind::Pack => {
                let fan = self.name.get(..2).unwrap_or("00");
                format!("data/{fan}/{}", self.name)
            }
            kind => format!("{}/{}", kind.dir(), self.name),
        }
    }

    /// Checks that the name is one a repository can hold: `config` for the
    /// config, otherwise 1..=128 characters of `[0-9a-z_-]` (ids are hex).
    pub fn validate(&self) -> Result<(), BackendError> {
        let ok = match self.kind {
            ObjectKind::Config => self.name == "config",
            _ => {
                !self.name.is_empty()
                    && self.name.len() <= 128
                    && self.name.bytes().all(|b| {
                        b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_' || b == b'-'
                    })
                    && (self.kind != ObjectKind::Pack || self.name.len() >= 2)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(BackendError::InvalidName {
                object: self.to_string(),
            })
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ObjectKind::Config => f.write_str("config"),
            kind => write!(f, "{} {}", kind.label(), self.name),
        }
    }
}

/// What a listing or a stat returns about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object.
    pub handle: Handle,
    /// Its size in bytes.
    pub size: u64,
}

/// Errors of a backend. Each names the object (or the target) at fault.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The object does not exist.
    #[error("{object} not found on the target")]
    NotFound {
        /// The object.
        object: String,
    },
    /// A create-only write found the object already there.
    #[error("{object} already exists on the target (objects are create-only)")]
    AlreadyExists {
        /// The object.
        object: String,
    },
    /// A handle whose name a repository cannot hold.
    #[error("{object}: invalid object name")]
    InvalidName {
        /// The object.
        object: String,
    },
    /// A ranged read past the end of an object.
    #[error("{object}: read of {len} bytes at offset {offset} is past its end ({size} bytes)")]
    OutOfRange {
        /// The object.
        object: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The object's size.
        size: u64,
    },
    /// An I/O error of the target.
    #[error("{op} {object}: {source}")]
    Io {
        /// What was being done ("read", "write", "list", ...).
        op: &'static str,
        /// The object or directory.
        object: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The target has no space left for a write (a full disk or share).
    #[error(
        "{op} {object}: the target has no space left ({source}); free space on it \
         (forget old snapshots, then run cairn prune) or move the repository to a \
         larger target, then run the command again"
    )]
    NoSpace {
        /// What was being done.
        op: &'static str,
        /// The object or file.
        object: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The target cannot do what was asked (such as an atomic replace on an
    /// SFTP server without the `posix-rename@openssh.com` extension);
    /// nothing was changed.
    #[error("{op} {object}: the target cannot do this: {message}")]
    Unsupported {
        /// What was being done.
        op: &'static str,
        /// The object.
        object: String,
        /// What is missing and what to do about it.
        message: String,
    },
    /// Any other failure reported by a target's service.
    #[error("{op} {object}: {message}")]
    Service {
        /// What was being done.
        op: &'static str,
        /// The object.
        object: String,
        /// The service's message.
        message: String,
        /// Whether retrying may succeed.
        transient: bool,
    },
}

impl BackendError {
    /// Whether retrying the same call may succeed (used by the retry wrapper).
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            BackendError::Service { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// Whether the error says the target cannot do what was asked.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, BackendError::Unsupported { .. })
    }
}

/// How many times [`read_listed`] reads an object again that came back
/// shorter than its listed size.
pub const SHORT_REREADS: usize = 5;

/// Reads a whole object whose size a listing (or a stat) gave, reading it
/// again, up to [`SHORT_REREADS`] times, while it comes back short: a
/// transfer cut short without an error must not pass for a damaged key
/// file, lock or config. What comes back last is returned whatever its
/// length; the caller's parsing judges it.
pub fn read_listed(backend: &dyn Backend, info: &ObjectInfo) -> Result<Vec<u8>, BackendError> {
    let mut bytes = backend.read(&info.handle)?;
    for _ in 0..SHORT_REREADS {
        if bytes.len() as u64 >= info.size {
            break;
        }
        bytes = backend.read(&info.handle)?;
    }
    Ok(bytes)
}

/// A storage target holding a repository's objects.
///
/// All methods take `&self` and backends are `Send + Sync`, so the backup
/// pipeline calls them from several worker threads at once.
pub trait Backend: Send + Sync {
    /// A human-readable location (a path or URL) for messages.
    fn location(&self) -> String;

    /// Lists every object of `kind` (in no particular order).
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Reads a whole object.
    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError>;

    /// Reads `len` bytes at `offset`; a range past the end is an error.
    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError>;

    /// A hint that `len` bytes at `offset` will be read soon. A target that
    /// can start fetching them without waiting (a local file: the kernel's
    /// readahead) does; the default does nothing, and failures are ignored
    /// (the read that follows reports them). Wrappers pass it on.
    fn prefetch(&self, _handle: &Handle, _offset: u64, _len: u64) {}

    /// Writes a new object atomically: afterwards it exists whole or not at
    /// all, and it is durable when this returns. Fails with
    /// [`BackendError::AlreadyExists`] if the object exists.
    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError>;

    /// Replaces an **existing** object atomically: readers see the old bytes
    /// or the new ones, never a mix and never nothing, and the new bytes are
    /// durable when this returns. Replacing a missing object is
    /// [`BackendError::NotFound`] (checked before anything is written; a
    /// delete racing the replace may let it create the object). A target
    /// that cannot replace atomically fails with
    /// [`BackendError::Unsupported`] and changes nothing: it never deletes
    /// and writes again, which would leave a window with no object.
    ///
    /// Used only for the `config` (the one object not named by its hash),
    /// when `key rotate --rewrite` seals it again under the new key epoch
    /// (docs/key-rotation.md). Every other object is immutable: write it
    /// with [`Backend::write_new`]. Replacing is idempotent, so a retry of
    /// one whose outcome is unknown is safe.
    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError>;

    /// Deletes an object; deleting a missing object is
    /// [`BackendError::NotFound`].
    fn delete(&self, handle: &Handle) -> Result<(), BackendError>;

    /// The object's size, or [`BackendError::NotFound`].
    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let id = crate::Id([0xab; 32]);
        assert_eq!(Handle::config().path(), "config");
        assert_eq!(
            Handle::new(ObjectKind::Pack, &id).path(),
            format!("data/ab/{id}")
        );
        assert_eq!(
            Handle::new(ObjectKind::Snapshot, &id).path(),
            format!("snapshots/{id}")
        );
    }

    #[test]
    fn listed_objects_cut_short_are_read_again() {
        use super::faults::{FaultPlan, FaultyBackend, Op};
        let memory = std::sync::Arc::new(MemoryBackend::new());
        let h = Handle::new(ObjectKind::Lock, &crate::Id([7; 32]));
        memory.write_new(&h, &[1; 500]).unwrap();
        let info = memory.stat(&h).unwrap();
        let cut = FaultyBackend::new(memory, FaultPlan::new(2).truncate_op(Op::Read, 0.3));
        for _ in 0..20 {
            assert_eq!(read_listed(&cut, &info).unwrap().len(), 500);
        }
        assert!(cut.injected().truncations > 2);
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in ["", "../x", "a/b", "A", ".", "x".repeat(129).as_str()] {
            let h = Handle {
                kind: ObjectKind::Index,
                name: name.into(),
            };
            assert!(h.validate().is_err(), "{name:?}");
        }
        assert!(
            Handle {
                kind: ObjectKind::Config,
                name: "other".into()
            }
            .validate()
            .is_err()
        );
    }
}
