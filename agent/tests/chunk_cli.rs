//! End-to-end tests of `cairn chunk`: the real binary on generated files.
//!
//! Every expected value is computed independently, from the chunker library
//! on the same bytes, never copied from a previous run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_chunker::{Chunker, ChunkerParams, GearTable, TEST_SEED, testdata};
use serde_json::Value;

fn cairn(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .args(paths)
        .output()
        .expect("run cairn")
}

/// Runs `cairn chunk --json`, checks the exit code, returns the report.
fn chunk_json(args: &[&str], paths: &[&Path], code: i32) -> Value {
    let mut all = vec!["chunk", "--json"];
    all.extend_from_slice(args);
    let out = cairn(&all, paths);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn lengths(params: ChunkerParams, data: &[u8]) -> Vec<u64> {
    let chunker = Chunker::new(params, GearTable::from_seed(&TEST_SEED)).unwrap();
    chunker.chunks(data).map(|c| c.data.len() as u64).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).unwrap();
    path
}

#[test]
fn a_file_stored_twice_deduplicates_to_half() {
    let dir = tempfile::tempdir().unwrap();
    let data = testdata::pseudo_random(11, 6 << 20);
    write(dir.path(), "a.img", &data);
    write(dir.path(), "b.img", &data);
    let expected = lengths(ChunkerParams::FILE_DEFAULT, &data);

    let r = chunk_json(&[], &[dir.path()], 0);
    assert_eq!(u(&r["files"]), 2);
    assert_eq!(u(&r["bytes"]), 2 * data.len() as u64);
    assert_eq!(u(&r["unique_bytes"]), data.len() as u64);
    assert_eq!(u(&r["chunks"]), 2 * expected.len() as u64);
    assert_eq!(u(&r["unique_chunks"]), expected.len() as u64);
    let ratio = r["dedup_ratio"].as_f64().unwrap();
    assert!((ratio - 2.0).abs() < 1e-9, "{ratio}");
    assert_eq!(r["warnings"], Value::Array(vec![]));
    assert!(r["chunking_mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn chunk_counts_and_sizes_match_the_library() {
    let dir = tempfile::tempdir().unwrap();
    // A large file (memory-mapped) and a small one (streamed).
    let big = testdata::pseudo_random(21, 9 << 20);
    let small = testdata::pseudo_random(22, 300 << 10);
    let big_path = write(dir.path(), "big", &big);
    let small_path = write(dir.path(), "small", &small);

    let custom = ChunkerParams::new(4 << 10, 16 << 10, 64 << 10);
    let cases: [(&[&str], ChunkerParams); 4] = [
        (&[], ChunkerParams::FILE_DEFAULT),
        (&["--disk"], ChunkerParams::DISK_DEFAULT),
        (&["--min", "4K", "--avg", "16K", "--max", "64K"], custom),
        (
            &[
                "--min",
                "4K",
                "--avg",
                "16K",
                "--max",
                "64K",
                "--threads",
                "2",
            ],
            custom,
        ),
    ];
    for (args, params) in cases {
        for (path, data) in [(&big_path, &big), (&small_path, &small)] {
            let expected = lengths(params, data);
            let r = chunk_json(args, &[path], 0);
            let ctx = format!("{args:?} {}", path.display());
            assert_eq!(u(&r["chunks"]), expected.len() as u64, "{ctx}");
            assert_eq!(u(&r["bytes"]), data.len() as u64, "{ctx}");
            let size = &r["chunk_size"];
            assert_eq!(u(&size["min"]), *expected.iter().min().unwrap(), "{ctx}");
            assert_eq!(u(&size["max"]), *expected.iter().max().unwrap(), "{ctx}");
            let at_max = expected
                .iter()
                .filter(|&&l| l == params.max_size as u64)
                .count();
            assert_eq!(u(&size["max_size_cuts"]), at_max as u64, "{ctx}");
            assert_eq!(u(&r["params"]["avg_size"]), params.avg_size as u64);
            let histogram_chunks: u64 = r["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| u(&b["chunks"]))
                .sum();
            assert_eq!(histogram_chunks, expected.len() as u64, "{ctx}");
        }
    }
}

#[test]
fn text_report_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "f", &testdata::pseudo_random(3, 1 << 20));
    let out = cairn(&["chunk"], &[&path]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["dedup ratio 1.000", "MB/s", "TEST_SEED", "chunk sizes"] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn missing_path_fails_with_code_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", b"some bytes");
    let missing = dir.path().join("no-such-file");
    let out = cairn(&["chunk"], &[&good, &missing]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&*missing.to_string_lossy()),
        "stderr: {stderr}"
    );
    // Named paths are checked before any work: no report was printed.
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_sizes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "f", b"x");
    let out = cairn(&["chunk", "--avg", "1000"], &[&path]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("power of two"), "stderr: {stderr}");

    let out = cairn(&["chunk", "--min", "lots"], &[&path]);
    assert_eq!(out.status.code(), Some(2));
    let out = cairn(&["chunk"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes_and_seed() {
    let out = cairn(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(text.contains("3  finished with warnings"), "{text}");

    let out = cairn(&["chunk", "--help"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TEST_SEED"), "{text}");
}

/// Makes `dir/name` a regular file that `cairn` cannot open, and returns the
/// path cairn will report.
///
/// Without privileges, `chmod 000` does it. As root (CI containers often run
/// as root) permissions do not stop reads, so the file is instead put where
/// its full path is longer than the kernel's PATH_MAX (4096 bytes): the walker
/// lists it (the directory's own path is short enough) but opening it by its
/// full path fails with "File name too long". That is a real unreadable file
/// for cairn, found the way any other would be. If the walker ever learns to
/// open files relative to their directory, this trick stops working and the
/// test says so.
fn make_unreadable(dir: &Path, name: &str) -> PathBuf {
    let path = write(dir, name, b"secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::File::open(&path).is_err() {
            return path;
        }
        fs::remove_file(&path).unwrap();
    }
    // Nest directories until the directory path is ~3,900 bytes.
    let mut deep = dir.join("deep");
    while deep.as_os_str().len() < 3900 {
        deep.push("d".repeat(200));
    }
    fs::create_dir_all(&deep).unwrap();
    let long_name = "f".repeat(250);
    let path = deep.join(&long_name);
    assert!(path.as_os_str().len() > 4096);
    // Create it by a short relative path from inside the directory.
    let status = Command::new("sh")
        .args(["-c", "printf secret > \"$0\"", &long_name])
        .current_dir(&deep)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(fs::File::open(&path).is_err(), "long path is readable");
    path
}

#[test]
fn unreadable_file_in_a_directory_is_a_warning_with_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let data = testdata::pseudo_random(5, 2 << 20);
    write(dir.path(), "readable", &data);
    let bad = make_unreadable(dir.path(), "unreadable");

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["chunk", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    let bad_name = bad.to_string_lossy();
    assert!(stderr.contains(&*bad_name), "stderr: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains(&*bad_name));
    // The readable file was still chunked in full.
    assert_eq!(u(&r["files"]), 1);
    assert_eq!(u(&r["bytes"]), data.len() as u64);
    assert_eq!(
        u(&r["chunks"]),
        lengths(ChunkerParams::FILE_DEFAULT, &data).len() as u64
    );
}

#[test]
fn unreadable_named_file_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bad = make_unreadable(dir.path(), "unreadable");
    let out = cairn(&["chunk"], &[&bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&*bad.to_string_lossy()), "stderr: {stderr}");
}
