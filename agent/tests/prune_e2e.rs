#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: `cairn prune` and `forget --prune`.
//!
//! - a week of daily backups of a changing disk image, four kept, the rest
//!   forgotten and pruned: every kept snapshot restores byte for byte and
//!   check is clean, on the local target and over SFTP;
//! - a prune while a (throttled) backup runs: neither waits for the other,
//!   and afterwards check is clean, every snapshot restores, and the next
//!   prune finishes the plan;
//! - a prune killed (abort, as kill -9) after each of its steps: check is
//!   clean, every kept snapshot restores, and rerunning prune finishes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::target::Target;
use common::{fill, same_tree};

const IMAGE_MIB: usize = 12;

/// The disk image of `day`: random and compressible regions; every day
/// rewrites a different MiB and scatters 4 KiB writes, as a guest would.
fn disk_image(day: u64) -> Vec<u8> {
    let mut image = Vec::with_capacity(IMAGE_MIB << 20);
    for mib in 0..IMAGE_MIB as u64 {
        if mib % 3 == 2 {
            image.extend(
                format!("record {mib} of a table that compresses well\n")
                    .bytes()
                    .cycle()
                    .take(1 << 20),
            );
        } else {
            image.extend(fill(mib, 1 << 20));
        }
    }
    // A hot region rewritten every day: what only forgotten days held.
    image[4 << 20..5 << 20].copy_from_slice(&fill(2000 + day, 1 << 20));
    for d in 1..=day {
        let region = ((d * 5) as usize % IMAGE_MIB) << 20;
        image[region..region + (1 << 20)].copy_from_slice(&fill(1000 + d, 1 << 20));
        for i in 0..16u64 {
            let block = ((d * 7919 + i * 104_729) as usize % (IMAGE_MIB * 256)) * 4096;
            image[block..block + 4096].copy_from_slice(&fill(5000 + d * 100 + i, 4096));
        }
    }
    image
}

