//! The record cache behind the caching layer: recent writes with LRU eviction under a byte
//! budget that all caches of one stream thread share.
//!
//! Entries are *dirty* from their write until a flush writes them down, then *clean* (kept for
//! reads until evicted). A clean entry's value is what the store below holds; when it is written
//! again, that value is kept with it (`below`), so that a flush which must report old values
//! (KTable changes) need not read the store for it; a cache whose flushes report no old values
//! drops it instead. Sizes are estimates: key and value bytes plus
//! a fixed per-entry overhead for the index and list nodes.
//!
//! Layout, for the per-record path (an aggregate reads and writes one key per record): entries
//! live in a slab, found through a hash index; two intrusive lists thread them, one in order of
//! last write (eviction takes its head) and one of the dirty entries in order of last write (a
//! flush walks only those). An update of a cached key touches the hash index and relinks two
//! list nodes, with no allocation and no key comparison beyond the hash probe. Range queries use
//! an ordered set of the keys, which changes only when a key enters or leaves the cache.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes charged per entry beyond its key and value (slab slot, index and ordered-set nodes).
const ENTRY_OVERHEAD: usize = 128;

/// An eviction frees 1/n of the budget below it, or of the evicting cache's own bytes if that is
/// less: the entries it writes down then go to the store as one batch, not one write per cached
/// put, and a small cache sharing the budget with a large one is not emptied for it.
const EVICTION_HEADROOM: usize = 64;

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

    /// Whether an eviction that started must go on: until the budget holds with `headroom`
    /// bytes to spare.
    fn above(&self, headroom: usize) -> bool {
        self.used_bytes() > self.inner.max_bytes.saturating_sub(headroom)
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

/// No slot: the end of a list.
const NIL: usize = usize::MAX;

/// Links of one intrusive doubly linked list.
#[derive(Debug, Clone, Copy)]
struct Links {
    prev: usize,
    next: usize,
}

const UNLINKED: Links = Links {
    prev: NIL,
    next: NIL,
};

#[derive(Debug)]
struct Slot {
    key: Arc<[u8]>,
    entry: CacheEntry,
    /// In the list of all entries, by last write.
    lru: Links,
    /// In the list of dirty entries, by last write (unlinked while clean).
    dirty: Links,
}

/// Head and tail of an intrusive list.
#[derive(Debug, Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// Which links of a slot a list uses.
#[derive(Clone, Copy)]
enum Which {
    Lru,
    Dirty,
}

/// The cache of one store.
#[derive(Debug)]
pub(crate) struct RecordCache {
    index: HashMap<Arc<[u8]>, usize, foldhash::fast::RandomState>,
    slots: Vec<Slot>,
    /// Slots whose entries left, for reuse.
    free: Vec<usize>,
    /// The keys in order, for range queries.
    ordered: BTreeSet<Arc<[u8]>>,
    /// The key a vacated slot holds until reused (shared: vacating allocates nothing).
    no_key: Arc<[u8]>,
    lru: List,
    dirty: List,
    dirty_count: usize,
    bytes: usize,
    budget: CacheBudget,
    /// Whether an overwritten clean value is kept as `below` (only a cache whose flushes report
    /// old values needs it; the others free it at once and fit more entries in the budget).
    keep_below: bool,
}

impl RecordCache {
    /// A cache charging `budget`, keeping the store's values below overwritten entries when
    /// `keep_below` (for flushes that report old values).
    pub(crate) fn with_below(budget: CacheBudget, keep_below: bool) -> Self {
        let mut cache = Self::new(budget);
        cache.keep_below = keep_below;
        cache
    }

    pub(crate) fn new(budget: CacheBudget) -> Self {
        RecordCache {
            keep_below: true,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            ordered: BTreeSet::new(),
            no_key: Arc::from(&[][..]),
            lru: EMPTY,
            dirty: EMPTY,
            dirty_count: 0,
            bytes: 0,
            budget,
        }
    }

    fn links(&mut self, slot: usize, which: Which) -> &mut Links {
        match which {
            Which::Lru => &mut self.slots[slot].lru,
            Which::Dirty => &mut self.slots[slot].dirty,
        }
    }

    fn list(&mut self, which: Which) -> &mut List {
        match which {
            Which::Lru => &mut self.lru,
            Which::Dirty => &mut self.dirty,
        }
    }

    fn unlink(&mut self, slot: usize, which: Which) {
        let Links { prev, next } = *self.links(slot, which);
        if prev == NIL {
            self.list(which).head = next;
        } else {
            self.links(prev, which).next = next;
        }
        if next == NIL {
            self.list(which).tail = prev;
        } else {
            self.links(next, which).prev = prev;
        }
        *self.links(slot, which) = UNLINKED;
    }

    fn push_back(&mut self, slot: usize, which: Which) {
        let tail = self.list(which).tail;
        *self.links(slot, which) = Links {
            prev: tail,
            next: NIL,
        };
        if tail == NIL {
            self.list(which).head = slot;
        } else {
            self.links(tail, which).next = slot;
        }
        self.list(which).tail = slot;
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&CacheEntry> {
        self.index.get(key).map(|&slot| &self.slots[slot].entry)
    }

    /// Records a write (dirty).
    pub(crate) fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match self.slot_of(key) {
            Some(slot) => self.overwrite(slot, key, value),
            None => self.insert(key, value),
        }
    }

    /// Where `key`'s entry is, if cached: for a read and a write with one lookup
    /// ([`Self::entry_at`], [`Self::overwrite`]).
    pub(crate) fn slot_of(&self, key: &[u8]) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The entry in `slot` (from [`Self::slot_of`]).
    pub(crate) fn entry_at(&self, slot: usize) -> &CacheEntry {
        &self.slots[slot].entry
    }

    /// Writes `value` over the entry of `key`, which is in `slot` (from [`Self::slot_of`],
    /// with no change to the cache since).
    pub(crate) fn overwrite(&mut self, slot: usize, key: &[u8], value: Option<Vec<u8>>) {
        // An update (the common case for aggregates): no allocation, two relinks.
        let entry = &mut self.slots[slot].entry;
        let old_size = size_of(key, entry);
        let was_dirty = entry.dirty;
        let previous = std::mem::replace(&mut entry.value, value);
        if !was_dirty && self.keep_below {
            // A clean value is the one below: keep it for the flush's old value.
            entry.below = Some(previous);
        }
        entry.dirty = true;
        let new_size = size_of(key, entry);
        self.charge(new_size);
        self.release(old_size);
        self.unlink(slot, Which::Lru);
        self.push_back(slot, Which::Lru);
        if was_dirty {
            self.unlink(slot, Which::Dirty);
        } else {
            self.dirty_count += 1;
        }
        self.push_back(slot, Which::Dirty);
    }

    /// Adds an entry for `key`, which is not cached.
    pub(crate) fn insert(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let key: Arc<[u8]> = Arc::from(key);
        let entry = CacheEntry {
            value,
            dirty: true,
            below: None,
        };
        let size = size_of(&key, &entry);
        let filled = Slot {
            key: key.clone(),
            entry,
            lru: UNLINKED,
            dirty: UNLINKED,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = filled;
                slot
            }
            None => {
                self.slots.push(filled);
                self.slots.len() - 1
            }
        };
        self.index.insert(key.clone(), slot);
        self.ordered.insert(key);
        self.charge(size);
        self.push_back(slot, Which::Lru);
        self.push_back(slot, Which::Dirty);
        self.dirty_count += 1;
    }

    /// Takes the entry of `slot` out of the cache (and of its lists); returns its key and entry.
    fn remove_slot(&mut self, slot: usize) -> (Arc<[u8]>, CacheEntry) {
        self.unlink(slot, Which::Lru);
        if self.slots[slot].entry.dirty {
            self.unlink(slot, Which::Dirty);
            self.dirty_count -= 1;
        }
        let vacated = Slot {
            key: self.no_key.clone(),
            entry: CacheEntry {
                value: None,
                dirty: false,
                below: None,
            },
            lru: UNLINKED,
            dirty: UNLINKED,
        };
        let Slot { key, entry, .. } = std::mem::replace(&mut self.slots[slot], vacated);
        self.index.remove(&key);
        self.ordered.remove(&key);
        self.free.push(slot);
        let size = size_of(&key, &entry);
        self.release(size);
        (key, entry)
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
        !self.index.is_empty() && self.budget.over()
    }

    /// Evicts least recently written entries until the shared budget holds with a margin
    /// (see [`EVICTION_HEADROOM`]) or this cache is empty; returns the dirty ones, oldest
    /// first, to be written down.
    pub(crate) fn evict(&mut self) -> Vec<DirtyEntry> {
        let headroom = self.budget.max_bytes().min(self.bytes) / EVICTION_HEADROOM;
        let mut dirty = Vec::new();
        while self.budget.above(headroom) && self.lru.head != NIL {
            let (key, entry) = self.remove_slot(self.lru.head);
            if entry.dirty {
                dirty.push(DirtyEntry {
                    key: key.to_vec(),
                    value: entry.value,
                    below: entry.below,
                });
            }
        }
        dirty
    }

    /// Takes every dirty entry, oldest write first, and marks it clean. Clean deletions are
    /// dropped (nothing to read back).
    pub(crate) fn take_dirty(&mut self) -> Vec<DirtyEntry> {
        let mut dirty = Vec::with_capacity(self.dirty_count);
        let mut slot = self.dirty.head;
        while slot != NIL {
            let next = self.slots[slot].dirty.next;
            let s = &mut self.slots[slot];
            s.dirty = UNLINKED;
            s.entry.dirty = false;
            let below = s.entry.below.take();
            let freed = below.as_ref().map_or(0, len);
            let deleted = s.entry.value.is_none();
            dirty.push(DirtyEntry {
                key: s.key.to_vec(),
                value: s.entry.value.clone(),
                below,
            });
            self.release(freed);
            if deleted {
                self.remove_slot(slot);
            }
            slot = next;
        }
        self.dirty = EMPTY;
        self.dirty_count = 0;
        dirty
    }

    /// Entries with keys in `[from, to]` (inclusive, optional bounds), in key order.
    pub(crate) fn range<'a>(
        &'a self,
        from: Option<&'a [u8]>,
        to: Option<&'a [u8]>,
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a CacheEntry)> + 'a> {
        match crate::store::inclusive_range(from, to) {
            Some(bounds) => Box::new(self.ordered.range::<[u8], _>(bounds).filter_map(|key| {
                self.index
                    .get(key)
                    .map(|&slot| (&key[..], &self.slots[slot].entry))
            })),
            None => Box::new(std::iter::empty()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Drops everything (dirty entries too) and gives the bytes back to the budget.
    pub(crate) fn clear(&mut self) {
        let bytes = self.bytes;
        self.release(bytes);
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.ordered.clear();
        self.lru = EMPTY;
        self.dirty = EMPTY;
        self.dirty_count = 0;
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
        // Down to the headroom below the budget: with room for three entries, freeing one
        // leaves exactly the budget, so the next oldest goes too.
        assert_eq!(
            evicted,
            vec![
                DirtyEntry {
                    key: b"b".to_vec(),
                    value: Some(b"2".to_vec()),
                    below: None,
                },
                DirtyEntry {
                    key: b"c".to_vec(),
                    value: Some(b"3".to_vec()),
                    below: None,
                }
            ]
        );
        let max = budget.max_bytes();
        assert!(budget.used_bytes() <= max - max / EVICTION_HEADROOM);
        assert!(cache.get(b"a").is_some() && cache.get(b"d").is_some());
    }

    #[test]
    fn a_small_cache_sharing_the_budget_frees_only_its_own_headroom() {
        let entry = ENTRY_OVERHEAD + 4;
        let budget = CacheBudget::new(1000 * entry);
        let mut large = RecordCache::new(budget.clone());
        let mut small = RecordCache::new(budget.clone());
        for i in 0..10u32 {
            small.put(&i.to_be_bytes(), Some(b"".to_vec()));
        }
        for i in 0..990u32 {
            large.put(&i.to_be_bytes(), Some(b"".to_vec()));
        }
        assert!(!small.needs_eviction());
        small.put(&10u32.to_be_bytes(), Some(b"".to_vec()));
        assert!(small.needs_eviction());
        let evicted = small.evict();
        // Its own headroom is a fraction of one entry: the budget holds after two at most.
        assert_eq!(evicted.len(), 2);
        assert_eq!(
            evicted[0].key,
            0u32.to_be_bytes().to_vec(),
            "its oldest first"
        );
        assert!(
            small.get(&10u32.to_be_bytes()).is_some(),
            "the entry just written stays"
        );
        assert!(!large.needs_eviction(), "the budget holds");
    }

    #[test]
    fn an_eviction_stops_at_the_headroom_below_the_budget() {
        let entry = ENTRY_OVERHEAD + 4;
        let budget = CacheBudget::new(1000 * entry);
        let mut cache = RecordCache::new(budget.clone());
        for i in 0..1001u32 {
            cache.put(&i.to_be_bytes(), Some(b"".to_vec()));
        }
        assert!(cache.needs_eviction());
        let evicted = cache.evict();
        let max = budget.max_bytes();
        // The cache holds more than the budget: the budget's headroom applies.
        let low_water = max - max / EVICTION_HEADROOM;
        assert!(budget.used_bytes() <= low_water);
        assert!(
            budget.used_bytes() + entry > low_water,
            "no more than needed"
        );
        let keys: Vec<Vec<u8>> = evicted.into_iter().map(|d| d.key).collect();
        let oldest: Vec<Vec<u8>> = (0..keys.len() as u32)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        assert_eq!(keys, oldest, "oldest first");
        assert!(!cache.needs_eviction());
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

    /// A cache whose flushes report no old values frees an overwritten clean value at once, and
    /// charges the budget only for what it holds.
    #[test]
    fn a_cache_without_old_values_keeps_nothing_below() {
        let budget = CacheBudget::new(1 << 20);
        let mut cache = RecordCache::with_below(budget.clone(), false);
        cache.put(b"a", Some(b"1".to_vec()));
        cache.take_dirty();
        let clean = budget.used_bytes();
        cache.put(b"a", Some(b"2".to_vec()));
        assert_eq!(
            budget.used_bytes(),
            clean,
            "same key and value sizes, nothing below"
        );
        assert_eq!(
            cache.take_dirty(),
            vec![DirtyEntry {
                key: b"a".to_vec(),
                value: Some(b"2".to_vec()),
                below: None,
            }]
        );
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
