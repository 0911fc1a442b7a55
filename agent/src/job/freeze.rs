//! Freezing file systems around taking the point-in-time view of a backup,
//! and making sure they are always thawed.
//!
//! A frozen file system blocks every writer on the machine: a freeze that
//! outlives its purpose is an outage. So a freeze is held by a [`Frozen`]
//! guard that thaws when dropped, a watchdog thread that thaws when the
//! freeze lasts longer than its timeout, and a process-wide registry that
//! the signal handler (SIGINT, SIGTERM, SIGHUP) and the panic hook use to
//! thaw before the process ends (the release build aborts on panic, so
//! `Drop` alone would not run). Whichever comes first thaws; the others
//! find nothing left to do.
//!
//! The freezing itself is behind the [`Freezer`] trait: [`IoctlFreezer`]
//! uses the kernel's FIFREEZE/FITHAW (what fsfreeze(8) does),
//! [`CommandFreezer`] runs configured commands (for application-level
//! quiescing, or for tests, which cannot freeze real file systems).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::hooks::{self, Hook};

/// Why freezing or thawing failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// The ioctl or the mount point failed.
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        /// `freeze` or `thaw`.
        op: &'static str,
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
        /// Advice, or empty.
        hint: &'static str,
    },
    /// A freeze or thaw command failed.
    #[error(transparent)]
    Command(#[from] hooks::HookError),
}

/// Freezes and thaws one mount point.
pub trait Freezer: Send + Sync {
    /// Freezes the file system mounted at `path`.
    fn freeze(&self, path: &Path) -> Result<(), FreezeError>;
    /// Thaws what [`Freezer::freeze`] froze.
    fn thaw(&self, path: &Path) -> Result<(), FreezeError>;
}

/// `FIFREEZE`, `_IOWR('X', 119, int)` from <linux/fs.h>.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `FITHAW`, `_IOWR('X', 120, int)`.
const FITHAW: libc::c_ulong = 0xC004_5878;

/// The kernel's FIFREEZE/FITHAW ioctls on the mount point (root only; the
/// file system must support freezing: ext4, xfs, btrfs do).
#[derive(Debug, Default, Clone, Copy)]
pub struct IoctlFreezer;

