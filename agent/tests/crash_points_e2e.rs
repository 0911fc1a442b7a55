#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash points, end to end through the real binary: backup (files and a
//! disk image), prune, synth, copy and `key rotate --rewrite` are each run once with
//! `CAIRN_TEST_OP_LOG` to count their mutations of the target (writes and
//! deletes; docs/reliability.md says why reads are not crash points), then
//! once per crash point N on a fresh copy of the repository with
//! `CAIRN_TEST_CRASH_AT_OP=N`, which aborts the process right after the N-th
//! mutation. After each crash:
//!
//! - check is clean, and nothing but harmless leftovers (unindexed packs,
//!   prune plans, stale locks, temp files: [`Leftovers`]) is on the target;
//! - every snapshot that existed before restores byte for byte (a hash
//!   compare), and so does the new one if the crash came after it;
//! - rerunning the operation completes, check is clean after it and every
//!   snapshot, the operation's own included, restores.
//!
//! Every crash point is tried up to [`EVERY_POINT_UP_TO`]; above that an
//! even sample of that many, first and last included, plus the final
//! mutations an operation names (`Operation::last`: for the rewrite, the
//! config's replacement and the key files after it). Each test prints how
//! many points it tried (`cargo test --test crash_points_e2e --
//! --nocapture`).

mod common;

use std::collections::BTreeMap;

use cairn_store::backend::OpRecorder;
use common::data::{backup_disk, backup_tree, disk_image, init, small_tree};
use common::target::{Content, Leftovers, Target};

/// Crash points tried one by one; above this, an even sample this big.
const EVERY_POINT_UP_TO: u64 = 24;

/// The crash points tried of `total`: all of them, or an even sample.
fn crash_points(total: u64) -> Vec<u64> {
    if total <= EVERY_POINT_UP_TO {
        return (1..=total).collect();
    }
    let last = EVERY_POINT_UP_TO - 1;
    let mut points: Vec<u64> = (0..=last).map(|i| 1 + i * (total - 1) / last).collect();
    points.dedup();
    points
}

/// An operation to crash, on a repository prepared in `base`.
struct Operation<'a> {
    /// Its name in messages.
    name: &'a str,
    /// The scratch entries of `base` each crash point gets a copy of (the
    /// repository `repo` and, for copy, the source repository).
    entries: &'a [&'a str],
    /// Its command line; `{env}` stands for the scratch directory.
    args: &'a [&'a str],
    /// The command line that finishes it after a crash, when not `args`.
    rerun: Option<&'a [&'a str]>,
    /// Its last mutations, which are always tried whatever the sample (the
    /// final steps, where the order matters most): how each logged line
    /// starts after its number, such as `replace config`.
    last: &'a [&'a str],
    /// What the snapshots before it restore to, by first tag.
    before: BTreeMap<String, Content>,
    /// The snapshots it adds (required after the rerun).
    adds: BTreeMap<String, Content>,
}

impl Operation<'_> {
    fn args_in(&self, t: &Target) -> Vec<String> {
        Self::expand(self.args, t)
    }

    fn expand(args: &[&str], t: &Target) -> Vec<String> {
        let env = t.env.path("");
        let env = env.to_str().unwrap().trim_end_matches('/');
        args.iter().map(|a| a.replace("{env}", env)).collect()
    }

    fn all(&self) -> BTreeMap<String, Content> {
        let mut all = self.before.clone();
        all.extend(self.adds.clone());
        all
    }

    fn tags(map: &BTreeMap<String, Content>) -> Vec<&str> {
        map.keys().map(String::as_str).collect()
    }

    /// Reruns the operation on `t` and checks the repository after it.
    fn rerun_and_verify(&self, t: &Target) {
        let args = Self::expand(self.rerun.unwrap_or(self.args), t);
        t.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        t.check_leftovers();
        let all = self.all();
        t.restores(&all, &Self::tags(&all));
    }
}

