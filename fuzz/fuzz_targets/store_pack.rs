//! Fuzz target `store_pack`: the pack trailer and blob readers
//! (`cairn_store::pack::read_trailer`, `cairn_store::pack::open_stored`) on
//! hostile packs. Only "no panic" is asserted; errors are the expected
//! outcome for almost every input.
//!
//! Random bytes never authenticate, so the first input byte picks a mode,
//! most of which get past AES-GCM by sealing with the fixed fuzz keys:
//! - 0: the rest as a whole stored pack;
//! - 1: a valid pack (built once) edited by the rest (see `common::mutate`);
//! - 2: the valid pack's header and blobs with a trailer whose *plaintext*
//!   is the rest, correctly sealed (reaches the trailer parser and
//!   `BlobEntry` decoding);
//! - 3: the valid trailer plaintext edited by the rest, then sealed (reaches
//!   `open_stored` with entries that still authenticate their blob but lie
//!   about compression or length);
//! - 4: one blob sealed by the harness with an entry from the rest
//!   (type, compression, raw length, id), then `open_stored` (reaches the
//!   zstd decompressor with hostile frames);
//! - 5: a solid group whose *plaintext* is the rest, compressed and sealed
//!   by the harness, opened through `open_group` and `open_stored` as three
//!   members (reaches `group::Group::parse` with hostile member tables).
//!
//! The valid pack holds a solid group of three blobs too, so modes 1 and 3
//! edit group entries and `read_all` opens groups the way `verify_pack`
//! does.

#![no_main]

#[path = "common.rs"]
mod common;

use cairn_store::object::ObjectHeader;
use cairn_store::pack::{
    GROUP_AAD_ID, PackWriter, blob_aad, open_group, open_stored, read_trailer,
};
use cairn_store::{BlobEntry, BlobType, Compression, Id, ObjectKind, SeededRandom};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A valid pack of four blobs (compressed text, raw pseudo-random bytes,
/// an empty blob, a compressed run) and its trailer plaintext.
struct Base {
    pack: Vec<u8>,
    trailer_plain: Vec<u8>,
    trailer_start: usize,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let keys = common::keys();
        let mut w = PackWriter::new(BlobType::Data, keys, &SeededRandom::new(b"fuzz pack"), 0)
            .expect("pack writer");
        let text = b"compressible text, compressible text. ".repeat(40);
        let mut random = vec![0u8; 600];
        blake3::Hasher::new()
            .update(b"fuzz pack random")
            .finalize_xof()
            .fill(&mut random);
        let run = vec![0u8; 3000];
        for (plain, compress) in [
            (&text[..], true),
            (&random[..], false),
            (&[][..], false),
            (&run[..], true),
        ] {
            let id = keys.blob_id(plain);
            if compress {
                let z = zstd::bulk::compress(plain, 3).expect("zstd");
                w.add(id, Compression::Zstd, plain.len() as u32, &z);
            } else {
                w.add(id, Compression::None, plain.len() as u32, plain);
            }
        }
        let members: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                format!("member {i} of a group, member {i} of a group")
                    .repeat(20)
                    .into_bytes()
            })
            .collect();
        let named: Vec<(Id, &[u8])> = members.iter().map(|m| (keys.blob_id(m), &m[..])).collect();
        let plain = cairn_store::group::encode(&named);
        let z = zstd::bulk::compress(&plain, 3).expect("zstd");
        let lens: Vec<(Id, u32)> = named.iter().map(|(id, m)| (*id, m.len() as u32)).collect();
        w.add_group(&lens, &z);
        let finished = w.finish();
        let mut trailer_plain = (finished.entries.len() as u32).to_le_bytes().to_vec();
        for e in &finished.entries {
            e.encode_into(&mut trailer_plain);
        }
        let len = finished.bytes.len();
        let sealed_len =
            u32::from_le_bytes(finished.bytes[len - 4..].try_into().expect("four bytes")) as usize;
        Base {
            trailer_start: len - 4 - sealed_len,
            pack: finished.bytes,
            trailer_plain,
        }
    })
}

/// The valid pack's header and blobs, then `plain` sealed as its trailer.
fn with_trailer(plain: &[u8]) -> Vec<u8> {
    let b = base();
    let keys = common::keys();
    let cipher = ObjectHeader::decode(&b.pack, ObjectKind::Pack, "base")
        .and_then(|h| h.cipher(keys, "base"))
        .expect("base pack header");
    let mut out = b.pack[..b.trailer_start].to_vec();
    let sealed = cipher.seal(
        b.trailer_start as u64,
        &b.pack[..cairn_store::object::HEADER_LEN],
        plain,
    );
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out
}

