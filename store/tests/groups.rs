#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Solid groups (several blobs compressed as one frame) through the public
//! API: every way of reading a member, damage, prune's re-grouping copy.

use cairn_store::backend::MemoryBackend;
use cairn_store::group::TARGET_GROUP_LEN;
use cairn_store::repository::{InitOptions, OpenOptions, Repository};
use cairn_store::{Backend, BlobEntry, BlobType, Compression, Credential, Error, Id, SeededRandom};
use std::collections::BTreeMap;
use std::sync::Arc;

const PW: Credential<'static> = Credential::Password(b"correct horse");

fn opts(seed: &[u8]) -> OpenOptions {
    let mut o = OpenOptions::new(None);
    o.rng = Arc::new(SeededRandom::new(seed));
    o
}

fn init(backend: &Arc<dyn Backend>) -> Repository {
    let mut o = InitOptions::for_tests();
    o.pack_size = 512 * 1024;
    Repository::init(backend.clone(), &PW, &o, opts(b"init")).unwrap()
}

/// Text-like blob `i` (compressible, similar to its neighbours).
fn text(i: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut n = i;
    while out.len() < len {
        out.extend_from_slice(format!("line {n} of a log that repeats itself; ").as_bytes());
        n = n.wrapping_mul(31).wrapping_add(7) % 1000;
    }
    out.truncate(len);
    out
}

/// Random (incompressible) blob `i`.
fn random(i: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The members of one stream: text chunks with a random one among them, a
/// repeat, and a tiny one.
fn stream() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..40).map(|i| text(i, 9000 + 311 * i as usize)).collect();
    v[7] = random(7, 20000);
    v[12] = v[3].clone();
    v[20] = b"tiny".to_vec();
    v
}

fn save(repo: &Repository, blobs: &[Vec<u8>]) -> Vec<cairn_store::repository::SaveOutcome> {
    let members: Vec<(Id, &[u8])> = blobs.iter().map(|b| (repo.blob_id(b), &b[..])).collect();
    repo.save_group(BlobType::Data, &members, TARGET_GROUP_LEN)
        .unwrap()
}

fn by_pack(repo: &Repository, ids: &[Id]) -> BTreeMap<Id, Vec<BlobEntry>> {
    let mut out: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    for id in ids {
        let (pack, entry) = repo.locate_blob(id).unwrap().unwrap();
        if !out.get(&pack).is_some_and(|v| v.contains(&entry)) {
            out.entry(pack).or_default().push(entry);
        }
    }
    out
}

