//! [`TopologyTestDriver`]: runs a topology in process, without Kafka, deterministically.
//!
//! Every topic has one partition, so each sub-topology runs as a single task. Piping a record
//! into an input topic processes it completely before the call returns: records written to
//! topics that the topology itself reads (repartition topics) are fed back in, and every task
//! then commits, flushing its caches, so a KTable's update shows up at once, as in Kafka Streams'
//! test driver. Output records (including changelog and repartition records) are kept per topic
//! until read. Wall-clock time only moves when the test moves it. A record piped into the topic
//! of a global store, or written to it by the topology, updates that store at once (as if the
//! global thread had read it).
//!
//! ```
//! use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
//! use streams_core::record::Record;
//! use streams_core::topology::{SinkSpec, SourceSpec, TopologyBuilder};
//! use streams_core::{StreamsConfig, TopologyTestDriver};
//! use state_stores::Serdes;
//!
//! struct Length;
//! impl Processor<String, String, String, i64> for Length {
//!     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, i64>) -> ProcessorResult {
//!         let n = r.value.len() as i64;
//!         ctx.forward(r.with_value(n))
//!     }
//! }
//!
//! let mut b = TopologyBuilder::new();
//! b.add_source("in", &["words"], SourceSpec::new(Serdes::string(), Serdes::string()))?;
//! b.add_processor("len", || Length, &["in"])?;
//! b.add_sink("out", SinkSpec::new("lengths", Serdes::string(), Serdes::i64()), &["len"])?;
//! let driver = TopologyTestDriver::new(b.build()?, StreamsConfig::new("doc"))?;
//! let input = driver.create_input_topic("words", Serdes::string(), Serdes::string());
//! let output = driver.create_output_topic("lengths", Serdes::string(), Serdes::i64());
//! input.pipe_input("a".to_string(), "hello".to_string())?;
//! assert_eq!(output.read_key_value()?, Some(("a".to_string(), 5)));
//! # Ok::<(), streams_core::StreamsError>(())
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use state_stores::cache::CacheBudget;
use state_stores::serdes::{from_payload, to_payload, Serde};
use state_stores::state_dir::{StateDirectory, TaskDirectory};
use state_stores::typed::{KeyValueStore, SessionStore, WindowStore};
use state_stores::RocksDbMemory;

use crate::collector::{OutgoingRecord, RecordCollector};
use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::record::{Headers, RawRecord, Record};
use crate::runtime::global;
use crate::task::runtime::StoreHandle;
use crate::task::{StreamTask, TaskEnv, TaskId, TaskMetrics};
use crate::topology::Topology;

/// A record a topology wrote, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    /// The topic.
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

#[derive(Default)]
struct CapturingCollector {
    records: Mutex<Vec<ProducedRecord>>,
}

impl RecordCollector for CapturingCollector {
    fn send(&self, r: OutgoingRecord<'_>) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ProducedRecord {
                topic: r.topic.to_owned(),
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            });
        Ok(())
    }
}

struct DriverInner {
    topology: Arc<Topology>,
    application_id: String,
    /// One task per sub-topology (partition 0).
    tasks: Vec<StreamTask>,
    collector: Arc<CapturingCollector>,
    outputs: HashMap<String, VecDeque<ProducedRecord>>,
    next_offset: HashMap<String, i64>,
    wall_clock_ms: i64,
    state_root: PathBuf,
    /// Global stores (writable: the driver applies their topics), and the topic -> store they
    /// are read from.
    globals: HashMap<String, StoreHandle>,
    global_topics: HashMap<String, String>,
    /// The lock of the global stores' directory.
    _global_dir: Option<TaskDirectory>,
}

impl Drop for DriverInner {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            if let Err(e) = task.close() {
                tracing::warn!(error = %e, "closing a test driver task");
            }
        }
        for (name, store) in self.globals.iter() {
            if let Err(e) = store.close() {
                tracing::warn!(store = %name, error = %e, "closing a test driver global store");
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_root);
    }
}

