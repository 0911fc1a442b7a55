#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Target faults, end to end through the real binary:
//!
//! - transient failures, truncated reads, slow responses and replies lost
//!   after a write landed (`CAIRN_TEST_FAULTS`), at 1%, 10% and 30% of the
//!   calls, during backup, restore, check, forget and prune: every run
//!   succeeds, finishes with warnings (exit 3: e.g. a backup whose parent
//!   snapshot could not be read reads everything and is saved), or fails
//!   cleanly (exit 1, a message naming the operation and the object, never
//!   a panic); afterwards, faults off,
//!   check is clean and every snapshot that was reported saved restores
//!   byte for byte;
//! - a full local target (a small tmpfs, mounted when the test runs as
//!   root; skipped otherwise unless CAIRN_REQUIRE_SERVERS or CI is set):
//!   the backup fails with a message saying the target is out of space and
//!   what to do, and the repository stays intact.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::data::{backup_disk, disk_image, init, small_tree};
use common::target::{Content, Target};

/// What a run under faults did.
#[derive(Debug, Default)]
struct Tally {
    succeeded: u32,
    with_warnings: u32,
    failed_cleanly: u32,
}

impl Tally {
    /// Fails the test unless `out` is a success, a finish with warnings
    /// (exit 3 and a `warning:` line) or a clean failure: exit code 1 and
    /// one `error:` line naming an operation on the target and the object.
    /// Returns whether what it made is complete: a success, or a backup
    /// saved with warnings (a restore with warnings left something out).
    fn record(&mut self, args: &[&str], out: &Output) -> bool {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && out.status.code() != Some(101),
            "cairn {args:?} panicked: {stderr}"
        );
        if out.status.success() {
            self.succeeded += 1;
            return true;
        }
        if out.status.code() == Some(3) {
            assert!(
                stderr.lines().any(|l| l.starts_with("warning: ")),
                "cairn {args:?}: exit 3 without a warning: {stderr}"
            );
            eprintln!("finished with warnings: cairn {args:?}");
            self.with_warnings += 1;
            return args[0] == "backup";
        }
        assert_eq!(out.status.code(), Some(1), "cairn {args:?}: {stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("cairn {args:?}: no error line: {stderr}"));
        let names_op = ["read ", "write ", "list ", "stat ", "delete "]
            .iter()
            .any(|op| error.contains(op));
        let names_object = [
            "pack ",
            "index file ",
            "snapshot ",
            "lock ",
            "config",
            "key file ",
            "prune plan ",
            "data/",
            "index/",
            "snapshots/",
            "locks/",
            "keys/",
            "plans/",
        ]
        .iter()
        .any(|o| error.contains(o));
        assert!(
            names_op && names_object,
            "cairn {args:?}: the error names no operation and object: {error}"
        );
        eprintln!("clean failure of cairn {args:?}: {error}");
        self.failed_cleanly += 1;
        false
    }
}

/// Runs `cairn args` on `t` with `faults` injected.
fn faulty(t: &Target, faults: &str, args: &[&str]) -> Output {
    t.command(args)
        .env("CAIRN_TEST_FAULTS", faults)
        .output()
        .unwrap()
}

