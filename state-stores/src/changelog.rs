//! The changelogging layer: every write to a store also becomes a record for the store's
//! changelog topic-partition.
//!
//! The layer hands each record (key, and value or tombstone) to a [`ChangelogSink`] that the
//! runtime provides; the sink knows the topic-partition, stamps the current record's timestamp and
//! sends it through the task's producer. Window and session stores log the encoded windowed key
//! ([`crate::keys`]), which is also what [`StateStore::restore_batch`] reads back.
//!
//! Restoration goes around this layer (restored records are not logged again).

use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::keys;
use crate::store::{
    CacheEmission, ChangelogRecord, KeyValueBytesStore, KeyValueIter, SessionBytesStore,
    SessionIter, SessionWindow, StateStore, WindowBytesStore, WindowIter, WindowedKeyValueIter,
};

/// Where a changelogging layer sends its records. Provided by the runtime (the task's record
/// collector) or by tests.
pub trait ChangelogSink: Send + Sync {
    /// Sends one changelog record; `None` is a tombstone. An error fails the write that caused it.
    fn send(&self, key: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String>;
}

/// A store's changelog: its topic and partition, and the sink that writes to it.
#[derive(Clone)]
pub struct Changelog {
    /// The changelog topic (`<application.id>-<store>-changelog`).
    pub topic: String,
    /// The partition: the task's partition.
    pub partition: i32,
    /// Where records go.
    pub sink: Arc<dyn ChangelogSink>,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish()
    }
}

impl Changelog {
    fn log(&self, store: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.sink
            .send(key, value)
            .map_err(|reason| StoreError::Changelog {
                store: store.to_owned(),
                topic: self.topic.clone(),
                reason,
            })
    }
}

/// A sink that keeps records in memory: for tests, and for restoring a store from the changelog
/// it wrote itself.
#[derive(Debug, Default)]
pub struct MemoryChangelog {
    records: std::sync::Mutex<Vec<ChangelogRecord>>,
}

impl MemoryChangelog {
    /// An empty changelog.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryChangelog::default())
    }

    /// Every record sent so far, with offsets 0, 1, 2, ...
    pub fn records(&self) -> Vec<ChangelogRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ChangelogSink for MemoryChangelog {
    fn send(&self, key: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let offset = records.len() as i64;
        records.push(ChangelogRecord {
            offset,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        });
        Ok(())
    }
}

macro_rules! delegate_state_store {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn persistent(&self) -> bool {
            self.inner.persistent()
        }
        fn flush(&mut self) -> Result<()> {
            self.inner.flush()
        }
        fn close(&mut self) -> Result<()> {
            self.inner.close()
        }
        fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
            self.inner.restore_batch(records)
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

/// A key-value store whose writes are logged.
pub struct LoggedKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    changelog: Changelog,
}

impl LoggedKeyValueStore {
    /// Logs `inner`'s writes to `changelog`.
    pub fn new(inner: Box<dyn KeyValueBytesStore>, changelog: Changelog) -> Self {
        LoggedKeyValueStore { inner, changelog }
    }
}

impl StateStore for LoggedKeyValueStore {
    delegate_state_store!();
}

impl KeyValueBytesStore for LoggedKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.changelog.log(self.inner.name(), key, Some(value))
    }
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let existing = self.inner.put_if_absent(key, value)?;
        if existing.is_none() {
            self.changelog.log(self.inner.name(), key, Some(value))?;
        }
        Ok(existing)
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        self.inner.put_all(entries)?;
        for (key, value) in entries {
            self.changelog
                .log(self.inner.name(), key, value.as_deref())?;
        }
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.inner.delete(key)?;
        self.changelog.log(self.inner.name(), key, None)?;
        Ok(old)
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        self.inner.range(from, to)
    }
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIter<'_>> {
        self.inner.prefix_scan(prefix)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

/// A window store whose writes are logged under their encoded window key.
pub struct LoggedWindowStore {
    inner: Box<dyn WindowBytesStore>,
    changelog: Changelog,
}

impl LoggedWindowStore {
    /// Logs `inner`'s writes to `changelog`.
    pub fn new(inner: Box<dyn WindowBytesStore>, changelog: Changelog) -> Self {
        LoggedWindowStore { inner, changelog }
    }
}

impl StateStore for LoggedWindowStore {
    delegate_state_store!();
}

impl WindowBytesStore for LoggedWindowStore {
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()> {
        self.inner.put(key, window_start, value)?;
        self.changelog.log(
            self.inner.name(),
            &keys::window_key(key, window_start),
            value,
        )
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        self.inner.put_all(entries)?;
        for (window_key, value) in entries {
            if keys::decode_window_key(window_key).is_some() {
                self.changelog
                    .log(self.inner.name(), window_key, value.as_deref())?;
            }
        }
        Ok(())
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch(key, window_start)
    }
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>> {
        self.inner.fetch_range(key, time_from, time_to)
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>> {
        self.inner.fetch_all(time_from, time_to)
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}

/// A session store whose writes are logged under their encoded session key.
pub struct LoggedSessionStore {
    inner: Box<dyn SessionBytesStore>,
    changelog: Changelog,
}

impl LoggedSessionStore {
    /// Logs `inner`'s writes to `changelog`.
    pub fn new(inner: Box<dyn SessionBytesStore>, changelog: Changelog) -> Self {
        LoggedSessionStore { inner, changelog }
    }
}

impl StateStore for LoggedSessionStore {
    delegate_state_store!();
}

impl SessionBytesStore for LoggedSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>> {
        self.inner
            .find_sessions(key, earliest_session_end, latest_session_start)
    }
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>> {
        self.inner.fetch_session(key, window)
    }
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()> {
        self.inner.put(key, window, value)?;
        self.changelog.log(
            self.inner.name(),
            &keys::session_key(key, window),
            Some(value),
        )
    }
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()> {
        self.inner.remove(key, window)?;
        self.changelog
            .log(self.inner.name(), &keys::session_key(key, window), None)
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.inner.observed_stream_time()
    }
}
