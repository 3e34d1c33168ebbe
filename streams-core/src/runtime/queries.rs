//! Interactive queries: read-only views of the stores of this instance's tasks, what Kafka
//! Streams offers as `KafkaStreams.store(StoreQueryParameters)`.
//!
//! Each stream thread publishes the tasks it holds, whether each is running or still restoring,
//! and their stores (see `thread::ThreadCore::report`). A view ([`ReadOnlyKeyValueStore`],
//! [`ReadOnlyWindowStore`], [`ReadOnlySessionStore`]) looks the tasks up again on every call,
//! so it follows rebalances:
//!
//! - a point lookup (`get`, `fetch`) goes to the one task owning the key's partition (Kafka's
//!   murmur2 partitioner on the key's bytes, as the sinks place records);
//! - `range`, `prefix_scan`, `all` and `fetch_all` merge every local task of the store.
//!
//! The stores of KTables (`count`, `reduce`, `aggregate`, materialized tables) hold each value
//! with the timestamp of its last update: query them as
//! `key_value::<K, ValueAndTimestamp<V>>()` (Kafka Streams' `timestampedKeyValueStore()`).
//!
//! Reads go through the same layers the task writes through (record cache, and under
//! exactly-once the open transaction's writes), as in Kafka Streams, and take the store's lock
//! for the duration of one call, between two of the stream thread's operations: never a torn
//! read, never a wait on a commit. A store that is restoring, a task that moved away during a
//! rebalance, or an instance that is not running give [`StreamsError::StoreNotQueryable`] with a
//! [`NotQueryableReason`], so a caller knows to retry (or to ask another instance; see
//! [`KafkaStreams::query_metadata_for_key`](crate::KafkaStreams::query_metadata_for_key)).

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use state_stores::metering::StoreMetrics;
use state_stores::serdes::Serde;
use state_stores::store::SessionWindow;
use state_stores::typed::{SharedKeyValueStore, SharedSessionStore, SharedWindowStore};
use state_stores::{SessionStore, StoreError, WindowStore};

use crate::error::{Result, StreamsError};
use crate::runtime::state::{State, StateCell};
use crate::serde_slot::ErasedSerde;
use crate::task::runtime::StoreHandle;
use crate::task::{TaskId, TaskMetrics};

/// Why a store cannot answer now. All but [`UnknownStore`](Self::UnknownStore) pass: retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotQueryableReason {
    /// The task holding the key (or one of the store's tasks) is restoring its state from the
    /// changelog.
    Restoring,
    /// A rebalance is moving tasks: the key's task is not here now, and may come back.
    Migrating,
    /// The instance runs, but the key's partition belongs to another instance (see
    /// [`KafkaStreams::query_metadata_for_key`](crate::KafkaStreams::query_metadata_for_key)).
    NotLocal,
    /// The instance is not started, or is shutting down, or stopped.
    NotRunning,
    /// The topology has no store of that name (or not of the asked kind).
    UnknownStore,
}

impl std::fmt::Display for NotQueryableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotQueryableReason::Restoring => "it is restoring from its changelog",
            NotQueryableReason::Migrating => "a rebalance is moving its tasks",
            NotQueryableReason::NotLocal => "the key's partition is owned by another instance",
            NotQueryableReason::NotRunning => "the instance is not running",
            NotQueryableReason::UnknownStore => "the topology has no such store",
        })
    }
}

/// One task as its thread publishes it for queries and metrics.
#[derive(Clone)]
pub(crate) struct PublishedTask {
    pub(crate) running: bool,
    pub(crate) stores: Vec<(String, StoreHandle)>,
    pub(crate) store_metrics: Vec<(String, Arc<StoreMetrics>)>,
}

/// What one stream thread publishes of its tasks and assignment.
#[derive(Default)]
pub(crate) struct ThreadView {
    pub(crate) tasks: BTreeMap<TaskId, PublishedTask>,
    /// The input partitions the group assigned the thread.
    pub(crate) assigned: BTreeSet<(String, i32)>,
    /// Per task: its counters (refreshed a few times a second).
    pub(crate) task_metrics: BTreeMap<TaskId, TaskMetrics>,
    /// Per restoring task and store: changelog records still to restore.
    pub(crate) restore_remaining: BTreeMap<(TaskId, String), i64>,
    /// Consumer lag per input partition, from the consumer's statistics.
    pub(crate) lags: BTreeMap<(String, i32), i64>,
}

