//! Chunker throughput: cairn against `fastcdc::v2020`, in the same run, at
//! the same min/avg/max and normalization level, single thread, plus cairn's
//! parallel path on 2 threads.
//!
//! Data: 64 MiB of random bytes and 64 MiB of real files from /usr (both
//! read from DRAM), and 4 MiB of random bytes (cache-resident, like the
//! stream adapter's buffer just filled by a read). A separate group compares
//! every scan kernel this CPU runs.
//!
//! `cargo bench -p cairn-benches --bench chunker`; results and ratios are
//! recorded in BENCHMARKS.md.

#![allow(clippy::expect_used)] // a benchmark with fixed, valid parameters

use std::hint::black_box;
use std::time::Duration;

use cairn_benches::usr_corpus;
use cairn_chunker::{Chunker, ChunkerParams, GearTable, Kernel, testdata};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use fastcdc::v2020::{FastCDC, Normalization};

const BIG: usize = 64 << 20;
const SMALL: usize = 4 << 20;

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, len: usize) {
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
}

fn fastcdc_level(params: &ChunkerParams) -> Normalization {
    match params.normalization {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    }
}

fn compare(c: &mut Criterion, name: &str, data: &[u8], params: ChunkerParams) {
    let mut group = c.benchmark_group(format!("{name}/avg-{}K", params.avg_size >> 10));
    configure(&mut group, data.len());
    let (min, avg, max) = (params.min_size, params.avg_size, params.max_size);
    let level = fastcdc_level(&params);
    group.bench_function("fastcdc-v2020", |b| {
        b.iter(|| FastCDC::with_level(black_box(data), min, avg, max, level).count())
    });
    let chunker = Chunker::new(params, GearTable::for_tests()).expect("valid params");
    group.bench_function("cairn", |b| {
        b.iter(|| chunker.chunks(black_box(data)).count())
    });
    group.bench_function("cairn-parallel-2", |b| {
        b.iter(|| chunker.chunks_parallel(black_box(data), 2).count())
    });
    group.finish();
}

fn kernels(c: &mut Criterion, data: &[u8]) {
    let params = ChunkerParams::DISK_DEFAULT;
    let mut group = c.benchmark_group("kernels/random-64M/avg-16K");
    configure(&mut group, data.len());
    let chunker = Chunker::new(params, GearTable::for_tests()).expect("valid params");
    for kernel in Kernel::available() {
        let k = chunker.clone().with_kernel(kernel);
        group.bench_function(format!("{kernel:?}"), |b| {
            b.iter(|| k.chunks(black_box(data)).count())
        });
    }
    group.bench_function("find_boundary", |b| {
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
    group.finish();
}

fn chunker_benches(c: &mut Criterion) {
    let random = testdata::pseudo_random(1, BIG);
    let usr = usr_corpus(BIG);
    let small = testdata::pseudo_random(2, SMALL);
    kernels(c, &random);
    for params in [
        ChunkerParams::DISK_DEFAULT,
        ChunkerParams::FILE_DEFAULT,
        ChunkerParams::new(16 << 10, 64 << 10, 256 << 10),
        ChunkerParams::new(256 << 10, 1 << 20, 4 << 20),
    ] {
        compare(c, "random-64M", &random, params);
        compare(c, "usr-64M", &usr, params);
        compare(c, "random-4M-cached", &small, params);
    }
}

criterion_group!(benches, chunker_benches);
criterion_main!(benches);
