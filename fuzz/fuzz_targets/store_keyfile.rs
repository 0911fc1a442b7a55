//! Fuzz target `store_keyfile`: key files (`keyfile::KeyFile::parse`, then
//! `KeyFile::unlock`). Only "no panic" is asserted.
//!
//! The first input byte picks a mode:
//! - 0: the rest as a key file;
//! - 1: a valid password key file (built once, `KdfParams::INSECURE_FAST`)
//!   edited by the rest (see `common::mutate`);
//! - 2: a valid raw-key key file edited by the rest.
//!
//! Every file that parses is unlocked with the raw key and with the
//! password. A hostile key file may ask Argon2id for up to 4 GiB of memory
//! and 1000 passes (the parser's bounds): that would exhaust the fuzzer's
//! memory or time, not find a bug, so the password is tried only when the
//! cost is at most 1 MiB of memory and 4 passes (1 MiB × 4).

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::keyfile::{KeyFile, seal_key_file};
use cairn_store::{Credential, KdfParams, KeyFileInfo, SeededRandom};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The password of the valid key file.
const PASSWORD: &[u8] = b"fuzz password";
/// The raw key of the valid raw-key file.
const RAW_KEY: [u8; 32] = [0x42; 32];
/// Largest Argon2id memory the harness lets a key file ask for.
const MAX_FUZZ_MEMORY_KIB: u32 = 1024;
/// Largest Argon2id pass count the harness lets a key file ask for.
const MAX_FUZZ_ITERATIONS: u32 = 4;

/// A valid password key file and a valid raw-key key file of the fuzz keys.
fn samples() -> &'static (Vec<u8>, Vec<u8>) {
    static SAMPLES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let keys = common::keys();
        let info = KeyFileInfo {
            created: 1_764_633_600,
            hostname: "fuzz".into(),
            username: "cairn".into(),
            epoch: None,
        };
        let rng = SeededRandom::new(b"fuzz key files");
        let password = seal_key_file(
            keys,
            &Credential::Password(PASSWORD),
            &KdfParams::INSECURE_FAST,
            &info,
            &rng,
        )
        .expect("password key file");
        let raw = seal_key_file(
            keys,
            &Credential::RawKey(&RAW_KEY),
            &KdfParams::INSECURE_FAST,
            &info,
            &rng,
        )
        .expect("raw key file");
        (password, raw)
    })
}

/// Parses `bytes` and tries both credentials on what parses.
fn parse_and_unlock(bytes: &[u8]) {
    let Ok(kf) = KeyFile::parse(bytes, "fuzz key") else {
        return;
    };
    let _ = kf.is_password();
    let _ = kf.unlock(&Credential::RawKey(&RAW_KEY), "fuzz key");
    let params = kf.params();
    if params.memory_kib <= MAX_FUZZ_MEMORY_KIB && params.iterations <= MAX_FUZZ_ITERATIONS {
        let _ = kf.unlock(&Credential::Password(PASSWORD), "fuzz key");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => parse_and_unlock(rest),
        1 => parse_and_unlock(&common::mutate(&samples().0, rest)),
        _ => parse_and_unlock(&common::mutate(&samples().1, rest)),
    }
});
