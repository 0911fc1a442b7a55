#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Secrets stay secret, through the real binary: with a distinctive
//! password and a distinctive raw key, `init`, `backup`, `restore`,
//! `check`, `snapshots`, `key add/list` and failing runs (wrong password),
//! each with `--json` and `-v`, never print the password or key (raw, hex
//! or base64) on standard output or error; no file of the repository or
//! the cache holds them (key files hold them only wrapped); a running
//! cairn's command line and environment do not hold them (they come from a
//! file or a command); key files, cache files and cache directories are
//! private to their owner.

mod common;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::fill;

const PASSWORD: &str = "Zq7~cairn-secret-pass-phrase~9Kx";
const NEW_PASSWORD: &str = "Second-Secret-pass-phrase~4Rt";

/// The raw key: 32 distinctive bytes.
fn raw_key() -> Vec<u8> {
    fill(0x5ec2e7, 32)
}

/// The forms a secret could leak in: as is, hex (both cases), base64.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64(secret).into_bytes(),
    ]
}

/// Standard base64 with padding (a few lines; no dependency for a test).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    fn all() -> Secrets {
        let mut v = forms(PASSWORD.as_bytes());
        v.extend(forms(NEW_PASSWORD.as_bytes()));
        v.extend(forms(&raw_key()));
        Secrets(v)
    }

    fn assert_absent(&self, what: &str, bytes: &[u8]) {
        for s in &self.0 {
            assert!(
                !contains(bytes, s),
                "{what} holds a secret ({})",
                String::from_utf8_lossy(s)
            );
        }
    }
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).unwrap();
        fs::write(secrets.join("pw"), format!("{PASSWORD}\n")).unwrap();
        fs::write(secrets.join("new-pw"), format!("{NEW_PASSWORD}\n")).unwrap();
        fs::write(secrets.join("raw.key"), raw_key()).unwrap();
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn args` on repository `repo`, with the password (or with the
    /// raw key when `raw`).
    fn command(&self, repo: &str, raw: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .env("CAIRN_REPO", self.path(repo))
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env("CAIRN_NEW_PASSWORD_FILE", self.path("secrets/new-pw"))
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_KEY_FILE");
        if raw {
            cmd.env("CAIRN_KEY_FILE", self.path("secrets/raw.key"));
        } else {
            cmd.env("CAIRN_PASSWORD_FILE", self.path("secrets/pw"));
        }
        cmd
    }

    fn run(&self, repo: &str, raw: bool, args: &[&str]) -> Output {
        self.command(repo, raw, args).output().unwrap()
    }
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn no_secret_in_output_files_or_process_arguments() {
    let site = Site::new();
    let secrets = Secrets::all();
    let src = site.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/data"), fill(1, 300_000)).unwrap();
    let src_s = src.to_str().unwrap().to_string();
    let restored = site.path("restored");
    let restored_s = restored.to_str().unwrap().to_string();

    let mut outputs: Vec<(String, Output)> = Vec::new();
    for (repo, raw) in [("pw-repo", false), ("raw-repo", true)] {
        let steps: [&[&str]; 10] = [
            &["init", "--kdf-memory", "8", "--json", "-v"],
            &["backup", "--json", "-v", &src_s],
            &["backup", "-v", &src_s],
            &["snapshots", "--json", "-v"],
            &["restore", "latest", "--json", "-v", "--target", &restored_s],
            &["check", "--read-data", "--json", "-v"],
            &["check", "-v"],
            &["key", "add", "--kdf-memory", "8", "--json", "-v"],
            &["key", "list", "--json", "-v"],
            &["key", "list", "-v"],
        ];
        for args in steps {
            let out = site.run(repo, raw, args);
            assert!(
                out.status.success(),
                "{repo}: cairn {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            outputs.push((format!("{repo}: cairn {args:?}"), out));
            let _ = fs::remove_dir_all(&restored);
        }
    }
    // Failing runs: a wrong password on the raw-key repository, the raw key
    // on the password repository, a wrong password file.
    for (repo, raw) in [("raw-repo", false), ("pw-repo", true)] {
        let out = site.run(repo, raw, &["snapshots", "--json", "-v"]);
        assert_eq!(out.status.code(), Some(11), "{repo}");
        outputs.push((format!("{repo}: wrong secret"), out));
    }
    for (what, out) in &outputs {
        secrets.assert_absent(&format!("{what}: stdout"), &out.stdout);
        secrets.assert_absent(&format!("{what}: stderr"), &out.stderr);
    }

    // No file of the repositories or the cache holds a secret.
    for dir in ["pw-repo", "raw-repo", "cache"] {
        for f in files(&site.path(dir)) {
            secrets.assert_absent(&f.display().to_string(), &fs::read(&f).unwrap());
        }
    }
    // Key files and cache files are the owner's alone, and so are the
    // cache's directories.
    for repo in ["pw-repo", "raw-repo"] {
        let keys = files(&site.path(repo).join("keys"));
        assert_eq!(keys.len(), 2, "{repo}: the first key and the added one");
        for k in keys {
            assert_eq!(mode(&k) & 0o077, 0, "{}: {:o}", k.display(), mode(&k));
        }
    }
    for f in files(&site.path("cache")) {
        assert_eq!(mode(&f) & 0o077, 0, "{}: {:o}", f.display(), mode(&f));
    }
    let mut stack = vec![site.path("cache")];
    while let Some(d) = stack.pop() {
        assert_eq!(mode(&d) & 0o077, 0, "{}: {:o}", d.display(), mode(&d));
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }

    // A running cairn: a disk backup of a fifo blocks in opening the
    // source, after the repository is open (the secret read and used).
    let fifo = site.path("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (repo, raw) in [("pw-repo", false), ("raw-repo", true)] {
        let mut child = site
            .command(repo, raw, &["backup", "--disk", fifo.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
        // Until the process has opened the repository, its arguments are
        // already final; read them and the environment while it waits.
        let cmdline = fs::read(proc_dir.join("cmdline")).unwrap();
        let environ = fs::read(proc_dir.join("environ")).unwrap();
        // Let it go on: open the fifo's write end (without blocking: that
        // fails until a reader has it open) and close it at once.
        for _ in 0..6000 {
            let opened = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            if opened.is_ok() || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        secrets.assert_absent(&format!("{repo}: /proc/pid/cmdline"), &cmdline);
        secrets.assert_absent(&format!("{repo}: /proc/pid/environ"), &environ);
    }
}