#[test]
fn grouped_blobs_read_back_every_way_and_store_less() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = init(&backend);
    let blobs = stream();
    let ids: Vec<Id> = blobs.iter().map(|b| repo.blob_id(b)).collect();
    let outcomes = save(&repo, &blobs);
    // The repeat is not new; everything else is, once.
    assert!(!outcomes[12].new);
    assert_eq!(outcomes.iter().filter(|o| o.new).count(), 39);
    let stats = repo.session_stats();
    assert_eq!(
        outcomes.iter().map(|o| o.stored_len).sum::<u64>(),
        stats.bytes_stored
    );
    // Readable before the pack is uploaded (from the open pack).
    for (b, id) in blobs.iter().zip(&ids) {
        assert_eq!(&repo.load_blob(id).unwrap(), b);
    }
    // Saving them again, grouped or alone, stores nothing.
    assert!(save(&repo, &blobs).iter().all(|o| !o.new));
    repo.flush().unwrap();

    // Alone, each text chunk would take more.
    let alone: u64 = blobs
        .iter()
        .enumerate()
        .filter(|(i, _)| ![7, 12].contains(i))
        .map(|(_, b)| zstd::bulk::compress(b, 3).unwrap().len().min(b.len()) as u64)
        .sum::<u64>()
        + blobs[7].len() as u64;
    assert!(
        stats.bytes_stored < alone,
        "{} vs {alone}",
        stats.bytes_stored
    );

    drop(repo);
    let repo = Repository::open(backend.clone(), &PW, opts(b"r")).unwrap();
    let mut grouped = 0;
    for (b, id) in blobs.iter().zip(&ids) {
        assert_eq!(&repo.load_blob(id).unwrap(), b);
        let (_, e) = repo.locate_blob(id).unwrap().unwrap();
        assert_eq!(e.raw_len as usize, b.len());
        grouped += usize::from(e.compression == Compression::Grouped);
    }
    // The tiny one is stored alone; the rest in groups, the random blob too
    // (members are not probed: zstd stores its bytes as they are).
    assert_eq!(
        repo.locate_blob(&ids[20]).unwrap().unwrap().1.compression,
        Compression::None
    );
    assert_eq!(
        repo.locate_blob(&ids[7]).unwrap().unwrap().1.compression,
        Compression::Grouped
    );
    assert!(grouped >= 37, "{grouped}");
    for (pack, entries) in by_pack(&repo, &ids) {
        let verified = repo.verify_pack(&pack).unwrap();
        assert_eq!(verified.len(), entries.len());
        // In every coalescing, any subset, any order.
        for (gap, max) in [(0, 0), (1 << 20, 1 << 30), (100, 50_000)] {
            // A blob asked for twice (two files sharing a chunk): a group
            // member and a blob stored alone.
            let mut twice = entries.clone();
            twice.push(entries[0]);
            if let Some(alone) = entries
                .iter()
                .find(|e| e.compression != Compression::Grouped)
            {
                twice.push(*alone);
            }
            for subset in [
                entries.clone(),
                entries.iter().rev().step_by(3).copied().collect(),
                twice,
            ] {
                let got = repo.load_pack_blobs(&pack, &subset, gap, max).unwrap();
                let mut bufs: Vec<Vec<u8>> =
                    subset.iter().map(|e| vec![0; e.raw_len as usize]).collect();
                let mut dests: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                repo.load_pack_into(&pack, &subset, &mut dests, gap, max)
                    .unwrap();
                for ((e, g), into) in subset.iter().zip(&got).zip(&bufs) {
                    let want = &blobs[ids.iter().position(|id| *id == e.id).unwrap()];
                    assert_eq!(g, want);
                    assert_eq!(into, want);
                }
            }
        }
    }
}

#[test]
fn a_damaged_group_fails_every_member_and_names_it() {
    let memory = Arc::new(MemoryBackend::new());
    let backend: Arc<dyn Backend> = memory.clone();
    let repo = init(&backend);
    let blobs: Vec<Vec<u8>> = (0..10).map(|i| text(i, 12000)).collect();
    let ids: Vec<Id> = blobs.iter().map(|b| repo.blob_id(b)).collect();
    save(&repo, &blobs);
    repo.flush().unwrap();
    let (pack, entry) = repo.locate_blob(&ids[4]).unwrap().unwrap();
    assert_eq!(entry.compression, Compression::Grouped);
    drop(repo);
    let handle = cairn_store::Handle::new(cairn_store::ObjectKind::Pack, &pack);
    let at = entry.offset as usize + entry.stored_len as usize / 2;
    assert!(memory.corrupt(&handle, at, 0x01));
    let repo = Repository::open(backend.clone(), &PW, opts(b"r")).unwrap();
    for id in &ids {
        let (_, e) = repo.locate_blob(id).unwrap().unwrap();
        if e.offset == entry.offset {
            let err = repo.load_blob(id).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
            assert!(err.to_string().contains(&pack.to_string()), "{err}");
        }
    }
    assert!(repo.verify_pack(&pack).is_err());
}

#[test]
fn copying_some_members_of_a_group_regroups_them() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = init(&backend);
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| text(i, 10000)).collect();
    let ids: Vec<Id> = blobs.iter().map(|b| repo.blob_id(b)).collect();
    save(&repo, &blobs);
    repo.flush().unwrap();
    let packs = by_pack(&repo, &ids);
    let (pack, entries) = packs.iter().next().unwrap();
    let kept: Vec<BlobEntry> = entries.iter().step_by(2).copied().collect();
    let stored = repo.copy_blobs_from_pack(pack, &kept).unwrap();
    assert!(stored > 0);
    repo.flush().unwrap();
    drop(repo);
    let repo = Repository::open(backend.clone(), &PW, opts(b"r2")).unwrap();
    for e in &kept {
        let want = &blobs[ids.iter().position(|id| *id == e.id).unwrap()];
        assert_eq!(&repo.load_blob(&e.id).unwrap(), want);
    }
    // Every pack still verifies, the new one holding a smaller group.
    for info in backend.list(cairn_store::ObjectKind::Pack).unwrap() {
        repo.verify_pack(&info.handle.name.parse().unwrap())
            .unwrap();
    }
}

