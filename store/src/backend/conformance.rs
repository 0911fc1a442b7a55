//! The conformance suite every backend runs, this crate's and those of other
//! crates (SFTP, S3, Azure, ...): the repository code relies on exactly
//! these semantics and nothing more.
//!
//! [`run_all`] needs a backend that is **empty** when it starts (a fresh
//! directory, bucket or container prefix) and leaves it empty when it
//! passes. Each check cleans up what it wrote and uses object names no other
//! check uses, so the checks can also be called one by one; [`check_list`]
//! alone needs an empty backend. A violation panics with a message naming
//! the backend's location and what went wrong: this is test support code.

use super::{Backend, BackendError, Handle, ObjectInfo, ObjectKind};
use crate::Id;
use std::fmt::Display;
use std::sync::Barrier;

/// The size of the large object of the round trip (big enough to cross
/// the multipart and buffering thresholds of object stores).
pub const LARGE_OBJECT: usize = 5 * 1024 * 1024;

/// How many threads race in the concurrency checks.
pub const THREADS: usize = 8;

/// Runs every check, in order, panicking at the first violation. The
/// backend must be empty when this starts; it is empty again afterwards.
pub fn run_all(backend: &dyn Backend) {
    check_empty(
        backend,
        "at the start of the suite (run_all needs an empty backend)",
    );
    check_round_trip(backend);
    check_create_only(backend);
    check_read_range(backend);
    check_stat(backend);
    check_list(backend);
    check_delete(backend);
    check_replace(backend);
    check_invalid_names(backend);
    check_concurrent_same_handle(backend);
    check_concurrent_different_handles(backend);
    check_concurrent_replace(backend);
    check_empty(
        backend,
        "at the end of the suite (a check left objects behind)",
    );
}

/// Every kind lists nothing. `when` says when, for the message.
pub fn check_empty(backend: &dyn Backend, when: &str) {
    for kind in ObjectKind::ALL {
        let listed = must(
            backend,
            format!("list {}s {when}", kind.label()),
            backend.list(kind),
        );
        if !listed.is_empty() {
            fail(
                backend,
                format!("{}s are not empty {when}: {listed:?}", kind.label()),
            );
        }
    }
}

/// Every kind round-trips a 0-byte, a 1-byte, a 65 537-byte and a 5 MiB
/// object byte for byte.
pub fn check_round_trip(backend: &dyn Backend) {
    for kind in ObjectKind::ALL {
        for size in [0, 1, 65_537, LARGE_OBJECT] {
            let tag = format!("round trip {size}");
            let h = handle(kind, &tag);
            let data = payload(&tag, size);
            write(backend, &h, &data);
            expect_content(backend, &h, &data, "read after write_new");
            remove(backend, &h);
        }
    }
}

/// A second `write_new` of an existing object, with other or equal bytes,
/// fails with AlreadyExists and leaves the original untouched.
pub fn check_create_only(backend: &dyn Backend) {
    for kind in ObjectKind::ALL {
        let h = handle(kind, "create only");
        let original = payload("create only original", 1000);
        write(backend, &h, &original);
        for (what, other) in [
            ("different bytes", payload("create only other", 1000)),
            ("the same bytes", original.clone()),
            ("no bytes", Vec::new()),
        ] {
            let what = format!("second write_new of {h} with {what}");
            expect_err(
                backend,
                &what,
                backend.write_new(&h, &other),
                Kind::AlreadyExists,
            );
        }
        expect_content(backend, &h, &original, "read after refused overwrites");
        remove(backend, &h);
    }
}

