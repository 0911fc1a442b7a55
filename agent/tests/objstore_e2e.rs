#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end through the real binary against real object stores (moto's S3
//! server and Azurite, started by scripts/test-servers/*.sh): init, a file
//! backup and restore, a disk-image backup and restore, byte for byte; and
//! the errors a user meets: a second init, a missing bucket or container, an
//! unreachable endpoint, an SFTP URL in this build. Without the servers the
//! tests skip, unless CI or CAIRN_REQUIRE_SERVERS is set.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use cairn_objstore::testing::{self, TestTarget, unique_prefix};
use common::{Env, fill, same_tree};

/// The `cairn` command against `repo` with `env`'s password and cache and the
/// target's endpoint and credentials in the environment (and nothing from
/// the caller's own cloud settings).
fn command(env: &Env, target: &TestTarget, repo: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.env("CAIRN_REPO", repo)
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE");
    for var in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "CAIRN_S3_ENDPOINT",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(target.env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs `cairn args` (see [`command`]) with `extra` variables.
fn cairn(
    env: &Env,
    target: &TestTarget,
    repo: &str,
    extra: &[(&str, &str)],
    args: &[&str],
) -> Output {
    command(env, target, repo)
        .args(args)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

fn ok(env: &Env, target: &TestTarget, repo: &str, args: &[&str]) -> Output {
    let out = cairn(env, target, repo, &[], args);
    assert!(
        out.status.success(),
        "cairn {args:?} on {repo} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(env: &Env, target: &TestTarget, repo: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ok(env, target, repo, args).stdout).unwrap()
}

fn make_tree(root: &Path) {
    for d in 0..3u64 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..5u64 {
            std::fs::write(
                dir.join(format!("f{f}")),
                fill(d * 10 + f, 700 + (f as usize) * 150_000),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("d0/f1", root.join("link")).unwrap();
}

/// A 40 MiB disk image: random regions (more than two 16 MiB packs, so
/// packs go up in parts), a repeated region and holes.
fn make_image(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(40 << 20).unwrap();
    f.write_all_at(&fill(1, 20 << 20), 0).unwrap();
    f.write_all_at(&fill(2, 6 << 20), 24 << 20).unwrap();
    f.write_all_at(&fill(1, 4 << 20), 34 << 20).unwrap();
}

fn backup_and_restore(target: &TestTarget) {
    let env = Env::new();
    let repo = target.url(&unique_prefix("e2e"));
    let init = json(
        &env,
        target,
        &repo,
        &["init", "--kdf-memory", "8", "--json"],
    );
    assert_eq!(init["repository"].as_str(), Some(repo.as_str()));
    // Both test servers honour If-None-Match, and init checked it.
    assert_eq!(init["create_only_writes"].as_bool(), Some(true), "{init}");

    // init refuses a location that holds a repository.
    let again = cairn(
        &env,
        target,
        &repo,
        &[],
        &["init", "--kdf-memory", "8", "-q"],
    );
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a repository"), "{err}");

    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    make_tree(&src);
    let files = json(
        &env,
        target,
        &repo,
        &["backup", "--json", src.to_str().unwrap()],
    );
    assert_eq!(files["stats"]["files"].as_u64(), Some(16), "{files}");
    let restored = env.path("restored");
    ok(
        &env,
        target,
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            restored.to_str().unwrap(),
            "--verify",
            "-q",
        ],
    );
    same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));

    let image = env.path("disk.img");
    make_image(&image);
    let disk = json(
        &env,
        target,
        &repo,
        &["backup", "--disk", "--json", image.to_str().unwrap()],
    );
    let disk_id = disk["snapshot"].as_str().unwrap().to_string();
    let out = env.path("restored.img");
    ok(
        &env,
        target,
        &repo,
        &[
            "restore",
            &disk_id,
            "--disk-to",
            out.to_str().unwrap(),
            "--verify",
            "-q",
        ],
    );
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&image).unwrap(),
        "the disk image restored differently from {repo}"
    );

    let snaps = json(&env, target, &repo, &["snapshots", "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");

    // A fresh machine (no cache) restores from the target alone.
    let bare = Env::new();
    let out2 = bare.path("again.img");
    ok(
        &bare,
        target,
        &repo,
        &[
            "restore",
            &disk_id,
            "--disk-to",
            out2.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(std::fs::read(&out2).unwrap() == std::fs::read(&image).unwrap());

    // A wrong password is exit code 11, as on a local repository.
    std::fs::write(bare.path("pw"), "not the password\n").unwrap();
    let wrong = cairn(&bare, target, &repo, &[], &["snapshots"]);
    assert_eq!(
        wrong.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}

#[test]
fn s3_init_backup_restore_files_and_disk() {
    if let Some(t) = testing::s3() {
        backup_and_restore(&t);
    }
}

#[test]
fn azure_init_backup_restore_files_and_disk() {
    if let Some(t) = testing::azure() {
        backup_and_restore(&t);
    }
}

/// Checks an error run: the exit code, words in the message, no panic.
fn expect_failure(out: &Output, code: i32, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

fn missing_container_and_unreachable(target: &TestTarget, endpoint_var: &str, dead: String) {
    let env = Env::new();
    // A bucket/container that does not exist: "no repository" (10), for
    // init and for a command on an existing repository alike.
    let missing = match target.url("x").split_once("://") {
        Some((scheme, _)) => format!("{scheme}://cairn-no-such-container/p"),
        None => unreachable!(),
    };
    for args in [&["init", "--kdf-memory", "8"][..], &["snapshots"][..]] {
        let out = cairn(&env, target, &missing, &[], args);
        expect_failure(&out, 10, &["does not exist", "create it"]);
    }
    // An endpoint where nothing listens: a failure (1) naming the problem,
    // within a few seconds thanks to the bounded retries.
    let started = std::time::Instant::now();
    let out = cairn(
        &env,
        target,
        &target.url("p"),
        &[
            (endpoint_var, &dead),
            ("CAIRN_RETRIES", "1"),
            ("CAIRN_TARGET_TIMEOUT", "5"),
        ],
        &["snapshots"],
    );
    expect_failure(&out, 1, &["Connection refused"]);
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn s3_missing_bucket_and_unreachable_endpoint() {
    if let Some(t) = testing::s3() {
        missing_container_and_unreachable(&t, "CAIRN_S3_ENDPOINT", dead_endpoint());
    }
}

#[test]
fn azure_missing_container_and_unreachable_endpoint() {
    if let Some(t) = testing::azure() {
        let cs = format!(
            "AccountName=devstoreaccount1;AccountKey={};BlobEndpoint={}/devstoreaccount1",
            cairn_objstore::config::AZURITE_KEY,
            dead_endpoint()
        );
        missing_container_and_unreachable(&t, "AZURE_STORAGE_CONNECTION_STRING", cs);
    }
}

#[test]
fn bad_urls_and_an_unreachable_sftp_host_give_clear_errors() {
    let env = Env::new();
    let none = TestTarget {
        service: cairn_objstore::backend::Service::S3,
        container: String::new(),
        env: Vec::new(),
    };
    let out = cairn(
        &env,
        &none,
        "sftp://backup@127.0.0.1:1/srv/cairn",
        &[],
        &["snapshots"],
    );
    expect_failure(&out, 1, &["127.0.0.1"]);
    let out = cairn(&env, &none, "s3://Bad_Bucket/p", &[], &["snapshots"]);
    expect_failure(&out, 1, &["bucket name", "invalid"]);
    let out = cairn(
        &env,
        &none,
        "azure://c0ntainer/p?sig=secret",
        &[],
        &["snapshots"],
    );
    expect_failure(&out, 1, &["environment"]);
    let out = cairn(&env, &none, "gs://bucket/p", &[], &["snapshots"]);
    expect_failure(&out, 1, &["unknown scheme"]);
    // No credentials for a custom endpoint: says which variables to set.
    let out = cairn(
        &env,
        &none,
        "s3://bucket/p",
        &[
            ("CAIRN_S3_ENDPOINT", "http://127.0.0.1:9"),
            ("HOME", "/nonexistent"),
        ],
        &["snapshots"],
    );
    expect_failure(&out, 1, &["AWS_ACCESS_KEY_ID"]);
}

/// Several agents (processes) back up different sources into one
/// repository at the same time: every snapshot restores byte for byte.
fn concurrent_agents(target: &TestTarget) {
    const AGENTS: u64 = 3;
    let env = Env::new();
    let repo = target.url(&unique_prefix("fleet"));
    ok(&env, target, &repo, &["init", "--kdf-memory", "8", "-q"]);
    let sources = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for a in 0..AGENTS {
        let src = sources.path().join(format!("agent{a}"));
        std::fs::create_dir_all(&src).unwrap();
        // Some data shared by all agents (dedup across them), some their own.
        std::fs::write(src.join("shared"), fill(500, 3 << 20)).unwrap();
        std::fs::write(src.join("own"), fill(600 + a, (2 << 20) + a as usize)).unwrap();
        // Each agent its own cache, as on separate machines.
        let agent_env = Env::new();
        std::fs::copy(env.path("pw"), agent_env.path("pw")).unwrap();
        let mut cmd = command(&agent_env, target, &repo);
        cmd.args(["backup", "--json", "--tag", &format!("agent{a}")])
            .arg(&src)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push((src, agent_env, cmd.spawn().unwrap()));
    }
    let mut snapshots = Vec::new();
    for (src, _agent_env, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent backup of {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        snapshots.push((src, v["snapshot"].as_str().unwrap().to_string()));
    }
    let listed = json(&env, target, &repo, &["snapshots", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        AGENTS as usize,
        "{listed}"
    );
    for (src, id) in &snapshots {
        let dest = env.path(&format!("restore-{id}"));
        ok(
            &env,
            target,
            &repo,
            &[
                "restore",
                id,
                "--target",
                dest.to_str().unwrap(),
                "--verify",
                "-q",
            ],
        );
        same_tree(src, &dest.join(src.strip_prefix("/").unwrap()));
    }
}

#[test]
fn s3_concurrent_agents_into_one_repository() {
    if let Some(t) = testing::s3() {
        concurrent_agents(&t);
    }
}

#[test]
fn azure_concurrent_agents_into_one_repository() {
    if let Some(t) = testing::azure() {
        concurrent_agents(&t);
    }
}
