#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: `cairn synth` of a fragmented disk
//! snapshot (incrementals full of patches) and of a file snapshot; each
//! synthetic snapshot restores byte for byte, `cairn stats` shows the
//! locality before and after, `cairn check` is clean afterwards, and
//! `cairn export` writes the disk image to stdout or a file, and a file
//! snapshot as a tar.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{Env, fill, same_tree};

const IMAGE: usize = 8 << 20;

/// Rewrites 50 scattered 4 KiB blocks of the image, differently per round.
fn scatter(image: &Path, round: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    let blocks = (IMAGE / 4096) as u64;
    for i in 0..50u64 {
        let block = (i * 7_919 + round * 104_729) % blocks;
        f.write_all_at(&fill(round * 1_000 + i, 4096), block * 4096)
            .unwrap();
    }
}

fn snapshot_count(env: &Env) -> usize {
    env.json(&["snapshots", "--json"]).as_array().unwrap().len()
}

#[test]
fn synth_of_a_fragmented_disk_snapshot_restores_exactly_and_checks_clean() {
    let env = Env::new();
    let image = env.path("disk.img");
    let mut data = fill(1, IMAGE);
    data[IMAGE / 2..IMAGE / 2 + (1 << 20)]
        .copy_from_slice(&b"text that compresses ".repeat(1 << 20)[..1 << 20]);
    std::fs::write(&image, &data).unwrap();
    env.ok(&["init"]);
    let img = image.to_str().unwrap();
    env.ok(&["backup", "-q", "--disk", img]);
    for round in 1..=4 {
        scatter(&image, round);
        env.ok(&["backup", "-q", "--disk", img]);
    }
    assert_eq!(snapshot_count(&env), 5);
    let before = env.json(&["stats", "latest", "--json"]);
    let patches = before["fragmentation"]["patches"].as_u64().unwrap();
    assert!(patches > 0, "{before}");

    let report = env.json(&["synth", "latest", "--json"]);
    assert_eq!(
        report["patches_rewritten"].as_u64(),
        Some(patches),
        "{report}"
    );
    assert_eq!(report["after"]["patches"].as_u64(), Some(0), "{report}");
    assert_eq!(report["original_removed"].as_bool(), Some(true), "{report}");
    // The snapshot's size bounds what the rewrite stores.
    assert!(
        report["bytes_rewritten"].as_u64().unwrap() <= report["before"]["bytes"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(
        snapshot_count(&env),
        5,
        "the synthetic manifest replaces the original"
    );
    let after = env.json(&["stats", "latest", "--json"]);
    assert_eq!(
        after["fragmentation"]["patches"].as_u64(),
        Some(0),
        "{after}"
    );
    let latest = env.json(&["snapshots", "--json", "--tag", "synthetic"]);
    assert_eq!(latest.as_array().unwrap().len(), 1, "{latest}");

    let out = env.path("restored.img");
    env.ok(&["restore", "latest", "--disk-to", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&image).unwrap());
    env.ok(&["check", "--read-data"]);
    // Prune reclaims the old copies; every snapshot still restores.
    let before_prune = env.json(&["stats", "--json"])["repository_bytes"]
        .as_u64()
        .unwrap();
    env.ok(&["prune", "--max-unused", "0%"]);
    let after_prune = env.json(&["stats", "--json"])["repository_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        after_prune < before_prune,
        "{before_prune} -> {after_prune}"
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "latest", "--disk-to", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&image).unwrap());
    // Laid out well now: a second synth moves nothing.
    let again = env.json(&["synth", "latest", "--json"]);
    assert_eq!(again["blobs_rewritten"].as_u64(), Some(0), "{again}");

    // The backup policy: a threshold of 0 synthesises every new snapshot.
    scatter(&image, 5);
    let out_backup = env.ok(&["backup", "--disk", img, "--synth-above", "0"]);
    let said = String::from_utf8_lossy(&out_backup.stderr);
    assert!(said.contains("synth: spread"), "{said}");
    let synthetic = env.json(&["snapshots", "--json", "--tag", "synthetic"]);
    assert_eq!(synthetic.as_array().unwrap().len(), 2, "{synthetic}");
    let now = env.json(&["stats", "latest", "--json"]);
    assert_eq!(now["fragmentation"]["patches"].as_u64(), Some(0), "{now}");
    env.ok(&["restore", "latest", "--disk-to", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&image).unwrap());

    // Export: the image to standard output, and to a file.
    let piped = env.ok(&["export", "latest"]).stdout;
    assert!(
        piped == std::fs::read(&image).unwrap(),
        "exported image differs"
    );
    let file = env.path("exported.img");
    env.ok(&["export", "-q", "latest", "-o", file.to_str().unwrap()]);
    assert!(std::fs::read(&file).unwrap() == std::fs::read(&image).unwrap());
}

#[test]
fn synth_of_a_file_snapshot_restores_the_tree() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..4u64 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..6u64 {
            std::fs::write(
                dir.join(format!("f{f}")),
                fill(d * 10 + f, 20_000 + (f as usize) * 30_000),
            )
            .unwrap();
        }
    }
    env.ok(&["init"]);
    let s = src.to_str().unwrap();
    env.ok(&["backup", "-q", s]);
    for d in 0..4u64 {
        std::fs::write(src.join(format!("d{d}/f1")), fill(900 + d, 70_000)).unwrap();
        std::fs::write(src.join(format!("d{d}/new")), fill(950 + d, 10_000)).unwrap();
    }
    env.ok(&["backup", "-q", s]);
    // Everything moved (a full rewrite), the original kept.
    let report = env.json(&[
        "synth",
        "latest",
        "--min-pack-use",
        "1",
        "--keep-original",
        "--json",
    ]);
    assert!(report["blobs_rewritten"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["original_removed"].as_bool(),
        Some(false),
        "{report}"
    );
    assert_eq!(snapshot_count(&env), 3);
    let id = report["snapshot"].as_str().unwrap();
    let target = env.path("restored");
    env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
    same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    env.ok(&["check", "--read-data"]);
    // A synthetic file snapshot exports as a tar (export_e2e.rs checks
    // archives in detail): --disk is refused for it, saying why.
    let refused = env.cairn(&["export", id, "--disk", "vda"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("file snapshot"));
    let tar = env.ok(&["export", id]).stdout;
    assert!(tar.len() > 4 * 70_000, "{} bytes", tar.len());
}
