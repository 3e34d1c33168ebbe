//! A stream thread: one consumer (one group member), one producer, and the tasks the group
//! assigns it. Its state machine lives in this module's files:
//!
//! - here: the loop and its setup. Each round polls a batch of records, hands them to their
//!   tasks, creates tasks for new assignments, runs restoration a step at a time, processes up
//!   to a fixed number of records per task, runs wall-clock punctuation, and commits every
//!   `commit.interval.ms`;
//! - `rebalance`: assignment and revocation, inside `poll`;
//! - `tasks`: creating, running and closing tasks, and recovery (close dirty, rewind, resume);
//! - `commit`: the commit protocol of both guarantees;
//! - `stall`: the watchdog that replaces a consumer which stopped fetching partitions that have
//!   records waiting.
//!
//! Errors are classified by `runtime::recovery`: expected faults (a migrated task, a fenced
//! producer, an abortable transaction, a broker that is briefly away) are recovered from inside
//! the thread; the rest end it, and the instance's uncaught exception handler decides what
//! follows. Nothing is committed on the way out of a failed thread.
//!
//! Flow control: while any running partition holds `buffered.records.per.partition` records or
//! more, the thread does not poll, and librdkafka's own prefetch limits hold its fetching back.
//! It does not pause partitions for this: librdkafka drops a paused partition's prefetched
//! records and fetches them again on resume, which cost a broker round trip per cycle and cut
//! word-count throughput fourfold. Pausing is kept for partitions whose task is not running yet
//! (restoring, or waiting for its state directory's lock).

mod commit;
mod rebalance;
mod stall;
mod tasks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Timestamp, TopicPartitionList};
use state_stores::cache::CacheBudget;
use state_stores::state_dir::StateDirectory;
use state_stores::RocksDbMemory;

use crate::config::{ProcessingGuarantee, ResolvedConfig};
use crate::error::{Result, StreamsError};
use crate::handlers::SharedProductionHandler;
use crate::record::RawRecord;
use crate::runtime::handoff::Handoffs;
use crate::runtime::producer::{KafkaRecordCollector, StreamsProducer};
use crate::runtime::queries::{PublishedTask, SharedView};
use crate::runtime::recovery::{self, Recovery};
use crate::runtime::restore::{ChangelogReader, RestoredOffsets};
use crate::runtime::state::{StateCell, ThreadState};
use crate::task::{StreamTask, TaskEnv, TaskId};
use crate::topology::Topology;
use rebalance::ThreadContext;

/// Records taken from the consumer per poll round.
const POLL_BATCH: usize = 10_000;
/// Records a task processes before the thread moves on to the next task.
const PROCESS_PER_TASK: usize = 2_000;
/// Changelog records restored per loop iteration.
const RESTORE_BATCH: usize = 20_000;
/// Uncommitted store writes (exactly-once) after which a thread commits early.
const UNCOMMITTED_LIMIT: usize = 64 << 20;
/// Records held while a commit is in flight after which the thread waits for it.
const MAX_HELD: usize = 100_000;
/// How often task metrics, restoration progress and consumer lags are published.
const METRICS_PUBLISH: Duration = Duration::from_millis(500);
/// How long the loop polls while a commit is in flight, so it notices the answer promptly.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);

