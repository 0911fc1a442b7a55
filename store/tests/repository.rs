#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Round trips, wrong credentials, corruption and crashes, through the
//! public API of cairn-store on the in-memory and local backends.

use cairn_store::backend::{LocalBackend, MemoryBackend};
use cairn_store::repository::{InitOptions, OpenOptions, Repository};
use cairn_store::{
    Backend, BlobType, Credential, Error, Handle, Id, KdfParams, ObjectKind, SeededRandom,
    Snapshot, SnapshotKind,
};
use std::sync::Arc;

const PW: Credential<'static> = Credential::Password(b"correct horse");

fn init_options() -> InitOptions {
    let mut o = InitOptions::for_tests();
    o.pack_size = 256 * 1024;
    o
}

fn opts(seed: &[u8]) -> OpenOptions {
    let mut o = OpenOptions::new(None);
    o.rng = Arc::new(SeededRandom::new(seed));
    o.checkpoint_packs = 4;
    o
}

/// Deterministic blobs: some compressible, some not.
fn blob(i: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x = blake3::hash(&i.to_le_bytes()).as_bytes().to_vec();
    let len = 1000 + (i as usize * 7919) % 60000;
    while out.len() < len {
        if i.is_multiple_of(3) {
            out.extend_from_slice(b"compressible text compressible text ");
        } else {
            x = blake3::hash(&x).as_bytes().to_vec();
            out.extend_from_slice(&x);
        }
    }
    out.truncate(len);
    out
}

fn snapshot_of(root: Id) -> Snapshot {
    Snapshot {
        time: 1_764_633_600,
        time_nanos: 0,
        hostname: "test".into(),
        username: "root".into(),
        kind: SnapshotKind::Files,
        paths: vec!["/data".into()],
        tags: vec![],
        parent: None,
        root,
        program_version: "test".into(),
        stats: Default::default(),
        original: None,
    }
}

/// Saves blobs 0..n and a snapshot whose root is a meta blob listing them.
fn backup(repo: &Repository, range: std::ops::Range<u32>) -> (Id, Vec<Id>) {
    let ids: Vec<Id> = range
        .map(|i| repo.save_blob(BlobType::Data, &blob(i)).unwrap().id)
        .collect();
    let listing: Vec<u8> = ids.iter().flat_map(|id| id.0).collect();
    let root = repo.save_blob(BlobType::Meta, &listing).unwrap().id;
    (repo.save_snapshot(&snapshot_of(root)).unwrap(), ids)
}

#[test]
fn blobs_and_snapshots_survive_reopen_and_dedup_across_sessions() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let (snap, ids) = backup(&repo, 0..200);
    let first = repo.session_stats();
    assert_eq!(first.blobs_new, 201);
    assert!(first.packs >= 2, "{first:?}");
    drop(repo);

    let repo = Repository::open(backend.clone(), &PW, opts(b"b")).unwrap();
    assert_eq!(repo.indexed_blob_count(), 201);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(repo.load_blob(id).unwrap(), blob(i as u32));
    }
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].0, snap);
    // A second backup of mostly the same data stores only the new blobs.
    let (_, _) = backup(&repo, 100..250);
    assert_eq!(repo.session_stats().blobs_new, 50 + 1);
    assert_eq!(repo.list_snapshots().unwrap().len(), 2);
}

#[test]
fn wrong_password_is_the_typed_error_with_a_clear_message() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    drop(Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap());
    let err = Repository::open(backend, &Credential::Password(b"wrong"), opts(b"b"))
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::WrongPassword { key_files: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong password"), "{err}");
}

#[test]
fn an_added_key_opens_the_same_repository() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    repo.add_key(
        &Credential::RawKey(&[7; 32]),
        &KdfParams::INSECURE_FAST,
        &Default::default(),
    )
    .unwrap();
    let (snap, _) = backup(&repo, 0..3);
    drop(repo);
    let repo = Repository::open(backend, &Credential::RawKey(&[7; 32]), opts(b"b")).unwrap();
    assert_eq!(repo.list_snapshots().unwrap()[0].0, snap);
}

