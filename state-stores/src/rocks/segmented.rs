//! Window and session stores on RocksDB: one database per store, one column family per time
//! segment.
//!
//! A record belongs to segment `time.div_euclid(segment_interval)` (window start, or session end).
//! When the observed stream time moves the retention floor past a segment, the whole column family
//! is dropped. Keys inside a segment use the encodings of [`crate::keys`], so one key's entries are
//! contiguous and ordered by time.
//!
//! In transactional mode (exactly-once) writes wait in an [`Overlay`] keyed by the encoded key, and
//! so do segment creations and drops: the commit creates the segments the writes need, applies the
//! writes, the observed stream time and the changelog offset in one batch, and only then drops the
//! segments that expired. Until then expiry is logical: reads ignore anything below the retention
//! floor of the observed stream time, pending writes included. As for key-value stores, writes
//! sealed for a commit in flight sit in a second overlay, with the observed stream time of that
//! moment, which is what the commit records.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::PathBuf;

use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, ReadOptions, WriteBatch, DB};

use super::{
    decode_offset, drop_uncommitted, ensure_dir, restore_write_options, rocks_error, start_flush,
    write_options, Reservation, RocksDbMemory, OFFSET_KEY,
};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::overlay::{MergeIter, Overlay};
use crate::store::{
    retention_floor, ChangelogRecord, SessionBytesStore, SessionIter, SessionWindow, StateStore,
    WindowBytesStore, WindowIter, WindowedKey, WindowedKeyValueIter,
};

/// Where the observed stream time is kept across restarts (in the default column family).
const OBSERVED_KEY: &[u8] = b"kstreams.observed-stream-time";
const SEGMENT_PREFIX: &str = "segment.";

/// The time an encoded key belongs to (window start, or session end).
type TimeOf = fn(&[u8]) -> Option<i64>;

/// A write for [`Segments::write_all`]: the window's time, its encoded key, the value or `None`.
type TimedWrite<'a> = (i64, &'a [u8], Option<&'a [u8]>);

/// The segment bookkeeping shared by window and session stores.
struct Segments {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    options: Options,
    interval: i64,
    retention: i64,
    /// The observed stream time, pending writes included.
    observed: i64,
    /// Segments that exist in the database.
    live: BTreeSet<i64>,
    time_of: TimeOf,
    /// Whether writes wait in `pending` until a commit (exactly-once).
    transactional: bool,
    pending: Overlay,
    /// Writes sealed for the commit in flight, and the observed stream time when they were.
    sealed: Overlay,
    sealed_observed: i64,
    /// The changelog offset recorded by the last commit.
    offset: Option<i64>,
    /// Restored records not in SST files yet (written without the WAL).
    restored_unflushed: bool,
    _reservation: Option<Reservation>,
}

