#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: backups of a changing file tree and
//! a small disk image; `forget` with rules and a dry run; `check` clean,
//! with read-data subsets covering every pack, then finding a flipped byte
//! in a pack and naming exactly the snapshots it affects (exit 4); `key`
//! add/list/remove/passwd and their refusals; `unlock` of stale and live
//! locks; and the same commands (with `repair`) over SFTP.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::target::Target;
use common::{Env, fill};

fn files_in(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.insert(p);
        }
    }
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `cairn` with extra environment variables.
fn cairn_with(env: &Env, vars: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args)
        .env("CAIRN_REPO", env.path("repo"))
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE")
        .env_remove("CAIRN_NEW_PASSWORD_FILE")
        .env_remove("CAIRN_NEW_PASSWORD_COMMAND");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn snapshot_ids(env: &Env) -> BTreeSet<String> {
    env.json(&["snapshots", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// The id of the newest snapshot.
fn latest(env: &Env) -> String {
    let all = env.json(&["snapshots", "--json"]);
    all.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn forget_check_and_damage_naming_the_affected_snapshots() {
    let env = Env::new();
    env.ok(&[
        "init",
        "-q",
        "--kdf-memory",
        "1",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
    ]);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/fixed"), fill(1, 200_000)).unwrap();
    let src_s = src.to_str().unwrap();
    let mut file_snaps = Vec::new();
    for round in 0..4u64 {
        std::fs::write(src.join("changing"), fill(100 + round, 300_000)).unwrap();
        if round == 1 {
            env.ok(&["backup", "-q", "--tag", "keep", src_s]);
        } else {
            env.ok(&["backup", "-q", src_s]);
        }
        file_snaps.push(latest(&env));
    }
    // A disk image; the packs its first backup writes hold only its data.
    let image = env.path("disk.img");
    std::fs::write(&image, fill(7, 4 << 20)).unwrap();
    let before = files_in(&env.path("repo/data"));
    env.ok(&["backup", "-q", "--disk", image.to_str().unwrap()]);
    let disk1 = latest(&env);
    let disk_packs: Vec<PathBuf> = files_in(&env.path("repo/data"))
        .difference(&before)
        .cloned()
        .collect();
    let mut changed = std::fs::read(&image).unwrap();
    for b in &mut changed[1 << 20..(1 << 20) + 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&image, &changed).unwrap();
    env.ok(&["backup", "-q", "--disk", image.to_str().unwrap()]);
    let disk2 = latest(&env);
    assert_eq!(snapshot_ids(&env).len(), 6);

    // Clean, and n/m subsets read every pack exactly once over a cycle.
    let report = env.json(&["check", "--json"]);
    assert_eq!(report["problems_total"], 0, "{report}");
    assert_eq!(report["snapshots"], 6);
    let packs = report["packs"].as_u64().unwrap();
    assert!(packs >= 4, "{report}");
    let read: u64 = (1..=3)
        .map(|n| {
            let r = env.json(&["check", "--json", &format!("--read-data-subset={n}/3")]);
            assert_eq!(r["problems_total"], 0, "{r}");
            r["packs_read"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(read, packs);
    let bad = env.cairn(&["check", "--read-data-subset=4/3"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));

    // Forget: no rule is refused; a dry run changes nothing and gives reasons.
    let refused = env.cairn(&["forget"]);
    assert_eq!(code(&refused), 2);
    assert!(
        stderr(&refused).contains("no keep rule"),
        "{}",
        stderr(&refused)
    );
    let dry = env.json(&[
        "forget",
        "--keep-last",
        "1",
        "--keep-tag",
        "keep",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(snapshot_ids(&env).len(), 6);
    let groups = dry["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{dry}");
    let files_group = groups
        .iter()
        .find(|g| g["key"]["paths"][0].as_str().unwrap().ends_with("src"))
        .unwrap();
    let verdicts: Vec<(String, bool, Vec<String>)> = files_group["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["keep"].as_bool().unwrap(),
                d["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    // Newest first: round 3 (last), 2 (removed), 1 (tag keep), 0 (removed).
    let ids: Vec<&String> = verdicts.iter().map(|v| &v.0).collect();
    let want: Vec<&String> = file_snaps.iter().rev().collect();
    assert_eq!(ids, want);
    assert_eq!(
        (verdicts[0].1, verdicts[0].2.clone()),
        (true, vec!["last".to_string()])
    );
    assert!(!verdicts[1].1 && verdicts[1].2.is_empty());
    assert_eq!(
        (verdicts[2].1, verdicts[2].2.clone()),
        (true, vec!["tag keep".to_string()])
    );
    assert!(!verdicts[3].1);
    assert_eq!(dry["remove"].as_array().unwrap().len(), 3, "{dry}");
    assert!(dry["removed"].as_array().unwrap().is_empty());

    let done = env.json(&["forget", "--keep-last", "1", "--keep-tag", "keep", "--json"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 3);
    let left = snapshot_ids(&env);
    let want: BTreeSet<String> = [&file_snaps[3], &file_snaps[1], &disk2]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(left, want);
    // The disk group keeps only its newest.
    assert!(!left.contains(&disk1));
    // Forget by id (a unique prefix): a dry run, then for real; rules and
    // ids together are refused.
    let by_id = env.json(&["forget", "--dry-run", "--json", &file_snaps[1][..10]]);
    assert_eq!(by_id["remove"][0], file_snaps[1].as_str());
    assert_eq!(snapshot_ids(&env).len(), 3);
    let both = env.cairn(&["forget", "--keep-last", "1", &file_snaps[1][..10]]);
    assert_eq!(code(&both), 2);
    env.ok(&["forget", "-q", &file_snaps[1][..10]]);
    assert!(!snapshot_ids(&env).contains(&file_snaps[1]));
    let report = env.json(&["check", "--json", "--read-data"]);
    assert_eq!(report["problems_total"], 0, "{report}");

    // Damage: flip one byte inside the blob area of the first disk
    // backup's largest pack.
    let target = disk_packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(target).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(target, &bytes).unwrap();
    // The structure check does not read blob data: still clean.
    let structural = env.cairn(&["check", "-q"]);
    assert_eq!(code(&structural), 0, "{}", stderr(&structural));
    let damaged = env.cairn(&["check", "--read-data", "--json"]);
    assert_eq!(code(&damaged), 4, "{}", stderr(&damaged));
    let report: serde_json::Value = serde_json::from_slice(&damaged.stdout).unwrap();
    let pack_name = target.file_name().unwrap().to_str().unwrap();
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["object"].as_str().unwrap().contains(pack_name)),
        "{report}"
    );
    let affected: Vec<&str> = report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    // Only the disk snapshot that is left reaches that pack.
    assert_eq!(affected, vec![disk2.as_str()], "{report}");
    assert!(stderr(&damaged).contains("damaged"), "{}", stderr(&damaged));
    // Text output names it too.
    let text = env.cairn(&["check", "--read-data"]);
    assert_eq!(code(&text), 4);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&disk2[..8]),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );

    // Removing a pack file is found without --read-data.
    std::fs::remove_file(target).unwrap();
    let missing = env.cairn(&["check", "--json"]);
    assert_eq!(code(&missing), 4, "{}", stderr(&missing));
    let report: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(report["affected"][0]["id"], disk2.as_str(), "{report}");
    assert_eq!(report["affected"].as_array().unwrap().len(), 1);
}

#[test]
fn keys_are_added_listed_replaced_and_removed_but_never_the_last() {
    let env = Env::new();
    env.ok(&["init", "-q", "--kdf-memory", "1", "--kdf-iterations", "1"]);
    let kdf = ["--kdf-memory", "1", "--kdf-iterations", "1"];
    let pw2 = env.path("pw2");
    std::fs::write(&pw2, "second password\n").unwrap();
    let pw3 = env.path("pw3");
    std::fs::write(&pw3, "third password\n").unwrap();

    // No new password source and no terminal: a clear error.
    let none = cairn_with(&env, &[], &["key", "add", kdf[0], kdf[1], kdf[2], kdf[3]]);
    assert_eq!(code(&none), 1);
    assert!(
        stderr(&none).contains("CAIRN_NEW_PASSWORD_FILE"),
        "{}",
        stderr(&none)
    );

    let add = cairn_with(
        &env,
        &[("CAIRN_NEW_PASSWORD_FILE", &pw2)],
        &["key", "add", "--json", kdf[0], kdf[1], kdf[2], kdf[3]],
    );
    assert!(add.status.success(), "{}", stderr(&add));
    let second: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    let second = second["key"].as_str().unwrap().to_string();
    let keys = env.json(&["key", "list", "--json"]);
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let first = keys.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);

    // The key in use is refused, with what to do.
    let refused = env.cairn(&["key", "remove", &first[..12]]);
    assert_eq!(code(&refused), 1);
    assert!(
        stderr(&refused).contains("opened the repository with"),
        "{}",
        stderr(&refused)
    );

    // With the second password, the first key can go.
    let removed = cairn_with(
        &env,
        &[("CAIRN_PASSWORD_FILE", &pw2)],
        &["key", "remove", &first],
    );
    assert!(removed.status.success(), "{}", stderr(&removed));
    let old = env.cairn(&["snapshots"]);
    assert_eq!(code(&old), 11, "{}", stderr(&old));
    // The last key is refused (it is also the one in use).
    let last = cairn_with(
        &env,
        &[("CAIRN_PASSWORD_FILE", &pw2)],
        &["key", "remove", &second],
    );
    assert_eq!(code(&last), 1);

    // passwd replaces the key in use.
    let passwd = cairn_with(
        &env,
        &[
            ("CAIRN_PASSWORD_FILE", &pw2),
            ("CAIRN_NEW_PASSWORD_FILE", &pw3),
        ],
        &["key", "passwd", kdf[0], kdf[1], kdf[2], kdf[3]],
    );
    assert!(passwd.status.success(), "{}", stderr(&passwd));
    let with2 = cairn_with(&env, &[("CAIRN_PASSWORD_FILE", &pw2)], &["snapshots"]);
    assert_eq!(code(&with2), 11);
    let list = cairn_with(
        &env,
        &[("CAIRN_PASSWORD_FILE", &pw3)],
        &["key", "list", "--json"],
    );
    assert!(list.status.success(), "{}", stderr(&list));
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["current"], true);
}

/// Waits (bounded) until the repository holds `n` lock objects. A lock is
/// written to a `.tmp-` name first and linked under its own name after, so
/// temp names are not locks yet (counting them let `unlock` run before the
/// lock existed).
fn wait_for_locks(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let locks = || {
        files_in(&env.path("repo/locks"))
            .into_iter()
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .count()
    };
    while locks() != n {
        assert!(Instant::now() < deadline, "no lock appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unlock_removes_stale_locks_and_force_removes_live_ones() {
    let env = Env::new();
    env.ok(&["init", "-q", "--kdf-memory", "1", "--kdf-iterations", "1"]);
    // A backup reading a FIFO nobody writes to holds its lock and waits.
    let fifo = env.path("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["backup", "-q", "--disk", fifo.to_str().unwrap()])
            .env("CAIRN_REPO", env.path("repo"))
            .env("CAIRN_PASSWORD_FILE", env.path("pw"))
            .env("CAIRN_CACHE_DIR", env.path("cache"))
            .spawn()
            .unwrap()
    };
    let mut holder = spawn();
    wait_for_locks(&env, 1);
    // A live lock is not stale: kept, and an exclusive operation is refused.
    let kept = env.json(&["unlock", "--json"]);
    assert_eq!(
        (kept["removed"].as_u64(), kept["remaining"].as_u64()),
        (Some(0), Some(1))
    );
    let locked = env.cairn(&["key", "remove", "0000"]);
    assert_eq!(code(&locked), 12, "{}", stderr(&locked));
    // Killed, its lock is stale (its process is gone from this host).
    holder.kill().unwrap();
    holder.wait().unwrap();
    let removed = env.json(&["unlock", "--json"]);
    assert_eq!(
        (removed["removed"].as_u64(), removed["remaining"].as_u64()),
        (Some(1), Some(0))
    );

    let mut holder = spawn();
    wait_for_locks(&env, 1);
    let forced = env.json(&["unlock", "--force", "--json"]);
    assert_eq!(
        (forced["removed"].as_u64(), forced["remaining"].as_u64()),
        (Some(1), Some(0))
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_damaged_manifest_is_named_by_check_left_by_policies_and_removable_by_id() {
    let env = Env::new();
    env.ok(&["init", "-q", "--kdf-memory", "1", "--kdf-iterations", "1"]);
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), fill(3, 50_000)).unwrap();
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let damaged = latest(&env);
    std::fs::write(src.join("b"), fill(4, 50_000)).unwrap();
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let good = latest(&env);
    let manifest = env.path("repo/snapshots").join(&damaged);
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&manifest, &bytes).unwrap();

    let checked = env.cairn(&["check", "--json"]);
    assert_eq!(code(&checked), 4, "{}", stderr(&checked));
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["affected"][0]["id"], damaged.as_str(), "{report}");
    assert_eq!(report["affected"][0]["unreadable"], true);
    assert_eq!(report["affected"].as_array().unwrap().len(), 1);

    // A policy never judges (or removes) what it cannot read: a warning.
    let policy = env.cairn(&["forget", "--keep-last", "1"]);
    assert_eq!(code(&policy), 3, "{}", stderr(&policy));
    assert!(stderr(&policy).contains(&damaged), "{}", stderr(&policy));
    assert!(manifest.exists());
    // By id it goes, and the repository lists again.
    env.ok(&["forget", "-q", &damaged[..12]]);
    assert!(!manifest.exists());
    let left: Vec<String> = snapshot_ids(&env).into_iter().collect();
    assert_eq!(left, vec![good]);
    let report = env.json(&["check", "--json"]);
    assert_eq!(report["problems_total"], 0, "{report}");
}

/// The maintenance commands not covered over a remote target elsewhere
/// (prune_e2e, copy_repair_e2e and key_rotate_e2e run theirs over SFTP):
/// forget, check with a read subset, key add/list/passwd/remove, unlock,
/// repair index and repair snapshots, then a restore.
#[test]
fn maintenance_commands_work_over_sftp() {
    let Some(t) = Target::sftp("maintenance") else {
        return;
    };
    let kdf = ["--kdf-memory", "1", "--kdf-iterations", "1"];
    t.ok(&["init", "-q", kdf[0], kdf[1], kdf[2], kdf[3]]);
    let src = t.env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for v in 0..3u64 {
        std::fs::write(src.join("data.bin"), fill(40 + v, 200_000)).unwrap();
        std::fs::write(src.join("note.txt"), format!("version {v}\n")).unwrap();
        t.ok(&["backup", "-q", src.to_str().unwrap()]);
    }
    t.ok(&["forget", "-q", "--keep-last", "2"]);
    assert_eq!(
        t.json(&["snapshots", "--json"]).as_array().unwrap().len(),
        2
    );
    t.ok(&["check", "--read-data-subset", "50%"]);

    // Keys: add a second, change the first's password, remove the second.
    let pw2 = t.env.path("pw2");
    std::fs::write(&pw2, "second password over sftp\n").unwrap();
    let added = t
        .command(&["key", "add", "--json", kdf[0], kdf[1], kdf[2], kdf[3]])
        .env("CAIRN_NEW_PASSWORD_FILE", &pw2)
        .output()
        .unwrap();
    let added = common::succeeded(&["key", "add"], added);
    let second: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let second = second["key"].as_str().unwrap().to_string();
    assert_eq!(
        t.json(&["key", "list", "--json"]).as_array().unwrap().len(),
        2
    );
    let pw3 = t.env.path("pw3");
    std::fs::write(&pw3, "third password over sftp\n").unwrap();
    let passwd = t
        .command(&["key", "passwd", kdf[0], kdf[1], kdf[2], kdf[3]])
        .env("CAIRN_NEW_PASSWORD_FILE", &pw3)
        .output()
        .unwrap();
    common::succeeded(&["key", "passwd"], passwd);
    std::fs::copy(&pw3, t.env.path("pw")).unwrap();
    t.ok(&["key", "remove", &second]);
    assert_eq!(
        t.json(&["key", "list", "--json"]).as_array().unwrap().len(),
        1
    );

    // No stale lock to remove; repairs find nothing to do on a sound
    // repository and leave it checking clean.
    t.ok(&["unlock"]);
    t.ok(&["repair", "index"]);
    t.ok(&["repair", "snapshots"]);
    t.check_clean();
    let out = t.env.path("restored");
    t.ok(&["restore", "latest", "--target", out.to_str().unwrap(), "-q"]);
    common::same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));
}
