//! Quick side-by-side throughput of every scan kernel, the slice iterator,
//! the parallel path and `fastcdc::v2020`, as medians over repetitions in
//! one run. Faster to read than the criterion bench when tuning a kernel;
//! the numbers of record come from `cargo bench` (see BENCHMARKS.md).
//!
//! `cargo run --release -p cairn-benches --bin kernel_speed [MiB] [reps] [avg KiB]`

use std::time::Instant;

use cairn_chunker::{Chunker, ChunkerParams, GearTable, Kernel, testdata};

fn median_gbps(len: usize, reps: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut rates = Vec::with_capacity(reps);
    let mut n = 0;
    for _ in 0..reps {
        let t = Instant::now();
        n = std::hint::black_box(f());
        rates.push(len as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    rates.sort_by(f64::total_cmp);
    (rates[reps / 2], n)
}

/// Chunks of `data` by `fastcdc::v2020` at the sizes of `p`, level 2.
fn fastcdc_count(data: &[u8], p: &ChunkerParams) -> usize {
    fastcdc::v2020::FastCDC::with_level(
        data,
        p.min_size,
        p.avg_size,
        p.max_size,
        fastcdc::v2020::Normalization::Level2,
    )
    .count()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let reps: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    let avg_kib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let data = testdata::pseudo_random(1, mib << 20);
    let avg = avg_kib << 10;
    let p = ChunkerParams::new(avg / 4, avg, avg * 4);
    println!("{mib} MiB of random data, min/avg/max {p:?}, medians of {reps}");
    let chunker = Chunker::new(p, GearTable::for_tests())?;
    let report = |name: &str, (gbps, n): (f64, usize)| println!("{name:<28} {gbps:6.2} GB/s  {n}");

    report(
        "memory read (u64 xor)",
        median_gbps(data.len(), reps, || {
            let words = data.chunks_exact(8).map(|w| {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                u64::from_le_bytes(b)
            });
            words.fold(0u64, |a, w| a ^ w) as usize
        }),
    );
    report(
        "fastcdc v2020 (level 2)",
        median_gbps(data.len(), reps, || fastcdc_count(&data, &p)),
    );
    for kernel in Kernel::available() {
        let c = chunker.clone().with_kernel(kernel);
        report(
            &format!("chunks {kernel:?}"),
            median_gbps(data.len(), reps, || c.chunks(&data).count()),
        );
        report(
            &format!("raw scan {kernel:?}"),
            median_gbps(data.len(), reps, || {
                let mut out = Vec::new();
                kernel.scan(c.table(), &data, 0, data.len(), 1 << 20, &mut out);
                out.len()
            }),
        );
    }
    report(
        "chunks_parallel 2 threads",
        median_gbps(data.len(), reps, || {
            chunker.chunks_parallel(&data, 2).count()
        }),
    );

    // The degenerate case: a run of zeros under a seed whose hash of 32 zero
    // bytes passes the relaxed threshold (at 16 KiB averages), so every
    // position is a candidate. Seed 12307 was found by search.
    let zeros = vec![0u8; data.len()];
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&12307u32.to_le_bytes());
    let dense = Chunker::new(p, GearTable::from_seed(&seed))?;
    report(
        "fastcdc v2020, zeros",
        median_gbps(zeros.len(), reps, || fastcdc_count(&zeros, &p)),
    );
    for kernel in Kernel::available() {
        let c = dense.clone().with_kernel(kernel);
        report(
            &format!("zeros, dense seed {kernel:?}"),
            median_gbps(zeros.len(), reps, || c.chunks(&zeros).count()),
        );
    }
    report(
        "zeros, dense seed parallel 2",
        median_gbps(zeros.len(), reps, || {
            dense.chunks_parallel(&zeros, 2).count()
        }),
    );
    Ok(())
}
