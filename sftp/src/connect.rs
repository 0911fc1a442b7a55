//! Opening one SSH connection with its SFTP channel: TCP with a timeout,
//! the handshake, the host-key check, then public-key authentication.
//!
//! The host key is checked against known_hosts *before* any key is offered,
//! and an unknown or changed key stops the connection with a message that
//! says how to verify and add the right key: a backup agent runs unattended,
//! so it cannot ask, and trusting silently would hand the repository to
//! whoever answers on that address. Trust on first use is an explicit
//! opt-in ([`SftpOptions::accept_new_host_key`]), and even then a key that
//! differs from a listed one is refused.

use crate::location::SftpLocation;
use crate::options::{
    ENV_ACCEPT_NEW_HOST_KEY, ENV_KEY_FILE, ENV_PASSPHRASE_FILE, ENV_TIMEOUT_SECS, SftpOptions,
};
use cairn_store::BackendError;
use ssh2::{CheckResult, HashType, KnownHostFileKind, MethodType, Session, Sftp};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;

/// libssh2 error codes this crate tells apart (`LIBSSH2_ERROR_*`).
pub(crate) mod code {
    pub(crate) const KEX_FAILURE: i32 = -5;
    pub(crate) const KEY_EXCHANGE_FAILURE: i32 = -8;
    pub(crate) const TIMEOUT: i32 = -9;
    pub(crate) const PROTO: i32 = -14;
    pub(crate) const FILE: i32 = -16;
    pub(crate) const METHOD_NONE: i32 = -17;
    pub(crate) const AUTHENTICATION_FAILED: i32 = -18;
    pub(crate) const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub(crate) const METHOD_NOT_SUPPORTED: i32 = -33;
    pub(crate) const PUBLICKEY_PROTOCOL: i32 = -36;
    pub(crate) const KEYFILE_AUTH_FAILED: i32 = -48;
    pub(crate) const ALGO_UNSUPPORTED: i32 = -51;
}

/// Host-key algorithms in OpenSSH's order of preference, so the key libssh2
/// negotiates is the one an `ssh` to the same host recorded in known_hosts
/// (libssh2's own order starts with ECDSA).
const HOST_KEY_PREFERENCE: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
                                   ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// Ciphers in OpenSSH's default order. Measured with libssh2 1.11 on
/// loopback (1.5 GiB moved, client CPU): chacha20-poly1305 6.3-6.8 s,
/// aes128-ctr 7.0-7.9 s, aes128-gcm 9.0-10.0 s, so libssh2's AES-GCM,
/// though one pass, is its slowest here.
const CIPHER_PREFERENCE: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,\
                                 aes128-gcm@openssh.com,aes256-gcm@openssh.com";

/// One authenticated SSH connection and its SFTP channel.
pub(crate) struct Conn {
    /// The SFTP channel (shares the session's lock).
    pub(crate) sftp: Sftp,
    /// The session; kept so it outlives the channel and can be disconnected.
    pub(crate) session: Session,
    /// The session's socket, to cut it after a timeout.
    tcp: TcpStream,
}

impl Conn {
    /// Cuts the connection. After a timeout libssh2 would otherwise wait
    /// the whole timeout again for the replies to closing the open file
    /// and the session; with the socket shut those fail at once.
    pub(crate) fn kill(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Best effort: a dead connection cannot say goodbye.
        let _ = self
            .session
            .disconnect(None, "cairn: connection closed", None);
    }
}

