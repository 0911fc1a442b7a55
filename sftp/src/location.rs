//! Parsing `sftp://[user@]host[:port]/path` repository locations.
//!
//! The URL comes from a command line or a config file, so the parser is
//! strict: anything it does not understand is refused with a reason rather
//! than guessed at. In particular a password in the URL (`user:pw@host`) is
//! refused, because it would show in process listings and shell history;
//! keys and ssh-agent are the only ways to log in.
//!
//! Paths follow curl's convention: `sftp://host/srv/repo` is the absolute
//! path `/srv/repo`, and `sftp://host/~/repo` is `repo` relative to the
//! login (home) directory. `%XX` escapes are decoded in the user and the
//! path (so `%40` puts an `@` in a user name).

use std::fmt;

/// The longest location accepted, in bytes.
const MAX_URL_LEN: usize = 4096;

/// Where an SFTP repository lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SftpLocation {
    /// The login name; `None` means the local user name (as `ssh` does).
    pub user: Option<String>,
    /// The host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port (22 unless given).
    pub port: u16,
    /// The repository directory on the server: absolute (`/srv/repo`) or
    /// relative to the login directory (`repo`). Never empty, no trailing
    /// `/`, no `.` or `..` components.
    pub path: String,
}

/// Why a location could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid SFTP location {url:?}: {reason}; expected sftp://[user@]host[:port]/path \
     (for example sftp://backup@nas.example:2222/srv/cairn)"
)]
pub struct InvalidLocation {
    /// The location as given (cut to a printable length).
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SftpLocation {
    /// Parses `sftp://[user@]host[:port]/path`; see the module docs.
    pub fn parse(url: &str) -> Result<SftpLocation, InvalidLocation> {
        let fail = |reason: &str| InvalidLocation {
            url: shorten(url),
            reason: reason.to_string(),
        };
        if url.len() > MAX_URL_LEN {
            return Err(fail("it is longer than 4096 bytes"));
        }
        if url.chars().any(char::is_control) {
            return Err(fail("it contains control characters"));
        }
        let rest = match url.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("sftp://") => &url[7..],
            _ => return Err(fail("it does not start with sftp://")),
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(fail(
                "query strings (?) and fragments (#) are not supported",
            ));
        }
        let (authority, raw_path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(fail("it names no repository directory after the host")),
        };
        let (user, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let user = match user {
            None => None,
            Some("") => return Err(fail("the user name before @ is empty")),
            Some(u) if u.contains(':') => {
                return Err(fail(
                    "passwords in the URL are not accepted (they would show in process \
                     listings and shell history); log in with a key or ssh-agent",
                ));
            }
            Some(u) if u.contains('@') => {
                return Err(fail("the user name contains @ (write it as %40)"));
            }
            Some(u) => {
                let u = decode(u).map_err(|r| fail(&format!("in the user name: {r}")))?;
                if u.starts_with('-') || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(fail("the user name contains whitespace or starts with -"));
                }
                Some(u)
            }
        };
        let (host, port) = parse_host_port(hostport).map_err(|r| fail(&r))?;
        let path = parse_path(raw_path).map_err(|r| fail(&r))?;
        Ok(SftpLocation {
            user,
            host,
            port,
            path,
        })
    }
}

impl fmt::Display for SftpLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sftp://")?;
        if let Some(user) = &self.user {
            write!(f, "{}@", encode(user))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        if self.path.starts_with('/') {
            f.write_str(&encode_path(&self.path))
        } else {
            write!(f, "/~/{}", encode_path(&self.path))
        }
    }
}

impl std::str::FromStr for SftpLocation {
    type Err = InvalidLocation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SftpLocation::parse(s)
    }
}

/// Splits `host[:port]` or `[v6]:port`, checking both.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return Err("an IPv6 address lacks its closing ]".into());
        };
        let host = &v6[..end];
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || host.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(format!(
                "{host:?} is not an IPv6 address (zone ids are not supported)"
            ));
        }
        match &v6[end + 1..] {
            "" => (host, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("unexpected text after the IPv6 address".into()),
            },
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if !s.starts_with('[') {
        let ok = host.len() <= 253
            && !host.starts_with(['-', '.'])
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !ok {
            return Err(format!(
                "{host:?} is not a host name (letters, digits, '-', '.', '_'; IPv6 in brackets)"
            ));
        }
    }
    let port = match port {
        None => 22,
        Some(p) => {
            let parsed = if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse::<u16>().ok()
            } else {
                None
            };
            match parsed {
                Some(port) if port > 0 => port,
                _ => return Err(format!("{p:?} is not a port number (1-65535)")),
            }
        }
    };
    Ok((host.to_string(), port))
}

/// Turns the URL path (starting with `/`) into the server path.
fn parse_path(raw: &str) -> Result<String, String> {
    let decoded = decode(raw).map_err(|r| format!("in the path: {r}"))?;
    if decoded.chars().any(char::is_control) {
        return Err("the path contains control characters".into());
    }
    let (absolute, rest) = match decoded.strip_prefix("/~") {
        Some(rel) if rel.is_empty() || rel.starts_with('/') => (false, rel.to_string()),
        _ => (true, decoded.clone()),
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err("'.' and '..' path components are not accepted; give the plain path".into());
    }
    if parts.is_empty() {
        return Err(if absolute {
            "the path is the server's root directory; name a repository directory".into()
        } else {
            "the path is the home directory itself; name a directory in it (/~/dir)".into()
        });
    }
    let joined = parts.join("/");
    Ok(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

/// Decodes `%XX` escapes; the result must be UTF-8 without NUL.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return Err("a % is not followed by two hex digits".into()),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err("it contains a NUL byte (%00)".into());
    }
    String::from_utf8(out).map_err(|_| "the %-escapes do not decode to UTF-8".to_string())
}

