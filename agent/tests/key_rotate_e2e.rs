#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: `cairn key rotate [--rewrite]`.
//!
//! - rotate: backups after it write packs under the new epoch (read from
//!   the object headers on the target), everything before and after
//!   restores byte for byte, check is clean;
//! - a key file the rotating password cannot open: refused with nothing
//!   changed, then removed with `--remove-other-keys`;
//! - `--rewrite`: no object, the config included, is left under an old
//!   epoch and the key set holds the current epoch alone, check
//!   --read-data is clean, every snapshot restores, parent links follow
//!   the printed old-to-new mapping; locally and over SFTP;
//! - after `--rewrite`, the old config put back (a replay) and configs
//!   forged with the retired key set are refused, naming why;
//! - `--rewrite` killed after each of its steps: check is clean, every
//!   snapshot restores, and `--rewrite --resume` finishes the job.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::data::{disk_image, small_tree};
use common::same_tree;
use common::target::Target;

/// What was backed up, to compare restores with.
struct Fixture {
    src: PathBuf,
    disk: PathBuf,
}

impl Fixture {
    fn new(t: &Target) -> Fixture {
        t.ok(&["init", "--kdf-memory", "8", "--pack-size", "1", "-q"]);
        Fixture {
            src: t.env.path("src"),
            disk: t.env.path("disk.img"),
        }
    }

    /// Backs up tree version `v` (tag `f<v>`) and disk day `v` (tag `d<v>`).
    fn backup(&self, t: &Target, v: u64) {
        small_tree(&self.src, v);
        std::fs::write(&self.disk, disk_image(v)).unwrap();
        let (files, disk) = (format!("f{v}"), format!("d{v}"));
        t.ok(&["backup", "-q", "--tag", &files, self.src.to_str().unwrap()]);
        t.ok(&[
            "backup",
            "--disk",
            "-q",
            "--tag",
            &disk,
            self.disk.to_str().unwrap(),
        ]);
    }

    /// Restores every snapshot and compares it with what was backed up.
    fn restore_all(&self, t: &Target) {
        let snapshots = t.snapshots_by_tag();
        assert!(!snapshots.is_empty());
        for (tag, id) in snapshots {
            let v: u64 = tag[1..].parse().unwrap();
            let out = t.env.path("restored");
            if out.exists() {
                std::fs::remove_dir_all(&out).unwrap();
            }
            if tag.starts_with('f') {
                t.ok(&["restore", &id, "--target", out.to_str().unwrap(), "-q"]);
                let expected = t.env.path("expected");
                if expected.exists() {
                    std::fs::remove_dir_all(&expected).unwrap();
                }
                small_tree(&expected, v);
                same_tree(&expected, &out.join(self.src.strip_prefix("/").unwrap()));
            } else {
                std::fs::create_dir_all(&out).unwrap();
                let file = out.join("disk.img");
                t.ok(&["restore", &id, "--disk-to", file.to_str().unwrap(), "-q"]);
                assert!(
                    std::fs::read(&file).unwrap() == disk_image(v),
                    "{tag} differs"
                );
            }
        }
    }
}