/// Opens a connection to `loc` as `user`.
pub(crate) fn connect(
    loc: &SftpLocation,
    user: &str,
    opts: &SftpOptions,
) -> Result<Conn, BackendError> {
    let target = format!("{user}@{}", host_port(loc));
    let tcp = tcp_connect(loc, opts, &target)?;
    let mut session = Session::new().map_err(|e| failed(&target, "start SSH", &e, true))?;
    let timeout_ms = u32::try_from(opts.timeout.as_millis()).unwrap_or(u32::MAX);
    session.set_timeout(timeout_ms);
    let tcp_handle = tcp
        .try_clone()
        .map_err(|e| service(&target, format!("cannot use the socket: {e}"), true))?;
    session.set_tcp_stream(tcp);
    let failed = |step: &str, e: &ssh2::Error, transient: bool| {
        let mut message = format!("{step}: {}", e.message());
        if e.code() == ssh2::ErrorCode::Session(code::TIMEOUT) {
            message.push_str(&format!(
                " (no answer within {} s: is an SSH server listening there, and is it \
                 overloaded? {ENV_TIMEOUT_SECS} sets the timeout)",
                opts.timeout.as_secs()
            ));
        }
        service(&target, message, transient)
    };
    // Unsupported names are dropped by libssh2; an error only means none is
    // left, and then the defaults apply.
    let _ = session.method_pref(MethodType::HostKey, HOST_KEY_PREFERENCE);
    for direction in [MethodType::CryptCs, MethodType::CryptSc] {
        let _ = session.method_pref(direction, CIPHER_PREFERENCE);
    }
    session.handshake().map_err(|e| {
        failed(
            "SSH handshake",
            &e,
            // A server that speaks no SSH or shares no algorithm will not
            // change its mind; a dropped or slow connection may.
            !matches!(
                e.code(),
                ssh2::ErrorCode::Session(
                    code::KEX_FAILURE
                        | code::KEY_EXCHANGE_FAILURE
                        | code::PROTO
                        | code::ALGO_UNSUPPORTED
                )
            ),
        )
    })?;
    check_host_key(&session, loc, opts, &target)?;
    authenticate(&session, user, opts, &target)?;

    let sftp = session.sftp().map_err(|e| {
        failed(
            "start the SFTP subsystem (is SFTP enabled in the server's sshd_config?)",
            &e,
            true,
        )
    })?;
    Ok(Conn {
        sftp,
        session,
        tcp: tcp_handle,
    })
}

/// `host:port` (IPv6 in brackets) for messages.
pub(crate) fn host_port(loc: &SftpLocation) -> String {
    if loc.host.contains(':') {
        format!("[{}]:{}", loc.host, loc.port)
    } else {
        format!("{}:{}", loc.host, loc.port)
    }
}

/// Connects over TCP, trying each address the host name resolves to.
fn tcp_connect(
    loc: &SftpLocation,
    opts: &SftpOptions,
    target: &str,
) -> Result<TcpStream, BackendError> {
    let addrs: Vec<_> = (loc.host.as_str(), loc.port)
        .to_socket_addrs()
        .map_err(|e| {
            service(
                target,
                format!("cannot resolve host {:?}: {e}", loc.host),
                true,
            )
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.timeout) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) => service(
            target,
            format!("cannot connect to {addr}: {e} (is the SSH server running and reachable?)"),
            true,
        ),
        None => service(target, format!("host {:?} has no address", loc.host), true),
    })
}

