//! Prune plans: the packs a prune condemned and the locks it must outlive.
//!
//! Prune deletes in two phases so that backups never wait for it (they
//! hold shared locks; prune's lock is shared with them too). Phase 1 writes
//! a new index without the condemned packs and then this plan, naming the
//! condemned packs and every lock that was on the target once the old index
//! files were gone. Phase 2 (the sweep, see the agent's `prune` module)
//! deletes the condemned packs only once none of those locks is live: every
//! backup that could have deduplicated against a condemned pack held one of
//! them. The payload layout is in docs/format.md §2.12; it is sealed as a
//! metadata object of kind 7 under `plans/<id>`.

use crate::backend::ObjectKind;
use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::lock::LockInfo;
use crate::object::{open_metadata, seal_metadata};
use crate::random::RandomSource;
use crate::wire::Reader;

/// Version byte at the start of a plan payload.
const PLAN_PAYLOAD_VERSION: u8 = 1;

/// Longest host name a plan records (longer names are cut at a character
/// boundary; the identity stays unique with the pid and creation time).
const MAX_HOSTNAME: usize = 255;

/// Who held a lock: what identifies it across its refreshes (a refresh
/// writes a new lock object with the same host, pid and creation time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockHolder {
    /// Host of the holder.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// When the lock was first taken (unix seconds).
    pub created: i64,
}

impl LockHolder {
    /// The holder of a lock.
    pub fn of(info: &LockInfo) -> LockHolder {
        let mut hostname = info.hostname.clone();
        if hostname.len() > MAX_HOSTNAME {
            let mut cut = MAX_HOSTNAME;
            while !hostname.is_char_boundary(cut) {
                cut -= 1;
            }
            hostname.truncate(cut);
        }
        LockHolder {
            hostname,
            pid: info.pid,
            created: info.created,
        }
    }

    /// Whether `info` is a lock of this holder (possibly refreshed).
    pub fn holds(&self, info: &LockInfo) -> bool {
        *self == LockHolder::of(info)
    }
}

/// What a prune condemned and which locks must be gone before it deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// When the plan was written (unix seconds).
    pub created: i64,
    /// The locks other than the prune's own present after the old index
    /// files were deleted.
    pub locks: Vec<LockHolder>,
    /// The packs to delete once no lock in `locks` is live (unless an index
    /// names them again or a snapshot needs a blob only they hold).
    pub packs: Vec<Id>,
}

impl PrunePlan {
    /// The plaintext payload (before compression and encryption).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + 32 * self.packs.len() + 64 * self.locks.len());
        out.push(PLAN_PAYLOAD_VERSION);
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(&(self.locks.len() as u32).to_le_bytes());
        for lock in &self.locks {
            let host = lock.hostname.as_bytes();
            let host = &host[..host.len().min(MAX_HOSTNAME)];
            out.push(host.len() as u8);
            out.extend_from_slice(host);
            out.extend_from_slice(&lock.pid.to_le_bytes());
            out.extend_from_slice(&lock.created.to_le_bytes());
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for pack in &self.packs {
            out.extend_from_slice(&pack.0);
        }
        out
    }