/// Backups, restores, checks, forgets and prunes at `rate`: returns the
/// tally.
fn under_faults(rate: f64) -> Tally {
    let t = Target::local();
    init(&t);
    let mut tally = Tally::default();
    let mut saved = BTreeMap::new();
    let src = t.env.path("src");
    let src_arg = src.to_str().unwrap().to_string();
    let restored = t.env.path("restored-under-faults");
    for v in 1..=6u64 {
        let faults = format!("seed={v},fail={rate},truncate={rate},delay={rate}:5ms,landed=0.5");
        small_tree(&src, v);
        let tag = format!("v{v}");
        let args = ["backup", "-q", "--tag", &tag, &src_arg];
        if tally.record(&args, &faulty(&t, &faults, &args)) {
            saved.insert(tag.clone(), Content::tree(&src));
        }
        if let Some(id) = t.snapshots_by_tag().get(&tag) {
            let _ = std::fs::remove_dir_all(&restored);
            let args = ["restore", id, "--target", restored.to_str().unwrap(), "-q"];
            let out = faulty(&t, &faults, &args);
            if tally.record(&args, &out) {
                let tree = restored.join(src.strip_prefix("/").unwrap());
                assert_eq!(
                    common::target::tree_hash(&tree),
                    common::target::tree_hash(&src),
                    "{tag} restored under faults differs"
                );
            }
        }
        let args = ["check", "-q", "--read-data"];
        tally.record(&args, &faulty(&t, &faults, &args));
        if v % 2 == 0 {
            let args = ["forget", "-q", "--keep-last", "3", "--prune"];
            tally.record(&args, &faulty(&t, &faults, &args));
        }
    }
    // Faults off: nothing reported saved is lost.
    t.check_leftovers();
    let kept: BTreeMap<_, _> = t
        .snapshots_by_tag()
        .into_keys()
        .filter_map(|tag| saved.get(&tag).map(|c| (tag, c.clone())))
        .collect();
    t.restores(&kept, &[]);
    let last = saved.keys().max_by_key(|t| t[1..].parse::<u64>().unwrap());
    if let Some(last) = last {
        assert!(
            kept.contains_key(last),
            "the last saved snapshot {last} is gone"
        );
    }
    t.ok(&["prune", "-q"]);
    t.check_leftovers();
    t.restores(&kept, &[]);
    tally
}

#[test]
fn one_percent_of_target_calls_failing() {
    let tally = under_faults(0.01);
    eprintln!("faults 1%: {tally:?}");
}

#[test]
fn ten_percent_of_target_calls_failing() {
    let tally = under_faults(0.1);
    eprintln!("faults 10%: {tally:?}");
}

#[test]
fn thirty_percent_of_target_calls_failing() {
    let tally = under_faults(0.3);
    eprintln!("faults 30%: {tally:?}");
}

/// A tmpfs of `mib` MiB mounted at a fresh directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts it, or returns `None` (after a note) when this process may
    /// not mount and the test is not required (CAIRN_REQUIRE_SERVERS, CI).
    fn mount(mib: u32) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                let required = ["CAIRN_REQUIRE_SERVERS", "CI"]
                    .iter()
                    .any(|n| std::env::var(n).is_ok_and(|v| !v.is_empty() && v != "0"));
                let msg = format!("cannot mount a small tmpfs (run as root): {why}");
                assert!(
                    !required,
                    "{msg} (required: CAIRN_REQUIRE_SERVERS or CI is set)"
                );
                eprintln!("SKIPPED: {msg}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_local_target_fails_the_backup_clearly_and_keeps_the_repository() {
    let Some(fs) = SmallFs::mount(6) else {
        return;
    };
    let repo: PathBuf = fs.path().join("repo");
    let t = Target {
        repo: repo.to_str().unwrap().to_string(),
        ..Target::local()
    };
    init(&t);
    // The first image fits (about 2.5 MiB stored), the next ones do not.
    let mut saved: BTreeMap<_, _> = [backup_disk(&t, 1)].into();
    let image = t.env.path("big.img");
    let mut data = disk_image(2);
    data.extend(common::fill(77, 8 << 20));
    std::fs::write(&image, &data).unwrap();
    let args = [
        "backup",
        "--disk",
        "-q",
        "--tag",
        "big",
        image.to_str().unwrap(),
    ];
    for _ in 0..2 {
        let out = t.command(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap();
        for needed in [
            "no space left",
            t.repo.as_str(),
            "free space",
            "cairn prune",
        ] {
            assert!(
                error.contains(needed),
                "the error does not say {needed:?}: {error}"
            );
        }
        eprintln!("full target: {error}");
    }
    // The repository is intact: check clean, the first snapshot restores,
    // and once space is freed (a smaller backup) it takes backups again.
    t.check_leftovers();
    t.restores(&saved, &["day1"]);
    saved.insert("day1".into(), Content::disk(&t.env.path("disk.img")));
    t.ok(&["prune", "-q"]);
    t.check_leftovers();
    let (tag, content) = backup_disk(&t, 2);
    saved.insert(tag, content);
    t.restores(&saved, &["day1", "day2"]);
}