/// The input offsets a thread last committed, by topic and partition, shared with
/// [`KafkaStreams::committed_offsets`](crate::KafkaStreams::committed_offsets).
pub(crate) type SharedCommitted = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// Counters of one stream thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadMetrics {
    /// Records processed.
    pub processed: u64,
    /// Records skipped by the deserialization handler.
    pub skipped: u64,
    /// Records skipped by the processing handler (a processor failed or panicked on them).
    pub processing_skipped: u64,
    /// Punctuations run.
    pub punctuations: u64,
    /// Commits.
    pub commits: u64,
    /// Time the thread spent on commits itself: flushing tasks, waiting for Kafka where it had
    /// to, recording store offsets.
    pub commit_time: Duration,
    /// Time Kafka took to answer commits, from each commit's start: until the records sent
    /// before it were acknowledged and the offsets committed (at-least-once), or until the
    /// transaction committed (exactly-once). Processing goes on meanwhile; where the thread had
    /// to wait instead (a slow acknowledgement, revocation, shutdown), that time is also in
    /// `commit_time`.
    pub commit_wait_time: Duration,
    /// Changelog records restored.
    pub restored: u64,
    /// Rebalances (assignment changes) seen.
    pub rebalances: u64,
    /// Records the producer delivered.
    pub produced: u64,
    /// Records the production handler dropped.
    pub production_skipped: u64,
    /// Header names read that were not UTF-8 (kept with the invalid bytes replaced).
    pub lossy_header_names: u64,
    /// Records written to the dead-letter queue: unreadable ones, ones a processor failed on,
    /// and ones the producer refused.
    pub dead_lettered: u64,
    /// Tasks currently owned.
    pub tasks: u64,
    /// Recoveries: the thread closed its tasks without committing and resumed from the last
    /// commit (after a fenced producer, an aborted transaction, a broker error...).
    pub recoveries: u64,
    /// Records windowed operators dropped because their window had closed.
    pub dropped_late: u64,
    /// Records stateful operators skipped because their key was null.
    pub dropped_null_key: u64,
    /// Consumers replaced because they were stuck (see `stall.timeout.ms`).
    pub consumers_replaced: u64,
    /// Times the restore consumer was replaced: restoration made no progress for
    /// `stall.timeout.ms`, or the main consumer was replaced.
    pub restore_consumers_replaced: u64,
    /// Polls of the consumer that asked for records.
    pub polls: u64,
    /// Time spent in those polls (waiting included, as Kafka Streams' `poll-latency`).
    pub poll_time: Duration,
    /// Time spent processing records.
    pub process_time: Duration,
    /// The largest mean time per record of one processing round.
    pub process_latency_max: Duration,
}

/// A published task: its id, whether it runs, and its stores' identity.
type PublishedKey = (TaskId, bool, usize);

