//! In-memory implementations of the three store kinds, built on `BTreeMap`s.
//!
//! Nothing survives [`close`](crate::store::StateStore::close) or the process: an in-memory store
//! with a changelog is rebuilt from it when its task starts. Window and session stores index by
//! time first, so expiring data drops whole time buckets (`BTreeMap::split_off`) instead of
//! visiting records.

use crate::error::{Result, StoreError};
use crate::keys;
use crate::store::{
    inclusive_range, retention_floor, ChangelogRecord, KeyValueBytesStore, KeyValueIter,
    SessionBytesStore, SessionIter, SessionKey, SessionWindow, StateStore, WindowBytesStore,
    WindowIter, WindowedKey, WindowedKeyValueIter,
};
use std::collections::BTreeMap;

fn closed(name: &str) -> StoreError {
    StoreError::Closed {
        store: name.to_owned(),
    }
}

fn corrupt(name: &str, record: &ChangelogRecord, what: &str) -> StoreError {
    StoreError::CorruptChangelog {
        store: name.to_owned(),
        offset: record.offset,
        reason: format!(
            "the key is not a valid {what} key ({} bytes)",
            record.key.len()
        ),
    }
}

/// A key-value store in a `BTreeMap`.
#[derive(Debug)]
pub struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    open: bool,
}

impl InMemoryKeyValueStore {
    /// An empty store.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore {
            name: name.into(),
            map: BTreeMap::new(),
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(closed(&self.name))
        }
    }
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.map.clear();
        Ok(())
    }
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.check_open()?;
        for record in records {
            match &record.value {
                Some(value) => self.map.insert(record.key.clone(), value.clone()),
                None => self.map.remove(&record.key),
            };
        }
        Ok(())
    }
}

impl KeyValueBytesStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        match self.map.get_mut(key) {
            Some(existing) => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.remove(key))
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        self.check_open()?;
        let Some(bounds) = inclusive_range(from, to) else {
            return Ok(Box::new(std::iter::empty()));
        };
        Ok(Box::new(
            self.map
                .range::<[u8], _>(bounds)
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        ))
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.map.len() as u64)
    }
}

/// A window store indexed by window start, then key.
#[derive(Debug)]
pub struct InMemoryWindowStore {
    name: String,
    retention_ms: i64,
    windows: BTreeMap<i64, BTreeMap<Vec<u8>, Vec<u8>>>,
    observed: i64,
    open: bool,
}

impl InMemoryWindowStore {
    /// An empty store keeping windows for `retention_ms` after their start.
    pub fn new(name: impl Into<String>, retention_ms: i64) -> Self {
        InMemoryWindowStore {
            name: name.into(),
            retention_ms,
            windows: BTreeMap::new(),
            observed: i64::MIN,
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(closed(&self.name))
        }
    }

    fn floor(&self) -> i64 {
        retention_floor(self.observed, self.retention_ms)
    }

    fn write(&mut self, key: &[u8], start: i64, value: Option<&[u8]>) {
        self.observed = self.observed.max(start);
        let floor = self.floor();
        if start < floor {
            tracing::trace!(store = %self.name, start, "dropping a write to an expired window");
            return;
        }
        // Expire whole buckets: everything before the floor goes at once.
        if self
            .windows
            .first_key_value()
            .is_some_and(|(s, _)| *s < floor)
        {
            self.windows = self.windows.split_off(&floor);
        }
        match value {
            Some(value) => {
                self.windows
                    .entry(start)
                    .or_default()
                    .insert(key.to_vec(), value.to_vec());
            }
            None => {
                if let Some(bucket) = self.windows.get_mut(&start) {
                    bucket.remove(key);
                    if bucket.is_empty() {
                        self.windows.remove(&start);
                    }
                }
            }
        }
    }
}

impl StateStore for InMemoryWindowStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.windows.clear();
        Ok(())
    }
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.check_open()?;
        for record in records {
            let wk = keys::decode_window_key(&record.key)
                .ok_or_else(|| corrupt(&self.name, record, "window"))?;
            self.write(&wk.key, wk.start, record.value.as_deref());
        }
        Ok(())
    }
}