impl DriverInner {
    fn task_reading(&self, topic: &str) -> Option<usize> {
        self.topology
            .subtopology_reading(topic, &self.application_id)
            .map(|s| s as usize)
    }

    /// Feeds one record to the task reading `topic` and runs everything until quiet.
    fn pipe(&mut self, topic: &str, mut raw: RawRecord) -> Result<()> {
        if let Some(store) = self.global_topics.get(topic) {
            // A global table's topic: the store is updated at once, as the global thread does.
            let handle = self
                .globals
                .get(store)
                .ok_or_else(|| StreamsError::topology(store, "no such global store"))?;
            return global::apply(
                handle,
                store,
                topic,
                raw.key.as_deref(),
                raw.value.as_deref(),
            );
        }
        let task = self.task_reading(topic).ok_or_else(|| {
            StreamsError::topology(topic, "no source of this topology reads this topic")
        })?;
        let offset = self.next_offset.entry(topic.to_owned()).or_insert(0);
        raw.offset = *offset;
        *offset += 1;
        self.tasks[task].add_records(topic, 0, [raw]);
        self.run_until_quiet()
    }

    /// Processes buffered records, routes outputs to the tasks that read them, and commits
    /// (flushes) every task, until nothing is left to do.
    fn run_until_quiet(&mut self) -> Result<()> {
        loop {
            let mut busy = false;
            for task in &mut self.tasks {
                while task.process_next()? {
                    busy = true;
                }
            }
            busy |= self.route_outputs()?;
            if busy {
                continue;
            }
            for task in &mut self.tasks {
                task.flush()?;
            }
            if !self.route_outputs()? {
                return Ok(());
            }
        }
    }

    /// Moves captured output to the per-topic output queues and to the tasks reading them;
    /// returns whether any task got input.
    fn route_outputs(&mut self) -> Result<bool> {
        let produced = std::mem::take(
            &mut *self
                .collector
                .records
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut fed = false;
        for record in produced {
            if let Some(store) = self.global_topics.get(&record.topic) {
                // Written to a global table's topic: the global thread would read it back.
                let handle = self
                    .globals
                    .get(store)
                    .ok_or_else(|| StreamsError::topology(store, "no such global store"))?;
                global::apply(
                    handle,
                    store,
                    &record.topic,
                    record.key.as_deref(),
                    record.value.as_deref(),
                )?;
            }
            if let Some(task) = self.task_reading(&record.topic) {
                let offset = self.next_offset.entry(record.topic.clone()).or_insert(0);
                let raw = RawRecord {
                    offset: *offset,
                    timestamp: record.timestamp,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                };
                *offset += 1;
                self.tasks[task].add_records(&record.topic, 0, [raw]);
                fed = true;
            }
            self.outputs
                .entry(record.topic.clone())
                .or_default()
                .push_back(record);
        }
        Ok(fed)
    }

    fn store(&self, name: &str) -> Result<&StoreHandle> {
        self.tasks
            .iter()
            .find_map(|t| t.store(name))
            .or_else(|| self.globals.get(name))
            .ok_or_else(|| StreamsError::topology(name, "no such store in this topology"))
    }
}

/// Runs a topology in process; see the [module docs](self).
pub struct TopologyTestDriver {
    inner: Rc<RefCell<DriverInner>>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("application_id", &self.inner.borrow().application_id)
            .finish()
    }
}