#[test]
fn missing_repository_and_future_version_are_named() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let err = Repository::open(backend.clone(), &PW, opts(b"a"))
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");

    drop(Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap());
    let memory = MemoryBackend::new();
    for kind in ObjectKind::ALL {
        for info in backend.list(kind).unwrap() {
            let mut bytes = backend.read(&info.handle).unwrap();
            if kind == ObjectKind::Config {
                bytes[7] = 99;
            }
            memory.write_new(&info.handle, &bytes).unwrap();
        }
    }
    let err = Repository::open(Arc::new(memory), &PW, opts(b"a"))
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );
}

/// Flips one bit of every stored pack, index and snapshot in turn and checks
/// that reading the repository reports that object as corrupt.
#[test]
fn a_flipped_bit_in_any_pack_index_or_snapshot_is_detected_and_named() {
    let memory = Arc::new(MemoryBackend::new());
    let backend: Arc<dyn Backend> = memory.clone();
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let (_, ids) = backup(&repo, 0..40);
    drop(repo);

    for kind in [ObjectKind::Pack, ObjectKind::Index, ObjectKind::Snapshot] {
        for info in backend.list(kind).unwrap() {
            for byte in [0u64, 7, 44, info.size / 2, info.size - 5, info.size - 1] {
                assert!(memory.corrupt(&info.handle, byte as usize, 0x10));
                let outcome = (|| -> Result<(), Error> {
                    let repo = Repository::open(backend.clone(), &PW, opts(b"r"))?;
                    // A damaged manifest is left out of the list and named.
                    let listing = repo.list_snapshots_reporting()?;
                    if let Some((_, e)) = listing.unreadable.into_iter().next() {
                        return Err(e);
                    }
                    for id in &ids {
                        repo.load_blob(id)?;
                    }
                    for pack in backend.list(ObjectKind::Pack)? {
                        repo.verify_pack(&pack.handle.name.parse().unwrap())?;
                    }
                    Ok(())
                })();
                let err =
                    outcome.expect_err(&format!("flip at {byte} of {} undetected", info.handle));
                let message = err.to_string();
                // Packs are named by the blob error or the pack itself; index
                // files and snapshots by their own name.
                assert!(
                    message.contains(&info.handle.name)
                        || kind == ObjectKind::Pack && message.contains("corrupt"),
                    "{message}"
                );
                assert!(
                    matches!(
                        err,
                        Error::Corrupt { .. } | Error::UnsupportedVersion { .. }
                    ),
                    "{err:?}"
                );
                assert!(memory.corrupt(&info.handle, byte as usize, 0x10));
            }
        }
    }
}

/// A session dropped after uploading packs but before its snapshot: the
/// repository opens, earlier snapshots are intact, and checkpointed packs
/// are reused by the next backup.
#[test]
fn a_crash_between_pack_and_snapshot_leaves_a_valid_repository() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::create(dir.path()).unwrap());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let (first, first_ids) = backup(&repo, 0..30);
    // The crashing session: many blobs (checkpoints happen), no flush, no snapshot.
    for i in 1000..1400 {
        repo.save_blob(BlobType::Data, &blob(i)).unwrap();
    }
    let written = repo.session_stats();
    assert!(
        written.index_files >= 2,
        "checkpoints expected: {written:?}"
    );
    drop(repo);

    let repo = Repository::open(backend.clone(), &PW, opts(b"b")).unwrap();
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.iter().map(|s| s.0).collect::<Vec<_>>(), vec![first]);
    for (i, id) in first_ids.iter().enumerate() {
        assert_eq!(repo.load_blob(id).unwrap(), blob(i as u32));
    }
    // The rerun reuses what the checkpoints indexed.
    for i in 1000..1400 {
        repo.save_blob(BlobType::Data, &blob(i)).unwrap();
    }
    let rerun = repo.session_stats();
    assert!(
        rerun.blobs_new < 400 / 2,
        "checkpointed blobs not reused: {rerun:?}"
    );
    repo.flush().unwrap();
    for i in 1000..1400 {
        let id = repo.blob_id(&blob(i));
        assert_eq!(repo.load_blob(&id).unwrap(), blob(i));
    }
}

