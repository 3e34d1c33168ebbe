//! The record cache behind the caching layer: a sorted map of recent writes with LRU eviction
//! under a byte budget that all caches of one stream thread share.
//!
//! Entries are *dirty* from their write until a flush writes them down, then *clean* (kept for
//! reads until evicted). A clean entry's value is what the store below holds; when it is written
//! again, that value is kept with it (`below`), so that a flush which must report old values
//! (KTable changes) need not read the store for it. Sizes are estimates: key and value bytes plus
//! a fixed per-entry overhead for the map nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes charged per entry beyond its key and value (map nodes, LRU index, bookkeeping).
const ENTRY_OVERHEAD: usize = 96;

/// A byte budget shared by several record caches (Kafka Streams' `statestore.cache.max.bytes`
/// divided among stream threads). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CacheBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    max_bytes: usize,
    used_bytes: AtomicUsize,
}

impl CacheBudget {
    /// A budget of `max_bytes`. Zero disables caching in effect: every write is written down at once.
    pub fn new(max_bytes: usize) -> Self {
        CacheBudget {
            inner: Arc::new(BudgetInner {
                max_bytes,
                used_bytes: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget.
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// Bytes held by the caches sharing this budget.
    pub fn used_bytes(&self) -> usize {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used_bytes() > self.inner.max_bytes
    }

    fn charge(&self, bytes: usize) {
        self.inner.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.inner.used_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One cached entry. `value: None` is a pending deletion.
#[derive(Debug, Clone)]
pub(crate) struct CacheEntry {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) dirty: bool,
    /// What the store below holds for the key, when known: kept when a clean entry is written.
    below: Option<Option<Vec<u8>>>,
    seq: u64,
}

fn len(value: &Option<Vec<u8>>) -> usize {
    value.as_ref().map_or(0, Vec::len)
}

fn size_of(key: &[u8], entry: &CacheEntry) -> usize {
    key.len() + len(&entry.value) + entry.below.as_ref().map_or(0, len) + ENTRY_OVERHEAD
}

/// A dirty entry taken out of the cache to be written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirtyEntry {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
    /// What the store below holds for the key, if the cache knows it (`Some(None)`: nothing).
    pub(crate) below: Option<Option<Vec<u8>>>,
}

/// The cache of one store.
#[derive(Debug)]
pub(crate) struct RecordCache {
    entries: BTreeMap<Vec<u8>, CacheEntry>,
    /// Recency order: sequence number of the last write -> key. Oldest first.
    lru: BTreeMap<u64, Vec<u8>>,
    /// Sequence numbers (in `lru`) of the dirty entries, so a flush visits only those.
    dirty: std::collections::BTreeSet<u64>,
    next_seq: u64,
    bytes: usize,
    budget: CacheBudget,
}

impl RecordCache {
    pub(crate) fn new(budget: CacheBudget) -> Self {
        RecordCache {
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            dirty: std::collections::BTreeSet::new(),
            next_seq: 0,
            bytes: 0,
            budget,
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Records a write (dirty).
    pub(crate) fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (added, replaced, lru_key) = match self.entries.get_mut(key) {
            Some(entry) => {
                // An update (the common case for aggregates) moves the key's recency entry,
                // reusing its copy of the key rather than allocating another.
                let lru_key = self.lru.remove(&entry.seq);
                if entry.dirty {
                    self.dirty.remove(&entry.seq);
                }
                let old_size = size_of(key, entry);
                let previous = std::mem::replace(&mut entry.value, value);
                if !entry.dirty {
                    // A clean value is the one below: keep it for the flush's old value.
                    entry.below = Some(previous);
                }
                entry.dirty = true;
                entry.seq = seq;
                (size_of(key, entry), old_size, lru_key)
            }
            None => {
                let entry = CacheEntry {
                    value,
                    dirty: true,
                    below: None,
                    seq,
                };
                let size = size_of(key, &entry);
                self.entries.insert(key.to_vec(), entry);
                (size, 0, None)
            }
        };
        self.charge(added);
        self.release(replaced);
        self.lru
            .insert(seq, lru_key.unwrap_or_else(|| key.to_vec()));
        self.dirty.insert(seq);
    }

    fn charge(&mut self, bytes: usize) {
        self.bytes += bytes;
        self.budget.charge(bytes);
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.budget.release(bytes);
    }

    /// Whether the shared budget is exceeded and this cache has something to give back.
    pub(crate) fn needs_eviction(&self) -> bool {
        !self.entries.is_empty() && self.budget.over()
    }

    /// Evicts least recently written entries until the shared budget holds or this cache is
    /// empty; returns the dirty ones, oldest first, to be written down.
    pub(crate) fn evict(&mut self) -> Vec<DirtyEntry> {
        let mut dirty = Vec::new();
        while self.needs_eviction() {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                let size = size_of(&key, &entry);
                self.release(size);
                if entry.dirty {
                    self.dirty.remove(&entry.seq);
                    dirty.push(DirtyEntry {
                        key,
                        value: entry.value,
                        below: entry.below,
                    });
                }
            }
        }
        dirty
    }

    /// Takes every dirty entry, oldest write first, and marks it clean. Clean deletions are
    /// dropped (nothing to read back).
    pub(crate) fn take_dirty(&mut self) -> Vec<DirtyEntry> {
        let mut dirty = Vec::with_capacity(self.dirty.len());
        let mut dropped = Vec::new();
        for seq in std::mem::take(&mut self.dirty) {
            let Some(key) = self.lru.get(&seq) else {
                continue;
            };
            if let Some(entry) = self.entries.get_mut(key) {
                entry.dirty = false;
                let below = entry.below.take();
                let freed = below.as_ref().map_or(0, len);
                if entry.value.is_none() {
                    dropped.push((entry.seq, key.clone()));
                }
                dirty.push(DirtyEntry {
                    key: key.clone(),
                    value: entry.value.clone(),
                    below,
                });
                self.bytes -= freed;
                self.budget.release(freed);
            }
        }
        for (seq, key) in dropped {
            self.lru.remove(&seq);
            if let Some(entry) = self.entries.remove(&key) {
                let size = size_of(&key, &entry);
                self.release(size);
            }
        }
        dirty
    }

    /// Entries with keys in `[from, to]` (inclusive, optional bounds), in key order.
    pub(crate) fn range<'a>(
        &'a self,
        from: Option<&'a [u8]>,
        to: Option<&'a [u8]>,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a CacheEntry)> + 'a> {
        match crate::store::inclusive_range(from, to) {
            Some(bounds) => Box::new(self.entries.range::<[u8], _>(bounds)),
            None => Box::new(std::iter::empty()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops everything (dirty entries too) and gives the bytes back to the budget.
    pub(crate) fn clear(&mut self) {
        let bytes = self.bytes;
        self.release(bytes);
        self.entries.clear();
        self.lru.clear();
        self.dirty.clear();
    }
}

impl Drop for RecordCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_writes_first_and_returns_dirty_ones() {
        let budget = CacheBudget::new(3 * (ENTRY_OVERHEAD + 2));
        let mut cache = RecordCache::new(budget.clone());
        cache.put(b"a", Some(b"1".to_vec()));
        cache.put(b"b", Some(b"2".to_vec()));
        cache.put(b"c", Some(b"3".to_vec()));
        assert!(!cache.needs_eviction());
        cache.put(b"a", Some(b"4".to_vec())); // a is now the most recent
        cache.put(b"d", Some(b"5".to_vec()));
        assert!(cache.needs_eviction());
        let evicted = cache.evict();
        assert_eq!(
            evicted,
            vec![DirtyEntry {
                key: b"b".to_vec(),
                value: Some(b"2".to_vec()),
                below: None,
            }]
        );
        assert!(budget.used_bytes() <= budget.max_bytes());
    }

    #[test]
    fn a_flush_takes_the_dirty_entries_in_write_order_and_only_them() {
        let mut cache = RecordCache::new(CacheBudget::new(1 << 20));
        for k in [b"a", b"b", b"c"] {
            cache.put(k, Some(b"1".to_vec()));
        }
        assert_eq!(cache.take_dirty().len(), 3);
        cache.put(b"c", Some(b"2".to_vec()));
        cache.put(b"a", Some(b"2".to_vec()));
        cache.put(b"c", Some(b"3".to_vec()));
        assert_eq!(
            cache.take_dirty(),
            vec![
                DirtyEntry {
                    key: b"a".to_vec(),
                    value: Some(b"2".to_vec()),
                    below: Some(Some(b"1".to_vec())),
                },
                DirtyEntry {
                    key: b"c".to_vec(),
                    value: Some(b"3".to_vec()),
                    below: Some(Some(b"1".to_vec())),
                },
            ],
            "b is clean; c's last write is the newest; the flushed values are known below"
        );
        assert!(cache.take_dirty().is_empty());
        assert_eq!(cache.len(), 3, "clean entries stay for reads");
    }

    #[test]
    fn flushed_entries_are_clean_and_deletions_leave() {
        let budget = CacheBudget::new(1 << 20);
        let mut cache = RecordCache::new(budget.clone());
        cache.put(b"a", Some(b"1".to_vec()));
        cache.put(b"b", None);
        assert_eq!(cache.take_dirty().len(), 2);
        assert!(cache.take_dirty().is_empty());
        assert!(cache.get(b"a").is_some_and(|e| !e.dirty));
        assert!(cache.get(b"b").is_none());
        drop(cache);
        assert_eq!(
            budget.used_bytes(),
            0,
            "a dropped cache gives its bytes back"
        );
    }
}