    /// Parses a payload; `object` names the plan in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<PrunePlan> {
        let bad = |why: &str| Error::corrupt(object, why.to_string());
        let mut r = Reader::new(bytes);
        match r.u8() {
            Some(PLAN_PAYLOAD_VERSION) => {}
            Some(v) => {
                return Err(Error::UnsupportedVersion {
                    object: object.to_string(),
                    found: v.into(),
                    supported: PLAN_PAYLOAD_VERSION.into(),
                });
            }
            None => return Err(bad("empty payload")),
        }
        let created = r.u64().ok_or_else(|| bad("truncated"))? as i64;
        let locks_n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        // Each lock takes at least 13 bytes: refuse counts the payload
        // cannot hold before allocating.
        if locks_n > r.remaining() / 13 {
            return Err(bad("lock count exceeds the payload"));
        }
        let mut locks = Vec::with_capacity(locks_n);
        for _ in 0..locks_n {
            let len = r.u8().ok_or_else(|| bad("truncated"))?;
            let host = r.take(len.into()).ok_or_else(|| bad("truncated"))?;
            let hostname = std::str::from_utf8(host)
                .map_err(|_| bad("a host name is not UTF-8"))?
                .to_string();
            let pid = r.u32().ok_or_else(|| bad("truncated"))?;
            let created = r.u64().ok_or_else(|| bad("truncated"))? as i64;
            locks.push(LockHolder {
                hostname,
                pid,
                created,
            });
        }
        let packs_n = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        if packs_n != r.remaining() / 32 || !r.remaining().is_multiple_of(32) {
            return Err(bad("pack count does not match the payload"));
        }
        let packs = (0..packs_n)
            .map(|_| r.id())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("truncated"))?;
        Ok(PrunePlan {
            created,
            locks,
            packs,
        })
    }

    /// Seals the plan as a stored object.
    pub fn seal(&self, keys: &MasterKeys, rng: &dyn RandomSource) -> Result<Vec<u8>> {
        seal_metadata(ObjectKind::Plan, &self.encode(), keys, rng)
    }

    /// Opens a stored plan object.
    pub fn open(bytes: &[u8], keys: &MasterKeys, object: &str) -> Result<PrunePlan> {
        PrunePlan::decode(
            &open_metadata(ObjectKind::Plan, bytes, keys, object)?,
            object,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PrunePlan {
        PrunePlan {
            created: 1_790_000_000,
            locks: vec![
                LockHolder {
                    hostname: "db-1.example".into(),
                    pid: 4242,
                    created: 1_789_999_000,
                },
                LockHolder {
                    hostname: String::new(),
                    pid: 1,
                    created: -5,
                },
            ],
            packs: vec![Id([1; 32]), Id([0xfe; 32])],
        }
    }

    #[test]
    fn payload_round_trip_and_truncations_fail_cleanly() {
        let plan = sample();
        let bytes = plan.encode();
        assert_eq!(PrunePlan::decode(&bytes, "p").unwrap(), plan);
        for cut in 0..bytes.len() {
            assert!(PrunePlan::decode(&bytes[..cut], "p").is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PrunePlan::decode(&longer, "p").is_err());
        assert_eq!(
            PrunePlan::decode(&PrunePlan::default().encode(), "p").unwrap(),
            PrunePlan::default()
        );
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        let mut future = sample().encode();
        future[0] = 2;
        assert!(matches!(
            PrunePlan::decode(&future, "p"),
            Err(Error::UnsupportedVersion { .. })
        ));
        // A lock count far beyond the payload.
        let mut huge = vec![PLAN_PAYLOAD_VERSION];
        huge.extend_from_slice(&0i64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(PrunePlan::decode(&huge, "p").is_err());
        // A host name that is not UTF-8.
        let mut bad_host = vec![PLAN_PAYLOAD_VERSION];
        bad_host.extend_from_slice(&0i64.to_le_bytes());
        bad_host.extend_from_slice(&1u32.to_le_bytes());
        bad_host.extend_from_slice(&[2, 0xff, 0xfe]);
        bad_host.extend_from_slice(&[0; 12]);
        bad_host.extend_from_slice(&0u32.to_le_bytes());
        assert!(PrunePlan::decode(&bad_host, "p").is_err());
        // Every byte flipped in turn: an error or a plan, never a panic.
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            let _ = PrunePlan::decode(&b, "p");
        }
    }

    #[test]
    fn sealed_round_trip_and_wrong_kind_refused() {
        let keys = MasterKeys::generate(&crate::random::SeededRandom::new(b"3")).unwrap();
        let rng = crate::random::SeededRandom::new(b"4");
        let sealed = sample().seal(&keys, &rng).unwrap();
        assert_eq!(PrunePlan::open(&sealed, &keys, "p").unwrap(), sample());
        let index = crate::index::IndexFile::default()
            .seal(&keys, &rng)
            .unwrap();
        assert!(PrunePlan::open(&index, &keys, "p").is_err());
    }

    #[test]
    fn a_refreshed_lock_is_the_same_holder() {
        let info = LockInfo {
            hostname: "h".into(),
            pid: 7,
            operation: "backup".into(),
            exclusive: false,
            created: 100,
            expires: 1900,
        };
        let holder = LockHolder::of(&info);
        let mut refreshed = info.clone();
        refreshed.expires = 2200;
        assert!(holder.holds(&refreshed));
        refreshed.created = 101;
        assert!(!holder.holds(&refreshed));
    }
}