impl Segments {
    fn open(
        name: String,
        path: PathBuf,
        memory: &RocksDbMemory,
        (retention, interval): (i64, i64),
        time_of: TimeOf,
        transactional: bool,
    ) -> Result<Self> {
        if retention < 0 || interval <= 0 {
            return Err(StoreError::Config {
                store: name,
                reason: format!(
                    "retention must be >= 0 and the segment interval > 0 (got {retention} ms and {interval} ms)"
                ),
            });
        }
        ensure_dir(&path)?;
        let reservation = memory.reserve();
        let options = memory.options();
        // A database that does not exist yet has only the default column family.
        let families = DB::list_cf(&options, &path).unwrap_or_else(|_| vec!["default".to_owned()]);
        let db =
            DB::open_cf(&options, &path, &families).map_err(|e| rocks_error(&name, &path, e))?;
        let live = families
            .iter()
            .filter_map(|f| f.strip_prefix(SEGMENT_PREFIX)?.parse().ok())
            .collect();
        let observed = match db
            .get(OBSERVED_KEY)
            .map_err(|e| rocks_error(&name, &path, e))?
        {
            // A checkpoint like the offset: corrupt, the runtime wipes and restores the store.
            Some(bytes) => i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                StoreError::CorruptCheckpoint {
                    path: path.clone(),
                    reason: format!(
                        "store `{name}` holds an observed stream time of {} bytes, not 8",
                        bytes.len()
                    ),
                }
            })?),
            None => i64::MIN,
        };
        let offset = {
            let raw = db
                .get(OFFSET_KEY)
                .map_err(|e| rocks_error(&name, &path, e))?;
            decode_offset(&name, &path, raw)?
        };
        Ok(Segments {
            name,
            path,
            db: Some(db),
            options,
            interval,
            retention,
            observed,
            live,
            time_of,
            transactional,
            pending: Overlay::default(),
            sealed: Overlay::default(),
            sealed_observed: observed,
            offset,
            restored_unflushed: false,
            _reservation: Some(reservation),
        })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        rocks_error(&self.name, &self.path, e)
    }

    fn segment_of(&self, time: i64) -> i64 {
        time.div_euclid(self.interval)
    }

    fn family(id: i64) -> String {
        format!("{SEGMENT_PREFIX}{id}")
    }

    fn floor(&self) -> i64 {
        retention_floor(self.observed, self.retention)
    }

    /// Moves the observed stream time to at least `time` and, unless the store is
    /// transactional (the commit does it then), drops segments that fell below the retention
    /// floor.
    fn advance_to(&mut self, time: i64) -> Result<()> {
        if time <= self.observed {
            return Ok(());
        }
        self.observed = time;
        if self.transactional {
            return Ok(());
        }
        self.drop_expired(time)
    }

    /// Drops the segments below the retention floor of stream time `observed`.
    fn drop_expired(&mut self, observed: i64) -> Result<()> {
        let min_live = self.segment_of(retention_floor(observed, self.retention));
        let expired: Vec<i64> = self.live.range(..min_live).copied().collect();
        if expired.is_empty() {
            return Ok(());
        }
        // A dropped segment is gone at once and for good. The stream time that expired it must
        // be on disk first: a restart that read an older one would take the segment's windows
        // for live, and restoring the changelog tail would bring back only the part of them
        // written since the last commit.
        let db = self.db()?;
        db.put_opt(OBSERVED_KEY, observed.to_be_bytes(), &write_options())
            .and_then(|()| db.flush_wal(true))
            .map_err(|e| self.err(e))?;
        for id in expired {
            let db = self.db.as_mut().ok_or_else(|| StoreError::Closed {
                store: self.name.clone(),
            })?;
            db.drop_cf(&Self::family(id))
                .map_err(|e| rocks_error(&self.name, &self.path, e))?;
            self.live.remove(&id);
            tracing::debug!(store = %self.name, segment = id, "dropped an expired segment");
        }
        Ok(())
    }

    /// Creates the segment holding `time` if it does not exist; returns its id.
    fn segment_for_write(&mut self, time: i64) -> Result<i64> {
        let id = self.segment_of(time);
        let family = Self::family(id);
        if !self.live.contains(&id) {
            let db = self.db.as_mut().ok_or_else(|| StoreError::Closed {
                store: self.name.clone(),
            })?;
            db.create_cf(&family, &self.options)
                .map_err(|e| rocks_error(&self.name, &self.path, e))?;
            self.live.insert(id);
        }
        Ok(id)
    }

    fn handle(&self, id: i64) -> Result<&ColumnFamily> {
        self.db()?
            .cf_handle(&Self::family(id))
            .ok_or_else(|| StoreError::Config {
                store: self.name.clone(),
                reason: format!("segment {id} is missing from {}", self.path.display()),
            })
    }

    /// Live segments that may hold times in `[from, to]`.
    fn segments_between(&self, from: i64, to: i64) -> Vec<i64> {
        if from > to {
            return Vec::new();
        }
        self.live
            .range(self.segment_of(from)..=self.segment_of(to))
            .copied()
            .collect()
    }

    /// Entries of segment `id` with `lower <= key < upper`, in key order.
    fn scan(
        &self,
        id: i64,
        lower: &[u8],
        upper: Option<Vec<u8>>,
    ) -> Result<impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_> {
        let db = self.db()?;
        let cf = self.handle(id)?;
        let mut options = ReadOptions::default();
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper);
        }
        Ok(db
            .iterator_cf_opt(cf, options, IteratorMode::From(lower, Direction::Forward))
            .map(move |item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(|e| self.err(e))
            }))
    }

    /// Entries with `lower <= key < upper` whose time is in `[from, to]`, from the database's
    /// segments and the pending writes, in key order. Within one key's entries (and the bounds of
    /// callers keep to one key or scan everything) key order is time order.
    fn scan_merged(
        &self,
        (from, to): (i64, i64),
        lower: &[u8],
        upper: Option<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut stored = Vec::new();
        for id in self.segments_between(from, to) {
            for item in self.scan(id, lower, upper.clone())? {
                stored.push(item?);
            }
        }
        // Each segment is in key order, their concatenation only in time order: a key of a
        // later segment may sort before one of an earlier. The merge below needs key order
        // (and callers are promised it). Keys are unique; a stable sort merges the sorted runs.
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        if self.pending.is_empty() && self.sealed.is_empty() {
            return Ok(stored);
        }
        let upper = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let in_time = |k: &[u8]| (self.time_of)(k).is_some_and(|t| (from..=to).contains(&t));
        let sealed = self
            .sealed
            .range(Some(lower), upper)
            .filter(|(k, _)| in_time(k));
        let pending = self
            .pending
            .range(Some(lower), upper)
            .filter(|(k, _)| in_time(k));
        MergeIter::new(pending, MergeIter::new(sealed, stored.into_iter().map(Ok))).collect()
    }

    fn write(&mut self, time: i64, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.db()?; // a closed store refuses writes in both modes
        self.advance_to(time)?;
        if time < self.floor() {
            tracing::trace!(store = %self.name, time, "dropping a write to an expired segment");
            return Ok(());
        }
        if self.transactional {
            self.pending.put(key, value);
            return Ok(());
        }
        match value {
            Some(value) => {
                let id = self.segment_for_write(time)?;
                let cf = self.handle(id)?;
                self.db()?
                    .put_cf_opt(cf, key, value, &write_options())
                    .map_err(|e| self.err(e))
            }
            None => {
                let id = self.segment_of(time);
                if !self.live.contains(&id) {
                    return Ok(());
                }
                let cf = self.handle(id)?;
                self.db()?
                    .delete_cf_opt(cf, key, &write_options())
                    .map_err(|e| self.err(e))
            }
        }
    }

    /// Writes `entries` (time, encoded key, value or `None`) as [`write`](Self::write) one after
    /// the other would, in one RocksDB batch. Stream time advances to the latest of them first:
    /// an entry whose segment that expires would have been dropped with the segment anyway.
    fn write_all(&mut self, entries: &[TimedWrite<'_>]) -> Result<()> {
        self.db()?; // a closed store refuses writes in both modes
        let Some(latest) = entries.iter().map(|(time, _, _)| *time).max() else {
            return Ok(());
        };
        self.advance_to(latest)?;
        let floor = self.floor();
        let live = entries.iter().filter(|(time, _, _)| *time >= floor);
        if self.transactional {
            for (_, key, value) in live {
                self.pending.put(key, *value);
            }
            return Ok(());
        }
        for (time, _, value) in live.clone() {
            if value.is_some() {
                self.segment_for_write(*time)?;
            }
        }
        let mut batch = WriteBatch::default();
        for (time, key, value) in live {
            let id = self.segment_of(*time);
            if !self.live.contains(&id) {
                continue; // a deletion in a segment never written
            }
            let cf = self.handle(id)?;
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
        self.db()?
            .write_opt(batch, &write_options())
            .map_err(|e| self.err(e))
    }

    fn get(&self, time: i64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if time < self.floor() {
            return Ok(None);
        }
        if let Some(pending) = self.pending.get(key).or_else(|| self.sealed.get(key)) {
            return Ok(pending.map(<[u8]>::to_vec));
        }
        let id = self.segment_of(time);
        if !self.live.contains(&id) {
            return Ok(None);
        }
        self.db()?
            .get_cf(self.handle(id)?, key)
            .map_err(|e| self.err(e))
    }

    /// Applies changelog records whose time `time_of` extracts; records that the batch's own
    /// stream time expires are skipped, which leaves the same state as applying them one by one.
    fn restore(&mut self, records: &[ChangelogRecord], kind: &str) -> Result<()> {
        let mut times = Vec::with_capacity(records.len());
        for record in records {
            let time = (self.time_of)(&record.key).ok_or_else(|| StoreError::CorruptChangelog {
                store: self.name.clone(),
                offset: record.offset,
                reason: format!(
                    "the key is not a valid {kind} key ({} bytes)",
                    record.key.len()
                ),
            })?;
            times.push(time);
        }
        if let Some(max) = times.iter().copied().max() {
            self.advance_to(max)?;
            // Restored records are committed ones.
            self.sealed_observed = self.sealed_observed.max(max);
        }
        let floor = self.floor();
        for (record, time) in records.iter().zip(&times) {
            if *time >= floor && record.value.is_some() {
                self.segment_for_write(*time)?;
            }
        }
        self.restored_unflushed = true;
        let mut batch = WriteBatch::default();
        for (record, time) in records.iter().zip(times) {
            if time < floor {
                continue;
            }
            let id = self.segment_of(time);
            if !self.live.contains(&id) {
                continue; // a deletion in a segment that never held data
            }
            let cf = self.handle(id)?;
            match &record.value {
                Some(value) => batch.put_cf(cf, &record.key, value),
                None => batch.delete_cf(cf, &record.key),
            }
        }
        self.db()?
            .write_opt(batch, &restore_write_options())
            .map_err(|e| self.err(e))
    }

    fn persist_observed(&self) -> Result<()> {
        self.db()?
            .put_opt(OBSERVED_KEY, self.observed.to_be_bytes(), &write_options())
            .map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<()> {
        if self.transactional {
            return Ok(()); // nothing may reach the disk before the commit
        }
        self.persist_observed()?;
        self.db()?.flush_wal(true).map_err(|e| self.err(e))
    }

    /// Starts writing restored records to SST files in the background; the next commit waits
    /// for them ([`Self::flush_memtables`]) before it records an offset past them.
    fn start_flush(&mut self) -> Result<()> {
        self.persist_observed()?;
        let db = self.db()?;
        let families = self
            .live
            .iter()
            .map(|id| self.handle(*id))
            .collect::<Result<Vec<_>>>()?;
        start_flush(db, families).map_err(|e| self.err(e))
    }

    fn flush_memtables(&mut self) -> Result<()> {
        self.persist_observed()?;
        let db = self.db()?;
        db.flush().map_err(|e| self.err(e))?;
        for id in &self.live {
            db.flush_cf(self.handle(*id)?).map_err(|e| self.err(e))?;
        }
        self.restored_unflushed = false;
        Ok(())
    }

    /// Seals the pending writes, and the observed stream time, for the next commit.
    fn prepare_commit(&mut self) {
        self.sealed.absorb(std::mem::take(&mut self.pending));
        self.sealed_observed = self.observed;
    }

    /// Applies the sealed writes, their observed stream time and `offset` in one batch, then
    /// drops the segments that expired by that time.
    fn commit(&mut self, offset: Option<i64>) -> Result<()> {
        if self.restored_unflushed {
            self.flush_memtables()?;
        }
        let observed = if self.transactional {
            self.sealed_observed
        } else {
            self.observed
        };
        let sealed: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self.sealed.take();
        let floor = retention_floor(observed, self.retention);
        let mut writes = Vec::with_capacity(sealed.len());
        for (key, value) in sealed {
            let time = (self.time_of)(&key).ok_or_else(|| StoreError::Config {
                store: self.name.clone(),
                reason: format!("a pending write has a malformed key ({} bytes)", key.len()),
            })?;
            if time < floor {
                continue; // expired while the transaction was open
            }
            if value.is_some() {
                self.segment_for_write(time)?;
            } else if !self.live.contains(&self.segment_of(time)) {
                continue; // a deletion in a segment that never held data
            }
            writes.push((self.segment_of(time), key, value));
        }
        let mut batch = WriteBatch::default();
        for (id, key, value) in &writes {
            let cf = self.handle(*id)?;
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
        batch.put(OBSERVED_KEY, observed.to_be_bytes());
        if let Some(offset) = offset {
            batch.put(OFFSET_KEY, offset.to_be_bytes());
        }
        self.db()?
            .write_opt(batch, &write_options())
            .map_err(|e| self.err(e))?;
        // A commit that returned survives a killed process: the log leaves the process now.
        self.db()?.flush_wal(false).map_err(|e| self.err(e))?;
        if offset.is_some() {
            self.offset = offset;
        }
        self.drop_expired(observed)
    }

    fn close(&mut self) -> Result<()> {
        if self.db.is_some() {
            drop_uncommitted(&self.name, [&mut self.pending, &mut self.sealed]);
            if !self.transactional {
                self.persist_observed()?;
            }
            self.db()?.flush_wal(true).map_err(|e| self.err(e))?;
            self.db = None;
            self._reservation = None;
        }
        Ok(())
    }

    fn close_dirty(&mut self) {
        self.pending.clear();
        self.sealed.clear();
        self.db = None;
        self._reservation = None;
    }
}

/// The default segment interval for a retention period: half of it, at least one minute.
pub fn default_segment_interval(retention_ms: i64) -> i64 {
    (retention_ms / 2).max(60_000)
}

/// The parts window and session stores share, generated for each: `Debug`, the constructors
/// and `StateStore`, all on their [`Segments`]. `$kind` names the kind in errors and `$time_of`
/// extracts the segmenting time from an encoded key.
macro_rules! segmented_store {
    ($store:ident, $kind:literal, $open_doc:literal, $time_of:expr) => {
        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("name", &self.segments.name)
                    .field("path", &self.segments.path)
                    .field("segments", &self.segments.live)
                    .finish()
            }
        }

        impl $store {
            #[doc = $open_doc]
            pub fn open(
                name: impl Into<String>,
                path: impl Into<PathBuf>,
                memory: &RocksDbMemory,
                retention_ms: i64,
                segment_interval_ms: i64,
            ) -> Result<Self> {
                Self::open_with(
                    name,
                    path,
                    memory,
                    (retention_ms, segment_interval_ms),
                    false,
                )
            }

            /// Opens the store in transactional mode: writes (and segment drops) wait until
            /// [`StateStore::commit`]; see [`crate::rocks`].
            pub fn open_transactional(
                name: impl Into<String>,
                path: impl Into<PathBuf>,
                memory: &RocksDbMemory,
                retention_ms: i64,
                segment_interval_ms: i64,
            ) -> Result<Self> {
                Self::open_with(
                    name,
                    path,
                    memory,
                    (retention_ms, segment_interval_ms),
                    true,
                )
            }

            /// Opens it with `times` = (retention, segment interval), transactional or not.
            pub(crate) fn open_with(
                name: impl Into<String>,
                path: impl Into<PathBuf>,
                memory: &RocksDbMemory,
                times: (i64, i64),
                transactional: bool,
            ) -> Result<Self> {
                Ok($store {
                    segments: Segments::open(
                        name.into(),
                        path.into(),
                        memory,
                        times,
                        $time_of,
                        transactional,
                    )?,
                })
            }
        }

        impl StateStore for $store {
            fn name(&self) -> &str {
                &self.segments.name
            }
            fn persistent(&self) -> bool {
                true
            }
            fn flush(&mut self) -> Result<()> {
                self.segments.flush()
            }
            fn close(&mut self) -> Result<()> {
                self.segments.close()
            }
            fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
                self.segments.restore(records, $kind)
            }
            fn restore_complete(&mut self) -> Result<()> {
                self.segments.start_flush()
            }
            fn prepare_commit(&mut self) -> Result<()> {
                self.segments.prepare_commit();
                Ok(())
            }
            fn commit(&mut self, changelog_offset: Option<i64>) -> Result<()> {
                self.segments.commit(changelog_offset)
            }
            fn committed_offset(&self) -> Result<Option<i64>> {
                Ok(self.segments.offset)
            }
            fn close_dirty(&mut self) -> Result<()> {
                self.segments.close_dirty();
                Ok(())
            }
            fn uncommitted_bytes(&self) -> usize {
                self.segments.pending.bytes() + self.segments.sealed.bytes()
            }
        }
    };
}

