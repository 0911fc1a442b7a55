//! The SFTP backend against a real OpenSSH sshd: host-key and key checks,
//! create-only races, dropped and stalled connections, stale temp files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_sftp::{SftpBackend, SftpOptions};
use cairn_store::{Backend, BackendError, Handle, Id, ObjectKind};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn pack(tag: &str) -> Handle {
    Handle::new(ObjectKind::Pack, &Id::of_object(tag.as_bytes()))
}

/// The message of a connect error, which must be a Service error.
fn service_message(r: Result<SftpBackend, BackendError>) -> (String, bool) {
    match r {
        Err(e @ BackendError::Service { .. }) => {
            eprintln!("refused as expected: {e}");
            (e.to_string(), e.is_transient())
        }
        Err(e) => panic!("expected a service error, got {e:?}"),
        Ok(b) => panic!("connected to {b:?}, expected a refusal"),
    }
}

/// A new ed25519 key pair (no passphrase unless given) in `dir`.
fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "cairn-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(status.success());
    path
}

#[test]
fn racing_writers_of_one_object_have_exactly_one_winner() {
    let Some(mut server) = common::server("racing_writers") else {
        return;
    };
    server.opts.connections = 8;
    let backend = server.fresh("race");
    const THREADS: usize = 12;
    for round in 0..5 {
        let h = pack(&format!("race {round}"));
        let payloads: Vec<Vec<u8>> = (0..THREADS)
            .map(|t| vec![t as u8; 256 * 1024 + t])
            .collect();
        let barrier = Barrier::new(THREADS);
        let results: Vec<_> = std::thread::scope(|s| {
            let workers: Vec<_> = payloads
                .iter()
                .map(|data| {
                    let (h, b, backend) = (&h, &barrier, &backend);
                    s.spawn(move || {
                        b.wait();
                        backend.write_new(h, data)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter_map(|(t, r)| match r {
                Ok(()) => Some(t),
                Err(BackendError::AlreadyExists { .. }) => None,
                Err(e) => panic!("round {round}, thread {t}: {e:?}"),
            })
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(backend.read(&h).unwrap(), payloads[winners[0]]);
    }
    if let Some(root) = server.local_path(backend.sftp_location()) {
        assert!(common::temp_files(&root).is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}

#[test]
fn a_missing_repository_directory_is_not_found() {
    let Some(server) = common::server("missing_directory") else {
        return;
    };
    let loc = server.fresh_location("missing");
    let r = SftpBackend::connect(&loc, &server.opts);
    assert!(matches!(r, Err(BackendError::NotFound { .. })), "{r:?}");
    // And a repository whose directory vanishes lists as NotFound, not empty.
    let backend = SftpBackend::create(&loc, &server.opts).unwrap();
    SftpBackend::connect(&loc, &server.opts).unwrap();
    if let Some(root) = server.local_path(&loc) {
        std::fs::remove_dir_all(root).unwrap();
        let r = backend.list(ObjectKind::Snapshot);
        assert!(matches!(r, Err(BackendError::NotFound { .. })), "{r:?}");
    }
}

#[test]
fn an_unknown_host_key_is_refused_unless_trust_on_first_use_is_asked_for() {
    let Some(mut server) = common::server("unknown_host_key") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("ssh/known_hosts");
    server.opts.known_hosts = Some(known.clone());
    let loc = server.base.clone();
    let (msg, transient) = service_message(SftpBackend::connect(&loc, &server.opts));
    assert!(!transient, "{msg}");
    assert!(msg.contains("unknown host key"), "{msg}");
    assert!(msg.contains("SHA256:"), "{msg}");
    assert!(msg.contains("ssh-keyscan -p"), "{msg}");
    assert!(msg.contains("CAIRN_SFTP_ACCEPT_NEW_HOST_KEY=1"), "{msg}");
    assert!(!known.exists(), "a refused key was recorded");

    server.opts.accept_new_host_key = true;
    SftpBackend::connect(&loc, &server.opts).expect("trust on first use");
    let recorded = std::fs::read_to_string(&known).unwrap();
    assert!(recorded.starts_with("[127.0.0.1]:"), "{recorded}");
    // The recorded key is the one in the server's own known_hosts line.
    let want = std::fs::read_to_string(&server.known_hosts).unwrap();
    assert_eq!(recorded.trim(), want.trim());

    server.opts.accept_new_host_key = false;
    SftpBackend::connect(&loc, &server.opts).expect("the key is known now");
}

#[test]
fn hashed_known_hosts_entries_are_understood() {
    let Some(mut server) = common::server("hashed_known_hosts") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::copy(&server.known_hosts, &known).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&known)
        .status()
        .unwrap();
    assert!(status.success());
    let hashed = std::fs::read_to_string(&known).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    server.opts.known_hosts = Some(known);
    SftpBackend::connect(&server.base, &server.opts).expect("a hashed entry matches");
}

#[test]
fn a_changed_host_key_is_refused_even_with_trust_on_first_use() {
    let Some(mut server) = common::server("changed_host_key") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other = keygen(dir.path(), "other_host_key", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let listed = std::fs::read_to_string(&server.known_hosts).unwrap();
    let host = listed.split_whitespace().next().unwrap();
    let fields: Vec<&str> = other_pub.split_whitespace().collect();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "# comment\n@cert-authority * ssh-ed25519 AAAA\nbadline\n{host} {} {}\n",
            fields[0], fields[1]
        ),
    )
    .unwrap();
    server.opts.known_hosts = Some(known.clone());
    server.opts.accept_new_host_key = true;
    let (msg, transient) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(!transient, "{msg}");
    assert!(msg.contains("HOST KEY MISMATCH"), "{msg}");
    assert!(msg.contains("ssh-keygen -R"), "{msg}");
    // Nothing was added to the file.
    assert_eq!(std::fs::read_to_string(&known).unwrap().lines().count(), 4);
}

#[test]
fn a_key_the_server_does_not_accept_is_refused_clearly() {
    let Some(mut server) = common::server("wrong_key") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = keygen(dir.path(), "wrong_key", "");
    server.opts.key_files = vec![wrong.clone()];
    let (msg, transient) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(!transient, "{msg}");
    assert!(msg.contains("refused every key"), "{msg}");
    assert!(msg.contains(&wrong.display().to_string()), "{msg}");
    assert!(msg.contains("authorized_keys"), "{msg}");

    server.opts.key_files = vec![dir.path().join("no-such-key")];
    let (msg, _) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(msg.contains("no key could be used"), "{msg}");
    assert!(msg.contains("no-such-key: no such key file"), "{msg}");
}

/// A private ssh-agent on a socket in `dir`, holding `keys`; killed on drop.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path, keys: &[&Path]) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) must be installed");
        let agent = Agent { child, socket };
        let started = Instant::now();
        while !agent.socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no agent socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for key in keys {
            let status = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .status()
                .unwrap();
            assert!(status.success(), "ssh-add {}", key.display());
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn keys_held_by_ssh_agent_log_in() {
    let Some(mut server) = common::server("ssh_agent") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = keygen(dir.path(), "wrong_key", "");
    // The agent holds a key the server refuses, then the right one.
    let agent = Agent::start(dir.path(), &[&wrong, &server.key_file]);
    server.opts.use_agent = true;
    server.opts.agent_socket = Some(agent.socket.clone());
    server.opts.key_files = vec![dir.path().join("no-such-key")];
    let backend = SftpBackend::connect(&server.base, &server.opts).expect("agent login");
    drop(backend);

    // An agent with only a refused key: its keys are named in the message.
    let other = tempfile::tempdir().unwrap();
    let agent = Agent::start(other.path(), &[&wrong]);
    server.opts.agent_socket = Some(agent.socket.clone());
    let (msg, transient) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(!transient, "{msg}");
    assert!(msg.contains("ssh-agent key"), "{msg}");
    assert!(msg.contains("no-such-key: no such key file"), "{msg}");
}

#[test]
fn an_encrypted_key_needs_its_passphrase_file() {
    let Some(mut server) = common::server("encrypted_key") else {
        return;
    };
    let Ok(state) = std::env::var("CAIRN_TEST_SFTP_DIR") else {
        eprintln!("SKIPPED encrypted_key: CAIRN_TEST_SFTP_DIR (the server's state) is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "locked_key", "correct horse");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(Path::new(&state).join("authorized_keys"))
        .unwrap()
        .write_all(public.as_bytes())
        .unwrap();
    server.opts.key_files = vec![key];

    let (msg, _) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(msg.contains("CAIRN_SFTP_KEY_PASSPHRASE_FILE"), "{msg}");

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "battery staple\n").unwrap();
    server.opts.passphrase_file = Some(wrong);
    let (msg, _) = service_message(SftpBackend::connect(&server.base, &server.opts));
    assert!(msg.contains("CAIRN_SFTP_KEY_PASSPHRASE_FILE"), "{msg}");

    let right = dir.path().join("right");
    std::fs::write(&right, "correct horse\n").unwrap();
    server.opts.passphrase_file = Some(right);
    SftpBackend::connect(&server.base, &server.opts).expect("the right passphrase");
}

#[test]
fn a_closed_port_fails_fast_as_transient() {
    let Some(server) = common::server("closed_port") else {
        return;
    };
    // Port 1 (tcpmux) is privileged and unused on any test machine; a
    // port that was "just free" could be taken by another test's relay.
    let mut loc = server.base.clone();
    loc.port = 1;
    let started = Instant::now();
    let (msg, transient) = service_message(SftpBackend::connect(&loc, &server.opts));
    assert!(transient, "{msg}");
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let Some(mut server) = common::server("stalled_server") else {
        return;
    };
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let mut loc = server.base.clone();
    loc.port = port;
    server.opts.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let (msg, transient) = service_message(SftpBackend::connect(&loc, &server.opts));
    let took = started.elapsed();
    assert!(transient, "{msg}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {msg}");
    assert!(msg.to_lowercase().contains("time"), "{msg}");
}

/// A TCP relay to the sshd whose connections the test can cut.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    /// While set, bytes are held back (a server or network that hangs).
    frozen: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop2, streams2) = (Arc::clone(&stop), Arc::clone(&streams));
        let frozen2 = Arc::clone(&frozen);
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut held = streams2.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(upstream.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let frozen = Arc::clone(&frozen2);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            while frozen.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            port,
            stop,
            frozen,
            streams,
        }
    }

    /// Holds back every byte until [`Relay::thaw`].
    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Lets bytes through again.
    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Options for connecting through the relay: the server's host key
    /// listed for the relay's port (known_hosts entries are per port).
    fn options(&self, server: &common::Server, dir: &Path) -> SftpOptions {
        let listed = std::fs::read_to_string(&server.known_hosts).unwrap();
        let key = listed.split_once(' ').unwrap().1;
        let known = dir.join("known_hosts");
        std::fs::write(&known, format!("[127.0.0.1]:{} {key}", self.port)).unwrap();
        let mut opts = server.opts.clone();
        opts.known_hosts = Some(known);
        opts
    }

    /// Cuts every relayed connection (as a crashed server or a network
    /// failure would).
    fn cut(&self) {
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Stops accepting new connections.
    fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dropped_connection_is_replaced_once_and_a_dead_server_gives_a_clear_error() {
    let Some(mut server) = common::server("dropped_connection") else {
        return;
    };
    let repo = server.fresh("dropped");
    let relay = Relay::start(server.base.port);
    let mut loc = repo.sftp_location().clone();
    loc.port = relay.port;
    let dir = tempfile::tempdir().unwrap();
    server.opts = relay.options(&server, dir.path());
    server.opts.connections = 2;
    server.opts.timeout = Duration::from_secs(5);
    let backend = SftpBackend::connect(&loc, &server.opts).unwrap();
    let a = pack("dropped a");
    backend.write_new(&a, b"before the cut").unwrap();

    // The pooled connection dies while idle: the next calls reconnect.
    relay.cut();
    assert_eq!(backend.read(&a).unwrap(), b"before the cut");
    relay.cut();
    let b = pack("dropped b");
    backend.write_new(&b, b"after the cut").unwrap();
    relay.cut();
    assert_eq!(backend.list(ObjectKind::Pack).unwrap().len(), 2);
    relay.cut();
    backend.delete(&b).unwrap();
    assert!(backend.stat(&b).unwrap_err().is_not_found());

    // The server goes away for good: a clear, transient error, quickly.
    relay.close();
    relay.cut();
    let started = Instant::now();
    let e = backend.read(&a).unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let msg = e.to_string();
    eprintln!("failed as expected: {msg}");
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let e = backend.write_new(&b, b"never").unwrap_err();
    assert!(e.is_transient(), "{e:?}");

    // The object written before is intact on the real server.
    assert_eq!(repo.read(&a).unwrap(), b"before the cut");
    if let Some(root) = server.local_path(repo.sftp_location()) {
        std::fs::remove_dir_all(root).unwrap();
    }
}

#[test]
fn a_server_that_hangs_mid_transfer_times_out_and_recovers() {
    let Some(server) = common::server("hung_transfer") else {
        return;
    };
    let repo = server.fresh("hung");
    let big = pack("hung big");
    let data = vec![7u8; 8 * 1024 * 1024];
    repo.write_new(&big, &data).unwrap();
    let relay = Relay::start(server.base.port);
    let mut loc = repo.sftp_location().clone();
    loc.port = relay.port;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = relay.options(&server, dir.path());
    opts.connections = 1;
    opts.timeout = Duration::from_secs(2);
    let backend = SftpBackend::connect(&loc, &opts).unwrap();
    assert_eq!(backend.stat(&big).unwrap().size, data.len() as u64);

    relay.freeze();
    for what in ["read", "write"] {
        let started = Instant::now();
        let e = match what {
            "read" => backend.read(&big).unwrap_err(),
            _ => backend.write_new(&pack("hung new"), &data).unwrap_err(),
        };
        let took = started.elapsed();
        eprintln!("{what} failed as expected after {took:?}: {e}");
        assert!(e.is_transient(), "{e:?}");
        // One timeout for the call, one for the retry's new connection,
        // and slack for a loaded machine; never an indefinite hang.
        assert!(took < Duration::from_secs(15), "{what} took {took:?}");
    }

    relay.thaw();
    assert_eq!(backend.read(&big).unwrap(), data);
    let fresh = pack("hung after");
    backend.write_new(&fresh, b"thawed").unwrap();
    assert_eq!(repo.read(&fresh).unwrap(), b"thawed");
    if let Some(root) = server.local_path(repo.sftp_location()) {
        std::fs::remove_dir_all(root).unwrap();
    }
}

/// Makes a directory immutable (`chattr +i`, which stops even root) until
/// dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(dir.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn permission_denied_is_permanent_and_names_the_object() {
    let Some(server) = common::server("permission_denied") else {
        return;
    };
    let backend = server.fresh("denied");
    let Some(root) = server.local_path(backend.sftp_location()) else {
        eprintln!("SKIPPED permission_denied: the server's directory is not on this machine");
        return;
    };
    let h = Handle::new(ObjectKind::Index, &Id::of_object(b"denied"));
    {
        let Some(_guard) = Immutable::set(&root.join("index")) else {
            eprintln!("SKIPPED permission_denied: chattr +i does not work here");
            return;
        };
        let e = backend.write_new(&h, b"index").unwrap_err();
        let msg = e.to_string();
        eprintln!("refused as expected: {msg}");
        assert!(!e.is_transient(), "{e:?}");
        assert!(matches!(e, BackendError::Service { .. }), "{e:?}");
        assert!(msg.contains(&h.to_string()), "{msg}");
        assert!(msg.contains("permission denied"), "{msg}");
    }
    backend.write_new(&h, b"index").unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn stale_temp_files_are_removed_and_fresh_ones_kept() {
    let Some(server) = common::server("stale_temp_files") else {
        return;
    };
    let backend = server.fresh("stale");
    let Some(root) = server.local_path(backend.sftp_location()) else {
        eprintln!("SKIPPED stale_temp_files: the server's directory is not on this machine");
        return;
    };
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    for path in ["data/ab/.tmp-0001", ".tmp-0002", "locks/.tmp-0003"] {
        let f = std::fs::File::create(root.join(path)).unwrap();
        f.set_modified(old).unwrap();
    }
    std::fs::File::create(root.join("index/.tmp-fresh")).unwrap();
    let h = pack("kept");
    backend.write_new(&h, b"object").unwrap();
    let removed = backend
        .remove_stale_temp_files(Duration::from_secs(3600))
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(
        common::temp_files(&root),
        vec![root.join("index/.tmp-fresh")]
    );
    assert_eq!(backend.read(&h).unwrap(), b"object");
    std::fs::remove_dir_all(root).unwrap();
}
