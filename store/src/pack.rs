//! Packs: many encrypted blobs in one stored object, with an encrypted
//! trailer listing them, so a pack can be indexed from itself alone.
//!
//! Layout (docs/format.md §2.5): the 44-byte object header, then each blob's
//! ciphertext (nonce = its offset, associated data = type byte || blob id),
//! then the sealed trailer (nonce = its offset, associated data = the header),
//! then the trailer's sealed length as a little-endian u32. Blobs are sealed
//! one by one so a restore reads and authenticates single blobs with ranged
//! reads.

use crate::backend::ObjectKind;
use crate::crypto::{MasterKeys, ObjectCipher, TAG_LEN};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::id::Id;
use crate::index::{BlobEntry, BlobType, Compression, ENTRY_LEN};
use crate::object::{HEADER_LEN, ObjectHeader};
use crate::random::RandomSource;
use crate::wire::Reader;

/// Largest blob plaintext a reader accepts (the chunker's maximum chunk is
/// 1 GiB; metadata blobs are far smaller).
pub const MAX_BLOB_LEN: u32 = (1 << 30) + (1 << 20);

/// Largest pack this format allows (offsets are u32).
pub const MAX_PACK_LEN: u64 = u32::MAX as u64;

/// Associated data of one blob's ciphertext: its type byte, then its id.
pub fn blob_aad(blob_type: BlobType, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = blob_type.to_byte();
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// The id in the associated data of a solid group's ciphertext (the group
/// has no id of its own; each member is verified by its id once opened).
pub const GROUP_AAD_ID: Id = Id([0xff; 32]);

/// Associated data of the ciphertext an entry points at: its own for a blob
/// stored alone, the group's for a member of a solid group.
pub fn entry_aad(entry: &BlobEntry) -> [u8; 33] {
    match entry.compression {
        Compression::Grouped => blob_aad(entry.blob_type, &GROUP_AAD_ID),
        _ => blob_aad(entry.blob_type, &entry.id),
    }
}

/// A pack being filled. Not thread-safe on its own; the repository keeps one
/// per blob type behind a lock.
pub struct PackWriter {
    header: [u8; HEADER_LEN],
    cipher: ObjectCipher,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    blob_type: BlobType,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    /// Its object id (plain BLAKE3 of `bytes`).
    pub id: Id,
    /// The whole stored object.
    pub bytes: Vec<u8>,
    /// Its blobs, in order.
    pub entries: Vec<BlobEntry>,
}

impl PackWriter {
    /// An empty pack for blobs of `blob_type`, under a fresh salt.
    pub fn new(
        blob_type: BlobType,
        keys: &MasterKeys,
        rng: &dyn RandomSource,
        capacity: usize,
    ) -> Result<Self> {
        Self::with_buffer(blob_type, keys, rng, Vec::with_capacity(capacity))
    }

    /// Like [`PackWriter::new`], in `buf`'s memory (its bytes are dropped,
    /// its capacity kept): packs written one after another can reuse one
    /// buffer instead of each allocating and faulting in 16 MiB afresh.
    pub fn with_buffer(
        blob_type: BlobType,
        keys: &MasterKeys,
        rng: &dyn RandomSource,
        mut buf: Vec<u8>,
    ) -> Result<Self> {
        let header = ObjectHeader::fresh(ObjectKind::Pack, keys, rng)?;
        let cipher = header.cipher(keys, "new pack")?;
        let header = header.encode();
        buf.clear();
        buf.extend_from_slice(&header);
        Ok(PackWriter {
            header,
            cipher,
            buf,
            entries: Vec::new(),
            blob_type,
        })
    }

    /// The type of blob this pack holds.
    pub fn blob_type(&self) -> BlobType {
        self.blob_type
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The blobs added so far.
    pub fn entries(&self) -> &[BlobEntry] {
        &self.entries
    }

    /// Whether `stored` more bytes (plus a trailer entry) still fit the
    /// format's size limit.
    pub fn fits(&self, stored: usize) -> bool {
        self.fits_entries(stored, 1)
    }

    /// Whether `stored` more bytes with `entries` more trailer entries (a
    /// solid group's members) still fit the format's size limit.
    pub fn fits_entries(&self, stored: usize, entries: usize) -> bool {
        let trailer = (self.entries.len() + entries) * ENTRY_LEN + 4 + TAG_LEN + 4;
        (self.buf.len() + stored + TAG_LEN + trailer) as u64 <= MAX_PACK_LEN
    }

    /// Encrypts and appends one blob whose stored form (compressed or raw, as
    /// `compression` says) is `stored`. The caller checks [`Self::fits`].
    pub fn add(
        &mut self,
        id: Id,
        compression: Compression,
        raw_len: u32,
        stored: &[u8],
    ) -> BlobEntry {
        let (offset, stored_len) = self.seal_and_append(&blob_aad(self.blob_type, &id), stored);
        let entry = BlobEntry {
            id,
            blob_type: self.blob_type,
            compression,
            offset,
            stored_len,
            raw_len,
        };
        self.entries.push(entry);
        entry
    }

    /// Encrypts and appends a solid group (see [`crate::group`]): `stored`
    /// is the zstd frame of the group's plaintext, `members` each member's
    /// id and length in it. Every member gets an entry pointing at the one
    /// ciphertext. The caller checks [`Self::fits`] (for the ciphertext and
    /// one entry per member).
    pub fn add_group(&mut self, members: &[(Id, u32)], stored: &[u8]) -> Vec<BlobEntry> {
        let (offset, stored_len) =
            self.seal_and_append(&blob_aad(self.blob_type, &GROUP_AAD_ID), stored);
        let added: Vec<BlobEntry> = members
            .iter()
            .map(|&(id, raw_len)| BlobEntry {
                id,
                blob_type: self.blob_type,
                compression: Compression::Grouped,
                offset,
                stored_len,
                raw_len,
            })
            .collect();
        self.entries.extend_from_slice(&added);
        added
    }

    /// Seals `stored` at the end of the pack (nonce = its offset) and
    /// appends it; returns its offset and sealed length.
    fn seal_and_append(&mut self, aad: &[u8], stored: &[u8]) -> (u32, u32) {
        let offset = self.buf.len();
        let mut sealed = Vec::with_capacity(stored.len() + TAG_LEN);
        sealed.extend_from_slice(stored);
        self.cipher.seal_in_place(offset as u64, aad, &mut sealed);
        self.buf.extend_from_slice(&sealed);
        (offset as u32, sealed.len() as u32)
    }

    /// Reads back a blob's stored form from the unfinished pack (a session
    /// may load a blob it has not uploaded yet).
    pub fn stored_form(&self, entry: &BlobEntry) -> Option<Vec<u8>> {
        let start = entry.offset as usize;
        let sealed = self.buf.get(start..start + entry.stored_len as usize)?;
        self.cipher
            .open(entry.offset.into(), &entry_aad(entry), sealed)
    }

    /// Appends the trailer and returns the finished pack.
    pub fn finish(mut self) -> FinishedPack {
        let mut trailer = Vec::with_capacity(4 + ENTRY_LEN * self.entries.len() + TAG_LEN);
        trailer.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.encode_into(&mut trailer);
        }
        let offset = self.buf.len() as u64;
        self.cipher
            .seal_in_place(offset, &self.header, &mut trailer);
        self.buf.extend_from_slice(&trailer);
        self.buf
            .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        FinishedPack {
            id: Id::of_object(&self.buf),
            bytes: self.buf,
            entries: self.entries,
        }
    }
}

/// Reads the blob list of a whole stored pack from its own trailer (for
/// `repair index` and `check`); every entry is checked to lie between the
/// header and the trailer.
pub fn read_trailer(pack: &[u8], keys: &MasterKeys, object: &str) -> Result<Vec<BlobEntry>> {
    let len = pack.len();
    if len < HEADER_LEN + TAG_LEN + 4 + 4 {
        return Err(Error::corrupt(object, "too short for a pack"));
    }
    let trailer_len = Reader::new(&pack[len - 4..]).u32().unwrap_or(0);
    let trailer_start = trailer_start(len as u64, trailer_len, object)?;
    decode_trailer(
        &pack[..HEADER_LEN],
        &pack[trailer_start as usize..len - 4],
        trailer_start,
        keys,
        object,
    )
}

/// Where the sealed trailer of a pack of `pack_len` bytes starts, given the
/// trailer length stored in its last four bytes; an error when that points
/// outside the pack.
pub fn trailer_start(pack_len: u64, trailer_len: u32, object: &str) -> Result<u64> {
    pack_len
        .checked_sub(4 + u64::from(trailer_len))
        .filter(|&s| s >= HEADER_LEN as u64)
        .ok_or_else(|| Error::corrupt(object, "trailer length points outside the pack"))
}

/// Decrypts and parses a pack's trailer from the pack's header and the
/// sealed trailer found at `trailer_start` (so a checker can read just the
/// two ends of a pack with ranged reads); every entry is checked to lie
/// between the header and the trailer.
pub fn decode_trailer(
    header: &[u8],
    sealed: &[u8],
    trailer_start: u64,
    keys: &MasterKeys,
    object: &str,
) -> Result<Vec<BlobEntry>> {
    let header = header
        .get(..HEADER_LEN)
        .ok_or_else(|| Error::corrupt(object, "too short for a pack"))?;
    let cipher = ObjectHeader::decode(header, ObjectKind::Pack, object)?.cipher(keys, object)?;
    let plain = cipher
        .open(trailer_start, header, sealed)
        .ok_or_else(|| Error::corrupt(object, "trailer authentication failed"))?;
    let mut r = Reader::new(&plain);
    let n = r
        .u32()
        .ok_or_else(|| Error::corrupt(object, "empty trailer"))? as usize;
    if n.checked_mul(ENTRY_LEN) != Some(r.remaining()) {
        return Err(Error::corrupt(
            object,
            "trailer count does not match its length",
        ));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = BlobEntry::decode(&mut r)
            .ok_or_else(|| Error::corrupt(object, "invalid trailer entry"))?;
        let end = u64::from(e.offset) + u64::from(e.stored_len);
        if (e.offset as usize) < HEADER_LEN || end > trailer_start {
            return Err(Error::corrupt(
                object,
                format!("blob {} lies outside the pack's blob area", e.id),
            ));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// The size of a pack holding exactly `entries` (all of its blobs): its
/// blob area, the sealed trailer and the trailer length.
pub fn expected_pack_len(entries: &[BlobEntry]) -> u64 {
    let blob_end = entries
        .iter()
        .map(|e| u64::from(e.offset) + u64::from(e.stored_len))
        .max()
        .unwrap_or(HEADER_LEN as u64);
    blob_end + 4 + (entries.len() * ENTRY_LEN) as u64 + TAG_LEN as u64 + 4
}

/// A blob as opened from its pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedBlob {
    /// The plaintext, verified against the entry's id and length.
    Whole(Vec<u8>),
    /// A patch encoding (authenticated, decompressed, not yet parsed): the
    /// repository applies it to its base and verifies the result.
    Patch(Vec<u8>),
}

/// Decrypts, decompresses and verifies one blob stored whole.
///
/// `sealed` is the blob's ciphertext as read from the pack at
/// `entry.offset`; `cipher` is the pack's. The plaintext's keyed hash must
/// equal the entry's id, so a blob moved, swapped or replayed is caught. A
/// blob stored as a patch is an error here: it needs its base, which only
/// the repository can fetch (see [`open_stored`]).
pub fn open_blob(
    cipher: &ObjectCipher,
    keys: &MasterKeys,
    entry: &BlobEntry,
    sealed: Vec<u8>,
    pack: &Id,
) -> Result<Vec<u8>> {
    match open_stored(cipher, keys, entry, sealed, pack)? {
        OpenedBlob::Whole(plain) => Ok(plain),
        OpenedBlob::Patch(_) => Err(Error::corrupt(
            format!("blob {} in pack {}", entry.id, pack),
            "stored as a patch where a whole blob is required",
        )),
    }
}

/// Largest patch encoding accepted for a blob of `raw_len` bytes: its
/// literals, a few bytes per 4 KiB block of operations, and the header.
fn max_patch_len(raw_len: u32) -> u64 {
    u64::from(raw_len) + u64::from(raw_len) / 8 + 4096
}

/// Decrypts and decompresses one blob: a whole blob is verified against its
/// id; a patch is returned as its encoding for the repository to apply.
pub fn open_stored(
    cipher: &ObjectCipher,
    keys: &MasterKeys,
    entry: &BlobEntry,
    sealed: Vec<u8>,
    pack: &Id,
) -> Result<OpenedBlob> {
    let stored = decrypt_stored(cipher, entry, sealed, pack)?;
    decode_stored(
        keys,
        entry,
        stored,
        &format!("blob {} in pack {}", entry.id, pack),
    )
}

/// [`open_stored`] into the caller's buffer: `sealed` (the blob's
/// ciphertext, decrypted in place) is decompressed straight into `dest`,
/// which must be exactly the blob's length, and verified there. A blob
/// stored as a patch leaves `dest` alone and comes back as its encoding.
/// On an error `dest` holds no meaningful bytes.
pub fn open_stored_into(
    cipher: &ObjectCipher,
    keys: &MasterKeys,
    entry: &BlobEntry,
    sealed: &mut [u8],
    pack: &Id,
    dest: &mut [u8],
) -> Result<Option<Vec<u8>>> {
    let what = || format!("blob {} in pack {}", entry.id, pack);
    let Some(len) = cipher.open_slice_in_place(entry.offset.into(), &entry_aad(entry), sealed)
    else {
        return Err(Error::corrupt(
            what(),
            "authentication failed (damaged or forged)",
        ));
    };
    let stored = &sealed[..len];
    if dest.len() != entry.raw_len as usize {
        return Err(Error::corrupt(what(), "length differs from the index"));
    }
    match entry.compression {
        Compression::None if stored.len() == dest.len() => dest.copy_from_slice(stored),
        Compression::None => {
            return Err(Error::corrupt(what(), "length differs from the index"));
        }
        Compression::Zstd => {
            check_declared_len(stored, u64::from(entry.raw_len), &what)?;
            let n = with_decompressor(&what, |d| d.decompress_to_buffer(stored, dest))?;
            if n != dest.len() {
                return Err(Error::corrupt(what(), "length differs from the index"));
            }
        }
        Compression::Patch => {
            return match decode_stored(keys, entry, stored.to_vec(), &what())? {
                OpenedBlob::Patch(encoding) => Ok(Some(encoding)),
                OpenedBlob::Whole(_) => Err(Error::corrupt(what(), "a patch decoded whole")),
            };
        }
        Compression::Grouped => {
            let plain = group_plaintext(stored, &what)?;
            let group = Group::parse(&plain, &what())?;
            dest.copy_from_slice(group_member(&group, entry, dest.len(), &what)?);
        }
    }
    if keys.blob_id(dest) != entry.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(None)
}

/// Decrypts one blob's ciphertext into its stored form (a zstd frame, the
/// raw plaintext or a framed patch, as `entry.compression` says), without
/// decompressing it: what `copy` moves to another repository.
pub fn decrypt_stored(
    cipher: &ObjectCipher,
    entry: &BlobEntry,
    mut sealed: Vec<u8>,
    pack: &Id,
) -> Result<Vec<u8>> {
    if !cipher.open_in_place(entry.offset.into(), &entry_aad(entry), &mut sealed) {
        return Err(Error::corrupt(
            format!("blob {} in pack {}", entry.id, pack),
            "authentication failed (damaged or forged)",
        ));
    }
    Ok(sealed)
}

/// Decompresses a blob's stored form: a whole blob is verified against its
/// id (and length); a patch is returned as its encoding for the repository
/// to apply. `what` names the blob in errors.
pub fn decode_stored(
    keys: &MasterKeys,
    entry: &BlobEntry,
    stored: Vec<u8>,
    what: &str,
) -> Result<OpenedBlob> {
    let what = || what.to_string();
    if entry.raw_len > MAX_BLOB_LEN {
        return Err(Error::corrupt(what(), "length exceeds the format's limit"));
    }
    let plain = match entry.compression {
        Compression::None => stored,
        Compression::Zstd => decompress_exact(&stored, u64::from(entry.raw_len), &what)?,
        Compression::Grouped => {
            let plain = group_plaintext(&stored, &what)?;
            let group = Group::parse(&plain, &what())?;
            group_member(&group, entry, entry.raw_len as usize, &what)?.to_vec()
        }
        Compression::Patch => {
            // Allocate only what the frame declares, within what a patch
            // of this blob can take.
            let declared = zstd::zstd_safe::get_frame_content_size(&stored)
                .ok()
                .flatten()
                .filter(|&n| n <= max_patch_len(entry.raw_len))
                .ok_or_else(|| Error::corrupt(what(), "patch length out of range"))?;
            return Ok(OpenedBlob::Patch(decompress_exact(
                &stored, declared, &what,
            )?));
        }
    };
    if plain.len() != entry.raw_len as usize {
        return Err(Error::corrupt(what(), "length differs from the index"));
    }
    if keys.blob_id(&plain) != entry.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(OpenedBlob::Whole(plain))
}

/// The bytes of `entry`'s member in a parsed group, which must be `len`
/// long (its raw length, and its destination's); `what` names the group.
/// Not yet checked against the id: callers hash where the bytes end up.
pub fn group_member<'a>(
    group: &Group<'a>,
    entry: &BlobEntry,
    len: usize,
    what: &dyn Fn() -> String,
) -> Result<&'a [u8]> {
    group
        .member(&entry.id)
        .filter(|b| b.len() == entry.raw_len as usize && b.len() == len)
        .ok_or_else(|| {
            Error::corrupt(
                what(),
                format!("blob {} is not in it as the index says", entry.id),
            )
        })
}

/// Decompresses a solid group's stored form (its zstd frame), which may
/// declare at most [`crate::group::MAX_GROUP_LEN`] bytes.
pub fn group_plaintext(stored: &[u8], what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    let declared = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .filter(|&n| n <= crate::group::MAX_GROUP_LEN)
        .ok_or_else(|| Error::corrupt(what(), "blob group length out of range"))?;
    decompress_exact(stored, declared, what)
}

/// Opens the members of one solid group from its ciphertext, decrypting
/// and decompressing it once: `members` are entries sharing its range
/// (all [`Compression::Grouped`]); each comes back verified against its id
/// and length, in the order given. `sealed` is decrypted in place.
pub fn open_group(
    cipher: &ObjectCipher,
    keys: &MasterKeys,
    members: &[&BlobEntry],
    sealed: &mut [u8],
    pack: &Id,
) -> Result<Vec<Vec<u8>>> {
    let plain = open_group_plain(cipher, members, sealed, pack)?;
    group_members(keys, &plain, members, pack)
}

/// The plaintext of one solid group (its member table and members,
/// checked to be well formed) from its ciphertext, decrypted in place.
/// `members` are the entries that point at it: all must be
/// [`Compression::Grouped`] and share its range and type.
pub fn open_group_plain(
    cipher: &ObjectCipher,
    members: &[&BlobEntry],
    sealed: &mut [u8],
    pack: &Id,
) -> Result<Vec<u8>> {
    let Some(first) = members.first() else {
        return Ok(Vec::new());
    };
    let what = || format!("blob group at offset {} in pack {pack}", first.offset);
    if members.iter().any(|m| {
        m.compression != Compression::Grouped
            || (m.offset, m.stored_len, m.blob_type)
                != (first.offset, first.stored_len, first.blob_type)
    }) {
        return Err(Error::corrupt(
            what(),
            "entries overlap without forming one group",
        ));
    }
    let len = cipher
        .open_slice_in_place(first.offset.into(), &entry_aad(first), sealed)
        .ok_or_else(|| Error::corrupt(what(), "authentication failed (damaged or forged)"))?;
    let plain = group_plaintext(&sealed[..len], &what)?;
    Group::parse(&plain, &what())?;
    Ok(plain)
}

/// The members `members` of a group from its plaintext (from
/// [`open_group_plain`]), each verified against its entry's length and id.
pub fn group_members(
    keys: &MasterKeys,
    plain: &[u8],
    members: &[&BlobEntry],
    pack: &Id,
) -> Result<Vec<Vec<u8>>> {
    let Some(first) = members.first() else {
        return Ok(Vec::new());
    };
    let what = || format!("blob group at offset {} in pack {pack}", first.offset);
    let group = Group::parse(plain, &what())?;
    members
        .iter()
        .map(|m| {
            let bytes = group_member(&group, m, m.raw_len as usize, &what)?;
            if keys.blob_id(bytes) != m.id {
                return Err(Error::corrupt(
                    format!("blob {} in pack {pack}", m.id),
                    "content does not match its id",
                ));
            }
            Ok(bytes.to_vec())
        })
        .collect()
}

thread_local! {
    /// One decompression context per thread: creating one per blob was 4%
    /// of a disk restore's time.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses one zstd frame that must declare exactly `len` bytes:
/// a forged length cannot reserve memory the frame does not fill.
fn decompress_exact(frame: &[u8], len: u64, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    check_declared_len(frame, len, what)?;
    let mut out = Vec::with_capacity(len as usize);
    with_decompressor(what, |d| d.decompress_to_buffer(frame, &mut out))?;
    if out.len() as u64 != len {
        return Err(Error::corrupt(what(), "length differs from the index"));
    }
    Ok(out)
}

/// The frame must declare exactly `len` bytes of content.
fn check_declared_len(frame: &[u8], len: u64, what: &dyn Fn() -> String) -> Result<()> {
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten();
    if declared != Some(len) {
        return Err(Error::corrupt(
            what(),
            "compressed length does not match the index",
        ));
    }
    Ok(())
}

/// Runs `f` with this thread's decompression context (made on first use).
fn with_decompressor(
    what: &dyn Fn() -> String,
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<usize>,
) -> Result<usize> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| Error::corrupt(what(), format!("zstd: {e}")))?,
            );
        }
        let Some(d) = slot.as_mut() else {
            return Err(Error::corrupt(what(), "zstd: no decompression context"));
        };
        f(d).map_err(|e| Error::corrupt(what(), format!("decompression failed: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    fn pack_of(keys: &MasterKeys, rng: &SeededRandom, blobs: &[&[u8]]) -> FinishedPack {
        let mut w = PackWriter::new(BlobType::Data, keys, rng, 0).unwrap();
        for b in blobs {
            let z = zstd::bulk::compress(b, 3).unwrap();
            w.add(keys.blob_id(b), Compression::Zstd, b.len() as u32, &z);
        }
        w.finish()
    }

    #[test]
    fn trailer_and_blobs_round_trip() {
        let rng = SeededRandom::new(b"pack");
        let keys = MasterKeys::generate(&rng).unwrap();
        let blobs: [&[u8]; 3] = [b"one", &[7u8; 5000], b""];
        let p = pack_of(&keys, &rng, &blobs);
        assert_eq!(p.id, Id::of_object(&p.bytes));
        let entries = read_trailer(&p.bytes, &keys, "p").unwrap();
        assert_eq!(entries, p.entries);
        let cipher = ObjectHeader::decode(&p.bytes, ObjectKind::Pack, "p")
            .unwrap()
            .cipher(&keys, "p")
            .unwrap();
        for (e, b) in entries.iter().zip(blobs) {
            let sealed = p.bytes[e.offset as usize..(e.offset + e.stored_len) as usize].to_vec();
            assert_eq!(open_blob(&cipher, &keys, e, sealed, &p.id).unwrap(), b);
        }
    }

    #[test]
    fn ranged_trailer_and_expected_length_agree_with_the_whole_pack() {
        let rng = SeededRandom::new(b"ranged");
        let keys = MasterKeys::generate(&rng).unwrap();
        let p = pack_of(&keys, &rng, &[b"one", &[9u8; 3000], b"three"]);
        assert_eq!(expected_pack_len(&p.entries), p.bytes.len() as u64);
        let len = p.bytes.len();
        let tl = u32::from_le_bytes(p.bytes[len - 4..].try_into().unwrap());
        let start = trailer_start(len as u64, tl, "p").unwrap();
        let entries = decode_trailer(
            &p.bytes[..HEADER_LEN],
            &p.bytes[start as usize..len - 4],
            start,
            &keys,
            "p",
        )
        .unwrap();
        assert_eq!(entries, p.entries);
        assert!(trailer_start(len as u64, len as u32, "p").is_err());
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let rng = SeededRandom::new(b"flip");
        let keys = MasterKeys::generate(&rng).unwrap();
        let p = pack_of(&keys, &rng, &[b"abc", b"defg"]);
        for bit in 0..p.bytes.len() * 8 {
            let mut bad = p.bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let ok = read_trailer(&bad, &keys, "p").and_then(|entries| {
                let cipher =
                    ObjectHeader::decode(&bad, ObjectKind::Pack, "p")?.cipher(&keys, "p")?;
                for e in &entries {
                    let sealed =
                        bad[e.offset as usize..(e.offset + e.stored_len) as usize].to_vec();
                    open_blob(&cipher, &keys, e, sealed, &p.id)?;
                }
                Ok(())
            });
            assert!(ok.is_err(), "bit {bit} not detected");
        }
    }
}
