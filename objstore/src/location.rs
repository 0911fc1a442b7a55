//! Repository URLs: where a repository lives, as the user writes it.
//!
//! | form | target |
//! | ---- | ------ |
//! | `/path`, `./path`, `path`, `local:/path` | a local directory or mounted share |
//! | `sftp://[user@]host[:port]/path` | a directory on an SFTP server |
//! | `s3://bucket[/prefix]` | a bucket (and key prefix) of S3-compatible storage |
//! | `azure://container[/prefix]` | a container (and blob prefix) of Azure Blob Storage |
//!
//! The parser is strict because a repository URL ends up in scripts and cron
//! jobs: anything it cannot read unambiguously is refused with a message that
//! says what is wrong, rather than guessed at. In particular credentials are
//! refused wherever a URL could carry them (`user:password@`, `?query`): they
//! would show in `ps`, shell history and logs, so they come from the
//! environment or credential files only (see docs/targets.md).
//!
//! This module has no dependencies beyond `std` and `thiserror`, so any
//! crate (the agent, the SFTP target) can use it.

use std::fmt;
use std::path::PathBuf;

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory of a local or mounted filesystem.
    Local(PathBuf),
    /// A directory on an SFTP server.
    Sftp(SftpLocation),
    /// A bucket (and prefix) of S3-compatible object storage.
    S3(ObjectLocation),
    /// A container (and prefix) of Azure Blob Storage.
    Azure(ObjectLocation),
}

/// Where an SFTP repository lives: `sftp://[user@]host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// The login name; `None` to let SSH choose (the local user).
    pub user: Option<String>,
    /// The host name or IP address (IPv6 without the brackets).
    pub host: String,
    /// The TCP port (22 unless given).
    pub port: u16,
    /// The repository directory on the server, absolute (starts with `/`).
    pub path: String,
}

/// Where an object-storage repository lives: a bucket or container and a
/// key prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    /// The S3 bucket or Azure container.
    pub container: String,
    /// The key prefix without leading or trailing `/` ("" for the root);
    /// its segments are non-empty and none is `.` or `..`.
    pub prefix: String,
}

/// Why a repository location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Nothing was given.
    #[error("no repository given: pass --repo or set CAIRN_REPO")]
    Empty,
    /// A `scheme://` this build does not know.
    #[error(
        "repository {location:?}: unknown scheme {scheme:?}; use a path, local:/path, sftp://user@host/path, s3://bucket/prefix or azure://container/prefix"
    )]
    UnknownScheme {
        /// The whole location.
        location: String,
        /// The scheme found.
        scheme: String,
    },
    /// The location is malformed; `reason` says how, and how to fix it.
    #[error("repository {location:?}: {reason}")]
    Invalid {
        /// The whole location.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The location as it may be shown in a message: a password in the URL's
/// user part and a query string (SAS tokens) are replaced by `***`.
fn redacted(loc: &str) -> String {
    let Some((scheme, rest)) = loc.split_once("://") else {
        return loc.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Sftp(s) => write!(f, "{s}"),
            Location::S3(o) => write!(f, "s3://{o}"),
            Location::Azure(o) => write!(f, "azure://{o}"),
        }
    }
}

impl fmt::Display for SftpLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sftp://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            f.write_str(&self.container)
        } else {
            write!(f, "{}/{}", self.container, self.prefix)
        }
    }
}

