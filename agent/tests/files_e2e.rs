#![allow(clippy::unwrap_used, clippy::expect_used)]
//! File backups through the real binary: backup, incremental backup that
//! reads nothing unchanged, restore byte for byte, `ls`, `diff`, `stats`,
//! `--include`, and a missing source path.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, fill};

fn make_tree(root: &Path) {
    for d in 0..4u64 {
        let dir = root.join(format!("d{d}")).join("sub");
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..6u64 {
            std::fs::write(
                dir.join(format!("f{f}")),
                fill(d * 10 + f, 1000 + (f as usize) * 90_000),
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/sub/f1", root.join("link")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn backup_incremental_restore_ls_diff_stats() {
    let env = Env::new();
    // The source lives apart from the repository and cache, whose writes
    // would otherwise change its parent directory's times between backups.
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    make_tree(&src);
    let src_s = src.to_str().unwrap();
    env.ok(&["init", "--kdf-memory", "8", "-q"]);

    let first = env.json(&["backup", "--json", "--tag", "t1", src_s]);
    assert_eq!(first["stats"]["files"].as_u64(), Some(25));
    let unchanged = env.json(&["backup", "--json", src_s]);
    assert_eq!(
        unchanged["stats"]["bytes_read"].as_u64(),
        Some(0),
        "{unchanged}"
    );
    // Nothing but the tree blobs of ancestors whose times moved (/tmp
    // changes whenever another test makes a directory in it).
    assert!(
        unchanged["stats"]["bytes_stored"].as_u64().unwrap() < 4096,
        "{unchanged}"
    );

    std::fs::write(src.join("d2/sub/f3"), fill(999, 5000)).unwrap();
    std::fs::write(src.join("added"), b"new file").unwrap();
    let third = env.json(&["backup", "--json", src_s]);
    assert_eq!(
        third["stats"]["bytes_read"].as_u64(),
        Some(5000 + 8),
        "{third}"
    );

    let target = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
        "-q",
    ]);
    same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    let first_id = first["snapshot"].as_str().unwrap();
    let diff = String::from_utf8(env.ok(&["diff", first_id, "latest"]).stdout).unwrap();
    assert!(diff.contains("M  ") && diff.contains("d2/sub/f3"), "{diff}");
    assert!(diff.contains("+  ") && diff.contains("added"), "{diff}");

    let ls = String::from_utf8(env.ok(&["ls", "latest", "-l"]).stdout).unwrap();
    assert!(ls.contains("d1/sub/f5") && ls.lines().count() >= 30, "{ls}");

    let only = env.path("only");
    let include = src.join("d1");
    env.ok(&[
        "restore",
        first_id,
        "--target",
        only.to_str().unwrap(),
        "--include",
        include.to_str().unwrap(),
        "-q",
    ]);
    let base = only.join(src.strip_prefix("/").unwrap());
    same_tree(&src.join("d1"), &base.join("d1"));
    assert!(!base.join("d0").exists());

    let stats = env.json(&["stats", "--json"]);
    assert_eq!(stats["snapshots"].as_array().unwrap().len(), 3);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 2.0, "{stats}");
}

#[test]
fn a_missing_source_path_fails_and_stores_no_snapshot() {
    let env = Env::new();
    env.ok(&["init", "--kdf-memory", "8", "-q"]);
    let out = env.cairn(&["backup", env.path("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
    let list = env.json(&["snapshots", "--json"]);
    assert!(list.as_array().unwrap().is_empty());
}
