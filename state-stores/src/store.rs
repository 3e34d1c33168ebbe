//! The byte-level store traits every implementation and layer speaks.
//!
//! There are three kinds of store, each a trait over raw bytes:
//!
//! - [`KeyValueBytesStore`]: a sorted map from keys to values;
//! - [`WindowBytesStore`]: values per key and window start time, kept for a retention period;
//! - [`SessionBytesStore`]: values per key and session window (start and end), kept for a retention
//!   period after the session ends.
//!
//! All three extend [`StateStore`], which carries what the runtime needs of any store: its name,
//! flushing, closing, restoring from changelog records, and the entries a caching layer evicted.
//! Implementations (RocksDB, in memory) and layers (changelogging, caching, metering) implement the
//! kind traits; [`crate::typed`] puts serdes on top.
//!
//! # Time and retention
//!
//! Window and session stores track the largest time they were written with (the *observed stream
//! time*). Data older than `observed stream time - retention` is expired: reads no longer return it,
//! writes to it are dropped, and implementations discard it in whole segments rather than record by
//! record.

use crate::error::Result;

/// One changelog record to restore: the key and value bytes the logging layer wrote (`None` is a
/// tombstone), and the record's offset in the changelog partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Offset in the changelog partition.
    pub offset: i64,
    /// The changelog key (for window and session stores, the key with its window encoded in).
    pub key: Vec<u8>,
    /// The value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

/// An entry that a caching layer wrote down to the store below it (on flush or eviction), with
/// the value the store held before. KTables forward these as their changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEmission {
    /// The store key (for window and session stores, the encoded windowed key).
    pub key: Vec<u8>,
    /// The value now stored, `None` if the entry was deleted.
    pub new_value: Option<Vec<u8>>,
    /// The value stored before, when the cache was asked to report old values.
    pub old_value: Option<Vec<u8>>,
}

/// What the runtime needs of every store, whatever its kind.
pub trait StateStore: Send {
    /// The store's name, unique within a topology.
    fn name(&self) -> &str;

    /// Whether the store keeps its data on disk across restarts.
    fn persistent(&self) -> bool;

    /// Writes buffered data down: cache entries to the store below, memtables to disk.
    fn flush(&mut self) -> Result<()>;

    /// Flushes and releases resources. Using the store afterwards is an error.
    fn close(&mut self) -> Result<()>;

    /// Applies changelog records through the bulk path (no changelogging, no caching).
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()>;

    /// Called once restoration has applied every record, so bulk-load settings can be undone and
    /// the restored data made durable.
    fn restore_complete(&mut self) -> Result<()> {
        self.flush()
    }

    /// Takes the entries a caching layer has written down since the last call. Stores without a
    /// cache return nothing.
    fn drain_emissions(&mut self) -> Vec<CacheEmission> {
        Vec::new()
    }

    /// Seals the writes made so far as the ones the next [`commit`](Self::commit) applies; later
    /// writes wait for a later commit. Call it after [`flush`](Self::flush), when the Kafka
    /// commit covering those writes starts; processing can go on while it is in flight. Only
    /// transactional stores hold writes back; for the others this does nothing.
    fn prepare_commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes the store's content durable as of `changelog_offset`, the next changelog offset to
    /// restore from (`None` when the store has no changelog), and records that offset with it;
    /// see [`committed_offset`](Self::committed_offset). A transactional store applies the writes
    /// sealed by [`prepare_commit`](Self::prepare_commit) here, atomically with the offset. Call
    /// it only once the writes it covers are committed (for exactly-once: after the Kafka
    /// transaction committed). A cache above is not written down by this call.
    ///
    /// Stores that keep no offset (in memory) only flush.
    fn commit(&mut self, changelog_offset: Option<i64>) -> Result<()> {
        let _ = changelog_offset;
        self.flush()
    }

