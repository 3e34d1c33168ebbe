//! The metering layer: counts and latencies of a store's puts, gets, deletes, range scans, flushes
//! and restored records, kept in a [`StoreMetrics`] that the runtime reads.
//!
//! A range scan's latency covers opening the iterator, not consuming it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::store::{
    CacheEmission, ChangelogRecord, KeyValueBytesStore, KeyValueIter, SessionBytesStore,
    SessionIter, SessionWindow, StateStore, UpdateFn, WindowBytesStore, WindowIter,
    WindowedKeyValueIter,
};

/// Count and latency of one kind of operation.
#[derive(Debug, Default)]
pub struct OpStats {
    count: AtomicU64,
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl OpStats {
    fn record(&self, started: Option<Instant>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(started) = started {
            let nanos = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// A copy of the current figures.
    pub fn snapshot(&self) -> OpSnapshot {
        OpSnapshot {
            count: self.count.load(Ordering::Relaxed),
            total_nanos: self.total_nanos.load(Ordering::Relaxed),
            max_nanos: self.max_nanos.load(Ordering::Relaxed),
        }
    }
}

/// Figures of one kind of operation at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpSnapshot {
    /// How many operations ran.
    pub count: u64,
    /// Their total latency in nanoseconds.
    pub total_nanos: u64,
    /// The slowest one, in nanoseconds.
    pub max_nanos: u64,
}

impl OpSnapshot {
    /// Mean latency in nanoseconds (0 when nothing ran).
    pub fn mean_nanos(&self) -> u64 {
        self.total_nanos.checked_div(self.count).unwrap_or(0)
    }
}

/// The metrics of one store. Shared between the store and whoever reports them.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Writes (puts, and for session stores, removes count as deletes).
    pub puts: OpStats,
    /// Point reads.
    pub gets: OpStats,
    /// Deletions.
    pub deletes: OpStats,
    /// Range, prefix and time-range scans.
    pub range_scans: OpStats,
    /// Flushes.
    pub flushes: OpStats,
    /// Restored changelog records (count) and restore batches (latency).
    pub restores: OpStats,
    /// Whether operations are timed.
    latencies: bool,
    restored_records: AtomicU64,
}

impl StoreMetrics {
    /// New, zeroed metrics that time every operation.
    pub fn new() -> Arc<Self> {
        Self::timed(true)
    }

    /// New, zeroed metrics; operations are timed only if `latencies` (otherwise only counted,
    /// and latencies read 0: Kafka Streams' `metrics.recording.level=INFO`).
    pub fn timed(latencies: bool) -> Arc<Self> {
        Arc::new(StoreMetrics {
            latencies,
            ..StoreMetrics::default()
        })
    }

    /// Whether operations are timed (else their latencies read 0).
    pub fn latencies(&self) -> bool {
        self.latencies
    }

    /// Changelog records restored so far.
    pub fn restored_records(&self) -> u64 {
        self.restored_records.load(Ordering::Relaxed)
    }
}

/// Runs `$body`, counting it in `$stats` of `$metrics`, and timing it only when the metrics
/// ask for latencies (reading the clock twice per operation is a measurable share of an
/// aggregation's per-record cost).
macro_rules! timed {
    ($metrics:expr, $stats:ident, $body:expr) => {{
        let started = $metrics.latencies.then(Instant::now);
        let result = $body;
        $metrics.$stats.record(started);
        result
    }};
}

macro_rules! metered_state_store {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn persistent(&self) -> bool {
            self.inner.persistent()
        }
        fn flush(&mut self) -> Result<()> {
            timed!(self.metrics, flushes, self.inner.flush())
        }
        fn close(&mut self) -> Result<()> {
            self.inner.close()
        }
        fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
            self.metrics
                .restored_records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            timed!(self.metrics, restores, self.inner.restore_batch(records))
        }
        fn restore_complete(&mut self) -> Result<()> {
            self.inner.restore_complete()
        }
        fn drain_emissions(&mut self) -> Vec<CacheEmission> {
            self.inner.drain_emissions()
        }
        fn close_dirty(&mut self) -> Result<()> {
            self.inner.close_dirty()
        }
        $crate::store::forward_commit!();
    };
}

/// A key-value store with metrics.
pub struct MeteredKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    metrics: Arc<StoreMetrics>,
}