/// Seven daily disk backups; keep the last three and the first, forget and
/// prune the others; everything kept restores byte for byte.
fn week_of_disk_snapshots(t: &Target) {
    t.ok(&["init", "--kdf-memory", "8", "--pack-size", "1", "-q"]);
    let image = t.env.path("disk.img");
    let mut sums = BTreeMap::new();
    for day in 1..=7u64 {
        let data = disk_image(day);
        std::fs::write(&image, &data).unwrap();
        sums.insert(format!("day{day}"), blake3::hash(&data));
        t.ok(&[
            "backup",
            "--disk",
            "-q",
            "--tag",
            &format!("day{day}"),
            image.to_str().unwrap(),
        ]);
    }
    t.ok(&["forget", "-q", "--keep-last", "3", "--keep-tag", "day1"]);
    let report = t.json(&["prune", "--json", "-q"]);
    let mark = &report["mark"];
    assert_eq!(mark["snapshots"], 4, "{report}");
    assert!(mark["packs_condemned"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(mark["plan_locks"], 0, "{report}");
    assert_eq!(report["now"]["plans_done"], 1, "{report}");
    assert!(
        report["now"]["bytes_freed"].as_u64().unwrap() > (1 << 20),
        "{report}"
    );

    let kept = t.snapshots_by_tag();
    assert_eq!(
        kept.keys().cloned().collect::<Vec<_>>(),
        ["day1", "day5", "day6", "day7"]
    );
    let check = t.check_clean();
    assert_eq!(check["plans"], 0, "{check}");
    assert_eq!(check["packs_not_indexed"], 0, "{check}");
    for (tag, id) in &kept {
        let out = t.env.path(&format!("restored-{tag}.img"));
        t.ok(&["restore", id, "--disk-to", out.to_str().unwrap(), "-q"]);
        let restored = std::fs::read(&out).unwrap();
        assert_eq!(
            blake3::hash(&restored),
            sums[tag],
            "{tag} restored differently"
        );
        std::fs::remove_file(&out).unwrap();
    }
    // A second prune finds nothing left to do.
    let again = t.json(&["prune", "--json", "-q"]);
    assert_eq!(again["mark"]["packs_condemned"], 0, "{again}");
    assert_eq!(again["mark"]["packs_repacked"], 0, "{again}");
    assert!(again["mark"]["plan"].is_null(), "{again}");
}

#[test]
fn a_week_of_disk_snapshots_forgotten_and_pruned_restores_on_a_local_target() {
    week_of_disk_snapshots(&Target::local());
}

#[test]
fn a_week_of_disk_snapshots_forgotten_and_pruned_restores_over_sftp() {
    if let Some(t) = Target::sftp("prune") {
        week_of_disk_snapshots(&t);
    }
}

/// Version `v` of a small file tree: most files stay, some change.
fn small_tree(root: &Path, v: u64) {
    std::fs::create_dir_all(root).unwrap();
    for f in 0..12u64 {
        let seed = if f % 4 == v % 4 { 100 * v + f } else { f };
        std::fs::write(
            root.join(format!("f{f}")),
            fill(seed, 30_000 + f as usize * 9_000),
        )
        .unwrap();
    }
}

fn restore_to(t: &Target, id: &str, name: &str) -> std::path::PathBuf {
    let dir = t.env.path(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    t.ok(&["restore", id, "--target", dir.to_str().unwrap(), "-q"]);
    dir
}

/// Restores each tagged snapshot and compares it with `small_tree` of the
/// version its tag names (`v<N>`).
fn restore_versions(t: &Target, src: &Path) {
    let expected = t.env.path("expected");
    for (tag, id) in t.snapshots_by_tag() {
        let Some(v) = tag.strip_prefix('v').and_then(|v| v.parse().ok()) else {
            continue;
        };
        if expected.exists() {
            std::fs::remove_dir_all(&expected).unwrap();
        }
        small_tree(&expected, v);
        let dir = restore_to(t, &id, "restored");
        same_tree(&expected, &dir.join(src.strip_prefix("/").unwrap()));
    }
}

/// A repository with five versions of a small tree backed up, the oldest
/// two forgotten (their unique blobs are garbage).
fn repo_with_garbage(t: &Target) -> std::path::PathBuf {
    t.ok(&["init", "--kdf-memory", "8", "--pack-size", "1", "-q"]);
    let src = t.env.path("src");
    for v in 1..=5u64 {
        small_tree(&src, v);
        t.ok(&[
            "backup",
            "-q",
            "--tag",
            &format!("v{v}"),
            src.to_str().unwrap(),
        ]);
    }
    t.ok(&["forget", "-q", "--keep-last", "3"]);
    src
}

#[test]
fn prune_beside_a_running_backup_loses_nothing() {
    let t = Target::local();
    let src = repo_with_garbage(&t);
    // A larger tree, backed up throttled so that it is still running while
    // prune runs (nothing below depends on how the two interleave).
    let big = t.env.path("big");
    std::fs::create_dir_all(&big).unwrap();
    for f in 0..24u64 {
        std::fs::write(big.join(format!("b{f}")), fill(900 + f, 1 << 20)).unwrap();
    }
    let mut backup = t
        .command(&[
            "backup",
            "-q",
            "--tag",
            "big",
            "--limit-upload",
            "2M",
            big.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the backup holds its lock (or has finished).
    let locks = t.env.path("repo").join("locks");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Temp names (`.tmp-*`) are locks still being written, not locks yet.
    let has_lock = || {
        std::fs::read_dir(&locks).unwrap().any(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
    };
    while !has_lock() && backup.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = t.json(&["forget", "-q", "--keep-last", "2", "--prune", "--json"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        report["prune"]["mark"]["packs_condemned"].as_u64().unwrap() > 0,
        "{report}"
    );
    eprintln!("prune beside the backup: {report}");
    let status = backup.wait().unwrap();
    assert!(status.success(), "the backup failed beside prune");

    t.check_clean();
    restore_versions(&t, &src);
    let big_id = t.snapshots_by_tag()["big"].clone();
    same_tree(
        &big,
        &restore_to(&t, &big_id, "restored-big").join(big.strip_prefix("/").unwrap()),
    );

    // The next prune finishes whatever waited for the backup.
    t.json(&["prune", "--json", "-q"]);
    let check = t.check_clean();
    assert_eq!(check["plans"], 0, "{check}");
    assert_eq!(check["packs_not_indexed"], 0, "{check}");
    restore_versions(&t, &src);
    same_tree(
        &big,
        &restore_to(&t, &big_id, "restored-big").join(big.strip_prefix("/").unwrap()),
    );
}

#[test]
fn a_prune_killed_after_any_step_leaves_a_clean_repository_and_reruns() {
    let base = Target::local();
    let src = repo_with_garbage(&base);
    for step in [
        "repack",
        "index",
        "delete-index",
        "plan",
        "sweep-delete-one",
        "sweep-delete",
    ] {
        // A copy of the repository per step, with the same source path.
        let t = base.copy_local(&["repo"]);

        let out = t
            .command(&["prune", "-q", "--max-unused", "0%"])
            .env("CAIRN_TEST_CRASH_AFTER", step)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "prune should have aborted after {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.check_clean();
        restore_versions(&t, &src);
        let rerun = t.json(&["prune", "--json", "-q", "--max-unused", "0%"]);
        let check = t.check_clean();
        assert_eq!(check["plans"], 0, "after {step}: {rerun} {check}");
        assert_eq!(check["packs_not_indexed"], 0, "after {step}: {check}");
        restore_versions(&t, &src);
    }
}
