#![allow(clippy::unwrap_used, clippy::expect_used)]
//! File-tree backup and restore through the library, on a local repository:
//! a tree with every kind of metadata round-trips (checked field by field),
//! incrementals read only what changed, unreadable files are warnings, and
//! hostile snapshots cannot make a restore write outside its target.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::chunklist::Extent;
use cairn::files_backup::{FileBackupOptions, FileBackupSummary, backup_files};
use cairn::files_restore::{RestoreOptions, RestoreSummary, restore_files};
use cairn::tree::{Content, Node, NodeKind, Tree, lookup, save_tree};
use cairn::treediff::{ChangeKind, diff, walk};
use cairn_chunker::{Chunker, ChunkerParams, GearTable};
use cairn_store::backend::LocalBackend;
use cairn_store::{BlobType, Credential, Id, InitOptions, OpenOptions, Repository, SeededRandom};
use rustix::fs::{AtFlags, Timespec, Timestamps};

struct Env {
    dir: tempfile::TempDir,
    repo: Repository,
    chunker: Chunker,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut init = InitOptions::for_tests();
    init.pack_size = 1 << 20;
    let mut open = OpenOptions::new(None);
    open.rng = Arc::new(SeededRandom::new(b"files roundtrip"));
    let backend = Arc::new(LocalBackend::create(dir.path().join("repo")).unwrap());
    let repo = Repository::init(backend, &Credential::Password(b"pw"), &init, open).unwrap();
    let chunker = Chunker::new(
        ChunkerParams::new(4096, 16384, 65536),
        GearTable::from_seed(repo.keys().gear_seed()),
    )
    .unwrap();
    Env { dir, repo, chunker }
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn backup(&self, paths: &[PathBuf], parent: Option<Id>) -> FileBackupSummary {
        self.backup_with(
            paths,
            parent,
            &FileBackupOptions {
                threads: 2,
                ..Default::default()
            },
        )
    }

    fn backup_with(
        &self,
        paths: &[PathBuf],
        parent: Option<Id>,
        opts: &FileBackupOptions,
    ) -> FileBackupSummary {
        let s = backup_files(&self.repo, &self.chunker, paths, parent, opts).unwrap();
        self.repo.flush().unwrap();
        s
    }

    fn restore(
        &self,
        root: Id,
        target: &Path,
        includes: &[PathBuf],
        verify: bool,
    ) -> RestoreSummary {
        let opts = RestoreOptions { verify, threads: 2 };
        restore_files(&self.repo, root, target, includes, &opts).unwrap()
    }
}

/// Deterministic bytes.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

fn set_times(path: &Path, sec: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Builds the source tree; returns whether user xattrs are supported.
fn make_tree(root: &Path) -> bool {
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    fs::create_dir(root.join("private")).unwrap();
    fs::write(root.join("small.txt"), b"hello, cairn\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("medium.bin"), data(1, 200_000)).unwrap();
    fs::write(root.join("sub/deep/file.txt"), data(2, 5000)).unwrap();
    fs::write(root.join("private/secret"), b"secret").unwrap();
    // 6 MiB with a 2 MiB hole in the middle and a hole at the end.
    let big = fs::File::create(root.join("big.bin")).unwrap();
    big.write_all_at(&data(3, 2 << 20), 0).unwrap();
    big.write_all_at(&data(4, 2 << 20), 4 << 20).unwrap();
    big.set_len(7 << 20).unwrap();
    drop(big);
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("dangling")).unwrap();
    fs::write(root.join("hl1"), b"linked content").unwrap();
    fs::hard_link(root.join("hl1"), root.join("sub/hl2")).unwrap();
    fs::hard_link(root.join("hl1"), root.join("sub/deep/hl3")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o640),
    )
    .unwrap();
    let odd = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9 \x01name"));
    fs::write(&odd, b"non-utf8 name").unwrap();
    let xattrs = rustix::fs::setxattr(
        root.join("small.txt"),
        "user.cairn.test",
        b"value\0with nul",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    if !xattrs {
        println!("note: the temporary file system refuses user xattrs; not testing them");
    }
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(
        root.join("private/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(root.join("small.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    // Times last, children before parents.
    let mut n = 0;
    for rel in [
        "small.txt",
        "empty",
        "medium.bin",
        "sub/deep/file.txt",
        "private/secret",
        "big.bin",
        "link",
        "dangling",
        "hl1",
        "fifo",
        "sub/deep",
        "sub",
        "private",
    ] {
        n += 1;
        set_times(&root.join(rel), 1_700_000_000 + n * 1000, 123_456_789 + n);
    }
    set_times(&odd, 1_600_000_000, 1);
    set_times(root, 1_650_000_000, 999_999_999);
    xattrs
}

/// Everything compared about one entry.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: String,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    target: Option<PathBuf>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    content: Option<[u8; 32]>,
}

fn user_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return BTreeMap::new();
    };
    names[..n]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|name| {
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name, &mut v[..]).unwrap();
            v.truncate(len);
            (name.to_vec(), v)
        })
        .collect()
}