/// The part of a thread that rebalance callbacks reach.
pub(crate) struct ThreadCore {
    name: String,
    index: usize,
    topology: Arc<Topology>,
    env: TaskEnv,
    guarantee: ProcessingGuarantee,
    tasks: BTreeMap<TaskId, StreamTask>,
    running: BTreeSet<TaskId>,
    /// Changelog end offsets per running task, as restoration left them.
    changelog_ends: BTreeMap<TaskId, RestoredOffsets>,
    assigned: BTreeSet<(String, i32)>,
    paused: BTreeSet<(String, i32)>,
    /// Records of partitions whose task does not exist yet.
    parked: HashMap<(String, i32), Vec<RawRecord>>,
    assignment_changed: bool,
    /// Tasks whose directory was still locked, and since when.
    waiting_for_lock: BTreeMap<TaskId, Instant>,
    /// Task creation waits until then (a locked directory, a backoff after a recovery).
    retry_at: Option<Instant>,
    reader: ChangelogReader,
    producer: Arc<StreamsProducer>,
    /// To make a new producer after the old one was fenced.
    producer_config: ClientConfig,
    production_handler: SharedProductionHandler,
    /// Deletes committed records of repartition topics after commits.
    purger: Option<crate::runtime::purge::RepartitionPurger>,
    commit_interval: Duration,
    last_commit: Instant,
    uncommitted: bool,
    buffered_limit: usize,
    /// Full topic name -> sub-topology reading it.
    topic_subtopology: HashMap<String, u32>,
    /// Full source topic names per sub-topology.
    subtopology_sources: Vec<Vec<String>>,
    state: Arc<StateCell>,
    metrics: ThreadMetrics,
    shared_metrics: Arc<Mutex<ThreadMetrics>>,
    /// What [`KafkaStreams::committed_offsets`](crate::KafkaStreams::committed_offsets) reads.
    shared_committed: SharedCommitted,
    received_assignment: bool,
    rebalance_started: Option<Instant>,
    handoffs: Handoffs,
    /// Where each input partition resumes after a recovery: its last committed offset, or where
    /// this thread began reading it.
    rewind_to: HashMap<(String, i32), i64>,
    /// The input partitions must be rewound before tasks are created again.
    rewind_pending: bool,
    /// Rewinding failed: leave and join the group again.
    rejoin_pending: bool,
    /// The consumer stopped fetching: rejoin with a new one.
    replace_consumer: bool,
    /// Watches the consumer's fetch positions; see `stall`.
    stall: stall::StallWatch,
    /// The consumer's settings, for the watchdog's probe.
    consumer_config: ClientConfig,
    /// Ask the group coordinator for this thread's assignment at once.
    nudge_group: bool,
    /// Recoveries since the last successful commit, and since when it keeps failing.
    recoveries_in_a_row: u32,
    failing_since: Option<Instant>,
    /// An error raised inside a rebalance callback, reported by the next round.
    pending_error: Option<StreamsError>,
    /// The commit Kafka has not answered yet.
    in_flight: Option<commit::InFlight>,
    /// What interactive queries and the instance's metadata see of this thread's tasks.
    shared_view: SharedView,
    /// What was last published there: tasks, running or not, and their stores' identity.
    published: (Vec<PublishedKey>, BTreeSet<(String, i32)>),
    /// When task metrics, restoration progress and lags were last published.
    metrics_published: Option<Instant>,
    /// Consumer lag per assigned partition, from librdkafka's statistics.
    pub(crate) lags: BTreeMap<(String, i32), i64>,
    /// The group coordinator answered this member (its join state is steady), with or
    /// without partitions; from librdkafka's statistics.
    pub(crate) group_answered: bool,
    /// Consecutive statistics reports that found this member in the group (`up`) with no
    /// assignment; see `ThreadContext::stats`.
    pub(crate) up_without_partitions: u32,
}

fn lock(core: &Mutex<ThreadCore>) -> std::sync::MutexGuard<'_, ThreadCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

type Consumer_ = BaseConsumer<ThreadContext>;

fn tpl_of<'a>(parts: impl IntoIterator<Item = &'a (String, i32)>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    tpl
}

