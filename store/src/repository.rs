//! The repository: init, open, save and load blobs, flush, snapshots.
//!
//! It enforces the write order that keeps a repository valid whatever
//! happens: packs are uploaded first, then the index files naming them, and
//! a snapshot only after everything it needs is indexed. Dropping a
//! repository without [`Repository::flush`] is a crash as far as the target
//! is concerned: it leaves, at worst, uploaded packs no index names, which
//! `repair index` and prune deal with.
//!
//! All methods take `&self`: the backup pipeline saves blobs from many worker
//! threads. Compression runs outside every lock; a short lock per blob type
//! appends the encrypted blob to the open pack.

use crate::backend::{Backend, BackendError, Handle, ObjectKind};
use crate::cache::Cache;
use crate::config::{ChunkerConfig, Config, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE};
use crate::crypto::{MasterKeys, ObjectCipher};
use crate::dedup::BlobSet;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobEntry, BlobType, Compression, IndexFile, PackBlobs};
use crate::keyfile::{Credential, KdfParams, KeyFile, KeyFileInfo, KeyListing, seal_key_file};
use crate::lock::{LockInfo, RepoLock};
use crate::object::{FORMAT_VERSION, HEADER_LEN, ObjectHeader};
use crate::pack::{
    FinishedPack, OpenedBlob, PackWriter, decode_trailer, entry_aad, group_member, group_members,
    open_group, open_group_plain, open_stored, open_stored_into, read_trailer, trailer_start,
};
use crate::patch::{Patch, PatchOp};
use crate::plan::PrunePlan;
use crate::random::RandomSource;
use crate::snapshot::Snapshot;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

mod group_cache;
mod rebuild;
mod rekey;
mod transfer;
mod uploads;

use uploads::{Finished, HeldPack, Uploads};

pub use rebuild::{IndexRebuild, PackDamage};
pub use rekey::{ConfigReseal, KeyRewrap};
pub use transfer::StoredBlob;

/// Settings chosen at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunker parameters (fixed for the repository's life).
    pub chunker: ChunkerConfig,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for data blobs.
    pub compression_level: i32,
    /// Argon2id cost of the first key file (ignored for raw keys).
    pub kdf: KdfParams,
    /// Facts recorded in the first key file.
    pub key_info: KeyFileInfo,
    /// Share this key set's id key and gear seed (and take the caller's
    /// chunker parameters, which should be the same repository's): blobs
    /// then keep their ids between the two repositories, so `copy` can move
    /// them and they deduplicate. `None` makes every secret fresh.
    pub share_ids_with: Option<MasterKeys>,
}

impl InitOptions {
    /// Defaults for everything but the chunker parameters.
    pub fn new(chunker: ChunkerConfig) -> Self {
        InitOptions {
            chunker,
            pack_size: DEFAULT_PACK_SIZE,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            kdf: KdfParams::DEFAULT,
            key_info: KeyFileInfo::default(),
            share_ids_with: None,
        }
    }
}

impl InitOptions {
    /// Small chunks (4/16/64 KiB), a 1 MiB pack size and an Argon2id cost
    /// of 64 KiB: cheap to create, for tests and benchmarks only. Never use
    /// it for a repository that holds real data: the key-file cost is far
    /// too low to resist password guessing.
    pub fn for_tests() -> Self {
        let sizes = crate::config::ChunkSizes {
            min: 4096,
            avg: 16384,
            max: 65536,
            normalization: 2,
        };
        let mut o = InitOptions::new(ChunkerConfig {
            format: 1,
            disk: sizes,
            files: sizes,
        });
        o.kdf = KdfParams::INSECURE_FAST;
        o.pack_size = 1 << 20;
        o
    }
}

/// How to open a repository.
#[derive(Clone)]
pub struct OpenOptions {
    /// Cache directory; `None` keeps the cache in memory (rebuilt per open).
    pub cache_dir: Option<PathBuf>,
    /// Where salts come from ([`crate::OsRandom`] for real repositories).
    pub rng: Arc<dyn RandomSource>,
    /// Write an index checkpoint after this many packs are uploaded.
    pub checkpoint_packs: usize,
    /// How many finished packs may upload at once in the background
    /// (memory: about this many packs). The agent sets it from
    /// `--transfers`.
    pub transfers: usize,
}

impl OpenOptions {
    /// The cache in `cache_dir`, OS randomness, checkpoints every 32 packs,
    /// up to [`DEFAULT_TRANSFERS`] pack uploads at once.
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        OpenOptions {
            cache_dir,
            rng: Arc::new(crate::random::OsRandom),
            checkpoint_packs: 32,
            transfers: DEFAULT_TRANSFERS,
        }
    }
}

/// Pack uploads in flight at once unless [`OpenOptions::transfers`] says
/// otherwise.
pub const DEFAULT_TRANSFERS: usize = 4;

/// What [`Repository::save_blob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveOutcome {
    /// The blob's id.
    pub id: Id,
    /// Whether it was new (stored now) rather than already in the repository.
    pub new: bool,
    /// Bytes stored for it (ciphertext), 0 when not new.
    pub stored_len: u64,
}

/// A whole blob that a new blob can be stored as a patch of, placed where
/// it lines up with the blob it was found through (see
/// [`Repository::patch_base`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchBase {
    /// The base blob (always stored whole).
    pub id: Id,
    /// Its plaintext.
    pub data: Vec<u8>,
    /// Where its first byte sits relative to the first byte of the blob it
    /// was found through: `data[k]` lines up with that blob's byte
    /// `k + shift` (0 when that blob is the base itself).
    pub shift: i64,
}

/// The snapshots of a repository: those that read, and those that did not.
#[derive(Debug, Default)]
pub struct SnapshotListing {
    /// The readable snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Manifests that could not be read (damaged, gone, too new), by id.
    pub unreadable: Vec<(Id, Error)>,
}

/// Counters of the current session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// New blobs saved.
    pub blobs_new: u64,
    /// Their plaintext bytes.
    pub bytes_new: u64,
    /// Their stored (compressed, encrypted) bytes.
    pub bytes_stored: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Index files written.
    pub index_files: u64,
}

/// Which copies of a blob make storing it again unnecessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dedup {
    /// Any: the repository's index or this session.
    Repository,
    /// Only one this session stored (rewrites).
    Session,
}

/// Where a blob saved in this session is.
///
/// The session holds one of these per new blob until an index file names
/// it: 55,000 at once in the first full of a 2 GiB disk image. With the
/// pack id and the whole blob entry inline the map took 15 MiB at its
/// peak (heaptrack); the pack is now a slot in [`Session::packs`] and the
/// blob's id is the map's key, which halves it.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// In an open pack of this type, not uploaded yet.
    InPacker(BlobType),
    /// Finished and being uploaded (its pack's bytes in `uploads`).
    Uploading(PackedAt),
    /// Uploaded, not yet in a stored index file.
    Packed(PackedAt),
}

/// A blob's place in a finished pack of this session: its index entry
/// without the id, and the pack as a slot in [`Session::packs`].
#[derive(Debug, Clone, Copy)]
struct PackedAt {
    pack: u32,
    blob_type: BlobType,
    compression: Compression,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
}

#[derive(Default)]
struct Session {
    pending: HashMap<Id, Pending>,
    unindexed: Vec<PackBlobs>,
    /// The ids of the packs this session finished, in [`PackedAt::pack`]
    /// slots (a few per GiB stored).
    packs: Vec<Id>,
    pack_slots: HashMap<Id, u32>,
}

impl Session {
    /// The compact place of `entry` in `pack`.
    fn place(&mut self, pack: Id, entry: &BlobEntry) -> PackedAt {
        let next = self.packs.len() as u32;
        let slot = *self.pack_slots.entry(pack).or_insert(next);
        if slot == next {
            self.packs.push(pack);
        }
        PackedAt {
            pack: slot,
            blob_type: entry.blob_type,
            compression: entry.compression,
            offset: entry.offset,
            stored_len: entry.stored_len,
            raw_len: entry.raw_len,
        }
    }

    /// The pack and entry of blob `id` placed at `at`.
    fn located(&self, id: &Id, at: &PackedAt) -> (Id, BlobEntry) {
        let entry = BlobEntry {
            id: *id,
            blob_type: at.blob_type,
            compression: at.compression,
            offset: at.offset,
            stored_len: at.stored_len,
            raw_len: at.raw_len,
        };
        (self.packs[at.pack as usize], entry)
    }
}

#[derive(Default)]
struct Counters {
    blobs_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
    packs: AtomicU64,
    index_files: AtomicU64,
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    keys: MasterKeys,
    /// The key file the repository was opened (or created) with.
    key_id: Id,
    config: Config,
    rng: Arc<dyn RandomSource>,
    checkpoint_packs: usize,
    known: RwLock<BlobSet>,
    cache: Mutex<Cache>,
    session: Mutex<Session>,
    packers: [Mutex<Option<PackWriter>>; 2],
    pack_ciphers: Mutex<HashMap<Id, Arc<ObjectCipher>>>,
    /// Solid groups opened lately, decompressed.
    groups: group_cache::GroupCache,
    counters: Counters,
    uploads: Arc<Uploads>,
}

impl Drop for Repository {
    /// Lets the uploads in flight finish (unrecorded: without a flush they
    /// are packs no index names, as after a crash), so that nothing is
    /// written to the target for this repository after it is gone.
    fn drop(&mut self) {
        self.uploads.wait_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these structures half-updated in a way
    // that matters more than the panic itself; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn packer_slot(t: BlobType) -> usize {
    match t {
        BlobType::Data => 0,
        BlobType::Meta => 1,
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// zstd level of the incompressibility probe (its fastest useful level:
/// ~3 GB/s on random data).
const PROBE_LEVEL: i32 = -5;

/// How many times a content-named object whose bytes do not match its name
/// is read again before the reads count as unreliable (see `read_verified`).
const REREADS: usize = 5;

/// Whether `data` is worth compressing: blobs of 8 KiB and more are probed
/// with a fast zstd pass over a sample from their middle (a quarter of the
/// blob, at most 4 KiB), and given up on when the sample does not shrink by
/// 2%. Encrypted, compressed and media content then costs a few
/// microseconds instead of a full compression pass that gains nothing
/// (zstd level 3 runs at ~0.2-0.9 GB/s on such data).
fn worth_compressing(data: &[u8]) -> bool {
    if data.len() < 8192 {
        return true;
    }
    let len = (data.len() / 4).min(4096);
    let start = data.len() / 2 - len / 2;
    let sample = &data[start..start + len];
    PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(PROBE_LEVEL).ok();
        }
        let Some(c) = slot.as_mut() else { return true };
        let mut out = Vec::with_capacity(len * 98 / 100);
        c.compress_to_buffer(sample, &mut out).is_ok()
    })
}

