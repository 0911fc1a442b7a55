//! `posix-rename@openssh.com`: the one SFTP request that replaces a file
//! atomically, spoken on a channel of its own.
//!
//! SFTP v3's RENAME never replaces an existing name (OpenSSH's sftp-server
//! links the new name and unlinks the old one), so [`Backend::replace`]
//! (the config only) needs OpenSSH's extension, which is `rename(2)` on the
//! server. libssh2 has it (`libssh2_sftp_posix_rename_ex`), but the `ssh2`
//! crate neither wraps it nor exposes the SFTP handle it would need, so
//! this module opens a second `sftp` subsystem channel on the connection's
//! session and speaks the four packets involved itself (draft-ietf-secsh-
//! filexfer-02 and OpenSSH's PROTOCOL file): INIT, VERSION (whose
//! extension list says whether the server has `posix-rename@openssh.com`
//! version "1"), EXTENDED with the two paths, and the STATUS reply. It
//! runs once per `key rotate --rewrite`, so the extra channel costs
//! nothing that matters.
//!
//! [`Backend::replace`]: cairn_store::Backend::replace

use std::io::{Read, Write};

/// The extension's name.
pub(crate) const EXTENSION: &str = "posix-rename@openssh.com";
/// The extension version this module speaks.
const EXTENSION_VERSION: &[u8] = b"1";
/// The SFTP protocol version asked for.
const SFTP_VERSION: u32 = 3;
/// Packet types (`SSH_FXP_*`).
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_STATUS: u8 = 101;
const FXP_EXTENDED: u8 = 200;
/// `SSH_FX_OK`.
const FX_OK: u32 = 0;
/// The request id of the one request sent.
const REQUEST_ID: u32 = 1;
/// The largest reply accepted (a VERSION with a long extension list is a
/// few hundred bytes; a hostile server must not make us allocate more).
const MAX_PACKET: u32 = 256 * 1024;

/// Why a rename did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenameError {
    /// The server does not list the extension: nothing was sent.
    #[error("the SFTP server does not offer {EXTENSION} (an atomic replace)")]
    Unsupported,
    /// The server refused the rename with this SFTP status.
    #[error("the SFTP server refused the rename: status {code} ({message})")]
    Status {
        /// The `SSH_FX_*` code.
        code: u32,
        /// The server's message.
        message: String,
    },
    /// The channel failed (the connection may be broken).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered something that is not SFTP as expected.
    #[error("the SFTP server sent an unexpected reply: {0}")]
    Protocol(String),
}

/// Renames `from` to `to` over `channel`, a fresh `sftp` subsystem
/// channel, replacing `to` atomically if it exists.
pub(crate) fn posix_rename(
    channel: &mut (impl Read + Write),
    from: &str,
    to: &str,
) -> Result<(), RenameError> {
    send(channel, FXP_INIT, &SFTP_VERSION.to_be_bytes())?;
    let (kind, body) = receive(channel)?;
    if kind != FXP_VERSION {
        return Err(RenameError::Protocol(format!(
            "packet type {kind} instead of VERSION"
        )));
    }
    if !offers_posix_rename(&body)? {
        return Err(RenameError::Unsupported);
    }
    let mut request = Vec::with_capacity(64 + from.len() + to.len());
    request.extend_from_slice(&REQUEST_ID.to_be_bytes());
    put_string(&mut request, EXTENSION.as_bytes());
    put_string(&mut request, from.as_bytes());
    put_string(&mut request, to.as_bytes());
    send(channel, FXP_EXTENDED, &request)?;
    let (kind, body) = receive(channel)?;
    if kind != FXP_STATUS {
        return Err(RenameError::Protocol(format!(
            "packet type {kind} instead of STATUS"
        )));
    }
    let mut r = Fields(&body);
    let (Some(id), Some(code)) = (r.u32(), r.u32()) else {
        return Err(RenameError::Protocol("a STATUS cut short".into()));
    };
    if id != REQUEST_ID {
        return Err(RenameError::Protocol(format!(
            "a STATUS for request {id}, not {REQUEST_ID}"
        )));
    }
    if code == FX_OK {
        return Ok(());
    }
    // The message is optional in practice (SFTP v3 servers before
    // OpenSSH's sent none).
    let message = r
        .string()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    Err(RenameError::Status { code, message })
}

