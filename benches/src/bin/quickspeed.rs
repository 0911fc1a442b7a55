//! Quick throughput check of the kernels (not a benchmark of record).
use cairn_chunker::*;
use std::time::Instant;
fn main() {
    let data = testdata::pseudo_random(1, 256 << 20);
    let p = ChunkerParams::DISK_DEFAULT;
    for _ in 0..2 {
        let t = Instant::now();
        let n = fastcdc::v2020::FastCDC::new(&data, p.min_size, p.avg_size, p.max_size).count();
        println!(
            "fastcdc      {:6.2} GB/s  {n}",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
        for k in Kernel::available() {
            let c = Chunker::new(p, GearTable::for_tests())
                .unwrap()
                .with_kernel(k);
            let t = Instant::now();
            let n = c.chunks(&data).count();
            println!(
                "{:12?} {:6.2} GB/s  {n}",
                k,
                data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
            );
            let mut out = Vec::new();
            let t = Instant::now();
            k.scan(c.table(), &data, 0, data.len(), 1 << 18, &mut out);
            println!(
                "  raw scan   {:6.2} GB/s  {}",
                data.len() as f64 / t.elapsed().as_secs_f64() / 1e9,
                out.len()
            );
        }
        let c = Chunker::new(p, GearTable::for_tests()).unwrap();
        let t = Instant::now();
        let n = c.chunks_parallel(&data, 2).count();
        println!(
            "parallel2    {:6.2} GB/s  {n}",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
        let t = Instant::now();
        let mut pos = 0;
        let mut n = 0;
        while let Some(l) = c.find_boundary(&data[pos..], true) {
            pos += l;
            n += 1;
        }
        println!(
            "find_boundary{:6.2} GB/s  {n}",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
    }
}
