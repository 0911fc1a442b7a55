#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end through the real binary: `cairn copy` of file and disk
//! snapshots (with patches) into a repository sharing the source's chunker
//! secrets, locally and over SFTP, restored byte for byte, incremental on a
//! rerun, refused into a foreign repository; `repair index` after the
//! index files are lost; `repair snapshots` after a pack is damaged; a
//! damaged snapshot manifest skipped with a warning.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, fill, same_tree, sftp_server};

/// A repository location and the password file that opens it, plus the
/// SFTP client settings when it is remote.
#[derive(Clone)]
struct Repo {
    location: String,
    password: PathBuf,
    sftp: Option<(String, String)>,
}

/// Runs cairn on `repo` (CAIRN_REPO), with `from`'s password as the
/// CAIRN_FROM_ one.
fn run(env: &Env, repo: &Repo, from: Option<&Repo>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args)
        .env("CAIRN_REPO", &repo.location)
        .env("CAIRN_PASSWORD_FILE", &repo.password)
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_KEY_FILE")
        .env_remove("CAIRN_FROM_PASSWORD_COMMAND")
        .env_remove("CAIRN_FROM_KEY_FILE")
        .env_remove("CAIRN_FROM_REPO");
    match from {
        Some(f) => cmd.env("CAIRN_FROM_PASSWORD_FILE", &f.password),
        None => cmd.env_remove("CAIRN_FROM_PASSWORD_FILE"),
    };
    if let Some((key, known)) = repo.sftp.as_ref().or(from.and_then(|f| f.sftp.as_ref())) {
        cmd.env("CAIRN_SFTP_KEY_FILE", key)
            .env("CAIRN_SFTP_KNOWN_HOSTS", known)
            .env("CAIRN_SFTP_NO_AGENT", "1");
    }
    cmd.output().unwrap()
}

fn ok(env: &Env, repo: &Repo, from: Option<&Repo>, args: &[&str]) -> Output {
    common::succeeded(args, run(env, repo, from, args))
}

fn json(env: &Env, repo: &Repo, from: Option<&Repo>, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&ok(env, repo, from, args).stdout).unwrap()
}

fn local(env: &Env, name: &str, password: &str) -> Repo {
    let pw = env.path(&format!("{name}.pw"));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    Repo {
        location: env.path(name).display().to_string(),
        password: pw,
        sftp: None,
    }
}

/// What the source holds, to compare restores with.
struct Source {
    repo: Repo,
    files: PathBuf,
    /// The disk image at the first and at the second disk backup.
    disk_first: Vec<u8>,
    disk_second: Vec<u8>,
}