    /// The next changelog offset to restore from, as the last [`commit`](Self::commit) recorded it
    /// in the store's own files; `None` if the store keeps no offset or never committed one. The
    /// store's content never runs ahead of what the changelog holds up to this offset under
    /// exactly-once; under at-least-once it may be ahead, and restoring from here replays records
    /// it already has, which leaves the same content.
    fn committed_offset(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Closes after a failure: buffered writes (cache entries, the open transaction's writes) are
    /// dropped, not written down and not logged. What was committed stays.
    fn close_dirty(&mut self) -> Result<()> {
        self.close()
    }

    /// Bytes of writes held for the open transaction (0 for stores that are not transactional).
    fn uncommitted_bytes(&self) -> usize {
        0
    }
}

/// The commit methods of [`StateStore`] for a layer that hands them to the store below it
/// (`self.inner`): layers hold no writes back, the store at the bottom does.
macro_rules! forward_commit {
    () => {
        fn prepare_commit(&mut self) -> $crate::error::Result<()> {
            self.inner.prepare_commit()
        }
        fn commit(&mut self, changelog_offset: Option<i64>) -> $crate::error::Result<()> {
            self.inner.commit(changelog_offset)
        }
        fn committed_offset(&self) -> $crate::error::Result<Option<i64>> {
            self.inner.committed_offset()
        }
        fn uncommitted_bytes(&self) -> usize {
            self.inner.uncommitted_bytes()
        }
    };
}
pub(crate) use forward_commit;

/// Iterator over key-value pairs in ascending key order.
pub type KeyValueIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// What [`KeyValueBytesStore::update`] applies to a key's current value: its new value, or
/// `None` to delete it.
pub type UpdateFn<'a> = dyn FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>> + 'a;

/// A sorted map from byte keys to byte values.
pub trait KeyValueBytesStore: StateStore {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Sets `key` to `value` unless it has a value; returns the value it had.
    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let existing = self.get(key)?;
        if existing.is_none() {
            self.put(key, value)?;
        }
        Ok(existing)
    }

    /// Reads `key`'s value and writes what `f` makes of it (`Some` puts, `None` deletes), as one
    /// operation: a caching layer finds the key once and keeps `f`'s bytes without copying
    /// them. `f` runs while the store is held and must not reach it.
    fn update(&mut self, key: &[u8], f: &mut UpdateFn<'_>) -> Result<()> {
        let old = self.get(key)?;
        match f(old.as_deref())? {
            Some(new) => self.put(key, &new),
            None => self.delete(key).map(drop),
        }
    }

    /// Applies several writes (`None` deletes) as one batch.
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        for (key, value) in entries {
            match value {
                Some(value) => self.put(key, value)?,
                None => {
                    self.delete(key)?;
                }
            }
        }
        Ok(())
    }

    /// Removes `key`; returns the value it had.
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Entries with `from <= key <= to` (either bound may be absent), in key order.
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>>;

    /// Entries whose key starts with `prefix`, in key order.
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIter<'_>> {
        match prefix_upper_bound(prefix) {
            Some(upper) => {
                let iter = self.range(Some(prefix), Some(&upper))?;
                // `range` is inclusive; the upper bound itself does not have the prefix.
                Ok(Box::new(iter.filter(move |entry| match entry {
                    Ok((key, _)) => key.as_slice() != upper.as_slice(),
                    Err(_) => true,
                })))
            }
            None => self.range(Some(prefix), None),
        }
    }

    /// Every entry, in key order.
    fn all(&self) -> Result<KeyValueIter<'_>> {
        self.range(None, None)
    }

    /// An estimate of the number of entries (exact for in-memory stores).
    fn approximate_num_entries(&self) -> Result<u64>;
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when there is
/// none (the prefix is empty or all `0xff`).
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// A key and the start of one of its windows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowedKey {
    /// The record key.
    pub key: Vec<u8>,
    /// The window's start time (epoch milliseconds).
    pub start: i64,
}

/// Iterator over `(window start, value)` of one key, in ascending start order.
pub type WindowIter<'a> = Box<dyn Iterator<Item = Result<(i64, Vec<u8>)>> + 'a>;

/// Iterator over `(windowed key, value)`, ordered by window start, then key.
pub type WindowedKeyValueIter<'a> = Box<dyn Iterator<Item = Result<(WindowedKey, Vec<u8>)>> + 'a>;

/// Values per key and window start, kept for a retention period.
pub trait WindowBytesStore: StateStore {
    /// Stores `value` for `key` in the window starting at `window_start`; `None` deletes it.
    /// Writes to windows that have expired are dropped.
    fn put(&mut self, key: &[u8], window_start: i64, value: Option<&[u8]>) -> Result<()>;

