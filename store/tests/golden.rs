#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The golden repository: a tiny repository made with fixed test secrets
//! and committed under `tests/fixtures/golden-repo/`, with the list of what
//! it holds in `tests/fixtures/golden-repo.expected.json`. Reading it must
//! keep working, so an accidental change to the format fails here.
//!
//! To regenerate it after an *intended* format change (and a version bump):
//!
//! ```text
//! CAIRN_REGENERATE_GOLDEN=1 cargo test -p cairn-store --test golden regenerate
//! ```
//!
//! Every salt and key comes from a [`SeededRandom`], so two regenerations
//! with the same build give byte-identical files; a new zstd release may
//! compress differently and so rename packs, which is harmless for reading.

use cairn_store::backend::LocalBackend;
use cairn_store::repository::{InitOptions, OpenOptions, Repository};
use cairn_store::{
    Backend, BlobType, ChunkSizes, ChunkerConfig, Credential, Error, Id, KdfParams, KeyFileInfo,
    ObjectKind, SeededRandom, Snapshot, SnapshotKind, SnapshotStats,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Seed of every salt and key in the golden repository.
const SEED: &[u8] = b"cairn golden repository v1";
/// The password of its first key file.
const PASSWORD: &[u8] = b"golden";
/// The raw key of its second key file.
const RAW_KEY: [u8; 32] = [0x42; 32];
/// Its creation time (and the key files'): 2025-12-02T00:00:00Z.
const CREATED: i64 = 1_764_633_600;

/// The committed repository directory.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-repo")
}

/// The committed expectations.
fn expected_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-repo.expected.json")
}

fn open_options() -> OpenOptions {
    OpenOptions {
        rng: Arc::new(SeededRandom::new(SEED)),
        cache_dir: None,
        checkpoint_packs: 32,
        // One upload at a time: index files list packs in upload order.
        transfers: 1,
    }
}

fn chunker_config() -> ChunkerConfig {
    ChunkerConfig {
        format: 1,
        disk: ChunkSizes {
            min: 4096,
            avg: 16384,
            max: 65536,
            normalization: 2,
        },
        files: ChunkSizes {
            min: 8192,
            avg: 32768,
            max: 131_072,
            normalization: 2,
        },
    }
}

fn key_info() -> KeyFileInfo {
    KeyFileInfo {
        created: CREATED,
        hostname: "golden".into(),
        username: "cairn".into(),
        epoch: None,
    }
}

/// The data blobs, in the order they are saved: compressible text, ~100 KiB
/// of pseudo-random bytes (BLAKE3 XOF of a fixed seed; stored raw, and it
/// fills the first 64 KiB pack so the next blob starts a second one), and
/// an empty blob.
fn data_blobs() -> Vec<(&'static str, Vec<u8>)> {
    let text = b"The golden repository: a cairn marks the way. ".repeat(64);
    let mut random = vec![0u8; 100 * 1024];
    blake3::Hasher::new()
        .update(b"cairn golden incompressible blob v1")
        .finalize_xof()
        .fill(&mut random);
    vec![("text", text), ("random", random), ("empty", Vec::new())]
}

/// The snapshot, given its root.
fn snapshot(root: Id) -> Snapshot {
    Snapshot {
        time: CREATED + 60,
        time_nanos: 123_456_789,
        hostname: "golden".into(),
        username: "cairn".into(),
        kind: SnapshotKind::Files,
        paths: vec!["/golden/data".into(), "/golden/etc".into()],
        tags: vec!["golden".into(), "v1".into()],
        parent: None,
        root,
        program_version: "cairn golden v1".into(),
        stats: SnapshotStats {
            bytes_total: 0,
            bytes_read: 105_536,
            bytes_new: 105_536,
            bytes_stored: 104_000,
            chunks: 3,
            chunks_new: 3,
            files: 2,
            errors: 0,
            duration_ms: 1500,
        },
        original: None,
    }
}

/// Object names per kind directory, sorted.
fn object_names(backend: &dyn Backend) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for kind in ObjectKind::ALL {
        let mut names: Vec<String> = backend
            .list(kind)
            .unwrap()
            .into_iter()
            .map(|i| i.handle.name)
            .collect();
        names.sort();
        let dir = if kind == ObjectKind::Config {
            "config"
        } else {
            kind.dir()
        };
        out.insert(dir.to_string(), names);
    }
    out
}