pub(crate) type SharedView = Arc<Mutex<ThreadView>>;

/// Where a view finds its store's tasks; made by [`KafkaStreams::store`](crate::KafkaStreams::store).
#[derive(Clone)]
pub struct StoreLocator {
    pub(crate) store: String,
    pub(crate) subtopology: u32,
    pub(crate) partitions: i32,
    pub(crate) views: Vec<SharedView>,
    pub(crate) state: Arc<StateCell>,
    pub(crate) keys: ErasedSerde,
    pub(crate) values: ErasedSerde,
}

impl std::fmt::Debug for StoreLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLocator")
            .field("store", &self.store)
            .field("partitions", &self.partitions)
            .finish()
    }
}

fn not_queryable(store: &str, reason: NotQueryableReason) -> StreamsError {
    StreamsError::StoreNotQueryable {
        store: store.to_owned(),
        reason,
    }
}

/// Kafka's Java default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`,
/// which librdkafka's `murmur2_random` partitioner (the sinks') computes too.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let len = key.len();
    let mut h: u32 = seed ^ (len as u32);
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if let Some(first) = tail.first() {
        h ^= *first as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

impl StoreLocator {
    fn check_state(&self) -> Result<State> {
        let state = self.state.get();
        if state.is_running_or_rebalancing() {
            Ok(state)
        } else {
            Err(not_queryable(&self.store, NotQueryableReason::NotRunning))
        }
    }

    /// Every local task of the store: `(task, running, handle)`.
    fn tasks(&self) -> Vec<(TaskId, bool, StoreHandle)> {
        let mut out = Vec::new();
        for view in &self.views {
            let view = view.lock().unwrap_or_else(|p| p.into_inner());
            for (id, task) in &view.tasks {
                if id.subtopology != self.subtopology {
                    continue;
                }
                if let Some((_, handle)) = task.stores.iter().find(|(n, _)| *n == self.store) {
                    out.push((*id, task.running, handle.clone()));
                }
            }
        }
        out.sort_by_key(|(id, ..)| *id);
        out
    }

    /// The handle of the running task that owns `key_bytes`.
    fn for_key(&self, key_bytes: &[u8]) -> Result<StoreHandle> {
        let state = self.check_state()?;
        let partition = partition_for_key(key_bytes, self.partitions);
        match self
            .tasks()
            .into_iter()
            .find(|(id, ..)| id.partition == partition)
        {
            Some((_, true, handle)) => Ok(handle),
            Some((_, false, _)) => Err(not_queryable(&self.store, NotQueryableReason::Restoring)),
            None if state == State::Rebalancing => {
                Err(not_queryable(&self.store, NotQueryableReason::Migrating))
            }
            None => Err(not_queryable(&self.store, NotQueryableReason::NotLocal)),
        }
    }

    /// Every running task's handle; an error if one of them is restoring.
    fn all_running(&self) -> Result<Vec<StoreHandle>> {
        self.check_state()?;
        let tasks = self.tasks();
        if tasks.iter().any(|(_, running, _)| !running) {
            return Err(not_queryable(&self.store, NotQueryableReason::Restoring));
        }
        Ok(tasks.into_iter().map(|(.., h)| h).collect())
    }

    /// Turns a store error of a closed store (its task moved away meanwhile) into `Migrating`.
    fn read_error(&self, e: StoreError) -> StreamsError {
        match e {
            StoreError::Closed { .. } => not_queryable(&self.store, NotQueryableReason::Migrating),
            other => StreamsError::Store(other),
        }
    }

    fn serde_error(&self, what: &str, e: state_stores::SerdeError) -> StreamsError {
        StreamsError::Serde {
            location: format!("query of store `{}` ({what})", self.store),
            source: e,
        }
    }
}

/// A kind of store to query, with its key and value types; see [`QueryableStoreTypes`].
pub trait QueryableStoreType {
    /// The view [`KafkaStreams::store`](crate::KafkaStreams::store) returns.
    type Store;

    /// The kind's name, for errors.
    fn kind(&self) -> &'static str;

    /// Whether `handle` is of this kind.
    #[doc(hidden)]
    fn accepts(&self, kind: crate::topology::StoreKind) -> bool;

    /// The view over the store `locator` finds.
    #[doc(hidden)]
    fn view(self, locator: StoreLocator) -> Result<Self::Store>;
}

/// The kinds of store [`KafkaStreams::store`](crate::KafkaStreams::store) can query.
///
/// ```no_run
/// # use streams_core::KafkaStreams;
/// use streams_core::runtime::queries::QueryableStoreTypes;
/// # fn f(streams: &KafkaStreams) -> streams_core::Result<()> {
/// let counts = streams.store("counts", QueryableStoreTypes::key_value::<String, i64>())?;
/// let hello: Option<i64> = counts.get(&"hello".to_owned())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QueryableStoreTypes;

/// A key-value store with keys `K` and values `V`.
#[derive(Debug)]
pub struct KeyValueType<K, V>(PhantomData<fn() -> (K, V)>);
/// A window store with keys `K` and values `V`.
#[derive(Debug)]
pub struct WindowType<K, V>(PhantomData<fn() -> (K, V)>);
/// A session store with keys `K` and values `V`.
#[derive(Debug)]
pub struct SessionType<K, V>(PhantomData<fn() -> (K, V)>);

impl QueryableStoreTypes {
    /// A key-value store.
    pub fn key_value<K: 'static, V: 'static>() -> KeyValueType<K, V> {
        KeyValueType(PhantomData)
    }
    /// A window store.
    pub fn window<K: 'static, V: 'static>() -> WindowType<K, V> {
        WindowType(PhantomData)
    }
    /// A session store.
    pub fn session<K: 'static, V: 'static>() -> SessionType<K, V> {
        SessionType(PhantomData)
    }
}

fn typed<T: 'static>(locator: &StoreLocator, what: &str) -> Result<Arc<dyn Serde<T>>> {
    let serde = if what == "key" {
        &locator.keys
    } else {
        &locator.values
    };
    serde.downcast::<T>(&locator.store, what)
}

