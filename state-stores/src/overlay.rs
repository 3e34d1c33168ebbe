//! Writes held back until a commit, and reads that see them.
//!
//! Under exactly-once a RocksDB store is *transactional*: the writes of the open Kafka
//! transaction stay in an [`Overlay`] in memory instead of reaching the database. Reads consult
//! the overlay first, so a task reads its own writes. A commit, made only after the Kafka
//! transaction committed, applies the overlay to the database in one atomic write batch
//! together with the changelog offset it reflects; an abort (or a crash) drops it. The database
//! therefore always holds exactly the state of the last committed transaction, and a restart
//! restores only the changelog after that transaction's offset.
//!
//! A store has two overlays, so that processing goes on while a Kafka commit is in flight: when
//! the commit starts, the *pending* writes are sealed (moved into the *sealed* overlay, which the
//! commit will apply), and new writes start a fresh pending overlay. Reads see pending, then
//! sealed, then the database.
//!
//! [`MergeIter`] lays sorted pending entries (which win, and whose `None` hides a key) over a
//! sorted store iterator; the caching layer merges its dirty entries the same way.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::Result;

/// A pending write: the new value, or `None` for a deletion.
pub(crate) type PendingEntry = (Vec<u8>, Option<Vec<u8>>);

/// The writes of the open transaction of one store, by (encoded) key; see the
/// [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

/// Bytes a pending entry is charged for (key, value and bookkeeping).
fn charge(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + 64
}

impl Overlay {
    /// The pending write of `key`: `Some(None)` is a pending deletion, `None` means the database
    /// decides.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(Option::as_deref)
    }

    /// Records a write (`None`: a deletion).
    pub(crate) fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        let added = charge(key, value);
        match self.entries.get_mut(key) {
            Some(slot) => {
                self.bytes = self.bytes - charge(key, slot.as_deref()) + added;
                *slot = value.map(<[u8]>::to_vec);
            }
            None => {
                self.bytes += added;
                self.entries.insert(key.to_vec(), value.map(<[u8]>::to_vec));
            }
        }
    }

    /// Pending writes with keys in `[lower, upper)` (either bound may be open), in key order.
    pub(crate) fn range<'a>(
        &'a self,
        lower: Option<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> impl Iterator<Item = PendingEntry> + 'a {
        let lower = lower.map_or(Bound::Unbounded, Bound::Included);
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Excluded(u)) => l >= u,
            (Bound::Included(l), Bound::Included(u)) => l > u,
            _ => false,
        };
        let range = if empty {
            None
        } else {
            Some(
                self.entries
                    .range::<[u8], _>((lower, upper))
                    .map(|(k, v)| (k.clone(), v.clone())),
            )
        };
        range.into_iter().flatten()
    }

    /// Every pending write, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.entries.iter()
    }

    /// Takes every pending write, leaving the overlay empty.
    pub(crate) fn take(&mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }

    /// Lays `newer` over this overlay (its writes win). An empty overlay (the usual case: the
    /// commit before applied it) takes `newer` whole instead of re-inserting every write.
    pub(crate) fn absorb(&mut self, newer: Overlay) {
        if self.entries.is_empty() {
            *self = newer;
            return;
        }
        for (key, value) in newer.entries {
            self.put(&key, value.as_deref());
        }
    }

    /// Drops every pending write.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate memory held, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Merges pending entries (which win, and whose `None` hides a key) over a store's entries, both
/// in key order.
pub(crate) struct MergeIter<C, S>
where
    C: Iterator<Item = PendingEntry>,
    S: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    pending: std::iter::Peekable<C>,
    store: std::iter::Peekable<S>,
}

impl<C, S> MergeIter<C, S>
where
    C: Iterator<Item = PendingEntry>,
    S: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    pub(crate) fn new(pending: C, store: S) -> Self {
        MergeIter {
            pending: pending.peekable(),
            store: store.peekable(),
        }
    }
}

impl<C, S> Iterator for MergeIter<C, S>
where
    C: Iterator<Item = PendingEntry>,
    S: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_pending = match (self.pending.peek(), self.store.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(Err(_))) => false,
                (Some((pk, _)), Some(Ok((sk, _)))) => {
                    if pk == sk {
                        self.store.next(); // shadowed by the pending write
                        true
                    } else {
                        pk < sk
                    }
                }
            };
            if take_pending {
                let (key, value) = self.pending.next()?;
                match value {
                    Some(value) => return Some(Ok((key, value))),
                    None => continue, // a pending deletion
                }
            } else {
                return self.store.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_shadow_and_hide_store_entries() {
        let mut o = Overlay::default();
        o.put(b"b", Some(b"B2"));
        o.put(b"c", None);
        o.put(b"e", Some(b"E"));
        let store = vec![
            Ok((b"a".to_vec(), b"A".to_vec())),
            Ok((b"b".to_vec(), b"B".to_vec())),
            Ok((b"c".to_vec(), b"C".to_vec())),
            Ok((b"d".to_vec(), b"D".to_vec())),
        ];
        let merged: Vec<(Vec<u8>, Vec<u8>)> =
            MergeIter::new(o.range(None, Bound::Unbounded), store.into_iter())
                .map(|r| r.unwrap())
                .collect();
        assert_eq!(
            merged,
            vec![
                (b"a".to_vec(), b"A".to_vec()),
                (b"b".to_vec(), b"B2".to_vec()),
                (b"d".to_vec(), b"D".to_vec()),
                (b"e".to_vec(), b"E".to_vec()),
            ]
        );
        assert_eq!(o.get(b"c"), Some(None));
        assert_eq!(o.get(b"z"), None);
    }

    #[test]
    fn bytes_follow_overwrites_and_ranges_respect_bounds() {
        let mut o = Overlay::default();
        o.put(b"k", Some(&[0; 100]));
        let one = o.bytes();
        o.put(b"k", Some(&[0; 10]));
        assert_eq!(o.bytes(), one - 90);
        o.put(b"m", None);
        assert_eq!(o.len(), 2);
        let keys: Vec<Vec<u8>> = o
            .range(Some(b"k"), Bound::Excluded(b"m"))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"k".to_vec()]);
        assert_eq!(o.range(Some(b"n"), Bound::Excluded(b"a")).count(), 0);
        let taken = o.take();
        assert_eq!(taken.len(), 2);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn absorbing_lays_newer_writes_over_older_ones_with_their_bytes() {
        let newer = |writes: &[(&[u8], Option<&[u8]>)]| {
            let mut o = Overlay::default();
            for (k, v) in writes {
                o.put(k, *v);
            }
            o
        };
        // Into an empty overlay: taken whole.
        let mut sealed = Overlay::default();
        let first = newer(&[(b"a", Some(b"1")), (b"b", None)]);
        let first_bytes = first.bytes();
        sealed.absorb(first);
        assert_eq!(sealed.bytes(), first_bytes);
        assert_eq!(sealed.get(b"a"), Some(Some(&b"1"[..])));
        // Over a non-empty one: newer writes win, bytes follow.
        sealed.absorb(newer(&[(b"a", None), (b"c", Some(b"3"))]));
        let want = newer(&[(b"a", None), (b"b", None), (b"c", Some(b"3"))]);
        assert_eq!(sealed.bytes(), want.bytes());
        assert_eq!(
            sealed.iter().collect::<Vec<_>>(),
            want.iter().collect::<Vec<_>>()
        );
    }
}
