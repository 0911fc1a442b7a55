//! Credentials and settings of the object-storage targets, from the
//! environment and the standard credential files only.
//!
//! Nothing here ever comes from the command line: a secret there shows in
//! `ps`, shell history and scheduler logs. Every setting is read through a
//! lookup function, so tests can pass their own variables instead of
//! mutating the process environment (which is not thread-safe).
//!
//! S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! else the profile `AWS_PROFILE` (or `default`) of `~/.aws/credentials`
//! (`AWS_SHARED_CREDENTIALS_FILE`); the region from `AWS_REGION`,
//! `AWS_DEFAULT_REGION` or that profile in `~/.aws/config`
//! (`AWS_CONFIG_FILE`); the endpoint of an S3-compatible server from
//! `CAIRN_S3_ENDPOINT` or `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`;
//! `CAIRN_S3_PATH_STYLE=true|false` to choose path-style or virtual-hosted
//! requests (path style is the default with a custom endpoint).
//!
//! Azure: `AZURE_STORAGE_CONNECTION_STRING` (AccountName, AccountKey,
//! BlobEndpoint, SharedAccessSignature, EndpointSuffix,
//! DefaultEndpointsProtocol, UseDevelopmentStorage), then
//! `AZURE_STORAGE_ACCOUNT`/`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_KEY`/`AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`,
//! `CAIRN_AZURE_ENDPOINT`, and `AZURE_STORAGE_USE_EMULATOR=true` for Azurite
//! at `AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`).
//!
//! Both: `CAIRN_TARGET_TIMEOUT` (seconds per request, default 300).
//! Retries are not set here: the client makes none of its own, and the
//! agent's retry wrapper retries every call `--retries` times
//! (docs/targets.md, "Retries"); `CAIRN_TARGET_RETRIES`, which set the
//! client's own, is refused with that advice.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ConfigError;

/// Looks a variable up: `Some(value)` if it is set and not empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as a [`Lookup`] (empty values count as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret string that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How to reach an S3-compatible service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The access key id; `None` to use the provider chain of the library
    /// (web identity, container or instance credentials) on AWS itself.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<Secret>,
    /// A session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// The region (`us-east-1` if none is given).
    pub region: Option<String>,
    /// The endpoint of an S3-compatible server (`http://127.0.0.1:9000`);
    /// `None` for AWS.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted
    /// ones (`bucket.endpoint/key`); `None` for the default (path style with
    /// a custom endpoint, virtual-hosted on AWS).
    pub path_style: Option<bool>,
}

/// How to reach Azure Blob Storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureConfig {
    /// The storage account.
    pub account: Option<String>,
    /// The account key (shared key authorization).
    pub access_key: Option<Secret>,
    /// A SAS token (with or without the leading `?`).
    pub sas_token: Option<Secret>,
    /// The blob endpoint (`https://acct.blob.core.windows.net`, or
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite).
    pub endpoint: Option<String>,
}

/// Settings shared by both services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The time one request may take, from connecting to the last byte.
    pub timeout: Duration,
    /// The time a connection may take to establish.
    pub connect_timeout: Duration,
    /// Packs larger than this are uploaded in parts.
    pub multipart_threshold: usize,
    /// The size of one part (S3 needs at least 5 MiB but for the last).
    pub part_size: usize,
    /// How many parts of one object are uploaded at once.
    pub part_concurrency: usize,
}

/// The well-known account of the Azurite emulator (public, documented by
/// Microsoft; it protects nothing).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of the Azurite emulator account.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            multipart_threshold: 8 << 20,
            part_size: 8 << 20,
            part_concurrency: 4,
        }
    }
}