impl<K: 'static, V: 'static> QueryableStoreType for KeyValueType<K, V> {
    type Store = ReadOnlyKeyValueStore<K, V>;
    fn kind(&self) -> &'static str {
        "key-value"
    }
    fn accepts(&self, kind: crate::topology::StoreKind) -> bool {
        matches!(kind, crate::topology::StoreKind::KeyValue)
    }
    fn view(self, locator: StoreLocator) -> Result<Self::Store> {
        Ok(ReadOnlyKeyValueStore {
            keys: typed(&locator, "key")?,
            values: typed(&locator, "value")?,
            locator,
        })
    }
}

impl<K: 'static, V: 'static> QueryableStoreType for WindowType<K, V> {
    type Store = ReadOnlyWindowStore<K, V>;
    fn kind(&self) -> &'static str {
        "window"
    }
    fn accepts(&self, kind: crate::topology::StoreKind) -> bool {
        matches!(kind, crate::topology::StoreKind::Window { .. })
    }
    fn view(self, locator: StoreLocator) -> Result<Self::Store> {
        Ok(ReadOnlyWindowStore {
            keys: typed(&locator, "key")?,
            values: typed(&locator, "value")?,
            locator,
        })
    }
}

impl<K: 'static, V: 'static> QueryableStoreType for SessionType<K, V> {
    type Store = ReadOnlySessionStore<K, V>;
    fn kind(&self) -> &'static str {
        "session"
    }
    fn accepts(&self, kind: crate::topology::StoreKind) -> bool {
        matches!(kind, crate::topology::StoreKind::Session { .. })
    }
    fn view(self, locator: StoreLocator) -> Result<Self::Store> {
        Ok(ReadOnlySessionStore {
            keys: typed(&locator, "key")?,
            values: typed(&locator, "value")?,
            locator,
        })
    }
}

