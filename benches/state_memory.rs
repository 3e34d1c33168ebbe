//! Memory budget benchmark: 64 RocksDB stores in one process under a sustained write load, with
//! one shared budget. Reports peak RSS against the budget as a markdown table.
//!
//! `cargo bench --bench state_memory`. Settings: `KSTREAMS_BENCH_STORES` (64),
//! `KSTREAMS_BENCH_BUDGET_MB` (64), `KSTREAMS_BENCH_SECONDS` (30), `KSTREAMS_BENCH_VALUE_BYTES` (100),
//! `KSTREAMS_BENCH_COMMIT_MS` (1000: every store flushes once a second; 0: never).
#![allow(missing_docs, clippy::print_stdout)]

use std::time::{Duration, Instant};

use state_stores::{KeyValueBytesStore, RocksDbMemory, StoreBuilder};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `VmHWM` (peak) of this process, in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("a benchmark: run it with `cargo bench --bench state_memory`");
        return; // `cargo test --all-targets` runs bench binaries without `--bench`.
    }
    let stores = env_usize("KSTREAMS_BENCH_STORES", 64);
    let budget = env_usize("KSTREAMS_BENCH_BUDGET_MB", 64) << 20;
    let seconds = env_usize("KSTREAMS_BENCH_SECONDS", 30) as u64;
    let value_bytes = env_usize("KSTREAMS_BENCH_VALUE_BYTES", 100);
    // A commit every this many milliseconds: every store flushes (syncs its WAL). 0: never.
    let commit_ms = env_usize("KSTREAMS_BENCH_COMMIT_MS", 1000) as u64;

    let (baseline, _) = rss();
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = RocksDbMemory::new(budget).expect("budget");
    let mut open: Vec<Box<dyn KeyValueBytesStore>> = (0..stores)
        .map(|i| {
            StoreBuilder::rocksdb(
                format!("store-{i}"),
                dir.path().join(format!("store-{i}")),
                &memory,
            )
            .build_key_value()
            .expect("open store")
        })
        .collect();
    let (after_open, _) = rss();
    let cache_bytes = memory.cache_bytes();

    let value = vec![0xabu8; value_bytes];
    let started = Instant::now();
    let mut next_sample = Duration::from_secs(1);
    let mut next_flush = Duration::from_millis(commit_ms);
    let (mut puts, mut peak_usage, mut peak_rss) = (0u64, 0usize, 0usize);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(100);
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..10 {
            // Writes arrive as a cache writes down: a batch of 100 random keys to one store.
            // xorshift: random keys over a large key space, so memtables and SSTs keep growing.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let store = (x % stores as u64) as usize;
            batch.clear();
            for _ in 0..100 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = (x >> 8) % 4_000_000;
                batch.push((key.to_be_bytes().to_vec(), Some(value.clone())));
            }
            open[store].put_all(&batch).expect("put_all");
            puts += batch.len() as u64;
        }
        let elapsed = started.elapsed();
        if elapsed >= next_sample {
            next_sample += Duration::from_millis(250);
            peak_usage = peak_usage.max(memory.usage());
            peak_rss = peak_rss.max(rss().0);
        }
        if commit_ms > 0 && elapsed >= next_flush {
            // A commit: every store syncs its WAL.
            next_flush += Duration::from_millis(commit_ms);
            for store in open.iter_mut() {
                store.flush().expect("flush");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, hwm) = rss();
    for store in open.iter_mut() {
        store.close().expect("close");
    }

    println!(
        "## {stores} RocksDB stores, one {} MiB budget, {seconds} s of random puts\n",
        mib(budget)
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| stores | {stores} |");
    println!("| budget (all RocksDB memory) | {:.0} MiB |", mib(budget));
    println!(
        "| block cache with {stores} stores open | {:.1} MiB |",
        mib(cache_bytes)
    );
    println!(
        "| puts | {puts} ({:.0}/s, {value_bytes}-byte values) |",
        puts as f64 / secs
    );
    println!(
        "| data written | {:.0} MiB |",
        mib(puts as usize * (value_bytes + 8))
    );
    println!(
        "| peak RocksDB usage (cache + memtables) | {:.1} MiB |",
        mib(peak_usage)
    );
    println!("| RSS before opening stores | {:.1} MiB |", mib(baseline));
    println!(
        "| RSS after opening {stores} stores | {:.1} MiB |",
        mib(after_open)
    );
    println!("| peak RSS (sampled) | {:.1} MiB |", mib(peak_rss));
    println!("| peak RSS (VmHWM) | {:.1} MiB |", mib(hwm));
    println!(
        "| peak RSS above the pre-open baseline (RocksDB's share) | {:.1} MiB ({:.0}% of budget) |",
        mib(hwm.saturating_sub(baseline)),
        100.0 * hwm.saturating_sub(baseline) as f64 / budget as f64
    );
}
