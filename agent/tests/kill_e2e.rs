#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real process kills, end to end: the `cairn` binary killed with SIGKILL
//! at seeded pseudo-random times during backups and prunes, on the local
//! target and over SFTP (skipped without the test server unless
//! CAIRN_REQUIRE_SERVERS or CI is set). After every kill check is clean
//! (only harmless leftovers), every snapshot saved before restores byte for
//! byte, and rerunning the operation completes.
//!
//! The kill times are fractions (drawn from a fixed seed) of how long an
//! uninterrupted run of the same operation took, up to 1.2 of it: a kill
//! may land after the process finished, which is counted, not failed. No
//! assertion depends on timing; each test prints how many runs it killed.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::data::{backup_tree, init, small_tree};
use common::target::{Content, Target};

/// Kills tried per operation and target.
const KILLS: u64 = 10;

/// The seeded kill time number `i`: a fraction in [0.05, 1.2) of `full`.
fn kill_time(seed: u64, i: u64, full: Duration) -> Duration {
    let draw = blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat());
    let unit =
        u64::from_le_bytes(draw.as_bytes()[..8].try_into().unwrap()) as f64 / u64::MAX as f64;
    full.mul_f64(0.05 + 1.15 * unit)
}

/// Runs `cairn args` on `t` and kills it with SIGKILL after `after`;
/// returns whether it was killed (false: it finished first, successfully).
fn run_killed_after(t: &Target, args: &[&str], after: Duration) -> bool {
    let mut child = t
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + after;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            common::succeeded(args, out);
            return false;
        }
        if Instant::now() >= deadline {
            // Child::kill sends SIGKILL.
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            return out.status.code().is_none();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long `cairn args` takes uninterrupted (it must succeed).
fn timed(t: &Target, args: &[&str]) -> Duration {
    let start = Instant::now();
    t.ok(args);
    start.elapsed()
}

/// After a kill: check clean, everything saved restores, the rerun (if
/// any) completes.
fn survived(t: &Target, saved: &BTreeMap<String, Content>, rerun: &[&str]) {
    t.check_leftovers();
    let tags: Vec<&str> = saved.keys().map(String::as_str).collect();
    t.restores(saved, &tags);
    t.ok(rerun);
    t.check_leftovers();
}

/// Backups of new versions of a tree, each killed at a seeded time, then
/// rerun. Returns how many were killed.
fn kill_backups(t: &Target, seed: u64) -> u64 {
    init(t);
    let mut saved: BTreeMap<_, _> = [backup_tree(t, 1)].into();
    let src = t.env.path("src");
    let src_arg = src.to_str().unwrap().to_string();
    small_tree(&src, 2);
    let full = timed(t, &["backup", "-q", "--tag", "v2", &src_arg]);
    saved.insert("v2".into(), Content::tree(&src));
    let mut killed = 0;
    for i in 0..KILLS {
        let v = 3 + i;
        small_tree(&src, v);
        let tag = format!("v{v}");
        let args = ["backup", "-q", "--tag", &tag, &src_arg];
        killed += u64::from(run_killed_after(t, &args, kill_time(seed, i, full)));
        survived(t, &saved, &args);
        saved.insert(tag, Content::tree(&src));
    }
    t.restores(&saved, &[]);
    killed
}

/// Prunes after forgetting an old version, each killed at a seeded time,
/// then rerun. Returns how many were killed.
fn kill_prunes(t: &Target, seed: u64) -> u64 {
    init(t);
    let mut saved = BTreeMap::new();
    for v in 1..=4 {
        let (tag, content) = backup_tree(t, v);
        saved.insert(tag, content);
    }
    let prune = ["prune", "-q", "--max-unused", "0%"];
    let keep = ["forget", "-q", "--keep-last", "3"];
    t.ok(&keep);
    saved.remove("v1");
    let full = timed(t, &prune);
    let mut killed = 0;
    for i in 0..KILLS {
        let v = 5 + i;
        let (tag, content) = backup_tree(t, v);
        saved.insert(tag, content);
        t.ok(&keep);
        saved.remove(&format!("v{}", v - 3));
        killed += u64::from(run_killed_after(t, &prune, kill_time(seed, i, full)));
        survived(t, &saved, &prune);
    }
    t.restores(&saved, &[]);
    killed
}

#[test]
fn kill_times_are_seeded_and_spread() {
    let full = Duration::from_secs(10);
    let times: Vec<_> = (0..50).map(|i| kill_time(1, i, full)).collect();
    assert_eq!(
        times,
        (0..50).map(|i| kill_time(1, i, full)).collect::<Vec<_>>()
    );
    assert!(
        times
            .iter()
            .all(|t| *t >= full / 20 && *t < full.mul_f64(1.2))
    );
    assert!(times.iter().any(|t| *t < full / 2) && times.iter().any(|t| *t > full / 2));
}

#[test]
fn backups_killed_at_random_times_on_a_local_target() {
    let killed = kill_backups(&Target::local(), 11);
    eprintln!("kills: backup, local: {killed} of {KILLS} runs killed, all survived");
}

#[test]
fn prunes_killed_at_random_times_on_a_local_target() {
    let killed = kill_prunes(&Target::local(), 12);
    eprintln!("kills: prune, local: {killed} of {KILLS} runs killed, all survived");
}

#[test]
fn backups_killed_at_random_times_over_sftp() {
    if let Some(t) = Target::sftp("kill-backup") {
        let killed = kill_backups(&t, 13);
        eprintln!("kills: backup, SFTP: {killed} of {KILLS} runs killed, all survived");
    }
}

#[test]
fn prunes_killed_at_random_times_over_sftp() {
    if let Some(t) = Target::sftp("kill-prune") {
        let killed = kill_prunes(&t, 14);
        eprintln!("kills: prune, SFTP: {killed} of {KILLS} runs killed, all survived");
    }
}
