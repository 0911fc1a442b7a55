//! The in-memory dedup set: is this blob already in the repository?
//!
//! Every chunk a backup produces is checked against the set of blob ids the
//! repository holds, so the check must be fast and the set small even for
//! very large repositories. [`BlobSet`] keeps a sorted, deduplicated
//! `Vec<u128>` of fingerprints: the first 16 bytes of each id
//! ([`Id::prefix_u128`]), 16 bytes per blob (10 million blobs = 160 MB), with
//! no per-entry allocation or hashing overhead. Lookups use interpolation
//! search, which takes about two or three probes on uniformly distributed
//! keys, and fall back to binary search whenever interpolation stops
//! narrowing the range, so any input (even an adversarial one) stays within
//! a logarithmic number of probes and is always answered correctly.
//!
//! # Why a 128-bit fingerprint is safe
//!
//! Blob ids are *keyed* BLAKE3 hashes of the plaintext. The target (or anyone
//! who can plant files on the guest without the key) cannot compute ids, so
//! cannot craft two contents whose ids share a 128-bit prefix; the only risk
//! is a random collision. A lookup of a new blob is wrongly answered "present"
//! with probability at most n / 2^128 for n stored blobs, so over a
//! repository's lifetime with n = 10^8 blobs and 10^13 lookups the chance of
//! any false "present" is about n * lookups / 2^128 = 10^21 / (3.4 * 10^38)
//! ≈ 3 * 10^-18, far below the rate of undetected hardware errors.
//!
//! The set covers blobs from index files already on the target. Blobs stored
//! by the running session (not yet in any index file) are tracked separately,
//! with full ids, by the repository, and merged in with [`BlobSet::merge`]
//! after an index refresh.

use crate::id::Id;

/// Below this many candidates, a lookup switches to binary search.
const SMALL_RANGE: usize = 16;

/// At most this many interpolation probes before falling back to binary
/// search (uniform keys need three to five at 10 million entries).
const MAX_INTERPOLATION_PROBES: u32 = 8;

/// The set of blob-id fingerprints of a repository: a sorted, deduplicated
/// vector of [`Id::prefix_u128`] values, 16 bytes per blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobSet {
    sorted: Vec<u128>,
}

impl BlobSet {
    /// An empty set.
    pub fn new() -> BlobSet {
        BlobSet::default()
    }

    /// A set from fingerprints expected in ascending order (as a cache scan
    /// in primary-key order yields them). Duplicates are removed; input that
    /// is not sorted after all is sorted, so the result is correct for any
    /// input, only slower for unsorted input.
    pub fn from_sorted(mut fingerprints: Vec<u128>) -> BlobSet {
        if !fingerprints.is_sorted() {
            fingerprints.sort_unstable();
        }
        fingerprints.dedup();
        BlobSet {
            sorted: fingerprints,
        }
    }

    /// A set from fingerprints in any order (sorted and deduplicated here).
    pub fn from_unsorted(mut fingerprints: Vec<u128>) -> BlobSet {
        fingerprints.sort_unstable();
        fingerprints.dedup();
        BlobSet {
            sorted: fingerprints,
        }
    }

    /// Whether the fingerprint of `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.contains_fingerprint(id.prefix_u128())
    }

    /// Whether the fingerprint `fp` (an [`Id::prefix_u128`]) is in the set.
    pub fn contains_fingerprint(&self, fp: u128) -> bool {
        let v = self.sorted.as_slice();
        // Candidates are v[lo..hi] (half-open).
        let mut lo = 0usize;
        let mut hi = v.len();
        let mut probes = 0u32;
        while hi - lo > SMALL_RANGE && probes < MAX_INTERPOLATION_PROBES {
            let (first, last) = (v[lo], v[hi - 1]);
            if fp < first || fp > last {
                return false;
            }
            // Sorted and deduplicated with more than one element: last > first.
            let pos = lo + interpolate(fp - first, last - first, hi - 1 - lo);
            probes += 1;
            match v[pos].cmp(&fp) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = pos + 1,
                std::cmp::Ordering::Greater => hi = pos,
            }
        }
        v[lo..hi].binary_search(&fp).is_ok()
    }

    /// Number of fingerprints.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Heap bytes held (capacity times 16).
    pub fn bytes_used(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<u128>()
    }

    /// Adds fingerprints (for instance those of index files found at a
    /// refresh). Only fingerprints not already present are kept, sorted, and
    /// merged in place from the back, so the set grows by just the new
    /// entries instead of being copied.
    pub fn merge(&mut self, more: impl IntoIterator<Item = u128>) {
        let mut add: Vec<u128> = more.into_iter().collect();
        add.sort_unstable();
        add.dedup();
        add.retain(|fp| !self.contains_fingerprint(*fp));
        if add.is_empty() {
            return;
        }
        let v = &mut self.sorted;
        let old_len = v.len();
        v.resize(old_len + add.len(), 0);
        // Merge from the back: v[..i] are old entries still to place, add[..j]
        // new ones, and v[k..] is done. k >= i always holds (k - i == j), so
        // no old entry is overwritten before it is moved.
        let (mut i, mut j, mut k) = (old_len, add.len(), v.len());
        while j > 0 {
            k -= 1;
            if i > 0 && v[i - 1] > add[j - 1] {
                v[k] = v[i - 1];
                i -= 1;
            } else {
                v[k] = add[j - 1];
                j -= 1;
            }
        }
    }

    /// The fingerprints, ascending.
    pub fn as_slice(&self) -> &[u128] {
        &self.sorted
    }
}