impl TopologyTestDriver {
    /// Builds the topology's tasks (one per sub-topology) with `config`: its application id,
    /// default serdes, handlers, cache size and state directory (a fresh directory under it is
    /// used and deleted when the driver is dropped). Wall-clock time starts at 0.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        let config = config.validate()?;
        topology.check_serdes(&config.defaults)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let state_root = config
            .state_dir
            .join(format!("test-driver-{}-{nanos}", std::process::id()));
        let state_dir = StateDirectory::new(&state_root, &config.application_id)?;
        let collector = Arc::new(CapturingCollector::default());
        let rocksdb = RocksDbMemory::new(config.rocksdb_memory_bytes.min(64 << 20))?;
        let global_dir = if topology.global_stores().is_empty() {
            None
        } else {
            Some(state_dir.lock_task(global::GLOBAL_DIR)?)
        };
        let globals =
            global::open_stores(&topology, &config.defaults, global_dir.as_ref(), &rocksdb)?;
        let global_topics = topology
            .global_stores()
            .iter()
            .map(|g| (g.topic.clone(), g.store.clone()))
            .collect();
        let env = TaskEnv {
            application_id: config.application_id.as_str().into(),
            defaults: config.defaults.clone(),
            collector: collector.clone(),
            state_dir,
            rocksdb,
            cache: CacheBudget::new(config.cache_max_bytes),
            store_latencies: config.store_latencies,
            deserialization: config.deserialization.clone(),
            timestamps: config.timestamps.clone(),
            processing: config.processing.clone(),
            dead_letter: config
                .dead_letter_queue
                .as_deref()
                .map(crate::dead_letter::DeadLetterQueue::new),
            wall_clock_ms: 0,
            // The driver commits no transactions: stores write through.
            transactional: false,
            globals: global::read_only(&globals),
        };
        let topology = Arc::new(topology);
        let mut tasks = Vec::new();
        for sub in topology.subtopologies() {
            let mut task = StreamTask::new(
                &topology,
                TaskId {
                    subtopology: sub.id(),
                    partition: 0,
                },
                &env,
            )?;
            task.init()?;
            tasks.push(task);
        }
        let inner = DriverInner {
            topology,
            application_id: config.application_id,
            tasks,
            collector,
            outputs: HashMap::new(),
            next_offset: HashMap::new(),
            wall_clock_ms: 0,
            state_root,
            globals,
            global_topics,
            _global_dir: global_dir,
        };
        let driver = TopologyTestDriver {
            inner: Rc::new(RefCell::new(inner)),
        };
        // Processors may have written in `init`.
        driver.inner.borrow_mut().run_until_quiet()?;
        Ok(driver)
    }

    /// An input topic with these serdes. Records piped without a timestamp get 0, then each the
    /// previous one's plus the topic's auto-advance (none by default).
    pub fn create_input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        keys: impl Serde<K>,
        values: impl Serde<V>,
    ) -> TestInputTopic<K, V> {
        self.create_input_topic_at(topic, keys, values, 0, Duration::ZERO)
    }

    /// An input topic whose records start at `start_timestamp` and advance by `auto_advance`.
    pub fn create_input_topic_at<K: 'static, V: 'static>(
        &self,
        topic: &str,
        keys: impl Serde<K>,
        values: impl Serde<V>,
        start_timestamp: i64,
        auto_advance: Duration,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            driver: self.inner.clone(),
            topic: topic.to_owned(),
            keys: Arc::new(keys),
            values: Arc::new(values),
            next_timestamp: RefCell::new(start_timestamp),
            advance_ms: i64::try_from(auto_advance.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// An output topic with these serdes.
    pub fn create_output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        keys: impl Serde<K>,
        values: impl Serde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            driver: self.inner.clone(),
            topic: topic.to_owned(),
            keys: Arc::new(keys),
            values: Arc::new(values),
        }
    }

    /// Moves wall-clock time forward, running wall-clock punctuations that come due.
    pub fn advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.wall_clock_ms = inner
            .wall_clock_ms
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let now = inner.wall_clock_ms;
        for task in &mut inner.tasks {
            task.advance_wall_clock(now)?;
        }
        inner.run_until_quiet()
    }

    /// The current wall-clock time (milliseconds since the driver started).
    pub fn wall_clock_time(&self) -> i64 {
        self.inner.borrow().wall_clock_ms
    }

    /// The key-value store `name`, typed.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<K, V>> {
        let inner = self.inner.borrow();
        match inner.store(name)? {
            StoreHandle::KeyValue(cell, keys, values) => Ok(KeyValueStore::new(
                cell.clone(),
                keys.downcast(name, "key")?,
                values.downcast(name, "value")?,
            )),
            _ => Err(StreamsError::topology(name, "is not a key-value store")),
        }
    }

    /// The window store `name`, typed.
    pub fn window_store<K: 'static, V: 'static>(&self, name: &str) -> Result<WindowStore<K, V>> {
        let inner = self.inner.borrow();
        match inner.store(name)? {
            StoreHandle::Window(cell, keys, values) => Ok(WindowStore::new(
                cell.clone(),
                keys.downcast(name, "key")?,
                values.downcast(name, "value")?,
            )),
            _ => Err(StreamsError::topology(name, "is not a window store")),
        }
    }

    /// The session store `name`, typed.
    pub fn session_store<K: 'static, V: 'static>(&self, name: &str) -> Result<SessionStore<K, V>> {
        let inner = self.inner.borrow();
        match inner.store(name)? {
            StoreHandle::Session(cell, keys, values) => Ok(SessionStore::new(
                cell.clone(),
                keys.downcast(name, "key")?,
                values.downcast(name, "value")?,
            )),
            _ => Err(StreamsError::topology(name, "is not a session store")),
        }
    }

    /// Counters summed over all tasks.
    pub fn metrics(&self) -> TaskMetrics {
        let inner = self.inner.borrow();
        inner
            .tasks
            .iter()
            .fold(TaskMetrics::default(), |mut acc, t| {
                acc.processed += t.metrics.processed;
                acc.skipped += t.metrics.skipped;
                acc.punctuations += t.metrics.punctuations;
                acc.dropped_late += t.metrics.dropped_late;
                acc.dropped_null_key += t.metrics.dropped_null_key;
                acc.processing_skipped += t.metrics.processing_skipped;
                acc.dead_lettered += t.metrics.dead_lettered;
                acc
            })
    }

    /// Topics that have output waiting to be read.
    pub fn output_topics(&self) -> Vec<String> {
        let inner = self.inner.borrow();
        let mut topics: Vec<String> = inner
            .outputs
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        topics.sort();
        topics
    }

    /// Pipes raw bytes into `topic` (for records no serde can produce, such as invalid UTF-8).
    pub fn pipe_raw(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
    ) -> Result<()> {
        self.inner.borrow_mut().pipe(
            topic,
            RawRecord {
                offset: 0,
                timestamp,
                key,
                value,
                headers: Headers::new(),
            },
        )
    }
}

