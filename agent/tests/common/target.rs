//! A repository the end-to-end tests run the binary against, on the local
//! target or over SFTP, and the checks the reliability tests repeat after
//! every crash, kill or fault: check is clean (leftovers named and
//! counted), every snapshot restores byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Env, sftp_server};

/// The test hooks of the binary (docs/reliability.md), never inherited.
pub const TEST_HOOKS: [&str; 6] = [
    "CAIRN_TEST_CRASH_AFTER",
    "CAIRN_TEST_CRASH_AT_OP",
    "CAIRN_TEST_OP_LOG",
    "CAIRN_TEST_FAULTS",
    "CAIRN_TEST_IGNORE_CREATE_ONLY",
    "CAIRN_TEST_MAX_IN_FLIGHT",
];

/// Where the repository is and how to reach it.
pub struct Target {
    pub env: Env,
    pub repo: String,
    pub vars: Vec<(String, String)>,
}

impl Target {
    /// A repository in a fresh scratch directory (`<env>/repo`).
    pub fn local() -> Target {
        let env = Env::new();
        let repo = env.path("repo").to_str().unwrap().to_string();
        Target {
            env,
            repo,
            vars: Vec::new(),
        }
    }

    /// A repository in a fresh directory of the SFTP test server (named
    /// after `test`), or `None` when the server is not configured.
    pub fn sftp(test: &str) -> Option<Target> {
        let (base, key, known) = sftp_server()?;
        let unique = format!(
            "{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        Some(Target {
            env: Env::new(),
            repo: format!("{}/{unique}", base.trim_end_matches('/')),
            vars: vec![
                ("CAIRN_SFTP_KEY_FILE".into(), key),
                ("CAIRN_SFTP_KNOWN_HOSTS".into(), known),
                ("CAIRN_SFTP_NO_AGENT".into(), "1".into()),
            ],
        })
    }

    /// A copy of this local target: its scratch entries `names` (the
    /// repository `repo` among them) copied with `cp -a`, and the password.
    pub fn copy_local(&self, names: &[&str]) -> Target {
        let t = Target::local();
        for name in names {
            let status = Command::new("cp")
                .arg("-a")
                .arg(self.env.path(name))
                .arg(t.env.path(name))
                .status()
                .unwrap();
            assert!(status.success(), "cp -a {name}");
        }
        std::fs::copy(self.env.path("pw"), t.env.path("pw")).unwrap();
        t
    }

    /// `cairn args` on this repository, no test hook set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .env("CAIRN_REPO", &self.repo)
            .env("CAIRN_PASSWORD_FILE", self.env.path("pw"))
            .env("CAIRN_FROM_PASSWORD_FILE", self.env.path("pw"))
            .env("CAIRN_CACHE_DIR", self.env.path("cache"))
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_KEY_FILE")
            .env_remove("CAIRN_FROM_PASSWORD_COMMAND")
            .env_remove("CAIRN_FROM_KEY_FILE");
        for hook in TEST_HOOKS {
            cmd.env_remove(hook);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        super::succeeded(args, self.command(args).output().unwrap())
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.ok(args).stdout).unwrap()
    }

    /// Snapshot ids by their first tag (the last one listed wins).
    pub fn snapshots_by_tag(&self) -> BTreeMap<String, String> {
        self.tagged_snapshots().into_iter().collect()
    }

    /// Every snapshot as (first tag, id).
    pub fn tagged_snapshots(&self) -> Vec<(String, String)> {
        self.json(&["snapshots", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["tags"][0].as_str().unwrap_or("").to_string(),
                    s["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Runs check and fails unless it is clean; returns its report.
    pub fn check_clean(&self) -> serde_json::Value {
        let report = self.json(&["check", "--json", "-q"]);
        assert_eq!(report["problems_total"], 0, "{report}");
        report
    }

    /// Check is clean, and on a local target nothing but harmless leftovers
    /// is there beside the live objects (see [`Leftovers`]).
    pub fn check_leftovers(&self) -> Leftovers {
        let report = self.check_clean();
        let mut left = Leftovers {
            packs_not_indexed: report["packs_not_indexed"].as_u64().unwrap(),
            plans: report["plans"].as_u64().unwrap(),
            ..Leftovers::default()
        };
        if self.vars.is_empty() {
            left.scan(Path::new(&self.repo));
        }
        left
    }

    /// Restores every snapshot whose first tag `expected` names and fails
    /// unless it is byte for byte what was backed up; fails unless every
    /// tag in `required` has a snapshot. Returns how many were restored.
    pub fn restores(&self, expected: &BTreeMap<String, Content>, required: &[&str]) -> usize {
        let snapshots = self.tagged_snapshots();
        for tag in required {
            assert!(
                snapshots.iter().any(|(t, _)| t == tag),
                "snapshot {tag} is missing: {snapshots:?}"
            );
        }
        let mut restored = 0;
        for (tag, id) in &snapshots {
            let Some(want) = expected.get(tag) else {
                continue;
            };
            let out = self.env.path("restored");
            if out.exists() {
                if out.is_dir() {
                    std::fs::remove_dir_all(&out).unwrap();
                } else {
                    std::fs::remove_file(&out).unwrap();
                }
            }
            let got = match want {
                Content::Disk(_) => {
                    self.ok(&["restore", id, "--disk-to", out.to_str().unwrap(), "-q"]);
                    blake3::hash(&std::fs::read(&out).unwrap())
                }
                Content::Tree(src, _) => {
                    self.ok(&["restore", id, "--target", out.to_str().unwrap(), "-q"]);
                    tree_hash(&out.join(src.strip_prefix("/").unwrap()))
                }
            };
            assert_eq!(
                got,
                want.hash(),
                "snapshot {tag} ({id}) restored differently"
            );
            restored += 1;
        }
        restored
    }
}

/// What a snapshot must restore to.
#[derive(Debug, Clone)]
pub enum Content {
    /// A disk image with this hash.
    Disk(blake3::Hash),
    /// The tree backed up from this absolute path, with this [`tree_hash`].
    Tree(PathBuf, blake3::Hash),
}

impl Content {
    /// The disk image at `path` as it is now.
    pub fn disk(path: &Path) -> Content {
        Content::Disk(blake3::hash(&std::fs::read(path).unwrap()))
    }

    /// The tree at `path` as it is now.
    pub fn tree(path: &Path) -> Content {
        Content::Tree(path.to_path_buf(), tree_hash(path))
    }

    fn hash(&self) -> blake3::Hash {
        match self {
            Content::Disk(h) | Content::Tree(_, h) => *h,
        }
    }
}

/// A hash of the names and contents of the regular files under `root`.
pub fn tree_hash(root: &Path) -> blake3::Hash {
    fn walk(dir: &Path, rel: &str, h: &mut blake3::Hasher) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = format!("{rel}/{}", path.file_name().unwrap().to_string_lossy());
            h.update(name.as_bytes());
            if path.is_dir() {
                h.update(b"/");
                walk(&path, &name, h);
            } else {
                let data = std::fs::read(&path).unwrap();
                h.update(&(data.len() as u64).to_le_bytes());
                h.update(&data);
            }
        }
    }
    let mut h = blake3::Hasher::new();
    walk(root, "", &mut h);
    h.finalize()
}

/// What an interrupted operation may leave beside the live objects, all
/// harmless: packs no index names (reused by the next backup, removed by
/// prune), prune plans (finished by the next prune), stale locks (ignored:
/// their process is gone) and `.tmp-*` files of unfinished writes (ignored
/// by listings). Anything else in the repository directory fails the test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub packs_not_indexed: u64,
    pub plans: u64,
    pub locks: u64,
    pub temp_files: u64,
}

impl Leftovers {
    fn scan(&mut self, repo: &Path) {
        let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
        let mut stack = vec![(repo.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if e.file_type().unwrap().is_dir() {
                    stack.push((e.path(), path));
                    continue;
                }
                if name.starts_with(".tmp-") {
                    self.temp_files += 1;
                    continue;
                }
                let top = path.split('/').next().unwrap();
                match top {
                    "locks" if is_id(&name) => self.locks += 1,
                    "config" | "keys" | "data" | "index" | "snapshots" | "plans"
                        if name == "config" || is_id(&name) => {}
                    _ => panic!("unexpected file {path} in the repository"),
                }
            }
        }
    }

    /// Adds `other` (for totals over many crash points).
    pub fn add(&mut self, other: Leftovers) {
        self.packs_not_indexed += other.packs_not_indexed;
        self.plans += other.plans;
        self.locks += other.locks;
        self.temp_files += other.temp_files;
    }
}