/// Ranged reads at the start, middle and end, zero-length ones, and ranges
/// past the end (OutOfRange, without overflow on huge offsets).
pub fn check_read_range(backend: &dyn Backend) {
    let h = handle(ObjectKind::Pack, "read range");
    let data = payload("read range", 10_000);
    let size = data.len() as u64;
    write(backend, &h, &data);
    for (offset, len) in [
        (0, 100),
        (0, size),
        (4_000, 1_234),
        (size - 100, 100),
        (size - 1, 1),
        (0, 0),
        (5_000, 0),
        (size, 0),
    ] {
        let got = must(
            backend,
            format!("read_range({offset}, {len}) of {h}"),
            backend.read_range(&h, offset, len),
        );
        let want = &data[offset as usize..(offset + len) as usize];
        if got != want {
            fail(
                backend,
                format!("read_range({offset}, {len}) of {h} returned other bytes"),
            );
        }
    }
    for (offset, len) in [
        (size, 1),
        (size - 10, 11),
        (size + 1, 0),
        (0, size + 1),
        (u64::MAX, 1),
        (1, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        let what = format!("read_range({offset}, {len}) of {h} ({size} bytes)");
        expect_err(
            backend,
            &what,
            backend.read_range(&h, offset, len),
            Kind::OutOfRange,
        );
    }
    remove(backend, &h);

    let empty = handle(ObjectKind::Snapshot, "read range empty");
    write(backend, &empty, &[]);
    let got = must(
        backend,
        "read_range(0, 0) of an empty object",
        backend.read_range(&empty, 0, 0),
    );
    if !got.is_empty() {
        fail(
            backend,
            "read_range(0, 0) of an empty object returned bytes",
        );
    }
    let r = backend.read_range(&empty, 0, 1);
    expect_err(
        backend,
        "read_range(0, 1) of an empty object",
        r,
        Kind::OutOfRange,
    );
    remove(backend, &empty);

    let missing = handle(ObjectKind::Pack, "read range missing");
    let r = backend.read_range(&missing, 0, 0);
    expect_err(backend, "read_range of a missing object", r, Kind::NotFound);
}

/// `stat` reports the handle and exact size, and NotFound for a missing
/// object.
pub fn check_stat(backend: &dyn Backend) {
    for (kind, size) in [
        (ObjectKind::Config, 0),
        (ObjectKind::Index, 1),
        (ObjectKind::Pack, 12_345),
    ] {
        let h = handle(kind, "stat");
        write(backend, &h, &payload("stat", size));
        let info = must(backend, format!("stat {h}"), backend.stat(&h));
        let want = ObjectInfo {
            handle: h.clone(),
            size: size as u64,
        };
        if info != want {
            fail(backend, format!("stat {h}: got {info:?}, want {want:?}"));
        }
        remove(backend, &h);
    }
    let missing = handle(ObjectKind::Key, "stat missing");
    expect_err(
        backend,
        "stat of a missing object",
        backend.stat(&missing),
        Kind::NotFound,
    );
}

/// Listing every kind returns exactly the objects written, with their sizes
/// (packs spread over several fan-out directories, two sharing one), and
/// nothing once they are deleted. Needs an empty backend.
pub fn check_list(backend: &dyn Backend) {
    check_empty(
        backend,
        "before the listing check (it needs an empty backend)",
    );
    let mut written = Vec::new();
    for (kind, count) in [
        (ObjectKind::Config, 1),
        (ObjectKind::Key, 2),
        (ObjectKind::Index, 3),
        (ObjectKind::Snapshot, 2),
        (ObjectKind::Lock, 1),
    ] {
        for n in 0..count {
            written.push(handle(kind, &format!("list {n}")));
        }
    }
    for (n, fan_out) in [0x00u8, 0x7f, 0xab, 0xab, 0xff].into_iter().enumerate() {
        let mut id = Id::of_object(format!("cairn conformance list pack {n}").as_bytes());
        id.0[0] = fan_out;
        written.push(Handle::new(ObjectKind::Pack, &id));
    }
    let mut infos = Vec::new();
    for (n, h) in written.iter().enumerate() {
        // Sizes differ (and one is 0) so a mixed-up size shows.
        let size = n * 37;
        write(backend, h, &payload(&format!("list {n}"), size));
        infos.push(ObjectInfo {
            handle: h.clone(),
            size: size as u64,
        });
    }
    for kind in ObjectKind::ALL {
        let mut want: Vec<ObjectInfo> = infos
            .iter()
            .filter(|i| i.handle.kind == kind)
            .cloned()
            .collect();
        want.sort_by(|a, b| a.handle.cmp(&b.handle));
        let mut got = must(
            backend,
            format!("list {}s", kind.label()),
            backend.list(kind),
        );
        got.sort_by(|a, b| a.handle.cmp(&b.handle));
        if got != want {
            fail(
                backend,
                format!("list {}s: got {got:?}, want {want:?}", kind.label()),
            );
        }
    }
    for h in &written {
        remove(backend, h);
    }
    check_empty(backend, "after deleting every listed object");
}

/// After a delete, read, ranged read, stat and delete say NotFound, and the
/// name can be written again; deleting a never-written object is NotFound.
pub fn check_delete(backend: &dyn Backend) {
    for kind in ObjectKind::ALL {
        let h = handle(kind, "delete");
        write(backend, &h, &payload("delete", 100));
        remove(backend, &h);
        expect_err(
            backend,
            &format!("read of deleted {h}"),
            backend.read(&h),
            Kind::NotFound,
        );
        let r = backend.read_range(&h, 0, 1);
        expect_err(
            backend,
            &format!("read_range of deleted {h}"),
            r,
            Kind::NotFound,
        );
        expect_err(
            backend,
            &format!("stat of deleted {h}"),
            backend.stat(&h),
            Kind::NotFound,
        );
        let r = backend.delete(&h);
        expect_err(backend, &format!("second delete of {h}"), r, Kind::NotFound);
        let again = payload("delete again", 10);
        write(backend, &h, &again);
        expect_content(backend, &h, &again, "read after rewriting a deleted name");
        remove(backend, &h);
    }
    let never = handle(ObjectKind::Lock, "delete never written");
    let r = backend.delete(&never);
    expect_err(
        backend,
        "delete of a never-written object",
        r,
        Kind::NotFound,
    );
}

/// `replace` of a missing object is NotFound and creates nothing; of an
/// existing one (the config, and an object in a kind directory), it leaves
/// exactly the new bytes, larger, smaller or empty, and the object can
/// still be deleted.
pub fn check_replace(backend: &dyn Backend) {
    for kind in [ObjectKind::Config, ObjectKind::Index] {
        let h = handle(kind, "replace");
        let r = backend.replace(&h, &payload("replace missing", 100));
        expect_err(
            backend,
            &format!("replace of a missing {h}"),
            r,
            Kind::NotFound,
        );
        let r = backend.stat(&h);
        expect_err(
            backend,
            &format!("stat of {h} after a refused replace"),
            r,
            Kind::NotFound,
        );
        write(backend, &h, &payload("replace original", 1000));
        for (n, size) in [65_537, 10, 0, 1000].into_iter().enumerate() {
            let data = payload(&format!("replace {n}"), size);
            must(
                backend,
                format!("replace of {h} with {size} bytes"),
                backend.replace(&h, &data),
            );
            expect_content(backend, &h, &data, "read after replace");
        }
        remove(backend, &h);
    }
}

/// [`THREADS`] - 1 threads replace one object (each with different bytes)
/// at once while another reads it over and over: every replace succeeds,
/// every read returns one whole version (the original or one of the
/// replacements; never a mix, never NotFound), and the object ends up
/// holding one of the replacements.
pub fn check_concurrent_replace(backend: &dyn Backend) {
    let h = handle(ObjectKind::Config, "concurrent replace");
    let original = payload("concurrent replace original", 65_536);
    write(backend, &h, &original);
    let versions: Vec<Vec<u8>> = (1..THREADS)
        .map(|t| payload(&format!("concurrent replace {t}"), 65_536 + t))
        .collect();
    let whole = |bytes: &[u8]| bytes == original || versions.iter().any(|v| v == bytes);
    let done = std::sync::atomic::AtomicBool::new(false);
    let barrier = Barrier::new(THREADS);
    let (results, reads) = std::thread::scope(|s| {
        let writers: Vec<_> = versions
            .iter()
            .map(|data| {
                let (h, barrier) = (&h, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    // A transient failure is no violation (cairn retries it):
                    // moto once answered one of seven racing PUTs with a 500.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        match backend.replace(h, data) {
                            Err(e) if e.is_transient() && attempts < 5 => continue,
                            other => break other,
                        }
                    }
                })
            })
            .collect();
        let reader = s.spawn(|| {
            barrier.wait();
            let mut reads = 0;
            loop {
                // One more read after the writers have finished.
                let last = done.load(std::sync::atomic::Ordering::SeqCst);
                reads += 1;
                match backend.read(&h) {
                    Ok(bytes) if whole(&bytes) => {}
                    Ok(bytes) => {
                        let n = bytes.len();
                        return Err(format!("returned {n} bytes that are no version of it"));
                    }
                    Err(e) if e.is_transient() && !last => continue,
                    Err(e) => return Err(format!("failed: {e} ({e:?})")),
                }
                if last {
                    return Ok(reads);
                }
            }
        });
        let results: Vec<_> = writers.into_iter().map(|w| join(backend, w)).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (results, join(backend, reader))
    });
    for (t, r) in results.into_iter().enumerate() {
        must(backend, format!("racing replace of {h}: thread {t}"), r);
    }
    if let Err(why) = reads {
        fail(
            backend,
            format!("a read of {h} during racing replaces {why}"),
        );
    }
    let last = must(
        backend,
        format!("read {h} after replaces"),
        backend.read(&h),
    );
    if last == original || !whole(&last) {
        fail(
            backend,
            format!("after racing replaces {h} does not hold one of the replacements"),
        );
    }
    remove(backend, &h);
}