/// Counts `op`'s crash points, crashes it at each one tried, and checks
/// what every crash leaves. Returns (crash points, tried, crashed).
fn crash_at_every_point(base: &Target, op: &Operation<'_>) -> (u64, usize, usize) {
    // A first run, logged, counts the mutations.
    let t = base.copy_local(op.entries);
    let log = t.env.path("ops.log");
    let args = op.args_in(&t);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t
        .command(&args)
        .env("CAIRN_TEST_OP_LOG", &log)
        .output()
        .unwrap();
    common::succeeded(&args, out);
    let total = OpRecorder::mutations_in_log(&std::fs::read_to_string(&log).unwrap());
    assert!(total > 0, "{}: no mutation of the target logged", op.name);
    t.check_leftovers();
    t.restores(&op.all(), &Operation::tags(&op.all()));

    let logged = std::fs::read_to_string(&log).unwrap();
    let mutations: Vec<&str> = logged
        .lines()
        .filter(|l| l.starts_with('M'))
        .filter_map(|l| l.split_once(' ').map(|(_, op)| op))
        .collect();
    let tail = &mutations[mutations.len().saturating_sub(op.last.len())..];
    assert_eq!(tail.len(), op.last.len(), "{}: {logged}", op.name);
    for (got, want) in tail.iter().zip(op.last) {
        assert!(
            got.starts_with(want),
            "{}: last mutations {tail:?}",
            op.name
        );
    }
    let mut points = crash_points(total);
    points.extend(total + 1 - op.last.len() as u64..=total);
    points.sort_unstable();
    points.dedup();
    let mut crashed = 0;
    let mut leftovers = Leftovers::default();
    for &n in &points {
        let t = base.copy_local(op.entries);
        let args = op.args_in(&t);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = t
            .command(&args)
            .env("CAIRN_TEST_CRASH_AT_OP", n.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{} at {n}: {stderr}", op.name);
        match out.status.code() {
            // Killed by the abort: the crash point was reached.
            None => crashed += 1,
            // Threads may share the work differently from the first run;
            // an operation that finished before mutation N is fine.
            Some(0) => {}
            Some(code) => panic!("{} at {n}: exit {code}: {stderr}", op.name),
        }
        let left = t.check_leftovers();
        leftovers.add(left);
        t.restores(&op.all(), &Operation::tags(&op.before));
        op.rerun_and_verify(&t);
    }
    eprintln!(
        "crash points: {}: {total} mutations, {} tried, {crashed} crashed, all survived \
         (leftovers over all points: {leftovers:?})",
        op.name,
        points.len()
    );
    (total, points.len(), crashed)
}

#[test]
fn points_are_all_tried_up_to_the_bound_then_sampled_evenly() {
    assert_eq!(crash_points(3), [1, 2, 3]);
    let sample = crash_points(1000);
    assert_eq!(sample.len() as u64, EVERY_POINT_UP_TO);
    assert_eq!((sample[0], *sample.last().unwrap()), (1, 1000));
    assert!(sample.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_files_backup_crashed_at_any_point() {
    let base = Target::local();
    init(&base);
    let before: BTreeMap<_, _> = [backup_tree(&base, 1), backup_tree(&base, 2)].into();
    // The next version, what the crashed backup backs up.
    let src = base.env.path("src");
    small_tree(&src, 3);
    let adds = [("v3".to_string(), Content::tree(&src))].into();
    let src = src.to_str().unwrap();
    crash_at_every_point(
        &base,
        &Operation {
            name: "backup (files)",
            entries: &["repo"],
            args: &["backup", "-q", "--tag", "v3", src],
            rerun: None,
            last: &[],
            before,
            adds,
        },
    );
}

#[test]
fn a_disk_backup_crashed_at_any_point() {
    let base = Target::local();
    init(&base);
    let before: BTreeMap<_, _> = [backup_disk(&base, 1)].into();
    let image = base.env.path("disk.img");
    std::fs::write(&image, disk_image(2)).unwrap();
    let adds = [("day2".to_string(), Content::disk(&image))].into();
    crash_at_every_point(
        &base,
        &Operation {
            name: "backup (disk)",
            entries: &["repo"],
            args: &[
                "backup",
                "--disk",
                "-q",
                "--tag",
                "day2",
                image.to_str().unwrap(),
            ],
            rerun: None,
            last: &[],
            before,
            adds,
        },
    );
}

#[test]
fn a_prune_crashed_at_any_point() {
    let base = Target::local();
    init(&base);
    let mut before = BTreeMap::new();
    for v in 1..=5 {
        let (tag, content) = backup_tree(&base, v);
        before.insert(tag, content);
    }
    // Two versions forgotten: their blobs are garbage, some packs are
    // partly used (repacked) and some wholly unused (deleted).
    base.ok(&["forget", "-q", "--keep-last", "3"]);
    before.remove("v1");
    before.remove("v2");
    crash_at_every_point(
        &base,
        &Operation {
            name: "prune",
            entries: &["repo"],
            args: &["prune", "-q", "--max-unused", "0%"],
            rerun: None,
            last: &[],
            before,
            adds: BTreeMap::new(),
        },
    );
}

#[test]
fn a_synth_crashed_at_any_point() {
    let base = Target::local();
    init(&base);
    let mut before = BTreeMap::new();
    for day in 1..=3 {
        let (tag, content) = backup_disk(&base, day);
        before.insert(tag, content);
    }
    crash_at_every_point(
        &base,
        &Operation {
            name: "synth",
            entries: &["repo"],
            args: &["synth", "latest", "-q", "--min-pack-use", "1"],
            rerun: None,
            last: &[],
            before,
            adds: BTreeMap::new(),
        },
    );
}

#[test]
fn a_copy_crashed_at_any_point() {
    // The source: a file and a disk snapshot. The destination: created with
    // the source's chunker parameters, holding a copy of the first.
    let base = Target::local();
    let from = base.env.path("from");
    let source = Target {
        env: common::Env::new(),
        repo: from.to_str().unwrap().to_string(),
        vars: Vec::new(),
    };
    std::fs::copy(base.env.path("pw"), source.env.path("pw")).unwrap();
    init(&source);
    let (tree_tag, tree) = backup_tree(&source, 1);
    let (disk_tag, disk) = backup_disk(&source, 1);
    let first = source.snapshots_by_tag()[&tree_tag].clone();
    base.ok(&[
        "init",
        "--kdf-memory",
        "8",
        "-q",
        "--copy-chunker-params-from",
        from.to_str().unwrap(),
    ]);
    base.ok(&["copy", "-q", "--from-repo", from.to_str().unwrap(), &first]);
    crash_at_every_point(
        &base,
        &Operation {
            name: "copy",
            entries: &["repo", "from"],
            args: &["copy", "-q", "--from-repo", "{env}/from"],
            rerun: None,
            last: &[],
            before: [(tree_tag, tree)].into(),
            adds: [(disk_tag, disk)].into(),
        },
    );
}

#[test]
fn a_key_rotation_with_rewrite_crashed_at_any_point() {
    let base = Target::local();
    init(&base);
    let mut before = BTreeMap::new();
    for v in 1..=2 {
        let (tag, content) = backup_tree(&base, v);
        before.insert(tag, content);
    }
    let (tag, content) = backup_disk(&base, 1);
    before.insert(tag, content);
    crash_at_every_point(
        &base,
        &Operation {
            name: "key rotate --rewrite",
            entries: &["repo"],
            args: &["key", "rotate", "--rewrite", "-q"],
            // A crash after the new epoch was written: finish that rewrite.
            rerun: Some(&["key", "rotate", "--rewrite", "--resume", "-q"]),
            // The config replaced, the new key file written, the old one
            // deleted (the order that retires the config's epoch), then
            // the lock released.
            last: &[
                "replace config",
                "write key file",
                "delete key file",
                "delete lock",
            ],
            before,
            adds: BTreeMap::new(),
        },
    );
}