impl IoctlFreezer {
    fn ioctl(op: &'static str, request: libc::c_ulong, path: &Path) -> Result<(), FreezeError> {
        let err = |source: std::io::Error| {
            let hint = match source.raw_os_error() {
                Some(libc::EPERM) => "; freezing needs root (CAP_SYS_ADMIN)",
                Some(libc::EOPNOTSUPP) => "; this file system cannot be frozen",
                Some(libc::EBUSY) if op == "freeze" => "; it is already frozen",
                Some(libc::EINVAL) if op == "thaw" => "; it was not frozen",
                _ => "",
            };
            FreezeError::Io {
                op,
                path: path.to_path_buf(),
                source,
                hint,
            }
        };
        let dir = std::fs::File::open(path).map_err(err)?;
        // SAFETY: `dir` is an open descriptor we own for the whole call;
        // FIFREEZE and FITHAW take an int argument that the kernel ignores,
        // so passing 0 reads and writes no memory of ours.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), request as _, 0) };
        if rc != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Freezer for IoctlFreezer {
    fn freeze(&self, path: &Path) -> Result<(), FreezeError> {
        Self::ioctl("freeze", FIFREEZE, path)
    }

    fn thaw(&self, path: &Path) -> Result<(), FreezeError> {
        Self::ioctl("thaw", FITHAW, path)
    }
}

/// Runs `freeze_command` and `thaw_command` (with CAIRN_FREEZE_PATH set to
/// the mount point) as hooks.
#[derive(Debug, Clone)]
pub struct CommandFreezer {
    /// The freeze command.
    pub freeze: String,
    /// The thaw command.
    pub thaw: String,
    /// Timeout of each command.
    pub timeout: Duration,
    /// Extra environment (the job's).
    pub env: Vec<(String, String)>,
}

impl CommandFreezer {
    fn run(&self, name: &str, command: &str, path: &Path) -> Result<(), FreezeError> {
        let mut env = self.env.clone();
        env.push(("CAIRN_FREEZE_PATH".into(), path.display().to_string()));
        hooks::run(
            &Hook {
                name,
                command,
                timeout: self.timeout,
                env: &env,
            },
            &hooks::log_stderr,
        )?;
        Ok(())
    }
}

impl Freezer for CommandFreezer {
    fn freeze(&self, path: &Path) -> Result<(), FreezeError> {
        self.run("freeze", &self.freeze, path)
    }

    fn thaw(&self, path: &Path) -> Result<(), FreezeError> {
        self.run("thaw", &self.thaw, path)
    }
}

/// Mount points frozen now, with their freezer; thawed at most once.
struct FrozenSet {
    freezer: Arc<dyn Freezer>,
    paths: Mutex<Vec<PathBuf>>,
}

impl FrozenSet {
    /// Thaws everything still frozen, in reverse order; returns the first
    /// error after trying every path.
    fn thaw(&self) -> Result<(), FreezeError> {
        let paths = match self.paths.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let mut first = None;
        for path in paths.iter().rev() {
            if let Err(e) = self.freezer.thaw(path) {
                hooks::log_stderr(&format!("error: {e}"));
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// What the signal handler and the panic hook thaw.
static REGISTRY: Mutex<Option<Arc<FrozenSet>>> = Mutex::new(None);

/// Thaws whatever is frozen now (for the signal handler and the panic
/// hook). Does nothing when nothing is.
pub fn emergency_thaw() {
    // The registry is only held for a pointer swap, never while freezing
    // or thawing: waiting for it is short.
    let set = match REGISTRY.lock() {
        Ok(mut r) => r.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(set) = set {
        let _ = set.thaw();
    }
}

/// Installs a panic hook that thaws before the panic is reported (and the
/// process aborts, in release builds). Call once.
pub fn thaw_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        emergency_thaw();
        previous(info);
    }));
}

/// Frozen file systems; thawed by [`Frozen::thaw`], on drop, or by the
/// watchdog after the timeout.
pub struct Frozen {
    set: Arc<FrozenSet>,
    stop_watchdog: Option<Sender<()>>,
    expired: Arc<AtomicBool>,
}

/// Freezes `paths` in order with `freezer`. If one fails, those already
/// frozen are thawed and the error returned. A watchdog thaws everything
/// if the freeze is still held after `timeout`.
pub fn freeze_all(
    freezer: Arc<dyn Freezer>,
    paths: &[PathBuf],
    timeout: Duration,
) -> Result<Frozen, FreezeError> {
    let set = Arc::new(FrozenSet {
        freezer: freezer.clone(),
        paths: Mutex::new(Vec::new()),
    });
    if let Ok(mut r) = REGISTRY.lock() {
        *r = Some(set.clone());
    }
    let mut frozen = Frozen {
        set: set.clone(),
        stop_watchdog: None,
        expired: Arc::new(AtomicBool::new(false)),
    };
    for path in paths {
        // Registered before the call: a signal during a freeze command
        // still thaws this path.
        if let Ok(mut p) = set.paths.lock() {
            p.push(path.clone());
        }
        if let Err(e) = freezer.freeze(path) {
            if let Ok(mut p) = set.paths.lock() {
                p.pop();
            }
            frozen.release()?;
            return Err(e);
        }
    }
    let (tx, rx) = channel::<()>();
    let expired = frozen.expired.clone();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            expired.store(true, Ordering::SeqCst);
            hooks::log_stderr(&format!(
                "error: the freeze lasted longer than freeze_timeout ({} s): thawing now",
                timeout.as_secs()
            ));
            let _ = set.thaw();
        }
    });
    frozen.stop_watchdog = Some(tx);
    Ok(frozen)
}

