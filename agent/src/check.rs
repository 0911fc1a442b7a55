//! `cairn check`: is the repository whole, and which snapshots are not?
//!
//! In order:
//! 1. every snapshot manifest on the target reads and authenticates;
//! 2. every index file reads and authenticates, and every pack it names
//!    exists with the size its blobs imply, and the pack's own trailer
//!    (read with two ranged reads) lists exactly the blobs the index says,
//!    at the same places;
//! 3. with `--read-data` (or a subset), the packs chosen are read whole and
//!    every blob in them decrypted, decompressed (patches applied) and
//!    checked against its id;
//! 4. every snapshot is walked ([`crate::reach`]): every blob it reaches,
//!    patch bases included, must be in the index, with the right type, and
//!    every tree, disk set and list page must read and parse;
//! 5. when anything was found, each snapshot is walked again on its own to
//!    name the snapshots that reach a missing or damaged blob or a blob in
//!    a damaged pack: those cannot be restored in full.
//!
//! Memory: the walk remembers 16 bytes per distinct reachable blob; per
//! pack the check keeps its expected size and a digest of its index
//! entries; problems listed are capped at [`MAX_LISTED`].
//!
//! Subsets for rolling verification: `n/m` reads the packs whose id, taken
//! as a number, is `n - 1` modulo `m`, so running `1/m`, `2/m`, ... `m/m`
//! (for example `$(date +%d)/31` from cron) reads every pack once per
//! cycle, whatever order the runs come in. `N%` reads a different random
//! N% of the packs on each run.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Mutex;

use cairn_store::pack::expected_pack_len;
use cairn_store::{BlobEntry, Id, ObjectKind, Repository, Snapshot};
use serde::Serialize;
use thiserror::Error;

use crate::parallel::on_threads;
use crate::reach::{Visit, WalkError, Walker, is_damage};

/// Most problems listed in a report; the rest are only counted.
pub const MAX_LISTED: usize = 1000;

/// Which packs `--read-data` reads in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// None: only the structure is checked.
    Nothing,
    /// Every pack.
    All,
    /// A random share of the packs, in percent (0 < p <= 100).
    Percent(f64),
    /// Part `n` of `m` (1 <= n <= m): the packs whose id is `n - 1` mod `m`.
    Part {
        /// Which part, from 1.
        n: u32,
        /// Of how many.
        m: u32,
    },
}

/// A `--read-data-subset` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid subset {0:?}: use a percentage (e.g. 10%) or a part n/m with 1 <= n <= m (e.g. 3/7)"
)]
pub struct SubsetError(pub String);

impl FromStr for ReadData {
    type Err = SubsetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SubsetError(s.to_string());
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(if p >= 100.0 {
                ReadData::All
            } else {
                ReadData::Percent(p)
            });
        }
        let (n, m) = t.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let m: u32 = m.trim().parse().map_err(|_| bad())?;
        if n == 0 || m == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Part { n, m })
    }
}