#[test]
fn the_local_cache_persists_and_a_deleted_index_rebuilds_it() {
    let cache = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let mut o = opts(b"a");
    o.cache_dir = Some(cache.path().to_path_buf());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), o.clone()).unwrap();
    let (_, ids) = backup(&repo, 0..20);
    drop(repo);
    let repo = Repository::open(backend.clone(), &PW, o.clone()).unwrap();
    assert_eq!(repo.load_blob(&ids[3]).unwrap(), blob(3));
    drop(repo);
    // Rewrite the index into one new file (as prune would) and delete the old.
    let old = backend.list(ObjectKind::Index).unwrap();
    let repo = Repository::open(backend.clone(), &PW, o.clone()).unwrap();
    for info in &old {
        let bytes = backend.read(&info.handle).unwrap();
        let name: Id = info.handle.name.parse().unwrap();
        let file = cairn_store::IndexFile::open(&bytes, repo.keys(), "i").unwrap();
        let mut rewritten = file.clone();
        rewritten.supersedes = vec![name];
        let sealed = rewritten
            .seal(repo.keys(), &SeededRandom::new(b"x"))
            .unwrap();
        backend
            .write_new(
                &Handle::new(ObjectKind::Index, &Id::of_object(&sealed)),
                &sealed,
            )
            .unwrap();
        backend.delete(&info.handle).unwrap();
    }
    drop(repo);
    let repo = Repository::open(backend, &PW, o).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(repo.load_blob(id).unwrap(), blob(i as u32));
    }
}

#[test]
fn concurrent_savers_store_each_blob_once() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..100 {
                    repo.save_blob(BlobType::Data, &blob(i)).unwrap();
                }
            });
        }
    });
    repo.flush().unwrap();
    assert_eq!(repo.session_stats().blobs_new, 100);
    drop(repo);
    let repo = Repository::open(backend, &PW, opts(b"b")).unwrap();
    assert_eq!(repo.indexed_blob_count(), 100);
}

#[test]
fn locks_exclude_as_documented() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let a = repo.lock("host", "backup", false).unwrap();
    let b = repo.lock("host", "backup", false).unwrap();
    let err = repo.lock("host", "prune", true).err().unwrap();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    drop((a, b));
    assert!(backend.list(ObjectKind::Lock).unwrap().is_empty());
    let p = repo.lock("host", "prune", true).unwrap();
    assert!(repo.lock("host", "backup", false).is_err());
    drop(p);
}

#[test]
fn a_prune_lock_is_shared_with_backups_but_not_with_prunes_or_checks() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let backup = repo.lock("host", "backup", false).unwrap();
    let prune = repo.lock("host", "prune", false).unwrap();
    let another = repo.lock("host", "backup", false).unwrap();
    for op in ["prune", "check"] {
        let err = repo.lock("host", op, false).err().unwrap();
        assert!(matches!(err, Error::Locked(_)), "{op}: {err}");
    }
    assert!(repo.lock("host", "key-remove", true).is_err());
    drop(prune);
    let check = repo.lock("host", "check", false).unwrap();
    assert!(repo.lock("host", "prune", false).is_err());
    drop((backup, another, check));
    assert!(backend.list(ObjectKind::Lock).unwrap().is_empty());
}

