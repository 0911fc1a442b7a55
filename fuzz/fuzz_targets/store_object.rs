//! Fuzz target `store_object`: the smaller parsers of target data. Only
//! "no panic" is asserted.
//!
//! The first input byte picks the parser for the rest:
//! - 0: `object::ObjectHeader::decode` (kind from the second byte);
//! - 1: `object::open_metadata` (kind from the second byte);
//! - 2: `crypto::MasterKeys::decode` (the plaintext inside key files);
//! - 3: `Config` from JSON with serde_json, then `Config::validate`;
//! - 4: `Config::open` on a stored config;
//! - 5: the rest as config JSON, sealed properly, `Config::open`;
//! - 6: `lock::LockInfo::open` on a stored lock;
//! - 7: the rest as lock JSON, sealed properly, `LockInfo::open`;
//! - 8: the rest sealed without compression (a hostile zstd frame behind
//!   valid authentication), `object::open_metadata`;
//! - 9: object names as listed from a target, parsed as `Id`.

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::crypto::MasterKeys;
use cairn_store::lock::LockInfo;
use cairn_store::object::{ObjectHeader, open_metadata, seal_metadata};
use cairn_store::{Config, Id, ObjectKind, SeededRandom};
use libfuzzer_sys::fuzz_target;

/// The object kind a byte selects.
fn kind(b: u8) -> ObjectKind {
    ObjectKind::ALL[usize::from(b) % ObjectKind::ALL.len()]
}

/// `json` sealed as a metadata object of `kind`, as a writer would.
fn sealed(kind: ObjectKind, json: &[u8]) -> Option<Vec<u8>> {
    seal_metadata(
        kind,
        json,
        common::keys(),
        &SeededRandom::new(b"fuzz object"),
    )
    .ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    match mode % 10 {
        0 | 1 => {
            let Some((&k, body)) = rest.split_first() else {
                return;
            };
            if mode % 10 == 0 {
                let _ = ObjectHeader::decode(body, kind(k), "fuzz object");
            } else {
                let _ = open_metadata(kind(k), body, keys, "fuzz object");
            }
        }
        2 => {
            let _ = MasterKeys::decode(rest, "fuzz keys");
        }
        3 => {
            if let Ok(config) = serde_json::from_slice::<Config>(rest) {
                let _ = config.validate("fuzz config");
            }
        }
        4 => {
            let _ = Config::open(rest, keys);
        }
        5 => {
            if let Some(bytes) = sealed(ObjectKind::Config, rest) {
                let _ = Config::open(&bytes, keys);
            }
        }
        6 => {
            let _ = LockInfo::open(rest, keys, "fuzz lock");
        }
        7 => {
            if let Some(bytes) = sealed(ObjectKind::Lock, rest) {
                let _ = LockInfo::open(&bytes, keys, "fuzz lock");
            }
        }
        8 => {
            let Some((&k, body)) = rest.split_first() else {
                return;
            };
            let _ = open_metadata(
                kind(k),
                &common::seal_body(kind(k), body),
                keys,
                "fuzz object",
            );
        }
        _ => {
            if let Ok(name) = std::str::from_utf8(rest) {
                let _ = name.parse::<Id>();
            }
        }
    }
});