impl ReadData {
    /// Whether the pack is read in full; `salt` draws the random share.
    pub fn selects(&self, pack: &Id, salt: &[u8; 32]) -> bool {
        match *self {
            ReadData::Nothing => false,
            ReadData::All => true,
            ReadData::Part { n, m } => pack.prefix_u128() % u128::from(m) == u128::from(n - 1),
            ReadData::Percent(p) => {
                let h = blake3::keyed_hash(salt, &pack.0);
                let mut x = [0u8; 8];
                x.copy_from_slice(&h.as_bytes()[..8]);
                (u64::from_le_bytes(x) as f64) < p / 100.0 * 18_446_744_073_709_551_616.0
            }
        }
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Which packs to read in full.
    pub read_data: ReadData,
    /// Salt of the random share of [`ReadData::Percent`] (fresh per run).
    pub salt: [u8; 32],
    /// Packs read at once when reading data (the target's transfers).
    pub readers: usize,
}

/// A per-run salt for the random subset: the time and the process id.
pub fn run_salt() -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    *h.finalize().as_bytes()
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object at fault: `snapshot ID`, `index ID`, `pack ID`, or a blob.
    pub object: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A snapshot that cannot be restored in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affected {
    /// The snapshot.
    pub id: Id,
    /// Its time (seconds since the epoch, UTC); `None` when its manifest is
    /// unreadable.
    pub time: Option<i64>,
    /// Its host, when readable.
    pub hostname: Option<String>,
    /// Its sources, when readable.
    pub paths: Vec<String>,
    /// Whether the manifest itself is unreadable.
    pub unreadable: bool,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Snapshot manifests found.
    pub snapshots: usize,
    /// Index files found.
    pub index_files: usize,
    /// Packs named by the index files.
    pub packs: usize,
    /// Packs on the target that no index file names (left by an
    /// interrupted or concurrent backup, or condemned by a prune; not
    /// damage).
    pub packs_not_indexed: usize,
    /// Prune plans on the target (docs/format.md §2.12).
    pub plans: usize,
    /// Of the packs no index names, those a prune plan condemned (deleted
    /// by the next prune once the backups it waits for have finished).
    pub packs_condemned: usize,
    /// Packs read and verified in full.
    pub packs_read: usize,
    /// Packs `--read-data` chose but could not read (the target kept
    /// failing, or kept returning short or changing bytes, after every
    /// retry): not verified, and not damage either. At most
    /// [`MAX_LISTED`]; [`Self::packs_unverified_total`] counts them all.
    pub packs_unverified: Vec<Problem>,
    /// All packs that could not be read.
    pub packs_unverified_total: usize,
    /// Distinct blobs reachable from the snapshots.
    pub blobs_reachable: usize,
    /// Problems found, at most [`MAX_LISTED`].
    pub problems: Vec<Problem>,
    /// All problems found, listed or not.
    pub problems_total: usize,
    /// The snapshots that reach something missing or damaged.
    pub affected: Vec<Affected>,
}

impl CheckReport {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.problems_total == 0
    }

    /// Whether every pack chosen for reading was read (damaged or not).
    pub fn is_complete(&self) -> bool {
        self.packs_unverified_total == 0
    }

    fn unverified(&mut self, pack: &Id, error: &cairn_store::Error) {
        self.packs_unverified_total += 1;
        if self.packs_unverified.len() < MAX_LISTED {
            self.packs_unverified.push(Problem {
                object: format!("pack {pack}"),
                reason: error.to_string(),
            });
        }
    }

    fn problem(&mut self, object: String, reason: impl Into<String>) {
        self.problems_total += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(Problem {
                object,
                reason: reason.into(),
            });
        }
    }
}