impl ThreadCore {
    fn report(&mut self) {
        let restoring = self.tasks.len() > self.running.len();
        // Running needs the group's answer: an assignment, or a steady membership without one.
        let settled = self.received_assignment || self.group_answered;
        let waiting = !self.waiting_for_lock.is_empty() || self.assignment_changed;
        let state = if settled && !restoring && !waiting {
            ThreadState::Running
        } else {
            ThreadState::Rebalancing
        };
        if state == ThreadState::Running {
            if let Some(started) = self.rebalance_started.take() {
                tracing::info!(thread = %self.name, tasks = self.running.len(), pause_ms = started.elapsed().as_millis() as u64,
                    "running again after a rebalance");
            }
        }
        self.state.thread(self.index, state);
        self.publish_view();
        self.metrics.tasks = self.tasks.len() as u64;
        self.metrics.produced = self.producer.delivered();
        self.metrics.production_skipped = self.producer.skipped();
        self.metrics.restored = self.reader.restored_records;
        self.metrics.restore_consumers_replaced = self.reader.renewals;
        let mut live = self.metrics;
        live.dead_lettered += self.producer.dead_lettered();
        for task in self.tasks.values() {
            live.processed += task.metrics.processed;
            live.skipped += task.metrics.skipped;
            live.punctuations += task.metrics.punctuations;
            live.processing_skipped += task.metrics.processing_skipped;
            live.dead_lettered += task.metrics.dead_lettered;
            live.dropped_late += task.metrics.dropped_late;
            live.dropped_null_key += task.metrics.dropped_null_key;
        }
        *self
            .shared_metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// Publishes the tasks (running or restoring, with their stores) and the assignment, when
    /// they changed, for interactive queries and the instance's metadata.
    fn publish_view(&mut self) {
        // Every round: compare without allocating.
        let unchanged = self.published.1 == self.assigned
            && self.published.0.len() == self.tasks.len()
            && self.tasks.iter().zip(&self.published.0).all(
                |((id, t), (was_id, was_running, was_identity))| {
                    id == was_id
                        && self.running.contains(id) == *was_running
                        // A task closed and created again within one round has new stores.
                        && t.store_identity() == *was_identity
                },
            );
        let metrics_due = self
            .metrics_published
            .is_none_or(|at| at.elapsed() >= METRICS_PUBLISH);
        if metrics_due {
            self.metrics_published = Some(Instant::now());
            let mut view = self.shared_view.lock().unwrap_or_else(|p| p.into_inner());
            view.task_metrics = self.tasks.iter().map(|(id, t)| (*id, t.metrics)).collect();
            view.restore_remaining = self.reader.remaining();
            view.lags = self.lags.clone();
        }
        if unchanged {
            return;
        }
        let tasks: Vec<PublishedKey> = self
            .tasks
            .iter()
            .map(|(id, t)| (*id, self.running.contains(id), t.store_identity()))
            .collect();
        let mut view = self.shared_view.lock().unwrap_or_else(|p| p.into_inner());
        view.assigned = self.assigned.clone();
        view.tasks = self
            .tasks
            .iter()
            .map(|(id, t)| {
                (
                    *id,
                    PublishedTask {
                        running: self.running.contains(id),
                        stores: t.store_handles(),
                        store_metrics: t.store_metrics.clone(),
                    },
                )
            })
            .collect();
        drop(view);
        self.published = (tasks, self.assigned.clone());
    }

    /// Whether every running partition has room below `buffered.records.per.partition`; the
    /// loop polls only then (see the [module docs](self) on flow control).
    fn wants_records(&self) -> bool {
        self.running.iter().all(|id| {
            self.tasks
                .get(id)
                .is_none_or(|task| task.fullest_partition() < self.buffered_limit)
        })
    }

    fn commit_due(&self) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        let requested = self
            .running
            .iter()
            .any(|id| self.tasks.get(id).is_some_and(StreamTask::commit_requested));
        if requested || (self.uncommitted && self.last_commit.elapsed() >= self.commit_interval) {
            return true;
        }
        // Transactional stores hold the open transaction's writes in memory: bound them.
        self.uncommitted
            && self.env.transactional
            && self
                .running
                .iter()
                .filter_map(|id| self.tasks.get(id))
                .map(StreamTask::uncommitted_bytes)
                .sum::<usize>()
                > UNCOMMITTED_LIMIT
    }