/// A persistent window store.
pub struct RocksDbWindowStore {
    segments: Segments,
}

segmented_store!(
    RocksDbWindowStore,
    "window",
    "Opens (creating if needed) a window store keeping windows `retention_ms` after their start, in segments of `segment_interval_ms`.",
    |k| keys::decode_window_key(k).map(|w| w.start)
);

impl RocksDbWindowStore {
    /// The number of live segments (column families holding data).
    pub fn segment_count(&self) -> usize {
        self.segments.live.len()
    }
}

impl WindowBytesStore for RocksDbWindowStore {
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()> {
        self.segments
            .write(window_start, &keys::window_key(key, window_start), value)
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        let timed: Vec<TimedWrite<'_>> = entries
            .iter()
            .filter_map(|(window_key, value)| {
                let start = keys::decode_window_key(window_key)?.start;
                Some((start, window_key.as_slice(), value.as_deref()))
            })
            .collect();
        self.segments.write_all(&timed)
    }
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.segments
            .get(window_start, &keys::window_key(key, window_start))
    }
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>> {
        let from = time_from.max(self.segments.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let lower = keys::window_key(key, from);
        let mut upper = keys::window_key(key, time_to);
        upper.push(0);
        let out: Vec<_> = self
            .segments
            .scan_merged((from, time_to), &lower, Some(upper))?
            .into_iter()
            .filter_map(|(k, v)| keys::decode_window_key(&k).map(|wk| Ok((wk.start, v))))
            .collect();
        Ok(Box::new(out.into_iter()))
    }
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>> {
        let from = time_from.max(self.segments.floor());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut out: Vec<(WindowedKey, Vec<u8>)> = self
            .segments
            .scan_merged((from, time_to), &[], None)?
            .into_iter()
            .filter_map(|(k, v)| keys::decode_window_key(&k).map(|wk| (wk, v)))
            .filter(|(wk, _)| (from..=time_to).contains(&wk.start))
            .collect();
        out.sort_by(|(a, _), (b, _)| (a.start, &a.key).cmp(&(b.start, &b.key)));
        Ok(Box::new(out.into_iter().map(Ok)))
    }
    fn retention_ms(&self) -> i64 {
        self.segments.retention
    }
    fn observed_stream_time(&self) -> i64 {
        self.segments.observed
    }
}

