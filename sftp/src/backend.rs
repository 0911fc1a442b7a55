//! [`SftpBackend`]: the repository layout of `LocalBackend`, on a server
//! reached over SFTP.
//!
//! **Create-only writes.** [`Backend::write_new`] uploads to a uniquely
//! named temp file (`.tmp-<128 random bits>`) in the object's directory,
//! fsyncs it where the server offers `fsync@openssh.com`, closes it, then
//! gives it its final name with a plain SFTP `RENAME` (never
//! `posix-rename@openssh.com`, which replaces an existing name). OpenSSH's
//! sftp-server performs a plain rename of a regular file as `link(2)` of
//! the new name followed by `unlink(2)` of the old one, so it fails if the
//! name exists and exactly one of several racing writers wins: the same
//! create-only step `LocalBackend` takes. A server whose filesystem has no
//! hard links falls back to a check-then-rename that is not race-free;
//! repository objects are content-addressed, so a duplicate there is
//! harmless, but locks must not rely on it (see docs/targets.md). A
//! crashed upload leaves a temp file, never a partial object; listings
//! ignore temp files and [`SftpBackend::remove_stale_temp_files`] deletes
//! old ones. SFTP cannot fsync a directory, so the durability of the new
//! name is the server filesystem's (journaled filesystems commit it
//! within seconds).
//!
//! **Replacing the config.** [`Backend::replace`] uploads a temp file the
//! same way, then renames it over the object with the
//! `posix-rename@openssh.com` extension (`rename(2)` on the server: a
//! reader opens the old file or the new one, never neither), spoken on a
//! channel of its own ([`crate::posix_rename`]). A server without the
//! extension gets [`BackendError::Unsupported`] and the temp file is
//! removed: there is no fallback that deletes the old object first, since
//! the target would hold no config in between.
//!
//! **Concurrency.** A libssh2 session serves one call at a time, so the
//! backend keeps a pool of up to [`SftpOptions::connections`] connections,
//! opened on demand; a caller takes one, uses it, and gives it back. A
//! connection that fails at the SSH level (a dropped socket, a timeout) is
//! discarded, and the call is retried once on a fresh connection where that
//! is safe (see [`SftpBackend::write_new`] for how a write whose rename may
//! or may not have happened is resolved). Every libssh2 call has the
//! [`SftpOptions::timeout`], so a dead server gives an error, not a hang.

use crate::connect::{self, Conn};
use crate::location::SftpLocation;
use crate::options::SftpOptions;
use crate::posix_rename::{self, RenameError};
use cairn_store::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, RenameFlags};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The prefix of temp files; it can never start a valid object name.
const TEMP_PREFIX: &str = ".tmp-";
/// Mode of every file the backend creates.
const FILE_MODE: i32 = 0o600;
/// Mode of every directory the backend creates.
const DIR_MODE: i32 = 0o700;

/// SFTP status codes (`SSH_FX_*`) this backend tells apart.
mod fx {
    pub(super) const NO_SUCH_FILE: i32 = 2;
    pub(super) const PERMISSION_DENIED: i32 = 3;
    pub(super) const OP_UNSUPPORTED: i32 = 8;
    pub(super) const NO_SUCH_PATH: i32 = 10;
    pub(super) const FILE_ALREADY_EXISTS: i32 = 11;
    pub(super) const WRITE_PROTECT: i32 = 12;
    pub(super) const NO_SPACE_ON_FILESYSTEM: i32 = 14;
    pub(super) const QUOTA_EXCEEDED: i32 = 15;
}

/// A repository stored in a directory of an SFTP server.
pub struct SftpBackend {
    /// Where the repository is.
    loc: SftpLocation,
    /// The login name.
    user: String,
    /// How to connect.
    opts: SftpOptions,
    /// Connections not in use, and how many are open.
    pool: Mutex<PoolState>,
    /// Signalled when a connection is returned or closed.
    returned: Condvar,
}

/// The pool's bookkeeping.
struct PoolState {
    /// Open connections not in use.
    idle: Vec<Conn>,
    /// Open connections, in use or idle.
    open: usize,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("location", &self.loc.to_string())
            .field("connections", &self.opts.connections)
            .finish_non_exhaustive()
    }
}