    /// One round of the loop after polling.
    fn maintain(&mut self, consumer: &Consumer_) -> Result<()> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.rewind_pending {
            self.rewind(consumer)?;
        }
        if self.assignment_changed {
            self.create_tasks(consumer)?;
        }
        if !self.reader.is_idle() {
            for (id, ends) in self.reader.step(&mut self.tasks, RESTORE_BATCH)? {
                self.start_running(consumer, id, ends)?;
            }
        }
        self.poll_in_flight(consumer)?;
        if self.producer.held() > MAX_HELD {
            // Kafka is slow to commit: let the records held meanwhile not pile up.
            self.wait_in_flight(consumer)?;
        }
        let processed_before = self.processed_by_tasks();
        let started = Instant::now();
        self.process()?;
        let spent = started.elapsed();
        let records = self.processed_by_tasks().saturating_sub(processed_before);
        if records > 0 {
            self.metrics.process_time += spent;
            let per_record = spent / records.min(u32::MAX as u64) as u32;
            self.metrics.process_latency_max = self.metrics.process_latency_max.max(per_record);
        }
        self.punctuate_wall_clock()?;
        self.pause_parked(consumer);
        self.poll_in_flight(consumer)?;
        if self.commit_due() {
            self.start_commit(consumer)?;
        }
        self.producer.check_failures()?;
        self.check_stalls()?;
        self.report();
        Ok(())
    }

    fn processed_by_tasks(&self) -> u64 {
        self.tasks.values().map(|t| t.metrics.processed).sum()
    }

    fn has_work(&self) -> bool {
        !self.reader.is_idle()
            || (self.assignment_changed && self.retry_at.is_none())
            || self.rewind_pending
            || self
                .running
                .iter()
                .any(|id| self.tasks.get(id).is_some_and(|t| t.buffered() > 0))
    }

    /// Clean shutdown: commit, close every task. A failed final commit closes them dirty.
    fn shutdown(&mut self, consumer: &Consumer_) -> Result<()> {
        let mut clean = true;
        if !self.running.is_empty() {
            if let Err(e) = self.commit(consumer) {
                tracing::warn!(thread = %self.name, error = %e, "final commit failed; closing tasks without committing");
                clean = false;
                if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                    if let Err(e) = self.producer.abort_transaction() {
                        tracing::warn!(thread = %self.name, error = %e, "aborting the transaction");
                    }
                }
            }
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            self.close_task(id, clean)?;
        }
        Ok(())
    }

    /// After a failure: abort and close every task without committing.
    fn abandon(&mut self) {
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2
            && !self.producer.is_fatal()
            && !self.producer.is_stuck()
        {
            if let Err(e) = self.producer.abort_transaction() {
                tracing::warn!(error = %e, "aborting the transaction after a failure");
            }
        }
        self.close_all_dirty();
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The record as the task buffers it, and how many of its header names were not UTF-8.
fn detach(m: &rdkafka::message::BorrowedMessage<'_>) -> (RawRecord, usize) {
    let timestamp = match m.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => -1,
    };
    let (headers, lossy) = super::consumed::read_headers(m);
    (
        RawRecord {
            offset: m.offset(),
            timestamp,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        },
        lossy,
    )
}

/// Records of one poll, in runs of one partition each, in the order they were polled.
///
/// One `Polled` serves the whole life of a thread: routing drains its runs and hands their
/// emptied vectors back ([`Polled::recycle`]), so a poll round does not grow fresh vectors a
/// record at a time (that growth and its copies were 4% of a word-count thread).
#[derive(Default)]
pub(crate) struct Polled {
    pub(crate) runs: Vec<((String, i32), Vec<RawRecord>)>,
    /// The topic handle ([`super::consumed::topic_handle`]) of the last run.
    last_topic: usize,
    records: usize,
    /// Emptied run vectors, kept for the next rounds, and their capacity in records.
    spare: Vec<Vec<RawRecord>>,
    spare_capacity: usize,
}

/// How many records the emptied run vectors a [`Polled`] keeps may hold in all: two poll
/// rounds' worth (under 2 MiB).
const SPARE_RECORDS: usize = 2 * POLL_BATCH;

impl Polled {
    fn push(&mut self, m: &rdkafka::message::BorrowedMessage<'_>, record: RawRecord) {
        let (topic, partition) = (super::consumed::topic_handle(m), m.partition());
        match self.runs.last_mut() {
            Some(((_, p), run)) if *p == partition && self.last_topic == topic => run.push(record),
            _ => {
                let mut run = match self.spare.pop() {
                    Some(run) => {
                        self.spare_capacity -= run.capacity();
                        run
                    }
                    None => Vec::new(),
                };
                run.push(record);
                self.runs.push(((m.topic().to_owned(), partition), run));
                self.last_topic = topic;
            }
        }
        self.records += 1;
    }

    /// Takes back a run's vector once its records were moved out.
    pub(crate) fn recycle(&mut self, mut run: Vec<RawRecord>) {
        run.clear();
        if self.spare_capacity + run.capacity() <= SPARE_RECORDS {
            self.spare_capacity += run.capacity();
            self.spare.push(run);
        }
    }

