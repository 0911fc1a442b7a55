//! Finding the test SFTP server (started by scripts/test-servers/sftp.sh)
//! and making a fresh repository directory on it for each test.
//!
//! Without the server's environment a test prints a note and passes, so
//! `cargo test` works on a machine without sshd; with
//! `CAIRN_REQUIRE_SERVERS=1` or `CI` set it fails instead, so CI cannot
//! pass by skipping.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use cairn_sftp::{SftpBackend, SftpLocation, SftpOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What the tests need to reach the server.
pub struct Server {
    /// The base directory on the server; tests work in fresh subdirectories.
    pub base: SftpLocation,
    /// Options that log in with the test key and check the test host key.
    pub opts: SftpOptions,
    /// The private key that the server accepts.
    pub key_file: PathBuf,
    /// The known_hosts file that lists the server's key.
    pub known_hosts: PathBuf,
}

/// Whether a missing server must fail the test rather than skip it.
fn required() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CAIRN_REQUIRE_SERVERS") || set("CI")
}

/// The test server, or `None` (after printing why) when it is not
/// configured and not required.
pub fn server(test: &str) -> Option<Server> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(key), Some(known)) = (
        var("CAIRN_TEST_SFTP_URL"),
        var("CAIRN_SFTP_KEY_FILE"),
        var("CAIRN_SFTP_KNOWN_HOSTS"),
    ) else {
        let msg = "the SFTP test server is not configured (CAIRN_TEST_SFTP_URL, \
                   CAIRN_SFTP_KEY_FILE, CAIRN_SFTP_KNOWN_HOSTS); start it with \
                   eval \"$(scripts/test-servers/sftp.sh start)\"";
        if required() {
            panic!("{test}: {msg} (required: CAIRN_REQUIRE_SERVERS or CI is set)");
        }
        // Straight to stderr, past the test harness's capture, so the skip
        // is visible in a normal run.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {msg}");
        return None;
    };
    let base = SftpLocation::parse(&url).expect("CAIRN_TEST_SFTP_URL");
    let opts = SftpOptions {
        key_files: vec![PathBuf::from(&key)],
        passphrase_file: None,
        use_agent: false,
        agent_socket: None,
        known_hosts: Some(PathBuf::from(&known)),
        accept_new_host_key: false,
        connections: 4,
        timeout: Duration::from_secs(30),
    };
    Some(Server {
        base,
        opts,
        key_file: key.into(),
        known_hosts: known.into(),
    })
}

impl Server {
    /// A location for a directory that does not exist yet, unique to this
    /// process and call.
    pub fn fresh_location(&self, tag: &str) -> SftpLocation {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut loc = self.base.clone();
        loc.path = format!("{}/{tag}-{}-{nanos}-{n}", loc.path, std::process::id());
        loc
    }

    /// A freshly created, empty repository directory.
    pub fn fresh(&self, tag: &str) -> SftpBackend {
        SftpBackend::create(&self.fresh_location(tag), &self.opts).expect("create")
    }

    /// Where `loc` is on this machine's filesystem (the test server runs
    /// here), if it is there.
    pub fn local_path(&self, loc: &SftpLocation) -> Option<PathBuf> {
        let path = PathBuf::from(&loc.path);
        (path.is_absolute() && path.exists()).then_some(path)
    }
}

/// Every `.tmp-*` file under `root`.
pub fn temp_files(root: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(entry.path());
            }
        }
    }
    found
}
