#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Test vectors of the repository format (docs/format.md §2), pinned in
//! hex: a change to any of these bytes is a format change and must come
//! with a format version bump, not silently.
//!
//! `cargo test -p cairn-store --test format_vectors -- --ignored --nocapture`
//! prints them as a Markdown block for docs/format.md.

use cairn_store::crypto::{MasterKeys, ObjectCipher, Secret32, nonce_at};
use cairn_store::object::{ObjectHeader, open_metadata, seal_metadata};
use cairn_store::{ObjectKind, SeededRandom};

/// `ObjectCipher::derive(&Secret32([0x11; 32]), &[0x22; 32]).seal(44, b"aad", b"cairn")`:
/// pins the per-object key derivation, the offset nonce and AES-256-GCM.
const SEAL: &str = "9a87e3ccabe8582069f55f9355b4a2c40420ba8c72";
/// `nonce_at(0x0102030405)`.
const NONCE: &str = "050403020100000000000000";
/// `ObjectHeader { kind: Pack, epoch: 7, salt: [0x33; 32] }.encode()`.
const HEADER: &str =
    "636169726e000201070000003333333333333333333333333333333333333333333333333333333333333333";
/// Length of `MasterKeys::generate(&SeededRandom::new(b"vector")).encode()`.
const KEYS_LEN: usize = 137;
/// BLAKE3 of that encoding.
const KEYS_BLAKE3: &str = "179baf83fdc9f88cf6b580a6247d7cb0c60645e8ad1a5dd858acbd0bfe151f20";
/// `keys.blob_id(b"hello")` for those keys.
const BLOB_ID_HELLO: &str = "32521ad8844a020b04ea0f8d8c0b90224822de9af80c0d2743fc49377c0a3bf2";
/// `seal_metadata(ObjectKind::Snapshot, br#"{"x":1}"#, &keys,
/// &SeededRandom::new(b"vector-salt"))`: header, then the zstd frame (level
/// 6) sealed at offset 44.
const SEALED_SNAPSHOT: &str = concat!(
    "636169726e00040100000000112b47cb95395579a12f1d10082d69679036699c",
    "fde3aeaac7f176b95015b5027446fa65373f3596c053b7a643066a89521afa3e",
    "17a477aba9b3ab175a73ba66"
);

/// `group::encode(&[(Id([0x11; 32]), b"ab"), (Id([0x22; 32]), b"cde")])`:
/// a solid group's plaintext before compression (§2.5.2): the member
/// count, each member's 8-byte id prefix and length, then the members.
const GROUP_PLAIN: &str = concat!(
    "02000000",
    "1111111111111111",
    "02000000",
    "2222222222222222",
    "03000000",
    "6162636465"
);

/// The master keys of the vectors.
fn keys() -> MasterKeys {
    MasterKeys::generate(&SeededRandom::new(b"vector")).unwrap()
}

fn seal_vector() -> Vec<u8> {
    ObjectCipher::derive(&Secret32([0x11; 32]), &[0x22; 32]).seal(44, b"aad", b"cairn")
}

fn header_vector() -> [u8; 44] {
    ObjectHeader {
        kind: ObjectKind::Pack,
        epoch: 7,
        salt: [0x33; 32],
    }
    .encode()
}

fn sealed_snapshot_vector() -> Vec<u8> {
    seal_metadata(
        ObjectKind::Snapshot,
        br#"{"x":1}"#,
        &keys(),
        &SeededRandom::new(b"vector-salt"),
    )
    .unwrap()
}

#[test]
fn object_cipher_seal() {
    let sealed = seal_vector();
    assert_eq!(hex::encode(&sealed), SEAL);
    // 5 bytes of ciphertext and the 16-byte tag.
    assert_eq!(sealed.len(), 5 + 16);
    let c = ObjectCipher::derive(&Secret32([0x11; 32]), &[0x22; 32]);
    assert_eq!(c.open(44, b"aad", &sealed).unwrap(), b"cairn");
}

#[test]
fn nonce_is_the_offset_little_endian() {
    assert_eq!(hex::encode(nonce_at(0x01_0203_0405)), NONCE);
}

#[test]
fn object_header_encoding() {
    let h = header_vector();
    assert_eq!(hex::encode(h), HEADER);
    assert_eq!(
        ObjectHeader::decode(&h, ObjectKind::Pack, "v").unwrap(),
        ObjectHeader {
            kind: ObjectKind::Pack,
            epoch: 7,
            salt: [0x33; 32],
        }
    );
}

#[test]
fn master_keys_encoding() {
    let encoded = keys().encode();
    assert_eq!(encoded.len(), KEYS_LEN);
    assert_eq!(blake3::hash(&encoded).to_hex().as_str(), KEYS_BLAKE3);
    assert_eq!(MasterKeys::decode(&encoded, "v").unwrap(), keys());
}

#[test]
fn blob_id_is_keyed_blake3() {
    assert_eq!(keys().blob_id(b"hello").to_hex(), BLOB_ID_HELLO);
}

#[test]
fn sealed_metadata_object() {
    let sealed = sealed_snapshot_vector();
    assert_eq!(hex::encode(&sealed), SEALED_SNAPSHOT);
    // Reading does not depend on the zstd build: the pinned bytes open.
    let pinned = hex::decode(SEALED_SNAPSHOT).unwrap();
    assert_eq!(
        open_metadata(ObjectKind::Snapshot, &pinned, &keys(), "v").unwrap(),
        br#"{"x":1}"#
    );
}

fn group_vector() -> Vec<u8> {
    cairn_store::group::encode(&[
        (cairn_store::Id([0x11; 32]), b"ab"),
        (cairn_store::Id([0x22; 32]), b"cde"),
    ])
}

#[test]
fn solid_group_plaintext() {
    let plain = group_vector();
    assert_eq!(hex::encode(&plain), GROUP_PLAIN);
    let pinned = hex::decode(GROUP_PLAIN).unwrap();
    let group = cairn_store::group::Group::parse(&pinned, "v").unwrap();
    assert_eq!(
        group.member(&cairn_store::Id([0x22; 32])),
        Some(&b"cde"[..])
    );
}

/// Prints the vectors (computed, not the constants) for docs/format.md.
#[test]
#[ignore = "prints the vectors for docs/format.md; run with --ignored --nocapture"]
fn print_vectors_for_docs() {
    let encoded = keys().encode();
    println!("```text");
    println!("ObjectCipher::derive(data_key = 11 x32, salt = 22 x32)");
    println!("  .seal(offset 44, aad \"aad\", \"cairn\")");
    println!("  = {}", hex::encode(seal_vector()));
    println!(
        "nonce_at(0x0102030405) = {}",
        hex::encode(nonce_at(0x01_0203_0405))
    );
    println!("header(kind Pack, epoch 7, salt 33 x32)");
    println!("  = {}", hex::encode(header_vector()));
    println!("keys = MasterKeys::generate(SeededRandom(\"vector\"))");
    println!(
        "  encode(): {} bytes, BLAKE3 {}",
        encoded.len(),
        blake3::hash(&encoded).to_hex()
    );
    println!(
        "keys.blob_id(\"hello\") = {}",
        keys().blob_id(b"hello").to_hex()
    );
    println!("seal_metadata(Snapshot, {{\"x\":1}}, keys, SeededRandom(\"vector-salt\"))");
    println!("  = {}", hex::encode(sealed_snapshot_vector()));
    println!("group::encode([(11 x32, \"ab\"), (22 x32, \"cde\")])");
    println!("  = {}", hex::encode(group_vector()));
    println!("```");
}