impl WindowBytesStore for InMemoryWindowStore {
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()> {
        self.check_open()?;
        self.write(key, window_start, value);
        Ok(())
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if window_start < self.floor() {
            return Ok(None);
        }
        Ok(self
            .windows
            .get(&window_start)
            .and_then(|b| b.get(key))
            .cloned())
    }
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>> {
        self.check_open()?;
        let from = time_from.max(self.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let key = key.to_vec();
        Ok(Box::new(self.windows.range(from..=time_to).filter_map(
            move |(start, bucket)| bucket.get(&key).map(|v| Ok((*start, v.clone()))),
        )))
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>> {
        self.check_open()?;
        let from = time_from.max(self.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(self.windows.range(from..=time_to).flat_map(
            |(start, bucket)| {
                bucket.iter().map(move |(k, v)| {
                    Ok((
                        WindowedKey {
                            key: k.clone(),
                            start: *start,
                        },
                        v.clone(),
                    ))
                })
            },
        )))
    }
    fn retention_ms(&self) -> i64 {
        self.retention_ms
    }
    fn observed_stream_time(&self) -> i64 {
        self.observed
    }
}

type SessionsByKey = BTreeMap<Vec<u8>, BTreeMap<i64, Vec<u8>>>;

/// A session store indexed by session end, then key, then session start.
#[derive(Debug)]
pub struct InMemorySessionStore {
    name: String,
    retention_ms: i64,
    sessions: BTreeMap<i64, SessionsByKey>,
    observed: i64,
    open: bool,
}

impl InMemorySessionStore {
    /// An empty store keeping sessions for `retention_ms` after they end.
    pub fn new(name: impl Into<String>, retention_ms: i64) -> Self {
        InMemorySessionStore {
            name: name.into(),
            retention_ms,
            sessions: BTreeMap::new(),
            observed: i64::MIN,
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(closed(&self.name))
        }
    }

    fn floor(&self) -> i64 {
        retention_floor(self.observed, self.retention_ms)
    }

    fn write(&mut self, key: &[u8], window: SessionWindow, value: Option<&[u8]>) {
        self.observed = self.observed.max(window.end);
        let floor = self.floor();
        if window.end < floor {
            tracing::trace!(store = %self.name, end = window.end, "dropping a write to an expired session");
            return;
        }
        if self
            .sessions
            .first_key_value()
            .is_some_and(|(e, _)| *e < floor)
        {
            self.sessions = self.sessions.split_off(&floor);
        }
        match value {
            Some(value) => {
                self.sessions
                    .entry(window.end)
                    .or_default()
                    .entry(key.to_vec())
                    .or_default()
                    .insert(window.start, value.to_vec());
            }
            None => {
                if let Some(by_key) = self.sessions.get_mut(&window.end) {
                    if let Some(by_start) = by_key.get_mut(key) {
                        by_start.remove(&window.start);
                        if by_start.is_empty() {
                            by_key.remove(key);
                        }
                    }
                    if by_key.is_empty() {
                        self.sessions.remove(&window.end);
                    }
                }
            }
        }
    }
}

impl StateStore for InMemorySessionStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.sessions.clear();
        Ok(())
    }
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.check_open()?;
        for record in records {
            let sk = keys::decode_session_key(&record.key)
                .ok_or_else(|| corrupt(&self.name, record, "session"))?;
            self.write(&sk.key, sk.window, record.value.as_deref());
        }
        Ok(())
    }
}

impl SessionBytesStore for InMemorySessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>> {
        self.check_open()?;
        let from = earliest_session_end.max(self.floor());
        let key = key.to_vec();
        Ok(Box::new(self.sessions.range(from..).flat_map(
            move |(end, by_key)| {
                let key = key.clone();
                by_key.get(&key).into_iter().flat_map(move |by_start| {
                    let key = key.clone();
                    by_start
                        .range(..=latest_session_start)
                        .map(move |(start, v)| {
                            Ok((
                                SessionKey {
                                    key: key.clone(),
                                    window: SessionWindow {
                                        start: *start,
                                        end: *end,
                                    },
                                },
                                v.clone(),
                            ))
                        })
                })
            },
        )))
    }
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if window.end < self.floor() {
            return Ok(None);
        }
        Ok(self
            .sessions
            .get(&window.end)
            .and_then(|by_key| by_key.get(key))
            .and_then(|by_start| by_start.get(&window.start))
            .cloned())
    }
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()> {
        self.check_open()?;
        self.write(key, window, Some(value));
        Ok(())
    }
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()> {
        self.check_open()?;
        self.write(key, window, None);
        Ok(())
    }
    fn retention_ms(&self) -> i64 {
        self.retention_ms
    }
    fn observed_stream_time(&self) -> i64 {
        self.observed
    }
}
