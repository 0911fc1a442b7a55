#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Many writers at once on the S3 target (moto's server, started by
//! scripts/test-servers/s3.sh): eight `cairn backup` processes, each its
//! own host and source, run in parallel for two rounds while
//! `forget --keep-last 1 --prune` runs in a loop beside them. Afterwards
//! `check --read-data` is clean and every kept snapshot restores to exactly
//! what its backup read. Without the server the test skips, unless CI or
//! CAIRN_REQUIRE_SERVERS is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cairn_objstore::testing::{self, TestTarget, unique_prefix};
use common::{Env, fill, same_tree};

const WRITERS: u64 = 8;
const ROUNDS: u64 = 2;

fn command(env: &Env, target: &TestTarget, repo: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args)
        .env("CAIRN_REPO", repo)
        .env("CAIRN_PASSWORD_FILE", env.path("pw"))
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("CAIRN_S3_ENDPOINT");
    cmd.envs(target.env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs to the end with a cache of its own (`cache`), failing the test
/// unless it exits 0.
fn ok(env: &Env, target: &TestTarget, repo: &str, cache: &str, args: &[&str]) -> Output {
    let out = command(env, target, repo, args)
        .env("CAIRN_CACHE_DIR", env.path(cache))
        .output()
        .unwrap();
    common::succeeded(args, out)
}

/// Writer `w`'s source for `round`: a file all writers share, one shared
/// by the writer's rounds, one of its own per round.
fn fill_source(src: &Path, w: u64, round: u64) {
    let _ = std::fs::remove_dir_all(src);
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("shared"), fill(7, 300_000)).unwrap();
    std::fs::write(src.join("d/mine"), fill(100 + w, 200_000)).unwrap();
    std::fs::write(
        src.join("d/round"),
        fill(1000 + w * 10 + round, 150_000 + w as usize * 1000),
    )
    .unwrap();
}

fn src_path(env: &Env, w: u64) -> PathBuf {
    env.path(&format!("src{w}"))
}

fn expected_path(env: &Env, w: u64, round: u64) -> PathBuf {
    env.path(&format!("expected/h{w}/r{round}"))
}

fn eight_writers_with_prune(target: &TestTarget) {
    let env = Env::new();
    let repo = target.url(&unique_prefix("writers"));
    ok(
        &env,
        target,
        &repo,
        "cache-main",
        &["init", "--kdf-memory", "8"],
    );
    let mut prunes = 0;
    for round in 0..ROUNDS {
        for w in 0..WRITERS {
            let src = src_path(&env, w);
            fill_source(&src, w, round);
            let expected = expected_path(&env, w, round);
            fill_source(&expected, w, round);
        }
        let mut writers: Vec<(u64, Child)> = (0..WRITERS)
            .map(|w| {
                let src = src_path(&env, w);
                let child = command(
                    &env,
                    target,
                    &repo,
                    &[
                        "backup",
                        "-q",
                        "--host",
                        &format!("h{w}"),
                        "--tag",
                        &format!("r{round}"),
                        src.to_str().unwrap(),
                    ],
                )
                .env("CAIRN_CACHE_DIR", env.path(&format!("cache-{w}")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
                (w, child)
            })
            .collect();
        // Forget and prune beside them until every writer is done (at
        // least once per round, and a bounded number of times).
        loop {
            let running = writers
                .iter_mut()
                .any(|(_, c)| c.try_wait().unwrap().is_none());
            ok(
                &env,
                target,
                &repo,
                "cache-main",
                &["forget", "-q", "--keep-last", "1", "--prune"],
            );
            prunes += 1;
            if !running || prunes > 40 {
                break;
            }
        }
        for (w, child) in writers {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "writer {w} round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // A last prune after everyone is gone runs any plan left waiting.
    ok(
        &env,
        target,
        &repo,
        "cache-main",
        &["forget", "-q", "--keep-last", "1", "--prune"],
    );
    eprintln!("{prunes} forget --prune runs beside the writers");
    ok(&env, target, &repo, "cache-main", &["check", "--read-data"]);

    let out = ok(&env, target, &repo, "cache-main", &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len() as u64, WRITERS, "one kept per host: {snaps:?}");
    for s in snaps {
        let id = s["id"].as_str().unwrap();
        let host = s["hostname"].as_str().unwrap();
        let w: u64 = host.trim_start_matches('h').parse().unwrap();
        let round: u64 = s["tags"][0]
            .as_str()
            .unwrap()
            .trim_start_matches('r')
            .parse()
            .unwrap();
        assert_eq!(round, ROUNDS - 1, "the newest is kept: {s}");
        let target_dir = env.path(&format!("restored-{id}"));
        ok(
            &env,
            target,
            &repo,
            "cache-main",
            &["restore", id, "--target", target_dir.to_str().unwrap()],
        );
        let src = src_path(&env, w);
        let restored = target_dir.join(src.strip_prefix("/").unwrap());
        same_tree(&expected_path(&env, w, round), &restored);
    }
}

#[test]
fn eight_writers_on_s3_while_forget_and_prune_run() {
    if let Some(t) = testing::s3() {
        eight_writers_with_prune(&t);
    }
}
