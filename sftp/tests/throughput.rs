//! Upload and download throughput to the local test sshd (ignored by
//! default; it moves about 2 GiB):
//!
//! ```text
//! eval "$(scripts/test-servers/sftp.sh start)"
//! cargo test -p cairn-sftp --release --test throughput -- --ignored --nocapture
//! ```
//!
//! `CAIRN_SFTP_BENCH_PACKS` (default 64) packs of `CAIRN_SFTP_BENCH_MIB`
//! (default 16) MiB are written and read back with 1 and with 4 threads
//! (one connection each), and each figure is printed in MiB/s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_store::{Backend, Handle, Id, ObjectKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `work(i)` for every i in 0..n on `threads` threads; returns seconds.
fn timed(n: usize, threads: usize, work: impl Fn(usize) + Sync) -> f64 {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "moves ~2 GiB through the local sshd; run by hand for BENCHMARKS.md"]
fn sftp_throughput() {
    let Some(mut server) = common::server("sftp_throughput") else {
        return;
    };
    let packs = env_usize("CAIRN_SFTP_BENCH_PACKS", 64);
    let mib = env_usize("CAIRN_SFTP_BENCH_MIB", 16);
    let size = mib * 1024 * 1024;
    // Incompressible bytes, like encrypted packs.
    let mut data = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"cairn sftp throughput")
        .finalize_xof()
        .fill(&mut data);
    let total = (packs * mib) as f64;
    for threads in [1, 4] {
        server.opts.connections = threads;
        let backend = server.fresh(&format!("throughput-{threads}"));
        let handles: Vec<Handle> = (0..packs)
            .map(|i| {
                let id = Id::of_object(format!("throughput {threads} {i}").as_bytes());
                Handle::new(ObjectKind::Pack, &id)
            })
            .collect();
        let up = timed(packs, threads, |i| {
            backend.write_new(&handles[i], &data).unwrap();
        });
        let down = timed(packs, threads, |i| {
            let got = backend.read(&handles[i]).unwrap();
            assert_eq!(got.len(), size);
        });
        let ranged = timed(packs, threads, |i| {
            // Four 4 MiB ranged reads per pack, as a restore reads windows.
            for part in 0..4u64 {
                let len = size as u64 / 4;
                let got = backend.read_range(&handles[i], part * len, len).unwrap();
                assert_eq!(got.len() as u64, len);
            }
        });
        println!(
            "sftp to 127.0.0.1, {packs} x {mib} MiB, {threads} thread(s)/connection(s): \
             upload {:.0} MiB/s ({up:.1} s), download {:.0} MiB/s ({down:.1} s), \
             ranged download {:.0} MiB/s ({ranged:.1} s)",
            total / up,
            total / down,
            total / ranged
        );
        if let Some(root) = server.local_path(backend.sftp_location()) {
            std::fs::remove_dir_all(root).unwrap();
        }
    }
}