    /// Ready for the next poll round (after routing took the runs).
    fn reset(&mut self) {
        self.last_topic = 0;
        self.records = 0;
    }
}

/// A consumer error that no retry fixes, as the error that ends the thread: librdkafka's fatal
/// errors, and authorization or configuration failures of the group or its topics. Others
/// (a broker briefly away, a partition's leader moving) librdkafka retries itself.
fn fatal_consumer_error(
    consumer: &Consumer_,
    error: &rdkafka::error::KafkaError,
) -> Option<StreamsError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    if let Some((code, reason)) = consumer.client().fatal_error() {
        return Some(StreamsError::Fatal(format!(
            "the consumer failed fatally ({code:?}): {reason}"
        )));
    }
    match error.rdkafka_error_code() {
        Some(
            Code::GroupAuthorizationFailed
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::InvalidGroupId
            | Code::UnsupportedVersion
            | Code::InconsistentGroupProtocol,
        ) => Some(StreamsError::kafka("consuming", error.clone())),
        _ => None,
    }
}

/// Everything a stream thread needs to start.
pub(crate) struct ThreadSetup {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) config: ResolvedConfig,
    pub(crate) state_dir: StateDirectory,
    pub(crate) rocksdb: RocksDbMemory,
    /// This thread's share of the record cache budget.
    pub(crate) cache: CacheBudget,
    pub(crate) consumer: ClientConfig,
    pub(crate) restore_consumer: ClientConfig,
    pub(crate) producer: ClientConfig,
    pub(crate) state: Arc<StateCell>,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Mutex<ThreadMetrics>>,
    /// The input offsets this thread last committed, for the partitions it owns.
    pub(crate) committed: SharedCommitted,
    /// Group membership changes by any thread of the instance; see `handoff`.
    pub(crate) membership_changes: Arc<AtomicU64>,
    /// Where the thread publishes its tasks for interactive queries and metadata.
    pub(crate) view: SharedView,
    /// The instance's global stores, restored before the thread starts.
    pub(crate) globals: crate::task::GlobalStores,
}