#[test]
fn coalesced_pack_reads_return_every_blob_in_order() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"a")).unwrap();
    let (_, ids) = backup(&repo, 0..30);
    let mut by_pack: std::collections::BTreeMap<Id, Vec<(usize, cairn_store::BlobEntry)>> =
        Default::default();
    for (i, id) in ids.iter().enumerate() {
        let (pack, entry) = repo.locate_blob(id).unwrap().unwrap();
        by_pack.entry(pack).or_default().push((i, entry));
    }
    for (pack, mut list) in by_pack {
        list.reverse();
        let entries: Vec<_> = list.iter().map(|(_, e)| *e).collect();
        for (gap, max) in [(0, 0), (1 << 20, 1 << 30), (100, 50_000)] {
            let blobs = repo.load_pack_blobs(&pack, &entries, gap, max).unwrap();
            for ((i, _), data) in list.iter().zip(&blobs) {
                assert_eq!(*data, blob(*i as u32));
            }
            // Straight into the caller's buffers: the same bytes.
            let mut bufs: Vec<Vec<u8>> = entries
                .iter()
                .map(|e| vec![0; e.raw_len as usize])
                .collect();
            let mut dests: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            let patches = repo
                .load_pack_into(&pack, &entries, &mut dests, gap, max)
                .unwrap();
            assert!(patches.iter().all(Option::is_none));
            for ((i, _), data) in list.iter().zip(&bufs) {
                assert_eq!(*data, blob(*i as u32));
            }
        }
        // A destination of the wrong size is an error, not a panic.
        let mut short = vec![0u8; entries[0].raw_len as usize - 1];
        let err = repo
            .load_pack_into(&pack, &entries[..1], &mut [&mut short[..]], 0, 1 << 20)
            .unwrap_err();
        assert!(err.to_string().contains("length"), "{err}");
    }
}

/// A chunk of pseudo-random 4 KiB blocks, and the same chunk with one block
/// rewritten: the shape of a virtual disk's churn.
fn chunk_and_edit(len: usize, edited_block: usize) -> (Vec<u8>, Vec<u8>) {
    let mut base = Vec::new();
    let mut x = blake3::hash(b"disk").as_bytes().to_vec();
    while base.len() < len {
        x = blake3::hash(&x).as_bytes().to_vec();
        base.extend_from_slice(&x);
    }
    base.truncate(len);
    let mut edited = base.clone();
    for b in &mut edited[edited_block * 4096..(edited_block + 1) * 4096] {
        *b = b.wrapping_add(1);
    }
    (base, edited)
}

/// Bases placed at the blob's own offsets (shift applied).
fn placed(bases: &[cairn_store::PatchBase]) -> Vec<cairn_store::patch::PlacedBase<'_>> {
    bases
        .iter()
        .map(|b| cairn_store::patch::PlacedBase {
            data: &b.data,
            pos: b.shift.into(),
        })
        .collect()
}

