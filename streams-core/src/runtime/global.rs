//! Global stores: every partition of a topic, replicated in full on every instance.
//!
//! A global store (see [`TopologyBuilder::add_global_store`]) holds the key and value bytes of
//! every record of its topic, the latest per key; a null value deletes the key and records with
//! a null key are skipped. The topic is the store's changelog: the store logs nothing itself.
//!
//! [`GlobalStateUpdater::start`] runs in `KafkaStreams::start` before any stream thread is
//! spawned: it opens the instance's global stores (in `<state dir>/<application id>/global`,
//! RocksDB or in memory per the store's definition), assigns one consumer (no group) to every
//! partition of their topics and restores them up to the end offsets read at that moment, so
//! tasks see the whole table before they process their first record. It then hands the stores
//! to one global thread that keeps them up to date until the instance closes; the stream
//! threads read them concurrently (each read takes the store's lock briefly). Under
//! `exactly_once_v2` the consumer reads committed records only.
//!
//! Where a task store records its changelog offset inside the store (one changelog partition
//! per store), a global store follows many partitions: the offsets it reached are written to a
//! checkpoint file (`.checkpoint`, one `topic partition offset` line per partition) after the
//! stores were flushed, every `commit.interval.ms` and on close. A restart with persistent
//! stores and a checkpoint restores only the records after it; without a checkpoint (or with
//! in-memory stores) the stores are restored from the start of the topic, and so they are when
//! a checkpointed offset lies outside its partition's log (the topic was recreated or
//! truncated): the stores are wiped first. The store may be ahead of its checkpoint after a
//! crash; replaying records it already holds leaves the same table.
//!
//! [`TopologyBuilder::add_global_store`]: crate::topology::TopologyBuilder::add_global_store

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use state_stores::state_dir::{StateDirectory, TaskDirectory};
use state_stores::store::{ChangelogRecord, KeyValueBytesStore, KeyValueIter, StateStore};
use state_stores::typed::{SharedKeyValueStore, StoreCell};
use state_stores::{RocksDbMemory, StoreBuilder, StoreError};

use super::client_log::TracingContext;
use super::state::StateCell;
use crate::config::{ProcessingGuarantee, ResolvedConfig};
use crate::error::{Result, StreamsError};
use crate::serde_slot::DefaultSerdes;
use crate::task::runtime::StoreHandle;
use crate::task::GlobalStores;
use crate::topology::Topology;

/// The directory (under the application's state directory) holding the global stores.
pub(crate) const GLOBAL_DIR: &str = state_stores::state_dir::GLOBAL_TASK_DIR;
const CHECKPOINT_FILE: &str = ".checkpoint";
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn global_error(store: &str, topic: &str, reason: impl Into<String>) -> StreamsError {
    StreamsError::GlobalStore {
        store: store.to_owned(),
        topic: topic.to_owned(),
        reason: reason.into(),
    }
}

/// Opens the global stores of `topology`: RocksDB in `dir` for persistent ones when a
/// directory is given, in memory otherwise.
pub(crate) fn open_stores(
    topology: &Topology,
    defaults: &DefaultSerdes,
    dir: Option<&TaskDirectory>,
    rocksdb: &RocksDbMemory,
) -> Result<HashMap<String, StoreHandle>> {
    let mut stores = HashMap::new();
    for global in topology.global_stores() {
        let name = &global.store;
        let def = topology
            .store(name)
            .ok_or_else(|| global_error(name, &global.topic, "the store is not defined"))?;
        let (keys, values) = def.serdes.resolve(defaults, name)?;
        let builder = match (dir, def.persistent) {
            (Some(dir), true) => StoreBuilder::rocksdb(name, dir.store_path(name), rocksdb),
            _ => StoreBuilder::in_memory(name),
        };
        let store = builder.build_key_value().map_err(|e| {
            global_error(name, &global.topic, format!("cannot open the store: {e}"))
        })?;
        stores.insert(
            name.clone(),
            StoreHandle::KeyValue(StoreCell::new(store), keys, values),
        );
    }
    Ok(stores)
}