/// Runs a stream thread until shutdown or an error it cannot recover from.
pub(crate) fn run(setup: ThreadSetup) -> Result<()> {
    let app = setup.config.application_id.clone();
    let mut topic_subtopology = HashMap::new();
    let mut subtopology_sources = Vec::new();
    for sub in setup.topology.subtopologies() {
        let full: Vec<String> = sub.source_topics().iter().map(|t| t.full(&app)).collect();
        for t in &full {
            topic_subtopology.insert(t.clone(), sub.id());
        }
        subtopology_sources.push(full);
    }
    let topics: Vec<String> = topic_subtopology.keys().cloned().collect();
    let dead_letter = setup
        .config
        .dead_letter_queue
        .as_deref()
        .map(crate::dead_letter::DeadLetterQueue::new);
    let producer = Arc::new(StreamsProducer::new(
        &setup.producer,
        setup.config.guarantee,
        setup.config.production.clone(),
        dead_letter.clone(),
        format!("{}-producer", setup.name),
    )?);
    let config = &setup.config;
    let env = TaskEnv {
        application_id: app.as_str().into(),
        defaults: config.defaults.clone(),
        collector: Arc::new(KafkaRecordCollector {
            producer: producer.clone(),
        }),
        state_dir: setup.state_dir.clone(),
        rocksdb: setup.rocksdb.clone(),
        cache: setup.cache.clone(),
        store_latencies: config.store_latencies,
        deserialization: config.deserialization.clone(),
        processing: config.processing.clone(),
        dead_letter,
        timestamps: config.timestamps.clone(),
        wall_clock_ms: 0,
        transactional: config.guarantee == ProcessingGuarantee::ExactlyOnceV2,
        globals: setup.globals.clone(),
    };
    let core = Arc::new(Mutex::new(ThreadCore {
        name: setup.name.clone(),
        index: setup.index,
        topology: setup.topology.clone(),
        env,
        guarantee: setup.config.guarantee,
        tasks: BTreeMap::new(),
        running: BTreeSet::new(),
        changelog_ends: BTreeMap::new(),
        assigned: BTreeSet::new(),
        paused: BTreeSet::new(),
        parked: HashMap::new(),
        assignment_changed: false,
        waiting_for_lock: BTreeMap::new(),
        retry_at: None,
        reader: ChangelogReader::new(&setup.restore_consumer, setup.config.stall_timeout)?,
        producer,
        producer_config: setup.producer.clone(),
        purger: crate::runtime::purge::RepartitionPurger::new(&setup.config, &setup.topology)?,
        production_handler: setup.config.production.clone(),
        commit_interval: setup.config.commit_interval,
        last_commit: Instant::now(),
        uncommitted: false,
        buffered_limit: setup.config.buffered_records_per_partition,
        topic_subtopology,
        subtopology_sources,
        state: setup.state.clone(),
        // A thread that replaces a failed one carries on its counters.
        metrics: ThreadMetrics {
            tasks: 0,
            ..*setup.metrics.lock().unwrap_or_else(|p| p.into_inner())
        },
        shared_metrics: setup.metrics.clone(),
        shared_committed: setup.committed.clone(),
        received_assignment: false,
        rebalance_started: None,
        handoffs: Handoffs::new(
            setup.membership_changes.clone(),
            setup.config.consumer_group_protocol(),
        ),
        rewind_to: HashMap::new(),
        rewind_pending: false,
        rejoin_pending: false,
        replace_consumer: false,
        stall: stall::StallWatch::new(setup.config.stall_timeout),
        consumer_config: setup.consumer.clone(),
        nudge_group: false,
        recoveries_in_a_row: 0,
        failing_since: None,
        pending_error: None,
        in_flight: None,
        shared_view: setup.view.clone(),
        published: Default::default(),
        metrics_published: None,
        lags: BTreeMap::new(),
        group_answered: false,
        up_without_partitions: 0,
    }));
    let new_consumer = || -> Result<Consumer_> {
        setup
            .consumer
            .create_with_context(ThreadContext {
                core: core.clone(),
                resets: setup.topology.offset_resets(&app),
            })
            .map_err(|e| StreamsError::kafka(format!("creating the consumer of {}", setup.name), e))
    };
    let mut consumer = new_consumer()?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| StreamsError::kafka(format!("subscribing to {topics:?}"), e))?;
    lock(&core).handoffs.joined();
    setup.state.thread(setup.index, ThreadState::Rebalancing);
    tracing::info!(thread = %setup.name, topics = ?topics, "stream thread started");

    let poll_idle = setup.config.poll;
    let mut consumer_errors =
        crate::runtime::client_log::ErrorThrottle::new(Duration::from_secs(10));
    let mut batch = Polled::default();
    let outcome = (|| -> Result<()> {
        while !setup.shutdown.load(Ordering::Relaxed) {
            let (timeout, wants_records) = {
                let c = lock(&core);
                let timeout = if c.has_work() {
                    Duration::ZERO
                } else if c.in_flight.is_some() {
                    IN_FLIGHT_POLL.min(poll_idle)
                } else {
                    c.handoffs
                        .poll_cap()
                        .map_or(poll_idle, |cap| cap.min(poll_idle))
                };
                (timeout, c.wants_records())
            };
            batch.reset();
            let mut lossy_headers = 0;
            let poll_started = Instant::now();
            let polled = if wants_records {
                consumer.poll(timeout)
            } else {
                None // full buffers: process first (rebalance callbacks wait one round)
            };
            let poll_spent = poll_started.elapsed();
            if let Some(first) = polled {
                let mut next = Some(first);
                while let Some(result) = next {
                    match result {
                        Ok(m) => {
                            let (record, lossy) = detach(&m);
                            batch.push(&m, record);
                            lossy_headers += lossy as u64;
                        }
                        Err(e) => {
                            if let Some(fatal) = fatal_consumer_error(&consumer, &e) {
                                return Err(fatal);
                            }
                            if let Some(repeats) = consumer_errors.admit(&e.to_string()) {
                                tracing::warn!(thread = %setup.name, error = %e, repeats, "consumer error");
                            }
                        }
                    }
                    if batch.records >= POLL_BATCH {
                        break;
                    }
                    next = consumer.poll(Duration::ZERO);
                }
            }
            let (nudge, rejoin, replace) = {
                let mut c = lock(&core);
                if wants_records {
                    c.metrics.polls += 1;
                    c.metrics.poll_time += poll_spent;
                }
                c.metrics.lossy_header_names += lossy_headers;
                c.route(&mut batch);
                if let Err(e) = c.maintain(&consumer) {
                    match recovery::classify(&e) {
                        Recovery::Fatal => return Err(e),
                        kind => c.recover(e, kind)?,
                    }
                }
                let nudge = std::mem::take(&mut c.nudge_group) || c.handoffs.nudge_due();
                let replace = std::mem::take(&mut c.replace_consumer);
                (nudge, std::mem::take(&mut c.rejoin_pending), replace)
            };
            if rejoin || replace {
                // Leaving revokes everything (the tasks are closed already); joining again
                // starts every partition at its committed offset.
                consumer.unsubscribe();
                lock(&core).handoffs.changed();
            }
            if replace {
                // Dropping the consumer serves its revocation (outside the core's lock, which
                // the callback takes) and leaves the group.
                drop(std::mem::replace(&mut consumer, new_consumer()?));
                lock(&core).consumer_replaced()?;
                tracing::warn!(thread = %setup.name, "consumer and restore consumer replaced; rejoining the group");
            }
            if nudge || rejoin || replace {
                tracing::debug!(thread = %setup.name, "asking the group coordinator for this thread's assignment");
                if let Err(e) = consumer.subscribe(&topic_refs) {
                    tracing::warn!(thread = %setup.name, error = %e, "re-subscribing");
                }
            }
        }
        lock(&core).shutdown(&consumer)
    })();
    if let Err(e) = &outcome {
        tracing::error!(thread = %setup.name, error = %e, "stream thread failed");
        lock(&core).abandon();
    }
    // Leaving the group revokes what is left; tasks are closed already.
    consumer.unsubscribe();
    lock(&core).handoffs.changed();
    drop(consumer);
    {
        let c = lock(&core);
        if outcome.is_ok() {
            if let Err(e) = c.producer.flush() {
                tracing::warn!(thread = %setup.name, error = %e, "final producer flush");
            }
        }
    }
    lock(&core).report();
    setup.state.thread(setup.index, ThreadState::Dead);
    tracing::info!(thread = %setup.name, "stream thread stopped");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(capacity: usize) -> Vec<RawRecord> {
        let mut run = Vec::with_capacity(capacity);
        run.push(RawRecord {
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(b"v".to_vec()),
            headers: Default::default(),
        });
        run
    }

    /// Emptied runs come back for reuse, empty, and what is kept stays within its bound.
    #[test]
    fn recycled_runs_are_reused_empty_within_a_bound() {
        let mut polled = Polled::default();
        polled.recycle(run_of(POLL_BATCH));
        polled.recycle(run_of(POLL_BATCH));
        polled.recycle(run_of(POLL_BATCH)); // over the bound: dropped
        assert_eq!(polled.spare.len(), 2);
        assert!(polled.spare_capacity <= SPARE_RECORDS);
        assert!(polled.spare.iter().all(|r| r.is_empty()));
        assert_eq!(
            polled.spare_capacity,
            polled.spare.iter().map(Vec::capacity).sum::<usize>()
        );
    }
}
