//! How to connect: keys, host-key checking, pool size and timeouts.
//!
//! Secrets never come from the command line (it shows in process listings):
//! the key file and its passphrase are files named by environment variables,
//! or keys held by ssh-agent. [`SftpOptions::from_env`] reads:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `CAIRN_SFTP_KEY_FILE` | private key file to log in with | `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` (those that exist) |
//! | `CAIRN_SFTP_KEY_PASSPHRASE_FILE` | file holding the key's passphrase (one line) | none (unencrypted key) |
//! | `SSH_AUTH_SOCK` | ssh-agent socket; its keys are tried too | unset: no agent |
//! | `CAIRN_SFTP_NO_AGENT=1` | do not use ssh-agent even if it is running | |
//! | `CAIRN_SFTP_KNOWN_HOSTS` | known_hosts file to check the server's host key against | `~/.ssh/known_hosts` |
//! | `CAIRN_SFTP_ACCEPT_NEW_HOST_KEY=1` | trust an unknown host key on first use and add it to the known_hosts file (a changed key is still refused) | off |
//! | `CAIRN_SFTP_CONNECTIONS` | SSH connections opened in parallel (1-64) | 4 (the agent: its `--transfers`) |
//! | `CAIRN_SFTP_TIMEOUT_SECS` | longest wait for the server in any one call | 60 |

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Environment variable naming the private key file.
pub const ENV_KEY_FILE: &str = "CAIRN_SFTP_KEY_FILE";
/// Environment variable naming the file that holds the key's passphrase.
pub const ENV_PASSPHRASE_FILE: &str = "CAIRN_SFTP_KEY_PASSPHRASE_FILE";
/// Environment variable naming the known_hosts file.
pub const ENV_KNOWN_HOSTS: &str = "CAIRN_SFTP_KNOWN_HOSTS";
/// Environment variable that, set to `1`, trusts unknown host keys on first
/// use.
pub const ENV_ACCEPT_NEW_HOST_KEY: &str = "CAIRN_SFTP_ACCEPT_NEW_HOST_KEY";
/// Environment variable that, set to `1`, turns ssh-agent off.
pub const ENV_NO_AGENT: &str = "CAIRN_SFTP_NO_AGENT";
/// Environment variable giving the number of connections.
pub const ENV_CONNECTIONS: &str = "CAIRN_SFTP_CONNECTIONS";
/// Environment variable giving the timeout in seconds.
pub const ENV_TIMEOUT_SECS: &str = "CAIRN_SFTP_TIMEOUT_SECS";

/// The most connections a backend opens.
pub const MAX_CONNECTIONS: usize = 64;

/// How an [`SftpBackend`](crate::SftpBackend) connects and authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpOptions {
    /// Private key files to try, in order, after ssh-agent. Empty means the
    /// defaults: `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa`
    /// (those that exist).
    pub key_files: Vec<PathBuf>,
    /// A file holding the passphrase of the key files (first line).
    pub passphrase_file: Option<PathBuf>,
    /// Whether to try the keys of ssh-agent.
    pub use_agent: bool,
    /// The ssh-agent socket; `None` means the one `SSH_AUTH_SOCK` names.
    pub agent_socket: Option<PathBuf>,
    /// The known_hosts file; `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Trust a host key that the known_hosts file does not list, and add it
    /// there (a key that differs from a listed one is always refused).
    pub accept_new_host_key: bool,
    /// How many SSH connections may be open at once (each serves one call
    /// at a time).
    pub connections: usize,
    /// The longest any single call may wait for the server (connecting,
    /// the handshake, one SFTP request) before it fails as transient.
    pub timeout: Duration,
}

impl Default for SftpOptions {
    fn default() -> Self {
        SftpOptions {
            key_files: Vec::new(),
            passphrase_file: None,
            use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some(),
            agent_socket: None,
            known_hosts: None,
            accept_new_host_key: false,
            connections: 4,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A setting in the environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?}: {reason}")]
pub struct InvalidOption {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and what is expected.
    pub reason: &'static str,
}

impl SftpOptions {
    /// The defaults, overridden by the `CAIRN_SFTP_*` environment variables
    /// (see the module docs).
    pub fn from_env() -> Result<SftpOptions, InvalidOption> {
        SftpOptions::from_vars(|name| std::env::var_os(name))
    }

    /// [`SftpOptions::from_env`] with the variables looked up by `get`.
    fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Result<SftpOptions, InvalidOption> {
        let env_path = |name| get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let env_flag = |name| flag(name, get(name));
        let env_number = |name, reason| number(name, get(name), reason);
        let mut opts = SftpOptions {
            use_agent: get("SSH_AUTH_SOCK").is_some_and(|v| !v.is_empty()),
            ..SftpOptions::default()
        };
        if let Some(path) = env_path(ENV_KEY_FILE) {
            opts.key_files = vec![path];
        }
        opts.passphrase_file = env_path(ENV_PASSPHRASE_FILE);
        opts.known_hosts = env_path(ENV_KNOWN_HOSTS);
        opts.accept_new_host_key = env_flag(ENV_ACCEPT_NEW_HOST_KEY)?;
        if env_flag(ENV_NO_AGENT)? {
            opts.use_agent = false;
        }
        if let Some(n) = env_number(ENV_CONNECTIONS, "expected a number of connections, 1-64")? {
            if !(1..=MAX_CONNECTIONS as u64).contains(&n) {
                return Err(invalid(ENV_CONNECTIONS, n, "expected 1 to 64 connections"));
            }
            opts.connections = n as usize;
        }
        if let Some(secs) = env_number(ENV_TIMEOUT_SECS, "expected a number of seconds")? {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid(
                    ENV_TIMEOUT_SECS,
                    secs,
                    "expected 1 to 86400 seconds",
                ));
            }
            opts.timeout = Duration::from_secs(secs);
        }
        Ok(opts)
    }