/// A persistent session store, segmented by session end.
pub struct RocksDbSessionStore {
    segments: Segments,
}

segmented_store!(
    RocksDbSessionStore,
    "session",
    "Opens (creating if needed) a session store keeping sessions `retention_ms` after they end, in segments of `segment_interval_ms`.",
    |k| keys::decode_session_key(k).map(|s| s.window.end)
);

impl SessionBytesStore for RocksDbSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>> {
        let from_end = earliest_session_end.max(self.segments.floor());
        let mut lower = keys::entries_of_key(key);
        lower.extend_from_slice(&keys::encode_time(from_end));
        let upper = crate::store::prefix_upper_bound(&keys::entries_of_key(key));
        let out: Vec<_> = self
            .segments
            .scan_merged((from_end, i64::MAX), &lower, upper)?
            .into_iter()
            .filter_map(|(k, v)| keys::decode_session_key(&k).map(|sk| (sk, v)))
            .filter(|(sk, _)| sk.key == key && sk.window.start <= latest_session_start)
            .map(Ok)
            .collect();
        Ok(Box::new(out.into_iter()))
    }
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>> {
        self.segments
            .get(window.end, &keys::session_key(key, window))
    }
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()> {
        self.segments
            .write(window.end, &keys::session_key(key, window), Some(value))
    }
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()> {
        self.segments
            .write(window.end, &keys::session_key(key, window), None)
    }
    fn retention_ms(&self) -> i64 {
        self.segments.retention
    }
    fn observed_stream_time(&self) -> i64 {
        self.segments.observed
    }
}