/// Walks a tree: entry per relative path, and the hardlink groups.
fn scan(root: &Path) -> (BTreeMap<PathBuf, Entry>, BTreeSet<Vec<PathBuf>>) {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let kind = format!("{ft:?}")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned();
        let kind = if ft.is_dir() {
            "dir".to_owned()
        } else if ft.is_symlink() {
            "symlink".to_owned()
        } else if ft.is_file() {
            "file".to_owned()
        } else {
            kind
        };
        if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        } else if m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        let content = ft
            .is_file()
            .then(|| *blake3::hash(&fs::read(&path).unwrap()).as_bytes());
        let entry = Entry {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            },
            size: if ft.is_file() { m.size() } else { 0 },
            mtime: (m.mtime(), m.mtime_nsec()),
            target: ft.is_symlink().then(|| fs::read_link(&path).unwrap()),
            xattrs: user_xattrs(&path),
            content,
        };
        if !rel.as_os_str().is_empty() {
            entries.insert(rel, entry);
        }
    }
    let groups = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    (entries, groups)
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ea, ga) = scan(a);
    let (eb, gb) = scan(b);
    assert_eq!(
        ea.keys().collect::<Vec<_>>(),
        eb.keys().collect::<Vec<_>>(),
        "same paths"
    );
    for (path, entry) in &ea {
        assert_eq!(Some(entry), eb.get(path), "{}", path.display());
    }
    assert_eq!(ga, gb, "hardlink groups");
}

/// `path` inside a restore target (the snapshot keeps absolute paths).
fn inside(target: &Path, path: &Path) -> PathBuf {
    target.join(path.strip_prefix("/").unwrap())
}