/// Every method refuses handles whose names could escape their directory or
/// that a repository cannot hold, with InvalidName, and stores nothing.
pub fn check_invalid_names(backend: &dyn Backend) {
    let bad = |kind, name: &str| Handle {
        kind,
        name: name.to_string(),
    };
    let mut handles: Vec<Handle> = ObjectKind::ALL.iter().map(|&k| bad(k, "../x")).collect();
    handles.extend([
        bad(ObjectKind::Config, "keys"),
        bad(ObjectKind::Key, ""),
        bad(ObjectKind::Index, "a/b"),
        bad(ObjectKind::Index, "/etc/passwd"),
        bad(ObjectKind::Snapshot, "ABCDEF"),
        bad(ObjectKind::Snapshot, "."),
        bad(ObjectKind::Snapshot, ".."),
        bad(ObjectKind::Lock, &"a".repeat(129)),
        bad(ObjectKind::Pack, "a"),
        bad(ObjectKind::Pack, ".tmp-0123"),
        bad(ObjectKind::Key, "a\0b"),
    ]);
    for h in &handles {
        let name = &h.name;
        let what = |op: &str| format!("{op} of {:?} named {name:?}", h.kind);
        expect_err(
            backend,
            &what("write_new"),
            backend.write_new(h, b"x"),
            Kind::InvalidName,
        );
        expect_err(backend, &what("read"), backend.read(h), Kind::InvalidName);
        let r = backend.read_range(h, 0, 1);
        expect_err(backend, &what("read_range"), r, Kind::InvalidName);
        expect_err(backend, &what("stat"), backend.stat(h), Kind::InvalidName);
        expect_err(
            backend,
            &what("delete"),
            backend.delete(h),
            Kind::InvalidName,
        );
        let r = backend.replace(h, b"x");
        expect_err(backend, &what("replace"), r, Kind::InvalidName);
    }
    check_empty(backend, "after writes with invalid names");
}

