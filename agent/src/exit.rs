//! Process exit codes and the outcome of a command.
//!
//! The codes are a contract with the scripts and schedulers that run cairn
//! (cron, systemd timers, monitoring): they are documented in the README and
//! in `cairn --help`, and never change meaning.

use std::fmt;

/// Everything went well.
pub const OK: u8 = 0;
/// The command failed; the message on standard error says why.
pub const FAILURE: u8 = 1;
/// The command line was wrong (unknown option, bad value, invalid sizes).
pub const USAGE: u8 = 2;
/// The command finished, but some inputs were skipped with a warning (for
/// example an unreadable file inside a directory); the warnings say which.
pub const WARNINGS: u8 = 3;
/// `cairn check` found damage: missing or corrupt objects; the report names
/// the snapshots affected.
pub const DAMAGE: u8 = 4;

/// There is no repository at the given location (or it is not cairn's).
pub const NO_REPOSITORY: u8 = 10;
/// No key file of the repository opens with the password or key given.
pub const WRONG_PASSWORD: u8 = 11;
/// Another process holds a conflicting repository lock.
pub const LOCKED: u8 = 12;
/// `cairn run`: the job is already running (its previous run holds the
/// job's lock); this run did nothing.
pub const JOB_RUNNING: u8 = 13;

/// The text of `cairn --help` that documents the exit codes.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  failure (the message on standard error names what went wrong)
  2  usage error (bad option or value)
  3  finished with warnings (some inputs were skipped; see the warnings)
  4  check found damage in the repository (the report names the snapshots affected)
  10  no repository at the given location
  11  wrong password or key
  12  the repository is locked by another operation
  13  the job is already running (cairn run); this run did nothing";

/// The exit code for a failed command: specific codes for the failures
/// scripts must tell apart, [`FAILURE`] for the rest.
pub fn code_for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(crate::job::lock::LockError::Running { .. }) = cause.downcast_ref() {
            return JOB_RUNNING;
        }
        if let Some(e) = cause.downcast_ref::<cairn_store::Error>() {
            match e {
                cairn_store::Error::NotARepository { .. } => return NO_REPOSITORY,
                cairn_store::Error::WrongPassword { .. } => return WRONG_PASSWORD,
                cairn_store::Error::Locked(_) => return LOCKED,
                _ => {}
            }
        }
        match cause.downcast_ref::<crate::repo::RepoError>() {
            Some(crate::repo::RepoError::Backend { source, .. }) if source.is_not_found() => {
                return NO_REPOSITORY;
            }
            // A bucket or container that does not exist holds no repository.
            Some(crate::repo::RepoError::Target(cairn_objstore::OpenError::MissingContainer {
                ..
            })) => return NO_REPOSITORY,
            _ => {}
        }
    }
    FAILURE
}

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was processed.
    Clean,
    /// The command finished, but this many warnings were reported.
    Warnings(usize),
    /// A check finished and found this many problems.
    Damage(usize),
}

impl Outcome {
    /// The outcome of a run that reported `warnings` warnings.
    pub fn from_warnings(warnings: usize) -> Self {
        if warnings == 0 {
            Self::Clean
        } else {
            Self::Warnings(warnings)
        }
    }

    /// The process exit code for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => OK,
            Self::Warnings(_) => WARNINGS,
            Self::Damage(_) => DAMAGE,
        }
    }
}

/// An error in what the user asked for, found after argument parsing (for
/// example chunk sizes that do not fit together). The binary reports it like
/// a command-line error and exits with [`USAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The message of an error and its causes, `a: b: c`, leaving out a cause
/// whose text the message already holds (many errors print their source in
/// their own text, and `{:#}` would print it twice).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let inner = cairn_store::BackendError::Io {
            op: "read",
            object: "pack 1".into(),
            source: io,
        };
        let err = anyhow::Error::new(inner).context("backup failed");
        assert_eq!(
            error_message(&err),
            "backup failed: read pack 1: disk on fire"
        );
    }

    #[test]
    fn outcome_codes() {
        assert_eq!(Outcome::from_warnings(0), Outcome::Clean);
        assert_eq!(Outcome::from_warnings(0).code(), OK);
        assert_eq!(Outcome::from_warnings(2), Outcome::Warnings(2));
        assert_eq!(Outcome::from_warnings(2).code(), WARNINGS);
        assert_eq!(Outcome::Damage(1).code(), DAMAGE);
    }

    #[test]
    fn help_lists_every_code() {
        for code in [
            OK,
            FAILURE,
            USAGE,
            WARNINGS,
            DAMAGE,
            NO_REPOSITORY,
            WRONG_PASSWORD,
            LOCKED,
            JOB_RUNNING,
        ] {
            assert!(HELP.contains(&format!("  {code}  ")), "{code} missing");
        }
    }
}