/// Reads the trailer, then opens every blob it lists (as `verify_pack`).
fn read_all(pack: &[u8]) {
    let keys = common::keys();
    let Ok(entries) = read_trailer(pack, keys, "fuzz pack") else {
        return;
    };
    let Ok(cipher) =
        ObjectHeader::decode(pack, ObjectKind::Pack, "p").and_then(|h| h.cipher(keys, "p"))
    else {
        return;
    };
    let pack_id = Id::of_object(pack);
    for e in &entries {
        let start = e.offset as usize;
        if let Some(sealed) = pack.get(start..start + e.stored_len as usize) {
            let _ = open_stored(&cipher, keys, e, sealed.to_vec(), &pack_id);
        }
    }
    // Entries sharing a ciphertext, opened once as a group.
    for run in entries.chunk_by(|a, b| (a.offset, a.stored_len) == (b.offset, b.stored_len)) {
        let start = run[0].offset as usize;
        if let Some(sealed) = pack.get(start..start + run[0].stored_len as usize) {
            let members: Vec<&BlobEntry> = run.iter().collect();
            let _ = open_group(&cipher, keys, &members, &mut sealed.to_vec(), &pack_id);
        }
    }
}

/// Mode 5: a group plaintext from the rest, compressed and sealed by the
/// harness, opened as three members named by ids taken from it.
fn one_group(plain: &[u8]) {
    let keys = common::keys();
    let Ok(z) = zstd::bulk::compress(plain, 1) else {
        return;
    };
    let h = common::header(ObjectKind::Pack);
    let cipher = h.cipher(keys, "fuzz").expect("fixed keys hold their epoch");
    let offset = cairn_store::object::HEADER_LEN as u32;
    let sealed = cipher.seal(offset.into(), &blob_aad(BlobType::Data, &GROUP_AAD_ID), &z);
    // Ids where a member table would hold them, lengths after them.
    let entries: Vec<BlobEntry> = (0..3)
        .map(|k| {
            let at = 4 + k * 36;
            let id = plain
                .get(at..at + 32)
                .and_then(|b| b.try_into().ok())
                .map_or(Id([k as u8; 32]), Id);
            let raw_len = plain
                .get(at + 32..at + 36)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes);
            BlobEntry {
                id,
                blob_type: BlobType::Data,
                compression: Compression::Grouped,
                offset,
                stored_len: sealed.len() as u32,
                raw_len,
            }
        })
        .collect();
    let members: Vec<&BlobEntry> = entries.iter().collect();
    let _ = open_group(&cipher, keys, &members, &mut sealed.clone(), &Id([0; 32]));
    for e in &entries {
        let _ = open_stored(&cipher, keys, e, sealed.clone(), &Id([0; 32]));
    }
}

/// Mode 4: one blob, sealed by the harness, described by a hostile entry.
fn one_blob(data: &[u8]) {
    let Some((head, payload)) = data.split_first_chunk::<7>() else {
        return;
    };
    let keys = common::keys();
    let blob_type = if head[0] & 1 == 0 {
        BlobType::Data
    } else {
        BlobType::Meta
    };
    let compression = if head[1] & 1 == 0 {
        Compression::None
    } else {
        Compression::Zstd
    };
    let raw_len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
    // Either the id the blob would have if stored raw, or a wrong one.
    let id = if head[6] & 1 == 0 {
        keys.blob_id(payload)
    } else {
        Id([head[6]; 32])
    };
    let h = common::header(ObjectKind::Pack);
    let cipher = h.cipher(keys, "fuzz").expect("fixed keys hold their epoch");
    let offset = cairn_store::object::HEADER_LEN as u32;
    let sealed = cipher.seal(offset.into(), &blob_aad(blob_type, &id), payload);
    let entry = BlobEntry {
        id,
        blob_type,
        compression,
        offset,
        stored_len: sealed.len() as u32,
        raw_len,
    };
    let _ = open_stored(&cipher, keys, &entry, sealed, &Id([0; 32]));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => read_all(rest),
        1 => read_all(&common::mutate(&base().pack, rest)),
        2 => read_all(&with_trailer(rest)),
        3 => {
            let plain = common::mutate(&base().trailer_plain, rest);
            read_all(&with_trailer(&plain));
        }
        4 => one_blob(rest),
        _ => one_group(rest),
    }
});