/// A read-only view of a key-value store across this instance's tasks; see the
/// [module docs](self).
pub struct ReadOnlyKeyValueStore<K, V> {
    locator: StoreLocator,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyKeyValueStore")
            .field("store", &self.locator.store)
            .finish()
    }
}

fn kv_cell(store: &str, handle: StoreHandle) -> Result<SharedKeyValueStore> {
    match handle {
        StoreHandle::KeyValue(cell, ..) => Ok(cell),
        _ => Err(not_queryable(store, NotQueryableReason::UnknownStore)),
    }
}

fn window_cell(store: &str, handle: StoreHandle) -> Result<SharedWindowStore> {
    match handle {
        StoreHandle::Window(cell, ..) => Ok(cell),
        _ => Err(not_queryable(store, NotQueryableReason::UnknownStore)),
    }
}

fn session_cell(store: &str, handle: StoreHandle) -> Result<SharedSessionStore> {
    match handle {
        StoreHandle::Session(cell, ..) => Ok(cell),
        _ => Err(not_queryable(store, NotQueryableReason::UnknownStore)),
    }
}

type RawPairs = Vec<(Vec<u8>, Vec<u8>)>;

impl<K: 'static, V: 'static> ReadOnlyKeyValueStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.locator.store
    }

    /// The partition (task) that holds `key`.
    pub fn partition_of(&self, key: &K) -> Result<i32> {
        let bytes = self
            .keys
            .serialize(key)
            .map_err(|e| self.locator.serde_error("key", e))?;
        Ok(partition_for_key(&bytes, self.locator.partitions))
    }

    /// The value of `key`, asked of the task that owns its partition.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let l = &self.locator;
        let bytes = self
            .keys
            .serialize(key)
            .map_err(|e| l.serde_error("key", e))?;
        let cell = kv_cell(&l.store, l.for_key(&bytes)?)?;
        let raw = cell
            .with(|s| s.get(&bytes))
            .and_then(|r| r)
            .map_err(|e| l.read_error(e))?;
        raw.map(|v| {
            self.values
                .deserialize(&v)
                .map_err(|e| l.serde_error("value", e))
        })
        .transpose()
    }

    fn merged(
        &self,
        read: impl Fn(&dyn state_stores::KeyValueBytesStore) -> state_stores::Result<RawPairs>,
    ) -> Result<Vec<(K, V)>> {
        let l = &self.locator;
        let mut all: RawPairs = Vec::new();
        for handle in l.all_running()? {
            let cell = kv_cell(&l.store, handle)?;
            let part = cell
                .with(|s| read(&*s))
                .and_then(|r| r)
                .map_err(|e| l.read_error(e))?;
            all.extend(part);
        }
        // Each task's part is sorted; partitions split keys by hash, so sort the union.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter()
            .map(|(k, v)| {
                Ok((
                    self.keys
                        .deserialize(&k)
                        .map_err(|e| l.serde_error("key", e))?,
                    self.values
                        .deserialize(&v)
                        .map_err(|e| l.serde_error("value", e))?,
                ))
            })
            .collect()
    }

    /// Entries with `from <= key <= to` (by key bytes; either bound may be absent) of every local
    /// task, in key-byte order.
    pub fn range(&self, from: Option<&K>, to: Option<&K>) -> Result<Vec<(K, V)>> {
        let l = &self.locator;
        let from = from
            .map(|k| self.keys.serialize(k))
            .transpose()
            .map_err(|e| l.serde_error("key", e))?;
        let to = to
            .map(|k| self.keys.serialize(k))
            .transpose()
            .map_err(|e| l.serde_error("key", e))?;
        self.merged(|s| s.range(from.as_deref(), to.as_deref())?.collect())
    }

    /// Entries whose key bytes start with `prefix`, of every local task, in key-byte order.
    pub fn prefix_scan(&self, prefix: &[u8]) -> Result<Vec<(K, V)>> {
        self.merged(|s| s.prefix_scan(prefix)?.collect())
    }

    /// Every entry of every local task, in key-byte order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.merged(|s| s.all()?.collect())
    }

    /// An estimate of the number of entries in the local tasks.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        let l = &self.locator;
        let mut total = 0u64;
        for handle in l.all_running()? {
            let cell = kv_cell(&l.store, handle)?;
            total += cell
                .with(|s| s.approximate_num_entries())
                .and_then(|r| r)
                .map_err(|e| l.read_error(e))?;
        }
        Ok(total)
    }
}

