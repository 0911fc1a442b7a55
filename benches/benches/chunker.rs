//! Chunker throughput: cairn's kernels against `fastcdc::v2020`, in the same
//! run, at the same min/avg/max, on random data and on real files from /usr.
//!
//! `cargo bench -p cairn-benches --bench chunker`. Results and ratios are
//! recorded in BENCHMARKS.md.

#![allow(clippy::expect_used)] // a benchmark with fixed, valid parameters

use std::hint::black_box;
use std::time::Duration;

use cairn_benches::usr_corpus;
use cairn_chunker::{Chunker, ChunkerParams, GearTable, Kernel, testdata};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastcdc::v2020::{FastCDC, Normalization};

const LEN: usize = 64 << 20;

fn bench_data(c: &mut Criterion, name: &str, data: &[u8], params: ChunkerParams) {
    let mut group = c.benchmark_group(format!("{name}/{}K", params.avg_size / 1024));
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    group.warm_up_time(Duration::from_secs(1));
    let (min, avg, max) = (params.min_size, params.avg_size, params.max_size);
    for (label, level) in [
        ("fastcdc-v2020-l1", Normalization::Level1),
        ("fastcdc-v2020-l2", Normalization::Level2),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| FastCDC::with_level(black_box(data), min, avg, max, level).count())
        });
    }
    let chunker = Chunker::new(params, GearTable::for_tests()).expect("valid params");
    for kernel in Kernel::available() {
        let c = chunker.clone().with_kernel(kernel);
        group.bench_function(BenchmarkId::new("cairn", format!("{kernel:?}")), |b| {
            b.iter(|| c.chunks(black_box(data)).count())
        });
    }
    group.bench_function("cairn/find_boundary", |b| {
        b.iter(|| {
            let mut pos = 0;
            let mut n = 0;
            while let Some(len) = chunker.find_boundary(&data[pos..], true) {
                pos += len;
                n += 1;
            }
            n
        })
    });
    group.bench_function("cairn/parallel-2", |b| {
        b.iter(|| chunker.chunks_parallel(black_box(data), 2).count())
    });
    group.finish();
}

fn chunker_benches(c: &mut Criterion) {
    let random = testdata::pseudo_random(1, LEN);
    let usr = usr_corpus(LEN);
    for params in [
        ChunkerParams::DISK_DEFAULT,
        ChunkerParams::new(4 << 10, 16 << 10, 64 << 10),
        ChunkerParams::new(256 << 10, 1 << 20, 4 << 20),
    ] {
        bench_data(c, "random", &random, params);
        bench_data(c, "usr", &usr, params);
    }
}

criterion_group!(benches, chunker_benches);
criterion_main!(benches);