impl std::str::FromStr for Location {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

impl Location {
    /// Parses a repository location (see the module docs for the forms).
    pub fn parse(input: &str) -> Result<Location, LocationError> {
        let loc = input.trim();
        if loc.is_empty() {
            return Err(LocationError::Empty);
        }
        let invalid = |reason: &str| LocationError::Invalid {
            location: redacted(loc),
            reason: reason.to_string(),
        };
        if loc.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        if let Some(path) = loc.strip_prefix("local:") {
            if path.is_empty() {
                return Err(invalid("local: needs a directory, as in local:/srv/backup"));
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        let Some((scheme, rest)) = loc.split_once("://") else {
            // A plain path. "host:/path" (scp style) is refused rather than
            // taken for a relative directory named "host:".
            if !(loc.starts_with('/') || loc.starts_with('.')) && loc.contains(':') {
                return Err(invalid(
                    "looks like host:path; write sftp://user@host/path for SFTP, or ./name for a local directory whose name has a colon",
                ));
            }
            return Ok(Location::Local(PathBuf::from(loc)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sftp" => parse_sftp(rest)
                .map(Location::Sftp)
                .map_err(|r| invalid(&r)),
            "s3" => parse_object(rest, ContainerRules::S3)
                .map(Location::S3)
                .map_err(|r| invalid(&r)),
            "azure" | "az" => parse_object(rest, ContainerRules::Azure)
                .map(Location::Azure)
                .map_err(|r| invalid(&r)),
            "local" | "file" => Err(invalid("write a local directory as /path or local:/path")),
            _ => Err(LocationError::UnknownScheme {
                location: redacted(loc),
                scheme: scheme.to_string(),
            }),
        }
    }
}

/// Query strings and fragments are refused everywhere: they are where
/// credentials (SAS tokens, access keys) would leak into a command line.
fn refuse_query(rest: &str) -> Result<(), String> {
    if rest.contains('?') || rest.contains('#') {
        return Err(
            "'?' and '#' are not allowed: credentials and options come from the environment, never from the repository URL (see docs/targets.md)"
                .into(),
        );
    }
    Ok(())
}

fn parse_sftp(rest: &str) -> Result<SftpLocation, String> {
    refuse_query(rest)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (Some(user), hostport),
        None => (None, authority),
    };
    let user = match user {
        Some(u) if u.contains(':') => {
            return Err(
                "a password in the URL is refused (it would show in ps and shell history); use an SSH key or agent"
                    .into(),
            );
        }
        Some("") => return Err("empty user name before '@'".into()),
        Some(u)
            if !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            return Err(format!(
                "user name {u:?} may only hold letters, digits, '.', '_' and '-'"
            ));
        }
        Some(u) if u.starts_with('-') => {
            return Err(format!("user name {u:?} must not start with '-'"));
        }
        Some(u) => Some(u.to_string()),
        None => None,
    };
    let (host, port) = split_host_port(hostport)?;
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(p) => p,
        },
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("no directory: write sftp://user@host/path/to/repository".into());
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("'.' and '..' are not allowed in the path".into());
    }
    Ok(SftpLocation {
        user,
        host,
        port,
        path: path.to_string(),
    })
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host_port(hostport: &str) -> Result<(String, Option<&str>), String> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err("unclosed '[' in an IPv6 address".into());
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the IPv6 address"))?,
            ),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if host.is_empty() {
        return Err("no host: write sftp://user@host/path".into());
    }
    if host.starts_with('-') {
        return Err(format!("host {host:?} must not start with '-'"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!(
            "host {host:?} may only hold letters, digits, '.', '-' and '_' (write IPv6 addresses in brackets)"
        ));
    }
    Ok((host.to_string(), port))
}

#[derive(Clone, Copy)]
enum ContainerRules {
    S3,
    Azure,
}

fn parse_object(rest: &str, rules: ContainerRules) -> Result<ObjectLocation, String> {
    refuse_query(rest)?;
    let (container, prefix) = match rest.split_once('/') {
        Some((c, p)) => (c, p),
        None => (rest, ""),
    };
    let what = match rules {
        ContainerRules::S3 => "bucket",
        ContainerRules::Azure => "container",
    };
    if container.contains('@') {
        return Err(format!(
            "credentials in the URL are refused; write s3://{what}/prefix or azure://{what}/prefix and put credentials in the environment (see docs/targets.md)"
        ));
    }
    if container.is_empty() {
        return Err(format!("no {what} name after the scheme"));
    }
    check_container(container, rules)?;
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        for seg in prefix.split('/') {
            if seg.is_empty() {
                return Err("empty segment ('//') in the prefix".into());
            }
            if seg == "." || seg == ".." {
                return Err("'.' and '..' are not allowed in the prefix".into());
            }
            // A plain character set: keys are then the same bytes on every
            // service and in every tool (no percent-encoding surprises).
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+=@,".contains(&b))
            {
                return Err(format!(
                    "prefix segment {seg:?} may only hold letters, digits and . _ - + = @ ,"
                ));
            }
        }
        if prefix.len() > 512 {
            return Err("the prefix is longer than 512 bytes".into());
        }
    }
    Ok(ObjectLocation {
        container: container.to_string(),
        prefix: prefix.to_string(),
    })
}