/// An input topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    driver: Rc<RefCell<DriverInner>>,
    topic: String,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
    next_timestamp: RefCell<i64>,
    advance_ms: i64,
}

impl<K: 'static, V: 'static> TestInputTopic<K, V> {
    fn serde_error(&self, source: state_stores::SerdeError) -> StreamsError {
        StreamsError::Serde {
            location: format!("test input topic `{}`", self.topic),
            source,
        }
    }

    fn auto_timestamp(&self) -> i64 {
        let mut next = self.next_timestamp.borrow_mut();
        let ts = *next;
        *next = next.saturating_add(self.advance_ms);
        ts
    }

    /// Pipes a record; returns once it (and everything it caused) is processed.
    pub fn pipe_record(&self, record: Record<K, V>) -> Result<()> {
        let key = to_payload(&*self.keys, &record.key).map_err(|e| self.serde_error(e))?;
        let value = to_payload(&*self.values, &record.value).map_err(|e| self.serde_error(e))?;
        self.driver.borrow_mut().pipe(
            &self.topic,
            RawRecord {
                offset: 0,
                timestamp: record.timestamp,
                key,
                value,
                headers: record.headers,
            },
        )
    }

    /// Pipes `key` and `value` with the next automatic timestamp.
    pub fn pipe_input(&self, key: K, value: V) -> Result<()> {
        let ts = self.auto_timestamp();
        self.pipe_record(Record::new(key, value, ts))
    }

