//! The local cache: the merged repository index in SQLite.
//!
//! Reading every index file from the target at each run would cost minutes
//! on a large repository, so the agent merges them into a local SQLite
//! database, one per repository, and keeps a list of the index files merged
//! so a refresh only fetches new ones. The cache is disposable: it is keyed
//! by the repository id and a schema version, and any mismatch, or a file
//! that is not a valid SQLite database, makes [`Cache::open`] delete it and
//! start afresh. Nothing in it is secret beyond what the index files hold
//! (blob ids are keyed hashes), but it is still private to the user: the
//! directories are created 0700 and the file 0600.
//!
//! Pack ids are kept in their own table and referred to by an ordinal, so a
//! blob row holds 8 bytes instead of 32 for its pack.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::dedup::BlobSet;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobEntry, BlobType, Compression, IndexFile};

/// Version of the cache schema below; a cache of another version is rebuilt.
const SCHEMA_VERSION: i64 = 1;

/// The cache file's name inside the repository's cache directory.
const FILE_NAME: &str = "index.sqlite";

/// Path shown in errors of an in-memory cache.
const MEMORY: &str = ":memory:";

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE packs(ordinal INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
CREATE TABLE blobs(
    id BLOB PRIMARY KEY,
    pack INTEGER NOT NULL,
    type INTEGER NOT NULL,
    compression INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE index_files(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL);
";

/// The local cache of one repository (see the module documentation).
pub struct Cache {
    conn: Connection,
    /// The database file; `None` for an in-memory cache.
    path: Option<PathBuf>,
    /// The path as shown in errors.
    shown: String,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("path", &self.shown).finish()
    }
}

/// Whether a SQLite error means the file is not a usable database (so the
/// disposable cache should be deleted rather than reported).
fn is_unusable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

fn cache_error(shown: &str, message: impl std::fmt::Display) -> Error {
    Error::Cache {
        path: shown.to_string(),
        message: message.to_string(),
    }
}

/// What an existing cache file turned out to be.
enum Existing {
    /// Valid, of this repository and schema version.
    Usable(Connection),
    /// Missing, foreign, of another version or corrupt: to be recreated.
    Replace,
}

impl Cache {
    /// The default cache directory: `$XDG_CACHE_HOME/cairn`, or
    /// `$HOME/.cache/cairn` when `XDG_CACHE_HOME` is unset, empty or
    /// relative; `None` when neither gives an absolute directory.
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|base| base.join("cairn"))
    }

    /// Opens the cache of repository `repo_id`: the file
    /// `<dir>/<repo id hex>/index.sqlite` with `Some(dir)`, or an in-memory
    /// database with `None`. A file of another repository or schema version,
    /// or one that is not a SQLite database, is deleted and recreated.
    pub fn open(dir: Option<&Path>, repo_id: &Id) -> Result<Cache> {
        let Some(dir) = dir else {
            let conn = Connection::open_in_memory().map_err(|e| cache_error(MEMORY, e))?;
            let cache = Cache {
                conn,
                path: None,
                shown: MEMORY.to_string(),
            };
            cache.initialize(repo_id)?;
            return Ok(cache);
        };
        let dir = dir.join(repo_id.to_hex());
        let path = dir.join(FILE_NAME);
        let shown = path.display().to_string();
        create_private_dir(&dir).map_err(|e| cache_error(&dir.display().to_string(), e))?;
        match open_existing(&path, repo_id) {
            Ok(Existing::Usable(conn)) => {
                return Ok(Cache {
                    conn,
                    path: Some(path),
                    shown,
                });
            }
            Ok(Existing::Replace) => {}
            Err(e) if is_unusable(&e) => {}
            Err(e) => return Err(cache_error(&shown, e)),
        }
        remove_database(&path).map_err(|e| cache_error(&shown, e))?;
        create_private_file(&path).map_err(|e| cache_error(&shown, e))?;
        let conn = Connection::open(&path).map_err(|e| cache_error(&shown, e))?;
        let cache = Cache {
            conn,
            path: Some(path),
            shown,
        };
        cache.initialize(repo_id)?;
        // SQLite gives its -wal and -shm files the main file's permissions.
        set_private(&cache.shown, cache.path.as_deref())?;
        Ok(cache)
    }

    /// Sets the pragmas and creates the schema in an empty database.
    fn initialize(&self, repo_id: &Id) -> Result<()> {
        set_pragmas(&self.conn).map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(&format!(
                "BEGIN; {SCHEMA}
                 INSERT INTO meta(key, value) VALUES ('schema', {SCHEMA_VERSION});
                 INSERT INTO meta(key, value) VALUES ('blobs', 0);
                 COMMIT;"
            ))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES ('repo', ?1)",
                [&repo_id.0],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        cache_error(&self.shown, e)
    }

    /// The database file; `None` for an in-memory cache.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The index files merged so far.
    pub fn index_files(&self) -> Result<HashSet<Id>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM index_files")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, [u8; 32]>(0))
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map(Id).map_err(|e| self.err(e))).collect()
    }

    /// Merges index file `index_id` in one transaction: its id, its packs
    /// and every blob. A blob already in the cache (the same blob can be in
    /// two packs after a crash) keeps its first row. Returns how many blob
    /// rows were added; 0 when this index file was merged before.
    pub fn add_index_file(&mut self, index_id: &Id, index: &IndexFile) -> Result<usize> {
        let shown = self.shown.clone();
        let err = |e: rusqlite::Error| cache_error(&shown, e);
        let tx = self.conn.transaction().map_err(err)?;
        let added = {
            let mut insert_index = tx
                .prepare_cached("INSERT OR IGNORE INTO index_files(id) VALUES (?1)")
                .map_err(err)?;
            if insert_index.execute([&index_id.0]).map_err(err)? == 0 {
                return Ok(0);
            }
            let mut insert_pack = tx
                .prepare_cached("INSERT OR IGNORE INTO packs(id) VALUES (?1)")
                .map_err(err)?;
            let mut pack_ordinal = tx
                .prepare_cached("SELECT ordinal FROM packs WHERE id = ?1")
                .map_err(err)?;
            // Blobs in id order, so each B-tree page is touched once per
            // transaction; the stable sort keeps a duplicate's first entry
            // first, so INSERT OR IGNORE keeps the first.
            let mut rows: Vec<(&BlobEntry, i64)> = Vec::with_capacity(index.blob_count());
            for pack in &index.packs {
                insert_pack.execute([&pack.pack.0]).map_err(err)?;
                let ordinal: i64 = pack_ordinal
                    .query_row([&pack.pack.0], |row| row.get(0))
                    .map_err(err)?;
                rows.extend(pack.blobs.iter().map(|b| (b, ordinal)));
            }
            rows.sort_by_key(|(b, _)| b.id);
            let mut insert_blob = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO blobs
                     (id, pack, type, compression, offset, stored_len, raw_len)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            let mut added = 0usize;
            for (b, ordinal) in rows {
                added += insert_blob
                    .execute(params![
                        &b.id.0,
                        ordinal,
                        b.blob_type.to_byte(),
                        b.compression.to_byte(),
                        b.offset,
                        b.stored_len,
                        b.raw_len,
                    ])
                    .map_err(err)?;
            }
            tx.prepare_cached("UPDATE meta SET value = value + ?1 WHERE key = 'blobs'")
                .map_err(err)?
                .execute([added as i64])
                .map_err(err)?;
            added
        };
        tx.commit().map_err(err)?;
        Ok(added)
    }

    /// Drops every index row (blobs, packs, merged index files), as when an
    /// index file the cache merged has vanished from the target (after a
    /// prune): the caller then merges the current index files again. The
    /// key/value table is kept.
    pub fn clear(&mut self) -> Result<()> {
        self.conn
            .execute_batch(
                "BEGIN;
                 DELETE FROM blobs;
                 DELETE FROM packs;
                 DELETE FROM index_files;
                 UPDATE meta SET value = 0 WHERE key = 'blobs';
                 COMMIT;",
            )
            .map_err(|e| {
                // Leave no transaction open after a failure; a failed
                // rollback changes nothing for the caller.
                let _ = self.conn.execute_batch("ROLLBACK");
                self.err(e)
            })
    }

    /// The pack holding blob `id` and its entry, if the cache knows it.
    pub fn lookup(&self, id: &Id) -> Result<Option<(Id, BlobEntry)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.id, b.type, b.compression, b.offset, b.stored_len, b.raw_len
                 FROM blobs AS b JOIN packs AS p ON p.ordinal = b.pack
                 WHERE b.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let row = stmt
            .query_row([&id.0], |row| {
                Ok((
                    row.get::<_, [u8; 32]>(0)?,
                    row.get::<_, u8>(1)?,
                    row.get::<_, u8>(2)?,
                    row.get::<_, u32>(3)?,
                    row.get::<_, u32>(4)?,
                    row.get::<_, u32>(5)?,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((pack, blob_type, compression, offset, stored_len, raw_len)) = row else {
            return Ok(None);
        };
        let bad = |what: &str, value: u8| {
            self.err(format!(
                "blob {id}: invalid {what} byte {value} in the cache"
            ))
        };
        let entry = BlobEntry {
            id: *id,
            blob_type: BlobType::from_byte(blob_type).ok_or_else(|| bad("type", blob_type))?,
            compression: Compression::from_byte(compression)
                .ok_or_else(|| bad("compression", compression))?,
            offset,
            stored_len,
            raw_len,
        };
        Ok(Some((Id(pack), entry)))
    }

    /// [`Cache::lookup`] of each id, in order (for restore planning).
    pub fn lookup_many(&self, ids: &[Id]) -> Result<Vec<Option<(Id, BlobEntry)>>> {
        ids.iter().map(|id| self.lookup(id)).collect()
    }

    /// The dedup set of every blob in the cache, read in primary-key order
    /// (sorted by id, so by fingerprint) straight into the set's vector.
    pub fn fingerprints(&self) -> Result<BlobSet> {
        // The stored count sizes the vector exactly; were it off, the vector
        // would just grow.
        let count = usize::try_from(self.blob_count()?).unwrap_or(0);
        let mut fingerprints = Vec::with_capacity(count);
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM blobs ORDER BY id")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let bytes = row
                .get_ref(0)
                .map_err(|e| self.err(e))?
                .as_blob()
                .map_err(|e| self.err(e))?;
            let prefix: [u8; 16] = bytes
                .get(..16)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| self.err("a blob id shorter than 16 bytes"))?;
            fingerprints.push(u128::from_be_bytes(prefix));
        }
        Ok(BlobSet::from_sorted(fingerprints))
    }

    /// Stored bytes of the blobs indexed in each pack.
    pub fn pack_bytes(&self) -> Result<HashMap<Id, u64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // Members of a solid group share one ciphertext: each
                // (offset, length) counts once.
                "SELECT packs.id, SUM(b.stored_len) FROM
                 (SELECT DISTINCT pack, offset, stored_len FROM blobs) AS b
                 JOIN packs ON packs.ordinal = b.pack GROUP BY b.pack",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id: Vec<u8> = row.get(0).map_err(|e| self.err(e))?;
            let bytes: i64 = row.get(1).map_err(|e| self.err(e))?;
            let id: [u8; 32] = id
                .try_into()
                .map_err(|_| self.err("a pack id that is not 32 bytes"))?;
            out.insert(Id(id), u64::try_from(bytes).unwrap_or(0));
        }
        Ok(out)
    }

    /// Number of blobs in the cache (kept in the meta table, so O(1)).
    pub fn blob_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'blobs'")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(|e| self.err(e))?;
        u64::try_from(n).map_err(|_| self.err(format!("negative blob count {n}")))
    }

    /// The value stored under `key`, if any.
    pub fn get_kv(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn set_kv(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![key, value]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes the value under `key`; whether there was one.
    pub fn remove_kv(&mut self, key: &str) -> Result<bool> {
        self.conn
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }
}

fn set_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    // journal_mode answers with the mode now in force ("memory" in memory).
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Up to 16 MiB of pages in memory (sqlite's default is 2 MiB): a restore
    // looks up every blob, and with the default a 4 MB index was read again
    // page by page (35,000 preads for one 2 GiB disk restore).
    conn.pragma_update(None, "cache_size", -16384)
}

/// Opens the cache file at `path` if it exists and is one of this schema
/// version and repository.
fn open_existing(path: &Path, repo_id: &Id) -> rusqlite::Result<Existing> {
    if !path.exists() {
        return Ok(Existing::Replace);
    }
    let conn = Connection::open(path)?;
    set_pragmas(&conn)?;
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(Existing::Replace);
    }
    use rusqlite::types::Value;
    let meta = |key: &str| {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get::<_, Value>(0)
        })
        .optional()
    };
    let schema_ok = meta("schema")? == Some(Value::Integer(SCHEMA_VERSION));
    let repo_ok = meta("repo")? == Some(Value::Blob(repo_id.0.to_vec()));
    let count_ok = matches!(meta("blobs")?, Some(Value::Integer(n)) if n >= 0);
    if schema_ok && repo_ok && count_ok {
        Ok(Existing::Usable(conn))
    } else {
        Ok(Existing::Replace)
    }
}

