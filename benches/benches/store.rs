#![allow(clippy::expect_used, missing_docs)]
//! Repository micro-benchmarks: save-blob (compress + encrypt + pack) and
//! load-blob (ranged read + decrypt + decompress + verify) throughput on
//! 1 MiB blobs, and the dedup lookup rate.
//!
//! Saving goes to a backend that drops what it is given, so the figure is
//! the CPU pipeline, not the disk; loading reads from memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_store::backend::{Backend, BackendError, Handle, MemoryBackend, ObjectInfo, ObjectKind};
use cairn_store::{BlobSet, BlobType, Credential, Id, InitOptions, OpenOptions, Repository};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Keeps config and keys (so the repository opens) and discards packs,
/// index files and snapshots.
struct DiscardPacks {
    inner: MemoryBackend,
    dropped: AtomicU64,
}

impl Backend for DiscardPacks {
    fn location(&self) -> String {
        "discard".into()
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(kind)
    }
    fn read(&self, h: &Handle) -> Result<Vec<u8>, BackendError> {
        self.inner.read(h)
    }
    fn read_range(&self, h: &Handle, o: u64, l: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.read_range(h, o, l)
    }
    fn write_new(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        match h.kind {
            ObjectKind::Pack | ObjectKind::Index => {
                self.dropped.fetch_add(data.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            _ => self.inner.write_new(h, data),
        }
    }
    fn replace(&self, h: &Handle, data: &[u8]) -> Result<(), BackendError> {
        self.inner.replace(h, data)
    }
    fn delete(&self, h: &Handle) -> Result<(), BackendError> {
        self.inner.delete(h)
    }
    fn stat(&self, h: &Handle) -> Result<ObjectInfo, BackendError> {
        self.inner.stat(h)
    }
}

fn init(backend: Arc<dyn Backend>) -> Repository {
    let mut init = InitOptions::for_tests();
    init.pack_size = cairn_store::config::DEFAULT_PACK_SIZE;
    Repository::init(
        backend,
        &Credential::Password(b"bench"),
        &init,
        OpenOptions::new(None),
    )
    .expect("init")
}

const MIB: usize = 1 << 20;

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("random", cairn_chunker::testdata::pseudo_random(3, 8 * MIB)),
        ("usr", cairn_benches::usr_corpus(8 * MIB)),
    ]
}

fn save_blob(c: &mut Criterion) {
    let mut group = c.benchmark_group("save_blob_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(30);
    for (name, data) in inputs() {
        let repo = init(Arc::new(DiscardPacks {
            inner: MemoryBackend::new(),
            dropped: AtomicU64::new(0),
        }));
        let mut counter = 0u64;
        let mut blob = data[..MIB].to_vec();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                // A new blob each time (dedup would otherwise skip it): rotate
                // through the input and stamp a counter.
                counter += 1;
                let start = (counter as usize * 4096) % (data.len() - MIB);
                blob.copy_from_slice(&data[start..start + MIB]);
                blob[..8].copy_from_slice(&counter.to_le_bytes());
                repo.save_blob(BlobType::Data, &blob).expect("save")
            })
        });
    }
    group.finish();
}

fn load_blob(c: &mut Criterion) {
    let mut group = c.benchmark_group("load_blob_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(30);
    for (name, data) in inputs() {
        let repo = init(Arc::new(MemoryBackend::new()));
        let ids: Vec<Id> = data
            .chunks(MIB)
            .map(|b| repo.save_blob(BlobType::Data, b).expect("save").id)
            .collect();
        repo.flush().expect("flush");
        let mut i = 0;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                repo.load_blob(&ids[i]).expect("load")
            })
        });
    }
    group.finish();
}

fn dedup_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup_lookup");
    let n = 10_000_000u64;
    let fingerprints: Vec<u128> = (0..n)
        .map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes()).prefix_u128())
        .collect();
    let set = BlobSet::from_unsorted(fingerprints);
    let probes: Vec<Id> = (0..1024u64)
        .map(|i| Id(*blake3::hash(&(i * 2 + (i & 1) * n).to_le_bytes()).as_bytes()))
        .collect();
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("blobset_10M_half_hits", |b| {
        b.iter(|| probes.iter().filter(|id| set.contains(id)).count())
    });
    group.finish();
}

criterion_group!(benches, save_blob, load_blob, dedup_lookup);
criterion_main!(benches);