#[test]
fn patch_blobs_store_only_changed_blocks_and_rebuild_everywhere() {
    use cairn_store::patch::diff_aligned;
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"p")).unwrap();
    let (v1, v2) = chunk_and_edit(40_960, 3);
    let id1 = repo.save_blob(BlobType::Data, &v1).unwrap().id;
    repo.flush().unwrap();

    // v2 at the same place as v1: one 4 KiB block differs.
    let bases = repo.patch_base(&id1).unwrap();
    assert_eq!(bases.len(), 1);
    assert_eq!((bases[0].id, bases[0].shift), (id1, 0));
    let ops = diff_aligned(&v2, 0, &placed(&bases), 4096, v2.len() / 2).unwrap();
    let id2 = repo.blob_id(&v2);
    let saved = repo.save_blob_patched(id2, &v2, &bases, &ops).unwrap();
    assert!(saved.new);
    assert!(saved.stored_len < 4096 + 512, "stored {}", saved.stored_len);
    // Readable before and after upload.
    assert_eq!(repo.load_blob(&id2).unwrap(), v2);
    repo.flush().unwrap();
    assert_eq!(repo.load_blob(&id2).unwrap(), v2);

    // v3 changes another block of v2: its patch is made against v1 (no
    // chains) and carries both changed blocks.
    let mut v3 = v2.clone();
    v3[8 * 4096] ^= 0xff;
    let base3 = repo.patch_base(&id2).unwrap();
    assert_eq!(base3.len(), 1);
    assert_eq!((base3[0].id, base3[0].shift), (id1, 0));
    let ops3 = diff_aligned(&v3, 0, &placed(&base3), 4096, v3.len() / 2).unwrap();
    let id3 = repo.blob_id(&v3);
    let saved3 = repo.save_blob_patched(id3, &v3, &base3, &ops3).unwrap();
    assert!(saved3.stored_len < 2 * 4096 + 512);
    // A patch against a patch is refused: the blob is stored whole.
    let mut v4 = v3.clone();
    v4[0] ^= 1;
    let chained = [cairn_store::PatchBase {
        id: id2,
        data: v2.clone(),
        shift: 0,
    }];
    let ops4 = diff_aligned(&v4, 0, &placed(&chained), 4096, v4.len()).unwrap();
    let id4 = repo.blob_id(&v4);
    let saved4 = repo.save_blob_patched(id4, &v4, &chained, &ops4).unwrap();
    assert!(saved4.stored_len > v4.len() as u64 / 2);
    // Wrong operations are refused before anything is stored.
    let whole_v1 = [cairn_store::patch::PlacedBase { data: &v1, pos: 0 }];
    let bad = diff_aligned(&v1, 0, &whole_v1, 4096, 0).unwrap();
    assert!(repo.save_blob_patched(id3, &v3, &base3, &bad).is_err());
    // Operations that do not cover the blob are refused, not a panic.
    let short = [cairn_store::patch::PatchOp::Literal { len: 10 }];
    assert!(repo.save_blob_patched(id3, &v3, &base3, &short).is_err());
    let root = repo.save_blob(BlobType::Meta, &id2.0).unwrap().id;
    repo.save_snapshot(&snapshot_of(root)).unwrap();
    drop(repo);

    // Another session: every read path rebuilds the patches.
    let repo = Repository::open(backend.clone(), &PW, opts(b"p2")).unwrap();
    for (id, want) in [(id1, &v1), (id2, &v2), (id3, &v3), (id4, &v4)] {
        assert_eq!(&repo.load_blob(&id).unwrap(), want);
        let (pack, entry) = repo.locate_blob(&id).unwrap().unwrap();
        assert_eq!(&repo.load_from_pack(&pack, &entry).unwrap(), want);
        let many = repo
            .load_pack_blobs(&pack, &[entry], 1 << 20, 4 << 20)
            .unwrap();
        assert_eq!(&many[0], want);
        repo.verify_pack(&pack).unwrap();
    }
    let (_, entry2) = repo.locate_blob(&id2).unwrap().unwrap();
    assert_eq!(entry2.compression, cairn_store::Compression::Patch);
}

#[test]
fn a_patch_whose_base_is_damaged_is_an_error() {
    use cairn_store::patch::diff_aligned;
    let backend = Arc::new(MemoryBackend::new());
    let dyn_backend: Arc<dyn Backend> = backend.clone();
    let repo = Repository::init(dyn_backend.clone(), &PW, &init_options(), opts(b"d")).unwrap();
    let (v1, v2) = chunk_and_edit(16_384, 1);
    let id1 = repo.save_blob(BlobType::Data, &v1).unwrap().id;
    repo.flush().unwrap();
    let bases = repo.patch_base(&id1).unwrap();
    let ops = diff_aligned(&v2, 0, &placed(&bases), 4096, 8192).unwrap();
    let id2 = repo.blob_id(&v2);
    repo.save_blob_patched(id2, &v2, &bases, &ops).unwrap();
    repo.flush().unwrap();
    let (base_pack, base_entry) = repo.locate_blob(&id1).unwrap().unwrap();
    drop(repo);
    assert!(backend.corrupt(
        &Handle::new(ObjectKind::Pack, &base_pack),
        base_entry.offset as usize + 5,
        0x40,
    ));
    let repo = Repository::open(dyn_backend, &PW, opts(b"d2")).unwrap();
    let err = repo.load_blob(&id2).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn patch_bases_name_the_bases_of_patches_only() {
    use cairn_store::patch::diff_aligned;
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"pb")).unwrap();
    let (v1, v2) = chunk_and_edit(40_960, 2);
    let id1 = repo.save_blob(BlobType::Data, &v1).unwrap().id;
    repo.flush().unwrap();
    let bases = repo.patch_base(&id1).unwrap();
    let ops = diff_aligned(&v2, 0, &placed(&bases), 4096, v2.len() / 2).unwrap();
    let id2 = repo.blob_id(&v2);
    repo.save_blob_patched(id2, &v2, &bases, &ops).unwrap();
    // Before upload (in the open pack), after upload, and after reopening.
    assert_eq!(repo.patch_bases(&id2).unwrap(), vec![id1]);
    repo.flush().unwrap();
    assert_eq!(repo.patch_bases(&id2).unwrap(), vec![id1]);
    assert!(repo.patch_bases(&id1).unwrap().is_empty());
    drop(repo);
    let repo = Repository::open(backend, &PW, opts(b"pb2")).unwrap();
    assert_eq!(repo.patch_bases(&id2).unwrap(), vec![id1]);
    assert!(repo.patch_bases(&id1).unwrap().is_empty());
    let missing = Id([0x77; 32]);
    assert!(matches!(
        repo.patch_bases(&missing),
        Err(Error::BlobNotFound(id)) if id == missing
    ));
}

