//! cairn-store: the encrypted, deduplicated repository.
//!
//! A repository is a set of immutable objects on a target (a directory,
//! later SFTP or object storage): a `config`, key files, packs of encrypted
//! blobs, index files and snapshot manifests. This crate owns their format
//! (docs/format.md §2), the crypto, the write order that keeps a repository
//! valid across crashes, the backends and the local cache. It knows nothing
//! of files on the guest, terminals or command lines.

pub mod backend;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod dedup;
pub mod error;
pub mod group;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod object;
pub mod pack;
pub mod patch;
pub mod plan;
pub mod random;
pub mod repository;
pub mod snapshot;
pub mod wire;

pub use backend::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
pub use cache::Cache;
pub use config::{ChunkSizes, ChunkerConfig, Config};
pub use crypto::MasterKeys;
pub use dedup::BlobSet;
pub use error::{Error, Result};
pub use id::Id;
pub use index::{BlobEntry, BlobType, Compression, IndexFile, PackBlobs};
pub use keyfile::{Credential, KdfParams, KeyFileInfo, KeyListing};
pub use plan::{LockHolder, PrunePlan};
pub use random::{OsRandom, RandomSource, SeededRandom};
pub use repository::{
    ConfigReseal, IndexRebuild, InitOptions, KeyRewrap, OpenOptions, PackDamage, PatchBase,
    Repository, SnapshotListing, StoredBlob,
};
pub use snapshot::{Snapshot, SnapshotKind, SnapshotStats};
