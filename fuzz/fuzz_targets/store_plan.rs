//! Fuzz target `store_plan`: prune plans (`PrunePlan::decode` on payloads,
//! `PrunePlan::open` on stored objects). Only "no panic" is asserted, and
//! that what decodes re-encodes to the same plan.
//!
//! The first input byte picks a mode:
//! - 0: the rest as a plan payload (`PrunePlan::decode`);
//! - 1: the rest as a stored plan object (`PrunePlan::open`);
//! - 2: a valid sealed plan (built once) edited by the rest;
//! - 3: a valid plan payload edited by the rest, then sealed properly and
//!   opened (reaches the payload parser through the whole read path);
//! - 4: the rest sealed as the object's body without compression, so the
//!   zstd frame the reader decompresses is the fuzzer's.

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::{Id, LockHolder, ObjectKind, PrunePlan, SeededRandom};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A valid plan (two locks, three packs), its payload and its sealed
/// object.
fn sample() -> &'static (Vec<u8>, Vec<u8>) {
    static SAMPLE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let plan = PrunePlan {
            created: 1_790_000_000,
            locks: vec![
                LockHolder {
                    hostname: "db-1".into(),
                    pid: 4242,
                    created: 1_789_999_000,
                },
                LockHolder {
                    hostname: "web-2.example".into(),
                    pid: 7,
                    created: 1_789_999_500,
                },
            ],
            packs: vec![Id([1; 32]), Id([2; 32]), Id([3; 32])],
        };
        let sealed = plan
            .seal(common::keys(), &SeededRandom::new(b"fuzz plan"))
            .expect("seal sample plan");
        (plan.encode(), sealed)
    })
}

/// Decodes a payload; what decodes must re-encode to the same plan.
fn decode(payload: &[u8]) {
    if let Ok(plan) = PrunePlan::decode(payload, "fuzz plan") {
        let again = PrunePlan::decode(&plan.encode(), "re-encoded").expect("re-encoded plan");
        assert_eq!(again, plan);
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
            let _ = PrunePlan::open(rest, keys, "fuzz plan");
        }
        2 => {
            let _ = PrunePlan::open(&common::mutate(&sample().1, rest), keys, "fuzz plan");
        }
        3 => {
            let payload = common::mutate(&sample().0, rest);
            let sealed = cairn_store::object::seal_metadata(
                ObjectKind::Plan,
                &payload,
                keys,
                &SeededRandom::new(b"fuzz plan reseal"),
            )
            .expect("seal a payload");
            let _ = PrunePlan::open(&sealed, keys, "fuzz plan");
        }
        _ => {
            let _ = PrunePlan::open(
                &common::seal_body(ObjectKind::Plan, rest),
                keys,
                "fuzz plan",
            );
        }
    }
});