    /// The key files to try: the configured ones, or the defaults that
    /// exist.
    pub(crate) fn effective_key_files(&self) -> Vec<PathBuf> {
        if !self.key_files.is_empty() {
            return self.key_files.clone();
        }
        let Some(ssh) = home().map(|h| h.join(".ssh")) else {
            return Vec::new();
        };
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|name| ssh.join(name))
            .filter(|p| p.is_file())
            .collect()
    }

    /// The known_hosts file to use.
    pub(crate) fn effective_known_hosts(&self) -> Option<PathBuf> {
        self.known_hosts
            .clone()
            .or_else(|| home().map(|h| h.join(".ssh").join("known_hosts")))
    }

    /// The passphrase, read from [`SftpOptions::passphrase_file`]: its first
    /// line, wiped from memory when dropped.
    pub(crate) fn passphrase(&self) -> Result<Option<Zeroizing<String>>, std::io::Error> {
        let Some(path) = &self.passphrase_file else {
            return Ok(None);
        };
        let raw = Zeroizing::new(std::fs::read(path)?);
        let text = std::str::from_utf8(&raw)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
        let line = text.split(['\n', '\r']).next().unwrap_or("");
        Ok(Some(Zeroizing::new(line.to_string())))
    }
}

/// The home directory (`$HOME`).
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A yes/no flag (unset or empty is no).
fn flag(name: &'static str, value: Option<OsString>) -> Result<bool, InvalidOption> {
    let Some(value) = value else {
        return Ok(false);
    };
    let value = value.to_string_lossy().trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "0" | "no" | "false" | "off" => Ok(false),
        "1" | "yes" | "true" | "on" => Ok(true),
        _ => Err(invalid(name, value, "expected 1 or 0")),
    }
}

/// A number (unset or empty is none).
fn number(
    name: &'static str,
    value: Option<OsString>,
    reason: &'static str,
) -> Result<Option<u64>, InvalidOption> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            let v = v.to_string_lossy().trim().to_string();
            v.parse().map(Some).map_err(|_| invalid(name, v, reason))
        }
    }
}

/// An [`InvalidOption`].
fn invalid(name: &'static str, value: impl ToString, reason: &'static str) -> InvalidOption {
    InvalidOption {
        name,
        value: value.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<SftpOptions, InvalidOption> {
        SftpOptions::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn defaults_without_variables() {
        let opts = parse(&[]).unwrap();
        assert!(opts.key_files.is_empty() && opts.passphrase_file.is_none());
        assert!(!opts.use_agent && !opts.accept_new_host_key);
        assert_eq!((opts.connections, opts.timeout.as_secs()), (4, 60));
    }

    #[test]
    fn variables_override_the_defaults() {
        let opts = parse(&[
            ("SSH_AUTH_SOCK", "/run/agent"),
            (ENV_KEY_FILE, "/keys/id"),
            (ENV_PASSPHRASE_FILE, "/keys/pass"),
            (ENV_KNOWN_HOSTS, "/keys/known"),
            (ENV_ACCEPT_NEW_HOST_KEY, "yes"),
            (ENV_CONNECTIONS, " 16 "),
            (ENV_TIMEOUT_SECS, "5"),
        ])
        .unwrap();
        assert!(opts.use_agent && opts.accept_new_host_key);
        assert_eq!(opts.key_files, vec![PathBuf::from("/keys/id")]);
        assert_eq!(opts.passphrase_file, Some("/keys/pass".into()));
        assert_eq!(opts.known_hosts, Some("/keys/known".into()));
        assert_eq!((opts.connections, opts.timeout.as_secs()), (16, 5));
        let opts = parse(&[("SSH_AUTH_SOCK", "/run/agent"), (ENV_NO_AGENT, "1")]).unwrap();
        assert!(!opts.use_agent);
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (name, value) in [
            (ENV_CONNECTIONS, "0"),
            (ENV_CONNECTIONS, "65"),
            (ENV_CONNECTIONS, "four"),
            (ENV_CONNECTIONS, "-1"),
            (ENV_TIMEOUT_SECS, "0"),
            (ENV_TIMEOUT_SECS, "1e3"),
            (ENV_TIMEOUT_SECS, "99999999999999999999999"),
            (ENV_ACCEPT_NEW_HOST_KEY, "maybe"),
            (ENV_NO_AGENT, "2"),
        ] {
            let e = parse(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name);
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn the_passphrase_is_the_first_line_of_its_file() {
        let dir = std::env::temp_dir().join(format!("cairn-sftp-pass-{}", std::process::id()));
        std::fs::write(&dir, "s3cret words\r\nsecond line\n").unwrap();
        let opts = SftpOptions {
            passphrase_file: Some(dir.clone()),
            ..SftpOptions::default()
        };
        let pass = opts.passphrase().unwrap().unwrap();
        assert_eq!(pass.as_str(), "s3cret words");
        std::fs::remove_file(&dir).unwrap();
        assert!(opts.passphrase().is_err());
    }
}
