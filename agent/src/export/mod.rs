//! `cairn export`: a snapshot as one self-contained stream, written in
//! order to any byte stream (a file, a pipe, standard output), for handing
//! a full to another system: a disk snapshot as a raw image
//! ([`export_disk`]), a file snapshot as a tar archive ([`export_tar`]).
//!
//! Unlike a restore, which writes blobs wherever they go as packs arrive,
//! an export must write front to back. Both exporters plan a window of data
//! at a time (at most [`WINDOW_BYTES`]), fetch the window's blobs pack by
//! pack on worker threads (coalesced ranged reads, each blob verified
//! against its id), then write the window in order. Memory stays bounded by
//! the window, whatever the snapshot's size.

mod disk;
mod feed;
mod tar;

pub use disk::export_disk;
pub use tar::{TarSummary, export_tar};

use crate::chunklist::ListError;
use crate::tree::TreeError;

/// Data (not zeros) planned per window.
pub const WINDOW_BYTES: u64 = 64 << 20;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading an extent list failed.
    #[error(transparent)]
    List(#[from] ListError),
    /// Reading a file tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Loading a blob failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// The snapshot's data does not fit together.
    #[error("the snapshot is damaged: {0}; run `cairn check`")]
    Damaged(String),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}
