#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end: `scripts/build-deb.sh` packages the real binary with
//! dpkg-deb; the package names itself, declares the configuration a
//! conffile, holds the binary, a 0600 configuration and a 0700 state
//! directory, and the binary it holds runs. Skipped (with a note) where
//! dpkg-deb is missing, unless CI or CAIRN_REQUIRE_SERVERS says it must run.

use std::path::Path;
use std::process::Command;

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_debian_package_holds_a_working_cairn_and_a_private_configuration() {
    let required =
        std::env::var_os("CI").is_some() || std::env::var_os("CAIRN_REQUIRE_SERVERS").is_some();
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        assert!(!required, "dpkg-deb is missing (apt-get install dpkg)");
        println!("note: dpkg-deb is missing; not testing the Debian package");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-deb.sh");
    let out = Command::new(&script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8(out.stdout).unwrap();
    let deb = Path::new(deb.trim());
    assert!(deb.starts_with(dir.path()) && deb.exists(), "{deb:?}");

    let control = dpkg_deb(&["--field"], deb);
    assert!(control.contains("Package: cairn\n"), "{control}");
    assert!(control.contains("Version: 0."), "{control}");
    let conffiles = dpkg_deb(&["--info"], deb);
    assert!(conffiles.contains("conffiles"), "{conffiles}");
    let listing = dpkg_deb(&["--contents"], deb);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
            .to_string()
    };
    assert!(line(" ./usr/bin/cairn").starts_with("-rwxr-xr-x root/root"));
    assert!(line(" ./etc/cairn/cairn.toml").starts_with("-rw------- root/root"));
    assert!(line(" ./var/lib/cairn/").starts_with("drwx------ root/root"));
    assert!(line(" ./").starts_with("drwxr-xr-x"), "the root stays 0755");

    let root = dir.path().join("root");
    dpkg_deb(&["-x", deb.to_str().unwrap()], &root);
    let version = Command::new(root.join("usr/bin/cairn"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("cairn "));
    let config = std::fs::read_to_string(root.join("etc/cairn/cairn.toml")).unwrap();
    assert!(config.contains("[jobs"), "{config}");
}