/// One zstd frame of `data` at `level` (declaring its content size), even
/// when that is not smaller: patch encodings are always framed.
fn zstd_frame(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(data, level)
}

/// Compresses `data` at `level`; `None` when that does not make it smaller.
fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.len() < 64 || !worth_compressing(data) {
        return None;
    }
    compress_smaller(data, level)
}

/// One zstd frame of `data` at `level` from this thread's compression
/// context (made once: a context per call allocated and freed megabytes
/// each time); `None` when it would not be smaller.
fn compress_smaller(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.is_empty() {
        return None;
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let (_, c) = slot.as_mut()?;
        // An output buffer one byte short of the input: zstd gives up with an
        // error as soon as the output would not be smaller.
        let mut out = Vec::with_capacity(data.len() - 1);
        c.compress_to_buffer(data, &mut out).ok()?;
        Some(out)
    })
}

impl Repository {
    /// Creates a repository on an empty target and returns it open.
    pub fn init(
        backend: Arc<dyn Backend>,
        credential: &Credential<'_>,
        init: &InitOptions,
        open: OpenOptions,
    ) -> Result<Repository> {
        match backend.stat(&Handle::config()) {
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "{} already holds a repository (its config exists)",
                    backend.location()
                )));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let rng = open.rng.clone();
        let keys = match &init.share_ids_with {
            Some(source) => MasterKeys::generate_sharing_ids(source, rng.as_ref())?,
            None => MasterKeys::generate(rng.as_ref())?,
        };
        let config = Config {
            version: FORMAT_VERSION.into(),
            repo_id: keys.repo_id,
            created: init.key_info.created,
            chunker: init.chunker,
            pack_size: init.pack_size,
            compression_level: init.compression_level,
        };
        config
            .validate("the requested config")
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let key_file = seal_key_file(&keys, credential, &init.kdf, &init.key_info, rng.as_ref())?;
        let key_id = Id::of_object(&key_file);
        let key_handle = Handle::new(ObjectKind::Key, &key_id);
        backend.write_new(&key_handle, &key_file)?;
        // The config goes last: a target with a config is a usable repository.
        let sealed = config.seal(&keys, rng.as_ref())?;
        let raced = match backend.write_new(&Handle::config(), &sealed) {
            Err(crate::BackendError::AlreadyExists { .. }) => true,
            Err(e) => return Err(e.into()),
            // Read back: on a target that ignores create-only writes
            // (docs/targets.md) a racing init may have replaced it.
            Ok(()) => backend.read(&Handle::config())? != sealed,
        };
        if raced {
            // Best effort: a key file for a config that is not there opens
            // nothing, but it would be tried (and fail) at every open.
            let _ = backend.delete(&key_handle);
            return Err(Error::InitRaced {
                location: backend.location(),
            });
        }
        Repository::assemble(backend, keys, key_id, config, open, true)
    }

    /// Opens an existing repository with a password or raw key.
    pub fn open(
        backend: Arc<dyn Backend>,
        credential: &Credential<'_>,
        open: OpenOptions,
    ) -> Result<Repository> {
        Repository::open_with(backend, credential, open, true)
    }

    /// Opens an existing repository without reading its index files: for
    /// `repair index`, which must work when they are damaged. The cache
    /// and dedup set start empty; [`Repository::rebuild_index`] fills them.
    pub fn open_without_index(
        backend: Arc<dyn Backend>,
        credential: &Credential<'_>,
        open: OpenOptions,
    ) -> Result<Repository> {
        Repository::open_with(backend, credential, open, false)
    }

    fn open_with(
        backend: Arc<dyn Backend>,
        credential: &Credential<'_>,
        open: OpenOptions,
        load_index: bool,
    ) -> Result<Repository> {
        let config_bytes = Repository::read_config_bytes(backend.as_ref())?;
        let (keys, key_id) = Repository::unlock(backend.as_ref(), credential)?;
        let config = Config::open(&config_bytes, &keys)?;
        Repository::assemble(backend, keys, key_id, config, open, load_index)
    }

    /// Reads the config and checks it is a cairn repository of a version this
    /// build reads, before any key is needed.
    fn read_config_bytes(backend: &dyn Backend) -> Result<Vec<u8>> {
        let not_repo = |reason: &str| Error::NotARepository {
            location: backend.location(),
            reason: reason.to_string(),
        };
        // Its size first, so that a transfer cut short is read again
        // instead of passing for a damaged config.
        let bytes = match backend
            .stat(&Handle::config())
            .and_then(|info| crate::backend::read_listed(backend, &info))
        {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(not_repo("it has no config")),
            Err(e) => return Err(e.into()),
        };
        if bytes.get(..6) != Some(&crate::object::MAGIC[..]) {
            return Err(not_repo("its config is not a cairn config"));
        }
        ObjectHeader::decode(&bytes, ObjectKind::Config, "config")?;
        Ok(bytes)
    }

    /// Tries every key file with the credential, those whose key set has
    /// the highest current epoch first (their plaintext hint, §2.3): the
    /// first that opens gives the key set.
    fn unlock(backend: &dyn Backend, credential: &Credential<'_>) -> Result<(MasterKeys, Id)> {
        let key_files = backend.list(ObjectKind::Key)?;
        if key_files.is_empty() {
            return Err(Error::NotARepository {
                location: backend.location(),
                reason: "it has no key files".into(),
            });
        }
        let mut last_corrupt = None;
        let mut parsed_files = Vec::with_capacity(key_files.len());
        for info in &key_files {
            let bytes = crate::backend::read_listed(backend, info)?;
            let id = info
                .handle
                .name
                .parse()
                .unwrap_or_else(|_| Id::of_object(&bytes));
            parsed_files.push((id, info.handle.to_string(), bytes));
        }
        let hint = |bytes: &[u8], name: &str| {
            KeyFile::parse(bytes, name).map_or(0, |kf| kf.info.epoch.unwrap_or(0))
        };
        parsed_files.sort_by_cached_key(|(_, name, bytes)| {
            std::cmp::Reverse(hint(bytes.as_slice(), name.as_str()))
        });
        for (id, name, bytes) in &parsed_files {
            let parsed = KeyFile::parse(bytes, name).and_then(|kf| kf.unlock(credential, name));
            match parsed {
                Ok(Some(keys)) => return Ok((keys, *id)),
                Ok(None) => {}
                Err(e) => last_corrupt = Some(e),
            }
        }
        // A damaged key file must not hide behind "wrong password" when it is
        // the only one.
        match (key_files.len(), last_corrupt) {
            (1, Some(e)) => Err(e),
            (n, _) => Err(Error::WrongPassword { key_files: n }),
        }
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        keys: MasterKeys,
        key_id: Id,
        config: Config,
        open: OpenOptions,
        load_index: bool,
    ) -> Result<Repository> {
        let cache = Cache::open(open.cache_dir.as_deref(), &keys.repo_id)?;
        let repo = Repository {
            backend,
            keys,
            key_id,
            config,
            rng: open.rng,
            checkpoint_packs: open.checkpoint_packs.max(1),
            known: RwLock::new(BlobSet::from_sorted(Vec::new())),
            cache: Mutex::new(cache),
            session: Mutex::new(Session::default()),
            packers: [Mutex::new(None), Mutex::new(None)],
            pack_ciphers: Mutex::new(HashMap::new()),
            groups: group_cache::GroupCache::default(),
            counters: Counters::default(),
            uploads: Uploads::new(open.transfers),
        };
        if load_index {
            repo.refresh_index()?;
        } else {
            lock(&repo.cache).clear()?;
        }
        Ok(repo)
    }

    /// Brings the cache up to date with the index files on the target and
    /// reloads the dedup set. Called at open; call it again to see blobs that
    /// other agents have written since.
    pub fn refresh_index(&self) -> Result<()> {
        let listed = self.backend.list(ObjectKind::Index)?;
        let mut files: HashMap<Id, IndexFile> = HashMap::new();
        let mut cache = lock(&self.cache);
        let merged = cache.index_files()?;
        let on_target: HashSet<Id> = listed
            .iter()
            .filter_map(|i| i.handle.name.parse().ok())
            .collect();
        for id in on_target.difference(&merged) {
            files.insert(*id, self.read_index(id)?);
        }
        let superseded: HashSet<Id> = files
            .values()
            .flat_map(|f| f.supersedes.iter().copied())
            .collect();
        // An index the cache merged has gone (prune replaced it) or is now
        // superseded: the cache may hold stale locations. Rebuild it.
        if merged
            .iter()
            .any(|id| !on_target.contains(id) || superseded.contains(id))
        {
            cache.clear()?;
            files.clear();
            for id in &on_target {
                files.insert(*id, self.read_index(id)?);
            }
        }
        let superseded: HashSet<Id> = files
            .values()
            .flat_map(|f| f.supersedes.iter().copied())
            .collect();
        for (id, file) in &files {
            if !superseded.contains(id) {
                cache.add_index_file(id, file)?;
            }
        }
        let set = cache.fingerprints()?;
        drop(cache);
        *self.known_mut() = set;
        Ok(())
    }

    fn read_index(&self, id: &Id) -> Result<IndexFile> {
        let handle = Handle::new(ObjectKind::Index, id);
        let bytes = self.read_verified(&handle, id)?;
        IndexFile::open(&bytes, &self.keys, &handle.to_string())
    }

    /// Writes a content-named object. An existing object of that name is the
    /// same bytes (the name is their hash), e.g. after a retried write whose
    /// first attempt landed: that counts as success.
    fn write_content_named(&self, kind: ObjectKind, id: &Id, bytes: &[u8]) -> Result<()> {
        match self.backend.write_new(&Handle::new(kind, id), bytes) {
            Err(BackendError::AlreadyExists { .. }) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Reads a content-named object and checks its bytes against its name.
    ///
    /// Bytes that do not match are read again: a transfer cut short or
    /// garbled on the way (a target can end a reply early without an
    /// error) comes back different, and a later read may match. Damage is
    /// only what is confirmed: the same wrong bytes, as long as the object
    /// the target lists, twice. Replies shorter than the object, or wrong
    /// in a different way each time, prove nothing about what is stored:
    /// after [`REREADS`] more reads they are a transient error of the
    /// target (the caller may try again later), never damage.
    fn read_verified(&self, handle: &Handle, id: &Id) -> Result<Vec<u8>> {
        let mut previous: Option<Vec<u8>> = None;
        let mut last_short: Option<(usize, u64)> = None;
        for _ in 0..=REREADS {
            let bytes = self.backend.read(handle)?;
            if Id::of_object(&bytes) == *id {
                return Ok(bytes);
            }
            let size = self.backend.stat(handle)?.size;
            if (bytes.len() as u64) < size {
                last_short = Some((bytes.len(), size));
                continue;
            }
            last_short = None;
            if previous.as_ref() == Some(&bytes) {
                return Err(Error::corrupt(
                    handle.to_string(),
                    "content does not match its name (damaged or replaced)",
                ));
            }
            previous = Some(bytes);
        }
        let message = match last_short {
            Some((got, size)) => format!(
                "the target returned fewer bytes than the object holds on each of {} reads \
                 (last {got} of {size}); nothing is known about the stored object: run the \
                 command again",
                REREADS + 1
            ),
            None => format!(
                "the target returned different bytes on {} reads, none matching the object's \
                 name; the connection or the target is unreliable and nothing is known about \
                 the stored object: run the command again",
                REREADS + 1
            ),
        };
        Err(Error::Backend(BackendError::Service {
            op: "read",
            object: handle.to_string(),
            message,
            transient: true,
        }))
    }

    /// The dedup set, for reading (a poisoned lock still holds valid data:
    /// it is only ever replaced or merged whole).
    fn known(&self) -> std::sync::RwLockReadGuard<'_, BlobSet> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The dedup set, for replacing or merging.
    fn known_mut(&self) -> std::sync::RwLockWriteGuard<'_, BlobSet> {
        self.known.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The repository's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The secrets (for the chunker's gear seed and blob ids).
    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// The target.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The id a blob with this plaintext has.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        self.keys.blob_id(plaintext)
    }

    /// Whether the repository (or this session) holds the blob.
    pub fn has_blob(&self, id: &Id) -> bool {
        self.known().contains(id) || lock(&self.session).pending.contains_key(id)
    }

    /// The most pack buffers this session held in memory at once: packs
    /// open, or finished and not yet uploaded. At most
    /// [`OpenOptions::transfers`], plus an open pack of the other blob type.
    pub fn pack_buffers_peak(&self) -> usize {
        self.uploads.peak_in_memory()
    }

    /// Counters of this session.
    pub fn session_stats(&self) -> SessionStats {
        let c = &self.counters;
        SessionStats {
            blobs_new: c.blobs_new.load(Ordering::Relaxed),
            bytes_new: c.bytes_new.load(Ordering::Relaxed),
            bytes_stored: c.bytes_stored.load(Ordering::Relaxed),
            packs: c.packs.load(Ordering::Relaxed),
            index_files: c.index_files.load(Ordering::Relaxed),
        }
    }

    /// Stores a blob unless the repository has it: compress (or not, when
    /// that does not help), encrypt, append to the open pack of its type,
    /// upload the pack when full.
    pub fn save_blob(&self, blob_type: BlobType, data: &[u8]) -> Result<SaveOutcome> {
        self.save_blob_with_id(blob_type, self.keys.blob_id(data), data)
    }

    /// [`Self::save_blob`] when the caller has already computed the id with
    /// [`Self::blob_id`] (the backup pipeline hashes before deciding).
    pub fn save_blob_with_id(
        &self,
        blob_type: BlobType,
        id: Id,
        data: &[u8],
    ) -> Result<SaveOutcome> {
        let raw_len = u32::try_from(data.len()).map_err(|_| {
            Error::InvalidInput(format!(
                "blob of {} bytes exceeds the 4 GiB limit",
                data.len()
            ))
        })?;
        if self.known().contains(&id) || lock(&self.session).pending.contains_key(&id) {
            return Ok(SaveOutcome {
                id,
                new: false,
                stored_len: 0,
            });
        }
        self.store_whole(blob_type, id, raw_len, data, Dedup::Repository)
    }

    /// Stores a blob whole in this session's packs even though the index
    /// already names a copy of it elsewhere (a synthetic full lays a
    /// snapshot's blobs out again in restore order; a patch is rebuilt and
    /// stored whole). Once per session: a blob this session already stored
    /// is not stored again. `data` must be the blob's plaintext; its id is
    /// checked. Retire the old copies with [`Self::supersede_index`].
    pub fn rewrite_blob(&self, blob_type: BlobType, id: Id, data: &[u8]) -> Result<SaveOutcome> {
        if self.keys.blob_id(data) != id {
            return Err(Error::InvalidInput(format!(
                "the data given to rewrite blob {id} is not that blob"
            )));
        }
        let raw_len = u32::try_from(data.len())
            .map_err(|_| Error::InvalidInput(format!("blob {id} exceeds the 4 GiB limit")))?;
        self.store_whole(blob_type, id, raw_len, data, Dedup::Session)
    }

    /// Compresses (when that helps) and appends a whole blob.
    fn store_whole(
        &self,
        blob_type: BlobType,
        id: Id,
        raw_len: u32,
        data: &[u8],
        dedup: Dedup,
    ) -> Result<SaveOutcome> {
        let level = match blob_type {
            BlobType::Data => self.config.compression_level,
            BlobType::Meta => self.config.compression_level.max(3),
        };
        let compressed = compress(data, level);
        let (compression, stored) = match &compressed {
            Some(c) => (Compression::Zstd, c.as_slice()),
            None => (Compression::None, data),
        };
        self.append_pending(blob_type, id, raw_len, compression, stored, dedup)
    }

    /// Saves the blobs of one stream (the new chunks of one file, or of one
    /// stretch of a disk) as solid groups where that pays: members the
    /// repository or this session has are skipped, those larger than
    /// [`crate::group::MAX_MEMBER_LEN`] are stored alone, and the rest are
    /// compressed together in groups of about `target_len` bytes
    /// ([`crate::group::TARGET_GROUP_LEN`] or
    /// [`crate::group::DISK_GROUP_LEN`]; one left over is stored alone, and
    /// a group that does not shrink is stored as its members, each alone).
    /// Each member must be its id's plaintext (ids from [`Self::blob_id`]).
    /// Returns one outcome per member, in order.
    ///
    /// Members are not probed for compressibility: zstd gives up on
    /// incompressible blocks of a group by itself, at ~2 GB/s, and the
    /// probe's sample misjudged chunks that the group's history shrinks
    /// (the compression study measured 0.9% of a disk image's data).
    pub fn save_group(
        &self,
        blob_type: BlobType,
        members: &[(Id, &[u8])],
        target_len: usize,
    ) -> Result<Vec<SaveOutcome>> {
        self.store_group(blob_type, members, target_len, Dedup::Repository)
    }

    fn store_group(
        &self,
        blob_type: BlobType,
        members: &[(Id, &[u8])],
        target_len: usize,
        dedup: Dedup,
    ) -> Result<Vec<SaveOutcome>> {
        // Within what readers accept, whatever the caller asks.
        let target_len = target_len.min(crate::group::DISK_GROUP_LEN);
        let mut outcomes = Vec::with_capacity(members.len());
        let mut run: Vec<(Id, &[u8])> = Vec::new();
        let mut run_len = 0;
        // The run's id prefixes, which must differ within a group.
        let mut run_prefixes = HashSet::new();
        let mut skip = HashSet::new();
        for &(id, data) in members {
            let raw_len = u32::try_from(data.len()).map_err(|_| {
                Error::InvalidInput(format!(
                    "blob of {} bytes exceeds the 4 GiB limit",
                    data.len()
                ))
            })?;
            let have = !skip.insert(id)
                || (dedup == Dedup::Repository && self.known().contains(&id))
                || lock(&self.session).pending.contains_key(&id);
            if have {
                outcomes.push(SaveOutcome {
                    id,
                    new: false,
                    stored_len: 0,
                });
            } else if (64..=crate::group::MAX_MEMBER_LEN).contains(&data.len()) {
                // Two ids sharing a prefix (about once in 2^50 groups) go
                // into different groups.
                if !run_prefixes.insert(crate::group::id_prefix(&id)) {
                    self.store_run(blob_type, &mut run, dedup, &mut outcomes)?;
                    run_len = 0;
                    run_prefixes.clear();
                    run_prefixes.insert(crate::group::id_prefix(&id));
                }
                // A group closes once past its target, so it stays under
                // the target plus one member (far below what readers accept).
                // Placeholder, filled when its run is stored.
                outcomes.push(SaveOutcome {
                    id,
                    new: false,
                    stored_len: u64::MAX,
                });
                run.push((id, data));
                run_len += data.len();
                if run_len >= target_len || run.len() == crate::group::MAX_MEMBERS {
                    self.store_run(blob_type, &mut run, dedup, &mut outcomes)?;
                    run_len = 0;
                    run_prefixes.clear();
                }
            } else {
                outcomes.push(self.append_pending(
                    blob_type,
                    id,
                    raw_len,
                    Compression::None,
                    data,
                    dedup,
                )?);
            }
        }
        self.store_run(blob_type, &mut run, dedup, &mut outcomes)?;
        Ok(outcomes)
    }

    /// Stores a run of compressible new blobs: as one group when it has
    /// several members and compresses, else each alone. Fills the
    /// placeholder outcomes (marked `stored_len == u64::MAX`) in order.
    fn store_run(
        &self,
        blob_type: BlobType,
        run: &mut Vec<(Id, &[u8])>,
        dedup: Dedup,
        outcomes: &mut [SaveOutcome],
    ) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let mut results = Vec::with_capacity(run.len());
        let level = match blob_type {
            BlobType::Data => self.config.compression_level,
            BlobType::Meta => self.config.compression_level.max(3),
        };
        let framed = if run.len() >= crate::group::MIN_MEMBERS {
            compress_smaller(&crate::group::encode(run), level)
        } else {
            None
        };
        match framed {
            Some(frame) => {
                let lens: Vec<(Id, u32)> =
                    run.iter().map(|&(id, d)| (id, d.len() as u32)).collect();
                results =
                    self.append_sealed(blob_type, &lens, Compression::Grouped, &frame, dedup)?;
            }
            None => {
                for &(id, data) in run.iter() {
                    results.push(self.store_whole(
                        blob_type,
                        id,
                        data.len() as u32,
                        data,
                        dedup,
                    )?);
                }
            }
        }
        let mut results = results.into_iter();
        for o in outcomes.iter_mut().filter(|o| o.stored_len == u64::MAX) {
            if let Some(r) = results.next() {
                *o = r;
            }
        }
        run.clear();
        Ok(())
    }

    /// Stores `data` (whose id is `id`) as a patch of `bases`: the
    /// operations `ops` rebuild it from them (see
    /// [`crate::patch::diff_aligned`]; copy operations number the bases in
    /// this order). The bases must be blobs the repository stores whole and
    /// already indexed or uploaded; otherwise the blob is stored whole. The
    /// patch is applied and checked against `data` before it is stored, so
    /// a wrong patch is an error here rather than a damaged backup later.
    pub fn save_blob_patched(
        &self,
        id: Id,
        data: &[u8],
        bases: &[PatchBase],
        ops: &[PatchOp],
    ) -> Result<SaveOutcome> {
        let too_long = |what: &str| Error::InvalidInput(format!("{what} longer than 4 GiB"));
        let raw_len = u32::try_from(data.len()).map_err(|_| too_long("blob"))?;
        let mut named = Vec::with_capacity(bases.len());
        for base in bases {
            match self.finished_entry(&base.id)? {
                Some(entry) if entry.compression != Compression::Patch => {}
                _ => return self.save_blob_with_id(BlobType::Data, id, data),
            }
            let len = u32::try_from(base.data.len()).map_err(|_| too_long("patch base"))?;
            named.push((base.id, len));
        }
        let op_len: u64 = ops.iter().map(|op| u64::from(op.output_len())).sum();
        if op_len != data.len() as u64 {
            return Err(Error::InvalidInput(format!(
                "patch of blob {id} covers {op_len} bytes, the blob has {}",
                data.len()
            )));
        }
        let encoding = crate::patch::encode(&named, ops, data);
        let plain: Vec<&[u8]> = bases.iter().map(|b| b.data.as_slice()).collect();
        let rebuilt = Patch::decode(&encoding)
            .and_then(|p| p.apply(&plain, data.len()))
            .map_err(|e| Error::InvalidInput(format!("patch of blob {id}: {e}")))?;
        if rebuilt != data {
            return Err(Error::InvalidInput(format!(
                "patch of blob {id} does not rebuild it"
            )));
        }
        if self.known().contains(&id) {
            return Ok(SaveOutcome {
                id,
                new: false,
                stored_len: 0,
            });
        }
        let level = self.config.compression_level;
        let stored = zstd_frame(&encoding, level).map_err(|e| {
            Error::InvalidInput(format!("cannot compress the patch of blob {id}: {e}"))
        })?;
        self.append_pending(
            BlobType::Data,
            id,
            raw_len,
            Compression::Patch,
            &stored,
            Dedup::Repository,
        )
    }

    /// Appends an encoded blob to the open pack of its type unless it is
    /// pending already or (unless `copy`) stored; uploads the pack when
    /// full.
    fn append_pending(
        &self,
        blob_type: BlobType,
        id: Id,
        raw_len: u32,
        compression: Compression,
        stored: &[u8],
        dedup: Dedup,
    ) -> Result<SaveOutcome> {
        let mut outcomes =
            self.append_sealed(blob_type, &[(id, raw_len)], compression, stored, dedup)?;
        Ok(outcomes.pop().unwrap_or(SaveOutcome {
            id,
            new: false,
            stored_len: 0,
        }))
    }

    /// Appends one stored form to the open pack of its type: a blob alone
    /// (one member, its own compression) or a solid group (its members,
    /// [`Compression::Grouped`]). Members pending already or (with
    /// [`Dedup::Repository`]) stored get no entry; nothing is appended when
    /// none is left. Uploads the pack when full. Returns one outcome per
    /// member, in order; the stored bytes are shared among the new members
    /// by length.
    fn append_sealed(
        &self,
        blob_type: BlobType,
        members: &[(Id, u32)],
        compression: Compression,
        stored: &[u8],
        dedup: Dedup,
    ) -> Result<Vec<SaveOutcome>> {
        let seen = |session: &Session, id: &Id| {
            session.pending.contains_key(id)
                || (dedup == Dedup::Repository && self.known().contains(id))
        };
        let mut outcomes: Vec<SaveOutcome> = members
            .iter()
            .map(|&(id, _)| SaveOutcome {
                id,
                new: false,
                stored_len: 0,
            })
            .collect();
        {
            let session = lock(&self.session);
            if members.iter().all(|(id, _)| seen(&session, id)) {
                return Ok(outcomes);
            }
        }
        // The open pack's slot is held from marking the members as in it to
        // appending them: a reader that sees one marked waits for the slot
        // and then finds it there.
        let mut slot = lock(&self.packers[packer_slot(blob_type)]);
        let mut fresh: Vec<(usize, (Id, u32))> = Vec::with_capacity(members.len());
        {
            let mut session = lock(&self.session);
            for (k, &(id, len)) in members.iter().enumerate() {
                // A group may name the same blob twice; it gets one entry.
                if !seen(&session, &id) {
                    session.pending.insert(id, Pending::InPacker(blob_type));
                    fresh.push((k, (id, len)));
                }
            }
        }
        if fresh.is_empty() {
            return Ok(outcomes);
        }
        let fresh_members: Vec<(Id, u32)> = fresh.iter().map(|&(_, m)| m).collect();
        let unmark = |e: Error| {
            let mut session = lock(&self.session);
            for (id, _) in &fresh_members {
                session.pending.remove(id);
            }
            e
        };
        let (entries, full) = {
            if slot
                .as_ref()
                .is_some_and(|p| !p.fits_entries(stored.len(), fresh.len()))
                && let Some(p) = slot.take()
            {
                // Started here, before the wait below, which may need it
                // to finish.
                let early = self.hand_over(p);
                self.upload_pack(early).map_err(unmark)?;
            }
            let packer = match slot.as_mut() {
                Some(p) => p,
                None => {
                    // A new pack opens only while fewer than `transfers`
                    // finished ones are in memory, checked with the slot
                    // held: at most `transfers` pack buffers are alive (the
                    // check before the slot let two workers pass it at once
                    // and a third pack open).
                    self.uploads.wait_for_room();
                    let buf = self.uploads.spare_buffer().unwrap_or_else(|| {
                        Vec::with_capacity(self.config.pack_size as usize + (1 << 20))
                    });
                    let packer =
                        PackWriter::with_buffer(blob_type, &self.keys, self.rng.as_ref(), buf)
                            .map_err(unmark)?;
                    self.uploads.opened();
                    slot.insert(packer)
                }
            };
            let entries = if compression == Compression::Grouped {
                packer.add_group(&fresh_members, stored)
            } else {
                let (id, raw_len) = fresh_members[0];
                vec![packer.add(id, compression, raw_len, stored)]
            };
            let full = if packer.len() >= self.config.pack_size as usize {
                slot.take().map(|p| self.hand_over(p))
            } else {
                None
            };
            (entries, full)
        };
        drop(slot);
        let sealed_len = u64::from(entries[0].stored_len);
        let fresh_raw: u64 = fresh_members.iter().map(|&(_, l)| u64::from(l)).sum();
        self.counters
            .blobs_new
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.counters
            .bytes_new
            .fetch_add(fresh_raw, Ordering::Relaxed);
        self.counters
            .bytes_stored
            .fetch_add(sealed_len, Ordering::Relaxed);
        let mut shared = 0;
        for (n, &(k, (_, raw_len))) in fresh.iter().enumerate() {
            let share = if n + 1 == fresh.len() {
                sealed_len - shared
            } else {
                sealed_len * u64::from(raw_len) / fresh_raw.max(1)
            };
            shared += share;
            outcomes[k].new = true;
            outcomes[k].stored_len = share;
        }
        // Start the pack handed over (a pack left unstarted would hold its
        // place in the uploads for good).
        if let Some(pack) = full {
            self.upload_pack(pack)?;
        }
        Ok(outcomes)
    }

    /// Finishes an open pack and makes its blobs readable from the uploads
    /// while it goes up. Called with the pack's slot locked, so a blob that
    /// leaves the open pack is marked uploading before anyone can look for
    /// it in the slot again (see `load_opened`).
    fn hand_over(&self, writer: PackWriter) -> Arc<FinishedPack> {
        let pack = self.uploads.register(writer.finish());
        let mut session = lock(&self.session);
        for e in &pack.entries {
            let at = session.place(pack.id, e);
            session.pending.insert(e.id, Pending::Uploading(at));
        }
        pack
    }

    /// Records the uploads finished so far, then starts uploading `pack` in
    /// the background (waiting while [`OpenOptions::transfers`] are in
    /// flight). An earlier upload that failed is returned as the error.
    fn upload_pack(&self, pack: Arc<FinishedPack>) -> Result<()> {
        let recorded = self.record_uploads(self.uploads.take_finished());
        self.uploads.start(&self.backend, pack);
        recorded
    }

    /// Records finished uploads: the blobs of an uploaded pack wait for an
    /// index file (written here once enough packs wait, a checkpoint); the
    /// blobs of a pack that failed are forgotten, so a retry stores them,
    /// and the first failure is returned.
    fn record_uploads(&self, finished: Vec<Finished>) -> Result<()> {
        let mut failure = None;
        let checkpoint = {
            let mut session = lock(&self.session);
            for pack in finished {
                match pack.result {
                    Ok(()) => {
                        self.counters.packs.fetch_add(1, Ordering::Relaxed);
                        for e in &pack.entries {
                            let at = session.place(pack.id, e);
                            session.pending.insert(e.id, Pending::Packed(at));
                        }
                        session.unindexed.push(PackBlobs {
                            pack: pack.id,
                            blobs: pack.entries,
                        });
                    }
                    Err(e) => {
                        for e in &pack.entries {
                            session.pending.remove(&e.id);
                        }
                        failure.get_or_insert(e);
                    }
                }
                self.uploads.forget(&pack.id);
            }
            // Checkpoints of exactly `checkpoint_packs` packs each, however
            // many uploads finished at once.
            let mut checkpoints = Vec::new();
            if failure.is_none() {
                while session.unindexed.len() >= self.checkpoint_packs {
                    let rest = session.unindexed.split_off(self.checkpoint_packs);
                    checkpoints.push(std::mem::replace(&mut session.unindexed, rest));
                }
            }
            checkpoints
        };
        // After a failure the packs that did go up wait: indexed by the
        // next checkpoint or flush, if any; else leftovers, as after a crash.
        if let Some(e) = failure {
            return Err(e.into());
        }
        let mut checkpoints = checkpoint.into_iter();
        while let Some(packs) = checkpoints.next() {
            if let Err(e) = self.write_index(packs) {
                // write_index put its own packs back; these wait too.
                lock(&self.session).unindexed.extend(checkpoints.flatten());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes an index file for uploaded packs, merges it into the cache and
    /// moves its blobs from the session's map into the dedup set.
    fn write_index(&self, packs: Vec<PackBlobs>) -> Result<()> {
        let file = IndexFile {
            supersedes: Vec::new(),
            packs,
        };
        let bytes = file.seal(&self.keys, self.rng.as_ref())?;
        let id = Id::of_object(&bytes);
        if let Err(e) = self.write_content_named(ObjectKind::Index, &id, &bytes) {
            // Put the packs back so a later flush retries the index.
            lock(&self.session).unindexed.extend(file.packs);
            return Err(e);
        }
        self.counters.index_files.fetch_add(1, Ordering::Relaxed);
        lock(&self.cache).add_index_file(&id, &file)?;
        let mut session = lock(&self.session);
        let mut known = self.known_mut();
        known.merge(
            file.packs
                .iter()
                .flat_map(|p| p.blobs.iter().map(|b| b.id.prefix_u128())),
        );
        for p in &file.packs {
            for b in &p.blobs {
                session.pending.remove(&b.id);
            }
        }
        Ok(())
    }

    /// Uploads the open packs and writes the index for everything this
    /// session has stored. After it returns, every saved blob is durable and
    /// indexed.
    pub fn flush(&self) -> Result<()> {
        for slot in &self.packers {
            let pack = {
                let mut slot = lock(slot);
                slot.take()
                    .filter(|p| !p.is_empty())
                    .map(|p| self.hand_over(p))
            };
            if let Some(pack) = pack {
                self.upload_pack(pack)?;
            }
        }
        self.record_uploads(self.uploads.wait_all())?;
        let rest = std::mem::take(&mut lock(&self.session).unindexed);
        if !rest.is_empty() {
            self.write_index(rest)?;
        }
        Ok(())
    }

    /// Loads, decrypts, decompresses and verifies a blob (a blob stored as
    /// a patch is rebuilt from its base).
    pub fn load_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let (entry, opened, what) = self.load_opened(id)?;
        self.finish_opened(&entry, opened, || what)
    }

    /// Loads a blob as stored: whole, or as its patch encoding.
    fn load_opened(&self, id: &Id) -> Result<(BlobEntry, OpenedBlob, String)> {
        // A blob of this session moves from the open pack to the uploads to
        // the target; each move is made before the place it leaves is
        // cleared, so a look that misses it finds it on the next round.
        let mut rounds = 0;
        let (pack, entry) = loop {
            rounds += 1;
            let pending = {
                let session = lock(&self.session);
                match session.pending.get(id) {
                    Some(Pending::Packed(at)) => Some(Ok(session.located(id, at))),
                    Some(Pending::Uploading(at)) => Some(Err(Ok(session.located(id, at)))),
                    Some(Pending::InPacker(t)) => Some(Err(Err(*t))),
                    None => None,
                }
            };
            match pending {
                Some(Ok(location)) => break location,
                Some(Err(Ok((pack, entry)))) => match self.uploads.pack(&pack) {
                    Some(HeldPack::InMemory(p)) => return self.open_uploading(&p, &entry),
                    Some(HeldPack::OnTarget) => break (pack, entry),
                    None if rounds < 100 => continue,
                    None => return Err(Error::BlobNotFound(*id)),
                },
                Some(Err(Err(blob_type))) => match self.load_unuploaded(blob_type, id) {
                    Err(Error::BlobNotFound(_)) if rounds < 100 => {
                        std::thread::yield_now();
                        continue;
                    }
                    other => return other,
                },
                None => {
                    break lock(&self.cache)
                        .lookup(id)?
                        .ok_or(Error::BlobNotFound(*id))?;
                }
            }
        };
        let what = format!("blob {id} in pack {pack}");
        if entry.compression == Compression::Grouped
            && let Some(plain) = self.groups.get(&(pack, entry.offset))
        {
            let mut member = group_members(&self.keys, &plain, &[&entry], &pack)?;
            return Ok((entry, OpenedBlob::Whole(member.remove(0)), what));
        }
        let cipher = self.pack_cipher(&pack)?;
        let mut sealed = self.backend.read_range(
            &Handle::new(ObjectKind::Pack, &pack),
            entry.offset.into(),
            entry.stored_len.into(),
        )?;
        if entry.compression == Compression::Grouped {
            let mut member = self.open_group_cached(&cipher, &[&entry], &mut sealed, &pack)?;
            return Ok((entry, OpenedBlob::Whole(member.remove(0)), what));
        }
        let opened = open_stored(&cipher, &self.keys, &entry, sealed, &pack)?;
        Ok((entry, opened, what))
    }

    /// The plaintext of an opened blob: a patch is applied to its bases,
    /// which must be stored whole (chains are refused), and the result is
    /// verified against the blob's id. `what` names the blob in errors; it
    /// is called only for a patch (formatting a name for every blob of a
    /// restore cost 1% of its CPU).
    fn finish_opened(
        &self,
        entry: &BlobEntry,
        opened: OpenedBlob,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>> {
        match opened {
            OpenedBlob::Whole(plain) => Ok(plain),
            OpenedBlob::Patch(encoding) => self.rebuild(entry, &encoding, &HashMap::new(), &what()),
        }
    }

    /// Loads a patch's base, which must be stored whole.
    fn load_whole(&self, base: &Id, patch: &str) -> Result<Vec<u8>> {
        match self.load_opened(base)? {
            (_, OpenedBlob::Whole(plain), _) => Ok(plain),
            (_, OpenedBlob::Patch(_), _) => Err(Error::corrupt(
                patch,
                format!("its base {base} is itself a patch (chains are not allowed)"),
            )),
        }
    }

    /// What a new blob found at the place of blob `id` (the same disk
    /// offsets in the previous backup) can be stored as a patch of: `id`
    /// itself when it is stored whole, else the bases of its patch, each
    /// placed by the patch's first copy from it.
    pub fn patch_base(&self, id: &Id) -> Result<Vec<PatchBase>> {
        let (_, opened, what) = self.load_opened(id)?;
        let encoding = match opened {
            OpenedBlob::Whole(data) => {
                return Ok(vec![PatchBase {
                    id: *id,
                    data,
                    shift: 0,
                }]);
            }
            OpenedBlob::Patch(encoding) => encoding,
        };
        let patch = Patch::decode(&encoding).map_err(|e| Error::corrupt(&what, e.to_string()))?;
        let mut out = Vec::with_capacity(patch.bases.len());
        for (n, (base, _)) in patch.bases.iter().enumerate() {
            if let Some(shift) = patch.base_shift(n as u8) {
                out.push(PatchBase {
                    id: *base,
                    data: self.load_whole(base, &what)?,
                    shift,
                });
            }
        }
        Ok(out)
    }

    /// A blob's entry once its pack is finished: indexed, uploaded or
    /// being uploaded (not while its pack is still open).
    fn finished_entry(&self, id: &Id) -> Result<Option<BlobEntry>> {
        {
            let session = lock(&self.session);
            match session.pending.get(id) {
                Some(Pending::Packed(at) | Pending::Uploading(at)) => {
                    return Ok(Some(session.located(id, at).1));
                }
                Some(Pending::InPacker(_)) => return Ok(None),
                None => {}
            }
        }
        Ok(lock(&self.cache).lookup(id)?.map(|(_, entry)| entry))
    }

    /// Where the index says a blob is: its pack and entry.
    pub fn locate_blob(&self, id: &Id) -> Result<Option<(Id, BlobEntry)>> {
        {
            let session = lock(&self.session);
            if let Some(Pending::Packed(at)) = session.pending.get(id) {
                return Ok(Some(session.located(id, at)));
            }
        }
        lock(&self.cache).lookup(id)
    }

    /// Loads a blob from a known location in a pack (restore planners call
    /// this after grouping blobs by pack).
    pub fn load_from_pack(&self, pack: &Id, entry: &BlobEntry) -> Result<Vec<u8>> {
        let (cipher, sealed) = self.read_sealed(pack, entry)?;
        let opened = open_stored(&cipher, &self.keys, entry, sealed, pack)?;
        self.finish_opened(entry, opened, || {
            format!("blob {} in pack {pack}", entry.id)
        })
    }

    /// Loads several blobs of one pack with as few ranged reads as possible:
    /// blobs closer than `max_gap` bytes are fetched in one read (the bytes
    /// between them are read and discarded), no read spans more than
    /// `max_read` bytes unless one blob does. Returns the plaintexts in the
    /// order of `entries`, each verified against its id.
    pub fn load_pack_blobs(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        max_gap: u64,
        max_read: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let handle = Handle::new(ObjectKind::Pack, pack);
        self.load_pack_opened(pack, entries, max_gap, max_read)?
            .into_iter()
            .zip(entries)
            .map(|(opened, e)| {
                self.finish_opened(e, opened, || format!("blob {} in {handle}", e.id))
            })
            .collect()
    }

    /// [`Self::load_pack_blobs`] without applying patches: a blob stored
    /// whole comes back as its verified plaintext, a patch as its
    /// authenticated encoding, to be rebuilt with [`Self::apply_patch`]
    /// once its bases are at hand (a restore fetches the bases of many
    /// patches together, pack by pack, instead of one by one).
    pub fn load_pack_opened(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        max_gap: u64,
        max_read: u64,
    ) -> Result<Vec<OpenedBlob>> {
        let cipher = self.pack_cipher(pack)?;
        let mut out: Vec<Option<OpenedBlob>> = vec![None; entries.len()];
        let (hits, rest) = self.split_cached(pack, entries);
        for (k, plain) in hits {
            let mut member = group_members(&self.keys, &plain, &[&entries[k]], pack)?;
            out[k] = Some(OpenedBlob::Whole(member.remove(0)));
        }
        let sub: Vec<BlobEntry> = rest.iter().map(|&k| entries[k]).collect();
        self.read_coalesced(pack, &sub, max_gap, max_read, &mut |shared, sealed| {
            if let Some(entry) = alone(&sub, shared, pack)? {
                let opened = open_stored(&cipher, &self.keys, entry, sealed.to_vec(), pack)?;
                for &i in shared {
                    out[rest[i]] = Some(opened.clone());
                }
                return Ok(());
            }
            let members: Vec<&BlobEntry> = shared.iter().map(|&i| &sub[i]).collect();
            let opened = self.open_group_cached(&cipher, &members, sealed, pack)?;
            for (&i, plain) in shared.iter().zip(opened) {
                out[rest[i]] = Some(OpenedBlob::Whole(plain));
            }
            Ok(())
        })?;
        Ok(out.into_iter().flatten().collect())
    }

    /// [`Self::load_pack_opened`] into the caller's buffers: each blob
    /// stored whole is decompressed straight into `dests[k]` (exactly its
    /// length) and verified there, with no copy of its own; a patch comes
    /// back as `Some(encoding)` at its position, its `dests[k]` untouched.
    /// A disk restore fills its window buffer this way. `entries` must be
    /// distinct blobs.
    pub fn load_pack_into(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        dests: &mut [&mut [u8]],
        max_gap: u64,
        max_read: u64,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        if dests.len() != entries.len() {
            return Err(Error::corrupt(
                format!("pack {pack}"),
                "internal error: one destination per blob is needed",
            ));
        }
        let cipher = self.pack_cipher(pack)?;
        let mut patches: Vec<Option<Vec<u8>>> = vec![None; entries.len()];
        let length_error = |e: &BlobEntry| {
            Error::corrupt(
                format!("blob {} in pack {pack}", e.id),
                "length differs from the index",
            )
        };
        let (hits, rest) = self.split_cached(pack, entries);
        for (k, plain) in hits {
            self.group_members_into(&plain, &[&entries[k]], &[k], dests, pack)?;
        }
        let sub: Vec<BlobEntry> = rest.iter().map(|&k| entries[k]).collect();
        self.read_coalesced(pack, &sub, max_gap, max_read, &mut |shared, sealed| {
            if let Some(entry) = alone(&sub, shared, pack)? {
                let first = rest[shared[0]];
                patches[first] =
                    open_stored_into(&cipher, &self.keys, entry, sealed, pack, dests[first])?;
                // The same blob asked for twice: copied.
                for &i in &shared[1..] {
                    let k = rest[i];
                    let done = dests[first].to_vec();
                    if dests[k].len() != done.len() {
                        return Err(length_error(entry));
                    }
                    dests[k].copy_from_slice(&done);
                    patches[k] = patches[first].clone();
                }
                return Ok(());
            }
            let members: Vec<&BlobEntry> = shared.iter().map(|&i| &sub[i]).collect();
            let positions: Vec<usize> = shared.iter().map(|&i| rest[i]).collect();
            let plain = self.open_group_plain_cached(&cipher, &members, sealed, pack)?;
            self.group_members_into(&plain, &members, &positions, dests, pack)
        })?;
        Ok(patches)
    }

    /// Copies blobs of `pack` into the open packs of this session as they
    /// are stored (decrypted and sealed again under the new pack's key, not
    /// decompressed: a patch stays a patch of the same bases), even though
    /// the index already names them elsewhere. Prune repacks with it; the
    /// copies are uploaded and indexed like any new blob (at checkpoints and
    /// by [`Self::flush`]). Returns the bytes stored for the copies.
    pub fn copy_blobs_from_pack(&self, pack: &Id, entries: &[BlobEntry]) -> Result<u64> {
        let cipher = self.pack_cipher(pack)?;
        let mut stored = 0;
        self.read_coalesced(pack, entries, 1 << 20, 16 << 20, &mut |shared, sealed| {
            if let Some(e) = alone(entries, shared, pack)? {
                let mut stored_form = sealed.to_vec();
                if !cipher.open_in_place(e.offset.into(), &entry_aad(e), &mut stored_form) {
                    return Err(Error::corrupt(
                        format!("blob {} in pack {pack}", e.id),
                        "authentication failed (damaged or forged)",
                    ));
                }
                let outcome = self.append_pending(
                    e.blob_type,
                    e.id,
                    e.raw_len,
                    e.compression,
                    &stored_form,
                    Dedup::Session,
                )?;
                stored += outcome.stored_len;
                return Ok(());
            }
            // The members wanted from a group (perhaps not all of it) form
            // a new group: decompressed and compressed again.
            let members: Vec<&BlobEntry> = shared.iter().map(|&k| &entries[k]).collect();
            let opened = open_group(&cipher, &self.keys, &members, sealed, pack)?;
            let grouped: Vec<(Id, &[u8])> = members
                .iter()
                .zip(&opened)
                .map(|(e, plain)| (e.id, plain.as_slice()))
                .collect();
            for outcome in self.store_group(
                members[0].blob_type,
                &grouped,
                crate::group::TARGET_GROUP_LEN,
                Dedup::Session,
            )? {
                stored += outcome.stored_len;
            }
            Ok(())
        })?;
        Ok(stored)
    }

    /// Opens a solid group's members from its ciphertext (see
    /// [`open_group`]) and keeps its plaintext in the group cache.
    fn open_group_cached(
        &self,
        cipher: &ObjectCipher,
        members: &[&BlobEntry],
        sealed: &mut [u8],
        pack: &Id,
    ) -> Result<Vec<Vec<u8>>> {
        let plain = self.open_group_plain_cached(cipher, members, sealed, pack)?;
        group_members(&self.keys, &plain, members, pack)
    }

    /// The plaintext of a solid group from its ciphertext (see
    /// [`open_group_plain`]), kept in the group cache.
    fn open_group_plain_cached(
        &self,
        cipher: &ObjectCipher,
        members: &[&BlobEntry],
        sealed: &mut [u8],
        pack: &Id,
    ) -> Result<Arc<Vec<u8>>> {
        let plain = Arc::new(open_group_plain(cipher, members, sealed, pack)?);
        if let Some(first) = members.first() {
            self.groups.insert((*pack, first.offset), plain.clone());
        }
        Ok(plain)
    }

    /// Copies members of one group from its plaintext into their
    /// destinations (`members[i]` into `dests[positions[i]]`), each
    /// checked against its entry's length and id there.
    fn group_members_into(
        &self,
        plain: &[u8],
        members: &[&BlobEntry],
        positions: &[usize],
        dests: &mut [&mut [u8]],
        pack: &Id,
    ) -> Result<()> {
        let Some(first) = members.first() else {
            return Ok(());
        };
        let what = || format!("blob group at offset {} in pack {pack}", first.offset);
        let group = crate::group::Group::parse(plain, &what())?;
        for (m, &k) in members.iter().zip(positions) {
            dests[k].copy_from_slice(group_member(&group, m, dests[k].len(), &what)?);
            if self.keys.blob_id(dests[k]) != m.id {
                return Err(Error::corrupt(
                    format!("blob {} in pack {pack}", m.id),
                    "content does not match its id",
                ));
            }
        }
        Ok(())
    }

    /// Positions among `entries` of the members whose group the group cache
    /// holds, with that group's plaintext; and the positions of the rest.
    fn split_cached(&self, pack: &Id, entries: &[BlobEntry]) -> (CachedMembers, Vec<usize>) {
        let mut hits = Vec::new();
        let mut rest = Vec::with_capacity(entries.len());
        for (k, e) in entries.iter().enumerate() {
            let cached = (e.compression == Compression::Grouped)
                .then(|| self.groups.get(&(*pack, e.offset)))
                .flatten();
            match cached {
                Some(plain) => hits.push((k, plain)),
                None => rest.push(k),
            }
        }
        (hits, rest)
    }

    /// Reads the ciphertexts of `entries` of `pack` with as few ranged reads
    /// as possible (see [`Self::load_pack_blobs`]) and hands each to `each`
    /// with the positions in `entries` it serves, in offset order: one
    /// position for a blob stored alone, all the requested members of a
    /// solid group for its shared ciphertext. `each` may decrypt in place:
    /// the slice is its own (distinct ciphertexts of a valid pack never
    /// overlap; a forged overlap then fails to authenticate).
    fn read_coalesced(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        max_gap: u64,
        max_read: u64,
        each: &mut SharedRangeFn<'_>,
    ) -> Result<()> {
        let handle = Handle::new(ObjectKind::Pack, pack);
        for (start, end, members) in coalesced_reads(entries, max_gap, max_read) {
            let mut bytes = self.backend.read_range(&handle, start, end - start)?;
            for shared in members.chunk_by(|&a, &b| {
                (entries[a].offset, entries[a].stored_len)
                    == (entries[b].offset, entries[b].stored_len)
            }) {
                let e = &entries[shared[0]];
                let from = (u64::from(e.offset) - start) as usize;
                let sealed = bytes
                    .get_mut(from..from + e.stored_len as usize)
                    .ok_or_else(|| {
                        Error::corrupt(handle.to_string(), "the target returned a short read")
                    })?;
                each(shared, sealed)?;
            }
        }
        Ok(())
    }

    /// Tells the target that these blobs of `pack` will be read soon, in
    /// the ranged reads `load_pack_*` would make (see
    /// [`Backend::prefetch`]): a restore announces its next window's reads
    /// while it fetches the current one.
    pub fn prefetch_pack_blobs(
        &self,
        pack: &Id,
        entries: &[BlobEntry],
        max_gap: u64,
        max_read: u64,
    ) {
        let handle = Handle::new(ObjectKind::Pack, pack);
        for (start, end, _) in coalesced_reads(entries, max_gap, max_read) {
            self.backend.prefetch(&handle, start, end - start);
        }
    }

    /// The bases a patch encoding (from [`Self::load_pack_opened`]) needs.
    pub fn patch_encoding_bases(&self, entry: &BlobEntry, encoding: &[u8]) -> Result<Vec<Id>> {
        let patch = Patch::decode(encoding)
            .map_err(|e| Error::corrupt(format!("blob {}", entry.id), e.to_string()))?;
        Ok(patch.bases.iter().map(|(base, _)| *base).collect())
    }

    /// Rebuilds a patched blob from its encoding and its bases' plaintexts
    /// (`bases` by id; a base not in it is loaded; each must be a blob
    /// stored whole) and verifies the result against the blob's id.
    pub fn apply_patch(
        &self,
        entry: &BlobEntry,
        encoding: &[u8],
        bases: &HashMap<Id, Vec<u8>>,
    ) -> Result<Vec<u8>> {
        self.rebuild(entry, encoding, bases, &format!("blob {}", entry.id))
    }

    fn rebuild(
        &self,
        entry: &BlobEntry,
        encoding: &[u8],
        given: &HashMap<Id, Vec<u8>>,
        what: &str,
    ) -> Result<Vec<u8>> {
        let patch = Patch::decode(encoding).map_err(|e| Error::corrupt(what, e.to_string()))?;
        let mut loaded = Vec::new();
        for (id, _) in &patch.bases {
            if !given.contains_key(id) {
                loaded.push(self.load_whole(id, what)?);
            }
        }
        let mut loaded = loaded.iter();
        let refs: Vec<&[u8]> = patch
            .bases
            .iter()
            .filter_map(|(id, _)| given.get(id).or_else(|| loaded.next()).map(Vec::as_slice))
            .collect();
        let plain = patch
            .apply(&refs, entry.raw_len as usize)
            .map_err(|e| Error::corrupt(what, e.to_string()))?;
        if self.keys.blob_id(&plain) != entry.id {
            return Err(Error::corrupt(
                what,
                "patched content does not match its id",
            ));
        }
        Ok(plain)
    }

    /// The cipher of `pack` and the ciphertext of its blob `entry`.
    fn read_sealed(&self, pack: &Id, entry: &BlobEntry) -> Result<(Arc<ObjectCipher>, Vec<u8>)> {
        let cipher = self.pack_cipher(pack)?;
        let sealed = self.backend.read_range(
            &Handle::new(ObjectKind::Pack, pack),
            entry.offset.into(),
            entry.stored_len.into(),
        )?;
        Ok((cipher, sealed))
    }

    fn pack_cipher(&self, pack: &Id) -> Result<Arc<ObjectCipher>> {
        if let Some(c) = lock(&self.pack_ciphers).get(pack) {
            return Ok(c.clone());
        }
        let handle = Handle::new(ObjectKind::Pack, pack);
        let header = self.backend.read_range(&handle, 0, HEADER_LEN as u64)?;
        let name = handle.to_string();
        let cipher = Arc::new(
            ObjectHeader::decode(&header, ObjectKind::Pack, &name)?.cipher(&self.keys, &name)?,
        );
        let mut ciphers = lock(&self.pack_ciphers);
        if ciphers.len() >= 4096 {
            ciphers.clear();
        }
        ciphers.insert(*pack, cipher.clone());
        Ok(cipher)
    }

    /// Opens a blob of a pack that is being uploaded, from its bytes here.
    fn open_uploading(
        &self,
        pack: &FinishedPack,
        entry: &BlobEntry,
    ) -> Result<(BlobEntry, OpenedBlob, String)> {
        let name = format!("pack {} (being uploaded)", pack.id);
        let cipher = ObjectHeader::decode(&pack.bytes, ObjectKind::Pack, &name)?
            .cipher(&self.keys, &name)?;
        let start = entry.offset as usize;
        let sealed = pack
            .bytes
            .get(start..start + entry.stored_len as usize)
            .ok_or_else(|| Error::corrupt(&name, "a blob lies past its end"))?
            .to_vec();
        let opened = open_stored(&cipher, &self.keys, entry, sealed, &pack.id)?;
        Ok((
            *entry,
            opened,
            format!("blob {} in pack {}", entry.id, pack.id),
        ))
    }

    fn load_unuploaded(
        &self,
        blob_type: BlobType,
        id: &Id,
    ) -> Result<(BlobEntry, OpenedBlob, String)> {
        let slot = lock(&self.packers[packer_slot(blob_type)]);
        let found = slot.as_ref().and_then(|p| {
            let entry = p.entries().iter().find(|e| e.id == *id)?;
            Some((*entry, p.stored_form(entry)?))
        });
        drop(slot);
        let (entry, stored) = found.ok_or(Error::BlobNotFound(*id))?;
        let what = format!("unuploaded blob {id}");
        let opened = crate::pack::decode_stored(&self.keys, &entry, stored, &what)?;
        Ok((entry, opened, what))
    }

    /// Reads a whole pack and verifies it: its bytes against its name, its
    /// trailer, every blob (decrypt, decompress, id), and the trailer against
    /// what the index says about the pack. Returns its blobs.
    pub fn verify_pack(&self, pack: &Id) -> Result<Vec<BlobEntry>> {
        let handle = Handle::new(ObjectKind::Pack, pack);
        let name = handle.to_string();
        let bytes = self.read_verified(&handle, pack)?;
        let entries = read_trailer(&bytes, &self.keys, &name)?;
        let cipher =
            ObjectHeader::decode(&bytes, ObjectKind::Pack, &name)?.cipher(&self.keys, &name)?;
        // Members of a solid group share one ciphertext, opened once.
        for run in entries.chunk_by(|a, b| (a.offset, a.stored_len) == (b.offset, b.stored_len)) {
            let first = &run[0];
            let start = first.offset as usize;
            let sealed = bytes
                .get(start..start + first.stored_len as usize)
                .ok_or_else(|| Error::corrupt(&name, "blob outside the pack"))?;
            if run.len() == 1 && first.compression != Compression::Grouped {
                let opened = open_stored(&cipher, &self.keys, first, sealed.to_vec(), pack)?;
                self.finish_opened(first, opened, || name.clone())?;
            } else {
                let members: Vec<&BlobEntry> = run.iter().collect();
                open_group(&cipher, &self.keys, &members, &mut sealed.to_vec(), pack)?;
            }
        }
        for entry in &entries {
            let indexed = lock(&self.cache).lookup(&entry.id)?;
            if let Some((indexed_pack, indexed)) = indexed
                && indexed_pack == *pack
                && indexed != *entry
            {
                return Err(Error::corrupt(
                    &name,
                    format!("blob {} differs between the pack and the index", entry.id),
                ));
            }
        }
        Ok(entries)
    }

    /// Writes a snapshot manifest, after flushing so that everything it
    /// references is indexed. Its root must be in the repository.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        self.flush()?;
        if !self.has_blob(&snapshot.root) {
            return Err(Error::InvalidInput(format!(
                "snapshot root {} is not in the repository",
                snapshot.root
            )));
        }
        let bytes = snapshot.seal(&self.keys, self.rng.as_ref())?;
        let id = Id::of_object(&bytes);
        self.write_content_named(ObjectKind::Snapshot, &id, &bytes)?;
        Ok(id)
    }

    /// Every readable snapshot, oldest first. A manifest that is damaged
    /// (or vanished since the listing, or of a newer version) is left out;
    /// [`Self::list_snapshots_reporting`] says which, so callers can warn.
    pub fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        Ok(self.list_snapshots_reporting()?.snapshots)
    }

    /// Every snapshot, oldest first, and the manifests that could not be
    /// read with why. Only failures of the target itself (not of one
    /// manifest) are errors.
    pub fn list_snapshots_reporting(&self) -> Result<SnapshotListing> {
        let mut out = SnapshotListing::default();
        for info in self.backend.list(ObjectKind::Snapshot)? {
            let Ok(id) = info.handle.name.parse::<Id>() else {
                continue;
            };
            match self.load_snapshot(&id) {
                Ok(s) => out.snapshots.push((id, s)),
                Err(e) if e.is_damage() => out.unreadable.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        out.snapshots
            .sort_by_key(|a| (a.1.time, a.1.time_nanos, a.0));
        Ok(out)
    }

    /// One snapshot by id.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let handle = Handle::new(ObjectKind::Snapshot, id);
        let bytes = self.read_verified(&handle, id)?;
        Snapshot::open(&bytes, &self.keys, &handle.to_string())
    }

    /// Resolves `latest`, a full id or a unique id prefix among `snapshots`.
    pub fn resolve_snapshot<'a>(
        spec: &str,
        snapshots: &'a [(Id, Snapshot)],
    ) -> Result<&'a (Id, Snapshot)> {
        if spec == "latest" {
            return snapshots.last().ok_or_else(|| {
                Error::SnapshotNotFound(
                    "latest: the repository has no snapshot (matching the filters)".into(),
                )
            });
        }
        let spec_lc = spec.to_ascii_lowercase();
        let mut matches = snapshots
            .iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_lc));
        match (matches.next(), matches.next()) {
            (Some(one), None) if !spec.is_empty() => Ok(one),
            (Some(_), Some(_)) => Err(Error::SnapshotNotFound(format!(
                "{spec}: the prefix matches several snapshots; give more digits"
            ))),
            _ => Err(Error::SnapshotNotFound(format!("{spec}: no such snapshot"))),
        }
    }

    /// Adds a key file (another password or raw key) for the same secrets.
    pub fn add_key(
        &self,
        credential: &Credential<'_>,
        kdf: &KdfParams,
        info: &KeyFileInfo,
    ) -> Result<Id> {
        let bytes = seal_key_file(&self.keys, credential, kdf, info, self.rng.as_ref())?;
        let id = Id::of_object(&bytes);
        self.backend
            .write_new(&Handle::new(ObjectKind::Key, &id), &bytes)?;
        Ok(id)
    }

    /// Takes a repository lock: shared for backups (they never wait on each
    /// other), exclusive for operations that delete. Released on drop.
    pub fn lock(&self, hostname: &str, operation: &str, exclusive: bool) -> Result<RepoLock> {
        RepoLock::acquire(
            self.backend.clone(),
            &self.keys,
            self.rng.clone(),
            hostname,
            operation,
            exclusive,
        )
    }

    /// Number of blobs in the dedup set (stored and indexed).
    pub fn indexed_blob_count(&self) -> usize {
        self.known().len()
    }

    /// The blobs a stored blob is a patch of (docs/format.md §2.5.1): empty
    /// when it is stored whole, its bases (whole blobs, at most
    /// [`crate::patch::MAX_BASES`]) when it is a patch. Only a patch's
    /// encoding is read; a whole blob costs an index lookup. A blob is
    /// reachable when a snapshot references it or it is a base of a
    /// reachable patch, so prune and check follow these.
    pub fn patch_bases(&self, id: &Id) -> Result<Vec<Id>> {
        let pending = match lock(&self.session).pending.get(id) {
            Some(Pending::Packed(at) | Pending::Uploading(at)) => Some(at.compression),
            // Not uploaded yet: load_opened reads it from the open pack.
            Some(Pending::InPacker(_)) => Some(Compression::Patch),
            None => None,
        };
        let compression = match pending {
            Some(c) => c,
            None => {
                lock(&self.cache)
                    .lookup(id)?
                    .ok_or(Error::BlobNotFound(*id))?
                    .1
                    .compression
            }
        };
        if compression != Compression::Patch {
            return Ok(Vec::new());
        }
        match self.load_opened(id)? {
            (_, OpenedBlob::Whole(_), _) => Ok(Vec::new()),
            (_, OpenedBlob::Patch(encoding), what) => {
                let patch =
                    Patch::decode(&encoding).map_err(|e| Error::corrupt(&what, e.to_string()))?;
                Ok(patch.bases.iter().map(|(base, _)| *base).collect())
            }
        }
    }

    /// The ids of the index files on the target (superseded ones included).
    pub fn index_file_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .backend
            .list(ObjectKind::Index)?
            .iter()
            .filter_map(|i| i.handle.name.parse().ok())
            .collect())
    }

    /// Replaces the index files `old` with one index file naming the same
    /// packs and blobs, minus the entries `retire` picks (copies of blobs
    /// that now live elsewhere); a pack left with no entries is no longer
    /// indexed, which makes it a leftover for prune. Flushes first, so this
    /// session's own index files (never in `old`, which the caller listed
    /// before it stored anything) keep the new copies. Files of `old` that
    /// have gone meanwhile are skipped. The new file supersedes the old ones
    /// (§2.6) before they are deleted, so a crash between the two steps
    /// leaves readers a consistent index. Returns the new file's id, or
    /// `None` when none of `old` was left to replace.
    pub fn supersede_index(
        &self,
        old: &[Id],
        retire: &dyn Fn(&Id, &BlobEntry) -> bool,
    ) -> Result<Option<Id>> {
        self.flush()?;
        let mut replaced = Vec::with_capacity(old.len());
        let mut packs: std::collections::BTreeMap<Id, HashMap<Id, BlobEntry>> =
            std::collections::BTreeMap::new();
        for id in old {
            let file = match self.read_index(id) {
                Ok(f) => f,
                Err(Error::Backend(e)) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            replaced.push(*id);
            for pack in file.packs {
                let entries = packs.entry(pack.pack).or_default();
                for blob in pack.blobs {
                    if !retire(&pack.pack, &blob) {
                        entries.insert(blob.id, blob);
                    }
                }
            }
        }
        if replaced.is_empty() {
            return Ok(None);
        }
        let file = IndexFile {
            supersedes: replaced.clone(),
            packs: packs
                .into_iter()
                .filter(|(_, blobs)| !blobs.is_empty())
                .map(|(pack, blobs)| {
                    let mut blobs: Vec<BlobEntry> = blobs.into_values().collect();
                    blobs.sort_by_key(|b| b.offset);
                    PackBlobs { pack, blobs }
                })
                .collect(),
        };
        let bytes = file.seal(&self.keys, self.rng.as_ref())?;
        let new_id = Id::of_object(&bytes);
        self.write_content_named(ObjectKind::Index, &new_id, &bytes)?;
        self.counters.index_files.fetch_add(1, Ordering::Relaxed);
        for id in &replaced {
            match self.backend.delete(&Handle::new(ObjectKind::Index, id)) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.refresh_index()?;
        Ok(Some(new_id))
    }

    /// Stored bytes of the blobs the index names in each pack (a pack's
    /// size, less its header and trailer, as far as the index knows it).
    pub fn indexed_pack_bytes(&self) -> Result<HashMap<Id, u64>> {
        lock(&self.cache).pack_bytes()
    }

    /// Reads, verifies and parses one index file from the target.
    pub fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        self.read_index(id)
    }

    /// Reads a pack's trailer with two ranged reads (its header and its
    /// tail) instead of the whole pack. Returns the pack's size on the
    /// target and its blobs as the pack itself lists them.
    pub fn read_pack_trailer(&self, pack: &Id) -> Result<(u64, Vec<BlobEntry>)> {
        let handle = Handle::new(ObjectKind::Pack, pack);
        let name = handle.to_string();
        let size = self.backend.stat(&handle)?.size;
        if size < (HEADER_LEN + crate::crypto::TAG_LEN + 8) as u64 {
            return Err(Error::corrupt(&name, "too short for a pack"));
        }
        let header = self.backend.read_range(&handle, 0, HEADER_LEN as u64)?;
        let tail = self.backend.read_range(&handle, size - 4, 4)?;
        let trailer_len = tail
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| Error::corrupt(&name, "the target returned a short read"))?;
        let start = trailer_start(size, trailer_len, &name)?;
        let sealed = self
            .backend
            .read_range(&handle, start, u64::from(trailer_len))?;
        let entries = decode_trailer(&header, &sealed, start, &self.keys, &name)?;
        Ok((size, entries))
    }

    /// The ids of the snapshot objects on the target, unread (a checker
    /// loads each on its own so one damaged manifest does not hide the
    /// others).
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .backend
            .list(ObjectKind::Snapshot)?
            .iter()
            .filter_map(|i| i.handle.name.parse().ok())
            .collect())
    }

    /// Deletes a snapshot manifest (the blobs it references stay until a
    /// prune). Returns `false` when it was already gone.
    pub fn delete_snapshot(&self, id: &Id) -> Result<bool> {
        self.delete_object(ObjectKind::Snapshot, id)
    }

    /// Deletes an object of `kind` (prune deletes packs, index files and
    /// plans this way). Returns `false` when it was already gone, so every
    /// deletion can be repeated after a crash.
    pub fn delete_object(&self, kind: ObjectKind, id: &Id) -> Result<bool> {
        match self.backend.delete(&Handle::new(kind, id)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes an index file as it is given (prune writes the one that
    /// supersedes the index files it replaces, and re-indexes packs from
    /// their trailers) and returns its id. The packs it names must be
    /// stored. The cache picks it up at the next [`Self::refresh_index`].
    pub fn write_index_file(&self, file: &IndexFile) -> Result<Id> {
        let bytes = file.seal(&self.keys, self.rng.as_ref())?;
        let id = Id::of_object(&bytes);
        self.write_content_named(ObjectKind::Index, &id, &bytes)?;
        Ok(id)
    }

    /// Writes a prune plan and returns its id.
    pub fn write_plan(&self, plan: &PrunePlan) -> Result<Id> {
        let bytes = plan.seal(&self.keys, self.rng.as_ref())?;
        let id = Id::of_object(&bytes);
        self.write_content_named(ObjectKind::Plan, &id, &bytes)?;
        Ok(id)
    }

    /// The ids of the prune plans on the target, unread.
    pub fn plan_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .backend
            .list(ObjectKind::Plan)?
            .iter()
            .filter_map(|i| i.handle.name.parse().ok())
            .collect())
    }

    /// Reads, verifies and parses one prune plan.
    pub fn load_plan(&self, id: &Id) -> Result<PrunePlan> {
        let handle = Handle::new(ObjectKind::Plan, id);
        let bytes = self.read_verified(&handle, id)?;
        PrunePlan::open(&bytes, &self.keys, &handle.to_string())
    }

    /// The key file this repository was opened (or created) with.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// Every key file of the repository, in id order. A key file that does
    /// not parse is listed with the reason, not an error.
    pub fn list_keys(&self) -> Result<Vec<KeyListing>> {
        let mut out = Vec::new();
        for info in self.backend.list(ObjectKind::Key)? {
            let Ok(id) = info.handle.name.parse::<Id>() else {
                continue;
            };
            let bytes = match crate::backend::read_listed(self.backend.as_ref(), &info) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let name = info.handle.to_string();
            let listing = match KeyFile::parse(&bytes, &name) {
                Ok(kf) => KeyListing {
                    id,
                    current: id == self.key_id,
                    password: kf.is_password(),
                    info: kf.info.clone(),
                    damaged: None,
                },
                Err(e) => KeyListing {
                    id,
                    current: id == self.key_id,
                    password: false,
                    info: KeyFileInfo::default(),
                    damaged: Some(e.to_string()),
                },
            };
            out.push(listing);
        }
        out.sort_by_key(|k| k.id);
        Ok(out)
    }

    /// Finds a key file by full id or unique prefix.
    pub fn resolve_key(&self, spec: &str) -> Result<Id> {
        let spec_lc = spec.trim().to_ascii_lowercase();
        if spec_lc.is_empty() {
            return Err(Error::KeyNotFound("an empty key id was given".into()));
        }
        let keys = self.list_keys()?;
        let mut matches = keys.iter().filter(|k| k.id.to_hex().starts_with(&spec_lc));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one.id),
            (Some(_), Some(_)) => Err(Error::KeyNotFound(format!(
                "{spec}: the prefix matches several key files; give more digits"
            ))),
            _ => Err(Error::KeyNotFound(format!(
                "{spec}: no such key file (see `cairn key list`)"
            ))),
        }
    }

    /// Removes a key file. Refuses the key this repository was opened with
    /// ([`Error::KeyInUse`]) and the last key file that parses
    /// ([`Error::LastKey`]). Callers hold an exclusive lock so that two
    /// removals cannot race each other down to no key at all.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.key_id {
            return Err(Error::KeyInUse(*id));
        }
        self.remove_key_checked(id)
    }

    fn remove_key_checked(&self, id: &Id) -> Result<()> {
        let keys = self.list_keys()?;
        if !keys.iter().any(|k| k.id == *id) {
            return Err(Error::KeyNotFound(format!(
                "{id}: no such key file (see `cairn key list`)"
            )));
        }
        if !keys.iter().any(|k| k.id != *id && k.damaged.is_none()) {
            return Err(Error::LastKey(*id));
        }
        match self.backend.delete(&Handle::new(ObjectKind::Key, id)) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the key file this repository was opened with by a new one
    /// under `credential`: the new key file is written first, then the old
    /// one removed, so the repository never is without a key. Returns the
    /// new key file's id. Callers hold an exclusive lock.
    pub fn change_password(
        &mut self,
        credential: &Credential<'_>,
        kdf: &KdfParams,
        info: &KeyFileInfo,
    ) -> Result<Id> {
        let new = self.add_key(credential, kdf, info)?;
        let old = self.key_id;
        self.key_id = new;
        self.remove_key_checked(&old)?;
        Ok(new)
    }

    /// Every lock on the target, each read on its own (a damaged lock is an
    /// error entry, not a failure of the listing).
    pub fn list_locks(&self) -> Result<Vec<(Id, Result<LockInfo>)>> {
        crate::lock::list_locks(self.backend.as_ref(), &self.keys)
    }

    /// Removes the stale locks (expired, or of a process of `hostname` that
    /// is gone); returns how many.
    pub fn remove_stale_locks(&self, hostname: &str) -> Result<usize> {
        crate::lock::remove_stale_locks(self.backend.as_ref(), &self.keys, hostname)
    }

    /// Removes every lock, live or not, readable or not; returns how many.
    /// Only for when the operator knows no other cairn process is running.
    pub fn remove_all_locks(&self) -> Result<usize> {
        crate::lock::remove_all_locks(self.backend.as_ref())
    }
}

