#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The backend conformance suite and the object-store specifics (multipart
//! packs, missing buckets, unreachable endpoints) against real servers:
//! moto's S3 server and Azurite, started by scripts/test-servers/*.sh.
//! Without them these tests skip, unless CI or CAIRN_REQUIRE_SERVERS is set.

use std::time::{Duration, Instant};

use cairn_objstore::testing::{self, TestTarget, unique_prefix};
use cairn_objstore::{ObjectBackend, OpenError, Options};
use cairn_store::Id;
use cairn_store::backend::{Backend, BackendError, Handle, ObjectKind, conformance};

/// Options that send the conformance suite's 5 MiB pack through the
/// multipart path too.
fn small_multipart() -> Options {
    Options {
        multipart_threshold: 4 << 20,
        part_size: 5 << 20,
        ..Options::default()
    }
}

fn conformance_on(target: &TestTarget) {
    let prefix = unique_prefix("conformance");
    let backend = target.open_with(&prefix, &small_multipart()).unwrap();
    let started = Instant::now();
    conformance::run_all(&backend);
    eprintln!(
        "conformance suite on {} passed in {:.2?}",
        backend.location(),
        started.elapsed()
    );
}

#[test]
fn s3_conformance() {
    if let Some(t) = testing::s3() {
        conformance_on(&t);
    }
}

#[test]
fn azure_conformance() {
    if let Some(t) = testing::azure() {
        conformance_on(&t);
    }
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut h = blake3_like(seed);
    (0..len).map(|_| h()).collect()
}

/// A cheap deterministic byte stream (xorshift), enough to catch misplaced
/// parts.
fn blake3_like(seed: u8) -> impl FnMut() -> u8 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(seed);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }
}

fn large_pack(target: &TestTarget) {
    let prefix = unique_prefix("large");
    let b = target.open_with(&prefix, &Options::default()).unwrap();
    let data = bytes(7, 21 * 1024 * 1024 + 12_345);
    let h = Handle::new(ObjectKind::Pack, &Id::of_object(&data));
    let started = Instant::now();
    b.write_new(&h, &data).unwrap();
    let up = started.elapsed();
    let started = Instant::now();
    let back = b.read(&h).unwrap();
    let down = started.elapsed();
    assert!(back == data, "a multipart pack read back other bytes");
    let mib = data.len() as f64 / (1 << 20) as f64;
    eprintln!(
        "{}: {mib:.1} MiB pack up in {up:.2?} ({:.0} MiB/s), down in {down:.2?} ({:.0} MiB/s)",
        b.location(),
        mib / up.as_secs_f64(),
        mib / down.as_secs_f64()
    );
    assert!(matches!(
        b.write_new(&h, &data),
        Err(BackendError::AlreadyExists { .. })
    ));
    let off = 9 * 1024 * 1024 - 17;
    assert_eq!(
        b.read_range(&h, off, 70_000).unwrap(),
        &data[off as usize..off as usize + 70_000]
    );
    assert_eq!(b.stat(&h).unwrap().size, data.len() as u64);
    assert_eq!(b.list(ObjectKind::Pack).unwrap().len(), 1);
    b.delete(&h).unwrap();
    assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
}

#[test]
fn s3_large_pack_in_parts() {
    if let Some(t) = testing::s3() {
        large_pack(&t);
    }
}

#[test]
fn azure_large_pack_in_parts() {
    if let Some(t) = testing::azure() {
        large_pack(&t);
    }
}

fn missing_container(mut target: TestTarget) {
    target.container = "cairn-no-such-container".into();
    let e = target.open_with("x", &Options::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, OpenError::MissingContainer { .. }), "{e:?}");
    assert!(
        msg.contains("does not exist") && msg.contains("create it"),
        "{msg}"
    );
}

#[test]
fn s3_missing_bucket() {
    if let Some(t) = testing::s3() {
        missing_container(t);
    }
}

#[test]
fn azure_missing_container() {
    if let Some(t) = testing::azure() {
        missing_container(t);
    }
}

/// An endpoint where nothing listens: a clear, transient error, quickly
/// (one attempt: the client makes no retries of its own), not a hang or a
/// panic.
fn unreachable(mut target: TestTarget, var: &str, value: String) {
    for (k, v) in &mut target.env {
        if k == var {
            *v = value.clone();
        }
    }
    let options = Options {
        timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let started = Instant::now();
    let e = target.open_with("x", &options).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    match &e {
        OpenError::Target { error, .. } => assert!(error.is_transient(), "{error:?}"),
        other => panic!("expected a target error, got {other:?}"),
    }
    eprintln!("unreachable endpoint: {e}");
}

/// A port on 127.0.0.1 where nothing listens.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[test]
fn s3_unreachable_endpoint() {
    if let Some(t) = testing::s3() {
        let port = dead_port();
        unreachable(t, "CAIRN_S3_ENDPOINT", format!("http://127.0.0.1:{port}"));
    }
}

#[test]
fn azure_unreachable_endpoint() {
    if let Some(t) = testing::azure() {
        let port = dead_port();
        let cs = format!(
            "AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1",
            cairn_objstore::config::AZURITE_KEY
        );
        unreachable(t, "AZURE_STORAGE_CONNECTION_STRING", cs);
    }
}

#[test]
fn wrong_credentials_are_refused_on_azure() {
    // moto accepts any key, Azurite checks the signature.
    if let Some(mut t) = testing::azure() {
        t.env = vec![(
            "AZURE_STORAGE_CONNECTION_STRING".into(),
            t.lookup("AZURE_STORAGE_CONNECTION_STRING")
                .unwrap()
                .replace("AccountKey=Eby8", "AccountKey=Xby8"),
        )];
        let e = t.open_with("x", &Options::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("access denied") && msg.contains("403"),
            "{msg}"
        );
        assert!(
            matches!(e, OpenError::Target { ref error, .. } if !error.is_transient()),
            "{e:?}"
        );
    }
}

#[allow(dead_code)]
fn assert_send_sync(b: ObjectBackend) -> Box<dyn Backend> {
    Box::new(b)
}

/// The create-only probe of `cairn init` (store's `backend::probe`) on the
/// real service, and on the same service behind a wrapper that overwrites
/// as Garage or s3rver do: told apart, and the probe object is removed.
fn create_only_probe(target: &TestTarget) {
    use cairn_store::backend::{CreateOnly, OverwritingBackend, probe_create_only};
    let prefix = unique_prefix("probe");
    let backend = std::sync::Arc::new(target.open_with(&prefix, &Options::default()).unwrap());
    let rng = cairn_store::OsRandom;
    assert_eq!(
        probe_create_only(backend.as_ref(), &rng).unwrap(),
        CreateOnly::Honoured
    );
    let lax = OverwritingBackend::new(backend.clone());
    assert_eq!(probe_create_only(&lax, &rng).unwrap(), CreateOnly::Ignored);
    assert!(backend.list(ObjectKind::Lock).unwrap().is_empty());
}

#[test]
fn s3_create_only_probe() {
    if let Some(t) = testing::s3() {
        create_only_probe(&t);
    }
}

#[test]
fn azure_create_only_probe() {
    if let Some(t) = testing::azure() {
        create_only_probe(&t);
    }
}
