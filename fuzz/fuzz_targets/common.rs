//! Helpers shared by the `store_*` fuzz targets (included with `#[path]`,
//! not a target itself).
//!
//! - [`keys`]: the fixed master key set every target uses, so a target can
//!   seal well-formed objects and reach the parsers behind authentication.
//! - [`seal_body`]: a metadata-shaped object whose decrypted body is any
//!   bytes the fuzzer chose (skips `seal_metadata`'s compression, so the
//!   zstd frame itself is hostile).
//! - [`mutate`]: applies the fuzzer's bytes as edits (XOR, truncate, insert,
//!   delete) to a valid object, so inputs start from real structure.

// Each target uses only some of these helpers.
#![allow(dead_code)]

use cairn_store::crypto::TAG_LEN;
use cairn_store::object::{HEADER_LEN, ObjectHeader};
use cairn_store::{MasterKeys, ObjectKind, SeededRandom};
use std::sync::OnceLock;

/// The fixed keys: `MasterKeys::generate(&SeededRandom::new(b"fuzz"))`.
pub fn keys() -> &'static MasterKeys {
    static KEYS: OnceLock<MasterKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // Harness setup: a failure here is a bug in the harness, not a finding.
        MasterKeys::generate(&SeededRandom::new(b"fuzz")).expect("fixed fuzz keys")
    })
}

/// A fixed salt for objects the harness seals itself.
pub const SALT: [u8; 32] = [0x5a; 32];

/// The header of an object of `kind` the harness seals under [`keys`].
pub fn header(kind: ObjectKind) -> ObjectHeader {
    ObjectHeader {
        kind,
        epoch: keys().current_epoch(),
        salt: SALT,
    }
}

/// `header || AES-GCM(body)` exactly as `seal_metadata` lays it out, but with
/// `body` sealed as given (no compression): after decryption the reader sees
/// the fuzzer's bytes as the zstd frame.
pub fn seal_body(kind: ObjectKind, body: &[u8]) -> Vec<u8> {
    let h = header(kind);
    let encoded = h.encode();
    let cipher = h
        .cipher(keys(), "fuzz")
        .expect("fixed keys hold their epoch");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&cipher.seal(HEADER_LEN as u64, &encoded, body));
    out
}

/// Applies `ops` to a copy of `base`, six bytes per edit:
/// `[op, pos (u32 LE), value]`, `pos` taken modulo the current length + 1.
/// Ops: 0 XOR the byte at pos with value (value 0 means 0x01), 1 truncate to
/// pos, 2 insert value at pos, 3 delete the byte at pos, 4 overwrite the
/// little-endian u32 at pos with value-derived extremes (0, 1, 0xff..ff,
/// 0x7f..ff) to hit length fields. Leftover bytes are ignored.
pub fn mutate(base: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for op in ops.chunks_exact(6) {
        let pos = u32::from_le_bytes([op[1], op[2], op[3], op[4]]) as usize % (out.len() + 1);
        let value = op[5];
        match op[0] % 5 {
            0 => {
                if let Some(b) = out.get_mut(pos) {
                    *b ^= value.max(1);
                }
            }
            1 => out.truncate(pos),
            2 => out.insert(pos, value),
            3 => {
                if pos < out.len() {
                    out.remove(pos);
                }
            }
            _ => {
                let word: u32 = match value % 4 {
                    0 => 0,
                    1 => 1,
                    2 => u32::MAX,
                    _ => i32::MAX as u32,
                };
                if let Some(slot) = out.get_mut(pos..pos + 4) {
                    slot.copy_from_slice(&word.to_le_bytes());
                }
            }
        }
    }
    out
}
