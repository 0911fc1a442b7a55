//! A file snapshot as one tar stream, for handing it to a system that
//! has no cairn.
//!
//! The archive is what GNU tar writes: GNU headers (long names and link
//! targets as `././@LongLink` entries, large ids and sizes in base-256),
//! with POSIX pax records before an entry where the header cannot carry
//! something: extended attributes (`SCHILY.xattr.*`, which GNU tar
//! `--xattrs` and bsdtar restore, POSIX ACLs and SELinux labels with them),
//! nanosecond mtimes, and owner or group names longer than the header's 32
//! bytes. Paths are relative to the snapshot root. Files are written whole,
//! holes as zeros (tar's sparse formats are not portable enough to be
//! worth it here). Sockets cannot be archived and are reported, as GNU tar
//! does; so are entries whose names are unsafe ([`TreeCursor`] refuses
//! them), which keeps `..` and absolute paths out of the archive.

use std::io::{self, Read, Write};

use cairn_store::{Id, Repository};
use tar::{Builder, EntryType, Header, HeaderMode};

use super::ExportError;
use super::feed::{DataFeed, carries_data};
use crate::tree::{Node, NodeKind, bytes_path, display_path};
use crate::tree_cursor::{Entry, TreeCursor};

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries written.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// File data written (holes included).
    pub bytes: u64,
    /// Entries left out, each with why.
    pub skipped: Vec<String>,
}

/// Writes the file snapshot whose tree is `root` to `out` as a tar stream;
/// calls `progress` with the file bytes written so far.
pub fn export_tar(
    repo: &Repository,
    root: Id,
    out: &mut dyn Write,
    threads: usize,
    progress: &dyn Fn(u64),
) -> Result<TarSummary, ExportError> {
    export_tar_windowed(repo, root, out, threads, progress, super::WINDOW_BYTES)
}

/// [`export_tar`] with windows of `window_bytes` of data.
pub(super) fn export_tar_windowed(
    repo: &Repository,
    root: Id,
    out: &mut dyn Write,
    threads: usize,
    progress: &dyn Fn(u64),
    window_bytes: u64,
) -> Result<TarSummary, ExportError> {
    let mut feed = DataFeed::new(repo, root, threads, window_bytes);
    let mut builder = Builder::new(out);
    builder.mode(HeaderMode::Complete);
    let mut summary = TarSummary::default();
    for entry in TreeCursor::new(repo, root) {
        let entry = entry?;
        if let Some(why) = entry.refused {
            summary.skipped.push(format!(
                "{}: unsafe name ({why}), left out",
                display_path(&entry.path).display()
            ));
            continue;
        }
        if entry.node.kind == NodeKind::Socket {
            summary.skipped.push(format!(
                "{}: a socket cannot be archived, left out",
                display_path(&entry.path).display()
            ));
            continue;
        }
        let skipped_xattrs = write_pax(&mut builder, &entry.node)?;
        summary
            .skipped
            .extend(skipped_xattrs.into_iter().map(|name| {
                format!(
                    "{}: extended attribute {name:?} has a name tar cannot carry, left out",
                    display_path(&entry.path).display()
                )
            }));
        write_entry(&mut builder, &mut feed, &entry)
            .map_err(|e| feed.take_error().unwrap_or(ExportError::Write(e)))?;
        summary.entries += 1;
        if carries_data(&entry) {
            summary.files += 1;
            progress(feed.handed_out());
        }
    }
    summary.bytes = feed.handed_out();
    builder.finish()?;
    Ok(summary)
}

/// The header fields every entry shares.
fn header_for(node: &Node, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(node.mode & 0o7777);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(u64::try_from(node.mtime.sec).unwrap_or(0));
    // Names longer than the header's field travel as pax records instead.
    if let Some(user) = &node.user {
        let _ = h.set_username(user);
    }
    if let Some(group) = &node.group {
        let _ = h.set_groupname(group);
    }
    h
}

/// Link targets this long or longer travel as a pax `linkpath` record
/// (the header's field holds 100 bytes; pax keeps the bytes literally).
const HEADER_LINK_MAX: usize = 100;