/// The stores as tasks see them: read-only views of `stores` (a write fails, naming the store).
pub(crate) fn read_only(stores: &HashMap<String, StoreHandle>) -> GlobalStores {
    Arc::new(
        stores
            .iter()
            .filter_map(|(name, handle)| match handle {
                StoreHandle::KeyValue(cell, keys, values) => Some((
                    name.clone(),
                    StoreHandle::KeyValue(
                        StoreCell::new(Box::new(ReadOnlyKeyValue {
                            name: name.clone(),
                            inner: cell.clone(),
                        }) as Box<dyn KeyValueBytesStore>),
                        keys.clone(),
                        values.clone(),
                    ),
                )),
                _ => None,
            })
            .collect(),
    )
}

/// A global store as a task sees it: reads go to the store, writes fail. Only the global
/// thread writes, flushes and closes the store itself.
struct ReadOnlyKeyValue {
    name: String,
    inner: SharedKeyValueStore,
}

impl ReadOnlyKeyValue {
    fn refuse<T>(&self) -> state_stores::Result<T> {
        Err(StoreError::Config {
            store: self.name.clone(),
            reason: "it is a global store, read-only for processors: only its topic updates it"
                .into(),
        })
    }
}

impl StateStore for ReadOnlyKeyValue {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        false
    }

    fn flush(&mut self) -> state_stores::Result<()> {
        Ok(())
    }

    fn close(&mut self) -> state_stores::Result<()> {
        Ok(())
    }

    fn restore_batch(&mut self, _records: &[ChangelogRecord]) -> state_stores::Result<()> {
        self.refuse()
    }
}

impl KeyValueBytesStore for ReadOnlyKeyValue {
    fn get(&self, key: &[u8]) -> state_stores::Result<Option<Vec<u8>>> {
        self.inner.with(|s| s.get(key))?
    }

    fn put(&mut self, _key: &[u8], _value: &[u8]) -> state_stores::Result<()> {
        self.refuse()
    }

    fn delete(&mut self, _key: &[u8]) -> state_stores::Result<Option<Vec<u8>>> {
        self.refuse()
    }

    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> state_stores::Result<KeyValueIter<'_>> {
        // The store's lock cannot outlive this call: the entries are read at once.
        let entries = self
            .inner
            .with(|s| s.range(from, to)?.collect::<state_stores::Result<Vec<_>>>())??;
        Ok(Box::new(entries.into_iter().map(Ok)))
    }

    fn approximate_num_entries(&self) -> state_stores::Result<u64> {
        self.inner.with(|s| s.approximate_num_entries())?
    }
}

/// Applies one record of `topic` to the global store `store`: a put, or a delete for a null
/// value; a record with a null key is skipped.
pub(crate) fn apply(
    handle: &StoreHandle,
    store: &str,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<()> {
    let StoreHandle::KeyValue(cell, ..) = handle else {
        return Err(global_error(store, topic, "is not a key-value store"));
    };
    let Some(key) = key else {
        tracing::debug!(
            store,
            topic,
            "skipping a global table record with a null key"
        );
        return Ok(());
    };
    let written = match value {
        Some(value) => cell.with(|s| s.put(key, value)),
        None => cell.with(|s| s.delete(key).map(|_| ())),
    };
    written
        .and_then(|r| r)
        .map_err(|e| global_error(store, topic, format!("cannot write: {e}")))
}

/// Reads a checkpoint file: `(topic, partition) -> next offset`. `None` if there is none or it
/// cannot be read (the stores are then restored from the start).
fn read_checkpoint(path: &Path) -> Option<BTreeMap<(String, i32), i64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut offsets = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split(' ');
        let (Some(topic), Some(partition), Some(offset), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!(file = %path.display(), line, "malformed global checkpoint; restoring the global stores in full");
            return None;
        };
        match (partition.parse(), offset.parse()) {
            (Ok(p), Ok(o)) => {
                offsets.insert((topic.to_owned(), p), o);
            }
            _ => {
                tracing::warn!(file = %path.display(), line, "malformed global checkpoint; restoring the global stores in full");
                return None;
            }
        }
    }
    Some(offsets)
}

/// Writes a checkpoint file atomically (a temporary file renamed over it).
fn write_checkpoint(path: &Path, offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
    let mut text = String::new();
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            StreamsError::Fatal(format!(
                "writing the global checkpoint {}: {e}",
                path.display()
            ))
        })
}

