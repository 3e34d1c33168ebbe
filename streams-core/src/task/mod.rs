//! Tasks: one sub-topology running on one partition of its input topics.
//!
//! A [`StreamTask`](crate::task::StreamTask) owns the processors of its sub-topology, its state
//! stores (in its locked task directory), and a buffer per input partition. It processes one
//! record at a time, choosing the buffered record with the lowest timestamp; stream time is the
//! largest timestamp processed. It runs stream-time punctuation after each record and wall-clock
//! punctuation when asked. A commit flushes its stores (caches first, in topological order, so a
//! downstream cache sees what an upstream one emitted) and then reports the input offsets to
//! commit; once the commit went through, [`StreamTask::commit_stores`] records the changelog
//! offsets in the stores (applying, under exactly-once, the writes their transactional RocksDB
//! stores held back). A task closed after a failure ([`StreamTask::close_dirty`]) drops what was
//! not committed. A processor that fails on a record, by an error or a panic, is judged by the
//! processing handler. The same task type runs in the test driver and on Kafka.

pub(crate) mod queue;
pub(crate) mod runtime;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use state_stores::cache::CacheBudget;
use state_stores::caching::CachingConfig;
use state_stores::changelog::Changelog;
use state_stores::metering::StoreMetrics;
use state_stores::state_dir::{StateDirectory, TaskDirectory};
use state_stores::typed::StoreCell;
use state_stores::{ChangelogRecord, RocksDbMemory, StoreBuilder};

use crate::collector::{CollectorChangelogSink, RecordCollector};
use crate::dead_letter::{exception_name, DeadLetterQueue, FailedRecord};
use crate::error::{Result, StreamsError};
use crate::handlers::{
    ErrorContext, HandlerResponse, SharedDeserializationHandler, SharedProcessingHandler,
};
use crate::processor::{BoxError, PunctuationType};
use crate::record::{RawRecord, RecordMetadata};
use crate::serde_slot::DefaultSerdes;
use crate::timestamps::{InvalidTimestampPolicy, TimestampSettings};
use crate::topology::{DecodeError, NodeKind, SourceDecoder, StoreKind, Topology};
use queue::PartitionGroup;
pub(crate) use runtime::panic_message;
pub(crate) use runtime::GlobalStores;
pub(crate) use runtime::Panicked;
use runtime::{Exec, NodeFailure, NodeSlot, Punctuators, StoreHandle, TaskRuntime, TaskShared};

/// A task's identity: sub-topology and partition, written `<sub-topology>_<partition>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The partition of its input topics.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// What a task needs from its surroundings.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub(crate) application_id: Arc<str>,
    pub(crate) defaults: DefaultSerdes,
    pub(crate) collector: Arc<dyn RecordCollector>,
    pub(crate) state_dir: StateDirectory,
    pub(crate) rocksdb: RocksDbMemory,
    pub(crate) cache: CacheBudget,
    /// `metrics.recording.level` asks for store latencies.
    pub(crate) store_latencies: bool,
    pub(crate) deserialization: SharedDeserializationHandler,
    pub(crate) timestamps: TimestampSettings,
    pub(crate) processing: SharedProcessingHandler,
    /// Where records the handlers judge are written, if anywhere.
    pub(crate) dead_letter: Option<DeadLetterQueue>,
    pub(crate) wall_clock_ms: i64,
    /// Exactly-once: RocksDB stores hold the open transaction's writes until the commit.
    pub(crate) transactional: bool,
    /// The instance's global stores.
    pub(crate) globals: GlobalStores,
}

/// One store's changelog partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangelogPartition {
    pub(crate) store: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) persistent: bool,
}

/// Counters of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records processed.
    pub processed: u64,
    /// Records skipped at the source: unreadable ones the deserialization handler let go, and
    /// records with a negative timestamp under the log-and-skip policy.
    pub skipped: u64,
    /// Punctuations run.
    pub punctuations: u64,
    /// Records that windowed operators dropped because their window had closed, counted once
    /// per window they could not join (as Kafka Streams' dropped-records sensor does).
    pub dropped_late: u64,
    /// Records stateful operators (aggregations, tables, joins) skipped because their key was
    /// null, as Kafka Streams does.
    pub dropped_null_key: u64,
    /// Records skipped because a processor failed on them and the processing handler said to
    /// continue.
    pub processing_skipped: u64,
    /// Records written to the dead-letter queue (unreadable ones and ones a processor failed
    /// on).
    pub dead_lettered: u64,
}

