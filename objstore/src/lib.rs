//! cairn's object-storage targets: S3-compatible storage and Azure Blob
//! Storage behind the store's synchronous [`cairn_store::Backend`] trait, and
//! the parser of repository URLs.
//!
//! Why this shape:
//! - The HTTP work (SigV4 and shared-key signing, conditional writes,
//!   multipart uploads, ranged reads, retries with backoff and jitter) is
//!   Apache Arrow's `object_store`, pinned exactly: hand-written request
//!   signing is a security liability, and `object_store` is small, steady and
//!   fits the workspace's minimum Rust version (docs/targets.md compares it
//!   with `opendal`).
//! - The core of cairn is synchronous (worker threads, see DESIGN.md), so
//!   each backend owns a small tokio runtime and blocks on it: async stays at
//!   the network edge, inside this crate.
//! - Credentials come only from the environment and the standard credential
//!   files ([`config`]), never from URLs or the command line.

pub mod backend;
pub mod config;
pub mod location;
pub mod testing;

pub use backend::ObjectBackend;
pub use config::{AzureConfig, Options, S3Config};
pub use location::{Location, LocationError, ObjectLocation, SftpLocation};

/// A configuration that cannot work: a missing or malformed setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is missing; the message says which to set.
    #[error("{0}")]
    Missing(String),
    /// A setting has a value that cannot work.
    #[error("{what}: {message}")]
    Invalid {
        /// The variable or file.
        what: String,
        /// What is wrong, and what is expected.
        message: String,
    },
}

/// Why a target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The settings from the environment do not work.
    // The inner errors are part of the message, not `source()`: the binary
    // prints the whole chain, which would say everything twice.
    #[error("{location}: {error}")]
    Config {
        /// The repository location.
        location: String,
        /// What is wrong.
        error: ConfigError,
    },
    /// The bucket or container does not exist.
    #[error(
        "{location}: the {what} {name:?} does not exist{at}; create it first (cairn creates repositories, not {what}s)"
    )]
    MissingContainer {
        /// The repository location.
        location: String,
        /// "bucket" or "container".
        what: &'static str,
        /// Its name.
        name: String,
        /// " at <endpoint>" when there is a custom endpoint, else "".
        at: String,
    },
    /// The target answered, but not as hoped (access denied, unreachable,
    /// ...): the message names the service's reason.
    #[error("{location}: {error}")]
    Target {
        /// The repository location.
        location: String,
        /// The backend error.
        error: cairn_store::BackendError,
    },
    /// The HTTP client or runtime could not be set up.
    #[error("{location}: cannot set up the client: {message}")]
    Client {
        /// The repository location.
        location: String,
        /// Why.
        message: String,
    },
}