/// A failure inside one call on one connection.
enum Fail {
    /// A libssh2 error: an SFTP status from the server, or (a session
    /// error) a broken connection.
    Ssh(ssh2::Error),
    /// An error of a file read or write, whose libssh2 code is lost.
    Io(std::io::Error),
    /// A final answer that needs no mapping.
    Done(BackendError),
}

impl From<ssh2::Error> for Fail {
    fn from(e: ssh2::Error) -> Self {
        Fail::Ssh(e)
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        Fail::Done(e)
    }
}

/// Whether a call may be repeated on a fresh connection after its
/// connection broke.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating has the same effect (reads, stats, listings).
    Safe,
    /// Not automatically.
    No,
}

impl SftpBackend {
    /// Connects to an existing repository directory (NotFound if it is
    /// missing), opening the first connection at once so that a wrong
    /// address, host key or key is reported here.
    pub fn connect(loc: &SftpLocation, opts: &SftpOptions) -> Result<SftpBackend, BackendError> {
        let backend = SftpBackend::new(loc, opts)?;
        let location = backend.loc.to_string();
        backend.run("open", &location, Retry::Safe, |conn| {
            let stat = conn.sftp.stat(Path::new(&backend.loc.path))?;
            if stat.is_dir() {
                Ok(())
            } else {
                Err(Fail::Done(backend.not_a_directory("open")))
            }
        })?;
        Ok(backend)
    }

    /// Creates the repository directory (and its parents) and every layout
    /// directory: `keys`, `data/00`..`data/ff`, `index`, `snapshots` and
    /// `locks`, like `LocalBackend::create`. Directories that already exist
    /// are kept as they are (the repository refuses to initialise over an
    /// existing config).
    pub fn create(loc: &SftpLocation, opts: &SftpOptions) -> Result<SftpBackend, BackendError> {
        let backend = SftpBackend::new(loc, opts)?;
        let root = backend.loc.path.clone();
        let mut dirs = Vec::new();
        // The parents, outermost first ("/a", "/a/b", ... or "a", "a/b").
        let absolute = root.starts_with('/');
        let mut prefix = String::new();
        for part in root.split('/').filter(|p| !p.is_empty()) {
            if absolute || !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.push(prefix.clone());
        }
        for kind in ObjectKind::ALL {
            if kind != ObjectKind::Config {
                dirs.push(format!("{root}/{}", kind.dir()));
            }
        }
        let mkdir = |dir: &String| {
            backend.run("create directory", dir, Retry::Safe, |conn| {
                mkdir_if_missing(&conn.sftp, Path::new(dir))
            })
        };
        // Parents before children; the 256 fan-out directories in parallel.
        for dir in &dirs {
            mkdir(dir)?;
        }
        let fan_out: Vec<String> = (0..=255u8)
            .map(|b| format!("{root}/data/{}", hex::encode([b])))
            .collect();
        backend.parallel(&fan_out, mkdir)?;
        Ok(backend)
    }

