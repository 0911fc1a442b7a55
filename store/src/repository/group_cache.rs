//! Recently opened solid groups, decompressed, shared by every reader of
//! the repository.
//!
//! A restore asks for blobs file by file (or disk window by disk window),
//! while a group holds the neighbouring chunks of several small files, or
//! straddles two windows: without this, every file would fetch, decrypt
//! and decompress the whole group again for its one chunk (a tree restore
//! spent 40% more CPU so). Readers look here first and add what they open;
//! the oldest groups leave once [`MAX_BYTES`] are held. A plaintext here
//! came from an authenticated ciphertext; members taken from it are still
//! checked against their ids.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::id::Id;

/// Plaintext bytes held at most (a few groups per restore worker).
pub const MAX_BYTES: usize = 4 << 20;

/// Where a group is: its pack and its offset there.
pub type GroupKey = (Id, u32);

/// The cache; see the module docs.
#[derive(Default)]
pub struct GroupCache {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    groups: VecDeque<(GroupKey, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl GroupCache {
    /// The plaintext of the group at `key`, if held.
    pub fn get(&self, key: &GroupKey) -> Option<Arc<Vec<u8>>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.groups
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, g)| g.clone())
    }

    /// Holds a group's plaintext, letting the oldest go past [`MAX_BYTES`].
    pub fn insert(&self, key: GroupKey, plain: Arc<Vec<u8>>) {
        if plain.len() > MAX_BYTES {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.groups.iter().any(|(k, _)| *k == key) {
            return;
        }
        held.bytes += plain.len();
        held.groups.push_back((key, plain));
        while held.bytes > MAX_BYTES {
            match held.groups.pop_front() {
                Some((_, old)) => held.bytes -= old.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn holds_recent_groups_within_its_budget() {
        let cache = GroupCache::default();
        let key = |n: u32| (Id([1; 32]), n);
        let group = Arc::new(vec![0u8; MAX_BYTES / 4]);
        for n in 0..6 {
            cache.insert(key(n), group.clone());
        }
        // The two oldest left; the newest four remain.
        assert!(cache.get(&key(0)).is_none());
        assert!(cache.get(&key(1)).is_none());
        for n in 2..6 {
            assert!(cache.get(&key(n)).is_some());
        }
        assert!(cache.get(&(Id([2; 32]), 5)).is_none());
        // Larger than the whole budget: not held.
        cache.insert(key(9), Arc::new(vec![0u8; MAX_BYTES + 1]));
        assert!(cache.get(&key(9)).is_none());
    }
}
