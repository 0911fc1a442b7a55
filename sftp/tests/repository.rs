//! A whole repository on the SFTP target, through cairn-store's public API:
//! init, blobs packed and indexed, a snapshot, reopen over new connections,
//! every blob read back, dedup on a second backup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_sftp::SftpBackend;
use cairn_store::repository::{InitOptions, OpenOptions, Repository};
use cairn_store::{Backend, BlobType, Credential, Id, SeededRandom, Snapshot, SnapshotKind};
use std::sync::Arc;

const PW: Credential<'static> = Credential::Password(b"correct horse");

fn opts(seed: &[u8]) -> OpenOptions {
    let mut o = OpenOptions::new(None);
    o.rng = Arc::new(SeededRandom::new(seed));
    o
}

/// Deterministic, incompressible blobs of varied sizes.
fn blob(i: u32) -> Vec<u8> {
    let mut out = vec![0; 1000 + (i as usize * 7919) % 60_000];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn backup(repo: &Repository, range: std::ops::Range<u32>) -> (Id, Vec<Id>) {
    let ids: Vec<Id> = range
        .map(|i| repo.save_blob(BlobType::Data, &blob(i)).unwrap().id)
        .collect();
    let listing: Vec<u8> = ids.iter().flat_map(|id| id.0).collect();
    let root = repo.save_blob(BlobType::Meta, &listing).unwrap().id;
    let snapshot = Snapshot {
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
    };
    (repo.save_snapshot(&snapshot).unwrap(), ids)
}

#[test]
fn a_repository_on_sftp_survives_reopen_and_dedups() {
    let Some(server) = common::server("repository_on_sftp") else {
        return;
    };
    let loc = server.fresh_location("repository");
    let backend: Arc<dyn Backend> = Arc::new(SftpBackend::create(&loc, &server.opts).unwrap());
    let mut init = InitOptions::for_tests();
    init.pack_size = 256 * 1024;
    let repo = Repository::init(backend.clone(), &PW, &init, opts(b"a")).unwrap();
    let (snap, ids) = backup(&repo, 0..200);
    assert!(repo.session_stats().packs >= 2);
    drop(repo);
    drop(backend);

    // A second init over the same directory is refused.
    let again: Arc<dyn Backend> = Arc::new(SftpBackend::create(&loc, &server.opts).unwrap());
    assert!(Repository::init(again, &PW, &init, opts(b"c")).is_err());

    let backend: Arc<dyn Backend> = Arc::new(SftpBackend::connect(&loc, &server.opts).unwrap());
    let repo = Repository::open(backend, &PW, opts(b"b")).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(repo.load_blob(id).unwrap(), blob(i as u32), "blob {i}");
    }
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].0, snap);
    backup(&repo, 100..250);
    assert_eq!(repo.session_stats().blobs_new, 50 + 1);
    assert_eq!(repo.list_snapshots().unwrap().len(), 2);
    drop(repo);
    if let Some(root) = server.local_path(&loc) {
        std::fs::remove_dir_all(root).unwrap();
    }
}
