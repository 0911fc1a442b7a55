#![allow(clippy::unwrap_used, clippy::expect_used)]
//! File backups through the real binary: backup, incremental backup that
//! reads nothing unchanged, restore byte for byte, `ls`, `diff`, `stats`,
//! `--include`, a missing source path, an unreadable file (exit code 3),
//! and `--one-file-system` at a tmpfs mount point.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Env, fill, same_tree};

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

/// Runs the binary as `nobody` when the tests run as root (root reads any
/// file, whatever its mode), else as the current user.
fn cairn_unprivileged(env: &Env, args: &[&str]) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_cairn");
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    cmd.args(args)
        .env("CAIRN_REPO", env.path("repo"))
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE")
        .output()
        .unwrap()
}

#[test]
fn an_unreadable_file_is_a_warning_with_exit_code_3_and_the_rest_is_stored() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    // Everything the unprivileged run needs is open to it; only one file
    // of the source is not.
    let open = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    open(&env.path(""), 0o777);
    open(&env.path("pw"), 0o644);
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/readable"), fill(1, 300_000)).unwrap();
    fs::write(src.join("secret"), b"no one may read this").unwrap();
    open(&src.join("secret"), 0o000);
    for d in [&src, &src.join("sub")] {
        open(d, 0o755);
    }
    let init = cairn_unprivileged(&env, &["init", "--kdf-memory", "8", "-q"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let out = cairn_unprivileged(&env, &["backup", "-q", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("secret"), "the warning names the file: {err}");
    // The snapshot was written and restores everything else.
    let target = env.path("restored");
    let restore = cairn_unprivileged(
        &env,
        &[
            "restore",
            "-q",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let got = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(got.join("sub/readable")).unwrap(),
        fill(1, 300_000)
    );
    assert!(!got.join("secret").exists() || fs::read(got.join("secret")).is_err());
}

/// Paths listed by `cairn ls latest --json`.
fn listed_paths(env: &Env) -> Vec<String> {
    env.json(&["ls", "latest", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn one_file_system_stops_at_a_mount_point() {
    // A tmpfs mounted inside the source, in a private mount namespace so
    // that nothing outlives the test. Needs root (as CI runs); elsewhere
    // the test cannot mount and says so.
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let env = Env::new();
    env.ok(&["init", "--kdf-memory", "8", "-q"]);
    let src = env.path("src");
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(src.join("on-root-fs"), b"kept").unwrap();
    let script =
        r#"mount -t tmpfs cairn-test "$1" && echo elsewhere > "$1/on-tmpfs" && shift && "$@""#;
    let run = |extra: &[&str]| {
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&mnt)
            .arg(env!("CARGO_BIN_EXE_cairn"))
            .args(["backup", "-q", "--force"])
            .args(extra)
            .arg(&src)
            .env("CAIRN_REPO", env.path("repo"))
            .env("CAIRN_PASSWORD_FILE", env.path("pw"))
            .env("CAIRN_CACHE_DIR", env.path("cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backup {extra:?} in a mount namespace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let tmpfs_file = mnt.join("on-tmpfs").display().to_string();
    let root_file = src.join("on-root-fs").display().to_string();
    let mnt_dir = mnt.display().to_string();

    run(&[]);
    let all = listed_paths(&env);
    assert!(all.contains(&tmpfs_file), "{all:?}");

    run(&["--one-file-system"]);
    let one = listed_paths(&env);
    assert!(one.contains(&root_file), "{one:?}");
    assert!(!one.contains(&tmpfs_file), "{one:?}");
    // The mount point itself is kept (as an empty directory), as restic does.
    assert!(one.contains(&mnt_dir), "{one:?}");
}
