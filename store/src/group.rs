//! Solid groups: several small blobs compressed as one zstd frame.
//!
//! zstd run on one 16-32 KiB chunk starts cold: no history to match against
//! and its entropy tables paid for again in every frame. Compressing the
//! adjacent new chunks of one file or one disk window together stores
//! 4-7% less at the same level and speed (docs/compression-study.md). Each
//! member keeps its own index entry (its id and length, compression
//! [`Compression::Grouped`](crate::index::Compression::Grouped)) pointing at
//! the group's ciphertext, so ids, dedup, trees and disk maps are unchanged;
//! a reader opens the whole group and takes the member it wants.
//!
//! The group's plaintext, before compression (docs/format.md §2.5.2): a
//! little-endian u32 member count, then per member the first
//! [`ID_PREFIX_LEN`] bytes of its id and its length as a little-endian u32,
//! then the members' bytes in that order. The table names members by id
//! prefix: the full ids are in the members' own entries, a reader checks
//! every member's keyed hash against its full id anyway, and the 24 bytes
//! saved per member were 0.25% of a disk image's repository. Prefixes are
//! unique within a group (a writer closes a group before a repeat; a reader
//! refuses a table that repeats one), so a prefix names one member.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::wire::Reader;

/// Fewest members a group holds (one blob alone is stored whole).
pub const MIN_MEMBERS: usize = 2;

/// Most members a group may hold.
pub const MAX_MEMBERS: usize = 4096;

/// Largest group plaintext a reader accepts: writers aim at most at
/// [`DISK_GROUP_LEN`], a group closes once it passes its target, and no
/// member is larger than [`MAX_MEMBER_LEN`].
pub const MAX_GROUP_LEN: u64 = 8 << 20;

/// The size file backups (and copy and prune) aim at: large enough for zstd
/// to find the matches between neighbouring chunks, small enough that
/// reading one small file's chunk costs at most one such frame (a files
/// restore asks for blobs file by file).
pub const TARGET_GROUP_LEN: usize = 256 << 10;

/// The size disk backups aim at: a disk is restored front to back, whole
/// groups at a time, and 1 MiB stores 1.4% less than 256 KiB on a disk
/// image (docs/compression-study.md).
pub const DISK_GROUP_LEN: usize = 1 << 20;

/// Largest blob a writer puts in a group: a larger one gains little from
/// its neighbours and is stored alone (it also keeps every group far below
/// [`MAX_GROUP_LEN`], whatever chunk sizes a repository uses).
pub const MAX_MEMBER_LEN: usize = 256 << 10;

/// Bytes of a member's id that the member table holds.
pub const ID_PREFIX_LEN: usize = 8;

/// The part of `id` a member table names it by.
pub type IdPrefix = [u8; ID_PREFIX_LEN];

/// The prefix of `id` that names it in a member table.
pub fn id_prefix(id: &Id) -> IdPrefix {
    let mut p = [0u8; ID_PREFIX_LEN];
    p.copy_from_slice(&id.0[..ID_PREFIX_LEN]);
    p
}

/// Bytes of the member table for `n` members.
fn table_len(n: usize) -> usize {
    4 + n * (ID_PREFIX_LEN + 4)
}

/// Encodes a group's plaintext from its members (id and bytes, in order).
/// Their id prefixes must differ ([`id_prefix`]): [`Group::parse`] refuses
/// a table that repeats one.
pub fn encode(members: &[(Id, &[u8])]) -> Vec<u8> {
    let data: usize = members.iter().map(|(_, d)| d.len()).sum();
    let mut out = Vec::with_capacity(table_len(members.len()) + data);
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for (id, d) in members {
        out.extend_from_slice(&id_prefix(id));
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
    }
    for (_, d) in members {
        out.extend_from_slice(d);
    }
    out
}

/// A decoded group plaintext: where each member's bytes lie.
#[derive(Debug)]
pub struct Group<'a> {
    members: Vec<(IdPrefix, std::ops::Range<usize>)>,
    plain: &'a [u8],
}

