//! State store benchmark: put, get, range and window operations on RocksDB and in memory, and
//! the restore rate of a 1M-key store from its changelog. Prints markdown tables.
//!
//! `cargo bench --bench state_stores`; `KSTREAMS_BENCH_OPS` (default 200000) and
//! `KSTREAMS_BENCH_RESTORE_KEYS` (default 1000000) size the runs.
#![allow(missing_docs, clippy::print_stdout)]

use std::time::Instant;

use state_stores::changelog::{Changelog, MemoryChangelog};
use state_stores::{
    ChangelogRecord, KeyValueBytesStore, RocksDbMemory, StoreBuilder, WindowBytesStore,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A 16-byte key spread over the key space (so RocksDB sees random rather than sequential order).
fn key(i: usize) -> [u8; 16] {
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..].copy_from_slice(&(i as u64).to_be_bytes());
    k
}

struct Row {
    backend: &'static str,
    op: &'static str,
    ops: usize,
    secs: f64,
}

fn timed(backend: &'static str, op: &'static str, ops: usize, f: impl FnOnce()) -> Row {
    let started = Instant::now();
    f();
    Row {
        backend,
        op,
        ops,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn key_value_rows(
    backend: &'static str,
    mut store: Box<dyn KeyValueBytesStore>,
    n: usize,
) -> Vec<Row> {
    let value = 42u64.to_be_bytes();
    let mut rows = Vec::new();
    rows.push(timed(backend, "put (random keys)", n, || {
        for i in 0..n {
            store.put(&key(i), &value).expect("put");
        }
    }));
    store.flush().expect("flush");
    rows.push(timed(backend, "get (hit)", n, || {
        for i in 0..n {
            assert!(store.get(&key((i * 7919) % n)).expect("get").is_some());
        }
    }));
    rows.push(timed(backend, "get (miss)", n, || {
        for i in n..2 * n {
            assert!(store.get(&key(i)).expect("get").is_none());
        }
    }));
    let scans = (n / 100).max(1);
    rows.push(timed(backend, "range scan, 100 entries", scans, || {
        for i in 0..scans {
            let from = key((i * 104_729) % n);
            let seen = store
                .range(Some(&from), None)
                .expect("range")
                .take(100)
                .count();
            assert!(seen > 0);
        }
    }));
    rows
}

fn window_rows(backend: &'static str, mut store: Box<dyn WindowBytesStore>, n: usize) -> Vec<Row> {
    let value = 1u64.to_be_bytes();
    let keys = 10_000;
    let mut rows = Vec::new();
    // Tumbling one-second windows over 100 s of stream time, 10k keys.
    rows.push(timed(backend, "window put", n, || {
        for i in 0..n {
            let start = ((i * 100_000) / n) as i64 / 1000 * 1000;
            store.put(&key(i % keys), start, Some(&value)).expect("put");
        }
    }));
    store.flush().expect("flush");
    let fetches = n / 10;
    rows.push(timed(
        backend,
        "window fetch, one key over 10 s",
        fetches,
        || {
            for i in 0..fetches {
                let from = ((i * 90_000) / fetches) as i64;
                let seen = store
                    .fetch_range(&key(i % keys), from, from + 10_000)
                    .expect("fetch")
                    .count();
                assert!(seen <= 11);
            }
        },
    ));
    rows
}

fn print_rows(rows: &[Row]) {
    println!("| backend | operation | ops | ops/s | ns/op |");
    println!("|---|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} |",
            r.backend,
            r.op,
            r.ops,
            r.ops as f64 / r.secs,
            r.secs * 1e9 / r.ops as f64
        );
    }
}

fn restore_rate(n: usize, memory: &RocksDbMemory, dir: &std::path::Path) {
    // The changelog a 1M-key store leaves behind: one record per key.
    let log = MemoryChangelog::new();
    {
        let mut source = StoreBuilder::in_memory("source")
            .with_logging(Changelog {
                topic: "bench-counts-changelog".into(),
                partition: 0,
                sink: log.clone(),
            })
            .build_key_value()
            .expect("source");
        for i in 0..n {
            source.put(&key(i), &(i as u64).to_be_bytes()).expect("put");
        }
    }
    let records: Vec<ChangelogRecord> = log.records();
    println!("| backend | records | batch | seconds | records/s |");
    println!("|---|---:|---:|---:|---:|");
    for (backend, rocks) in [("RocksDB", true), ("in-memory", false)] {
        let builder = if rocks {
            StoreBuilder::rocksdb("restored", dir.join("restored"), memory)
        } else {
            StoreBuilder::in_memory("restored")
        };
        let mut store = builder.build_key_value().expect("target");
        let batch = 10_000;
        let started = Instant::now();
        for chunk in records.chunks(batch) {
            store.restore_batch(chunk).expect("restore");
        }
        store.restore_complete().expect("complete");
        let secs = started.elapsed().as_secs_f64();
        assert!(store.get(&key(n - 1)).expect("get").is_some());
        println!(
            "| {backend} | {n} | {batch} | {secs:.2} | {:.0} |",
            n as f64 / secs
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("a benchmark: run it with `cargo bench --bench state_stores`");
        return; // `cargo test --all-targets` runs bench binaries without `--bench`.
    }
    let n = env_usize("KSTREAMS_BENCH_OPS", 200_000);
    let restore_keys = env_usize("KSTREAMS_BENCH_RESTORE_KEYS", 1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = RocksDbMemory::default();

    println!("## State stores: {n} operations per row (16-byte keys, 8-byte values)\n");
    let mut rows = Vec::new();
    rows.extend(key_value_rows(
        "RocksDB",
        StoreBuilder::rocksdb("kv", dir.path().join("kv"), &memory)
            .build_key_value()
            .expect("rocksdb"),
        n,
    ));
    rows.extend(key_value_rows(
        "in-memory",
        StoreBuilder::in_memory("kv")
            .build_key_value()
            .expect("memory"),
        n,
    ));
    rows.extend(window_rows(
        "RocksDB",
        StoreBuilder::rocksdb("win", dir.path().join("win"), &memory)
            .build_window(3_600_000, None)
            .expect("rocksdb window"),
        n,
    ));
    rows.extend(window_rows(
        "in-memory",
        StoreBuilder::in_memory("win")
            .build_window(3_600_000, None)
            .expect("memory window"),
        n,
    ));
    print_rows(&rows);

    println!("\n## Restore of a {restore_keys}-key store from its changelog\n");
    restore_rate(restore_keys, &memory, dir.path());
}