/// How many records the global stores took in.
#[derive(Debug, Default)]
pub(crate) struct GlobalCounters {
    /// Restored at start.
    pub(crate) restored: AtomicU64,
    /// Applied by the global thread after the restore.
    pub(crate) applied: AtomicU64,
}

/// What the global thread shares with its instance.
pub(crate) struct InstanceLinks {
    /// Where a failure is reported.
    pub(crate) state: Arc<StateCell>,
    /// Set when the instance stops.
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Stream threads alive: the stores close once none is.
    pub(crate) live: Arc<AtomicUsize>,
    /// What the global stores took in.
    pub(crate) counters: Arc<GlobalCounters>,
}

/// The global stores of a running instance and the thread keeping them up to date.
pub(crate) struct GlobalStateUpdater {
    stores: GlobalStores,
    thread: Option<JoinHandle<()>>,
}

impl GlobalStateUpdater {
    /// No global stores.
    pub(crate) fn none() -> Self {
        GlobalStateUpdater {
            stores: Arc::new(HashMap::new()),
            thread: None,
        }
    }

    /// The stores as the tasks see them (read-only).
    pub(crate) fn stores(&self) -> GlobalStores {
        self.stores.clone()
    }

    /// The global thread, for `close` to wait on.
    pub(crate) fn take_thread(&mut self) -> Option<JoinHandle<()>> {
        self.thread.take()
    }

    /// Opens and restores the global stores, then starts the global thread; see the
    /// [module docs](self). Blocks until the stores are restored. The thread stops when
    /// `shutdown` is set and closes the stores once the `live` stream threads are down to zero
    /// (so no task reads a closed store); it reports a failure to `state`.
    pub(crate) fn start(
        topology: &Topology,
        config: &ResolvedConfig,
        state_dir: &StateDirectory,
        rocksdb: &RocksDbMemory,
        links: InstanceLinks,
    ) -> Result<Self> {
        let InstanceLinks {
            state,
            shutdown,
            live,
            counters,
        } = links;
        if topology.global_stores().is_empty() {
            return Ok(Self::none());
        }
        let mut dir = state_dir.lock_task(GLOBAL_DIR)?;
        let checkpoint_path = dir.path().join(CHECKPOINT_FILE);
        // Only persistent stores keep what the checkpoint covers; in-memory ones start empty.
        let persistent_topics: Vec<&str> = topology
            .global_stores()
            .iter()
            .filter(|g| topology.store(&g.store).is_some_and(|d| d.persistent))
            .map(|g| g.topic.as_str())
            .collect();
        let checkpoint = read_checkpoint(&checkpoint_path).map(|offsets| {
            offsets
                .into_iter()
                .filter(|((topic, _), _)| persistent_topics.contains(&topic.as_str()))
                .collect::<BTreeMap<_, _>>()
        });
        if checkpoint.is_none() {
            // Whatever is on disk is of unknown age: rebuild from the start of the topics.
            dir.wipe()?;
        }
        let mut checkpoint = checkpoint.unwrap_or_default();
        let (mut updater, views) = loop {
            let stores = open_stores(topology, &config.defaults, Some(&dir), rocksdb)?;
            let views = read_only(&stores);
            let mut updater = Updater::new(config, topology, stores, dir, checkpoint_path.clone())?;
            if updater.assign(&checkpoint)? || checkpoint.is_empty() {
                break (updater, views);
            }
            // A checkpoint outside the log (the topic was recreated or truncated): the stores
            // cannot be trusted; rebuild them from the start.
            tracing::warn!(
                dir = %state_dir.path().display(),
                "the global checkpoint is outside the topics' logs; restoring the global stores in full"
            );
            drop(views);
            updater.close();
            dir = state_dir.lock_task(GLOBAL_DIR)?;
            dir.wipe()?;
            checkpoint.clear();
        };
        let restored = updater.restore(&shutdown)?;
        counters.restored.store(restored, Ordering::Relaxed);
        let name = format!("{}-GlobalStreamThread", config.application_id);
        let commit_interval = config.commit_interval;
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = updater.run(&shutdown, commit_interval, &counters) {
                    tracing::error!(thread = %name, error = %e, "the global thread failed; stopping the instance");
                    state.fail(e);
                    shutdown.store(true, Ordering::Relaxed);
                }
                // Tasks read the stores until their threads are gone.
                while live.load(Ordering::Acquire) > 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                updater.close();
            })
            .map_err(|e| StreamsError::Fatal(format!("spawning the global thread: {e}")))?;
        Ok(GlobalStateUpdater {
            stores: views,
            thread: Some(thread),
        })
    }
}