/// [`THREADS`] threads `write_new` the same handle (each different bytes)
/// at once, for every kind: exactly one succeeds, the others get
/// AlreadyExists, and the object holds the winner's bytes whole.
pub fn check_concurrent_same_handle(backend: &dyn Backend) {
    for kind in ObjectKind::ALL {
        let h = handle(kind, "concurrent same");
        let payloads: Vec<Vec<u8>> = (0..THREADS)
            .map(|t| payload(&format!("concurrent same {t}"), 65_536))
            .collect();
        let barrier = Barrier::new(THREADS);
        let results: Vec<Result<(), BackendError>> = std::thread::scope(|s| {
            let workers: Vec<_> = payloads
                .iter()
                .map(|data| {
                    let (h, barrier) = (&h, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        backend.write_new(h, data)
                    })
                })
                .collect();
            workers.into_iter().map(|w| join(backend, w)).collect()
        });
        let mut winners = Vec::new();
        for (t, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => winners.push(t),
                Err(BackendError::AlreadyExists { .. }) => {}
                Err(e) => fail(
                    backend,
                    format!("racing write_new of {h}: thread {t}: {e:?}"),
                ),
            }
        }
        let [winner] = winners[..] else {
            let n = winners.len();
            fail(
                backend,
                format!(
                    "racing write_new of {h}: {n} of {THREADS} threads succeeded, want exactly 1"
                ),
            );
        };
        expect_content(backend, &h, &payloads[winner], "read after racing writes");
        remove(backend, &h);
    }
}