/// A source repository with a file snapshot and two disk snapshots, the
/// second stored partly as patches of the first.
fn source(env: &Env) -> Source {
    let repo = local(env, "source", "source password");
    ok(env, &repo, None, &["init", "--kdf-memory", "8", "-q"]);
    let files = env.path("files");
    for d in 0..3u64 {
        std::fs::create_dir_all(files.join(format!("d{d}"))).unwrap();
        for f in 0..3u64 {
            let body = fill(d * 10 + f, 1000 + f as usize * 300_000);
            std::fs::write(files.join(format!("d{d}/f{f}")), body).unwrap();
        }
    }
    std::fs::write(files.join("d0/text"), b"some text ".repeat(5000)).unwrap();
    ok(env, &repo, None, &["backup", "-q", files.to_str().unwrap()]);

    let image = env.path("disk.img");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(24 << 20).unwrap();
    f.write_all_at(&fill(1, 10 << 20), 0).unwrap();
    f.write_all_at(&fill(2, 3 << 20), 16 << 20).unwrap();
    drop(f);
    let disk_first = std::fs::read(&image).unwrap();
    ok(
        env,
        &repo,
        None,
        &["backup", "-q", "--disk", image.to_str().unwrap()],
    );
    let f = std::fs::File::options().write(true).open(&image).unwrap();
    for (i, at) in [1u64 << 20, (3 << 20) + 8192, 7 << 20, 17 << 20]
        .iter()
        .enumerate()
    {
        f.write_all_at(&fill(100 + i as u64, 4096), *at).unwrap();
    }
    drop(f);
    let out = ok(
        env,
        &repo,
        None,
        &["backup", "-v", "--disk", image.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let patched: u64 = text
        .split(" of them as patches")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(patched > 0, "the incremental stored no patches: {text}");
    Source {
        repo,
        files,
        disk_first,
        disk_second: std::fs::read(&image).unwrap(),
    }
}

/// The snapshot ids of a repository, oldest first, with their kinds.
fn snapshots(env: &Env, repo: &Repo) -> Vec<(String, String)> {
    json(env, repo, None, &["snapshots", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Restores every snapshot of `repo` and compares it with the source.
fn restores_like_the_source(env: &Env, repo: &Repo, src: &Source, tag: &str) {
    let list = snapshots(env, repo);
    assert_eq!(list.len(), 3, "{list:?}");
    let out = env.path(&format!("restored-files-{tag}"));
    ok(
        env,
        repo,
        None,
        &[
            "restore",
            "-q",
            &list[0].0,
            "--target",
            out.to_str().unwrap(),
        ],
    );
    same_tree(&src.files, &out.join(src.files.strip_prefix("/").unwrap()));
    for ((id, kind), want) in list[1..].iter().zip([&src.disk_first, &src.disk_second]) {
        assert_eq!(kind, "disk");
        let img = env.path(&format!("restored-{tag}-{id}.img"));
        ok(
            env,
            repo,
            None,
            &[
                "restore",
                "-q",
                id,
                "--disk-to",
                img.to_str().unwrap(),
                "--verify",
            ],
        );
        assert!(std::fs::read(&img).unwrap() == *want, "disk {id} differs");
    }
}

/// `cairn copy --json` of every snapshot of `src` into `dest`.
fn copy(env: &Env, src: &Source, dest: &Repo) -> serde_json::Value {
    let args = ["copy", "--json", "--from-repo", &src.repo.location];
    json(
        env,
        dest,
        Some(&src.repo),
        &[&args[..], &["--to-repo", &dest.location]].concat(),
    )
}

/// Copies everything from `src` into `dest` (created with the source's
/// chunker parameters), restores it, and checks a rerun sends nothing.
fn copy_round_trip(env: &Env, src: &Source, dest: &Repo, tag: &str) {
    ok(
        env,
        dest,
        Some(&src.repo),
        &[
            "init",
            "--kdf-memory",
            "8",
            "-q",
            "--copy-chunker-params-from",
            &src.repo.location,
        ],
    );
    let first = copy(env, src, dest);
    assert_eq!(first["copied"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(first["skipped"], 0);
    assert!(first["blobs_sent"].as_u64().unwrap() > 10, "{first}");
    restores_like_the_source(env, dest, src, tag);

    let again = copy(env, src, dest);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"], 3);
    assert_eq!(again["blobs_sent"], 0);
    assert_eq!(again["bytes_stored"], 0);
    assert_eq!(snapshots(env, dest).len(), 3);
}

#[test]
fn copy_between_local_repositories_and_refusal_of_foreign_keys() {
    let env = Env::new();
    let src = source(&env);
    let dest = local(&env, "dest", "another password");
    copy_round_trip(&env, &src, &dest, "local");

    // Only new data goes when the source gets a new snapshot.
    std::fs::write(src.files.join("d2/new"), fill(77, 200_000)).unwrap();
    ok(
        &env,
        &src.repo,
        None,
        &["backup", "-q", src.files.to_str().unwrap()],
    );
    let third = copy(&env, &src, &dest);
    assert_eq!(third["copied"].as_array().unwrap().len(), 1, "{third}");
    let sent = third["bytes_sent"].as_u64().unwrap();
    assert!((200_000..400_000).contains(&sent), "{third}");

    // A repository with its own chunker secrets is refused, naming the fix.
    let foreign = local(&env, "foreign", "foreign password");
    ok(&env, &foreign, None, &["init", "--kdf-memory", "8", "-q"]);
    let refused = run(
        &env,
        &foreign,
        Some(&src.repo),
        &["copy", "--from-repo", &src.repo.location],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--copy-chunker-params-from"), "{err}");
    assert!(snapshots(&env, &foreign).is_empty());

    // The source's password comes from CAIRN_FROM_*, never the destination's.
    let no_from = run(
        &env,
        &dest,
        None,
        &["copy", "--from-repo", &src.repo.location],
    );
    assert!(!no_from.status.success());
    let err = String::from_utf8_lossy(&no_from.stderr);
    assert!(err.contains("CAIRN_FROM_PASSWORD_FILE"), "{err}");
}

#[test]
fn copy_to_sftp() {
    let Some((base, key, known)) = sftp_server() else {
        return;
    };
    let env = Env::new();
    let src = source(&env);
    let pw = env.path("sftp.pw");
    std::fs::write(&pw, "sftp password\n").unwrap();
    let unique = format!(
        "copy-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let dest = Repo {
        location: format!("{}/{unique}", base.trim_end_matches('/')),
        password: pw,
        sftp: Some((key, known)),
    };
    copy_round_trip(&env, &src, &dest, "sftp");
}

/// Every object file under `dir/kind`.
fn objects(repo: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo.join(kind)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn repair_index_after_the_index_files_are_lost() {
    let env = Env::new();
    let src = source(&env);
    let repo = Path::new(&src.repo.location);
    for f in objects(repo, "index") {
        std::fs::remove_file(f).unwrap();
    }
    let out = env.path("lost");
    let broken = run(
        &env,
        &src.repo,
        None,
        &[
            "restore",
            "-q",
            "latest",
            "--disk-to",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        !broken.status.success(),
        "a restore without an index cannot work"
    );
    let report = json(&env, &src.repo, None, &["repair", "index", "--json"]);
    assert!(report["blobs"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["index_files_written"], 1);
    assert_eq!(report["damaged_packs"].as_array().unwrap().len(), 0);
    restores_like_the_source(&env, &src.repo, &src, "reindexed");
    ok(&env, &src.repo, None, &["check", "-q"]);
}

#[test]
fn repair_snapshots_after_a_pack_is_damaged() {
    let env = Env::new();
    let repo = local(&env, "repo", "a password");
    ok(
        &env,
        &repo,
        None,
        &["init", "--kdf-memory", "8", "--pack-size", "1", "-q"],
    );
    let files = env.path("files");
    std::fs::create_dir_all(&files).unwrap();
    for f in 0..8u64 {
        std::fs::write(files.join(format!("f{f}")), fill(f, 700_000)).unwrap();
    }
    ok(
        &env,
        &repo,
        None,
        &["backup", "-q", files.to_str().unwrap()],
    );
    let image = env.path("disk.img");
    std::fs::write(&image, fill(50, 6 << 20)).unwrap();
    ok(
        &env,
        &repo,
        None,
        &["backup", "-q", "--disk", image.to_str().unwrap()],
    );
    let before = snapshots(&env, &repo);
    assert_eq!(before.len(), 2);

    // Damage the largest pack in its middle: a data pack.
    let root = PathBuf::from(&repo.location);
    let packs = objects(&root, "data");
    let largest = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(largest).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(largest)
        .unwrap()
        .write_all_at(&[0xa5; 64], len / 2)
        .unwrap();

    // Reported, nothing changed, exit 4.
    let report = run(&env, &repo, None, &["repair", "snapshots"]);
    assert_eq!(report.status.code(), Some(4), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    let damaged: Vec<&(String, String)> = before
        .iter()
        .filter(|(id, _)| text.contains(&id[..8]))
        .collect();
    assert_eq!(
        damaged.len(),
        1,
        "exactly one snapshot reaches the pack: {text}"
    );
    assert_eq!(snapshots(&env, &repo).len(), 2);

    // --forget: a repaired snapshot replaces the damaged one.
    let fixed = json(
        &env,
        &repo,
        None,
        &["repair", "snapshots", "--forget", "--json"],
    );
    let entry = &fixed["damaged_snapshots"][0];
    assert_eq!(entry["id"], damaged[0].0.as_str());
    assert_eq!(entry["forgotten"], true);
    let new_id = entry["repaired_as"].as_str().unwrap().to_string();
    let changes = entry["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    let after = snapshots(&env, &repo);
    assert_eq!(after.len(), 2);
    assert!(after.iter().any(|(id, _)| *id == new_id));
    assert!(!after.iter().any(|(id, _)| *id == damaged[0].0));
    let tags = json(
        &env,
        &repo,
        None,
        &["snapshots", "--json", "--tag", "repaired"],
    );
    assert_eq!(tags.as_array().unwrap().len(), 1);

    // The repaired snapshot restores: intact parts byte for byte, damaged
    // chunks as zeros, sizes kept.
    let zeros_or_same = |got: &[u8], want: &[u8]| {
        assert_eq!(got.len(), want.len());
        let differing = got.iter().zip(want).filter(|(g, w)| g != w).count();
        assert!(got.iter().zip(want).all(|(g, w)| g == w || *g == 0));
        differing
    };
    if damaged[0].1 == "disk" {
        let img = env.path("repaired.img");
        ok(
            &env,
            &repo,
            None,
            &["restore", "-q", &new_id, "--disk-to", img.to_str().unwrap()],
        );
        let differing = zeros_or_same(
            &std::fs::read(&img).unwrap(),
            &std::fs::read(&image).unwrap(),
        );
        assert!(differing > 0 && differing < 6 << 20);
    } else {
        let out = env.path("repaired");
        ok(
            &env,
            &repo,
            None,
            &["restore", "-q", &new_id, "--target", out.to_str().unwrap()],
        );
        let inside = out.join(files.strip_prefix("/").unwrap());
        let mut intact = 0;
        for f in 0..8u64 {
            let name = format!("f{f}");
            let got = std::fs::read(inside.join(&name)).unwrap();
            let want = std::fs::read(files.join(&name)).unwrap();
            let reported = changes
                .iter()
                .any(|c| c["path"].as_str().unwrap().ends_with(&format!("/{name}")));
            let differing = zeros_or_same(&got, &want);
            assert_eq!(differing > 0, reported, "{name}: {changes:?}");
            intact += usize::from(differing == 0);
        }
        assert!(intact > 0, "every file was damaged");
    }
    // The undamaged snapshot still restores and nothing else is reported,
    // but for the damaged pack (until a prune removes it).
    let again = run(&env, &repo, None, &["repair", "snapshots"]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
}

#[test]
fn a_damaged_manifest_is_skipped_with_a_warning() {
    let env = Env::new();
    let repo = local(&env, "repo", "a password");
    ok(&env, &repo, None, &["init", "--kdf-memory", "8", "-q"]);
    let files = env.path("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), fill(1, 1000)).unwrap();
    ok(
        &env,
        &repo,
        None,
        &["backup", "-q", files.to_str().unwrap()],
    );
    let bogus = PathBuf::from(&repo.location)
        .join("snapshots")
        .join("ab".repeat(32));
    std::fs::write(&bogus, b"not a snapshot").unwrap();
    let out = ok(&env, &repo, None, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains(&"ab".repeat(32)),
        "{err}"
    );
    let restored = env.path("r");
    ok(
        &env,
        &repo,
        None,
        &[
            "restore",
            "-q",
            "latest",
            "--target",
            restored.to_str().unwrap(),
        ],
    );
}