/// What the global thread owns.
struct Updater {
    consumer: BaseConsumer<TracingContext>,
    stores: GlobalStores,
    /// Topic -> store.
    topics: HashMap<String, String>,
    /// Next offset per partition, as applied.
    offsets: BTreeMap<(String, i32), i64>,
    dir: TaskDirectory,
    checkpoint: PathBuf,
}

impl Updater {
    fn new(
        config: &ResolvedConfig,
        topology: &Topology,
        stores: HashMap<String, StoreHandle>,
        dir: TaskDirectory,
        checkpoint: PathBuf,
    ) -> Result<Self> {
        let app = &config.application_id;
        let mut client: ClientConfig =
            super::topics::client_config(config, &std::collections::BTreeMap::new())?;
        for (k, v) in &config.consumer {
            if !k.starts_with("group.") {
                client.set(k, v);
            }
        }
        client
            .set("group.id", format!("{app}-global"))
            .set("client.id", format!("{app}-global-consumer"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                if config.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        let consumer: BaseConsumer<TracingContext> = client
            .create_with_context(TracingContext)
            .map_err(|e| StreamsError::kafka("creating the global consumer", e))?;
        let topics = topology
            .global_stores()
            .iter()
            .map(|g| (g.topic.clone(), g.store.clone()))
            .collect();
        Ok(Updater {
            consumer,
            stores: Arc::new(stores),
            topics,
            offsets: BTreeMap::new(),
            dir,
            checkpoint,
        })
    }

    /// Assigns every partition of every global topic, from the checkpointed offset or the start.
    /// Returns `false`, assigning nothing, if a checkpointed offset is outside its partition's
    /// log.
    fn assign(&mut self, checkpoint: &BTreeMap<(String, i32), i64>) -> Result<bool> {
        let mut tpl = TopicPartitionList::new();
        for (topic, store) in &self.topics {
            let md = self
                .consumer
                .fetch_metadata(Some(topic), WATERMARK_TIMEOUT)
                .map_err(|e| {
                    StreamsError::kafka(format!("fetching the metadata of `{topic}`"), e)
                })?;
            let partitions: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(StreamsError::MissingSourceTopics {
                    topics: vec![topic.clone()],
                });
            }
            tracing::debug!(store = %store, topic = %topic, partitions = partitions.len(), "global store assigned");
            for p in partitions {
                let offset = match checkpoint.get(&(topic.clone(), p)) {
                    Some(o) => {
                        let (low, high) = self
                            .consumer
                            .fetch_watermarks(topic, p, WATERMARK_TIMEOUT)
                            .map_err(|e| {
                                StreamsError::kafka(
                                    format!("reading the offsets of `{topic}`-{p}"),
                                    e,
                                )
                            })?;
                        if *o < low || *o > high {
                            tracing::warn!(store = %store, topic = %topic, partition = p, checkpoint = *o, low, high, "checkpointed offset outside the log");
                            self.offsets.clear();
                            return Ok(false);
                        }
                        Offset::Offset(*o)
                    }
                    None => Offset::Beginning,
                };
                if let Offset::Offset(o) = offset {
                    self.offsets.insert((topic.clone(), p), o);
                }
                tpl.add_partition_offset(topic, p, offset)
                    .map_err(|e| StreamsError::kafka(format!("assigning `{topic}`"), e))?;
            }
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| StreamsError::kafka("assigning the global topics", e))?;
        Ok(true)
    }

    /// Reads until every partition reached the end offset it had when the restore began.
    fn restore(&mut self, shutdown: &AtomicBool) -> Result<u64> {
        let started = Instant::now();
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| StreamsError::kafka("reading the global assignment", e))?;
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for e in assignment.elements() {
            let (_, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), WATERMARK_TIMEOUT)
                .map_err(|err| {
                    StreamsError::kafka(
                        format!(
                            "reading the end offsets of `{}`-{}",
                            e.topic(),
                            e.partition()
                        ),
                        err,
                    )
                })?;
            ends.insert((e.topic().to_owned(), e.partition()), high);
        }
        let mut restored = 0u64;
        let mut last_progress = Instant::now();
        loop {
            let behind: Vec<&(String, i32)> = ends
                .iter()
                .filter(|(k, end)| self.position(k) < **end)
                .map(|(k, _)| k)
                .collect();
            if behind.is_empty() {
                break;
            }
            if shutdown.load(Ordering::Relaxed) {
                return Ok(restored);
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                tracing::info!(
                    restored,
                    behind = behind.len(),
                    "restoring the global stores"
                );
                last_progress = Instant::now();
            }
            restored += self.poll_once()?;
        }
        self.checkpoint()?;
        tracing::info!(
            restored,
            partitions = ends.len(),
            ms = started.elapsed().as_millis() as u64,
            "global stores restored"
        );
        Ok(restored)
    }

    /// The next offset of a partition: the larger of what was applied and the consumer's
    /// position (which passes transaction markers).
    fn position(&self, key: &(String, i32)) -> i64 {
        let applied = self.offsets.get(key).copied().unwrap_or(0);
        let position = self
            .consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&key.0, key.1)
                    .and_then(|e| e.offset().to_raw())
            })
            .unwrap_or(0);
        applied.max(position)
    }

    /// Polls once and applies what arrives; returns how many records were applied.
    fn poll_once(&mut self) -> Result<u64> {
        let mut applied = 0;
        let mut wait = POLL;
        while let Some(message) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    // librdkafka reconnects on its own; the next poll retries.
                    tracing::warn!(error = %e, "reading the global topics");
                    break;
                }
            };
            let topic = message.topic();
            let Some(store) = self.topics.get(topic) else {
                continue;
            };
            let handle = self
                .stores
                .get(store)
                .ok_or_else(|| global_error(store, topic, "the store is not open"))?;
            apply(handle, store, topic, message.key(), message.payload())?;
            self.offsets.insert(
                (topic.to_owned(), message.partition()),
                message.offset() + 1,
            );
            applied += 1;
            if applied >= 10_000 {
                break;
            }
        }
        Ok(applied)
    }

    /// Flushes the stores, then records the offsets they reached.
    fn checkpoint(&mut self) -> Result<()> {
        for (name, handle) in self.stores.iter() {
            handle.flush().map_err(|e| {
                let topic = self
                    .topics
                    .iter()
                    .find(|(_, s)| *s == name)
                    .map(|(t, _)| t.clone())
                    .unwrap_or_default();
                global_error(name, &topic, format!("cannot flush: {e}"))
            })?;
        }
        // Partitions passed only by markers (no record) count at the consumer's position.
        if let Ok(tpl) = self.consumer.position() {
            for e in tpl.elements() {
                if let Some(o) = e.offset().to_raw().filter(|o| *o >= 0) {
                    let entry = self
                        .offsets
                        .entry((e.topic().to_owned(), e.partition()))
                        .or_insert(o);
                    *entry = (*entry).max(o);
                }
            }
        }
        write_checkpoint(&self.checkpoint, &self.offsets)
    }

    /// Keeps the stores up to date until `shutdown`.
    fn run(
        &mut self,
        shutdown: &AtomicBool,
        commit_interval: Duration,
        counters: &GlobalCounters,
    ) -> Result<()> {
        let mut last_checkpoint = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            let applied = self.poll_once()?;
            counters.applied.fetch_add(applied, Ordering::Relaxed);
            if last_checkpoint.elapsed() >= commit_interval {
                self.checkpoint()?;
                last_checkpoint = Instant::now();
            }
        }
        self.checkpoint()
    }

    /// Closes the stores (their lock with them); called once no task reads them.
    fn close(self) {
        for (name, handle) in self.stores.iter() {
            if let Err(e) = handle.close() {
                tracing::warn!(store = %name, error = %e, "closing a global store");
            }
        }
        tracing::debug!(dir = %self.dir.path().display(), "global stores closed");
    }
}
