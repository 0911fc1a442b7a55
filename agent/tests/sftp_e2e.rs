#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end through the real binary against a real SFTP server (a private
//! OpenSSH sshd started by scripts/test-servers/sftp.sh): init, a file
//! backup, an incremental, a disk-image backup with a changed block, and
//! restores of all of them byte for byte; a second init refused; a wrong
//! host key refused. Without the server the test skips, unless CI or
//! CAIRN_REQUIRE_SERVERS is set.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Env, fill, same_tree, sftp_server as server};

fn cairn(env: &Env, repo: &str, key: &str, known: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("CAIRN_REPO", repo)
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env("CAIRN_SFTP_KEY_FILE", key)
        .env("CAIRN_SFTP_KNOWN_HOSTS", known)
        .env("CAIRN_SFTP_NO_AGENT", "1")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE")
        .output()
        .unwrap()
}

fn ok(env: &Env, repo: &str, key: &str, known: &str, args: &[&str]) -> Output {
    let out = cairn(env, repo, key, known, args);
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn files_and_disks_round_trip_over_sftp() {
    let Some((base, key, known)) = server() else {
        return;
    };
    let env = Env::new();
    let unique = format!(
        "e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let repo = format!("{}/{unique}", base.trim_end_matches('/'));
    let c = |args: &[&str]| ok(&env, &repo, &key, &known, args);
    let init: serde_json::Value =
        serde_json::from_slice(&c(&["init", "--kdf-memory", "8", "--json"]).stdout).unwrap();
    // OpenSSH's plain RENAME is link + unlink: the probe's second write is
    // refused.
    assert_eq!(init["create_only_writes"].as_bool(), Some(true), "{init}");
    let again = cairn(
        &env,
        &repo,
        &key,
        &known,
        &["init", "--kdf-memory", "8", "-q"],
    );
    assert!(!again.status.success(), "a second init must be refused");

    // Files: a backup, a change, an incremental, both restored.
    let src = env.path("src");
    for d in 0..3u64 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..4u64 {
            let body = fill(d * 10 + f, 1000 + f as usize * 200_000);
            std::fs::write(src.join(format!("d{d}/f{f}")), body).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/f1", src.join("link")).unwrap();
    c(&["backup", "-q", "--tag", "first", src.to_str().unwrap()]);
    let first_copy = env.path("first-copy");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&first_copy)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(src.join("d1/f2"), fill(99, 300_000)).unwrap();
    c(&["backup", "-q", src.to_str().unwrap()]);
    let inside = |root: &Path| root.join(src.strip_prefix("/").unwrap());
    let out = env.path("restored-latest");
    c(&["restore", "-q", "latest", "--target", out.to_str().unwrap()]);
    same_tree(&src, &inside(&out));
    let out = env.path("restored-first");
    c(&[
        "restore",
        "-q",
        "latest",
        "--tag",
        "first",
        "--target",
        out.to_str().unwrap(),
    ]);
    same_tree(&first_copy, &inside(&out));

    // A disk image with holes; a block changed; both snapshots restored.
    let image = env.path("disk.img");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(24 << 20).unwrap();
    f.write_all_at(&fill(1, 10 << 20), 0).unwrap();
    f.write_all_at(&fill(2, 3 << 20), 16 << 20).unwrap();
    drop(f);
    let before = std::fs::read(&image).unwrap();
    c(&["backup", "-q", "--disk", image.to_str().unwrap()]);
    std::fs::File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .write_all_at(&fill(3, 4096), 5 << 20)
        .unwrap();
    c(&["backup", "-q", "--disk", image.to_str().unwrap()]);
    let restored = env.path("disk-restored.img");
    c(&[
        "restore",
        "-q",
        "latest",
        "--disk-to",
        restored.to_str().unwrap(),
        "--verify",
    ]);
    assert!(std::fs::read(&restored).unwrap() == std::fs::read(&image).unwrap());
    let list: serde_json::Value =
        serde_json::from_slice(&c(&["snapshots", "--json"]).stdout).unwrap();
    let first_disk = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "disk")
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_string();
    std::fs::remove_file(&restored).unwrap();
    c(&[
        "restore",
        "-q",
        &first_disk,
        "--disk-to",
        restored.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&restored).unwrap() == before);

    // A known_hosts file that does not list the server: refused, clearly.
    let empty_known = env.path("known_hosts_empty");
    std::fs::write(&empty_known, "").unwrap();
    let refused = cairn(
        &env,
        &repo,
        &key,
        empty_known.to_str().unwrap(),
        &["snapshots"],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("ssh-keyscan") || err.contains("host key"),
        "{err}"
    );
}