/// The epoch in each object's header on a local target, by path relative
/// to the repository (key files, which have no such header, left out).
fn epochs_on_target(repo: &Path) -> BTreeMap<String, u32> {
    fn visit(dir: &Path, root: &Path, out: &mut BTreeMap<String, u32>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if path.is_dir() {
                if rel != "keys" {
                    visit(&path, root, out);
                }
            } else if !rel.contains(".tmp-") {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, u32::from_le_bytes(bytes[8..12].try_into().unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(repo, repo, &mut out);
    out
}

fn key_files(repo: &Path) -> BTreeSet<String> {
    std::fs::read_dir(repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect()
}

/// Fails unless every object, the config included, is under `epoch`.
fn all_under(repo: &Path, epoch: u32) {
    let epochs = epochs_on_target(repo);
    assert!(epochs.contains_key("config"));
    for (path, e) in epochs {
        assert_eq!(e, epoch, "{path} is under epoch {e}");
    }
}

/// Parent links point at snapshots that exist.
fn parents_exist(t: &Target) -> serde_json::Value {
    let list = t.json(&["snapshots", "--json"]);
    let ids: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for s in list.as_array().unwrap() {
        if let Some(p) = s["parent"].as_str() {
            assert!(ids.contains(p), "{} has a missing parent {p}", s["id"]);
        }
    }
    list
}

#[test]
fn rotation_writes_new_backups_under_the_new_key_and_old_data_stays_readable() {
    let t = Target::local();
    let repo = t.env.path("repo");
    let fx = Fixture::new(&t);
    fx.backup(&t, 1);
    let before = epochs_on_target(&repo);
    assert!(before.values().all(|e| *e == 0));

    let rotated = t.json(&["key", "rotate", "--json"]);
    assert_eq!(rotated["rotated"]["current_epoch"], 1, "{rotated}");
    assert_eq!(rotated["rotated"]["epochs"], serde_json::json!([0, 1]));
    assert!(rotated["rewrite"].is_null());
    let listing = String::from_utf8(t.ok(&["key", "list"]).stdout).unwrap();
    assert!(
        listing.contains("2 data-key epoch(s), new data under epoch 1"),
        "{listing}"
    );

    fx.backup(&t, 2);
    let after = epochs_on_target(&repo);
    let new_packs: Vec<_> = after
        .iter()
        .filter(|(p, _)| p.starts_with("data/") && !before.contains_key(*p))
        .collect();
    assert!(!new_packs.is_empty());
    for (path, epoch) in &new_packs {
        assert_eq!(**epoch, 1, "{path}");
    }
    for (path, epoch) in &before {
        if path.starts_with("data/") {
            assert_eq!(after[path], *epoch, "{path} changed");
        }
    }
    for path in after.keys().filter(|p| p.starts_with("snapshots/")) {
        if !before.contains_key(path) {
            assert_eq!(after[path], 1, "{path}");
        }
    }
    t.check_clean();
    fx.restore_all(&t);
}

#[test]
fn a_key_the_password_cannot_open_is_refused_then_removed_on_request() {
    let t = Target::local();
    let repo = t.env.path("repo");
    let fx = Fixture::new(&t);
    fx.backup(&t, 1);
    let other_pw = t.env.path("other-pw");
    std::fs::write(&other_pw, "someone else's password\n").unwrap();
    let added = t
        .command(&["key", "add", "--kdf-memory", "8", "--json"])
        .env("CAIRN_NEW_PASSWORD_FILE", &other_pw)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let other: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let other = other["key"].as_str().unwrap().to_string();
    let keys_before = key_files(&repo);
    let objects_before = epochs_on_target(&repo);

    let refused = t.command(&["key", "rotate"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&other[..12]), "{stderr}");
    assert!(stderr.contains("--remove-other-keys"), "{stderr}");
    assert!(stderr.contains("Nothing was changed"), "{stderr}");
    assert_eq!(key_files(&repo), keys_before);
    assert_eq!(epochs_on_target(&repo), objects_before);

    let rotated = t.json(&["key", "rotate", "--remove-other-keys", "--json"]);
    assert_eq!(rotated["rotated"]["removed"], serde_json::json!([other]));
    assert_eq!(key_files(&repo).len(), 1);
    let shut_out = t
        .command(&["snapshots"])
        .env("CAIRN_PASSWORD_FILE", &other_pw)
        .output()
        .unwrap();
    assert_eq!(shut_out.status.code(), Some(11));
    t.check_clean();
    fx.restore_all(&t);
}

/// Two rounds of backups with a rotation between them, then
/// `--rewrite`; returns the rewrite's report.
fn rewrite_everything(t: &Target, fx: &Fixture) -> serde_json::Value {
    fx.backup(t, 1);
    t.ok(&["key", "rotate", "-q"]);
    fx.backup(t, 2);
    let before = parents_exist(t);
    let report = t.json(&["key", "rotate", "--rewrite", "--json"]);
    let rewrite = &report["rewrite"];
    assert_eq!(rewrite["epoch"], 2, "{report}");
    // The config was sealed again under the new epoch, so every old one
    // went, the config's (0, from init) included.
    assert_eq!(
        rewrite["epochs_dropped"],
        serde_json::json!([0, 1]),
        "{report}"
    );
    assert_eq!(
        rewrite["keys"]["epochs"],
        serde_json::json!([2]),
        "{report}"
    );
    assert_eq!(
        rewrite["config"],
        serde_json::json!({"from_epoch": 0, "epoch": 2, "replaced": true}),
        "{report}"
    );
    assert!(rewrite["config_not_replaced"].is_null(), "{report}");
    let listing = String::from_utf8(t.ok(&["key", "list"]).stdout).unwrap();
    assert!(
        listing.contains("1 data-key epoch(s), new data under epoch 2"),
        "{listing}"
    );
    // Every snapshot was rewritten; parents follow the mapping.
    let map: BTreeMap<&str, &str> = rewrite["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["old"].as_str().unwrap(), m["new"].as_str().unwrap()))
        .collect();
    assert_eq!(map.len(), 4, "{report}");
    let after = parents_exist(t);
    let after_by_id: BTreeMap<&str, &serde_json::Value> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s))
        .collect();
    let mut linked = 0;
    for s in before.as_array().unwrap() {
        let new = after_by_id[map[s["id"].as_str().unwrap()]];
        assert_eq!(new["tags"], s["tags"]);
        if let Some(p) = s["parent"].as_str() {
            assert_eq!(new["parent"].as_str(), Some(map[p]));
            linked += 1;
        }
    }
    assert!(linked >= 2, "the second backups have parents: {before}");
    let check = t.json(&["check", "--read-data", "--json", "-q"]);
    assert_eq!(check["problems_total"], 0, "{check}");
    fx.restore_all(t);
    report
}

#[test]
fn rewrite_leaves_nothing_under_an_old_epoch_and_remaps_parents() {
    let t = Target::local();
    let fx = Fixture::new(&t);
    rewrite_everything(&t, &fx);
    all_under(&t.env.path("repo"), 2);
    // New backups after the rewrite still work and deduplicate.
    fx.backup(&t, 3);
    all_under(&t.env.path("repo"), 2);
    t.check_clean();
    fx.restore_all(&t);
}

#[test]
fn rewrite_over_sftp() {
    if let Some(t) = Target::sftp("rotate") {
        let fx = Fixture::new(&t);
        rewrite_everything(&t, &fx);
        fx.backup(&t, 3);
        t.check_clean();
        fx.restore_all(&t);
    }
}

/// The key set the key file `bytes` wraps, opened with `t`'s password
/// (the first line of its password file).
fn unwrap_key_file(t: &Target, bytes: &[u8]) -> cairn_store::MasterKeys {
    let text = std::fs::read_to_string(t.env.path("pw")).unwrap();
    let password = text.lines().next().unwrap().as_bytes();
    let file = cairn_store::keyfile::KeyFile::parse(bytes, "key file").unwrap();
    file.unlock(&cairn_store::Credential::Password(password), "key file")
        .unwrap()
        .expect("the test password opens the key file")
}

/// The key set of the one key file on the local target `t`.
fn key_set(t: &Target) -> cairn_store::MasterKeys {
    let repo = t.env.path("repo");
    let mut names = key_files(&repo);
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names.pop_first().unwrap();
    unwrap_key_file(t, &std::fs::read(repo.join("keys").join(name)).unwrap())
}

/// Runs `cairn snapshots` and returns its exit code and standard error.
fn refused(t: &Target) -> (Option<i32>, String) {
    let out = t.command(&["snapshots"]).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn after_a_rewrite_the_old_config_and_configs_forged_with_the_retired_keys_are_refused() {
    let t = Target::local();
    let repo = t.env.path("repo");
    let fx = Fixture::new(&t);
    // What someone holding the retired keys kept: the config as it was,
    // and a key file with its password (the key set it wraps).
    let old_config = std::fs::read(repo.join("config")).unwrap();
    let retired = key_set(&t);
    rewrite_everything(&t, &fx);
    let new_config = std::fs::read(repo.join("config")).unwrap();
    assert_ne!(new_config, old_config);

    // The replay.
    std::fs::write(repo.join("config"), &old_config).unwrap();
    let (code, stderr) = refused(&t);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("key epoch 0") && stderr.contains("retired"),
        "{stderr}"
    );
    assert!(stderr.contains("put back from an older copy"), "{stderr}");

    // Forgeries: the real settings but worse compression, sealed with the
    // retired keys; its header says epoch 0 (retired), or claims the
    // current epoch 2 (whose key the forger lacks).
    let mut forged = cairn_store::Config::open(&new_config, &key_set(&t)).unwrap();
    assert_ne!(forged.compression_level, -7);
    forged.compression_level = -7;
    for (epoch, why) in [(0u32, "retired"), (2, "authentication failed")] {
        let mut bytes = forged.seal(&retired, &cairn_store::OsRandom).unwrap();
        bytes[8..12].copy_from_slice(&epoch.to_le_bytes());
        std::fs::write(repo.join("config"), &bytes).unwrap();
        let (code, stderr) = refused(&t);
        assert_eq!(code, Some(1), "epoch {epoch}: {stderr}");
        assert!(stderr.contains(why), "epoch {epoch}: {stderr}");
    }

    // The config the rewrite wrote opens again.
    std::fs::write(repo.join("config"), &new_config).unwrap();
    t.check_clean();
    fx.restore_all(&t);
}

#[test]
fn a_rewrite_killed_after_any_step_stays_restorable_and_resumes() {
    let base = Target::local();
    let fx = Fixture::new(&base);
    fx.backup(&base, 1);
    base.ok(&["key", "rotate", "-q"]);
    fx.backup(&base, 2);
    for step in [
        "rotate-keys",
        "rewrite-pack-one",
        "rewrite-packs",
        "rewrite-index",
        "rewrite-snapshots",
        "rewrite-snapshot-delete-one",
        "rewrite-snapshot-delete",
        "rewrite-pack-delete-one",
        "rewrite-pack-delete",
        "rewrite-config",
    ] {
        // A copy of the repository per step (same source paths).
        let t = Target::local();
        let copy = Command::new("cp")
            .arg("-a")
            .arg(base.env.path("repo"))
            .arg(t.env.path("repo"))
            .status()
            .unwrap();
        assert!(copy.success());
        let out = t
            .command(&["key", "rotate", "--rewrite", "-q"])
            .env("CAIRN_TEST_CRASH_AFTER", step)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "rotate --rewrite should have aborted after {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.check_clean();
        parents_exist(&t);
        fx.restore_all(&t);

        if step == "rewrite-config" {
            // The config is replaced, the key files not yet rewritten.
            assert_eq!(epochs_on_target(&t.env.path("repo"))["config"], 2);
        }
        let rerun = t.json(&["key", "rotate", "--rewrite", "--resume", "--json"]);
        assert!(rerun["rotated"].is_null(), "{rerun}");
        assert_eq!(rerun["rewrite"]["epoch"], 2, "after {step}: {rerun}");
        assert_eq!(
            rerun["rewrite"]["keys"]["epochs"],
            serde_json::json!([2]),
            "after {step}: {rerun}"
        );
        all_under(&t.env.path("repo"), 2);
        let check = t.json(&["check", "--read-data", "--json", "-q"]);
        assert_eq!(check["problems_total"], 0, "after {step}: {check}");
        let list = parents_exist(&t);
        assert_eq!(list.as_array().unwrap().len(), 4, "after {step}: {list}");
        fx.restore_all(&t);
    }
}