impl Options {
    /// The defaults with `CAIRN_TARGET_TIMEOUT` applied; a set
    /// `CAIRN_TARGET_RETRIES` is refused (see the module documentation).
    pub fn from_lookup(env: Lookup<'_>) -> Result<Options, ConfigError> {
        let mut o = Options::default();
        if let Some(v) = env("CAIRN_TARGET_TIMEOUT") {
            let secs: u64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=86_400).contains(s))
                .ok_or_else(|| {
                    bad(
                        "CAIRN_TARGET_TIMEOUT",
                        "a number of seconds from 1 to 86400",
                    )
                })?;
            o.timeout = Duration::from_secs(secs);
            o.connect_timeout = o.connect_timeout.min(o.timeout);
        }
        if env("CAIRN_TARGET_RETRIES").is_some() {
            return Err(ConfigError::Invalid {
                what: "CAIRN_TARGET_RETRIES".into(),
                message: "is no longer read: the retries of every target are set by --retries \
                          or CAIRN_RETRIES (default 5) and counted once, not multiplied by the \
                          HTTP client's own (docs/targets.md, \"Retries\"); unset it, and set \
                          CAIRN_RETRIES instead if you need another number"
                    .into(),
            });
        }
        Ok(o)
    }
}

fn bad(var: &str, want: &str) -> ConfigError {
    ConfigError::Invalid {
        what: var.to_string(),
        message: format!("must be {want}"),
    }
}

fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(var, "true or false")),
    }
}

fn home_file(env: Lookup<'_>, override_var: &str, rel: &str) -> Option<PathBuf> {
    env(override_var)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(rel)))
}

/// Reads the `section` of an INI file (as AWS writes them) into a map; a
/// missing file or section gives `None`.
fn ini_section(
    path: &PathBuf,
    section: &str,
) -> Result<Option<HashMap<String, String>>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::Invalid {
                what: path.display().to_string(),
                message: format!("cannot read it: {e}"),
            });
        }
    };
    let mut found = None;
    let mut current: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            if current == Some(section) {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if current == Some(section)
            && let Some((k, v)) = line.split_once('=')
            && let Some(map) = found.as_mut()
        {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(found)
}

impl S3Config {
    /// The configuration from the process environment and credential files.
    pub fn from_env() -> Result<S3Config, ConfigError> {
        S3Config::from_lookup(&process_env)
    }

    /// The configuration from `env` and the credential files it names.
    pub fn from_lookup(env: Lookup<'_>) -> Result<S3Config, ConfigError> {
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let mut c = S3Config {
            access_key_id: env("AWS_ACCESS_KEY_ID"),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY").map(Secret),
            session_token: env("AWS_SESSION_TOKEN").map(Secret),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            endpoint: env("CAIRN_S3_ENDPOINT")
                .or_else(|| env("AWS_ENDPOINT_URL_S3"))
                .or_else(|| env("AWS_ENDPOINT_URL")),
            path_style: env("CAIRN_S3_PATH_STYLE")
                .map(|v| parse_bool("CAIRN_S3_PATH_STYLE", &v))
                .transpose()?,
        };
        match (&c.access_key_id, &c.secret_access_key) {
            (Some(_), None) => {
                return Err(ConfigError::Missing(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both".into(),
                ));
            }
            (None, None) => {
                if let Some(path) =
                    home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
                    && let Some(s) = ini_section(&path, &profile)?
                {
                    c.access_key_id = s.get("aws_access_key_id").cloned();
                    c.secret_access_key = s.get("aws_secret_access_key").cloned().map(Secret);
                    c.session_token = s.get("aws_session_token").cloned().map(Secret);
                    if c.access_key_id.is_none() != c.secret_access_key.is_none() {
                        return Err(ConfigError::Invalid {
                            what: path.display().to_string(),
                            message: format!(
                                "profile {profile:?} needs both aws_access_key_id and aws_secret_access_key"
                            ),
                        });
                    }
                }
            }
            (Some(_), Some(_)) => {}
        }
        if c.region.is_none()
            && let Some(path) = home_file(env, "AWS_CONFIG_FILE", ".aws/config")
        {
            let section = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            if let Some(s) = ini_section(&path, &section)? {
                c.region = s.get("region").cloned();
            }
        }
        if let Some(ep) = &c.endpoint {
            check_endpoint("the S3 endpoint", ep)?;
        }
        if c.access_key_id.is_none() && c.endpoint.is_some() {
            return Err(ConfigError::Missing(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials".into(),
            ));
        }
        Ok(c)
    }
}

fn check_endpoint(what: &str, ep: &str) -> Result<(), ConfigError> {
    let rest = ep
        .strip_prefix("http://")
        .or_else(|| ep.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(ConfigError::Invalid {
            what: what.to_string(),
            message: format!("{ep:?} is not an http:// or https:// URL"),
        }),
    }
}

/// The fields of an Azure connection string (`Key=Value;...`).
fn parse_connection_string(s: &str) -> Result<HashMap<String, String>, ConfigError> {
    let mut map = HashMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(ConfigError::Invalid {
                what: "AZURE_STORAGE_CONNECTION_STRING".into(),
                message: format!(
                    "a field without '=' (field {} of it); expected Key=Value pairs separated by ';'",
                    map.len() + 1
                ),
            });
        };
        map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(map)
}

