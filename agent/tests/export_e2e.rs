#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, through the real binary: `cairn export` of a file snapshot
//! writes a tar archive that GNU tar (a system without cairn) extracts into
//! the same tree: contents, symlinks, hardlinks, fifos, modes, mtimes and
//! extended attributes, long names included; standard output and `-o FILE`
//! carry the same bytes; a socket is left out with a warning (exit 3).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{Env, fill, same_tree};

/// Builds the source tree; returns whether user xattrs could be set.
fn make_tree(src: &Path) -> bool {
    let long = src.join("n".repeat(150)).join("m".repeat(200));
    std::fs::create_dir_all(&long).unwrap();
    std::fs::write(long.join("deep.txt"), b"at the end of a long path").unwrap();
    let mut big = fill(1, 5 << 20);
    big[(2 << 20)..(3 << 20)].fill(0);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::create_dir(src.join("many")).unwrap();
    for i in 0..100u64 {
        std::fs::write(
            src.join(format!("many/f{i:03}")),
            fill(10 + i, 500 + i as usize * 37),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("big.bin", src.join("link")).unwrap();
    std::os::unix::fs::symlink("x/".repeat(70), src.join("long-link")).unwrap();
    std::fs::hard_link(src.join("many/f007"), src.join("hard")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o620),
    )
    .unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o604)).unwrap();
    let xattrs = rustix::fs::setxattr(
        src.join("big.bin"),
        "user.cairn.export",
        b"exported value",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    // A fixed mtime with nanoseconds, which the archive carries in pax.
    let when = rustix::fs::Timespec {
        tv_sec: 1_700_000_000,
        tv_nsec: 123_456_789,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        src.join("many/f001"),
        &rustix::fs::Timestamps {
            last_access: when,
            last_modification: when,
        },
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    xattrs
}

fn gnu_tar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_snapshot_exports_as_a_tar_that_gnu_tar_extracts_to_the_same_tree() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let xattrs = make_tree(&src);
    env.ok(&["init"]);
    env.ok(&["backup", "-q", src.to_str().unwrap()]);

    let archive = env.path("snap.tar");
    env.ok(&["export", "-q", "latest", "-o", archive.to_str().unwrap()]);
    let piped = env.ok(&["export", "latest"]).stdout;
    assert!(
        piped == std::fs::read(&archive).unwrap(),
        "standard output and -o differ"
    );

    let out = env.path("out");
    gnu_tar(&archive, &out);
    let got = out.join(src.strip_prefix("/").unwrap());
    let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert!(meta(&got.join("fifo")).file_type().is_fifo());
    assert_eq!(
        meta(&got.join("fifo")).mode() & 0o7777,
        meta(&src.join("fifo")).mode() & 0o7777
    );
    // diff reports any two fifos as different: compare the rest.
    std::fs::remove_file(src.join("fifo")).unwrap();
    std::fs::remove_file(got.join("fifo")).unwrap();
    same_tree(&src, &got);
    assert_eq!(meta(&got.join("empty")).mode() & 0o7777, 0o604);
    assert_eq!(
        meta(&got.join("hard")).ino(),
        meta(&got.join("many/f007")).ino(),
        "the hardlink is a hardlink again"
    );
    let f001 = meta(&got.join("many/f001"));
    assert_eq!(
        (f001.mtime(), f001.mtime_nsec()),
        (1_700_000_000, 123_456_789)
    );
    assert_eq!(
        std::fs::read_link(got.join("long-link")).unwrap(),
        Path::new(&"x/".repeat(70))
    );
    if xattrs {
        let mut value = vec![0u8; 64];
        let n = rustix::fs::getxattr(got.join("big.bin"), "user.cairn.export", &mut value)
            .expect("the xattr came back");
        assert_eq!(&value[..n], b"exported value");
    } else {
        println!("note: the temporary file system refuses user xattrs; not testing them");
    }
}

#[test]
fn a_socket_is_left_out_with_a_warning() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), b"kept").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    env.ok(&["init"]);
    env.ok(&["backup", "-q", src.to_str().unwrap()]);
    let archive = env.path("snap.tar");
    let run = env.cairn(&["export", "-q", "latest", "-o", archive.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("sock") && stderr.contains("socket"),
        "{stderr}"
    );
    let out = env.path("out");
    gnu_tar(&archive, &out);
    let got = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(got.join("file")).unwrap(), b"kept");
    assert!(!got.join("sock").exists());
}
