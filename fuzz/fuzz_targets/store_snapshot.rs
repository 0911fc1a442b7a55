//! Fuzz target `store_snapshot`: snapshot manifests (`Snapshot::parse` on
//! JSON, `Snapshot::open` on stored objects). Only "no panic" is asserted.
//!
//! The first input byte picks a mode:
//! - 0: the rest as manifest JSON (`Snapshot::parse`);
//! - 1: the rest as a stored snapshot (`Snapshot::open`);
//! - 2: a valid manifest's JSON edited by the rest, sealed properly, opened;
//! - 3: the rest as JSON, sealed properly, opened;
//! - 4: the rest sealed as the object's body without compression (a hostile
//!   zstd frame behind valid authentication).

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::object::seal_metadata;
use cairn_store::{ObjectKind, SeededRandom, Snapshot};
use libfuzzer_sys::fuzz_target;

/// A valid manifest with every field present.
const SAMPLE: &[u8] = br#"{"time":1764633600,"time_nanos":5,"hostname":"h","username":"u","kind":"files","paths":["/data","/etc"],"tags":["t"],"parent":"0101010101010101010101010101010101010101010101010101010101010101","root":"0202020202020202020202020202020202020202020202020202020202020202","program_version":"0.1.0","stats":{"bytes_read":1,"bytes_new":2,"bytes_stored":3,"chunks":4,"chunks_new":5,"files":6,"errors":7,"duration_ms":8}}"#;

/// Seals `json` as a snapshot (compressed as the writer does) and opens it.
fn sealed_round(json: &[u8]) {
    let keys = common::keys();
    if let Ok(sealed) = seal_metadata(
        ObjectKind::Snapshot,
        json,
        keys,
        &SeededRandom::new(b"fuzz snapshot"),
    ) {
        let _ = Snapshot::open(&sealed, keys, "fuzz snapshot");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    match mode % 5 {
        0 => {
            let _ = Snapshot::parse(rest, "fuzz snapshot");
        }
        1 => {
            let _ = Snapshot::open(rest, keys, "fuzz snapshot");
        }
        2 => sealed_round(&common::mutate(SAMPLE, rest)),
        3 => sealed_round(rest),
        _ => {
            let sealed = common::seal_body(ObjectKind::Snapshot, rest);
            let _ = Snapshot::open(&sealed, keys, "fuzz snapshot");
        }
    }
});