#[test]
fn blobs_larger_than_a_group_are_stored_alone() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = init(&backend);
    // A chunker configured for large chunks: members past the group size
    // must not make a group readers would refuse.
    // Small and large (past the 8 MiB a reader accepts for a group) mixed.
    let all: Vec<Vec<u8>> = (0..7)
        .map(|i| text(i, if i % 3 == 1 { 9 << 20 } else { 20_000 }))
        .collect();
    save(&repo, &all);
    repo.flush().unwrap();
    for (k, b) in all.iter().enumerate() {
        let id = repo.blob_id(b);
        let (_, e) = repo.locate_blob(&id).unwrap().unwrap();
        if b.len() > 1 << 20 {
            assert_ne!(e.compression, Compression::Grouped, "blob {k}");
        }
        assert_eq!(&repo.load_blob(&id).unwrap(), b, "blob {k}");
    }
}

#[test]
fn incompressible_members_are_stored_alone_and_raw() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = init(&backend);
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| random(100 + i, 30000)).collect();
    let outcomes = save(&repo, &blobs);
    assert!(outcomes.iter().all(|o| o.new));
    repo.flush().unwrap();
    for b in &blobs {
        let id = repo.blob_id(b);
        let (_, e) = repo.locate_blob(&id).unwrap().unwrap();
        // The group did not shrink: each member is stored as it is.
        assert_eq!(e.compression, Compression::None);
        assert_eq!(&repo.load_blob(&id).unwrap(), b);
    }
    let stored: u64 = outcomes.iter().map(|o| o.stored_len).sum();
    let raw: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    assert!(stored <= raw + 64 * blobs.len() as u64, "{stored} vs {raw}");
}

#[test]
fn the_target_length_sets_how_many_members_share_a_group() {
    use cairn_store::group::DISK_GROUP_LEN;
    let blobs: Vec<Vec<u8>> = (0..60).map(|i| text(1000 + i, 16 * 1024)).collect();
    let groups_for = |target: usize| {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let repo = init(&backend);
        let members: Vec<(Id, &[u8])> = blobs.iter().map(|b| (repo.blob_id(b), &b[..])).collect();
        repo.save_group(BlobType::Data, &members, target).unwrap();
        repo.flush().unwrap();
        let places: std::collections::BTreeSet<(Id, u32)> = members
            .iter()
            .map(|m| {
                let (pack, e) = repo.locate_blob(&m.0).unwrap().unwrap();
                assert_eq!(e.compression, Compression::Grouped);
                (pack, e.offset)
            })
            .collect();
        places.len()
    };
    // 960 KiB of members: four groups at 256 KiB, one at the disk target.
    assert_eq!(groups_for(TARGET_GROUP_LEN), 4);
    assert_eq!(groups_for(DISK_GROUP_LEN), 1);
    // A target past what readers accept is held to the disk target.
    assert_eq!(groups_for(usize::MAX), 1);
}

#[test]
fn members_whose_ids_share_a_prefix_go_into_different_groups() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let repo = init(&backend);
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| text(2000 + i, 9000)).collect();
    let mut members: Vec<(Id, &[u8])> = blobs.iter().map(|b| (repo.blob_id(b), &b[..])).collect();
    // A forged id sharing blob 1's table prefix (real ids never collide
    // like this in practice: 2^-64 per pair).
    let mut twin = members[1].0;
    twin.0[31] ^= 1;
    members.insert(3, (twin, &blobs[5][..]));
    repo.save_group(BlobType::Data, &members, TARGET_GROUP_LEN)
        .unwrap();
    repo.flush().unwrap();
    let place = |id: &Id| {
        let (pack, e) = repo.locate_blob(id).unwrap().unwrap();
        (pack, e.offset)
    };
    // The twin starts a new group: members before it and from it on differ.
    assert_eq!(place(&members[0].0), place(&members[1].0));
    assert_ne!(place(&members[1].0), place(&twin));
    assert_eq!(place(&twin), place(&members[4].0));
    for b in &blobs[..5] {
        assert_eq!(&repo.load_blob(&repo.blob_id(b)).unwrap(), b);
    }
}
