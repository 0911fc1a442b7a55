#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: an ext4 disk image is backed up,
//! changed in place, backed up again, and both snapshots restore byte for
//! byte; the second backup stores a small fraction of the image. Also the
//! documented exit codes for a wrong password and a missing repository.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, fill};

const IMAGE_MIB: u64 = 64;

/// A tree of text and binary files, the content of the file system.
fn make_tree(root: &Path) {
    for d in 0..8u64 {
        let dir = root.join(format!("dir{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..12u64 {
            let seed = d * 100 + f;
            let data = if f % 3 == 0 {
                format!("line {seed} of a text file that compresses well\n")
                    .repeat(2000)
                    .into_bytes()
            } else {
                fill(seed, 50_000 + (seed as usize * 7919) % 400_000)
            };
            std::fs::write(dir.join(format!("file{f}")), data).unwrap();
        }
    }
}

fn mkfs(image: &Path, tree: &Path) {
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(tree)
        .arg(image)
        .arg(format!("{IMAGE_MIB}M"))
        .output()
        .expect("mkfs.ext4 (Debian package e2fsprogs) is needed by this test");
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Overwrites `blocks` scattered 4 KiB blocks inside the files' data, as a
/// database or a guest's page writes would.
fn scatter_writes(image: &Path, blocks: u64) -> Vec<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    let total = IMAGE_MIB * 256;
    let offsets: Vec<u64> = (0..blocks)
        .map(|i| (total / 8 + i * 7_919 % (total / 2)) * 4096)
        .collect();
    for (i, off) in offsets.iter().enumerate() {
        f.write_all_at(&fill(10_000 + i as u64, 4096), *off)
            .unwrap();
    }
    f.sync_all().unwrap();
    offsets
}

fn sha(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap())
}

#[test]
fn ext4_image_backup_change_backup_restore_both() {
    let env = Env::new();
    let tree = env.path("tree");
    make_tree(&tree);
    let image = env.path("disk.img");
    mkfs(&image, &tree);
    let v1 = env.path("v1.img");
    std::fs::copy(&image, &v1).unwrap();

    env.ok(&["init", "--kdf-memory", "8", "-q"]);
    let first = env.json(&["backup", "--disk", "--json", image.to_str().unwrap()]);
    let first_id = first["snapshot"].as_str().unwrap().to_string();

    // Change the disk in place: scattered block writes, and a file added
    // through the file system.
    scatter_writes(&image, 32);
    std::fs::write(env.path("new.txt"), fill(77, 100_000)).unwrap();
    let out = Command::new("debugfs")
        .args(["-w", "-R"])
        .arg(format!("write {} added.bin", env.path("new.txt").display()))
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = env.path("v2.img");
    std::fs::copy(&image, &v2).unwrap();

    let second = env.json(&["backup", "--disk", "--json", image.to_str().unwrap()]);
    let second_id = second["snapshot"].as_str().unwrap().to_string();
    let stored = second["stats"]["bytes_stored"].as_u64().unwrap();
    let image_bytes = IMAGE_MIB << 20;
    // 32 scattered 4 KiB writes and a 100 KB file: ~230 KB changed. Allow
    // the chunks around each write plus metadata, far below the image size.
    assert!(
        stored < image_bytes / 20,
        "second backup stored {stored} bytes"
    );
    assert!(first["stats"]["bytes_stored"].as_u64().unwrap() > stored * 5);

    for (id, original) in [(&first_id, &v1), (&second_id, &v2)] {
        let out = env.path(&format!("restored-{id}.img"));
        env.ok(&[
            "restore",
            id,
            "--disk-to",
            out.to_str().unwrap(),
            "--verify",
            "-q",
        ]);
        assert_eq!(
            sha(&out),
            sha(original),
            "snapshot {id} restored differently"
        );
        // Sparse: the restored image allocates less than its size.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&out).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len(),
            "restored image is not sparse"
        );
        let fsck = Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }

    // Rerunning a restore onto a complete image skips everything.
    let again = env.path(&format!("restored-{second_id}.img"));
    let rerun = env.json(&[
        "restore",
        &second_id,
        "--disk-to",
        again.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(rerun["stats"]["bytes_written"].as_u64(), Some(0), "{rerun}");
    assert_eq!(sha(&again), sha(&v2));

    let list = env.json(&["snapshots", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[test]
fn wrong_password_and_missing_repository_have_their_exit_codes() {
    let env = Env::new();
    let out = env.cairn(&["snapshots"]);
    assert_eq!(
        out.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["init", "--kdf-memory", "8", "-q"]);
    std::fs::write(env.path("pw"), "not the password\n").unwrap();
    let out = env.cairn(&["snapshots"]);
    assert_eq!(out.status.code(), Some(11));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong password"), "{err}");
}
