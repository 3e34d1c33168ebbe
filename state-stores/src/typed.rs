//! Typed stores: serdes on top of the byte stores, behind a shareable handle.
//!
//! A store lives in a [`StoreCell`], which a task and the processors that use the store share
//! (`Arc`). Each operation locks the cell for its duration. A thread that reaches the same store
//! again while it is inside it (a processor that forwards a record while iterating, and the record
//! reaches a processor reading the same store) gets [`StoreError::Reentrant`] instead of a
//! deadlock; another thread waits its turn.
//!
//! Range results come back as vectors: they are read under the lock and handed over whole, so no
//! lock outlives the call. Byte order is the order of ranges, so typed ranges are meaningful for
//! serdes whose bytes sort like their values (strings, big-endian non-negative integers).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Result, StoreError};
use crate::keys;
use crate::serdes::Serde;
use crate::store::{
    CacheEmission, KeyValueBytesStore, SessionBytesStore, SessionWindow, StateStore,
    WindowBytesStore,
};

static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_TOKEN: u64 = NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed);
}

/// A store shared by a task and its processors; see the [module docs](self).
pub struct StoreCell<S: ?Sized> {
    name: String,
    owner: AtomicU64,
    store: Mutex<Box<S>>,
}

impl<S: ?Sized> std::fmt::Debug for StoreCell<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCell")
            .field("name", &self.name)
            .finish()
    }
}

/// A shared key-value store.
pub type SharedKeyValueStore = Arc<StoreCell<dyn KeyValueBytesStore>>;
/// A shared window store.
pub type SharedWindowStore = Arc<StoreCell<dyn WindowBytesStore>>;
/// A shared session store.
pub type SharedSessionStore = Arc<StoreCell<dyn SessionBytesStore>>;

struct OwnerGuard<'a>(&'a AtomicU64);

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl<S: ?Sized + StateStore> StoreCell<S> {
    /// Shares `store`.
    pub fn new(store: Box<S>) -> Arc<Self> {
        Arc::new(StoreCell {
            name: store.name().to_owned(),
            owner: AtomicU64::new(0),
            store: Mutex::new(store),
        })
    }
}