/// A read-only view of a window store across this instance's tasks; see the
/// [module docs](self).
pub struct ReadOnlyWindowStore<K, V> {
    locator: StoreLocator,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for ReadOnlyWindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyWindowStore")
            .field("store", &self.locator.store)
            .finish()
    }
}

impl<K: 'static, V: 'static> ReadOnlyWindowStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.locator.store
    }

    fn store_for(&self, key: &K) -> Result<WindowStore<K, V>> {
        let l = &self.locator;
        let bytes = self
            .keys
            .serialize(key)
            .map_err(|e| l.serde_error("key", e))?;
        let cell = window_cell(&l.store, l.for_key(&bytes)?)?;
        Ok(WindowStore::new(
            cell,
            self.keys.clone(),
            self.values.clone(),
        ))
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        self.store_for(key)?
            .fetch(key, window_start)
            .map_err(|e| self.locator.read_error(e))
    }

    /// The windows of `key` starting in `[time_from, time_to]`: `(window start, value)`.
    pub fn fetch_range(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(i64, V)>> {
        self.store_for(key)?
            .fetch_range(key, time_from, time_to)
            .map_err(|e| self.locator.read_error(e))
    }

    /// Every key's windows starting in `[time_from, time_to]`, of every local task, ordered by
    /// window start: `(key, window start, value)`.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<(K, i64, V)>> {
        let l = &self.locator;
        let mut all = Vec::new();
        for handle in l.all_running()? {
            let store = WindowStore::new(
                window_cell(&l.store, handle)?,
                self.keys.clone(),
                self.values.clone(),
            );
            all.extend(
                store
                    .fetch_all(time_from, time_to)
                    .map_err(|e| l.read_error(e))?,
            );
        }
        all.sort_by_key(|(_, start, _)| *start);
        Ok(all)
    }

    /// Every unexpired window of every local task.
    pub fn all(&self) -> Result<Vec<(K, i64, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

/// A read-only view of a session store across this instance's tasks; see the
/// [module docs](self).
pub struct ReadOnlySessionStore<K, V> {
    locator: StoreLocator,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for ReadOnlySessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlySessionStore")
            .field("store", &self.locator.store)
            .finish()
    }
}