/// Deletes the database file and its WAL and shared-memory files.
fn remove_database(path: &Path) -> std::io::Result<()> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for p in [path.as_os_str(), &wal, &shm] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates an empty file (SQLite takes an empty file for a new database)
/// readable by the owner only from the start.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Sets the cache file's permissions to 0600 (whatever the umask did).
fn set_private(shown: &str, path: Option<&Path>) -> Result<()> {
    #[cfg(unix)]
    if let Some(path) = path {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| cache_error(shown, e))?;
    }
    #[cfg(not(unix))]
    let _ = (shown, path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::PackBlobs;

    fn id(tag: &str, i: u64) -> Id {
        let mut h = blake3::Hasher::new();
        h.update(tag.as_bytes());
        h.update(&i.to_le_bytes());
        Id(*h.finalize().as_bytes())
    }

    fn entry(i: u64) -> BlobEntry {
        BlobEntry {
            id: id("blob", i),
            blob_type: if i.is_multiple_of(2) {
                BlobType::Data
            } else {
                BlobType::Meta
            },
            compression: if i.is_multiple_of(3) {
                Compression::None
            } else {
                Compression::Zstd
            },
            offset: (i as u32) * 100,
            stored_len: 100 + i as u32,
            raw_len: 200 + i as u32,
        }
    }

    /// An index file of `packs` packs of `per_pack` blobs, numbered from `first`.
    fn index(first: u64, packs: u64, per_pack: u64) -> IndexFile {
        IndexFile {
            supersedes: vec![],
            packs: (0..packs)
                .map(|p| PackBlobs {
                    pack: id("pack", first + p),
                    blobs: (0..per_pack)
                        .map(|b| entry(first + p * per_pack + b))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_of_an_index_file() {
        let repo = id("repo", 0);
        let mut cache = Cache::open(None, &repo).unwrap();
        assert_eq!(cache.path(), None);
        let idx = index(0, 3, 50);
        let idx_id = id("index", 0);
        assert_eq!(cache.add_index_file(&idx_id, &idx).unwrap(), 150);
        assert_eq!(cache.add_index_file(&idx_id, &idx).unwrap(), 0);
        assert_eq!(cache.blob_count().unwrap(), 150);
        assert_eq!(cache.index_files().unwrap(), HashSet::from([idx_id]));
        for pack in &idx.packs {
            for blob in &pack.blobs {
                assert_eq!(cache.lookup(&blob.id).unwrap(), Some((pack.pack, *blob)));
            }
        }
        assert_eq!(cache.lookup(&id("blob", 999)).unwrap(), None);
        let many = cache
            .lookup_many(&[idx.packs[1].blobs[7].id, id("blob", 999)])
            .unwrap();
        assert_eq!(
            many,
            vec![Some((idx.packs[1].pack, idx.packs[1].blobs[7])), None]
        );
        let set = cache.fingerprints().unwrap();
        assert_eq!(set.len(), 150);
        assert_eq!(set.bytes_used(), 150 * 16);
        assert!((0..150).all(|i| set.contains(&id("blob", i))));
        assert!(!set.contains(&id("blob", 150)));
    }

    #[test]
    fn duplicate_blob_in_two_index_files_keeps_the_first() {
        let mut cache = Cache::open(None, &id("repo", 0)).unwrap();
        let first = index(0, 1, 10);
        let mut second = index(100, 1, 10);
        // Blob 3 of the first index file, also in the second one's pack.
        second.packs[0].blobs.push(BlobEntry {
            offset: 7777,
            ..entry(3)
        });
        assert_eq!(cache.add_index_file(&id("index", 1), &first).unwrap(), 10);
        assert_eq!(cache.add_index_file(&id("index", 2), &second).unwrap(), 10);
        assert_eq!(cache.blob_count().unwrap(), 20);
        let (pack, found) = cache.lookup(&entry(3).id).unwrap().unwrap();
        assert_eq!((pack, found), (first.packs[0].pack, entry(3)));
        let n: i64 = cache
            .conn
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);

        // Within one index file too, the first entry wins.
        let mut third = index(200, 2, 2);
        third.packs[1].blobs[0] = BlobEntry {
            offset: 1,
            ..third.packs[0].blobs[1]
        };
        assert_eq!(cache.add_index_file(&id("index", 3), &third).unwrap(), 3);
        let (pack, found) = cache.lookup(&third.packs[0].blobs[1].id).unwrap().unwrap();
        assert_eq!(
            (pack, found),
            (third.packs[0].pack, third.packs[0].blobs[1])
        );
    }

    #[test]
    fn file_cache_persists_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id("repo", 0);
        let idx = index(0, 2, 20);
        {
            let mut cache = Cache::open(Some(dir.path()), &repo).unwrap();
            cache.add_index_file(&id("index", 0), &idx).unwrap();
            cache.set_kv("source/a", b"hello").unwrap();
        }
        let cache = Cache::open(Some(dir.path()), &repo).unwrap();
        let path = dir.path().join(repo.to_hex()).join("index.sqlite");
        assert_eq!(cache.path(), Some(path.as_path()));
        assert_eq!(cache.blob_count().unwrap(), 40);
        assert_eq!(
            cache.get_kv("source/a").unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(cache.get_kv("source/b").unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
    }

    #[test]
    fn schema_or_repo_mismatch_recreates() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id("repo", 0);
        let fill = || {
            let mut cache = Cache::open(Some(dir.path()), &repo).unwrap();
            cache
                .add_index_file(&id("index", 0), &index(0, 1, 5))
                .unwrap();
            cache.set_kv("k", b"v").unwrap();
            cache
        };
        for change in [
            "UPDATE meta SET value = 999 WHERE key = 'schema'",
            "UPDATE meta SET value = zeroblob(32) WHERE key = 'repo'",
            "DELETE FROM meta",
            "DROP TABLE meta",
        ] {
            fill().conn.execute_batch(change).unwrap();
            let cache = Cache::open(Some(dir.path()), &repo).unwrap();
            assert_eq!(cache.blob_count().unwrap(), 0, "{change}");
            assert!(cache.index_files().unwrap().is_empty());
            assert_eq!(cache.get_kv("k").unwrap(), None);
        }
        // A matching cache is kept.
        drop(fill());
        assert_eq!(
            Cache::open(Some(dir.path()), &repo)
                .unwrap()
                .blob_count()
                .unwrap(),
            5
        );
    }

    #[test]
    fn garbage_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id("repo", 0);
        let path = dir.path().join(repo.to_hex()).join("index.sqlite");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for garbage in [&b"not a database"[..], &[0xa5; 8192][..]] {
            std::fs::write(&path, garbage).unwrap();
            let mut cache = Cache::open(Some(dir.path()), &repo).unwrap();
            assert_eq!(cache.blob_count().unwrap(), 0);
            assert_eq!(
                cache
                    .add_index_file(&id("index", 0), &index(0, 1, 3))
                    .unwrap(),
                3
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
    }

    #[test]
    fn clear_drops_the_index_rows() {
        let mut cache = Cache::open(None, &id("repo", 0)).unwrap();
        let idx = index(0, 2, 10);
        cache.add_index_file(&id("index", 0), &idx).unwrap();
        cache.set_kv("k", b"v").unwrap();
        cache.clear().unwrap();
        assert_eq!(cache.blob_count().unwrap(), 0);
        assert!(cache.index_files().unwrap().is_empty());
        assert_eq!(cache.lookup(&idx.packs[0].blobs[0].id).unwrap(), None);
        assert!(cache.fingerprints().unwrap().is_empty());
        assert_eq!(cache.get_kv("k").unwrap().as_deref(), Some(&b"v"[..]));
        // The same index file merges again after a clear.
        assert_eq!(cache.add_index_file(&id("index", 0), &idx).unwrap(), 20);
        assert!(cache.remove_kv("k").unwrap());
        assert!(!cache.remove_kv("k").unwrap());
    }

    #[test]
    fn default_dir_follows_xdg() {
        // Only checks the shape: the environment is shared with other tests.
        if let Some(dir) = Cache::default_dir() {
            assert!(dir.is_absolute() && dir.ends_with("cairn"));
        }
    }
}
