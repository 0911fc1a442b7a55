//! Fuzz target `store_index`: index files (`IndexFile::decode` on payloads,
//! `IndexFile::open` on stored objects). Only "no panic" is asserted.
//!
//! The first input byte picks a mode:
//! - 0: the rest as an index payload (`IndexFile::decode`);
//! - 1: the rest as a stored index object (`IndexFile::open`);
//! - 2: a valid sealed index (built once) edited by the rest;
//! - 3: a valid index payload edited by the rest, then sealed properly and
//!   opened (reaches the payload parser through the whole read path);
//! - 4: the rest sealed as the object's body without compression, so the
//!   zstd frame the reader decompresses is the fuzzer's.

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::{
    BlobEntry, BlobType, Compression, Id, IndexFile, ObjectKind, PackBlobs, SeededRandom,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A valid index (two packs, one empty; five entries; one superseded
/// file), its payload and its sealed object.
fn sample() -> &'static (IndexFile, Vec<u8>, Vec<u8>) {
    static SAMPLE: OnceLock<(IndexFile, Vec<u8>, Vec<u8>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let entry = |i: u8| BlobEntry {
            id: Id([i; 32]),
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
            offset: 44 + u32::from(i) * 100,
            stored_len: 100,
            raw_len: 200 + u32::from(i),
        };
        let file = IndexFile {
            supersedes: vec![Id([9; 32])],
            packs: vec![
                PackBlobs {
                    pack: Id([1; 32]),
                    blobs: (0..5).map(entry).collect(),
                },
                PackBlobs {
                    pack: Id([2; 32]),
                    blobs: vec![],
                },
            ],
        };
        let sealed = file
            .seal(common::keys(), &SeededRandom::new(b"fuzz index"))
            .expect("seal sample index");
        let payload = file.encode();
        (file, payload, sealed)
    })
}

/// Decodes a payload; re-encodes what decodes (exercising `encode` on
/// hostile values).
fn decode(payload: &[u8]) {
    if let Ok(file) = IndexFile::decode(payload, "fuzz index") {
        let _ = IndexFile::decode(&file.encode(), "re-encoded");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    match mode % 5 {
        0 => decode(rest),
        1 => {
            let _ = IndexFile::open(rest, keys, "fuzz index");
        }
        2 => {
            let _ = IndexFile::open(&common::mutate(&sample().2, rest), keys, "fuzz index");
        }
        3 => {
            let payload = common::mutate(&sample().1, rest);
            let sealed = cairn_store::object::seal_metadata(
                ObjectKind::Index,
                &payload,
                keys,
                &SeededRandom::new(b"fuzz index reseal"),
            )
            .expect("seal a payload");
            let _ = IndexFile::open(&sealed, keys, "fuzz index");
        }
        _ => {
            let _ = IndexFile::open(
                &common::seal_body(ObjectKind::Index, rest),
                keys,
                "fuzz index",
            );
        }
    }
});