#[test]
fn every_kind_of_metadata_round_trips_and_reruns_skip() {
    let env = env();
    let src = env.path("src");
    let xattrs = make_tree(&src);
    let s = env.backup(std::slice::from_ref(&src), None);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // small, empty, medium, deep/file, secret, big, hl1, odd name
    assert_eq!(s.files, 8);
    assert_eq!(s.files_unchanged, 0);
    let big_rel = src.join("big.bin");
    let big_rel = big_rel.strip_prefix("/").unwrap().as_os_str().as_bytes();
    let big_node = lookup(&env.repo, &s.root, big_rel).unwrap().unwrap();
    assert!(
        matches!(big_node.content, Some(Content::List(_))),
        "a file of more than 256 chunks keeps them in a chunked list"
    );

    let out = env.path("out");
    let r = env.restore(s.root, &out, &[], true);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.files, 8);
    assert_eq!(r.files_verified, 8);
    assert_same_tree(&src, &inside(&out, &src));
    let big = fs::metadata(inside(&out, &src.join("big.bin"))).unwrap();
    assert!(
        big.blocks() * 512 < 5 << 20,
        "holes stay holes ({} blocks)",
        big.blocks()
    );
    if xattrs {
        let x = user_xattrs(&inside(&out, &src.join("small.txt")));
        assert_eq!(x.get(&b"user.cairn.test"[..]).unwrap(), b"value\0with nul");
    }

    // A rerun finds every file in place.
    let again = env.restore(s.root, &out, &[], false);
    assert_eq!(again.files_skipped, 8, "{again:?}");
    assert_eq!(again.bytes_written, 0);
    assert_same_tree(&src, &inside(&out, &src));

    // A partial restore: one subtree, and the directories leading to it.
    let part = env.path("part");
    let r = env.restore(s.root, &part, &[src.join("sub")], false);
    assert!(inside(&part, &src.join("sub/deep/file.txt")).exists());
    assert!(!inside(&part, &src.join("small.txt")).exists());
    // sub/hl2's first name (hl1) was left out: it is restored as a copy.
    assert_eq!(
        fs::read(inside(&part, &src.join("sub/hl2"))).unwrap(),
        b"linked content"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

/// Directories get their metadata as soon as they are complete, while
/// other files are still being written: times and modes must still come
/// out exact, for many directories, read-only ones (with files and
/// subdirectories inside), and directories a hardlink lands in.
#[test]
fn directory_metadata_is_exact_when_applied_as_directories_complete() {
    let env = env();
    let src = env.path("src");
    let mut dirs = Vec::new();
    for a in 0..6u64 {
        for b in 0..5u64 {
            let dir = src.join(format!("d{a}/e{b}"));
            fs::create_dir_all(&dir).unwrap();
            // Small files, and every seventh directory a file of several
            // chunks, so that workers finish in a different order than
            // the walk.
            for f in 0..3u64 {
                let len = if (a * 5 + b) % 7 == 0 && f == 0 {
                    600_000
                } else {
                    3000
                };
                fs::write(
                    dir.join(format!("f{f}")),
                    data(a * 100 + b * 10 + f, len as usize),
                )
                .unwrap();
            }
            dirs.push(dir);
        }
        dirs.push(src.join(format!("d{a}")));
    }
    fs::write(src.join("first"), b"first name").unwrap();
    fs::hard_link(src.join("first"), src.join("d2/e3/second")).unwrap();
    let read_only = [src.join("d1"), src.join("d2/e3"), src.join("d4/e0")];
    let mut n = 0;
    for dir in dirs.iter().filter(|d| d.parent() != Some(src.as_path())) {
        for f in 0..3 {
            n += 1;
            set_times(&dir.join(format!("f{f}")), 1_700_000_000 + n, 1000 + n);
        }
    }
    for dir in &read_only {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    }
    for dir in &dirs {
        n += 1;
        set_times(dir, 1_710_000_000 + n, 7 + n);
    }

    let s = env.backup(std::slice::from_ref(&src), None);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let out = env.path("out");
    let r = env.restore(s.root, &out, &[], false);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.files, 6 * 5 * 3 + 1);
    assert_same_tree(&src, &inside(&out, &src));

    // Let the temporary directory be removed when not running as root.
    for dir in &read_only {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(inside(&out, dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn incremental_reads_only_changed_files_and_diff_sees_them() {
    let env = env();
    let src = env.path("src");
    make_tree(&src);
    let first = env.backup(std::slice::from_ref(&src), None);
    fs::write(src.join("medium.bin"), data(9, 200_000)).unwrap();
    let second = env.backup(std::slice::from_ref(&src), Some(first.root));
    assert_eq!(second.files, 8);
    assert_eq!(second.files_unchanged, 7, "{second:?}");
    assert_eq!(second.bytes_read, 200_000);
    assert!(second.bytes_stored < 300_000, "{second:?}");
    let third = env.backup(std::slice::from_ref(&src), Some(second.root));
    assert_eq!(third.files_unchanged, 8);
    assert_eq!(third.bytes_read, 0);

    let changes = diff(&env.repo, &first.root, &second.root).unwrap();
    let medium = changes
        .iter()
        .find(|c| c.path.ends_with("medium.bin"))
        .expect("medium.bin changed");
    assert!(matches!(
        medium.kind,
        ChangeKind::Modified { content: true, .. }
    ));
    assert!(!changes.iter().any(|c| c.path.ends_with("small.txt")));

    let mut listed = Vec::new();
    walk(&env.repo, &second.root, &mut |path, node| {
        listed.push((path.to_path_buf(), node.kind));
        Ok(())
    })
    .unwrap();
    assert!(listed.contains(&(src.join("sub/hl2"), NodeKind::Hardlink)));
    assert!(listed.contains(&(src.join("fifo"), NodeKind::Fifo)));
}

#[test]
fn vanished_file_is_a_warning_and_the_backup_completes() {
    let env = env();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"stays").unwrap();
    fs::write(src.join("gone"), b"vanishes between listing and reading").unwrap();
    let opts = FileBackupOptions {
        threads: 2,
        before_read: Some(Arc::new(|p: &Path| {
            if p.ends_with("gone") {
                let _ = fs::remove_file(p);
            }
        })),
        ..Default::default()
    };
    let s = env.backup_with(std::slice::from_ref(&src), None, &opts);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].path.ends_with("gone"));
    assert_eq!(s.files, 1);
    let out = env.path("out");
    env.restore(s.root, &out, &[], false);
    assert_eq!(fs::read(inside(&out, &src.join("a"))).unwrap(), b"stays");
    assert!(!inside(&out, &src.join("gone")).exists());
}

/// Files that shrink or grow between being opened (their size taken) and
/// being read: deterministic, through the `after_open` hook. Each is a
/// warning ("changed while being read"), stored as read; the backup
/// completes and everything else restores.
#[test]
fn files_that_shrink_or_grow_while_read_are_warnings_stored_as_read() {
    let env = env();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let small = data(1, 200_000);
    let large = data(2, 3 << 20);
    fs::write(src.join("stays"), data(3, 500_000)).unwrap();
    fs::write(src.join("shrinks"), &small).unwrap();
    fs::write(src.join("grows"), &large).unwrap();
    fs::write(src.join("empties"), &small).unwrap();
    let opts = FileBackupOptions {
        threads: 2,
        after_open: Some(Arc::new(|p: &Path| {
            use std::io::Write;
            let name = p.file_name().unwrap().to_str().unwrap();
            let f = fs::OpenOptions::new().append(true).open(p);
            match (name, f) {
                ("shrinks", Ok(f)) => f.set_len(70_000).unwrap(),
                ("empties", Ok(f)) => f.set_len(0).unwrap(),
                ("grows", Ok(mut f)) => f.write_all(&[7u8; 100_000]).unwrap(),
                _ => {}
            }
        })),
        ..Default::default()
    };
    let s = env.backup_with(std::slice::from_ref(&src), None, &opts);
    let mut warned: Vec<_> = s
        .warnings
        .iter()
        .map(|w| {
            assert!(w.message.contains("changed while being read"), "{w:?}");
            w.path.file_name().unwrap().to_str().unwrap().to_string()
        })
        .collect();
    warned.sort();
    assert_eq!(warned, ["empties", "grows", "shrinks"]);
    assert_eq!(s.files, 4);
    let out = env.path("out");
    let r = env.restore(s.root, &out, &[], true);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let got = |n: &str| fs::read(inside(&out, &src.join(n))).unwrap();
    assert_eq!(got("stays"), data(3, 500_000));
    // As read: what was there when the read happened.
    assert_eq!(got("shrinks"), &small[..70_000]);
    assert!(got("empties").is_empty());
    let grown = got("grows");
    assert!(grown.len() >= large.len(), "{}", grown.len());
    assert_eq!(&grown[..large.len()], &large[..]);
    assert!(grown[large.len()..].iter().all(|&b| b == 7));
}

#[test]
fn excludes_and_cache_dirs_are_left_out() {
    let env = env();
    let src = env.path("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::create_dir_all(src.join("fake")).unwrap();
    fs::write(src.join("keep.txt"), b"k").unwrap();
    fs::write(src.join("drop.tmp"), b"d").unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    fs::write(src.join("fake/CACHEDIR.TAG"), b"not a signature").unwrap();
    let opts = FileBackupOptions {
        excludes: vec!["*.tmp".into()],
        exclude_caches: true,
        threads: 1,
        ..Default::default()
    };
    let s = env.backup_with(std::slice::from_ref(&src), None, &opts);
    let mut names = Vec::new();
    walk(&env.repo, &s.root, &mut |path, _| {
        if let Ok(rel) = path.strip_prefix(&src) {
            names.push(rel.to_path_buf());
        }
        Ok(())
    })
    .unwrap();
    names.sort();
    let expect: Vec<PathBuf> = ["", "fake", "fake/CACHEDIR.TAG", "keep.txt"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(names, expect);
}

// ---- hostile snapshots ----

fn node(name: &[u8], kind: NodeKind) -> Node {
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = 0o644;
    n
}

fn file_node(env: &Env, name: &[u8], body: &[u8]) -> Node {
    let id = env.repo.save_blob(BlobType::Data, body).unwrap().id;
    let mut n = node(name, NodeKind::File);
    n.size = body.len() as u64;
    n.content = Some(Content::Inline(vec![Extent {
        len: body.len() as u64,
        blob: Some(id),
    }]));
    n
}

fn tree_of(env: &Env, mut nodes: Vec<Node>) -> Id {
    let mut t = Tree::default();
    t.nodes.append(&mut nodes);
    t.sort();
    save_tree(&env.repo, &t).unwrap().0
}

fn dir_node(env: &Env, name: &[u8], nodes: Vec<Node>) -> Node {
    let mut n = node(name, NodeKind::Dir);
    n.mode = 0o755;
    n.subtree = Some(tree_of(env, nodes));
    n
}

/// A box with `target/` and a sibling `outside/` that must stay untouched.
fn sandbox(env: &Env) -> (PathBuf, PathBuf) {
    let target = env.path("box/target");
    let outside = env.path("box/outside");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    (target, outside)
}

fn assert_outside_untouched(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("victim")]);
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
}

fn hostile_restore(env: &Env, root: Id, target: &Path) -> RestoreSummary {
    let opts = RestoreOptions {
        verify: false,
        threads: 2,
    };
    restore_files(&env.repo, root, target, &[], &opts).unwrap()
}

#[test]
fn hostile_names_are_refused() {
    let env = env();
    let (target, outside) = sandbox(&env);
    let root = tree_of(
        &env,
        vec![
            file_node(&env, b"..", b"evil"),
            file_node(&env, b".", b"evil"),
            file_node(&env, b"../outside/victim", b"evil"),
            file_node(&env, b"nul\0byte", b"evil"),
            dir_node(
                &env,
                b"../outside",
                vec![file_node(&env, b"victim", b"evil")],
            ),
            file_node(&env, b"fine", b"ok"),
        ],
    );
    let r = hostile_restore(&env, root, &target);
    assert_eq!(r.warnings.len(), 5, "{:?}", r.warnings);
    assert!(r.warnings.iter().all(|w| w.message.contains("refused")));
    assert_eq!(fs::read(target.join("fine")).unwrap(), b"ok");
    assert_outside_untouched(&outside);
}

#[test]
fn empty_names_make_the_tree_damaged() {
    let env = env();
    let (target, outside) = sandbox(&env);
    let mut t = Tree::default();
    t.nodes.push(file_node(&env, b"x", b"evil"));
    let json = String::from_utf8(t.encode())
        .unwrap()
        .replace("\"name\":\"x\"", "\"name\":\"\"");
    let root = env
        .repo
        .save_blob(BlobType::Meta, json.as_bytes())
        .unwrap()
        .id;
    let opts = RestoreOptions::default();
    let err = restore_files(&env.repo, root, &target, &[], &opts).unwrap_err();
    assert!(err.to_string().contains("damaged tree"), "{err}");
    assert_outside_untouched(&outside);
}

#[test]
fn symlinks_in_the_snapshot_are_never_followed() {
    let env = env();
    let (target, outside) = sandbox(&env);
    // A symlink to the outside, then a hardlink and a later snapshot's
    // directory that try to go through it.
    let mut s = node(b"s", NodeKind::Symlink);
    s.target = Some(outside.as_os_str().as_bytes().to_vec());
    let mut h = node(b"h", NodeKind::Hardlink);
    h.link = Some(b"s/victim".to_vec());
    let mut up = node(b"up", NodeKind::Hardlink);
    up.link = Some(b"../outside/victim".to_vec());
    let first = tree_of(&env, vec![s, h, up]);
    let r = hostile_restore(&env, first, &target);
    assert!(fs::symlink_metadata(target.join("s")).unwrap().is_symlink());
    assert!(!target.join("h").exists(), "{:?}", r.warnings);
    assert!(fs::symlink_metadata(target.join("up")).is_err());
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);

    let second = tree_of(
        &env,
        vec![dir_node(
            &env,
            b"s",
            vec![
                file_node(&env, b"victim", b"evil"),
                file_node(&env, b"new", b"evil"),
            ],
        )],
    );
    let r = hostile_restore(&env, second, &target);
    assert!(
        r.warnings.iter().any(|w| w.message.contains("refused")),
        "{:?}",
        r.warnings
    );
    assert_outside_untouched(&outside);
}

#[test]
fn symlinks_planted_in_the_target_are_replaced_not_followed() {
    let env = env();
    let (target, outside) = sandbox(&env);
    std::os::unix::fs::symlink(outside.join("victim"), target.join("f")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("d")).unwrap();
    let root = tree_of(
        &env,
        vec![
            file_node(&env, b"f", b"evil"),
            dir_node(&env, b"d", vec![file_node(&env, b"x", b"evil")]),
        ],
    );
    let r = hostile_restore(&env, root, &target);
    assert_eq!(fs::read(target.join("f")).unwrap(), b"evil");
    assert!(fs::symlink_metadata(target.join("f")).unwrap().is_file());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert_outside_untouched(&outside);
}
