//! What the end-to-end tests share: a scratch directory with a repository,
//! a password file and a cache, the real `cairn` binary run against them,
//! and deterministic test data.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod data;
pub mod target;

use std::path::PathBuf;
use std::process::{Command, Output};

pub mod browser;

/// A scratch directory holding `repo`, `cache` and the password file `pw`.
pub struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "end-to-end test password\n").unwrap();
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cairn(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .env("CAIRN_REPO", self.path("repo"))
            .env("CAIRN_PASSWORD_FILE", self.path("pw"))
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_KEY_FILE");
        for hook in target::TEST_HOOKS {
            cmd.env_remove(hook);
        }
        cmd.output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        succeeded(args, self.cairn(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.ok(args).stdout).unwrap()
    }
}

/// `len` deterministic pseudo-random bytes from `seed`.
pub fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Fails unless the trees at `a` and `b` hold the same names, contents and
/// symlink targets (`diff -r --no-dereference`).
pub fn same_tree(a: &std::path::Path, b: &std::path::Path) {
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

/// The SFTP test server's settings from the environment (URL, client key
/// file, known_hosts file), or `None` (after a note) when it is not
/// configured and not required (CI or CAIRN_REQUIRE_SERVERS make it
/// required). Start it with `eval "$(scripts/test-servers/sftp.sh start)"`.
pub fn sftp_server() -> Option<(String, String, String)> {
    let var = |n| std::env::var(n).ok().filter(|v| !v.is_empty());
    match (
        var("CAIRN_TEST_SFTP_URL"),
        var("CAIRN_SFTP_KEY_FILE"),
        var("CAIRN_SFTP_KNOWN_HOSTS"),
    ) {
        (Some(url), Some(key), Some(known)) => Some((url, key, known)),
        _ => {
            let required = servers_required();
            let msg = "the SFTP test server is not configured; start it with \
                       eval \"$(scripts/test-servers/sftp.sh start)\"";
            assert!(
                !required,
                "{msg} (required: CAIRN_REQUIRE_SERVERS or CI is set)"
            );
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// Whether a test whose server or tool is missing must fail rather than
/// skip: CAIRN_REQUIRE_SERVERS or CI is set (and not "0").
pub fn servers_required() -> bool {
    ["CAIRN_REQUIRE_SERVERS", "CI"]
        .iter()
        .any(|n| std::env::var(n).is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// `out` of `cairn args`, after failing the test (with its stderr) unless
/// it exited 0.
pub fn succeeded(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
