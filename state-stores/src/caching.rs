//! The caching layer: absorbs repeated writes to a key between flushes and writes down only the
//! latest value, on flush or when the shared budget forces an eviction.
//!
//! This is the emission behaviour KTables rely on: with [`EmitMode::NewAndOld`] (or
//! [`EmitMode::New`]) every entry written down is also kept as a [`CacheEmission`] until
//! [`drain_emissions`](StateStore::drain_emissions) takes it, so the processor that owns the store
//! forwards one change per key per flush instead of one per write. Reads see the cache first, so a
//! store reads its own writes whether or not they were written down yet.

use std::collections::BTreeMap;

use crate::cache::{CacheBudget, DirtyEntry, RecordCache};
use crate::error::Result;
use crate::keys;
use crate::overlay::PendingEntry;
use crate::store::{
    retention_floor, CacheEmission, ChangelogRecord, KeyValueBytesStore, KeyValueIter,
    SessionBytesStore, SessionIter, SessionKey, SessionWindow, StateStore, UpdateFn,
    WindowBytesStore, WindowIter, WindowedKey, WindowedKeyValueIter,
};

/// What a caching layer reports about the entries it writes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitMode {
    /// Nothing: the cache only absorbs writes.
    #[default]
    None,
    /// Each entry written down, with its new value.
    New,
    /// Each entry written down, with its new value and the value the store held before.
    NewAndOld,
}

/// Settings for a caching layer.
#[derive(Debug, Clone)]
pub struct CachingConfig {
    /// The byte budget this cache shares with the thread's other caches.
    pub budget: CacheBudget,
    /// What to report about written-down entries.
    pub emit: EmitMode,
}

/// Records what a write-down of `entries` emits; `olds` holds the values the store held before
/// (empty unless `emit` is [`EmitMode::NewAndOld`]).
fn record_emissions(
    emit: EmitMode,
    entries: Vec<PendingEntry>,
    olds: Vec<Option<Vec<u8>>>,
    out: &mut Vec<CacheEmission>,
) {
    if emit == EmitMode::None {
        return;
    }
    let mut olds = olds.into_iter();
    out.extend(entries.into_iter().map(|(key, new_value)| CacheEmission {
        key,
        new_value,
        old_value: olds.next().flatten(),
    }));
}

/// The writes of a flush and, in the same order, the old values to emit with them (empty when
/// old values are not emitted).
type SplitDirty = (Vec<PendingEntry>, Vec<Option<Vec<u8>>>);

/// Splits dirty entries into the writes to make and, when old values are to be emitted, the
/// values the store below holds: known to the cache for entries that were clean in it, read
/// with `get` for the others.
fn split_dirty(
    emit: EmitMode,
    dirty: Vec<DirtyEntry>,
    mut get: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<SplitDirty> {
    let mut olds = Vec::with_capacity(if emit == EmitMode::NewAndOld {
        dirty.len()
    } else {
        0
    });
    let mut entries = Vec::with_capacity(dirty.len());
    for d in dirty {
        if emit == EmitMode::NewAndOld {
            olds.push(match d.below {
                Some(below) => below,
                None => get(&d.key)?,
            });
        }
        entries.push((d.key, d.value));
    }
    Ok((entries, olds))
}

/// The `StateStore` side of a caching store: a flush writes the dirty entries down first; a
/// restore bypasses (and drops) the cache.
macro_rules! caching_state_store {
    ($store:ty) => {
        impl StateStore for $store {
            fn name(&self) -> &str {
                self.inner.name()
            }
            fn persistent(&self) -> bool {
                self.inner.persistent()
            }
            fn flush(&mut self) -> Result<()> {
                let dirty = self.cache.take_dirty();
                self.write_down(dirty)?;
                self.inner.flush()
            }
            fn close(&mut self) -> Result<()> {
                self.flush()?;
                self.cache.clear();
                self.inner.close()
            }
            fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
                self.cache.clear();
                self.inner.restore_batch(records)
            }
            fn restore_complete(&mut self) -> Result<()> {
                self.inner.restore_complete()
            }
            fn drain_emissions(&mut self) -> Vec<CacheEmission> {
                std::mem::take(&mut self.emissions)
            }
            fn close_dirty(&mut self) -> Result<()> {
                self.cache.clear();
                self.emissions.clear();
                self.inner.close_dirty()
            }
            // The runtime flushed the cache before the commit started; writing entries down
            // at the commit would log them outside its transaction.
            $crate::store::forward_commit!();
        }
    };
}

/// A key-value store with a record cache in front.
pub struct CachingKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    cache: RecordCache,
    emit: EmitMode,
    emissions: Vec<CacheEmission>,
}

impl CachingKeyValueStore {
    /// Caches writes to `inner`.
    pub fn new(inner: Box<dyn KeyValueBytesStore>, config: CachingConfig) -> Self {
        CachingKeyValueStore {
            inner,
            cache: RecordCache::with_below(config.budget, config.emit == EmitMode::NewAndOld),
            emit: config.emit,
            emissions: Vec::new(),
        }
    }