#[test]
fn pack_trailers_read_by_range_agree_with_the_index() {
    let backend = Arc::new(MemoryBackend::new());
    let dyn_backend: Arc<dyn Backend> = backend.clone();
    let repo = Repository::init(dyn_backend, &PW, &init_options(), opts(b"tr")).unwrap();
    backup(&repo, 0..40);
    let mut packs = 0;
    for index in repo.index_file_ids().unwrap() {
        for pack in repo.load_index_file(&index).unwrap().packs {
            let (size, entries) = repo.read_pack_trailer(&pack.pack).unwrap();
            assert_eq!(entries, pack.blobs);
            assert_eq!(size, cairn_store::pack::expected_pack_len(&pack.blobs));
            packs += 1;
        }
    }
    assert!(packs >= 2, "{packs} packs");
}

#[test]
fn keys_are_listed_removed_and_replaced_but_never_the_last_or_current() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"k")).unwrap();
    let first = repo.key_id();
    let keys = repo.list_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current && keys[0].password && keys[0].damaged.is_none());
    // The only key is both current and last.
    assert!(matches!(repo.remove_key(&first), Err(Error::KeyInUse(id)) if id == first));
    let info = cairn_store::KeyFileInfo {
        created: 5,
        hostname: "h".into(),
        username: "u".into(),
        epoch: None,
    };
    let second = repo
        .add_key(
            &Credential::Password(b"second"),
            &KdfParams::INSECURE_FAST,
            &info,
        )
        .unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 2);
    assert_eq!(repo.resolve_key(&second.short(10)).unwrap(), second);
    assert!(matches!(repo.resolve_key("zz"), Err(Error::KeyNotFound(_))));
    drop(repo);

    // Opened with the second key, the first can go; then the second is last.
    let repo = Repository::open(
        backend.clone(),
        &Credential::Password(b"second"),
        opts(b"k2"),
    )
    .unwrap();
    assert_eq!(repo.key_id(), second);
    repo.remove_key(&first).unwrap();
    assert!(matches!(
        Repository::open(backend.clone(), &PW, opts(b"k3")),
        Err(Error::WrongPassword { .. })
    ));
    let mut repo = repo;
    // passwd: a new key replaces the current one.
    let third = repo
        .change_password(
            &Credential::Password(b"third"),
            &KdfParams::INSECURE_FAST,
            &info,
        )
        .unwrap();
    assert_eq!(repo.key_id(), third);
    let ids: Vec<Id> = repo.list_keys().unwrap().iter().map(|k| k.id).collect();
    assert_eq!(ids, vec![third]);
    drop(repo);
    let repo = Repository::open(
        backend.clone(),
        &Credential::Password(b"third"),
        opts(b"k4"),
    )
    .unwrap();
    assert!(matches!(
        Repository::open(
            backend.clone(),
            &Credential::Password(b"second"),
            opts(b"k5")
        ),
        Err(Error::WrongPassword { .. })
    ));
    // A damaged second key does not count as a usable one.
    backend
        .write_new(&Handle::new(ObjectKind::Key, &Id([1; 32])), b"garbage")
        .unwrap();
    let keys = repo.list_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.damaged.is_some()));
    drop(repo);
    let repo = Repository::open(backend, &Credential::Password(b"third"), opts(b"k6")).unwrap();
    // Removing the damaged one is allowed (a usable one stays).
    repo.remove_key(&Id([1; 32])).unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 1);
}

