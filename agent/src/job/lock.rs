//! The local lock that keeps a job from overlapping itself.
//!
//! A slow target or a large change can make a run outlast the interval of
//! its timer; a second run of the same job would then compete for the same
//! bandwidth and CPU and prove nothing. Each run takes an exclusive `flock`
//! on `<runtime dir>/<job>.lock` without waiting; the kernel drops it when
//! the process ends, however it ends, so a crashed run never leaves a stale
//! lock. The holder writes its process id into the file for the message
//! the refused run prints.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::files::private_dir;

/// A held job lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a job lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run of the job holds it.
    #[error(
        "job {job:?} is already running{holder} (lock {path}); this run is skipped. If it runs too long, lower its frequency or look at its progress"
    )]
    Running {
        /// The job.
        job: String,
        /// The lock file.
        path: PathBuf,
        /// ` (process N)` when the holder wrote its id.
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error(
        "cannot lock {path}: {source}; check that the directory exists and is writable, or set runtime_dir"
    )]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the lock of `job` in `dir` (created 0700 if missing), or fails
/// with [`LockError::Running`] at once if another process holds it.
pub fn acquire(dir: &Path, job: &str) -> Result<JobLock, LockError> {
    let path = dir.join(format!("{job}.lock"));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    private_dir(dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut pid = String::new();
            // The holder's id is for the message only: unreadable is fine.
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Running {
                job: job.to_string(),
                path,
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (process {pid})")
                },
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(JobLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run");
        let first = acquire(&runtime, "web").unwrap();
        assert_eq!(first.path(), runtime.join("web.lock"));
        // flock locks belong to the open file description: a second open
        // in the same process conflicts like another process would.
        let e = acquire(&runtime, "web").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, LockError::Running { .. }), "{text}");
        assert!(
            text.contains(&format!("(process {})", std::process::id())),
            "{text}"
        );
        // Other jobs are independent.
        let _other = acquire(&runtime, "db").unwrap();
        drop(first);
        acquire(&runtime, "web").unwrap();
    }
}