/// The entry of a ciphertext [`Repository::read_coalesced`] hands over
/// when it holds one blob alone (asked for once, or several times), `None`
/// when it holds a solid group; an error when entries overlap otherwise.
fn alone<'a>(
    entries: &'a [BlobEntry],
    shared: &[usize],
    pack: &Id,
) -> Result<Option<&'a BlobEntry>> {
    let first = &entries[shared[0]];
    if first.compression == Compression::Grouped {
        return Ok(None);
    }
    if shared.iter().any(|&k| entries[k] != *first) {
        return Err(Error::corrupt(
            format!("pack {pack}"),
            format!("entries overlap at offset {}", first.offset),
        ));
    }
    Ok(Some(first))
}

/// Positions of blobs whose solid group the group cache holds, each with
/// that group's plaintext.
type CachedMembers = Vec<(usize, Arc<Vec<u8>>)>;

/// What [`Repository::read_coalesced`] calls for each distinct ciphertext:
/// the positions of the entries it serves, and its bytes.
type SharedRangeFn<'a> = dyn FnMut(&[usize], &mut [u8]) -> Result<()> + 'a;

/// The ranged reads that fetch `entries` of one pack: entries in offset
/// order, neighbours closer than `max_gap` bytes in one read, no read over
/// `max_read` bytes unless one entry is. Each read: start, end, and the
/// positions in `entries` it serves (in offset order).
fn coalesced_reads(
    entries: &[BlobEntry],
    max_gap: u64,
    max_read: u64,
) -> Vec<(u64, u64, Vec<usize>)> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].offset, entries[i].stored_len));
    let mut reads = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let start = u64::from(entries[order[i]].offset);
        let mut end = start + u64::from(entries[order[i]].stored_len);
        let mut j = i + 1;
        while j < order.len() {
            let e = &entries[order[j]];
            let e_end = u64::from(e.offset) + u64::from(e.stored_len);
            if u64::from(e.offset) > end + max_gap || e_end.max(end) - start > max_read {
                break;
            }
            end = end.max(e_end);
            j += 1;
        }
        reads.push((start, end, order[i..j].to_vec()));
        i = j;
    }
    reads
}

#[cfg(test)]
mod compress_tests {
    use super::*;

    #[test]
    fn a_pending_blob_takes_a_compact_entry() {
        // The session keeps one per new blob until an index names it.
        assert!(std::mem::size_of::<Pending>() <= 24);
    }

    #[test]
    fn random_is_stored_raw_and_text_is_compressed() {
        let mut random = vec![0u8; 16384];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        assert!(!worth_compressing(&random));
        assert!(compress(&random, 3).is_none());
        let text = b"the quick brown fox jumps over the lazy dog; ".repeat(400);
        assert!(worth_compressing(&text));
        assert!(compress(&text, 3).is_some_and(|c| c.len() < text.len() / 4));
        // Small blobs are always tried.
        assert!(worth_compressing(&random[..1000]));
    }
}