#[test]
fn the_last_usable_key_is_refused_even_when_not_current() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"l")).unwrap();
    let first = repo.key_id();
    // Only a damaged other key: removing the current one is KeyInUse, and a
    // session opened otherwise could not remove the only usable one.
    backend
        .write_new(&Handle::new(ObjectKind::Key, &Id([2; 32])), b"garbage")
        .unwrap();
    assert!(matches!(repo.remove_key(&first), Err(Error::KeyInUse(_))));
    let mut repo = repo;
    // change_password keeps one usable key at every moment.
    let new = repo
        .change_password(
            &Credential::Password(b"new"),
            &KdfParams::INSECURE_FAST,
            &Default::default(),
        )
        .unwrap();
    let usable: Vec<Id> = repo
        .list_keys()
        .unwrap()
        .iter()
        .filter(|k| k.damaged.is_none())
        .map(|k| k.id)
        .collect();
    assert_eq!(usable, vec![new]);
    assert!(!usable.contains(&first));
}

#[test]
fn stale_locks_are_removed_and_force_removes_all() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"u")).unwrap();
    let live = repo.lock("this-host", "backup", false).unwrap();
    // A lock of a process of this host that is gone (pid far beyond pid_max).
    let dead = cairn_store::lock::LockInfo {
        hostname: "this-host".into(),
        pid: u32::MAX - 1,
        operation: "backup".into(),
        exclusive: false,
        created: cairn_store::lock::now_secs(),
        expires: cairn_store::lock::now_secs() + 600,
    };
    assert!(dead.is_stale("this-host", cairn_store::lock::now_secs()));
    let other = repo.lock("other-host", "prune", true);
    assert!(matches!(other, Err(Error::Locked(_))));
    assert_eq!(repo.list_locks().unwrap().len(), 1);
    // No stale lock: nothing removed, the live one stays.
    assert_eq!(repo.remove_stale_locks("this-host").unwrap(), 0);
    assert_eq!(repo.list_locks().unwrap().len(), 1);
    backend
        .write_new(&Handle::new(ObjectKind::Lock, &Id([3; 32])), b"junk")
        .unwrap();
    assert_eq!(repo.list_locks().unwrap().len(), 2);
    assert_eq!(repo.remove_all_locks().unwrap(), 2);
    assert!(repo.list_locks().unwrap().is_empty());
    drop(live);
}

#[test]
fn rewritten_blobs_move_to_new_packs_and_the_old_entries_retire() {
    use cairn_store::patch::diff_aligned;
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), &PW, &init_options(), opts(b"rw")).unwrap();
    let (_, ids) = backup(&repo, 0..60);
    // A patch, which a rewrite stores whole.
    let (v1, v2) = chunk_and_edit(16_384, 3);
    let id1 = repo.save_blob(BlobType::Data, &v1).unwrap().id;
    repo.flush().unwrap();
    let bases = repo.patch_base(&id1).unwrap();
    let ops = diff_aligned(&v2, 0, &placed(&bases), 4096, 8192).unwrap();
    let id2 = repo.blob_id(&v2);
    repo.save_blob_patched(id2, &v2, &bases, &ops).unwrap();
    repo.flush().unwrap();
    let old_files = repo.index_file_ids().unwrap();
    let old_pack = |id: &Id| repo.locate_blob(id).unwrap().unwrap().0;
    let moved: Vec<Id> = ids.iter().step_by(3).copied().chain([id2]).collect();
    let before: Vec<Id> = moved.iter().map(old_pack).collect();
    drop(repo);

    let repo = Repository::open(backend.clone(), &PW, opts(b"rw2")).unwrap();
    // Wrong data for an id is refused.
    assert!(repo.rewrite_blob(BlobType::Data, id2, &v1).is_err());
    for id in &moved {
        let data = repo.load_blob(id).unwrap();
        assert!(repo.rewrite_blob(BlobType::Data, *id, &data).unwrap().new);
        // Once per session.
        assert!(!repo.rewrite_blob(BlobType::Data, *id, &data).unwrap().new);
    }
    let retire: std::collections::HashSet<Id> = moved.iter().copied().collect();
    let new_index = repo
        .supersede_index(&old_files, &|_, e| retire.contains(&e.id))
        .unwrap()
        .unwrap();
    for (id, old) in moved.iter().zip(&before) {
        let (pack, entry) = repo.locate_blob(id).unwrap().unwrap();
        assert_ne!(pack, *old, "blob {id} still at its old pack");
        assert_ne!(entry.compression, cairn_store::Compression::Patch);
    }
    // The old index files are gone, the new one supersedes them, and a
    // fresh open sees one location per blob and every blob readable.
    let files = repo.index_file_ids().unwrap();
    assert!(files.contains(&new_index));
    assert!(old_files.iter().all(|f| !files.contains(f)));
    drop(repo);
    let repo = Repository::open(backend, &PW, opts(b"rw3")).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(repo.load_blob(id).unwrap(), blob(i as u32));
    }
    assert_eq!(repo.load_blob(&id2).unwrap(), v2);
    assert!(repo.patch_bases(&id2).unwrap().is_empty());
    // Nothing left to replace: no new file.
    assert!(
        repo.supersede_index(&old_files, &|_, _| false)
            .unwrap()
            .is_none()
    );
}