/// The naming rules of S3 buckets and Azure containers: 3 to 63 lowercase
/// letters, digits and '-' (S3 also '.'), starting and ending with a letter
/// or digit; Azure forbids "--".
fn check_container(name: &str, rules: ContainerRules) -> Result<(), String> {
    let (what, extra): (&str, &[u8]) = match rules {
        ContainerRules::S3 => ("bucket", b"-."),
        ContainerRules::Azure => ("container", b"-"),
    };
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b));
    let ends_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let azure_dashes = matches!(rules, ContainerRules::Azure) && name.contains("--");
    if (3..=63).contains(&name.len())
        && ok_chars
        && ends_ok
        && !azure_dashes
        && !name.contains("..")
    {
        Ok(())
    } else {
        let allowed = match rules {
            ContainerRules::S3 => "lowercase letters, digits, '-' and '.'",
            ContainerRules::Azure => "lowercase letters, digits and single '-'",
        };
        Err(format!(
            "{what} name {name:?} is invalid: 3 to 63 {allowed}, starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_in_a_refused_location_are_not_repeated() {
        for (input, secret) in [
            ("sftp://u:hunter2@h/r", "hunter2"),
            ("azure://c0ntainer/p?sig=topsecret", "topsecret"),
            ("gs://k:topsecret@b/p", "topsecret"),
        ] {
            let e = Location::parse(input).unwrap_err().to_string();
            assert!(!e.contains(secret), "{e}");
        }
        assert_eq!(redacted("s3://b/p"), "s3://b/p");
        assert_eq!(redacted("sftp://u@h:22/x"), "sftp://u@h:22/x");
    }

    fn ok(s: &str) -> Location {
        Location::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        match Location::parse(s) {
            Ok(l) => panic!("{s:?} parsed as {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn obj(c: &str, p: &str) -> ObjectLocation {
        ObjectLocation {
            container: c.into(),
            prefix: p.into(),
        }
    }

    #[test]
    fn local_forms() {
        assert_eq!(ok("/srv/backup"), Location::Local("/srv/backup".into()));
        assert_eq!(
            ok("  /srv/backup \n"),
            Location::Local("/srv/backup".into())
        );
        assert_eq!(ok("local:/x"), Location::Local("/x".into()));
        assert_eq!(ok("local:rel"), Location::Local("rel".into()));
        assert_eq!(ok("rel/dir"), Location::Local("rel/dir".into()));
        assert_eq!(ok("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(ok("/a:b"), Location::Local("/a:b".into()));
        assert_eq!(Location::parse(""), Err(LocationError::Empty));
        assert_eq!(Location::parse("   "), Err(LocationError::Empty));
        assert!(err("host:/path").contains("sftp://"));
        assert!(err("local:").contains("needs a directory"));
        assert!(err("file:///x").contains("local:/path"));
    }

    #[test]
    fn sftp_forms() {
        assert_eq!(
            ok("sftp://backup@host.example/srv/cairn/"),
            Location::Sftp(SftpLocation {
                user: Some("backup".into()),
                host: "host.example".into(),
                port: 22,
                path: "/srv/cairn".into(),
            })
        );
        assert_eq!(
            ok("sftp://10.0.0.5:2222/r"),
            Location::Sftp(SftpLocation {
                user: None,
                host: "10.0.0.5".into(),
                port: 2222,
                path: "/r".into(),
            })
        );
        let v6 = ok("SFTP://u@[::1]:2022/r");
        assert_eq!(
            v6,
            Location::Sftp(SftpLocation {
                user: Some("u".into()),
                host: "::1".into(),
                port: 2022,
                path: "/r".into(),
            })
        );
        assert_eq!(v6.to_string(), "sftp://u@[::1]:2022/r");
    }

    #[test]
    fn sftp_hostile_inputs() {
        assert!(err("sftp://u:secret@h/r").contains("password"));
        assert!(err("sftp://h").contains("no directory"));
        assert!(err("sftp://h/").contains("no directory"));
        assert!(err("sftp://u@/r").contains("no host"));
        assert!(err("sftp://@h/r").contains("empty user"));
        assert!(err("sftp://h:0/r").contains("port"));
        assert!(err("sftp://h:65536/r").contains("port"));
        assert!(err("sftp://h:22x/r").contains("port"));
        assert!(err("sftp://h:/r").contains("port"));
        assert!(err("sftp://[::1/r").contains("unclosed"));
        assert!(err("sftp://[zz]/r").contains("IPv6"));
        assert!(err("sftp://h/a/../b").contains(".."));
        assert!(err("sftp://h/r?x=1").contains("environment"));
        assert!(err("sftp://h o/r").contains("host"));
        assert!(err("sftp://u;rm -rf@h/r").contains("user name"));
        assert!(err("sftp://h/r\0x").contains("control"));
        // Never let a host or user be taken for an ssh option.
        assert!(err("sftp://-oProxyCommand=x/r").contains("'-'"));
        assert!(err("sftp://-l@h/r").contains("'-'"));
    }

    #[test]
    fn object_forms() {
        assert_eq!(ok("s3://bucket"), Location::S3(obj("bucket", "")));
        assert_eq!(ok("s3://bucket/"), Location::S3(obj("bucket", "")));
        assert_eq!(
            ok("s3://my.bucket-1/a/b/"),
            Location::S3(obj("my.bucket-1", "a/b"))
        );
        assert_eq!(ok("azure://cont/x"), Location::Azure(obj("cont", "x")));
        assert_eq!(ok("az://cont"), Location::Azure(obj("cont", "")));
        assert_eq!(ok("s3://b12/p/q").to_string(), "s3://b12/p/q");
        assert_eq!(ok("azure://c12").to_string(), "azure://c12");
    }

    #[test]
    fn object_hostile_inputs() {
        assert!(err("s3://").contains("no bucket"));
        assert!(err("s3:///p").contains("no bucket"));
        assert!(err("s3://ab").contains("invalid"));
        assert!(err("s3://Bucket").contains("invalid"));
        assert!(err("s3://bu_cket").contains("invalid"));
        assert!(err("s3://-bucket").contains("invalid"));
        assert!(err("s3://a..b").contains("invalid"));
        assert!(err(&format!("s3://{}", "a".repeat(64))).contains("invalid"));
        assert!(err("azure://my.cont").contains("invalid"));
        assert!(err("azure://a--b").contains("invalid"));
        assert!(err("s3://key:secret@bucket/p").contains("credentials"));
        assert!(err("azure://c/p?sv=2020&sig=abc").contains("environment"));
        assert!(err("s3://bucket/p#frag").contains("environment"));
        assert!(err("s3://bucket/a//b").contains("empty segment"));
        assert!(err("s3://bucket/a/../b").contains(".."));
        assert!(err("s3://bucket/./b").contains(".."));
        assert!(err("s3://bucket/a*").contains("may only hold"));
        assert!(err("s3://bucket/a b").contains("may only hold"));
        assert!(err("azure://cont/x%2Fy").contains("may only hold"));
        assert_eq!(
            ok("s3://bucket/host=vm-042/daily"),
            Location::S3(obj("bucket", "host=vm-042/daily"))
        );
        assert!(err(&format!("s3://bucket/{}", "a".repeat(600))).contains("512"));
        assert!(err("gs://bucket").contains("unknown scheme"));
        assert!(err("http://host/x").contains("unknown scheme"));
    }
}