impl<S: ?Sized> StoreCell<S> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` with exclusive access to the store.
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R> {
        let me = THREAD_TOKEN.with(|t| *t);
        if self.owner.load(Ordering::Acquire) == me {
            return Err(StoreError::Reentrant {
                store: self.name.clone(),
            });
        }
        // A panic elsewhere while holding the lock leaves the store itself consistent (every
        // operation is a complete call on it), so a poisoned lock is still usable.
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        self.owner.store(me, Ordering::Release);
        let _guard = OwnerGuard(&self.owner);
        Ok(f(&mut **store))
    }
}

/// A typed change written down by a caching store: the key, its new value (`None`: deleted) and,
/// when the cache reports them, its old value.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission<K, V> {
    /// The key.
    pub key: K,
    /// The value now stored.
    pub new_value: Option<V>,
    /// The value before.
    pub old_value: Option<V>,
}

fn serde_error(store: &str, source: crate::serdes::SerdeError) -> StoreError {
    StoreError::Serde {
        store: store.to_owned(),
        source,
    }
}

/// The serdes of a typed store.
struct Codec<K, V> {
    store: String,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for Codec<K, V> {
    fn clone(&self) -> Self {
        Codec {
            store: self.store.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K: 'static, V: 'static> Codec<K, V> {
    fn key(&self, key: &K) -> Result<Vec<u8>> {
        self.keys
            .serialize(key)
            .map_err(|e| serde_error(&self.store, e))
    }
    fn value(&self, value: &V) -> Result<Vec<u8>> {
        self.values
            .serialize(value)
            .map_err(|e| serde_error(&self.store, e))
    }
    fn read_key(&self, bytes: &[u8]) -> Result<K> {
        self.keys
            .deserialize(bytes)
            .map_err(|e| serde_error(&self.store, e))
    }
    fn read_value(&self, bytes: &[u8]) -> Result<V> {
        self.values
            .deserialize(bytes)
            .map_err(|e| serde_error(&self.store, e))
    }
    fn read_opt(&self, bytes: Option<Vec<u8>>) -> Result<Option<V>> {
        bytes.map(|b| self.read_value(&b)).transpose()
    }
    fn pairs(&self, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>> {
        raw.into_iter()
            .map(|(k, v)| Ok((self.read_key(&k)?, self.read_value(&v)?)))
            .collect()
    }
}

/// A typed key-value store.
pub struct KeyValueStore<K, V> {
    cell: SharedKeyValueStore,
    codec: Codec<K, V>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        KeyValueStore {
            cell: self.cell.clone(),
            codec: self.codec.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.cell.name())
            .finish()
    }
}

impl<K: 'static, V: 'static> KeyValueStore<K, V> {
    /// Types `cell` with the given serdes.
    pub fn new(
        cell: SharedKeyValueStore,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Self {
        let store = cell.name().to_owned();
        KeyValueStore {
            cell,
            codec: Codec {
                store,
                keys,
                values,
            },
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.cell.name()
    }

    /// The shared byte store underneath.
    pub fn cell(&self) -> &SharedKeyValueStore {
        &self.cell
    }

    /// Whether `key` serializes as null (Kafka's null key, which aggregations skip).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.codec.keys.is_null(key)
    }

    /// `key` as the store writes it.
    pub fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        self.codec.key(key)
    }

    /// `value` as the store writes it.
    pub fn value_bytes(&self, value: &V) -> Result<Vec<u8>> {
        self.codec.value(value)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = self.codec.key(key)?;
        let raw = self.cell.with(|s| s.get(&k))??;
        self.codec.read_opt(raw)
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let (k, v) = (self.codec.key(key)?, self.codec.value(value)?);
        self.cell.with(|s| s.put(&k, &v))?
    }

    /// Reads `key`'s value and stores what `f` makes of it (`None` deletes), in one store
    /// operation: the key is serialized once and a cache finds it once. Returns `f`'s second
    /// result. `f` runs while the store is held: it must not reach this store itself.
    pub fn update<R>(&self, key: &K, f: impl FnOnce(Option<V>) -> (Option<V>, R)) -> Result<R> {
        let k = self.codec.key(key)?;
        let mut f = Some(f);
        let mut result = None;
        self.cell.with(|s| {
            s.update(&k, &mut |old| {
                // Every store calls this once; a second call would be a store's bug.
                let f = f.take().ok_or_else(|| StoreError::Reentrant {
                    store: self.codec.store.clone(),
                })?;
                let old = old.map(|b| self.codec.read_value(b)).transpose()?;
                let (new, r) = f(old);
                result = Some(r);
                new.map(|v| self.codec.value(&v)).transpose()
            })
        })??;
        result.ok_or_else(|| StoreError::Reentrant {
            store: self.codec.store.clone(),
        })
    }

    /// Sets `key` to `value` unless it has one; returns the existing value.
    pub fn put_if_absent(&self, key: &K, value: &V) -> Result<Option<V>> {
        let (k, v) = (self.codec.key(key)?, self.codec.value(value)?);
        let raw = self.cell.with(|s| s.put_if_absent(&k, &v))??;
        self.codec.read_opt(raw)
    }

    /// Removes `key`; returns its value.
    pub fn delete(&self, key: &K) -> Result<Option<V>> {
        let k = self.codec.key(key)?;
        let raw = self.cell.with(|s| s.delete(&k))??;
        self.codec.read_opt(raw)
    }

    /// Entries with `from <= key <= to` (by serialized bytes), in order.
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>> {
        let from = from.map(|k| self.codec.key(k)).transpose()?;
        let to = to.map(|k| self.codec.key(k)).transpose()?;
        let raw = self.cell.with(|s| {
            s.range(from.as_deref(), to.as_deref())?
                .collect::<Result<Vec<_>>>()
        })??;
        self.codec.pairs(raw)
    }

    /// Entries whose serialized key lies in `[from, to]` (byte bounds, either may be absent), in
    /// order: for ranges a typed key cannot express, such as "every entry before time t" over a
    /// key encoding that starts with a time.
    pub fn range_bytes(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(K, V)>> {
        let raw = self
            .cell
            .with(|s| s.range(from, to)?.collect::<Result<Vec<_>>>())??;
        self.codec.pairs(raw)
    }

    /// Entries whose serialized key starts with `prefix`.
    pub fn prefix_scan(&self, prefix: &[u8]) -> Result<Vec<(K, V)>> {
        let raw = self
            .cell
            .with(|s| s.prefix_scan(prefix)?.collect::<Result<Vec<_>>>())??;
        self.codec.pairs(raw)
    }

    /// Every entry, in order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.range(None, None)
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.cell.with(|s| s.approximate_num_entries())?
    }

    /// Flushes the store (and its cache).
    pub fn flush(&self) -> Result<()> {
        self.cell.with(|s| s.flush())?
    }

    /// The changes a caching layer wrote down since the last call, typed.
    pub fn drain_emissions(&self) -> Result<Vec<Emission<K, V>>> {
        let raw: Vec<CacheEmission> = self.cell.with(|s| s.drain_emissions())?;
        raw.into_iter()
            .map(|e| {
                Ok(Emission {
                    key: self.codec.read_key(&e.key)?,
                    new_value: self.codec.read_opt(e.new_value)?,
                    old_value: self.codec.read_opt(e.old_value)?,
                })
            })
            .collect()
    }
}

/// A typed window store.
pub struct WindowStore<K, V> {
    cell: SharedWindowStore,
    codec: Codec<K, V>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            cell: self.cell.clone(),
            codec: self.codec.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore")
            .field("name", &self.cell.name())
            .finish()
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    /// Types `cell` with the given serdes.
    pub fn new(
        cell: SharedWindowStore,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Self {
        let store = cell.name().to_owned();
        WindowStore {
            cell,
            codec: Codec {
                store,
                keys,
                values,
            },
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.cell.name()
    }

    /// Whether `key` serializes as null (Kafka's null key, which aggregations skip).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.codec.keys.is_null(key)
    }

    /// Stores `value` (or deletes, with `None`) for `key` in the window starting at `start`.
    pub fn put(&self, key: &K, start: i64, value: Option<&V>) -> Result<()> {
        let k = self.codec.key(key)?;
        let v = value.map(|v| self.codec.value(v)).transpose()?;
        self.cell.with(|s| s.put(&k, start, v.as_deref()))?
    }

    /// Reads `key`'s window starting at `start` and stores what `f` makes of it, in one store
    /// operation (the key is serialized once); returns `f`'s second result. `f` runs while the
    /// store is held: it must not reach this store itself.
    pub fn update<R>(&self, key: &K, start: i64, f: impl FnOnce(Option<V>) -> (V, R)) -> Result<R> {
        let k = self.codec.key(key)?;
        self.cell.with(|s| -> Result<R> {
            let old = self.codec.read_opt(s.fetch(&k, start)?)?;
            let (new, result) = f(old);
            let v = self.codec.value(&new)?;
            s.put(&k, start, Some(&v))?;
            Ok(result)
        })?
    }

    /// The value of `key` in the window starting at `start`.
    pub fn fetch(&self, key: &K, start: i64) -> Result<Option<V>> {
        let k = self.codec.key(key)?;
        let raw = self.cell.with(|s| s.fetch(&k, start))??;
        self.codec.read_opt(raw)
    }

    /// `(window start, value)` of `key`'s windows starting in `[from, to]`.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>> {
        let k = self.codec.key(key)?;
        let raw = self
            .cell
            .with(|s| s.fetch_range(&k, from, to)?.collect::<Result<Vec<_>>>())??;
        raw.into_iter()
            .map(|(start, v)| Ok((start, self.codec.read_value(&v)?)))
            .collect()
    }

    /// `(key, window start, value)` of every window starting in `[from, to]`, by start then key.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(K, i64, V)>> {
        let raw = self
            .cell
            .with(|s| s.fetch_all(from, to)?.collect::<Result<Vec<_>>>())??;
        raw.into_iter()
            .map(|(wk, v)| {
                Ok((
                    self.codec.read_key(&wk.key)?,
                    wk.start,
                    self.codec.read_value(&v)?,
                ))
            })
            .collect()
    }

    /// The changes a caching layer wrote down since the last call: `((key, window start), ...)`.
    pub fn drain_emissions(&self) -> Result<Vec<Emission<(K, i64), V>>> {
        let raw: Vec<CacheEmission> = self.cell.with(|s| s.drain_emissions())?;
        raw.into_iter()
            .filter_map(|e| keys::decode_window_key(&e.key).map(|wk| (wk, e)))
            .map(|(wk, e)| {
                Ok(Emission {
                    key: (self.codec.read_key(&wk.key)?, wk.start),
                    new_value: self.codec.read_opt(e.new_value)?,
                    old_value: self.codec.read_opt(e.old_value)?,
                })
            })
            .collect()
    }

    /// Flushes the store (and its cache).
    pub fn flush(&self) -> Result<()> {
        self.cell.with(|s| s.flush())?
    }
}

/// A typed session store.
pub struct SessionStore<K, V> {
    cell: SharedSessionStore,
    codec: Codec<K, V>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        SessionStore {
            cell: self.cell.clone(),
            codec: self.codec.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for SessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.cell.name())
            .finish()
    }
}

impl<K: 'static, V: 'static> SessionStore<K, V> {
    /// Types `cell` with the given serdes.
    pub fn new(
        cell: SharedSessionStore,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Self {
        let store = cell.name().to_owned();
        SessionStore {
            cell,
            codec: Codec {
                store,
                keys,
                values,
            },
            _types: PhantomData,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.cell.name()
    }

    /// Whether `key` serializes as null (Kafka's null key, which aggregations skip).
    pub fn is_null_key(&self, key: &K) -> bool {
        self.codec.keys.is_null(key)
    }

    /// The changes a caching layer wrote down since the last call: `((key, session), ...)`.
    pub fn drain_emissions(&self) -> Result<Vec<Emission<(K, SessionWindow), V>>> {
        let raw: Vec<CacheEmission> = self.cell.with(|s| s.drain_emissions())?;
        raw.into_iter()
            .filter_map(|e| keys::decode_session_key(&e.key).map(|sk| (sk, e)))
            .map(|(sk, e)| {
                Ok(Emission {
                    key: (self.codec.read_key(&sk.key)?, sk.window),
                    new_value: self.codec.read_opt(e.new_value)?,
                    old_value: self.codec.read_opt(e.old_value)?,
                })
            })
            .collect()
    }

    /// `key`'s sessions ending at or after `earliest_end` and starting at or before `latest_start`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<Vec<(SessionWindow, V)>> {
        let k = self.codec.key(key)?;
        let raw = self.cell.with(|s| {
            s.find_sessions(&k, earliest_end, latest_start)?
                .collect::<Result<Vec<_>>>()
        })??;
        raw.into_iter()
            .map(|(sk, v)| Ok((sk.window, self.codec.read_value(&v)?)))
            .collect()
    }

    /// The value of one session.
    pub fn fetch_session(&self, key: &K, window: SessionWindow) -> Result<Option<V>> {
        let k = self.codec.key(key)?;
        let raw = self.cell.with(|s| s.fetch_session(&k, window))??;
        self.codec.read_opt(raw)
    }

    /// Stores `value` for the session.
    pub fn put(&self, key: &K, window: SessionWindow, value: &V) -> Result<()> {
        let (k, v) = (self.codec.key(key)?, self.codec.value(value)?);
        self.cell.with(|s| s.put(&k, window, &v))?
    }

    /// Removes the session.
    pub fn remove(&self, key: &K, window: SessionWindow) -> Result<()> {
        let k = self.codec.key(key)?;
        self.cell.with(|s| s.remove(&k, window))?
    }

    /// Flushes the store (and its cache).
    pub fn flush(&self) -> Result<()> {
        self.cell.with(|s| s.flush())?
    }
}
