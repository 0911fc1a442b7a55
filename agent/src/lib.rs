//! The cairn agent as a library: everything the `cairn` binary does, minus
//! argument parsing and printing.
//!
//! The binary (`src/main.rs` and one small file per command under `src/cmd/`)
//! only turns command-line options into calls to this library, so that the
//! same code paths are reachable from tests and, later, from a scheduler. The
//! agent is where the crates are wired together: it reads sources (files,
//! block devices, disk images), cuts them with `cairn-chunker`, and (from the
//! next issues on) hands chunks to `cairn-store`.
//!
//! Today the library holds the `cairn chunk` statistic ([`analyze`]) and the
//! pieces it is built from, which later backups reuse: the input walker
//! ([`walk`]), the source readers ([`source`]) and size parsing ([`units`]).

pub mod analyze;
pub mod backup;
pub mod benchmark;
pub mod check;
pub mod chunklist;
pub mod copy;
pub mod dir_ahead;
pub mod direct_io;
pub mod disk;
pub mod disk_cut;
pub mod disk_patch;
pub mod disk_read;
pub mod disk_restore;
pub mod exit;
pub mod export;
pub mod fetch;
pub mod file_content;
pub mod files_backup;
pub mod files_restore;
pub mod forget;
pub mod job;
pub mod locality;
pub mod log;
pub mod parallel;
pub mod progress;
pub mod prune;
pub mod reach;
pub mod rekey;
pub mod repair;
pub mod repo;
pub mod report;
pub mod retention;
pub mod select;
pub mod source;
pub mod stats;
pub mod synth;
pub mod target_opts;
pub mod test_hooks;
pub mod tree;
pub mod tree_cursor;
pub mod treediff;
pub mod units;
pub mod walk;