/// Checks the server's host key against the known_hosts file; see the
/// module docs.
fn check_host_key(
    session: &Session,
    loc: &SftpLocation,
    opts: &SftpOptions,
    target: &str,
) -> Result<(), BackendError> {
    let Some((key, _)) = session.host_key() else {
        return Err(service(target, "the server sent no host key".into(), false));
    };
    let key = key.to_vec();
    let fingerprint = fingerprint(session);
    let key_type = key_type_name(&key).unwrap_or("unknown");
    let known_hosts = opts.effective_known_hosts();
    let mut kh = session
        .known_hosts()
        .map_err(|e| failed(target, "read known_hosts", &e, false))?;
    if let Some(path) = &known_hosts {
        load_known_hosts(&mut kh, path).map_err(|e| {
            service(
                target,
                format!("cannot read {}: {e}", path.display()),
                false,
            )
        })?;
    }
    let file = known_hosts.as_ref().map_or_else(
        || "~/.ssh/known_hosts".to_string(),
        |p| p.display().to_string(),
    );
    let keyscan = format!(
        "ssh-keyscan -p {} -t {key_type} {} >> {file}",
        loc.port, loc.host
    );
    match kh.check_port(&loc.host, loc.port, &key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(service(
            target,
            format!(
                "HOST KEY MISMATCH: the server's {key_type} host key ({fingerprint}) differs from \
                 the one {file} lists for it. Someone may be intercepting the connection, or the \
                 server was reinstalled. Refusing to connect. If the change is expected, verify \
                 the new key with the server's administrator, remove the old entry \
                 (ssh-keygen -R '{}' -f {file}) and add the new one ({keyscan})",
                known_hosts_name(loc)
            ),
            false,
        )),
        CheckResult::NotFound if opts.accept_new_host_key => {
            let Some(path) = &known_hosts else {
                return Err(service(
                    target,
                    "cannot add the host key: no known_hosts file (set CAIRN_SFTP_KNOWN_HOSTS or HOME)"
                        .into(),
                    false,
                ));
            };
            append_known_host(path, loc, &key).map_err(|e| {
                service(
                    target,
                    format!("cannot add the host key to {}: {e}", path.display()),
                    false,
                )
            })
        }
        CheckResult::NotFound => Err(service(
            target,
            format!(
                "unknown host key: {file} does not list the server's {key_type} host key \
                 ({fingerprint}). Refusing to connect to an unverified server. Verify the \
                 fingerprint with the server's administrator, then add the key ({keyscan}), or \
                 set {ENV_ACCEPT_NEW_HOST_KEY}=1 once to trust it on first use"
            ),
            false,
        )),
        CheckResult::Failure => Err(service(
            target,
            format!("could not check the host key against {file}"),
            false,
        )),
    }
}

/// Loads a known_hosts file line by line into `kh`, skipping lines libssh2
/// cannot parse (`@cert-authority`, `@revoked`, security-key types, ...)
/// instead of failing on them. A missing file lists nothing.
fn load_known_hosts(kh: &mut ssh2::KnownHosts, path: &Path) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let _ = kh.read_str(line, KnownHostFileKind::OpenSSH);
    }
    Ok(())
}

/// The host as known_hosts names it: `host` on port 22, else `[host]:port`.
fn known_hosts_name(loc: &SftpLocation) -> String {
    if loc.port == 22 {
        loc.host.clone()
    } else {
        format!("[{}]:{}", loc.host, loc.port)
    }
}