impl Frozen {
    /// Whether the watchdog thawed before the owner did.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// Thaws now.
    pub fn thaw(mut self) -> Result<(), FreezeError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), FreezeError> {
        self.stop_watchdog.take();
        if let Ok(mut r) = REGISTRY.lock()
            && r.as_ref().is_some_and(|s| Arc::ptr_eq(s, &self.set))
        {
            *r = None;
        }
        self.set.thaw()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A freezer that records calls and fails freezing the paths it is
    /// told to.
    #[derive(Default)]
    pub struct Recorder {
        pub events: Mutex<Vec<String>>,
        pub fail_freeze: Vec<PathBuf>,
    }

    impl Freezer for Recorder {
        fn freeze(&self, path: &Path) -> Result<(), FreezeError> {
            self.events
                .lock()
                .unwrap()
                .push(format!("freeze {}", path.display()));
            if self.fail_freeze.iter().any(|p| p == path) {
                return Err(FreezeError::Io {
                    op: "freeze",
                    path: path.into(),
                    source: std::io::Error::other("refused"),
                    hint: "",
                });
            }
            Ok(())
        }
        fn thaw(&self, path: &Path) -> Result<(), FreezeError> {
            self.events
                .lock()
                .unwrap()
                .push(format!("thaw {}", path.display()));
            Ok(())
        }
    }

    fn events(r: &Recorder) -> Vec<String> {
        r.events.lock().unwrap().clone()
    }

    // The registry is process-wide: the tests that use it run as one.
    #[test]
    fn every_way_out_thaws_exactly_once() {
        let paths = [PathBuf::from("/a"), PathBuf::from("/b")];
        let long = Duration::from_secs(3600);

        // Explicit thaw, in reverse order; dropping afterwards does nothing.
        let r = Arc::new(Recorder::default());
        let f = freeze_all(r.clone(), &paths, long).unwrap();
        f.thaw().unwrap();
        assert_eq!(events(&r), ["freeze /a", "freeze /b", "thaw /b", "thaw /a"]);

        // Dropped (an error returned with `?`, a panic unwinding).
        let r = Arc::new(Recorder::default());
        drop(freeze_all(r.clone(), &paths, long).unwrap());
        assert_eq!(events(&r), ["freeze /a", "freeze /b", "thaw /b", "thaw /a"]);

        // A failed freeze thaws what was frozen before it.
        let r = Arc::new(Recorder {
            fail_freeze: vec![PathBuf::from("/b")],
            ..Recorder::default()
        });
        assert!(freeze_all(r.clone(), &paths, long).is_err());
        assert_eq!(events(&r), ["freeze /a", "freeze /b", "thaw /a"]);

        // The signal handler's and panic hook's way; the guard finds
        // nothing left.
        let r = Arc::new(Recorder::default());
        let f = freeze_all(r.clone(), &paths, long).unwrap();
        emergency_thaw();
        assert_eq!(events(&r), ["freeze /a", "freeze /b", "thaw /b", "thaw /a"]);
        f.thaw().unwrap();
        assert_eq!(events(&r).len(), 4);

        // The watchdog, with a zero timeout.
        let r = Arc::new(Recorder::default());
        let f = freeze_all(r.clone(), &paths, Duration::ZERO).unwrap();
        while !f.expired() {
            std::thread::yield_now();
        }
        // The flag is set before the thaw: wait for the thaw itself.
        while events(&r).len() < 4 {
            std::thread::yield_now();
        }
        f.thaw().unwrap();
        assert_eq!(events(&r), ["freeze /a", "freeze /b", "thaw /b", "thaw /a"]);
    }

    #[test]
    fn ioctl_errors_name_the_path() {
        let e = IoctlFreezer
            .freeze(Path::new("/nonexistent/cairn-freeze-test"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot freeze /nonexistent/cairn-freeze-test: "),
            "{e}"
        );
    }
}
