//! A repository on the local target or on the SFTP test server, and the
//! real binary run against it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

use super::{Env, sftp_server};

/// Where the repository is and how to reach it.
pub struct Target {
    pub env: Env,
    pub repo: String,
    pub vars: Vec<(String, String)>,
}

impl Target {
    pub fn local() -> Target {
        let env = Env::new();
        let repo = env.path("repo").to_str().unwrap().to_string();
        Target {
            env,
            repo,
            vars: Vec::new(),
        }
    }

    pub fn sftp(prefix: &str) -> Option<Target> {
        let (base, key, known) = sftp_server()?;
        let unique = format!(
            "{prefix}-{}-{}",
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

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .env("CAIRN_REPO", &self.repo)
            .env("CAIRN_PASSWORD_FILE", self.env.path("pw"))
            .env("CAIRN_CACHE_DIR", self.env.path("cache"))
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_KEY_FILE")
            .env_remove("CAIRN_TEST_CRASH_AFTER");
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

    /// Snapshot ids by their first tag.
    pub fn snapshots_by_tag(&self) -> BTreeMap<String, String> {
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
}