    fn write_down(&mut self, dirty: Vec<DirtyEntry>) -> Result<()> {
        if dirty.is_empty() {
            return Ok(());
        }
        let (entries, olds) = split_dirty(self.emit, dirty, |key| self.inner.get(key))?;
        self.inner.put_all(&entries)?;
        record_emissions(self.emit, entries, olds, &mut self.emissions);
        Ok(())
    }

    fn maybe_evict(&mut self) -> Result<()> {
        if self.cache.needs_eviction() {
            let dirty = self.cache.evict();
            self.write_down(dirty)?;
        }
        Ok(())
    }
}

caching_state_store!(CachingKeyValueStore);

impl KeyValueBytesStore for CachingKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.cache.get(key) {
            Some(entry) => Ok(entry.value.clone()),
            None => self.inner.get(key),
        }
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.cache.put(key, Some(value.to_vec()));
        self.maybe_evict()
    }
    fn update(&mut self, key: &[u8], f: &mut UpdateFn<'_>) -> Result<()> {
        match self.cache.slot_of(key) {
            Some(slot) => {
                let new = f(self.cache.entry_at(slot).value.as_deref())?;
                self.cache.overwrite(slot, key, new);
            }
            None => {
                let below = self.inner.get(key)?;
                let new = f(below.as_deref())?;
                self.cache.insert(key, new);
            }
        }
        self.maybe_evict()
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        self.cache.put(key, None);
        self.maybe_evict()?;
        Ok(old)
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        // The cache is small and bounded: copy its part of the range, merge lazily with the store.
        let cached: Vec<PendingEntry> = self
            .cache
            .range(from, to)
            .map(|(k, e)| (k.to_vec(), e.value.clone()))
            .collect();
        Ok(Box::new(crate::overlay::MergeIter::new(
            cached.into_iter(),
            self.inner.range(from, to)?,
        )))
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.cache.len() as u64)
    }
}

/// A window store with a record cache in front, keyed by encoded window key.
pub struct CachingWindowStore {
    inner: Box<dyn WindowBytesStore>,
    cache: RecordCache,
    emit: EmitMode,
    emissions: Vec<CacheEmission>,
    observed: i64,
}

impl CachingWindowStore {
    /// Caches writes to `inner`.
    pub fn new(inner: Box<dyn WindowBytesStore>, config: CachingConfig) -> Self {
        let observed = inner.observed_stream_time();
        CachingWindowStore {
            inner,
            cache: RecordCache::with_below(config.budget, config.emit == EmitMode::NewAndOld),
            emit: config.emit,
            emissions: Vec::new(),
            observed,
        }
    }

    fn floor(&self) -> i64 {
        retention_floor(
            self.observed.max(self.inner.observed_stream_time()),
            self.inner.retention_ms(),
        )
    }

    fn write_down(&mut self, dirty: Vec<DirtyEntry>) -> Result<()> {
        let (entries, olds) =
            split_dirty(self.emit, dirty, |key| match keys::decode_window_key(key) {
                Some(wk) => self.inner.fetch(&wk.key, wk.start),
                None => Ok(None),
            })?;
        if !entries.is_empty() {
            self.inner.put_all(&entries)?;
        }
        record_emissions(self.emit, entries, olds, &mut self.emissions);
        Ok(())
    }

    fn maybe_evict(&mut self) -> Result<()> {
        if self.cache.needs_eviction() {
            let dirty = self.cache.evict();
            self.write_down(dirty)?;
        }
        Ok(())
    }

    /// The cache's unexpired entries for windows starting in `[from, to]`.
    fn cached(
        &self,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (WindowedKey, Option<Vec<u8>>)> + '_ {
        self.cache.range(None, None).filter_map(move |(k, e)| {
            let wk = keys::decode_window_key(k)?;
            (from..=to)
                .contains(&wk.start)
                .then(|| (wk, e.value.clone()))
        })
    }
}

caching_state_store!(CachingWindowStore);

