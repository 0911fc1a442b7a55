//! cairn's SFTP storage target: a [`cairn_store::Backend`] that keeps the
//! repository in a directory of an SSH server, with the same layout as a
//! local repository.
//!
//! Built on libssh2 (the `ssh2` crate): its API is blocking like the
//! `Backend` trait, it is mature and widely deployed (cargo and git2 use it),
//! and it supports ed25519, ECDSA and RSA (SHA-2) keys, ssh-agent,
//! known_hosts checking and the `fsync@openssh.com` extension. See
//! docs/targets.md for the comparison with the alternatives.
//!
//! ```no_run
//! use cairn_sftp::{SftpBackend, SftpLocation, SftpOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let loc = SftpLocation::parse("sftp://backup@nas.example:2222/srv/cairn")?;
//! let backend = SftpBackend::connect(&loc, &SftpOptions::from_env()?)?;
//! # let _ = backend; Ok(()) }
//! ```

mod backend;
mod connect;
mod location;
mod options;
mod posix_rename;

pub use backend::SftpBackend;
/// Entry points of the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::posix_rename::rename_against_replies;
}
pub use location::{InvalidLocation, SftpLocation};
pub use options::{
    ENV_ACCEPT_NEW_HOST_KEY, ENV_CONNECTIONS, ENV_KEY_FILE, ENV_KNOWN_HOSTS, ENV_NO_AGENT,
    ENV_PASSPHRASE_FILE, ENV_TIMEOUT_SECS, InvalidOption, MAX_CONNECTIONS, SftpOptions,
};