/// Runs the exchange against a server that sends `replies` (its packets
/// back to back) and ignores what it is sent: the entry of the fuzz target
/// `sftp_rename`, which plays hostile servers. Any input ends in `Ok` or
/// an error, never a panic or an allocation above [`MAX_PACKET`].
pub fn rename_against_replies(replies: &[u8]) -> Result<(), String> {
    let mut server = Replies(replies);
    posix_rename(&mut server, "/repo/.tmp-fuzz", "/repo/config").map_err(|e| e.to_string())
}

/// A channel whose reads come from fixed bytes and whose writes vanish.
struct Replies<'a>(&'a [u8]);

impl Read for Replies<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Replies<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a VERSION body (after the type byte) lists the extension at
/// the version this module speaks.
fn offers_posix_rename(body: &[u8]) -> Result<bool, RenameError> {
    let mut r = Fields(body);
    let Some(version) = r.u32() else {
        return Err(RenameError::Protocol("a VERSION cut short".into()));
    };
    if version < SFTP_VERSION {
        return Err(RenameError::Protocol(format!(
            "SFTP version {version}, older than 3"
        )));
    }
    while !r.0.is_empty() {
        let (Some(name), Some(data)) = (r.string(), r.string()) else {
            return Err(RenameError::Protocol("an extension list cut short".into()));
        };
        if name == EXTENSION.as_bytes() && data == EXTENSION_VERSION {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sends one packet: length, type, body.
fn send(channel: &mut impl Write, kind: u8, body: &[u8]) -> Result<(), RenameError> {
    let len = u32::try_from(body.len() + 1)
        .map_err(|_| RenameError::Protocol("a request too large to send".into()))?;
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.extend_from_slice(&len.to_be_bytes());
    packet.push(kind);
    packet.extend_from_slice(body);
    channel.write_all(&packet)?;
    channel.flush()?;
    Ok(())
}

/// Receives one packet: its type and body.
fn receive(channel: &mut impl Read) -> Result<(u8, Vec<u8>), RenameError> {
    let mut len = [0u8; 4];
    channel.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_PACKET {
        return Err(RenameError::Protocol(format!(
            "a packet of {len} bytes (at most {MAX_PACKET} expected)"
        )));
    }
    let mut packet = vec![0u8; len as usize];
    channel.read_exact(&mut packet)?;
    let body = packet.split_off(1);
    Ok((packet[0], body))
}

/// Appends an SSH string (u32 length, bytes).
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    // Paths and names here are far below 4 GiB.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A reader of SSH wire fields over a packet body.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A server scripted by its replies; records what the client sent.
    struct Scripted {
        replies: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Scripted {
        fn new(packets: &[(u8, Vec<u8>)]) -> Scripted {
            let mut replies = Vec::new();
            for (kind, body) in packets {
                replies.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
                replies.push(*kind);
                replies.extend_from_slice(body);
            }
            Scripted {
                replies: Cursor::new(replies),
                sent: Vec::new(),
            }
        }

        /// The packets the client sent, as (type, body).
        fn sent(&self) -> Vec<(u8, Vec<u8>)> {
            let mut out = Vec::new();
            let mut rest = &self.sent[..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                out.push((rest[4], rest[5..4 + len].to_vec()));
                rest = &rest[4 + len..];
            }
            out
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.replies.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn version(extensions: &[(&str, &str)]) -> (u8, Vec<u8>) {
        let mut body = 3u32.to_be_bytes().to_vec();
        for (name, data) in extensions {
            put_string(&mut body, name.as_bytes());
            put_string(&mut body, data.as_bytes());
        }
        (FXP_VERSION, body)
    }

    fn status(id: u32, code: u32, message: &str) -> (u8, Vec<u8>) {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&code.to_be_bytes());
        put_string(&mut body, message.as_bytes());
        put_string(&mut body, b"en");
        (FXP_STATUS, body)
    }

    const OPENSSH: &[(&str, &str)] = &[
        ("posix-rename@openssh.com", "1"),
        ("statvfs@openssh.com", "2"),
        ("fsync@openssh.com", "1"),
    ];

    #[test]
    fn sends_init_then_the_extended_request_and_reads_an_ok() {
        let mut server = Scripted::new(&[version(OPENSSH), status(1, 0, "Success")]);
        posix_rename(&mut server, "/r/.tmp-1", "/r/config").unwrap();
        let sent = server.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], (FXP_INIT, 3u32.to_be_bytes().to_vec()));
        let mut want = 1u32.to_be_bytes().to_vec();
        put_string(&mut want, b"posix-rename@openssh.com");
        put_string(&mut want, b"/r/.tmp-1");
        put_string(&mut want, b"/r/config");
        assert_eq!(sent[1], (FXP_EXTENDED, want));
    }

    #[test]
    fn a_server_without_the_extension_is_told_apart_and_sent_nothing_more() {
        for extensions in [&[][..], &[("fsync@openssh.com", "1")], &[(EXTENSION, "2")]] {
            let mut server = Scripted::new(&[version(extensions)]);
            let e = posix_rename(&mut server, "a", "b").unwrap_err();
            assert!(matches!(e, RenameError::Unsupported), "{e:?}");
            assert_eq!(server.sent().len(), 1, "only INIT was sent");
        }
    }

    #[test]
    fn a_refusal_carries_the_status_and_message() {
        let mut server = Scripted::new(&[version(OPENSSH), status(1, 3, "Permission denied")]);
        match posix_rename(&mut server, "a", "b").unwrap_err() {
            RenameError::Status { code, message } => {
                assert_eq!((code, message.as_str()), (3, "Permission denied"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbled_or_hostile_replies_are_protocol_errors() {
        let huge = {
            let mut bytes = (MAX_PACKET + 1).to_be_bytes().to_vec();
            bytes.push(FXP_VERSION);
            bytes
        };
        let mut server = Scripted {
            replies: Cursor::new(huge),
            sent: Vec::new(),
        };
        let e = posix_rename(&mut server, "a", "b").unwrap_err();
        assert!(matches!(e, RenameError::Protocol(_)), "{e:?}");
        for script in [
            vec![status(1, 0, "")],
            vec![(FXP_VERSION, vec![0, 0, 0])],
            vec![(FXP_VERSION, {
                let mut b = 3u32.to_be_bytes().to_vec();
                b.extend_from_slice(&[0, 0, 0, 99, b'x']);
                b
            })],
            vec![version(OPENSSH), version(OPENSSH)],
            vec![version(OPENSSH), status(7, 0, "")],
            vec![version(OPENSSH), (FXP_STATUS, vec![0, 0, 0, 1])],
        ] {
            let mut server = Scripted::new(&script);
            let e = posix_rename(&mut server, "a", "b").unwrap_err();
            assert!(matches!(e, RenameError::Protocol(_)), "{script:?}: {e:?}");
        }
        // A reply that stops early is an I/O error (the channel closed).
        let mut server = Scripted::new(&[]);
        let e = posix_rename(&mut server, "a", "b").unwrap_err();
        assert!(matches!(e, RenameError::Io(_)), "{e:?}");
    }

    #[test]
    fn the_fuzz_entry_plays_the_replies_as_a_server() {
        let mut ok = Vec::new();
        for (kind, body) in [version(OPENSSH), status(1, 0, "Success")] {
            ok.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
            ok.push(kind);
            ok.extend_from_slice(&body);
        }
        assert_eq!(rename_against_replies(&ok), Ok(()));
        assert!(rename_against_replies(&ok[..ok.len() - 1]).is_err());
        assert!(rename_against_replies(&[0, 0, 0, 0]).is_err());
    }
}