impl WindowBytesStore for CachingWindowStore {
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()> {
        self.observed = self.observed.max(window_start);
        if window_start < self.floor() {
            return Ok(());
        }
        self.cache.put(
            &keys::window_key(key, window_start),
            value.map(<[u8]>::to_vec),
        );
        self.maybe_evict()
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        if window_start < self.floor() {
            return Ok(None);
        }
        match self.cache.get(&keys::window_key(key, window_start)) {
            Some(entry) => Ok(entry.value.clone()),
            None => self.inner.fetch(key, window_start),
        }
    }
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>> {
        let from = time_from.max(self.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut merged: BTreeMap<i64, Option<Vec<u8>>> = BTreeMap::new();
        for item in self.inner.fetch_range(key, from, time_to)? {
            let (start, value) = item?;
            merged.insert(start, Some(value));
        }
        let lower = keys::window_key(key, from);
        let upper = keys::window_key(key, time_to);
        for (k, entry) in self.cache.range(Some(&lower), Some(&upper)) {
            if let Some(wk) = keys::decode_window_key(k) {
                merged.insert(wk.start, entry.value.clone());
            }
        }
        Ok(Box::new(
            merged
                .into_iter()
                .filter_map(|(start, v)| v.map(|v| Ok((start, v)))),
        ))
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>> {
        let from = time_from.max(self.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut merged: BTreeMap<(i64, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for item in self.inner.fetch_all(from, time_to)? {
            let (wk, value) = item?;
            merged.insert((wk.start, wk.key), Some(value));
        }
        for (wk, value) in self.cached(from, time_to) {
            merged.insert((wk.start, wk.key), value);
        }
        Ok(Box::new(merged.into_iter().filter_map(
            |((start, key), v)| v.map(|v| Ok((WindowedKey { key, start }, v))),
        )))
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.inner.observed_stream_time())
    }
}

/// A session store with a record cache in front, keyed by encoded session key.
pub struct CachingSessionStore {
    inner: Box<dyn SessionBytesStore>,
    cache: RecordCache,
    emit: EmitMode,
    emissions: Vec<CacheEmission>,
    observed: i64,
}

impl CachingSessionStore {
    /// Caches writes to `inner`.
    pub fn new(inner: Box<dyn SessionBytesStore>, config: CachingConfig) -> Self {
        let observed = inner.observed_stream_time();
        CachingSessionStore {
            inner,
            cache: RecordCache::with_below(config.budget, config.emit == EmitMode::NewAndOld),
            emit: config.emit,
            emissions: Vec::new(),
            observed,
        }
    }

    fn floor(&self) -> i64 {
        retention_floor(
            self.observed.max(self.inner.observed_stream_time()),
            self.inner.retention_ms(),
        )
    }

    fn write_down(&mut self, dirty: Vec<DirtyEntry>) -> Result<()> {
        let (entries, olds) =
            split_dirty(self.emit, dirty, |key| {
                match keys::decode_session_key(key) {
                    Some(sk) => self.inner.fetch_session(&sk.key, sk.window),
                    None => Ok(None),
                }
            })?;
        for (key, value) in &entries {
            if let Some(sk) = keys::decode_session_key(key) {
                match value {
                    Some(value) => self.inner.put(&sk.key, sk.window, value)?,
                    None => self.inner.remove(&sk.key, sk.window)?,
                }
            }
        }
        record_emissions(self.emit, entries, olds, &mut self.emissions);
        Ok(())
    }

    fn maybe_evict(&mut self) -> Result<()> {
        if self.cache.needs_eviction() {
            let dirty = self.cache.evict();
            self.write_down(dirty)?;
        }
        Ok(())
    }

    fn write(&mut self, key: &[u8], window: SessionWindow, value: Option<Vec<u8>>) -> Result<()> {
        self.observed = self.observed.max(window.end);
        if window.end < self.floor() {
            return Ok(());
        }
        self.cache.put(&keys::session_key(key, window), value);
        self.maybe_evict()
    }
}

caching_state_store!(CachingSessionStore);

impl SessionBytesStore for CachingSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>> {
        let from_end = earliest_session_end.max(self.floor());
        let mut merged: BTreeMap<(i64, i64), Option<Vec<u8>>> = BTreeMap::new();
        for item in self
            .inner
            .find_sessions(key, from_end, latest_session_start)?
        {
            let (sk, value) = item?;
            merged.insert((sk.window.end, sk.window.start), Some(value));
        }
        let prefix = keys::entries_of_key(key);
        let upper = crate::store::prefix_upper_bound(&prefix);
        for (k, entry) in self.cache.range(Some(&prefix), upper.as_deref()) {
            if let Some(sk) = keys::decode_session_key(k) {
                if sk.key == key
                    && sk.window.end >= from_end
                    && sk.window.start <= latest_session_start
                {
                    merged.insert((sk.window.end, sk.window.start), entry.value.clone());
                }
            }
        }
        let key = key.to_vec();
        Ok(Box::new(merged.into_iter().filter_map(
            move |((end, start), v)| {
                v.map(|v| {
                    Ok((
                        SessionKey {
                            key: key.clone(),
                            window: SessionWindow { start, end },
                        },
                        v,
                    ))
                })
            },
        )))
    }
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>> {
        if window.end < self.floor() {
            return Ok(None);
        }
        match self.cache.get(&keys::session_key(key, window)) {
            Some(entry) => Ok(entry.value.clone()),
            None => self.inner.fetch_session(key, window),
        }
    }
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()> {
        self.write(key, window, Some(value.to_vec()))
    }
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()> {
        self.write(key, window, None)
    }
    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
    fn observed_stream_time(&self) -> i64 {
        self.observed.max(self.inner.observed_stream_time())
    }
}