    /// Pipes `key` and `value` at `timestamp`.
    pub fn pipe_input_at(&self, key: K, value: V, timestamp: i64) -> Result<()> {
        self.pipe_record(Record::new(key, value, timestamp))
    }

    /// Pipes `value` with a null key.
    pub fn pipe_value(&self, value: V) -> Result<()> {
        let value = to_payload(&*self.values, &value).map_err(|e| self.serde_error(e))?;
        let ts = self.auto_timestamp();
        self.driver.borrow_mut().pipe(
            &self.topic,
            RawRecord {
                offset: 0,
                timestamp: ts,
                key: None,
                value,
                headers: Headers::new(),
            },
        )
    }

    /// Pipes each `(key, value)` in turn.
    pub fn pipe_key_values(&self, records: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        records
            .into_iter()
            .try_for_each(|(k, v)| self.pipe_input(k, v))
    }

    /// Pipes each value in turn, with null keys.
    pub fn pipe_values(&self, values: impl IntoIterator<Item = V>) -> Result<()> {
        values.into_iter().try_for_each(|v| self.pipe_value(v))
    }

    /// Moves this topic's automatic timestamp forward.
    pub fn advance_time(&self, by: Duration) {
        let mut next = self.next_timestamp.borrow_mut();
        *next = next.saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }
}

/// A record read from an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The timestamp.
    pub timestamp: i64,
    /// The headers.
    pub headers: Headers,
}

/// An output topic of a [`TopologyTestDriver`].
pub struct TestOutputTopic<K, V> {
    driver: Rc<RefCell<DriverInner>>,
    topic: String,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> TestOutputTopic<K, V> {
    /// Reads the next record, oldest first.
    pub fn read_record(&self) -> Result<Option<TestRecord<K, V>>> {
        let next = self
            .driver
            .borrow_mut()
            .outputs
            .get_mut(&self.topic)
            .and_then(VecDeque::pop_front);
        let Some(r) = next else {
            return Ok(None);
        };
        let serde_error = |source| StreamsError::Serde {
            location: format!("test output topic `{}`", self.topic),
            source,
        };
        Ok(Some(TestRecord {
            key: from_payload(&*self.keys, r.key.as_deref()).map_err(serde_error)?,
            value: from_payload(&*self.values, r.value.as_deref()).map_err(serde_error)?,
            timestamp: r.timestamp,
            headers: r.headers,
        }))
    }

    /// Reads the next key and value.
    pub fn read_key_value(&self) -> Result<Option<(K, V)>> {
        Ok(self.read_record()?.map(|r| (r.key, r.value)))
    }

    /// Reads the next value.
    pub fn read_value(&self) -> Result<Option<V>> {
        Ok(self.read_record()?.map(|r| r.value))
    }

    /// Reads every waiting record.
    pub fn read_records_to_list(&self) -> Result<Vec<TestRecord<K, V>>> {
        std::iter::from_fn(|| self.read_record().transpose()).collect()
    }

    /// Reads every waiting key and value.
    pub fn read_key_values_to_list(&self) -> Result<Vec<(K, V)>> {
        std::iter::from_fn(|| self.read_key_value().transpose()).collect()
    }

    /// Reads every waiting value.
    pub fn read_values_to_list(&self) -> Result<Vec<V>> {
        std::iter::from_fn(|| self.read_value().transpose()).collect()
    }

    /// Reads every waiting record into a map: the last value of each key.
    pub fn read_key_values_to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Hash + Eq,
    {
        Ok(self.read_key_values_to_list()?.into_iter().collect())
    }

    /// How many records wait to be read.
    pub fn queue_size(&self) -> usize {
        self.driver
            .borrow()
            .outputs
            .get(&self.topic)
            .map_or(0, VecDeque::len)
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }
}