/// `url` with the password of a `user:password@` replaced by `***`.
fn redact_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..start],
            &authority[..colon],
            &url[start + at..]
        ),
        _ => url.to_string(),
    }
}

/// Escapes what [`SftpLocation::parse`] would misread in a user name.
fn encode(s: &str) -> String {
    s.replace('%', "%25")
        .replace('@', "%40")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}

/// Escapes what [`SftpLocation::parse`] would misread in a path.
fn encode_path(s: &str) -> String {
    s.replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}

/// The location for messages: a password in it replaced by `***`, control
/// characters by `?`, cut to 200 characters.
fn shorten(url: &str) -> String {
    let redacted = redact_password(url);
    let printable: String = redacted
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    if redacted.chars().count() > 200 {
        format!("{printable}...")
    } else {
        printable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> SftpLocation {
        SftpLocation::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn accepts_the_usual_forms() {
        let loc = ok("sftp://backup@nas.example:2222/srv/cairn");
        assert_eq!(
            loc,
            SftpLocation {
                user: Some("backup".into()),
                host: "nas.example".into(),
                port: 2222,
                path: "/srv/cairn".into(),
            }
        );
        let loc = ok("SFTP://host/srv/repo/");
        assert_eq!(
            (loc.user, loc.port, loc.path.as_str()),
            (None, 22, "/srv/repo")
        );
        let loc = ok("sftp://u@[::1]:2200/r");
        assert_eq!((loc.host.as_str(), loc.port), ("::1", 2200));
        assert_eq!(ok("sftp://u@[::1]/r").port, 22);
        assert_eq!(ok("sftp://h/~/backups/vm1").path, "backups/vm1");
        assert_eq!(ok("sftp://h//srv//repo").path, "/srv/repo");
        assert_eq!(ok("sftp://a%40b@h/p%20q").user.as_deref(), Some("a@b"));
        assert_eq!(ok("sftp://a%40b@h/p%20q").path, "/p q");
        assert_eq!(ok("sftp://h/with space/x").path, "/with space/x");
        assert_eq!(ok("sftp://10.0.0.1:65535/x").port, 65535);
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "sftp://backup@nas.example:2222/srv/cairn",
            "sftp://h/srv",
            "sftp://u@[::1]:2200/r",
            "sftp://h/~/rel/dir",
            "sftp://a%40b@h/p%25q",
        ] {
            let loc = ok(url);
            assert_eq!(loc.to_string(), url);
            assert_eq!(ok(&loc.to_string()), loc);
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_locations() {
        let long = format!("sftp://h/{}", "a".repeat(5000));
        let cases: &[(&str, &str)] = &[
            ("", "sftp://"),
            ("/srv/repo", "sftp://"),
            ("s3://bucket/x", "sftp://"),
            ("sftp:/h/x", "sftp://"),
            ("sftp://", "no repository directory"),
            ("sftp://host", "no repository directory"),
            ("sftp://host/", "root directory"),
            ("sftp://host///", "root directory"),
            ("sftp://host/~", "home directory"),
            ("sftp://host/~/", "home directory"),
            ("sftp:///srv", "host name is empty"),
            ("sftp://u@/srv", "host name is empty"),
            ("sftp://@h/srv", "user name before @ is empty"),
            ("sftp://u:secret@h/srv", "passwords"),
            ("sftp://a@b@h/srv", "%40"),
            ("sftp://-oProxyCommand=x@h/srv", "starts with -"),
            ("sftp://h:0/srv", "port"),
            ("sftp://h:65536/srv", "port"),
            ("sftp://h:/srv", "port"),
            ("sftp://h:22a/srv", "port"),
            ("sftp://h:+22/srv", "port"),
            ("sftp://h:1:2/srv", "port"),
            ("sftp://[::1/srv", "closing ]"),
            ("sftp://[]/srv", "IPv6"),
            ("sftp://[fe80::1%25eth0]/srv", "IPv6"),
            ("sftp://[::1]x/srv", "after the IPv6"),
            ("sftp://-h/srv", "not a host name"),
            ("sftp://h;rm -rf/srv", "not a host name"),
            ("sftp://h\u{0}/srv", "control"),
            ("sftp://h/srv\nx", "control"),
            ("sftp://h/a%00b", "NUL"),
            ("sftp://h/a%0ab", "control"),
            ("sftp://h/a%zz", "two hex digits"),
            ("sftp://h/a%4", "two hex digits"),
            ("sftp://h/a%ff", "UTF-8"),
            ("sftp://h/srv/../etc", "'..'"),
            ("sftp://h/srv/%2E%2E/etc", "'..'"),
            ("sftp://h/./srv", "'.'"),
            ("sftp://h/srv?x=1", "query"),
            ("sftp://h/srv#frag", "fragments"),
            (long.as_str(), "longer than 4096"),
        ];
        for (url, want) in cases {
            match SftpLocation::parse(url) {
                Ok(loc) => panic!("{url:?} was accepted as {loc:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{url:?}: {msg:?} lacks {want:?}");
                    assert!(msg.contains("expected sftp://"), "{msg}");
                    assert!(!msg.contains('\n') && !msg.contains('\0'), "{msg:?}");
                    assert!(!msg.contains("secret"), "a password leaked: {msg}");
                }
            }
        }
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        let pieces = [
            "sftp://", "@", ":", "[", "]", "/", "%", "%4", "~", "é", "a", ".",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let url = format!("sftp://{a}{b}{c}/{c}{a}");
                    let _ = SftpLocation::parse(&url);
                }
            }
        }
    }
}
