//! Deterministic test data for the reliability tests: versions of a small
//! file tree and of a disk image, and backing them up tagged by version.

use std::path::Path;

use super::fill;
use super::target::{Content, Target};

/// Version `v` of a small file tree: a third of the files change with
/// every version.
pub fn small_tree(root: &Path, v: u64) {
    std::fs::create_dir_all(root).unwrap();
    for f in 0..24u64 {
        let seed = if f % 3 == v % 3 { 100 * v + f } else { f };
        std::fs::write(
            root.join(format!("f{f}")),
            fill(seed, 40_000 + f as usize * 11_000),
        )
        .unwrap();
    }
}

/// Size of the disk images.
pub const IMAGE_MIB: usize = 4;

/// The disk image of `day`: random and compressible regions; each day
/// rewrites a MiB and scatters 4 KiB writes.
pub fn disk_image(day: u64) -> Vec<u8> {
    let mut image = Vec::with_capacity(IMAGE_MIB << 20);
    for mib in 0..IMAGE_MIB as u64 {
        if mib % 2 == 1 {
            image.extend(
                format!("row {mib} of a table that compresses well\n")
                    .bytes()
                    .cycle()
                    .take(1 << 20),
            );
        } else {
            image.extend(fill(mib, 1 << 20));
        }
    }
    for d in 1..=day {
        let region = (d as usize % IMAGE_MIB) << 20;
        image[region..region + (1 << 20)].copy_from_slice(&fill(1000 + d, 1 << 20));
        for i in 0..16u64 {
            let block = ((d * 7919 + i * 104_729) as usize % (IMAGE_MIB * 256)) * 4096;
            image[block..block + 4096].copy_from_slice(&fill(5000 + d * 100 + i, 4096));
        }
    }
    image
}

pub fn init(t: &Target) {
    t.ok(&["init", "--kdf-memory", "8", "--pack-size", "1", "-q"]);
}

/// Backs up version `v` of the tree at `<env>/src`, tagged `v<v>`.
pub fn backup_tree(t: &Target, v: u64) -> (String, Content) {
    let src = t.env.path("src");
    small_tree(&src, v);
    let tag = format!("v{v}");
    t.ok(&["backup", "-q", "--tag", &tag, src.to_str().unwrap()]);
    (tag, Content::tree(&src))
}

/// Backs up the image of `day` at `<env>/disk.img`, tagged `day<day>`.
pub fn backup_disk(t: &Target, day: u64) -> (String, Content) {
    let image = t.env.path("disk.img");
    std::fs::write(&image, disk_image(day)).unwrap();
    let tag = format!("day{day}");
    t.ok(&[
        "backup",
        "--disk",
        "-q",
        "--tag",
        &tag,
        image.to_str().unwrap(),
    ]);
    (tag, Content::disk(&image))
}