/// Failures that stop a check (not damage: the target or cache failing).
#[derive(Debug, Error)]
pub enum CheckError {
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// A walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// What the index files say a pack holds: the union of their entries for
/// it (a pack may be named by a subset of its blobs: a synthetic full
/// retires the entries of blobs it stored again elsewhere).
#[derive(Default)]
struct Expected {
    entries: HashSet<BlobEntry>,
}

/// Stops an attribution walk at the first damaged blob.
enum Attribution {
    Hit,
    Walk(WalkError),
}

impl From<WalkError> for Attribution {
    fn from(e: WalkError) -> Self {
        Attribution::Walk(e)
    }
}

/// Reads every prune plan (a damaged one is a problem) and returns the
/// packs they condemn.
fn read_plans(repo: &Repository, report: &mut CheckReport) -> Result<HashSet<Id>, CheckError> {
    let mut condemned = HashSet::new();
    for id in repo.plan_ids()? {
        report.plans += 1;
        match repo.load_plan(&id) {
            Ok(plan) => condemned.extend(plan.packs),
            Err(cairn_store::Error::Backend(e)) if e.is_not_found() => report.plans -= 1,
            Err(e) if is_damage(&e) => report.problem(format!("prune plan {id}"), e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(condemned)
}

/// Checks the repository; `say` gets a line per phase (for progress).
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    say: &mut dyn FnMut(&str),
) -> Result<CheckReport, CheckError> {
    let mut report = CheckReport::default();

    say("reading snapshots");
    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    let mut unreadable: Vec<Id> = Vec::new();
    for id in repo.snapshot_ids()? {
        match repo.load_snapshot(&id) {
            Ok(s) => snapshots.push((id, s)),
            Err(e) if is_damage(&e) => {
                report.problem(format!("snapshot {id}"), e.to_string());
                unreadable.push(id);
            }
            Err(e) => return Err(e.into()),
        }
    }
    snapshots.sort_by_key(|(id, s)| (s.time, s.time_nanos, *id));
    report.snapshots = snapshots.len() + unreadable.len();

    say("checking index files and packs");
    let mut packs: BTreeMap<Id, (Id, Expected)> = BTreeMap::new();
    let mut superseded: HashSet<Id> = HashSet::new();
    for index in repo.index_file_ids()? {
        report.index_files += 1;
        let file = match repo.load_index_file(&index) {
            Ok(f) => f,
            Err(e) if is_damage(&e) => {
                report.problem(format!("index {index}"), e.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        superseded.extend(file.supersedes.iter().copied());
        for p in &file.packs {
            let (_, expected) = packs
                .entry(p.pack)
                .or_insert_with(|| (index, Expected::default()));
            expected.entries.extend(p.blobs.iter().copied());
        }
    }
    packs.retain(|_, (index, _)| !superseded.contains(index));
    report.packs = packs.len();

    let mut damaged_packs: HashSet<Id> = HashSet::new();
    for (pack, (_, expected)) in &packs {
        match repo.read_pack_trailer(pack) {
            Ok((size, entries)) => {
                let listed = expected_pack_len(&entries);
                if size != listed {
                    report.problem(
                        format!("pack {pack}"),
                        format!(
                            "{size} bytes on the target, but the {} blobs its trailer lists make {listed} bytes",
                            entries.len()
                        ),
                    );
                    damaged_packs.insert(*pack);
                } else if !expected
                    .entries
                    .is_subset(&entries.iter().copied().collect())
                {
                    report.problem(
                        format!("pack {pack}"),
                        "the index names blobs or places its trailer does not list",
                    );
                    damaged_packs.insert(*pack);
                }
            }
            Err(e) if is_damage(&e) => {
                report.problem(format!("pack {pack}"), e.to_string());
                damaged_packs.insert(*pack);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let condemned = read_plans(repo, &mut report)?;
    for pack in repo
        .backend()
        .list(ObjectKind::Pack)
        .map_err(cairn_store::Error::from)?
        .iter()
        .filter_map(|i| i.handle.name.parse::<Id>().ok())
        .filter(|id| !packs.contains_key(id))
    {
        report.packs_not_indexed += 1;
        if condemned.contains(&pack) {
            report.packs_condemned += 1;
        }
    }

    if opts.read_data != ReadData::Nothing {
        say("reading and verifying pack data");
        let selected: Vec<Id> = packs
            .keys()
            .filter(|p| !damaged_packs.contains(p) && opts.read_data.selects(p, &opts.salt))
            .copied()
            .collect();
        // Several packs at once (each is a download, then CPU work);
        // reported in pack order whatever order they finish in.
        let verified = Mutex::new(Vec::with_capacity(selected.len()));
        on_threads(opts.readers, selected, |pack| {
            let result = repo.verify_pack(&pack);
            verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pack, result));
            Ok::<(), Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
        let mut verified = verified.into_inner().unwrap_or_else(|e| e.into_inner());
        verified.sort_by_key(|(pack, _)| *pack);
        for (pack, result) in verified {
            match result {
                Ok(_) => report.packs_read += 1,
                // A patch in this pack whose base, in another pack, fails:
                // that pack is at fault, not this one (the walk attributes
                // the base to the snapshots reaching it).
                Err(e) if is_damage(&e) && !e.to_string().contains(&pack.to_hex()) => {
                    report.packs_read += 1;
                    report.problem(
                        format!("pack {pack}"),
                        format!("a patch in it cannot be rebuilt: {e}"),
                    );
                }
                Err(e) if is_damage(&e) => {
                    report.packs_read += 1;
                    report.problem(format!("pack {pack}"), e.to_string());
                    damaged_packs.insert(pack);
                }
                // The target failed on this pack after every retry: it is
                // not verified, and nothing is known against it. The rest
                // are still read; the command says to run the check again.
                Err(e @ cairn_store::Error::Backend(_)) => report.unverified(&pack, &e),
                Err(e) => return Err(e.into()),
            }
        }
    }

    say("checking that every snapshot's blobs are indexed");
    let mut damaged_blobs: HashSet<u128> = HashSet::new();
    let mut walker = Walker::new(repo);
    for (id, snapshot) in &snapshots {
        walker.walk_snapshot::<CheckError>(id, snapshot, &mut |v| {
            let (object, reason, blob) = match v {
                Visit::Blob(r) => match r.location {
                    None => (
                        format!("{} {}", r.kind.label(), r.id),
                        format!("reached from snapshot {} but in no index file", id.short(8)),
                        r.id,
                    ),
                    Some((pack, entry)) if entry.blob_type != r.kind.blob_type() => (
                        format!("{} {}", r.kind.label(), r.id),
                        format!("stored in pack {pack} as a blob of the other type"),
                        r.id,
                    ),
                    Some(_) => return Ok(()),
                },
                Visit::Damaged(d) => (
                    format!("{} {}", d.kind.label(), d.id),
                    d.reason.clone(),
                    d.id,
                ),
            };
            report.problem(object, reason);
            damaged_blobs.insert(blob.prefix_u128());
            Ok(())
        })?;
    }
    report.blobs_reachable = walker.blobs_seen();
    drop(walker);

    for id in &unreadable {
        report.affected.push(Affected {
            id: *id,
            time: None,
            hostname: None,
            paths: Vec::new(),
            unreadable: true,
        });
    }
    if !damaged_packs.is_empty() || !damaged_blobs.is_empty() {
        say("finding the snapshots affected");
        for (id, snapshot) in &snapshots {
            let hit = Walker::new(repo).walk_snapshot::<Attribution>(id, snapshot, &mut |v| {
                let bad = match v {
                    Visit::Blob(r) => {
                        r.location
                            .is_none_or(|(pack, _)| damaged_packs.contains(&pack))
                            || damaged_blobs.contains(&r.id.prefix_u128())
                    }
                    Visit::Damaged(_) => true,
                };
                if bad { Err(Attribution::Hit) } else { Ok(()) }
            });
            match hit {
                Ok(()) => {}
                Err(Attribution::Hit) => report.affected.push(Affected {
                    id: *id,
                    time: Some(snapshot.time),
                    hostname: Some(snapshot.hostname.clone()),
                    paths: snapshot.paths.clone(),
                    unreadable: false,
                }),
                Err(Attribution::Walk(e)) => return Err(e.into()),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::chunklist::Extent;
    use crate::tree::{Content, Node, NodeKind, Tree, save_tree};
    use cairn_store::backend::MemoryBackend;
    use cairn_store::{
        Backend, BlobType, Credential, Handle, InitOptions, OpenOptions, SeededRandom, SnapshotKind,
    };
    use std::sync::Arc;

    fn repo(backend: &Arc<MemoryBackend>, seed: &[u8]) -> Repository {
        let mut open = OpenOptions::new(None);
        open.rng = Arc::new(SeededRandom::new(seed));
        let credential = Credential::Password(b"pw");
        match Repository::open(backend.clone(), &credential, open.clone()) {
            Ok(r) => r,
            Err(_) => Repository::init(
                backend.clone(),
                &credential,
                &InitOptions::for_tests(),
                open,
            )
            .unwrap(),
        }
    }

    /// A snapshot of one file made of `blobs` (in one backup session, so
    /// its data goes to packs of its own).
    fn file_snapshot(repo: &Repository, host: &str, blobs: &[Vec<u8>], extra: Option<Id>) -> Id {
        let mut extents: Vec<Extent> = blobs
            .iter()
            .map(|b| Extent {
                len: b.len() as u64,
                blob: Some(repo.save_blob(BlobType::Data, b).unwrap().id),
            })
            .collect();
        if let Some(ghost) = extra {
            extents.push(Extent {
                len: 1,
                blob: Some(ghost),
            });
        }
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.content = Some(Content::Inline(extents));
        let (root, _) = save_tree(repo, &Tree { nodes: vec![node] }).unwrap();
        let snapshot = Snapshot {
            time: 1_764_547_200,
            time_nanos: 0,
            hostname: host.into(),
            username: "u".into(),
            kind: SnapshotKind::Files,
            paths: vec!["/f".into()],
            tags: vec![],
            parent: None,
            root,
            program_version: "test".into(),
            stats: Default::default(),
            original: None,
        };
        repo.save_snapshot(&snapshot).unwrap()
    }

    fn blob(i: u32) -> Vec<u8> {
        blake3::hash(&i.to_le_bytes()).as_bytes().repeat(200)
    }

    fn run(repo: &Repository, read_data: ReadData) -> CheckReport {
        check(
            repo,
            &CheckOptions {
                read_data,
                salt: [0; 32],
                readers: 3,
            },
            &mut |_| {},
        )
        .unwrap()
    }

    fn affected(report: &CheckReport) -> Vec<Id> {
        let mut v: Vec<Id> = report.affected.iter().map(|a| a.id).collect();
        v.sort();
        v
    }

    #[test]
    fn damage_is_found_and_only_the_snapshots_reaching_it_are_named() {
        let backend = Arc::new(MemoryBackend::new());
        let r = repo(&backend, b"c1");
        let shared: Vec<Vec<u8>> = (0..3).map(blob).collect();
        let a = file_snapshot(&r, "a", &shared, None);
        drop(r);
        // Session 2: a snapshot with blobs of its own, and one reaching a
        // blob the repository does not have.
        let r = repo(&backend, b"c2");
        let own: Vec<Vec<u8>> = (10..14).map(blob).collect();
        let b = file_snapshot(&r, "b", &own, None);
        let ghost = Id([0xee; 32]);
        let c = file_snapshot(&r, "c", &shared, Some(ghost));
        let report = run(&r, ReadData::All);
        assert_eq!(report.problems_total, 1, "{:?}", report.problems);
        assert!(report.problems[0].reason.contains("in no index file"));
        assert_eq!(affected(&report), vec![c]);
        assert_eq!(report.snapshots, 3);
        let (b_pack, b_entry) = r.locate_blob(&r.blob_id(&own[0])).unwrap().unwrap();
        let (a_pack, _) = r.locate_blob(&r.blob_id(&shared[0])).unwrap().unwrap();
        assert_ne!(a_pack, b_pack);
        drop(r);

        // A flipped bit in a blob of b's pack: only --read-data sees it.
        let handle = Handle::new(ObjectKind::Pack, &b_pack);
        assert!(backend.corrupt(&handle, b_entry.offset as usize + 10, 0x04));
        let r = repo(&backend, b"c3");
        let structural = run(&r, ReadData::Nothing);
        assert_eq!(structural.problems_total, 1);
        let full = run(&r, ReadData::All);
        assert_eq!(full.problems_total, 2, "{:?}", full.problems);
        assert_eq!(affected(&full), {
            let mut v = vec![b, c];
            v.sort();
            v
        });
        // A part that does not read that pack does not see it.
        let parts: Vec<usize> = (1..=4)
            .map(|n| run(&r, ReadData::Part { n, m: 4 }).problems_total)
            .collect();
        assert_eq!(parts.iter().filter(|&&p| p == 2).count(), 1, "{parts:?}");

        // A's pack gone from the target: found without reading data, and a
        // and c (which shares a's blobs) are affected.
        backend
            .delete(&Handle::new(ObjectKind::Pack, &a_pack))
            .unwrap();
        let gone = run(&r, ReadData::Nothing);
        assert!(
            gone.problems
                .iter()
                .any(|p| p.object == format!("pack {a_pack}")),
            "{:?}",
            gone.problems
        );
        assert_eq!(affected(&gone), {
            let mut v = vec![a, c];
            v.sort();
            v
        });
    }

    #[test]
    fn subsets_parse_and_parts_cover_every_pack_once() {
        assert_eq!(
            "3/7".parse::<ReadData>().unwrap(),
            ReadData::Part { n: 3, m: 7 }
        );
        assert_eq!("100%".parse::<ReadData>().unwrap(), ReadData::All);
        assert_eq!(
            "12.5%".parse::<ReadData>().unwrap(),
            ReadData::Percent(12.5)
        );
        for bad in ["0/3", "4/3", "1/0", "0%", "101%", "x", "1/", "%"] {
            assert!(bad.parse::<ReadData>().is_err(), "{bad}");
        }
        let salt = [7u8; 32];
        let ids: Vec<Id> = (0..500u32)
            .map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for id in &ids {
            let hits = (1..=5)
                .filter(|&n| ReadData::Part { n, m: 5 }.selects(id, &salt))
                .count();
            assert_eq!(hits, 1);
        }
        let share = ids
            .iter()
            .filter(|id| ReadData::Percent(20.0).selects(id, &salt))
            .count();
        assert!((60..140).contains(&share), "{share} of 500 at 20%");
        // Another salt, another draw; the same salt, the same one.
        let again: Vec<bool> = ids
            .iter()
            .map(|id| ReadData::Percent(20.0).selects(id, &salt))
            .collect();
        let other: Vec<bool> = ids
            .iter()
            .map(|id| ReadData::Percent(20.0).selects(id, &[8; 32]))
            .collect();
        let first: Vec<bool> = ids
            .iter()
            .map(|id| ReadData::Percent(20.0).selects(id, &salt))
            .collect();
        assert_eq!(again, first);
        assert_ne!(other, first);
    }

    /// Under heavy transient faults (a third of the calls fail, a third of
    /// the reads come back short) a check of a sound repository either
    /// finishes clean or stops with an error about the target: it never
    /// reports damage that is not there.
    #[test]
    fn target_faults_are_never_reported_as_damage() {
        use cairn_store::backend::clock::ManualClock;
        use cairn_store::backend::{FaultPlan, FaultyBackend, RetryBackend, RetryPolicy};

        let backend = Arc::new(MemoryBackend::new());
        // Four sessions, so four sets of packs and index files.
        for session in 0..4u32 {
            let r = repo(&backend, &session.to_le_bytes());
            let blobs: Vec<Vec<u8>> = (session * 10..session * 10 + 6).map(blob).collect();
            file_snapshot(&r, &format!("h{session}"), &blobs, None);
        }
        let (mut clean, mut unverified, mut stopped) = (0, 0, 0);
        for seed in 0..150u64 {
            let faulty = Arc::new(FaultyBackend::new(
                backend.clone(),
                FaultPlan::new(seed).fail(0.3).truncate_reads(0.3),
            ));
            let retrying: Arc<dyn Backend> = Arc::new(
                RetryBackend::new(faulty, RetryPolicy::with_retries(5))
                    .with_clock(Arc::new(ManualClock::new()))
                    .with_seed(seed),
            );
            let mut open = OpenOptions::new(None);
            open.rng = Arc::new(SeededRandom::new(&seed.to_le_bytes()));
            let Ok(r) = Repository::open(retrying, &Credential::Password(b"pw"), open) else {
                stopped += 1;
                continue;
            };
            let opts = CheckOptions {
                read_data: ReadData::All,
                salt: [0; 32],
                readers: 2,
            };
            match check(&r, &opts, &mut |_| {}) {
                Ok(report) => {
                    assert!(
                        report.is_clean(),
                        "seed {seed}: damage reported under faults: {:?}",
                        report.problems
                    );
                    assert_eq!(
                        report.packs_read + report.packs_unverified_total,
                        report.packs
                    );
                    if report.is_complete() {
                        clean += 1;
                    } else {
                        unverified += 1;
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    assert!(!text.contains("corrupt"), "seed {seed}: {text}");
                    stopped += 1;
                }
            }
        }
        assert!(
            clean > 50,
            "{clean} clean checks, {unverified} with packs not verified, {stopped} stopped"
        );
        eprintln!("{clean} clean, {unverified} with packs not verified, {stopped} stopped");
    }
}