impl<K: 'static, V: 'static> ReadOnlySessionStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.locator.store
    }

    fn store_for(&self, key: &K) -> Result<SessionStore<K, V>> {
        let l = &self.locator;
        let bytes = self
            .keys
            .serialize(key)
            .map_err(|e| l.serde_error("key", e))?;
        let cell = session_cell(&l.store, l.for_key(&bytes)?)?;
        Ok(SessionStore::new(
            cell,
            self.keys.clone(),
            self.values.clone(),
        ))
    }

    /// Every unexpired session of `key`, ordered by end, then start.
    pub fn fetch(&self, key: &K) -> Result<Vec<(SessionWindow, V)>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// The sessions of `key` that end at or after `earliest_session_end` and start at or before
    /// `latest_session_start`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<Vec<(SessionWindow, V)>> {
        self.store_for(key)?
            .find_sessions(key, earliest_session_end, latest_session_start)
            .map_err(|e| self.locator.read_error(e))
    }

    /// The value of one session of `key`.
    pub fn fetch_session(&self, key: &K, window: SessionWindow) -> Result<Option<V>> {
        self.store_for(key)?
            .fetch_session(key, window)
            .map_err(|e| self.locator.read_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_the_java_partitioner_puts_them() {
        // Kafka's `UtilsTest.testMurmur2` cases, through `toPositive(..) % partitions`.
        let java = [
            (&b"21"[..], -973_932_308i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in java {
            for partitions in [1, 4, 6, 7, i32::MAX] {
                let expected = ((hash as u32 & 0x7fff_ffff) % partitions as u32) as i32;
                assert_eq!(
                    partition_for_key(key, partitions),
                    expected,
                    "{key:?} of {partitions}"
                );
            }
        }
    }

    fn counts_store(entries: &[(&str, i64)]) -> StoreHandle {
        use state_stores::{Serdes, StoreBuilder};
        let mut store = StoreBuilder::in_memory("counts")
            .build_key_value()
            .expect("an in-memory store opens");
        for (k, v) in entries {
            let key = Serdes::string()
                .serialize(&(*k).to_owned())
                .expect("a string");
            let value = Serdes::i64().serialize(v).expect("an i64");
            store.put(&key, &value).expect("put");
        }
        StoreHandle::KeyValue(
            state_stores::StoreCell::new(store),
            ErasedSerde::new(state_stores::Serdes::string()),
            ErasedSerde::new(state_stores::Serdes::i64()),
        )
    }

    fn locator(view: SharedView, state: Arc<StateCell>, partitions: i32) -> StoreLocator {
        StoreLocator {
            store: "counts".into(),
            subtopology: 1,
            partitions,
            views: vec![view],
            state,
            keys: ErasedSerde::new(state_stores::Serdes::string()),
            values: ErasedSerde::new(state_stores::Serdes::i64()),
        }
    }

    fn partition_of(word: &str, partitions: i32) -> i32 {
        partition_for_key(word.as_bytes(), partitions)
    }

    #[test]
    fn lookups_answer_from_running_tasks_and_say_why_they_cannot() {
        let state = Arc::new(StateCell::new());
        let view = SharedView::default();
        let store = QueryableStoreTypes::key_value::<String, i64>()
            .view(locator(view.clone(), state.clone(), 2))
            .expect("the types match");
        let reason = |r: Result<Option<i64>>| match r {
            Err(StreamsError::StoreNotQueryable { store, reason }) => {
                assert_eq!(store, "counts");
                reason
            }
            other => panic!("expected a typed error, got {other:?}"),
        };
        assert_eq!(
            reason(store.get(&"a".into())),
            NotQueryableReason::NotRunning
        );
        state.set_threads(1);
        state.transition(State::Rebalancing);

        // Two words on different partitions; partition 0 restores, partition 1 runs.
        let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
        let w0 = words
            .iter()
            .find(|w| partition_of(w, 2) == 0)
            .expect("a word of 0")
            .clone();
        let w1 = words
            .iter()
            .find(|w| partition_of(w, 2) == 1)
            .expect("a word of 1")
            .clone();
        let task = |p| TaskId {
            subtopology: 1,
            partition: p,
        };
        view.lock().unwrap().tasks.insert(
            task(0),
            PublishedTask {
                running: false,
                stores: vec![("counts".into(), counts_store(&[(&w0, 7)]))],
                store_metrics: Vec::new(),
            },
        );
        assert_eq!(reason(store.get(&w0)), NotQueryableReason::Restoring);
        assert_eq!(
            reason(store.get(&w1)),
            NotQueryableReason::Migrating,
            "rebalancing, not here"
        );
        assert!(matches!(
            store.all(),
            Err(StreamsError::StoreNotQueryable {
                reason: NotQueryableReason::Restoring,
                ..
            })
        ));

        view.lock().unwrap().tasks.insert(
            task(1),
            PublishedTask {
                running: true,
                stores: vec![("counts".into(), counts_store(&[(&w1, 3)]))],
                store_metrics: Vec::new(),
            },
        );
        view.lock()
            .unwrap()
            .tasks
            .get_mut(&task(0))
            .expect("task 0")
            .running = true;
        state.thread(0, crate::runtime::state::ThreadState::Running);
        assert_eq!(store.get(&w0).expect("running"), Some(7));
        assert_eq!(store.get(&w1).expect("running"), Some(3));
        assert_eq!(store.get(&"never-seen".into()).expect("running"), None);
        let mut all = store.all().expect("both tasks run");
        all.sort();
        let mut expected = vec![(w0.clone(), 7), (w1.clone(), 3)];
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(store.prefix_scan(b"w").expect("scan").len(), 2);
        assert_eq!(store.approximate_num_entries().expect("count"), 2);

        // The task of w1 moves away: not local once the instance runs again.
        view.lock().unwrap().tasks.remove(&task(1));
        assert_eq!(reason(store.get(&w1)), NotQueryableReason::NotLocal);

        // A store closed under the view (its task is closing) reads as migrating.
        if let Some(PublishedTask { stores, .. }) = view.lock().unwrap().tasks.get(&task(0)) {
            stores[0].1.close().expect("close");
        }
        assert_eq!(reason(store.get(&w0)), NotQueryableReason::Migrating);
    }

    #[test]
    fn views_check_the_types() {
        let view = SharedView::default();
        let wrong = QueryableStoreTypes::key_value::<String, String>().view(locator(
            view,
            Arc::new(StateCell::new()),
            1,
        ));
        assert!(matches!(wrong, Err(StreamsError::Topology { .. })));
    }

    #[test]
    fn window_and_session_views_fetch_by_time() {
        use state_stores::{Serdes, StoreBuilder};
        let word = "w0".to_owned();
        let key = Serdes::string().serialize(&word).expect("a string");
        let partitions = 1;
        let value = |n: i64| Serdes::i64().serialize(&n).expect("an i64");

        let mut windows = StoreBuilder::in_memory("windows")
            .build_window(1_000_000, None)
            .expect("a window store");
        for (start, n) in [(0, 1), (1000, 2), (2000, 3)] {
            windows.put(&key, start, Some(&value(n))).expect("put");
        }
        let mut sessions = StoreBuilder::in_memory("sessions")
            .build_session(1_000_000, None)
            .expect("a session store");
        let session = SessionWindow { start: 10, end: 20 };
        sessions.put(&key, session, &value(5)).expect("put");

        let state = Arc::new(StateCell::new());
        state.set_threads(1);
        state.transition(State::Rebalancing);
        state.thread(0, crate::runtime::state::ThreadState::Running);
        let view = SharedView::default();
        let string = || ErasedSerde::new(Serdes::string());
        let long = || ErasedSerde::new(Serdes::i64());
        let w = StoreHandle::Window(state_stores::StoreCell::new(windows), string(), long());
        let s = StoreHandle::Session(state_stores::StoreCell::new(sessions), string(), long());
        view.lock().unwrap().tasks.insert(
            TaskId {
                subtopology: 0,
                partition: 0,
            },
            PublishedTask {
                running: true,
                stores: vec![("sessions".into(), s), ("windows".into(), w)],
                store_metrics: Vec::new(),
            },
        );
        let locate = |store: &str| StoreLocator {
            store: store.into(),
            subtopology: 0,
            partitions,
            views: vec![view.clone()],
            state: state.clone(),
            keys: ErasedSerde::new(Serdes::string()),
            values: ErasedSerde::new(Serdes::i64()),
        };
        let windows = QueryableStoreTypes::window::<String, i64>()
            .view(locate("windows"))
            .expect("types match");
        assert_eq!(windows.fetch(&word, 1000).expect("fetch"), Some(2));
        assert_eq!(
            windows.fetch_range(&word, 500, 2500).expect("range"),
            vec![(1000, 2), (2000, 3)]
        );
        assert_eq!(
            windows.fetch_all(0, 0).expect("all"),
            vec![(word.clone(), 0, 1)]
        );
        assert_eq!(windows.all().expect("all").len(), 3);

        let sessions = QueryableStoreTypes::session::<String, i64>()
            .view(locate("sessions"))
            .expect("types match");
        assert_eq!(sessions.fetch(&word).expect("fetch"), vec![(session, 5)]);
        assert_eq!(
            sessions.fetch_session(&word, session).expect("one"),
            Some(5)
        );
        assert!(sessions
            .find_sessions(&word, 21, 30)
            .expect("none")
            .is_empty());
    }
}