/// Writes the pax records `node` needs, if any; returns the names of
/// extended attributes that could not be carried (not UTF-8, or with `=`).
fn write_pax(builder: &mut Builder<&mut dyn Write>, node: &Node) -> io::Result<Vec<String>> {
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut skipped = Vec::new();
    if node.mtime.nsec != 0 || node.mtime.sec < 0 {
        records.push(("mtime".into(), pax_time(node.mtime.sec, node.mtime.nsec)));
    }
    for (key, name) in [("uname", &node.user), ("gname", &node.group)] {
        if let Some(name) = name.as_ref().filter(|n| n.len() > 31) {
            records.push((key.into(), name.clone().into_bytes()));
        }
    }
    if let Some(link) = link_target(node).filter(|l| l.len() >= HEADER_LINK_MAX) {
        records.push(("linkpath".into(), link.to_vec()));
    }
    for x in &node.xattrs {
        match std::str::from_utf8(&x.name) {
            Ok(name) if !name.contains('=') => {
                records.push((format!("SCHILY.xattr.{name}"), x.value.clone()))
            }
            _ => skipped.push(String::from_utf8_lossy(&x.name).into_owned()),
        }
    }
    if !records.is_empty() {
        let mut data = Vec::new();
        for (key, value) in &records {
            data.extend_from_slice(&pax_record(key, value));
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("PaxHeader")?;
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder.append(&h, &data[..])?;
    }
    Ok(skipped)
}

/// The target a symlink or hardlink entry names.
fn link_target(node: &Node) -> Option<&[u8]> {
    match node.kind {
        NodeKind::Symlink => node.target.as_deref(),
        NodeKind::Hardlink => node.link.as_deref(),
        _ => None,
    }
}

/// One pax record, `"<len> <key>=<value>\n"`, where `<len>` counts the
/// whole record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A pax time: seconds and nanoseconds, `-1.5` style for times before 1970.
fn pax_time(sec: i64, nsec: u32) -> Vec<u8> {
    if sec >= 0 {
        format!("{sec}.{nsec:09}").into_bytes()
    } else if nsec == 0 {
        format!("{sec}").into_bytes()
    } else {
        // sec + nsec/1e9 with sec < 0: e.g. -2 s + 0.25 s = -1.75 s.
        format!("-{}.{:09}", -(sec + 1), 1_000_000_000 - nsec).into_bytes()
    }
}

/// Writes one entry (its data, for a regular file, from `feed`).
fn write_entry(
    builder: &mut Builder<&mut dyn Write>,
    feed: &mut DataFeed<'_>,
    entry: &Entry,
) -> io::Result<()> {
    let node = &entry.node;
    let path = bytes_path(&entry.path);
    match node.kind {
        NodeKind::File => {
            let mut h = header_for(node, EntryType::Regular, node.size);
            builder.append_data(&mut h, path, feed.by_ref().take(node.size))
        }
        NodeKind::Dir => {
            let mut h = header_for(node, EntryType::Directory, 0);
            builder.append_data(&mut h, path, io::empty())
        }
        NodeKind::Symlink | NodeKind::Hardlink => {
            let kind = if node.kind == NodeKind::Symlink {
                EntryType::Symlink
            } else {
                EntryType::Link
            };
            let mut h = header_for(node, kind, 0);
            let target = link_target(node).unwrap_or_default();
            if target.len() < HEADER_LINK_MAX {
                // Literal bytes: the crate's `set_link_name` would tidy
                // `a//b/./c`, which is not what the symlink said.
                h.set_link_name_literal(target)?;
            }
            builder.append_data(&mut h, path, io::empty())
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = if node.kind == NodeKind::Chardev {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = header_for(node, kind, 0);
            h.set_device_major(rustix::fs::major(node.rdev))?;
            h.set_device_minor(rustix::fs::minor(node.rdev))?;
            builder.append_data(&mut h, path, io::empty())
        }
        NodeKind::Fifo => {
            let mut h = header_for(node, EntryType::Fifo, 0);
            builder.append_data(&mut h, path, io::empty())
        }
        NodeKind::Socket => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::{export_tar_windowed, pax_record, pax_time};
    use crate::files_backup::{FileBackupOptions, backup_files};
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;

    /// What the archive says about one entry.
    #[derive(Debug, PartialEq)]
    struct Seen {
        kind: tar::EntryType,
        data: Vec<u8>,
        link: Option<Vec<u8>>,
        mode: u32,
    }

    fn read_archive(bytes: &[u8]) -> BTreeMap<Vec<u8>, Seen> {
        let mut archive = tar::Archive::new(bytes);
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path_bytes().to_vec();
            let link = entry.link_name_bytes().map(|l| l.to_vec());
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.insert(
                path,
                Seen {
                    kind,
                    data,
                    link,
                    mode,
                },
            );
        }
        seen
    }

    #[test]
    fn a_tar_export_holds_every_entry_with_its_bytes_in_any_window_size() {
        let repo = crate::chunklist::tests::test_repo();
        let chunker = crate::repo::chunker_for(&repo, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let long_dir = src.join("d".repeat(120)).join("e".repeat(150));
        std::fs::create_dir_all(&long_dir).unwrap();
        let mut big = cairn_chunker::testdata::pseudo_random(7, 3 << 20);
        big[1 << 20..2 << 20].fill(0);
        std::fs::write(src.join("big"), &big).unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        for i in 0..40u64 {
            let body = cairn_chunker::testdata::pseudo_random(100 + i, 2000 + i as usize);
            std::fs::write(src.join(format!("small{i:02}")), body).unwrap();
        }
        std::fs::write(long_dir.join("deep"), b"deep file").unwrap();
        std::os::unix::fs::symlink("a//b/./c", src.join("odd-link")).unwrap();
        let far = "t/".repeat(80);
        std::os::unix::fs::symlink(&far, src.join("long-link")).unwrap();
        std::fs::hard_link(src.join("small03"), src.join("hard")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            src.join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o640),
        )
        .unwrap();
        let opts = FileBackupOptions {
            threads: 2,
            ..Default::default()
        };
        let summary =
            backup_files(&repo, &chunker, std::slice::from_ref(&src), None, &opts).unwrap();
        repo.flush().unwrap();

        let prefix = src
            .strip_prefix("/")
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let rel = |name: &str| {
            let mut p = prefix.clone();
            p.push(b'/');
            p.extend_from_slice(name.as_bytes());
            p
        };
        let mut first: Option<Vec<u8>> = None;
        for window in [super::super::WINDOW_BYTES, 10_000, 1] {
            let mut out = Vec::new();
            let written =
                export_tar_windowed(&repo, summary.root, &mut out, 2, &|_| {}, window).unwrap();
            assert!(written.skipped.is_empty(), "{:?}", written.skipped);
            let seen = read_archive(&out);
            assert!(seen[&rel("big")].data == big, "window {window}");
            assert_eq!(seen[&rel("empty")].data, b"");
            for i in 0..40u64 {
                let body = cairn_chunker::testdata::pseudo_random(100 + i, 2000 + i as usize);
                // `hard` sorts first: it holds the bytes, small03 links to it.
                let name = if i == 3 {
                    "hard".into()
                } else {
                    format!("small{i:02}")
                };
                assert!(seen[&rel(&name)].data == body, "{name}, window {window}");
            }
            let deep = format!("{}/{}/deep", "d".repeat(120), "e".repeat(150));
            assert_eq!(seen[&rel(&deep)].data, b"deep file");
            let odd = &seen[&rel("odd-link")];
            assert_eq!(odd.kind, tar::EntryType::Symlink);
            assert_eq!(odd.link.as_deref(), Some(&b"a//b/./c"[..]));
            assert_eq!(
                seen[&rel("long-link")].link.as_deref(),
                Some(far.as_bytes())
            );
            // The second name of a file links to the first, by archive path.
            let second = &seen[&rel("small03")];
            assert_eq!(second.kind, tar::EntryType::Link);
            assert_eq!(second.link.as_deref(), Some(&rel("hard")[..]));
            assert_eq!(seen[&rel("fifo")].kind, tar::EntryType::Fifo);
            assert_eq!(seen[&rel("fifo")].mode, 0o640);
            assert_eq!(seen[&prefix].kind, tar::EntryType::Directory);
            // 40 small, big, empty, deep; the second name of small03 is a link.
            assert_eq!(written.files, 43, "{written:?}");
            assert_eq!(
                written.bytes,
                big.len() as u64 + (0..40).map(|i| 2000 + i).sum::<u64>() + 9
            );
            match &first {
                None => first = Some(out),
                Some(f) => assert!(*f == out, "window {window} changes the archive"),
            }
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("mtime", b"1.5"), b"13 mtime=1.5\n");
        assert_eq!(pax_record("a", b"bbbb"), b"9 a=bbbb\n");
        // 98 bytes besides the length: 2 digits would make 100, which
        // needs 3; 3 make 101.
        let edge = pax_record("k", &[b'v'; 94]);
        assert_eq!(&edge[..4], b"101 ");
        assert_eq!(edge.len(), 101);
        let long = pax_record("k", &[b'v'; 95]);
        assert_eq!(&long[..4], b"102 ");
        assert_eq!(long.len(), 102);
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(5, 250_000_000), b"5.250000000");
        assert_eq!(pax_time(0, 0), b"0.000000000");
        assert_eq!(pax_time(-2, 0), b"-2");
        assert_eq!(pax_time(-2, 250_000_000), b"-1.750000000");
    }
}
