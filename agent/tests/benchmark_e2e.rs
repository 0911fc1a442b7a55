//! End-to-end tests of `cairn benchmark`: every stage measured, the sizing
//! arithmetic consistent with the rates, and the repository left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, fill};

/// Every file under `dir` with its size, sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                let name = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((name, meta.len()));
            }
        }
    }
    out.sort();
    out
}

fn rate(report: &serde_json::Value, stage: &str) -> f64 {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage} in {report}"))["mb_per_s"]
        .as_f64()
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn every_stage_is_measured_and_the_repository_is_left_alone() {
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
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.bin"), fill(1, 3_000_000)).unwrap();
    std::fs::write(data.join("sub/b.bin"), fill(2, 1_000_000)).unwrap();
    env.ok(&["backup", "-q", data.to_str().unwrap()]);
    let before = listing(&env.path("repo"));

    let report = env.json(&[
        "benchmark",
        "--json",
        "--seconds",
        "0.2",
        "--threads",
        "2",
        "--change-rate",
        "5%",
        "--path",
        data.to_str().unwrap(),
    ]);
    let names: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "read", "chunk", "hash", "compress", "encrypt", "upload", "download"
        ]
    );
    for s in report["stages"].as_array().unwrap() {
        let (bytes, secs) = (s["bytes"].as_f64().unwrap(), s["seconds"].as_f64().unwrap());
        assert!(bytes > 0.0 && secs > 0.0, "{s}");
        assert!(
            close(s["mb_per_s"].as_f64().unwrap(), bytes / secs / 1e6),
            "{s}"
        );
    }
    assert_eq!(report["threads"], 2);
    assert_eq!(report["compression_level"], 3);

    // The sizing follows from the rates (see cairn::benchmark).
    let sizing = &report["sizing"];
    assert_eq!(sizing["total_bytes"], 4_000_000);
    assert!(close(sizing["change_rate"].as_f64().unwrap(), 0.05));
    let (read, upload) = (rate(&report, "read"), rate(&report, "upload"));
    let scan = 1.0 / rate(&report, "chunk") + 1.0 / rate(&report, "hash");
    let store = 1.0 / rate(&report, "compress") + 1.0 / rate(&report, "encrypt");
    let bound = |share: f64| {
        [
            ("cpu", 1.0 / (scan + share * store)),
            ("read", read),
            ("upload", upload / share),
        ]
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
    };
    for (kind, share) in [("full", 1.0), ("incremental", 0.05)] {
        let (name, mb_per_s) = bound(share);
        assert_eq!(sizing[format!("{kind}_bound")], name, "{sizing}");
        assert!(
            close(
                sizing[format!("{kind}_mb_per_s")].as_f64().unwrap(),
                mb_per_s
            ),
            "{sizing}"
        );
        let seconds = sizing[format!("{kind}_seconds")].as_f64().unwrap();
        assert!(close(seconds, 4.0 / mb_per_s), "{sizing}");
    }

    // Nothing left behind: the same objects, and a clean check.
    assert_eq!(listing(&env.path("repo")), before);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn without_a_repository_the_cpu_stages_are_measured_and_a_table_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["benchmark", "--seconds", "0.1", "--threads", "1"])
        .env_remove("CAIRN_REPO")
        .output()
        .unwrap();
    let out = common::succeeded(&["benchmark"], out);
    let table = String::from_utf8(out.stdout).unwrap();
    for stage in ["chunk", "hash", "compress", "encrypt"] {
        assert!(
            table.lines().any(|l| l.starts_with(stage)),
            "{stage} missing: {table}"
        );
    }
    assert!(!table.contains("upload"), "{table}");
    assert!(table.contains("give --disk or --path"), "{table}");

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["benchmark", "--seconds", "0"])
        .env_remove("CAIRN_REPO")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds"));
}