pub(crate) struct StreamTask {
    pub(crate) id: TaskId,
    rt: TaskRuntime,
    /// Full source topic -> (source node, decoder).
    sources: HashMap<String, (usize, Box<dyn SourceDecoder>)>,
    queues: PartitionGroup,
    /// Processors (parents first) and the stores each uses, for flushing.
    flush_plan: Vec<(usize, Vec<String>)>,
    handler: SharedDeserializationHandler,
    timestamps: TimestampSettings,
    processing: SharedProcessingHandler,
    dead_letter: Option<DeadLetterQueue>,
    /// Next offset to commit per input partition, advanced as records are taken.
    changelogs: Vec<ChangelogPartition>,
    dir: Option<TaskDirectory>,
    pub(crate) metrics: TaskMetrics,
    initialized: bool,
    /// What the metering layer of each store records.
    pub(crate) store_metrics: Vec<(String, Arc<StoreMetrics>)>,
}

impl StreamTask {
    /// Creates the task: locks its directory if it has state, opens its stores, instantiates its
    /// processors (not yet initialized: restore first, then [`init`](Self::init)).
    pub(crate) fn new(topology: &Topology, id: TaskId, env: &TaskEnv) -> Result<Self> {
        let sub = topology
            .subtopologies
            .get(id.subtopology as usize)
            .ok_or_else(|| {
                StreamsError::Fatal(format!("task {id}: no sub-topology {}", id.subtopology))
            })?;

        let dir = if sub.stores.is_empty() {
            None
        } else {
            Some(env.state_dir.lock_task(&id.to_string())?)
        };

        // Stores. Local state that cannot be opened (damaged files, a malformed committed
        // offset) is wiped, with the lock held, and rebuilt from the changelogs.
        let timestamp = Arc::new(AtomicI64::new(0));
        let metering = Mutex::new(Vec::new());
        let (stores, changelogs) = match Self::open_stores(
            topology, sub, id, env, &dir, &timestamp, &metering,
        ) {
            Err(StreamsError::Store(
                e @ (state_stores::StoreError::RocksDb { .. }
                | state_stores::StoreError::CorruptCheckpoint { .. }),
            )) if dir.is_some() => {
                tracing::warn!(task = %id, error = %e, "local state cannot be opened; wiping it and restoring from the changelogs");
                if let Some(dir) = &dir {
                    dir.wipe()?;
                }
                Self::open_stores(topology, sub, id, env, &dir, &timestamp, &metering)?
            }
            other => other?,
        };

        let store_metrics = stores
            .keys()
            .filter_map(|name| {
                // The last opening (after a wipe, the second) is the one in use.
                metering
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(n, m)| (n.clone(), m.clone()))
            })
            .collect();
        let mut task = Self::assemble(topology, sub, id, env, dir, stores, changelogs, timestamp)?;
        task.store_metrics = store_metrics;
        Ok(task)
    }

    /// Opens the stores of sub-topology `sub` for task `id`.
    fn open_stores(
        topology: &Topology,
        sub: &crate::topology::SubTopology,
        id: TaskId,
        env: &TaskEnv,
        dir: &Option<TaskDirectory>,
        timestamp: &Arc<AtomicI64>,
        metering: &Mutex<Vec<(String, Arc<StoreMetrics>)>>,
    ) -> Result<(HashMap<String, StoreHandle>, Vec<ChangelogPartition>)> {
        let app = &*env.application_id;
        let mut stores = HashMap::new();
        let mut changelogs = Vec::new();
        for name in &sub.stores {
            let def = topology
                .store(name)
                .ok_or_else(|| StreamsError::topology(name, "store is used but not defined"))?;
            let (keys, values) = def.serdes.resolve(&env.defaults, name)?;
            let mut builder = match (dir, def.persistent) {
                (Some(dir), true) => {
                    StoreBuilder::rocksdb(name, dir.store_path(name), &env.rocksdb)
                        .transactional(env.transactional)
                }
                _ => StoreBuilder::in_memory(name),
            };
            if def.logging {
                let topic = format!("{app}-{}", def.changelog_suffix());
                changelogs.push(ChangelogPartition {
                    store: name.clone(),
                    topic: topic.clone(),
                    partition: id.partition,
                    persistent: def.persistent,
                });
                builder = builder.with_logging(Changelog {
                    topic: topic.clone(),
                    partition: id.partition,
                    sink: Arc::new(CollectorChangelogSink {
                        collector: env.collector.clone(),
                        topic,
                        partition: id.partition,
                        timestamp: timestamp.clone(),
                    }),
                });
            }
            if def.caching {
                builder = builder.with_caching(CachingConfig {
                    budget: env.cache.clone(),
                    emit: def.emit,
                });
            }
            // The metering layer, outermost: it sees what processors and queries see.
            let metrics = StoreMetrics::timed(env.store_latencies);
            builder = builder.with_metering(metrics.clone());
            metering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name.clone(), metrics));
            let handle = match def.kind {
                StoreKind::KeyValue => {
                    StoreHandle::KeyValue(StoreCell::new(builder.build_key_value()?), keys, values)
                }
                StoreKind::Window {
                    retention_ms,
                    segment_interval_ms,
                } => StoreHandle::Window(
                    StoreCell::new(builder.build_window(retention_ms, segment_interval_ms)?),
                    keys,
                    values,
                ),
                StoreKind::Session { retention_ms } => StoreHandle::Session(
                    StoreCell::new(builder.build_session(retention_ms, None)?),
                    keys,
                    values,
                ),
            };
            stores.insert(name.clone(), handle);
        }
        Ok((stores, changelogs))
    }

    /// Instantiates the processors around opened stores.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        topology: &Topology,
        sub: &crate::topology::SubTopology,
        id: TaskId,
        env: &TaskEnv,
        dir: Option<TaskDirectory>,
        stores: HashMap<String, StoreHandle>,
        changelogs: Vec<ChangelogPartition>,
        timestamp: Arc<AtomicI64>,
    ) -> Result<Self> {
        let app = &*env.application_id;
        // Processors.
        let local: HashMap<usize, usize> =
            sub.nodes.iter().enumerate().map(|(l, g)| (*g, l)).collect();
        let mut nodes = Vec::with_capacity(sub.nodes.len());
        let mut sources = HashMap::new();
        let mut flush_plan = Vec::new();
        for (l, g) in sub.nodes.iter().enumerate() {
            let def = &topology.nodes[*g];
            let children = def
                .children
                .iter()
                .filter_map(|c| local.get(c).copied())
                .collect();
            let (processor, is_source) = match &def.kind {
                NodeKind::Source { topics, codec, .. } => {
                    for topic in topics {
                        sources.insert(
                            topic.full(app),
                            (l, codec.resolve(&env.defaults, &def.name)?),
                        );
                    }
                    (None, true)
                }
                NodeKind::Processor { factory } => (Some(factory()), false),
                NodeKind::Sink { factory } => {
                    (Some(factory.create(&env.defaults, app, &def.name)?), false)
                }
            };
            if matches!(def.kind, NodeKind::Processor { .. }) {
                flush_plan.push((l, def.stores.clone()));
            }
            nodes.push(NodeSlot {
                name: def.name.clone(),
                children,
                processor,
                is_source,
                stores: def.stores.clone(),
            });
        }

        Ok(StreamTask {
            id,
            rt: TaskRuntime {
                nodes,
                shared: TaskShared {
                    task_id: id,
                    application_id: env.application_id.clone(),
                    stream_time: i64::MIN,
                    wall_clock_ms: env.wall_clock_ms,
                    current: None,
                    in_record: false,
                    stores,
                    globals: env.globals.clone(),
                    punctuators: Punctuators::default(),
                    collector: env.collector.clone(),
                    commit_requested: false,
                    timestamp,
                    dropped_late: 0,
                    dropped_null_key: 0,
                },
            },
            sources,
            queues: PartitionGroup::default(),
            flush_plan,
            handler: env.deserialization.clone(),
            timestamps: env.timestamps.clone(),
            processing: env.processing.clone(),
            dead_letter: env.dead_letter.clone(),
            changelogs,
            dir,
            metrics: TaskMetrics::default(),
            initialized: false,
            store_metrics: Vec::new(),
        })
    }

    fn processing_error(&self, error: BoxError) -> StreamsError {
        let task = self.id.to_string();
        match error.downcast::<NodeFailure>() {
            Ok(failure) => match failure.source.downcast::<StreamsError>() {
                // Errors the runtime raised (a producer failure, a store error) keep their type.
                Ok(inner) if !matches!(*inner, StreamsError::Processing { .. }) => *inner,
                Ok(inner) => StreamsError::Processing {
                    task,
                    node: failure.node,
                    source: inner,
                },
                Err(source) => StreamsError::Processing {
                    task,
                    node: failure.node,
                    source,
                },
            },
            Err(source) => StreamsError::Processing {
                task,
                node: "?".into(),
                source,
            },
        }
    }

    /// Initializes every processor, parents first. Call after restoration.
    pub(crate) fn init(&mut self) -> Result<()> {
        if self.initialized {
            return Ok(());
        }
        for node in 0..self.rt.nodes.len() {
            if self.rt.nodes[node].is_source {
                continue;
            }
            Exec::with_processor(&mut self.rt, node, |p, exec| p.init(exec))
                .map_err(|e| self.processing_error(e))?;
        }
        self.initialized = true;
        Ok(())
    }

    /// The input partitions this task reads: partition `id.partition` of each source topic.
    /// The task's stores, for interactive queries and metrics.
    pub(crate) fn store_handles(&self) -> Vec<(String, StoreHandle)> {
        let mut all: Vec<(String, StoreHandle)> = self
            .rt
            .shared
            .stores
            .iter()
            .map(|(name, handle)| (name.clone(), handle.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Tells two openings of the task's stores apart (0 without stores).
    pub(crate) fn store_identity(&self) -> usize {
        self.rt
            .shared
            .stores
            .values()
            .map(StoreHandle::identity)
            .min()
            .unwrap_or(0)
    }

    pub(crate) fn input_partitions(&self) -> Vec<(String, i32)> {
        let mut topics: Vec<(String, i32)> = self
            .sources
            .keys()
            .map(|t| (t.clone(), self.id.partition))
            .collect();
        topics.sort();
        topics
    }

    /// The changelog partitions of this task's logged stores.
    pub(crate) fn changelogs(&self) -> &[ChangelogPartition] {
        &self.changelogs
    }

    /// Applies restored changelog records to `store`.
    pub(crate) fn restore(&mut self, store: &str, records: &[ChangelogRecord]) -> Result<()> {
        let handle = self
            .rt
            .shared
            .stores
            .get(store)
            .ok_or_else(|| StreamsError::topology(store, "no such store in this task"))?;
        match handle {
            StoreHandle::KeyValue(c, ..) => c.with(|s| s.restore_batch(records))??,
            StoreHandle::Window(c, ..) => c.with(|s| s.restore_batch(records))??,
            StoreHandle::Session(c, ..) => c.with(|s| s.restore_batch(records))??,
        }
        Ok(())
    }

    /// Finishes restoring `store`.
    pub(crate) fn restore_complete(&mut self, store: &str) -> Result<()> {
        match self.rt.shared.stores.get(store) {
            Some(StoreHandle::KeyValue(c, ..)) => c.with(|s| s.restore_complete())??,
            Some(StoreHandle::Window(c, ..)) => c.with(|s| s.restore_complete())??,
            Some(StoreHandle::Session(c, ..)) => c.with(|s| s.restore_complete())??,
            None => return Err(StreamsError::topology(store, "no such store in this task")),
        }
        Ok(())
    }

    /// The changelog offset each persistent store was last committed at, by changelog
    /// partition; where to restore from. In-memory stores have none: they restore in full.
    pub(crate) fn committed_changelog_offsets(&self) -> Result<BTreeMap<(String, i32), i64>> {
        let mut out = BTreeMap::new();
        for c in self.changelogs.iter().filter(|c| c.persistent) {
            if let Some(store) = self.rt.shared.stores.get(&c.store) {
                if let Some(offset) = store.committed_offset()? {
                    out.insert((c.topic.clone(), c.partition), offset);
                }
            }
        }
        Ok(out)
    }

    /// Seals the stores' writes for the commit that starts now; see
    /// [`StateStore::prepare_commit`](state_stores::StateStore::prepare_commit).
    pub(crate) fn prepare_commit(&self) -> Result<()> {
        for store in self.rt.shared.stores.values() {
            store.prepare_commit()?;
        }
        Ok(())
    }

    /// Records in every store the offset its changelog has reached (`next_offsets`), making the
    /// stores durable as of the commit that just went through; transactional stores apply the
    /// writes they held for it. Call only after the commit succeeded.
    pub(crate) fn commit_stores(&self, next_offsets: &BTreeMap<(String, i32), i64>) -> Result<()> {
        for (name, store) in &self.rt.shared.stores {
            let offset = self
                .changelogs
                .iter()
                .find(|c| &c.store == name)
                .and_then(|c| next_offsets.get(&(c.topic.clone(), c.partition)))
                .copied();
            store.commit(offset)?;
        }
        Ok(())
    }

    /// Bytes of writes the task's stores hold for the open transaction.
    pub(crate) fn uncommitted_bytes(&self) -> usize {
        self.rt
            .shared
            .stores
            .values()
            .map(|s| s.uncommitted_bytes().unwrap_or(0))
            .sum()
    }

    /// Resumes the time of each input partition (and so stream time) from what was committed
    /// with the offsets, so records processed again after a failure meet the same time as the
    /// first time.
    pub(crate) fn resume_partition_times(&mut self, times: &[((String, i32), i64)]) {
        for ((topic, partition), time) in times {
            if self.sources.contains_key(topic) && *partition == self.id.partition {
                self.queues.set_partition_time(topic, *partition, *time);
                let shared = &mut self.rt.shared;
                shared.stream_time = shared.stream_time.max(*time);
            }
        }
    }

    /// The time of an input partition: the largest timestamp taken from it.
    pub(crate) fn partition_time(&self, topic: &str, partition: i32) -> Option<i64> {
        self.queues
            .partition_time(topic, partition)
            .filter(|t| *t != i64::MIN)
    }

    /// Buffers records of one input partition.
    pub(crate) fn add_records(
        &mut self,
        topic: &str,
        partition: i32,
        records: impl IntoIterator<Item = RawRecord>,
    ) {
        self.queues.add(topic, partition, records);
    }

    /// Records buffered in the input partition that holds the most.
    pub(crate) fn fullest_partition(&self) -> usize {
        self.queues.fullest()
    }

    /// Records buffered in all input partitions.
    pub(crate) fn buffered(&self) -> usize {
        self.queues.buffered()
    }

    /// Processes the next buffered record, if any; returns whether there was one.
    pub(crate) fn process_next(&mut self) -> Result<bool> {
        let Some((topic, partition, partition_time, raw)) = self.queues.next() else {
            return Ok(false);
        };
        let offset = raw.offset;
        let Some((node, decoder)) = self.sources.get(&*topic) else {
            return Err(StreamsError::Fatal(format!(
                "task {}: no source reads `{topic}`",
                self.id
            )));
        };
        let node = *node;
        let mut record = match decoder.decode(&raw, partition_time) {
            Ok(record) => record,
            Err(error) => {
                let (what, error) = match error {
                    DecodeError::Key(e) => (
                        "key",
                        StreamsError::Serde {
                            location: format!("the key of {topic}-{partition}@{offset}"),
                            source: e,
                        },
                    ),
                    DecodeError::Value(e) => (
                        "value",
                        StreamsError::Serde {
                            location: format!("the value of {topic}-{partition}@{offset}"),
                            source: e,
                        },
                    ),
                };
                let task = self.id.to_string();
                let context = ErrorContext {
                    task: &task,
                    node: &self.rt.nodes[node].name,
                    topic: &topic,
                    partition,
                    offset,
                };
                let response = self.handler.handle(&context, &error);
                let node_name = self.rt.nodes[node].name.clone();
                self.dead_letter(&topic, partition, &raw, &node_name, &error, response)?;
                return match response {
                    HandlerResponse::Continue => {
                        tracing::debug!(task = %self.id, what, "skipped an unreadable record");
                        self.metrics.skipped += 1;
                        Ok(true)
                    }
                    HandlerResponse::Fail => Err(error),
                };
            }
        };
        if !decoder.has_extractor() {
            record.set_timestamp(self.timestamps.extract(&topic, &raw, partition_time));
        }
        let timestamp = record.timestamp().unwrap_or(-1);
        if timestamp < 0 {
            let policy = decoder
                .invalid_timestamps()
                .unwrap_or(self.timestamps.policy());
            match policy {
                InvalidTimestampPolicy::UsePartitionTime if partition_time >= 0 => {
                    record.set_timestamp(partition_time);
                }
                InvalidTimestampPolicy::LogAndSkip => {
                    tracing::debug!(task = %self.id, %topic, partition, offset, timestamp,
                        "skipped a record with a negative timestamp");
                    self.metrics.skipped += 1;
                    return Ok(true);
                }
                InvalidTimestampPolicy::Fail | InvalidTimestampPolicy::UsePartitionTime => {
                    return Err(StreamsError::InvalidTimestamp {
                        node: self.rt.nodes[node].name.clone(),
                        topic: topic.to_string(),
                        partition,
                        offset,
                        timestamp,
                    });
                }
            }
        }
        let timestamp = record.timestamp().unwrap_or(partition_time);
        let shared = &mut self.rt.shared;
        shared.stream_time = shared.stream_time.max(timestamp);
        shared.timestamp.store(timestamp, Ordering::Relaxed);
        shared.enter_record(&topic, partition, offset);
        let result = Exec::at(&mut self.rt, node).forward(record.as_mut(), None);
        self.rt.shared.leave_record();
        self.metrics.dropped_late = self.rt.shared.dropped_late;
        self.metrics.dropped_null_key = self.rt.shared.dropped_null_key;
        if let Err(e) = result {
            match self.processing_error(e) {
                error @ StreamsError::Processing { .. } => {
                    let (task, node) = (
                        self.id.to_string(),
                        match &error {
                            StreamsError::Processing { node, .. } => node.clone(),
                            _ => String::new(),
                        },
                    );
                    let context = ErrorContext {
                        task: &task,
                        node: &node,
                        topic: &topic,
                        partition,
                        offset,
                    };
                    let response = self.processing.handle(&context, &error);
                    self.dead_letter(&topic, partition, &raw, &node, &error, response)?;
                    match response {
                        HandlerResponse::Continue => self.metrics.processing_skipped += 1,
                        HandlerResponse::Fail => return Err(error),
                    }
                }
                // Errors the runtime raised (a store, the producer) are not the record's fault.
                other => return Err(other),
            }
        } else {
            self.metrics.processed += 1;
        }
        let now = self.rt.shared.stream_time;
        self.punctuate(PunctuationType::StreamTime, now)?;
        Ok(true)
    }

    /// Writes an input record a handler judged to the dead-letter queue, if one is configured.
    /// When the handler failed the task, a failure to write it is logged and the handler's
    /// error is what counts; when it continued, that failure is the task's.
    fn dead_letter(
        &mut self,
        topic: &str,
        partition: i32,
        raw: &RawRecord,
        node: &str,
        error: &StreamsError,
        response: HandlerResponse,
    ) -> Result<()> {
        let Some(dlq) = &self.dead_letter else {
            return Ok(());
        };
        let origin = RecordMetadata {
            topic: topic.to_owned(),
            partition,
            offset: raw.offset,
        };
        let failed = FailedRecord {
            key: raw.key.as_deref(),
            value: raw.value.as_deref(),
            timestamp: raw.timestamp,
            headers: &raw.headers,
            origin: Some(&origin),
        };
        let collector = &self.rt.shared.collector;
        match dlq.send(|r| collector.send(r), failed, exception_name(error), error) {
            Ok(()) => {
                tracing::debug!(task = %self.id, node, topic, partition, offset = raw.offset,
                    dead_letter_topic = dlq.topic(), "wrote the record to the dead-letter queue");
                self.metrics.dead_lettered += 1;
                Ok(())
            }
            Err(e) if response == HandlerResponse::Fail => {
                tracing::error!(task = %self.id, topic, partition, offset = raw.offset, error = %e,
                    "the record could not be written to the dead-letter queue either");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs the punctuations of `kind` due at `now`; returns whether any ran.
    pub(crate) fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<bool> {
        if self.rt.shared.punctuators.is_empty() || now == i64::MIN {
            return Ok(false);
        }
        let due = self.rt.shared.punctuators.take_due(kind, now);
        for (id, node) in &due {
            self.rt.shared.leave_record();
            self.rt.shared.timestamp.store(now, Ordering::Relaxed);
            let result =
                Exec::with_processor(&mut self.rt, *node, |p, exec| p.punctuate(*id, now, exec));
            self.metrics.dropped_late = self.rt.shared.dropped_late;
            self.metrics.dropped_null_key = self.rt.shared.dropped_null_key;
            result.map_err(|e| self.processing_error(e))?;
            self.metrics.punctuations += 1;
        }
        Ok(!due.is_empty())
    }

    /// Sets the wall clock and runs wall-clock punctuations due by it.
    pub(crate) fn advance_wall_clock(&mut self, now_ms: i64) -> Result<bool> {
        self.rt.shared.wall_clock_ms = now_ms;
        self.punctuate(PunctuationType::WallClockTime, now_ms)
    }

    /// Flushes every store, parents' stores first, telling each processor once its stores are
    /// flushed (caching processors forward their emissions then).
    pub(crate) fn flush(&mut self) -> Result<()> {
        let mut flushed: HashSet<String> = HashSet::new();
        for i in 0..self.flush_plan.len() {
            let (node, stores) = self.flush_plan[i].clone();
            for store in &stores {
                if flushed.insert(store.clone()) {
                    if let Some(handle) = self.rt.shared.stores.get(store) {
                        handle.flush()?;
                    }
                }
            }
            let result = Exec::with_processor(&mut self.rt, node, |p, exec| p.flushed(exec));
            self.metrics.dropped_late = self.rt.shared.dropped_late;
            self.metrics.dropped_null_key = self.rt.shared.dropped_null_key;
            result.map_err(|e| self.processing_error(e))?;
        }
        self.rt.shared.commit_requested = false;
        Ok(())
    }

    /// Input offsets to commit: the next offset of each partition read since the task started.
    pub(crate) fn committable_offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.queues.consumed()
    }

    /// Whether a processor asked for a commit.
    pub(crate) fn commit_requested(&self) -> bool {
        self.rt.shared.commit_requested
    }

    /// A store of this task, for the test driver and interactive queries.
    pub(crate) fn store(&self, name: &str) -> Option<&StoreHandle> {
        self.rt.shared.stores.get(name)
    }

    /// Closes processors and stores, then releases the task directory. The caller has flushed
    /// and committed first.
    pub(crate) fn close(self) -> Result<()> {
        self.close_with(false, false)
    }

    /// Closes after a failure: caches and uncommitted store writes are dropped, nothing is
    /// written down or logged, so nothing reaches a transaction. The stores keep what was
    /// committed.
    pub(crate) fn close_dirty(self) -> Result<()> {
        self.close_with(true, false)
    }

    /// Closes dirty and deletes the local state, with the directory's lock still held, so the
    /// stores are rebuilt from their changelogs.
    pub(crate) fn close_and_wipe(self) -> Result<()> {
        self.close_with(true, true)
    }

    fn close_with(mut self, dirty: bool, wipe: bool) -> Result<()> {
        let mut first_error = None;
        for node in &mut self.rt.nodes {
            if let Some(p) = node.processor.as_mut() {
                let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.close()))
                    .unwrap_or_else(|panic| Err(runtime::panic_message(panic.as_ref()).into()));
                if let Err(e) = closed {
                    tracing::warn!(task = %self.id, node = %node.name, error = %e, "processor failed to close");
                }
            }
        }
        for (name, handle) in &self.rt.shared.stores {
            let closed = if dirty {
                handle.close_dirty()
            } else {
                handle.close()
            };
            if let Err(e) = closed {
                tracing::warn!(task = %self.id, store = %name, error = %e, "store failed to close");
                first_error.get_or_insert(StreamsError::from(e));
            }
        }
        // The stores' handles must be gone before their files are deleted.
        self.rt.shared.stores.clear();
        if let (true, Some(dir)) = (wipe, &self.dir) {
            dir.wipe()?;
            tracing::info!(task = %self.id, "local state wiped; it restores from the changelogs");
        }
        drop(self.dir.take());
        match first_error {
            Some(e) if !wipe => Err(e),
            _ => Ok(()),
        }
    }
}