/// A target where another `init` writes its config at a chosen moment:
/// right after this init's key file (`before_config`) or right after this
/// init's config, over it (the target ignores create-only writes).
struct RacingInit {
    memory: Arc<MemoryBackend>,
    inner: Arc<dyn Backend>,
    before_config: bool,
}

impl Backend for RacingInit {
    fn location(&self) -> String {
        "racing".into()
    }
    fn list(
        &self,
        kind: ObjectKind,
    ) -> Result<Vec<cairn_store::ObjectInfo>, cairn_store::BackendError> {
        self.inner.list(kind)
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, cairn_store::BackendError> {
        self.inner.read(h)
    }
    fn read_range(&self, h: &Handle, o: u64, l: u64) -> Result<Vec<u8>, cairn_store::BackendError> {
        self.inner.read_range(h, o, l)
    }
    fn write_new(&self, h: &Handle, data: &[u8]) -> Result<(), cairn_store::BackendError> {
        let theirs = b"cairn\0 the other init's config";
        if h.kind == ObjectKind::Config && self.before_config {
            self.memory.raw_put(h, theirs);
        }
        let r = self.inner.write_new(h, data);
        if h.kind == ObjectKind::Config && !self.before_config {
            self.memory.raw_put(h, theirs);
        }
        r
    }
    fn delete(&self, h: &Handle) -> Result<(), cairn_store::BackendError> {
        self.inner.delete(h)
    }
    fn replace(&self, h: &Handle, data: &[u8]) -> Result<(), cairn_store::BackendError> {
        self.inner.replace(h, data)
    }
    fn stat(&self, h: &Handle) -> Result<cairn_store::ObjectInfo, cairn_store::BackendError> {
        self.inner.stat(h)
    }
}

#[test]
fn an_init_that_loses_a_race_says_so_and_leaves_no_key_file() {
    use cairn_store::backend::OverwritingBackend;
    for (before_config, ignores_create_only) in [(true, false), (false, true)] {
        let memory = Arc::new(MemoryBackend::new());
        let inner: Arc<dyn Backend> = if ignores_create_only {
            Arc::new(OverwritingBackend::over_memory(memory.clone()))
        } else {
            memory.clone()
        };
        let backend: Arc<dyn Backend> = Arc::new(RacingInit {
            memory: memory.clone(),
            inner,
            before_config,
        });
        let e = Repository::init(backend, &PW, &init_options(), opts(b"race"))
            .err()
            .unwrap();
        assert!(matches!(e, Error::InitRaced { .. }), "{e:?}");
        assert!(e.to_string().contains("another cairn init"), "{e}");
        assert!(memory.list(ObjectKind::Key).unwrap().is_empty());
        assert_eq!(
            memory.read(&Handle::config()).unwrap(),
            b"cairn\0 the other init's config"
        );
    }
}