    /// The backend without any connection yet.
    fn new(loc: &SftpLocation, opts: &SftpOptions) -> Result<SftpBackend, BackendError> {
        let user = match &loc.user {
            Some(user) => user.clone(),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| BackendError::Service {
                    op: "connect",
                    object: loc.to_string(),
                    message: "no user name: put one in the URL (sftp://user@host/path)".into(),
                    transient: false,
                })?,
        };
        let mut opts = opts.clone();
        opts.connections = opts.connections.clamp(1, crate::options::MAX_CONNECTIONS);
        Ok(SftpBackend {
            loc: loc.clone(),
            user,
            opts,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        })
    }

    /// The repository's location.
    pub fn sftp_location(&self) -> &SftpLocation {
        &self.loc
    }

    /// Deletes temp files (`.tmp-*`) left by crashed uploads that were last
    /// modified more than `older_than` ago by the server's clock, and
    /// returns how many it deleted.
    ///
    /// An upload in progress keeps touching its temp file, so choose
    /// `older_than` well above the time one upload can stall (an hour is
    /// safe). Removing the temp name of a write that did complete is
    /// harmless: the object keeps its own name.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, BackendError> {
        let now = self.server_now()?;
        let cutoff = now.saturating_sub(older_than.as_secs());
        let mut dirs = vec![self.loc.path.clone()];
        for kind in ObjectKind::ALL {
            match kind {
                ObjectKind::Config => {}
                ObjectKind::Pack => dirs.extend(self.fan_out_dirs()?),
                kind => dirs.push(format!("{}/{}", self.loc.path, kind.dir())),
            }
        }
        let mut removed = 0;
        for dir in dirs {
            let entries = self.run("list", &dir, Retry::Safe, |conn| {
                read_dir_or_empty(&conn.sftp, &dir)
            })?;
            for (name, stat) in entries {
                let stale = stat.mtime.is_some_and(|m| m < cutoff);
                if name.starts_with(TEMP_PREFIX) && stale && stat.is_file() {
                    let path = format!("{dir}/{name}");
                    let gone =
                        self.run("remove temp file", &path, Retry::Safe, |conn| {
                            match conn.sftp.unlink(Path::new(&path)) {
                                Ok(()) => Ok(true),
                                Err(e) if is_not_found(&e) => Ok(false),
                                Err(e) => Err(e.into()),
                            }
                        })?;
                    removed += usize::from(gone);
                }
            }
        }
        Ok(removed)
    }

    /// The server's clock in seconds since the epoch, read from the mtime
    /// of a temp file created for the purpose (so client clock skew does
    /// not make fresh uploads look stale).
    fn server_now(&self) -> Result<u64, BackendError> {
        let path = format!("{}/{}", self.loc.path, temp_name()?);
        let mtime = self.run("read the server's clock", &path, Retry::No, |conn| {
            let file = conn.sftp.open_mode(
                Path::new(&path),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
                FILE_MODE,
                OpenType::File,
            )?;
            drop(file);
            let stat = conn.sftp.stat(Path::new(&path));
            let _ = conn.sftp.unlink(Path::new(&path));
            Ok(stat?.mtime)
        })?;
        Ok(mtime.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }))
    }

    /// The paths of the subdirectories of `data/` with two-character names.
    fn fan_out_dirs(&self) -> Result<Vec<String>, BackendError> {
        let data = format!("{}/{}", self.loc.path, ObjectKind::Pack.dir());
        let entries = self.run("list", &data, Retry::Safe, |conn| {
            read_dir_or_empty(&conn.sftp, &data)
        })?;
        Ok(entries
            .into_iter()
            .filter(|(name, stat)| name.len() == 2 && stat.is_dir())
            .map(|(name, _)| format!("{data}/{name}"))
            .collect())
    }

    /// Where `handle` lives on the server (after [`Handle::validate`]).
    fn path_of(&self, handle: &Handle) -> String {
        format!("{}/{}", self.loc.path, handle.path())
    }

    /// Lists the objects of `kind` in `dir`, keeping only regular files
    /// whose name is valid and whose path is where that handle lives.
    fn list_dir(&self, kind: ObjectKind, dir: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let entries = self.run("list", dir, Retry::Safe, |conn| {
            read_dir_or_empty(&conn.sftp, dir)
        })?;
        let mut out = Vec::new();
        for (name, stat) in entries {
            let handle = Handle { kind, name };
            if handle.validate().is_err()
                || self.path_of(&handle) != format!("{dir}/{}", handle.name)
                || !stat.is_file()
            {
                continue;
            }
            let size = match stat.size {
                Some(size) => size,
                None => match self.stat(&handle) {
                    Ok(info) => info.size,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                },
            };
            out.push(ObjectInfo { handle, size });
        }
        Ok(out)
    }

    /// NotFound for the repository directory if it is missing, so a wrong
    /// path is not mistaken for an empty repository.
    fn check_root(&self) -> Result<(), BackendError> {
        let root = &self.loc.path;
        let stat = self.run("list", &self.loc.to_string(), Retry::Safe, |conn| {
            Ok(conn.sftp.stat(Path::new(root))?)
        })?;
        if stat.is_dir() {
            Ok(())
        } else {
            Err(self.not_a_directory("list"))
        }
    }

    /// The error for a repository path that is not a directory.
    fn not_a_directory(&self, op: &'static str) -> BackendError {
        BackendError::Io {
            op,
            object: self.loc.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        }
    }

    /// Uploads `data` to a fresh temp file in the object's directory,
    /// creating that directory if a fan-out directory is missing; returns
    /// the temp path.
    fn upload_temp(&self, conn: &Conn, dest: &str, data: &[u8]) -> Result<String, Fail> {
        let dir = parent_of(dest);
        let tmp = format!("{dir}/{}", temp_name()?);
        let open = |conn: &Conn| {
            conn.sftp.open_mode(
                Path::new(&tmp),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
                FILE_MODE,
                OpenType::File,
            )
        };
        let mut file = match open(conn) {
            Err(e) if is_not_found(&e) => {
                mkdir_if_missing(&conn.sftp, Path::new(dir))?;
                open(conn)?
            }
            other => other?,
        };
        let written = file.write_all(data).map_err(|e| io_fail(conn, e));
        let synced = written.and_then(|()| match file.fsync() {
            Ok(()) => Ok(()),
            // No fsync@openssh.com: the close below is all we have.
            Err(e) if e.code() == ErrorCode::SFTP(fx::OP_UNSUPPORTED) => Ok(()),
            Err(e) => {
                if is_session_error(&e) {
                    conn.kill();
                }
                Err(e.into())
            }
        });
        let closed = file.close();
        if let Err(e) = synced.and_then(|()| closed.map_err(Fail::from)) {
            // Best effort on a live connection; a leftover temp file is
            // removed later by remove_stale_temp_files.
            let _ = conn.sftp.unlink(Path::new(&tmp));
            return Err(e);
        }
        Ok(tmp)
    }

    /// Gives the uploaded temp file its final name, create-only. After a
    /// refused rename the temp file is removed.
    fn rename_new(&self, conn: &Conn, handle: &Handle, tmp: &str, dest: &str) -> Result<(), Fail> {
        // No OVERWRITE flag (and OpenSSH, speaking SFTP v3, ignores flags
        // anyway: its plain RENAME never replaces a regular file).
        let flags = Some(RenameFlags::ATOMIC | RenameFlags::NATIVE);
        match conn.sftp.rename(Path::new(tmp), Path::new(dest), flags) {
            Ok(()) => Ok(()),
            Err(e) if is_session_error(&e) => Err(e.into()),
            Err(e) => {
                // SFTP v3 reports EEXIST as a bare FAILURE; the name being
                // there is what tells a lost race from another problem.
                let exists = conn.sftp.lstat(Path::new(dest)).is_ok();
                let _ = conn.sftp.unlink(Path::new(tmp));
                if exists {
                    Err(Fail::Done(already_exists(handle)))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Renames the uploaded temp file over the object with
    /// `posix-rename@openssh.com`, on a new channel of `conn`'s session.
    /// After a refusal the temp file is removed; after a broken
    /// connection it is left for the caller to resolve.
    fn rename_over(&self, conn: &Conn, handle: &Handle, tmp: &str, dest: &str) -> Result<(), Fail> {
        let mut channel = conn.session.channel_session()?;
        channel.subsystem("sftp")?;
        let renamed = posix_rename::posix_rename(&mut channel, tmp, dest);
        // Best effort: the server's sftp-server exits once the channel
        // closes; a failure here changes nothing about the rename.
        let _ = channel.close();
        let _ = channel.wait_close();
        drop(channel);
        let refused = match renamed {
            Ok(()) => return Ok(()),
            Err(RenameError::Io(e)) => return Err(io_fail(conn, e)),
            Err(RenameError::Unsupported) => Fail::Done(BackendError::Unsupported {
                op: "replace",
                object: handle.to_string(),
                message: format!(
                    "the SFTP server at {} does not offer the {} extension, the only \
                     way to replace a file atomically over SFTP (OpenSSH's sftp-server has \
                     it; so do most servers built on it); nothing was changed",
                    connect::host_port(&self.loc),
                    posix_rename::EXTENSION
                ),
            }),
            Err(RenameError::Status { code, message }) => {
                let e = ssh2::Error::from_errno(ErrorCode::SFTP(code as i32));
                match self.map_status("replace", handle.to_string(), &e) {
                    BackendError::Service {
                        op,
                        object,
                        message: mapped,
                        transient,
                    } => Fail::Done(BackendError::Service {
                        op,
                        object,
                        message: format!("{mapped} ({message})"),
                        transient,
                    }),
                    other => Fail::Done(other),
                }
            }
            Err(e @ RenameError::Protocol(_)) => Fail::Done(BackendError::Service {
                op: "replace",
                object: handle.to_string(),
                message: e.to_string(),
                transient: false,
            }),
        };
        // Best effort; a leftover is removed by remove_stale_temp_files.
        let _ = conn.sftp.unlink(Path::new(tmp));
        Err(refused)
    }

    /// Runs `f` on a pooled connection, mapping its errors for `op` on
    /// `object`. A broken connection is discarded; with [`Retry::Safe`] the
    /// call is repeated once on a fresh one.
    fn run<T>(
        &self,
        op: &'static str,
        object: &str,
        retry: Retry,
        mut f: impl FnMut(&Conn) -> Result<T, Fail>,
    ) -> Result<T, BackendError> {
        // The failure of the first attempt, when it is being retried.
        let mut first: Option<BackendError> = None;
        loop {
            let conn = match (self.take(), first.take()) {
                (Ok(conn), _) => conn,
                (Err(e), None) => return Err(e),
                // Say what was being done, then why reconnecting failed.
                (Err(e), Some(first)) => {
                    return Err(BackendError::Service {
                        op,
                        object: object.to_string(),
                        message: format!("{}; reconnecting failed: {e}", message_of(&first)),
                        transient: e.is_transient(),
                    });
                }
            };
            let retrying = first.is_some();
            match f(&conn) {
                Ok(v) => {
                    self.give_back(conn);
                    return Ok(v);
                }
                Err(fail) => {
                    let broken = self.is_broken(&conn, &fail);
                    if broken {
                        conn.kill();
                        self.discard(conn);
                    } else {
                        self.give_back(conn);
                    }
                    let e = self.map_fail(op, object, fail, broken);
                    if broken && retry == Retry::Safe && !retrying {
                        first = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Runs `f` on every item, on as many threads as the pool has
    /// connections (each call takes its own), and returns the results in
    /// order, or the first error. Directory operations are one round trip
    /// or more each, so doing the 256 fan-out directories one at a time
    /// would cost 256 round trips of latency to a distant server.
    fn parallel<I: Sync, T: Send>(
        &self,
        items: &[I],
        f: impl Fn(&I) -> Result<T, BackendError> + Sync,
    ) -> Result<Vec<T>, BackendError> {
        let threads = self.opts.connections.min(items.len());
        if threads <= 1 {
            return items.iter().map(f).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<Vec<(usize, Result<T, BackendError>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(item) = items.get(i) else { break };
                            let r = f(item);
                            if r.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            mine.push((i, r));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut all: Vec<(usize, Result<T, BackendError>)> =
            results.into_iter().flatten().collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Whether the connection is unusable after `fail`. A file read or
    /// write error hides its code, so the connection is probed.
    fn is_broken(&self, conn: &Conn, fail: &Fail) -> bool {
        match fail {
            Fail::Ssh(e) => is_session_error(e),
            Fail::Io(_) => conn.sftp.stat(Path::new(&self.loc.path)).is_err(),
            Fail::Done(_) => false,
        }
    }

    /// Maps a failure of `op` on `object` to the backend's error.
    fn map_fail(&self, op: &'static str, object: &str, fail: Fail, broken: bool) -> BackendError {
        let object = object.to_string();
        if broken {
            let why = match &fail {
                Fail::Ssh(e) => e.message().to_string(),
                Fail::Io(e) => e.to_string(),
                Fail::Done(e) => e.to_string(),
            };
            return BackendError::Service {
                op,
                object,
                message: format!(
                    "the connection to {} failed: {why} (timeout {} s; the call may be retried)",
                    connect::host_port(&self.loc),
                    self.opts.timeout.as_secs()
                ),
                transient: true,
            };
        }
        match fail {
            Fail::Done(e) => e,
            Fail::Io(e) => BackendError::Service {
                op,
                object,
                message: format!("the SFTP server reported: {e}"),
                transient: false,
            },
            Fail::Ssh(e) => self.map_status(op, object, &e),
        }
    }

    /// Maps an SFTP status from the server.
    fn map_status(&self, op: &'static str, object: String, e: &ssh2::Error) -> BackendError {
        let (message, transient) = match e.code() {
            ErrorCode::SFTP(fx::NO_SUCH_FILE | fx::NO_SUCH_PATH) => {
                return BackendError::NotFound { object };
            }
            ErrorCode::SFTP(fx::FILE_ALREADY_EXISTS) => {
                return BackendError::AlreadyExists { object };
            }
            ErrorCode::SFTP(fx::PERMISSION_DENIED) => (
                format!(
                    "permission denied on the SFTP server: check that user {:?} owns the \
                     repository directory {} and its subdirectories, or may write them",
                    self.user, self.loc.path
                ),
                false,
            ),
            ErrorCode::SFTP(fx::NO_SPACE_ON_FILESYSTEM | fx::QUOTA_EXCEEDED) => (
                "the SFTP server's filesystem is full or the user's quota is used up: free \
                 space (e.g. cairn prune) or raise the quota"
                    .to_string(),
                false,
            ),
            ErrorCode::SFTP(fx::WRITE_PROTECT) => (
                "the SFTP server's filesystem is read-only".to_string(),
                false,
            ),
            _ => (format!("the SFTP server reported: {}", e.message()), false),
        };
        BackendError::Service {
            op,
            object,
            message,
            transient,
        }
    }

    /// A connection from the pool: an idle one, a new one if fewer than
    /// the limit are open, or the next one returned.
    fn take(&self) -> Result<Conn, BackendError> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < self.opts.connections {
                pool.open += 1;
                drop(pool);
                return match connect::connect(&self.loc, &self.user, &self.opts) {
                    Ok(conn) => Ok(conn),
                    Err(e) => {
                        self.lock_pool().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Returns a healthy connection to the pool.
    fn give_back(&self, conn: Conn) {
        self.lock_pool().idle.push(conn);
        self.returned.notify_one();
    }

    /// Closes a broken connection, making room for a new one.
    fn discard(&self, conn: Conn) {
        drop(conn);
        self.lock_pool().open -= 1;
        self.returned.notify_one();
    }

    /// The pool, even if a thread panicked while holding it (its state is
    /// consistent after every statement).
    fn lock_pool(&self) -> MutexGuard<'_, PoolState> {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens `handle` for reading and returns the file and its size.
    fn open_object(conn: &Conn, path: &str) -> Result<(ssh2::File, u64), Fail> {
        let mut file = conn.sftp.open(Path::new(path))?;
        let stat = file.stat()?;
        if stat.is_dir() {
            return Err(Fail::Ssh(ssh2::Error::new(
                ErrorCode::SFTP(fx::NO_SUCH_FILE),
                "is a directory",
            )));
        }
        Ok((file, stat.size.unwrap_or(0)))
    }
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.check_root()?;
        match kind {
            ObjectKind::Config => match self.stat(&Handle::config()) {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            },
            ObjectKind::Pack => {
                let dirs = self.fan_out_dirs()?;
                let listed = self.parallel(&dirs, |dir| self.list_dir(kind, dir))?;
                Ok(listed.into_iter().flatten().collect())
            }
            kind => self.list_dir(kind, &format!("{}/{}", self.loc.path, kind.dir())),
        }
    }

    fn read(&self, handle: &Handle) -> Result<Vec<u8>, BackendError> {
        handle.validate()?;
        let path = self.path_of(handle);
        self.run("read", &handle.to_string(), Retry::Safe, |conn| {
            let (mut file, size) = Self::open_object(conn, &path)?;
            let mut buf = vec![0; usize::try_from(size).map_err(|_| Fail::Done(too_big(handle)))?];
            read_bounded(conn, &mut file, &mut buf)?;
            Ok(buf)
        })
    }

    fn read_range(&self, handle: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        handle.validate()?;
        let path = self.path_of(handle);
        self.run("read", &handle.to_string(), Retry::Safe, |conn| {
            let (mut file, size) = Self::open_object(conn, &path)?;
            let out_of_range = || {
                Fail::Done(BackendError::OutOfRange {
                    object: handle.to_string(),
                    offset,
                    len,
                    size,
                })
            };
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(out_of_range());
            }
            let mut buf = vec![0; usize::try_from(len).map_err(|_| out_of_range())?];
            if len > 0 {
                file.seek(SeekFrom::Start(offset)).map_err(Fail::Io)?;
                read_bounded(conn, &mut file, &mut buf)?;
            }
            Ok(buf)
        })
    }

    /// Uploads to a temp file and renames it create-only (see the module
    /// docs). If the connection breaks before the rename is sent, the whole
    /// write is repeated once on a fresh connection. If it breaks while the
    /// rename is in flight, the fresh connection looks at the temp name: gone
    /// means the rename happened (OpenSSH removes the old name only after the
    /// new one is linked), still there means it did not, and it is retried.
    fn write_new(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        let dest = self.path_of(handle);
        let object = handle.to_string();
        // Upload, retried once on a fresh connection if the first one broke.
        let tmp = self.run("write", &object, Retry::Safe, |conn| {
            // Cheap early refusal; the rename below is what enforces it.
            match conn.sftp.lstat(Path::new(&dest)) {
                Ok(_) => return Err(Fail::Done(already_exists(handle))),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            self.upload_temp(conn, &dest, data)
        })?;
        let first = self.run("write", &object, Retry::No, |conn| {
            self.rename_new(conn, handle, &tmp, &dest)
        });
        match first {
            Err(e) if e.is_transient() => {}
            other => return other,
        }
        // The connection broke around the rename: resolve it on a new one.
        self.run("write", &object, Retry::No, |conn| {
            match conn.sftp.lstat(Path::new(&tmp)) {
                Ok(_) => self.rename_new(conn, handle, &tmp, &dest),
                Err(e) if is_not_found(&e) => match conn.sftp.lstat(Path::new(&dest)) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Uploads to a temp file and renames it over the object (see the
    /// module docs). A missing object is NotFound before anything is
    /// uploaded. If the connection breaks around the rename, a fresh one
    /// looks at the temp name: gone means the rename happened (`rename(2)`
    /// moves it), still there means it did not, and it is renamed again.
    fn replace(&self, handle: &Handle, data: &[u8]) -> Result<(), BackendError> {
        handle.validate()?;
        let dest = self.path_of(handle);
        let object = handle.to_string();
        let tmp = self.run("replace", &object, Retry::Safe, |conn| {
            let stat = conn.sftp.stat(Path::new(&dest))?;
            if !stat.is_file() {
                return Err(Fail::Done(BackendError::NotFound {
                    object: object.clone(),
                }));
            }
            self.upload_temp(conn, &dest, data)
        })?;
        let first = self.run("replace", &object, Retry::No, |conn| {
            self.rename_over(conn, handle, &tmp, &dest)
        });
        match first {
            Err(e) if e.is_transient() => {}
            other => return other,
        }
        self.run("replace", &object, Retry::No, |conn| {
            match conn.sftp.lstat(Path::new(&tmp)) {
                Ok(_) => self.rename_over(conn, handle, &tmp, &dest),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete(&self, handle: &Handle) -> Result<(), BackendError> {
        handle.validate()?;
        let path = self.path_of(handle);
        let mut attempts = 0;
        self.run("delete", &handle.to_string(), Retry::Safe, |conn| {
            attempts += 1;
            match conn.sftp.unlink(Path::new(&path)) {
                // A retry after a lost reply finds the object gone, which is
                // what the caller asked for.
                Err(e) if attempts > 1 && is_not_found(&e) => Ok(()),
                other => Ok(other?),
            }
        })
    }

    fn stat(&self, handle: &Handle) -> Result<ObjectInfo, BackendError> {
        handle.validate()?;
        let path = self.path_of(handle);
        let stat = self.run("stat", &handle.to_string(), Retry::Safe, |conn| {
            Ok(conn.sftp.stat(Path::new(&path))?)
        })?;
        if !stat.is_file() {
            return Err(BackendError::NotFound {
                object: handle.to_string(),
            });
        }
        Ok(ObjectInfo {
            handle: handle.clone(),
            size: stat.size.unwrap_or(0),
        })
    }
}

/// Fills `buf` from the file's current offset without reading past its end.
///
/// libssh2 pipelines a read by requesting up to four times the size of
/// each call's buffer ahead (at most 8 MiB). Asking for the whole range at
/// once made a 4 MiB ranged read fetch up to 8 MiB and halved restore
/// throughput (32 -> 84 MiB/s on loopback once bounded); asking for a
/// quarter of what is left keeps the read-ahead inside the range while
/// still keeping many requests in flight.
fn read_bounded(conn: &Conn, file: &mut ssh2::File, buf: &mut [u8]) -> Result<(), Fail> {
    /// One SFTP read request's worth, the smallest piece worth asking for.
    const MIN_PIECE: usize = 32 * 1024;
    /// The largest piece: 4 MiB in flight (larger showed no gain on
    /// loopback; libssh2 caps its read-ahead at 8 MiB anyway).
    const MAX_PIECE: usize = 1024 * 1024;
    let mut done = 0;
    while done < buf.len() {
        let left = buf.len() - done;
        let piece = (left / 4).clamp(MIN_PIECE.min(left), MAX_PIECE);
        match file.read(&mut buf[done..done + piece]) {
            Ok(0) => {
                return Err(Fail::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object ended early (was it truncated on the server?)",
                )));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(conn, e)),
        }
    }
    Ok(())
}

/// The message of an error without its "op object:" prefix, where it has one.
fn message_of(e: &BackendError) -> String {
    match e {
        BackendError::Service { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A file read or write error; a timeout cuts the connection at once (see
/// [`Conn::kill`]) so closing the file does not wait out another timeout.
fn io_fail(conn: &Conn, e: std::io::Error) -> Fail {
    if e.kind() == std::io::ErrorKind::TimedOut {
        conn.kill();
    }
    Fail::Io(e)
}

/// The error for an object too large to read into memory here.
fn too_big(handle: &Handle) -> BackendError {
    BackendError::Io {
        op: "read",
        object: handle.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            "the object is larger than this machine can address",
        ),
    }
}

/// Creates a directory (mode 0700) unless it exists.
fn mkdir_if_missing(sftp: &ssh2::Sftp, dir: &Path) -> Result<(), Fail> {
    match sftp.mkdir(dir, DIR_MODE) {
        Ok(()) => Ok(()),
        Err(e) if is_session_error(&e) => Err(e.into()),
        // SFTP v3 reports EEXIST as a bare FAILURE: look.
        Err(e) => match sftp.stat(dir) {
            Ok(stat) if stat.is_dir() => Ok(()),
            _ => Err(e.into()),
        },
    }
}

/// The entries of `dir` with UTF-8 names, as (name, attributes); a missing
/// directory has none.
fn read_dir_or_empty(sftp: &ssh2::Sftp, dir: &str) -> Result<Vec<(String, FileStat)>, Fail> {
    let entries = match sftp.readdir(Path::new(dir)) {
        Ok(entries) => entries,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(entries
        .into_iter()
        .filter_map(|(path, stat)| {
            let name = path.file_name()?.to_str()?.to_string();
            Some((name, stat))
        })
        .collect())
}

/// The directory part of an object path.
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(dir, _)| dir)
}

/// A fresh temp file name: the prefix and 128 random bits in hex.
fn temp_name() -> Result<String, BackendError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| BackendError::Io {
        op: "write",
        object: "temp file name".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!("{TEMP_PREFIX}{}", hex::encode(bytes)))
}

/// Whether the server said the file does not exist.
fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::SFTP(fx::NO_SUCH_FILE | fx::NO_SUCH_PATH)
    )
}

/// Whether the error is libssh2's rather than an SFTP status: the
/// connection is then unusable (timeouts, dropped sockets, protocol
/// errors).
fn is_session_error(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(_))
}

/// The create-only refusal for `handle`.
fn already_exists(handle: &Handle) -> BackendError {
    BackendError::AlreadyExists {
        object: handle.to_string(),
    }
}