/// Builds the golden repository and its expectations, replacing the
/// committed ones. Runs only with `CAIRN_REGENERATE_GOLDEN=1`.
#[test]
fn regenerate() {
    if std::env::var("CAIRN_REGENERATE_GOLDEN").as_deref() != Ok("1") {
        return;
    }
    let dir = fixture_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::create(&dir).unwrap());
    let mut init = InitOptions::new(chunker_config());
    init.kdf = KdfParams::INSECURE_FAST;
    init.pack_size = 64 * 1024;
    init.key_info = key_info();
    let repo = Repository::init(
        backend.clone(),
        &Credential::Password(PASSWORD),
        &init,
        open_options(),
    )
    .unwrap();

    let mut blobs = Vec::new();
    for (name, plain) in data_blobs() {
        let id = repo.save_blob(BlobType::Data, &plain).unwrap().id;
        blobs.push((name, "data", id, plain));
    }
    // The meta blob (the snapshot's root) lists the data blobs by id.
    let listing: String = blobs
        .iter()
        .map(|(name, _, id, plain)| format!("{name} {id} {}\n", plain.len()))
        .collect();
    let root = repo
        .save_blob(BlobType::Meta, listing.as_bytes())
        .unwrap()
        .id;
    blobs.push(("root", "meta", root, listing.into_bytes()));
    let snapshot_id = repo.save_snapshot(&snapshot(root)).unwrap();
    repo.add_key(
        &Credential::RawKey(&RAW_KEY),
        &KdfParams::INSECURE_FAST,
        &key_info(),
    )
    .unwrap();
    let repo_id = repo.keys().repo_id;
    drop(repo);

    // Git keeps no empty directories; the reading test recreates them.
    let expected = json!({
        "comment": "What tests/fixtures/golden-repo holds; written by `CAIRN_REGENERATE_GOLDEN=1 cargo test -p cairn-store --test golden regenerate`.",
        "repo_id": repo_id.to_hex(),
        "snapshot": snapshot_id.to_hex(),
        "objects": object_names(backend.as_ref()),
        "blobs": blobs.iter().map(|(name, blob_type, id, plain)| json!({
            "name": name,
            "type": blob_type,
            "id": id.to_hex(),
            "len": plain.len(),
            "blake3": blake3::hash(plain).to_hex().to_string(),
        })).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&expected).unwrap();
    text.push('\n');
    std::fs::write(expected_path(), text).unwrap();
}

/// The expectations file, parsed.
fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(expected_path()).unwrap()).unwrap()
}

/// A copy of the committed fixture in a temp dir (opening should write
/// nothing, but the committed files must never be at risk), with the
/// layout's empty directories that git does not keep.
fn fixture_copy() -> (tempfile::TempDir, Arc<dyn Backend>) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("golden-repo");
    copy(&fixture_dir(), &root);
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::create(&root).unwrap());
    (tmp, backend)
}

/// Everything in the golden repository reads back as recorded, with the
/// password and with the raw key.
#[test]
fn the_golden_repository_reads_back() {
    let expected = expected();
    let (_tmp, backend) = fixture_copy();

    let on_disk = serde_json::to_value(object_names(backend.as_ref())).unwrap();
    assert_eq!(
        on_disk, expected["objects"],
        "objects in the fixture differ from the expected list"
    );
    assert_eq!(expected["objects"]["keys"].as_array().unwrap().len(), 2);
    assert!(expected["objects"]["data"].as_array().unwrap().len() >= 3);

    for credential in [Credential::Password(PASSWORD), Credential::RawKey(&RAW_KEY)] {
        let repo = Repository::open(backend.clone(), &credential, open_options()).unwrap();

        let config = repo.config();
        assert_eq!(config.version, 1);
        assert_eq!(config.repo_id.to_hex(), expected["repo_id"]);
        assert_eq!(repo.keys().repo_id, config.repo_id);
        assert_eq!(config.created, CREATED);
        assert_eq!(config.chunker, chunker_config());
        assert_eq!(config.pack_size, 64 * 1024);
        assert_eq!(config.compression_level, 3);

        let blobs = expected["blobs"].as_array().unwrap();
        assert_eq!(repo.indexed_blob_count(), blobs.len());
        for blob in blobs {
            let id: Id = blob["id"].as_str().unwrap().parse().unwrap();
            let plain = repo.load_blob(&id).unwrap();
            assert_eq!(plain.len() as u64, blob["len"].as_u64().unwrap());
            assert_eq!(
                blake3::hash(&plain).to_hex().as_str(),
                blob["blake3"].as_str().unwrap(),
                "blob {}",
                blob["name"]
            );
            // Ids are keyed hashes: the key set must still derive them.
            assert_eq!(repo.blob_id(&plain), id);
        }
        assert_eq!(
            repo.load_blob(&data_id(&expected, "text")).unwrap(),
            data_blobs()[0].1
        );

        let snapshots = repo.list_snapshots().unwrap();
        assert_eq!(snapshots.len(), 1);
        let (snap_id, snap) = &snapshots[0];
        assert_eq!(snap_id.to_hex(), expected["snapshot"]);
        assert_eq!(*snap, snapshot(data_id(&expected, "root")));

        let mut verified = 0;
        for info in backend.list(ObjectKind::Pack).unwrap() {
            let pack: Id = info.handle.name.parse().unwrap();
            verified += repo.verify_pack(&pack).unwrap().len();
        }
        assert_eq!(verified, blobs.len());
    }
}

/// The id of the expected blob called `name`.
fn data_id(expected: &Value, name: &str) -> Id {
    expected["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A wrong password is refused with the typed error, naming both key files.
#[test]
fn a_wrong_password_is_refused() {
    let (_tmp, backend) = fixture_copy();
    let err = Repository::open(
        backend.clone(),
        &Credential::Password(b"gold"),
        open_options(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::WrongPassword { key_files: 2 }),
        "{err}"
    );
    let err = Repository::open(backend, &Credential::RawKey(&[0x43; 32]), open_options())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::WrongPassword { key_files: 2 }),
        "{err}"
    );
}