/// [`THREADS`] threads each write four different objects (of several kinds)
/// at once; all succeed and all read back.
pub fn check_concurrent_different_handles(backend: &dyn Backend) {
    let kinds = [
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
    ];
    let jobs: Vec<(Handle, Vec<u8>)> = (0..THREADS * kinds.len())
        .map(|n| {
            let tag = format!("concurrent different {n}");
            (
                handle(kinds[n % kinds.len()], &tag),
                payload(&tag, 4096 + n),
            )
        })
        .collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let workers: Vec<_> = jobs
            .chunks(kinds.len())
            .map(|mine| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    mine.iter()
                        .map(|(h, data)| (h, backend.write_new(h, data)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (h, r) in join(backend, worker) {
                must(backend, format!("concurrent write_new of {h}"), r);
            }
        }
    });
    for (h, data) in &jobs {
        expect_content(backend, h, data, "read after concurrent writes");
        remove(backend, h);
    }
}

/// The error variants the checks expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    AlreadyExists,
    InvalidName,
    OutOfRange,
}

impl Kind {
    /// Whether `e` is of this variant.
    fn matches(self, e: &BackendError) -> bool {
        matches!(
            (self, e),
            (Kind::NotFound, BackendError::NotFound { .. })
                | (Kind::AlreadyExists, BackendError::AlreadyExists { .. })
                | (Kind::InvalidName, BackendError::InvalidName { .. })
                | (Kind::OutOfRange, BackendError::OutOfRange { .. })
        )
    }
}

/// The handle of `kind` for a check's `tag` (the config for the config).
fn handle(kind: ObjectKind, tag: &str) -> Handle {
    match kind {
        ObjectKind::Config => Handle::config(),
        kind => Handle::new(
            kind,
            &Id::of_object(format!("cairn conformance {tag}").as_bytes()),
        ),
    }
}

/// `len` pseudo-random bytes determined by `tag`, so misplaced bytes show.
fn payload(tag: &str, len: usize) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cairn conformance payload ");
    hasher.update(tag.as_bytes());
    let mut out = vec![0; len];
    hasher.finalize_xof().fill(&mut out);
    out
}

/// Panics naming the backend and the violation.
fn fail(backend: &dyn Backend, what: impl Display) -> ! {
    panic!(
        "backend conformance violation on {}: {what}",
        backend.location()
    )
}

/// The value of a call that must succeed.
fn must<T>(backend: &dyn Backend, what: impl Display, r: Result<T, BackendError>) -> T {
    r.unwrap_or_else(|e| fail(backend, format!("{what} failed: {e} ({e:?})")))
}

/// Checks that a call failed with the `want` variant.
fn expect_err<T>(backend: &dyn Backend, what: &str, r: Result<T, BackendError>, want: Kind) {
    match r {
        Err(e) if want.matches(&e) => {}
        Err(e) => fail(backend, format!("{what}: expected {want:?}, got {e:?}")),
        Ok(_) => fail(backend, format!("{what}: succeeded, expected {want:?}")),
    }
}

/// Writes a new object that must be accepted.
fn write(backend: &dyn Backend, h: &Handle, data: &[u8]) {
    let len = data.len();
    must(
        backend,
        format!("write_new of {h} ({len} bytes)"),
        backend.write_new(h, data),
    );
}

/// Deletes an object that must exist.
fn remove(backend: &dyn Backend, h: &Handle) {
    must(backend, format!("delete of {h}"), backend.delete(h));
}

/// Checks that `h` reads back as `want`, whole and through `stat`.
fn expect_content(backend: &dyn Backend, h: &Handle, want: &[u8], what: &str) {
    let got = must(backend, format!("{what}: read {h}"), backend.read(h));
    if got != want {
        let (got, want) = (got.len(), want.len());
        fail(
            backend,
            format!("{what}: {h} holds other bytes ({got} bytes, want {want})"),
        );
    }
    let info = must(backend, format!("{what}: stat {h}"), backend.stat(h));
    if info.size != want.len() as u64 || info.handle != *h {
        fail(
            backend,
            format!("{what}: stat {h} says {info:?}, want {} bytes", want.len()),
        );
    }
}

/// Joins a worker thread, turning its panic into a violation.
fn join<T>(backend: &dyn Backend, worker: std::thread::ScopedJoinHandle<'_, T>) -> T {
    worker
        .join()
        .unwrap_or_else(|_| fail(backend, "a worker thread panicked"))
}