impl<'a> Group<'a> {
    /// Parses a group's plaintext; `what` names it in errors. The member
    /// table must be well formed and its lengths must add up to exactly the
    /// bytes that follow it.
    pub fn parse(plain: &'a [u8], what: &str) -> Result<Group<'a>> {
        let bad = |why: &str| Error::corrupt(what, format!("invalid blob group: {why}"));
        let mut r = Reader::new(plain);
        let n = r.u32().ok_or_else(|| bad("truncated member count"))? as usize;
        if !(MIN_MEMBERS..=MAX_MEMBERS).contains(&n) {
            return Err(bad("member count out of range"));
        }
        let mut members = Vec::with_capacity(n);
        let mut at = table_len(n);
        for _ in 0..n {
            let prefix: IdPrefix = r
                .take(ID_PREFIX_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("truncated member table"))?;
            let len = r.u32().ok_or_else(|| bad("truncated member table"))? as usize;
            let end = at
                .checked_add(len)
                .filter(|&e| e <= plain.len())
                .ok_or_else(|| bad("a member lies past the group's end"))?;
            members.push((prefix, at..end));
            at = end;
        }
        if at != plain.len() {
            return Err(bad("trailing bytes after the last member"));
        }
        let mut prefixes: Vec<&IdPrefix> = members.iter().map(|(p, _)| p).collect();
        prefixes.sort_unstable();
        if prefixes.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("two members share an id prefix"));
        }
        Ok(Group { members, plain })
    }

    /// The bytes of member `id`, if the table names it. Only the id's
    /// prefix is matched: the caller checks the bytes against the full id.
    pub fn member(&self, id: &Id) -> Option<&'a [u8]> {
        let plain = self.plain;
        let prefix = id_prefix(id);
        self.members
            .iter()
            .find(|(m, _)| *m == prefix)
            .map(|(_, range)| &plain[range.clone()])
    }

    /// Every member: its id prefix and bytes, in stored order.
    pub fn members(&self) -> impl Iterator<Item = (IdPrefix, &'a [u8])> + '_ {
        let plain = self.plain;
        self.members
            .iter()
            .map(move |(prefix, range)| (*prefix, &plain[range.clone()]))
    }

    /// How many members the group holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true for a parsed group (it holds at least [`MIN_MEMBERS`]).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn members_round_trip() {
        let a = vec![1u8; 100];
        let b = vec![2u8; 7];
        let c: Vec<u8> = Vec::new();
        let plain = encode(&[(id(1), &a), (id(2), &b), (id(3), &c)]);
        let g = Group::parse(&plain, "test").unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g.member(&id(1)), Some(&a[..]));
        assert_eq!(g.member(&id(2)), Some(&b[..]));
        assert_eq!(g.member(&id(3)), Some(&c[..]));
        assert_eq!(g.member(&id(4)), None);
        let all: Vec<_> = g.members().map(|(i, d)| (i, d.len())).collect();
        assert_eq!(all, vec![([1; 8], 100), ([2; 8], 7), ([3; 8], 0)]);
        // The table holds 12 bytes per member.
        assert_eq!(plain.len(), 4 + 3 * 12 + 107);
    }

    #[test]
    fn a_table_that_repeats_an_id_prefix_is_refused() {
        let a = vec![1u8; 10];
        let mut other = id(1);
        other.0[31] = 9;
        let plain = encode(&[(id(1), &a), (other, &a)]);
        let e = Group::parse(&plain, "t").unwrap_err().to_string();
        assert!(e.contains("share an id prefix"), "{e}");
    }

    #[test]
    fn malformed_groups_are_errors() {
        let a = vec![1u8; 10];
        let plain = encode(&[(id(1), &a), (id(2), &a)]);
        // Truncated data, trailing data, a single member, a huge count.
        assert!(Group::parse(&plain[..plain.len() - 1], "t").is_err());
        let mut longer = plain.clone();
        longer.push(0);
        assert!(Group::parse(&longer, "t").is_err());
        assert!(Group::parse(&encode(&[(id(1), &a)]), "t").is_err());
        let mut huge = plain.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Group::parse(&huge, "t").is_err());
        assert!(Group::parse(&[], "t").is_err());
    }

    proptest! {
        #[test]
        fn any_members_round_trip(lens in proptest::collection::vec(0usize..2000, 2..20)) {
            let datas: Vec<Vec<u8>> =
                lens.iter().enumerate().map(|(i, &l)| vec![i as u8; l]).collect();
            let members: Vec<(Id, &[u8])> =
                datas.iter().enumerate().map(|(i, d)| (id(i as u8), d.as_slice())).collect();
            let plain = encode(&members);
            let g = Group::parse(&plain, "t").unwrap();
            for (i, d) in datas.iter().enumerate() {
                prop_assert_eq!(g.member(&id(i as u8)), Some(d.as_slice()));
            }
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Group::parse(&bytes, "t");
        }
    }
}