impl MeteredKeyValueStore {
    /// Meters `inner` into `metrics`.
    pub fn new(inner: Box<dyn KeyValueBytesStore>, metrics: Arc<StoreMetrics>) -> Self {
        MeteredKeyValueStore { inner, metrics }
    }
}

impl StateStore for MeteredKeyValueStore {
    metered_state_store!();
}

impl KeyValueBytesStore for MeteredKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        timed!(self.metrics, gets, self.inner.get(key))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        timed!(self.metrics, puts, self.inner.put(key, value))
    }
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        timed!(self.metrics, puts, self.inner.put_if_absent(key, value))
    }
    fn update(&mut self, key: &[u8], f: &mut UpdateFn<'_>) -> Result<()> {
        // A read and a write, as the two calls it replaces counted, each timed as the update.
        let started = self.metrics.latencies.then(Instant::now);
        let result = self.inner.update(key, f);
        self.metrics.gets.record(started);
        self.metrics.puts.record(started);
        result
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        timed!(self.metrics, puts, self.inner.put_all(entries))
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        timed!(self.metrics, deletes, self.inner.delete(key))
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        timed!(self.metrics, range_scans, self.inner.range(from, to))
    }
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIter<'_>> {
        timed!(self.metrics, range_scans, self.inner.prefix_scan(prefix))
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

/// A window store with metrics.
pub struct MeteredWindowStore {
    inner: Box<dyn WindowBytesStore>,
    metrics: Arc<StoreMetrics>,
}

impl MeteredWindowStore {
    /// Meters `inner` into `metrics`.
    pub fn new(inner: Box<dyn WindowBytesStore>, metrics: Arc<StoreMetrics>) -> Self {
        MeteredWindowStore { inner, metrics }
    }
}

impl StateStore for MeteredWindowStore {
    metered_state_store!();
}

impl WindowBytesStore for MeteredWindowStore {
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(_) => timed!(self.metrics, puts, self.inner.put(key, window_start, value)),
            None => timed!(
                self.metrics,
                deletes,
                self.inner.put(key, window_start, value)
            ),
        }
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        timed!(self.metrics, puts, self.inner.put_all(entries))
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        timed!(self.metrics, gets, self.inner.fetch(key, window_start))
    }
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>> {
        timed!(
            self.metrics,
            range_scans,
            self.inner.fetch_range(key, time_from, time_to)
        )
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>> {
        timed!(
            self.metrics,
            range_scans,
            self.inner.fetch_all(time_from, time_to)
        )
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

/// A session store with metrics.
pub struct MeteredSessionStore {
    inner: Box<dyn SessionBytesStore>,
    metrics: Arc<StoreMetrics>,
}

impl MeteredSessionStore {
    /// Meters `inner` into `metrics`.
    pub fn new(inner: Box<dyn SessionBytesStore>, metrics: Arc<StoreMetrics>) -> Self {
        MeteredSessionStore { inner, metrics }
    }
}

impl StateStore for MeteredSessionStore {
    metered_state_store!();
}

impl SessionBytesStore for MeteredSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>> {
        timed!(
            self.metrics,
            range_scans,
            self.inner
                .find_sessions(key, earliest_session_end, latest_session_start)
        )
    }
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>> {
        timed!(self.metrics, gets, self.inner.fetch_session(key, window))
    }
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()> {
        timed!(self.metrics, puts, self.inner.put(key, window, value))
    }
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()> {
        timed!(self.metrics, deletes, self.inner.remove(key, window))
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryKeyValueStore;

    #[test]
    fn operations_are_counted_always_and_timed_only_when_asked() {
        for latencies in [false, true] {
            let metrics = StoreMetrics::timed(latencies);
            let mut store = MeteredKeyValueStore::new(
                Box::new(InMemoryKeyValueStore::new("s")),
                metrics.clone(),
            );
            for i in 0..100u32 {
                store.put(&i.to_be_bytes(), b"v").unwrap();
                assert!(store.get(&i.to_be_bytes()).unwrap().is_some());
            }
            let (puts, gets) = (metrics.puts.snapshot(), metrics.gets.snapshot());
            assert_eq!((puts.count, gets.count), (100, 100));
            assert_eq!(metrics.latencies(), latencies);
            assert_eq!(
                puts.total_nanos > 0 && gets.total_nanos > 0,
                latencies,
                "timed only at DEBUG/TRACE: {puts:?} {gets:?}"
            );
        }
    }
}