    /// Writes `entries`, each an encoded window key (`keys::window_key`) with its value or
    /// `None` to delete, as [`put`](Self::put) one after the other would; a store may write
    /// them as one batch. (A key that does not decode as a window key is skipped.)
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        for (window_key, value) in entries {
            if let Some(wk) = crate::keys::decode_window_key(window_key) {
                self.put(&wk.key, wk.start, value.as_deref())?;
            }
        }
        Ok(())
    }

    /// The value of `key` in the window starting at `window_start`.
    fn fetch(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>>;

    /// The windows of `key` that start in `[time_from, time_to]`.
    fn fetch_range(&self, key: &[u8], time_from: i64, time_to: i64) -> Result<WindowIter<'_>>;

    /// Every key's windows that start in `[time_from, time_to]`.
    fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<WindowedKeyValueIter<'_>>;

    /// Every unexpired window.
    fn all(&self) -> Result<WindowedKeyValueIter<'_>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// How long windows are kept, in milliseconds, measured from their start.
    fn retention_ms(&self) -> i64;

    /// The largest window start written so far (`i64::MIN` before any write).
    fn observed_stream_time(&self) -> i64;
}

/// A session window: a key's activity from `start` to `end` (both inclusive, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionWindow {
    /// First event time in the session.
    pub start: i64,
    /// Last event time in the session.
    pub end: i64,
}

/// A key and one of its sessions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    /// The record key.
    pub key: Vec<u8>,
    /// The session's window.
    pub window: SessionWindow,
}

/// Iterator over sessions and their values.
pub type SessionIter<'a> = Box<dyn Iterator<Item = Result<(SessionKey, Vec<u8>)>> + 'a>;

/// Values per key and session window, kept for a retention period after the session ends.
pub trait SessionBytesStore: StateStore {
    /// The sessions of `key` that end at or after `earliest_session_end` and start at or before
    /// `latest_session_start`: the sessions a new event could merge with. Ordered by end, then start.
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>>;

    /// The value of one session.
    fn fetch_session(&self, key: &[u8], window: SessionWindow) -> Result<Option<Vec<u8>>>;

    /// Stores `value` for the session. Writes to sessions that have expired are dropped.
    fn put(&mut self, key: &[u8], window: SessionWindow, value: &[u8]) -> Result<()>;

    /// Removes the session.
    fn remove(&mut self, key: &[u8], window: SessionWindow) -> Result<()>;

    /// Every unexpired session of `key`.
    fn fetch(&self, key: &[u8]) -> Result<SessionIter<'_>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// How long sessions are kept after they end, in milliseconds.
    fn retention_ms(&self) -> i64;

    /// The largest session end written so far (`i64::MIN` before any write).
    fn observed_stream_time(&self) -> i64;
}

/// Inclusive, optionally open byte bounds in the form `BTreeMap::range` takes.
pub(crate) type ByteRange<'a> = (std::ops::Bound<&'a [u8]>, std::ops::Bound<&'a [u8]>);

/// `[from, to]` (either bound may be absent) as `BTreeMap` range bounds; `None` when the range is
/// empty (`from > to`), which `BTreeMap::range` would reject with a panic.
pub(crate) fn inclusive_range<'a>(
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
) -> Option<ByteRange<'a>> {
    use std::ops::Bound;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return None;
        }
    }
    Some((
        from.map_or(Bound::Unbounded, Bound::Included),
        to.map_or(Bound::Unbounded, Bound::Included),
    ))
}

/// The first time that is still retained when `observed` is the stream time: `observed -
/// retention + 1`, saturating. Everything earlier is expired.
pub fn retention_floor(observed: i64, retention_ms: i64) -> i64 {
    if observed == i64::MIN {
        i64::MIN
    } else {
        observed.saturating_sub(retention_ms).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
        assert_eq!(prefix_upper_bound(b""), None);
    }

    #[test]
    fn retention_floor_saturates() {
        assert_eq!(retention_floor(100, 10), 91);
        assert_eq!(retention_floor(i64::MIN, 10), i64::MIN);
        assert_eq!(retention_floor(i64::MIN + 5, 10), i64::MIN + 1);
        assert_eq!(retention_floor(5, i64::MAX), 5 - i64::MAX + 1);
    }
}