/// Appends the host's key to the known_hosts file (created 0600, its
/// directory 0700, if missing).
fn append_known_host(path: &Path, loc: &SftpLocation, key: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let key_type = key_type_name(key).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed host key")
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let line = format!("{} {key_type} {}\n", known_hosts_name(loc), base64(key));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// The algorithm name a host key blob starts with (`ssh-ed25519`, ...).
fn key_type_name(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let name = key.get(4..4usize.checked_add(len)?)?;
    std::str::from_utf8(name).ok()
}

/// The host key's SHA-256 fingerprint as OpenSSH prints it.
fn fingerprint(session: &Session) -> String {
    match session.host_key_hash(HashType::Sha256) {
        Some(hash) => format!("SHA256:{}", base64(hash).trim_end_matches('=')),
        None => "fingerprint unavailable".into(),
    }
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Logs in with the configured key files, then ssh-agent's keys, then the
/// default key files.
fn authenticate(
    session: &Session,
    user: &str,
    opts: &SftpOptions,
    target: &str,
) -> Result<(), BackendError> {
    let mut tried = Vec::new();
    let mut key_problems = Vec::new();
    let passphrase = opts.passphrase().map_err(|e| {
        service(
            target,
            format!(
                "cannot read the key passphrase file {} ({ENV_PASSPHRASE_FILE}): {e}",
                opts.passphrase_file
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            ),
            false,
        )
    })?;
    let explicit = !opts.key_files.is_empty();
    let key_files = opts.effective_key_files();
    let pass = passphrase.as_ref().map(|p| p.as_str());
    let try_files = |tried: &mut Vec<String>, problems: &mut Vec<String>| {
        try_key_files(session, user, &key_files, pass, tried, problems)
            .map_err(|e| failed(target, "authenticate", &e, true))
    };
    if explicit && try_files(&mut tried, &mut key_problems)? {
        return Ok(());
    }
    if opts.use_agent && try_agent(session, user, opts, &mut tried)? {
        return Ok(());
    }
    if !explicit && try_files(&mut tried, &mut key_problems)? {
        return Ok(());
    }
    let mut message = if tried.is_empty() && !key_problems.is_empty() {
        "no key could be used".to_string()
    } else if tried.is_empty() {
        format!(
            "no key to log in with: set {ENV_KEY_FILE} to a private key file, create \
             ~/.ssh/id_ed25519, or start ssh-agent with a key"
        )
    } else {
        format!(
            "the server refused every key offered ({}): add the matching public key to \
             ~/.ssh/authorized_keys of {user:?} on the server, or set {ENV_KEY_FILE} to the \
             private key that is authorized there",
            tried.join(", ")
        )
    };
    for problem in key_problems {
        message.push_str("; ");
        message.push_str(&problem);
    }
    Err(service(target, message, false))
}

/// Offers each key file (recording it in `tried`, or why it could not be
/// loaded in `problems`); true once one is accepted. An error is the
/// connection failing.
fn try_key_files(
    session: &Session,
    user: &str,
    key_files: &[std::path::PathBuf],
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<bool, ssh2::Error> {
    for file in key_files {
        if !file.is_file() {
            problems.push(format!("{}: no such key file", file.display()));
            continue;
        }
        match session.userauth_pubkey_file(user, None, file, passphrase) {
            Ok(()) if session.authenticated() => return Ok(true),
            Ok(()) => tried.push(file.display().to_string()),
            // Unreadable, malformed or wrongly decrypted key file.
            Err(e) if e.code() == ssh2::ErrorCode::Session(code::FILE) => {
                problems.push(format!(
                    "{}: cannot load the key ({}; if it is encrypted, put its passphrase in \
                     a file named by {ENV_PASSPHRASE_FILE})",
                    file.display(),
                    e.message()
                ));
            }
            Err(e) if is_auth_refusal(&e) => tried.push(file.display().to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Tries each key of ssh-agent; true once one is accepted.
fn try_agent(
    session: &Session,
    user: &str,
    opts: &SftpOptions,
    tried: &mut Vec<String>,
) -> Result<bool, BackendError> {
    let Ok(mut agent) = session.agent() else {
        return Ok(false);
    };
    if let Some(socket) = &opts.agent_socket
        && agent.set_identity_path(socket).is_err()
    {
        return Ok(false);
    }
    if agent.connect().is_err() || agent.list_identities().is_err() {
        return Ok(false);
    }
    let identities = agent.identities().unwrap_or_default();
    for identity in &identities {
        tried.push(format!("ssh-agent key {:?}", identity.comment()));
        if agent.userauth(user, identity).is_ok() && session.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Ok(false)
}

/// Whether an authentication error is the server saying no (as opposed to
/// the connection failing).
fn is_auth_refusal(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ssh2::ErrorCode::Session(
            code::METHOD_NONE
                | code::AUTHENTICATION_FAILED
                | code::PUBLICKEY_UNVERIFIED
                | code::METHOD_NOT_SUPPORTED
                | code::PUBLICKEY_PROTOCOL
                | code::KEYFILE_AUTH_FAILED
        )
    )
}

/// A [`BackendError::Service`] about connecting to `target`.
pub(crate) fn service(target: &str, message: String, transient: bool) -> BackendError {
    BackendError::Service {
        op: "connect",
        object: format!("SFTP server {target}"),
        message,
        transient,
    }
}

/// A [`BackendError::Service`] for a failed libssh2 step while connecting.
fn failed(target: &str, step: &str, e: &ssh2::Error, transient: bool) -> BackendError {
    service(target, format!("{step}: {}", e.message()), transient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn key_type_names_are_read_from_blobs() {
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(key_type_name(&blob), Some("ssh-ed25519"));
        assert_eq!(key_type_name(&[0, 0, 0, 200, b'x']), None);
        assert_eq!(key_type_name(&[0xff; 4]), None);
        assert_eq!(key_type_name(&[]), None);
    }
}