/// `offset * span / range`, rounded down, without overflow: `offset <=
/// range`, `range > 0`, so the result is at most `span`.
fn interpolate(offset: u128, range: u128, span: usize) -> usize {
    // Scale both down until `range` fits in 64 bits; then offset < 2^64 and
    // span < 2^64, so the product fits in 128 bits. The scaled range is at
    // least 2^63 when scaled at all, and at least 1 otherwise.
    let shift = (128 - range.leading_zeros()).saturating_sub(64);
    let (offset, range) = (offset >> shift, range >> shift);
    let pos = offset * span as u128 / range;
    // pos <= span because offset <= range; min() guards regardless.
    (pos as usize).min(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn id_of(i: u64) -> Id {
        Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn uniform_ids_are_found_and_absent_ones_are_not() {
        let fps: Vec<u128> = (0..100_000).map(|i| id_of(i).prefix_u128()).collect();
        let set = BlobSet::from_unsorted(fps);
        assert_eq!(set.len(), 100_000);
        assert!((0..100_000).all(|i| set.contains(&id_of(i))));
        assert!((100_000..200_000).all(|i| !set.contains(&id_of(i))));
    }

    #[test]
    fn extremes_and_empty() {
        let empty = BlobSet::new();
        assert!(empty.is_empty() && !empty.contains_fingerprint(0));
        let set = BlobSet::from_sorted(vec![0, 1, u128::MAX - 1, u128::MAX]);
        for fp in [0, 1, u128::MAX - 1, u128::MAX] {
            assert!(set.contains_fingerprint(fp));
        }
        assert!(!set.contains_fingerprint(2));
        assert!(!set.contains_fingerprint(u128::MAX / 2));
    }

    #[test]
    fn skewed_distribution_stays_correct() {
        // Exponentially spaced keys defeat interpolation; the fallback must
        // still answer correctly.
        let mut fps: Vec<u128> = (0..128).map(|s| 1u128 << s).collect();
        fps.extend(0..1000u128);
        let set = BlobSet::from_unsorted(fps.clone());
        for &fp in &fps {
            assert!(set.contains_fingerprint(fp));
        }
        for s in 11..127 {
            assert!(!set.contains_fingerprint((1u128 << s) + 1));
        }
    }

    #[test]
    fn from_sorted_accepts_unsorted_and_duplicates() {
        let set = BlobSet::from_sorted(vec![5, 3, 3, 9, 1, 9]);
        assert_eq!(set.as_slice(), &[1, 3, 5, 9]);
        let set = BlobSet::from_sorted(vec![1, 1, 2, 2, 3]);
        assert_eq!(set.as_slice(), &[1, 2, 3]);
    }

    #[test]
    fn merge_keeps_order_and_uniqueness() {
        let mut set = BlobSet::from_sorted(vec![10, 20, 30]);
        set.merge([25, 5, 20, 35, 5]);
        assert_eq!(set.as_slice(), &[5, 10, 20, 25, 30, 35]);
        set.merge(std::iter::empty());
        set.merge([10, 30]);
        assert_eq!(set.len(), 6);
        let mut empty = BlobSet::new();
        empty.merge([3, 1, 2]);
        assert_eq!(empty.as_slice(), &[1, 2, 3]);
    }

    /// Keys from several distributions: uniform, small, clustered at both
    /// ends, and powers of two.
    fn fingerprint() -> impl Strategy<Value = u128> {
        prop_oneof![
            any::<u128>(),
            0u128..64,
            (u128::MAX - 64)..=u128::MAX,
            (0u32..128).prop_map(|s| 1u128 << s),
            (0u32..128, 0u128..4).prop_map(|(s, d)| (1u128 << s).wrapping_add(d)),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_hash_set(
            members in proptest::collection::vec(fingerprint(), 0..400),
            extra in proptest::collection::vec(fingerprint(), 0..100),
            probes in proptest::collection::vec(fingerprint(), 0..200),
            presorted in any::<bool>(),
        ) {
            let reference: HashSet<u128> = members.iter().copied().collect();
            let mut set = if presorted {
                let mut m = members.clone();
                m.sort_unstable();
                BlobSet::from_sorted(m)
            } else {
                BlobSet::from_sorted(members.clone())
            };
            prop_assert_eq!(set.len(), reference.len());
            for fp in members.iter().chain(&probes).chain(&extra) {
                prop_assert_eq!(set.contains_fingerprint(*fp), reference.contains(fp));
            }
            set.merge(extra.iter().copied());
            let reference: HashSet<u128> = reference.into_iter().chain(extra.iter().copied()).collect();
            prop_assert_eq!(set.len(), reference.len());
            prop_assert!(set.as_slice().windows(2).all(|w| w[0] < w[1]));
            for fp in members.iter().chain(&probes).chain(&extra) {
                prop_assert_eq!(set.contains_fingerprint(*fp), reference.contains(fp));
            }
        }
    }
}