impl AzureConfig {
    /// The configuration from the process environment.
    pub fn from_env() -> Result<AzureConfig, ConfigError> {
        AzureConfig::from_lookup(&process_env)
    }

    /// The configuration from `env`.
    pub fn from_lookup(env: Lookup<'_>) -> Result<AzureConfig, ConfigError> {
        let mut c = AzureConfig::default();
        let mut emulator = env("AZURE_STORAGE_USE_EMULATOR")
            .map(|v| parse_bool("AZURE_STORAGE_USE_EMULATOR", &v))
            .transpose()?
            .unwrap_or(false);
        if let Some(cs) = env("AZURE_STORAGE_CONNECTION_STRING") {
            let f = parse_connection_string(&cs)?;
            if f.get("usedevelopmentstorage")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                emulator = true;
            }
            c.account = f.get("accountname").cloned();
            c.access_key = f.get("accountkey").cloned().map(Secret);
            c.sas_token = f.get("sharedaccesssignature").cloned().map(Secret);
            c.endpoint = f.get("blobendpoint").cloned();
            if c.endpoint.is_none()
                && let (Some(account), Some(suffix)) = (&c.account, f.get("endpointsuffix"))
            {
                let proto = f
                    .get("defaultendpointsprotocol")
                    .map(String::as_str)
                    .unwrap_or("https");
                c.endpoint = Some(format!("{proto}://{account}.blob.{suffix}"));
            }
        }
        if let Some(a) = env("AZURE_STORAGE_ACCOUNT").or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"))
        {
            c.account = Some(a);
        }
        if let Some(k) = env("AZURE_STORAGE_KEY").or_else(|| env("AZURE_STORAGE_ACCOUNT_KEY")) {
            c.access_key = Some(Secret(k));
        }
        if let Some(s) = env("AZURE_STORAGE_SAS_TOKEN") {
            c.sas_token = Some(Secret(s));
        }
        if let Some(e) = env("CAIRN_AZURE_ENDPOINT") {
            c.endpoint = Some(e);
        }
        if emulator {
            let base = env("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
            let account = c.account.get_or_insert_with(|| AZURITE_ACCOUNT.to_string());
            if c.endpoint.is_none() {
                c.endpoint = Some(format!("{}/{account}", base.trim_end_matches('/')));
            }
            if c.access_key.is_none() && c.sas_token.is_none() {
                c.access_key = Some(Secret(AZURITE_KEY.to_string()));
            }
        }
        if let Some(ep) = &c.endpoint {
            check_endpoint("the Azure blob endpoint", ep)?;
        }
        if c.account.is_none() {
            return Err(ConfigError::Missing(
                "no Azure storage account: set AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING".into(),
            ));
        }
        if c.access_key.is_none() && c.sas_token.is_none() {
            return Err(ConfigError::Missing(
                "no Azure credentials: set AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn s3_from_variables() {
        let env = vars(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("CAIRN_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("CAIRN_S3_PATH_STYLE", "false"),
            ("HOME", "/nonexistent"),
        ]);
        let c = S3Config::from_lookup(&env).unwrap();
        assert_eq!(c.access_key_id.as_deref(), Some("AK"));
        assert_eq!(c.secret_access_key, Some(Secret("SK".into())));
        assert_eq!(c.region.as_deref(), Some("eu-west-3"));
        assert_eq!(c.path_style, Some(false));
        assert!(!format!("{c:?}").contains("SK"), "secret in Debug output");
    }

    #[test]
    fn s3_from_credential_files() {
        let dir = std::env::temp_dir().join(format!("cairn-objstore-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::write(
            dir.join(".aws/credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token=T\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(".aws/config"),
            "[default]\nregion = us-west-2\n[profile work]\nregion=ap-south-1\n",
        )
        .unwrap();
        let home = dir.to_str().unwrap();
        let c = S3Config::from_lookup(&vars(&[("HOME", home)])).unwrap();
        assert_eq!(c.access_key_id.as_deref(), Some("D"));
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        let c = S3Config::from_lookup(&vars(&[("HOME", home), ("AWS_PROFILE", "work")])).unwrap();
        assert_eq!(c.access_key_id.as_deref(), Some("W"));
        assert_eq!(c.session_token, Some(Secret("T".into())));
        assert_eq!(c.region.as_deref(), Some("ap-south-1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn s3_refusals() {
        let e = S3Config::from_lookup(&vars(&[("AWS_ACCESS_KEY_ID", "AK")])).unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let e = S3Config::from_lookup(&vars(&[
            ("CAIRN_S3_ENDPOINT", "http://h:1"),
            ("HOME", "/nonexistent"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("no S3 credentials"), "{e}");
        let e = S3Config::from_lookup(&vars(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("CAIRN_S3_ENDPOINT", "127.0.0.1:9000"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = S3Config::from_lookup(&vars(&[("CAIRN_S3_PATH_STYLE", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("CAIRN_S3_PATH_STYLE"), "{e}");
    }

    #[test]
    fn azure_connection_strings() {
        let cs = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
        let c =
            AzureConfig::from_lookup(&vars(&[("AZURE_STORAGE_CONNECTION_STRING", cs)])).unwrap();
        assert_eq!(c.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(c.access_key, Some(Secret("a2V5".into())));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let cs = "AccountName=acct;SharedAccessSignature=sv=2022-11-02&sig=a%3D;EndpointSuffix=core.windows.net";
        let c =
            AzureConfig::from_lookup(&vars(&[("AZURE_STORAGE_CONNECTION_STRING", cs)])).unwrap();
        assert_eq!(c.sas_token, Some(Secret("sv=2022-11-02&sig=a%3D".into())));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        let c = AzureConfig::from_lookup(&vars(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "UseDevelopmentStorage=true",
        )]))
        .unwrap();
        assert_eq!(c.account.as_deref(), Some(AZURITE_ACCOUNT));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let e = AzureConfig::from_lookup(&vars(&[("AZURE_STORAGE_CONNECTION_STRING", "garbage")]))
            .unwrap_err();
        assert!(e.to_string().contains("Key=Value"), "{e}");
        assert!(!e.to_string().contains("garbage"), "secret echoed: {e}");
    }

    #[test]
    fn azure_variables_and_refusals() {
        let c = AzureConfig::from_lookup(&vars(&[
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=x"),
        ]))
        .unwrap();
        assert_eq!(c.account.as_deref(), Some("acct"));
        assert!(c.endpoint.is_none());
        let e = AzureConfig::from_lookup(&vars(&[])).unwrap_err();
        assert!(e.to_string().contains("AZURE_STORAGE_ACCOUNT"), "{e}");
        let e = AzureConfig::from_lookup(&vars(&[("AZURE_STORAGE_ACCOUNT", "acct")])).unwrap_err();
        assert!(e.to_string().contains("no Azure credentials"), "{e}");
    }

    #[test]
    fn options() {
        let o = Options::from_lookup(&vars(&[("CAIRN_TARGET_TIMEOUT", "5")])).unwrap();
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert!(Options::from_lookup(&vars(&[("CAIRN_TARGET_TIMEOUT", "0")])).is_err());
        let e = Options::from_lookup(&vars(&[("CAIRN_TARGET_RETRIES", "3")])).unwrap_err();
        assert!(e.to_string().contains("CAIRN_RETRIES"), "{e}");
    }
}
