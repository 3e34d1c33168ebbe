//! A stream thread: one consumer (one group member), one producer, and the tasks the group
//! assigns it.
//!
//! The loop polls a batch of records, hands them to their tasks, runs restoration a step at a
//! time, processes up to a fixed number of records per task, runs wall-clock punctuation, and
//! commits every `commit.interval.ms`.
//!
//! Flow control: while any running partition holds `buffered.records.per.partition` records or
//! more, the thread does not poll, and librdkafka's own prefetch limits hold its fetching back.
//! It does not pause partitions for this: librdkafka drops a paused partition's prefetched
//! records and fetches them again on resume, which cost a broker round trip per cycle and cut
//! word-count throughput fourfold. Pausing is kept for partitions whose task is not running yet
//! (restoring, or waiting for its state directory's lock).
//!
//! Rebalance callbacks run inside `poll`, on this thread. A revocation commits first (flushing
//! caches, stores and the producer, then committing input offsets) and closes the revoked tasks,
//! all before the partitions are released, so the next owner resumes exactly where this one
//! stopped. An assignment only records the new partitions: the loop creates a task once every
//! input partition it needs is assigned, restores its stores, and then lets it process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::message::{Headers as _, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

use crate::config::{ProcessingGuarantee, ResolvedConfig};
use crate::error::{Result, StreamsError};
use crate::record::{Headers, RawRecord};
use crate::runtime::handoff::Handoffs;
use crate::runtime::producer::StreamsProducer;
use crate::runtime::restore::{ChangelogReader, Registration, RestoredOffsets};
use crate::runtime::state::{StateCell, ThreadState};
use crate::task::{StreamTask, TaskEnv, TaskId};
use crate::topology::{OffsetReset, Topology};

/// Records taken from the consumer per poll round.
const POLL_BATCH: usize = 10_000;
/// Records a task processes before the thread moves on to the next task.
const PROCESS_PER_TASK: usize = 2_000;
/// Changelog records restored per loop iteration.
const RESTORE_BATCH: usize = 20_000;
/// How long a task directory may stay locked by its previous owner before that is an error.
const LOCK_PATIENCE: Duration = Duration::from_secs(60);

/// Counters of one stream thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadMetrics {
    /// Records processed.
    pub processed: u64,
    /// Records skipped by the deserialization handler.
    pub skipped: u64,
    /// Punctuations run.
    pub punctuations: u64,
    /// Commits.
    pub commits: u64,
    /// Changelog records restored.
    pub restored: u64,
    /// Rebalances (assignment changes) seen.
    pub rebalances: u64,
    /// Records the producer delivered.
    pub produced: u64,
    /// Records the production handler dropped.
    pub production_skipped: u64,
    /// Tasks currently owned.
    pub tasks: u64,
    /// Records windowed operators dropped because their window had closed.
    pub dropped_late: u64,
}

/// The part of a thread that rebalance callbacks reach.
pub(crate) struct ThreadCore {
    name: String,
    index: usize,
    topology: Arc<Topology>,
    env: TaskEnv,
    guarantee: ProcessingGuarantee,
    tasks: BTreeMap<TaskId, StreamTask>,
    running: BTreeSet<TaskId>,
    /// Changelog end offsets per running task, where checkpoints start.
    changelog_ends: BTreeMap<TaskId, RestoredOffsets>,
    assigned: BTreeSet<(String, i32)>,
    paused: BTreeSet<(String, i32)>,
    /// Records of partitions whose task does not exist yet.
    parked: HashMap<(String, i32), Vec<RawRecord>>,
    assignment_changed: bool,
    /// Tasks whose directory was still locked, and since when.
    waiting_for_lock: BTreeMap<TaskId, Instant>,
    reader: ChangelogReader,
    producer: Arc<StreamsProducer>,
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
    received_assignment: bool,
    rebalance_started: Option<Instant>,
    handoffs: Handoffs,
    started: Instant,
}

/// The consumer's context: forwards rebalance callbacks to the thread core.
pub(crate) struct ThreadContext {
    core: Arc<Mutex<ThreadCore>>,
    /// Topics whose source has its own `auto.offset.reset`.
    resets: HashMap<String, OffsetReset>,
}

impl ClientContext for ThreadContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::client_log::forward(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::client_log::forward_error(&error, reason);
    }
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

impl ConsumerContext for ThreadContext {
    /// The default assignment handling, plus: a newly assigned partition of a source with its
    /// own offset reset policy and no committed offset starts where that policy says.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.apply_resets(consumer, tpl);
                Rebalance::Assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
                return;
            }
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match (&rebalance, cooperative) {
            (Rebalance::Assign(tpl), true) => consumer.incremental_assign(tpl),
            (Rebalance::Assign(tpl), false) => consumer.assign(tpl),
            (Rebalance::Revoke(tpl), true) => consumer.incremental_unassign(tpl),
            (_, false) => consumer.unassign(),
            (Rebalance::Error(_), true) => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the assignment failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let mut core = lock(&self.core);
            if let Err(e) = core.revoke(consumer, &partitions(tpl), lost) {
                tracing::error!(thread = %core.name, error = %e, "revoking partitions failed");
                core.state.fail(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut core = lock(&self.core);
                core.assign(consumer, &partitions(tpl));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl ThreadContext {
    fn apply_resets(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        if self.resets.is_empty() {
            return;
        }
        let mut ours = TopicPartitionList::new();
        for e in tpl.elements() {
            if self.resets.contains_key(e.topic()) {
                ours.add_partition(e.topic(), e.partition());
            }
        }
        if ours.count() == 0 {
            return;
        }
        let committed = match consumer.committed_offsets(ours, Duration::from_secs(30)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading committed offsets; the consumer's auto.offset.reset applies");
                return;
            }
        };
        for e in committed.elements() {
            if matches!(e.offset(), Offset::Offset(_)) {
                continue; // a committed position wins
            }
            let start = match self.resets.get(e.topic()) {
                Some(OffsetReset::Earliest) => Offset::Beginning,
                Some(OffsetReset::Latest) => Offset::End,
                None => continue,
            };
            if let Err(err) = tpl.set_partition_offset(e.topic(), e.partition(), start) {
                tracing::warn!(error = %err, topic = e.topic(), "setting the start offset");
            }
        }
    }
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
        let settled = self.received_assignment || self.started.elapsed() > Duration::from_secs(10);
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
        self.metrics.tasks = self.tasks.len() as u64;
        self.metrics.produced = self.producer.delivered();
        self.metrics.production_skipped = self.producer.skipped();
        self.metrics.restored = self.reader.restored_records;
        let mut live = self.metrics;
        for task in self.tasks.values() {
            live.processed += task.metrics.processed;
            live.skipped += task.metrics.skipped;
            live.punctuations += task.metrics.punctuations;
            live.dropped_late += task.metrics.dropped_late;
        }
        *self
            .shared_metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = live;
    }

    fn pause(&mut self, consumer: &Consumer_, parts: Vec<(String, i32)>) {
        let new: Vec<(String, i32)> = parts
            .into_iter()
            .filter(|p| self.paused.insert(p.clone()))
            .collect();
        if !new.is_empty() {
            if let Err(e) = consumer.pause(&tpl_of(&new)) {
                tracing::warn!(error = %e, "pausing partitions");
            }
        }
    }

    fn resume(&mut self, consumer: &Consumer_, parts: Vec<(String, i32)>) {
        let was: Vec<(String, i32)> = parts
            .into_iter()
            .filter(|p| self.paused.remove(p))
            .collect();
        if !was.is_empty() {
            if let Err(e) = consumer.resume(&tpl_of(&was)) {
                tracing::warn!(error = %e, "resuming partitions");
            }
        }
    }

    /// Partitions were assigned: remember them, and hold them until their task runs.
    fn assign(&mut self, consumer: &Consumer_, parts: &[(String, i32)]) {
        tracing::info!(thread = %self.name, partitions = ?parts, "partitions assigned");
        self.received_assignment = true;
        self.metrics.rebalances += 1;
        self.rebalance_started.get_or_insert_with(Instant::now);
        self.assigned.extend(parts.iter().cloned());
        self.assignment_changed = true;
        self.pause(consumer, parts.to_vec());
    }

    /// Partitions are being revoked: commit, then close the tasks that read them.
    fn revoke(&mut self, consumer: &Consumer_, parts: &[(String, i32)], lost: bool) -> Result<()> {
        tracing::info!(thread = %self.name, partitions = ?parts, lost, "partitions revoked");
        self.metrics.rebalances += 1;
        self.rebalance_started.get_or_insert_with(Instant::now);
        let revoked: BTreeSet<&(String, i32)> = parts.iter().collect();
        let affected: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.input_partitions().iter().any(|p| revoked.contains(p)))
            .map(|(id, _)| *id)
            .collect();
        let mut clean = !lost;
        if !affected.is_empty() {
            if lost {
                if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                    self.producer.abort_transaction()?;
                }
            } else if let Err(e) = self.commit(consumer) {
                // The group may already have moved on: close without committing.
                tracing::warn!(thread = %self.name, error = %e, "commit before revocation failed; closing the tasks unclean");
                clean = false;
            }
            for id in affected {
                self.close_task(id, clean)?;
            }
        }
        for p in parts {
            self.assigned.remove(p);
            self.paused.remove(p);
            self.parked.remove(p);
        }
        if !lost && !parts.is_empty() {
            self.handoffs.changed();
        }
        Ok(())
    }

    /// Closes one task. A clean close leaves a checkpoint; under exactly-once an unclean one
    /// wipes the task's state (it may hold uncommitted writes).
    fn close_task(&mut self, id: TaskId, clean: bool) -> Result<()> {
        let Some(task) = self.tasks.remove(&id) else {
            return Ok(());
        };
        let was_running = self.running.remove(&id);
        let ends = self.changelog_ends.remove(&id).unwrap_or_default();
        if self.reader.is_restoring(id) {
            let positions = self.reader.remove(id)?;
            if clean {
                task.write_checkpoint(&positions)?;
            }
        } else if clean && was_running {
            task.write_checkpoint(&self.next_offsets(&task, &ends))?;
        }
        self.metrics.processed += task.metrics.processed;
        self.metrics.skipped += task.metrics.skipped;
        self.metrics.punctuations += task.metrics.punctuations;
        self.metrics.dropped_late += task.metrics.dropped_late;
        let wipe = !clean && self.guarantee == ProcessingGuarantee::ExactlyOnceV2;
        task.close()?;
        if wipe {
            self.wipe(id)?;
        }
        tracing::info!(thread = %self.name, task = %id, clean, "task closed");
        Ok(())
    }

    fn wipe(&self, id: TaskId) -> Result<()> {
        let dir = self.env.state_dir.lock_task(&id.to_string())?;
        dir.wipe()?;
        tracing::info!(task = %id, "local state wiped; it restores from the changelog");
        Ok(())
    }

    /// Where each of `task`'s changelogs ends now: what this thread produced, or what restoration
    /// reached.
    fn next_offsets(
        &self,
        task: &StreamTask,
        ends: &RestoredOffsets,
    ) -> BTreeMap<(String, i32), i64> {
        task.changelogs()
            .iter()
            .filter_map(|c| {
                let key = (c.topic.clone(), c.partition);
                let produced = self.producer.next_offset(&c.topic, c.partition);
                let restored = ends.get(&key).copied();
                produced.max(restored).map(|o| (key, o))
            })
            .collect()
    }

    /// Takes polled records to their tasks (or parks them until the task exists).
    fn route(&mut self, records: Vec<((String, i32), RawRecord)>) {
        let mut by_partition: BTreeMap<(String, i32), Vec<RawRecord>> = BTreeMap::new();
        for (tp, record) in records {
            by_partition.entry(tp).or_default().push(record);
        }
        for (tp, records) in by_partition {
            if !self.assigned.contains(&tp) {
                continue; // revoked meanwhile; the next owner reads them again
            }
            let task = self
                .topic_subtopology
                .get(&tp.0)
                .map(|s| TaskId {
                    subtopology: *s,
                    partition: tp.1,
                })
                .and_then(|id| self.tasks.get_mut(&id));
            match task {
                Some(task) => task.add_records(&tp.0, tp.1, records),
                None => self.parked.entry(tp).or_default().extend(records),
            }
        }
    }

    /// Creates tasks whose input partitions are all assigned.
    fn create_tasks(&mut self, consumer: &Consumer_) -> Result<()> {
        let candidates: BTreeSet<TaskId> = self
            .assigned
            .iter()
            .filter_map(|(t, p)| {
                self.topic_subtopology.get(t).map(|s| TaskId {
                    subtopology: *s,
                    partition: *p,
                })
            })
            .filter(|id| !self.tasks.contains_key(id))
            .collect();
        self.assignment_changed = false;
        let mut created = Vec::new();
        for id in candidates {
            let sources = &self.subtopology_sources[id.subtopology as usize];
            if !sources
                .iter()
                .all(|t| self.assigned.contains(&(t.clone(), id.partition)))
            {
                continue; // the rest of its partitions arrive in a later assignment
            }
            match StreamTask::new(&self.topology, id, &self.env) {
                Ok(task) => {
                    self.waiting_for_lock.remove(&id);
                    created.push(task);
                }
                Err(StreamsError::Store(state_stores::StoreError::Locked { dir })) => {
                    let since = *self.waiting_for_lock.entry(id).or_insert_with(Instant::now);
                    if since.elapsed() > LOCK_PATIENCE {
                        return Err(StreamsError::Store(state_stores::StoreError::Locked {
                            dir,
                        }));
                    }
                    tracing::debug!(task = %id, "task directory still locked by its previous owner; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        if !self.waiting_for_lock.is_empty() {
            self.assignment_changed = true;
        }
        if created.is_empty() {
            return Ok(());
        }
        let registrations = {
            let refs: Vec<&StreamTask> = created.iter().collect();
            self.reader.register(&refs)?
        };
        for (task, registration) in created.into_iter().zip(registrations) {
            let id = task.id;
            let registration = match registration {
                Ok(r) => r,
                Err(StreamsError::TaskCorrupted { task: t, reason }) => {
                    tracing::warn!(task = %t, %reason, "local state is corrupted; wiping it and restoring from the changelog");
                    task.close()?;
                    self.wipe(id)?;
                    self.assignment_changed = true; // create it again next round
                    continue;
                }
                Err(e) => return Err(e),
            };
            let inputs = task.input_partitions();
            self.tasks.insert(id, task);
            for tp in &inputs {
                if let Some(records) = self.parked.remove(tp) {
                    if let Some(task) = self.tasks.get_mut(&id) {
                        task.add_records(&tp.0, tp.1, records);
                    }
                }
            }
            match registration {
                Registration::Ready(ends) => self.start_running(consumer, id, ends)?,
                Registration::Restoring => self.pause(consumer, inputs),
            }
        }
        Ok(())
    }

    /// A task finished restoring (or had nothing to restore): initialize its processors and let
    /// its partitions flow.
    fn start_running(
        &mut self,
        consumer: &Consumer_,
        id: TaskId,
        ends: RestoredOffsets,
    ) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        task.init()?;
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // While it runs its stores are ahead of any commit; a crash must restore in full.
            task.remove_checkpoint()?;
        }
        let inputs = task.input_partitions();
        self.changelog_ends.insert(id, ends);
        self.running.insert(id);
        self.resume(consumer, inputs);
        tracing::info!(thread = %self.name, task = %id, "task running");
        Ok(())
    }

    fn process(&mut self) -> Result<bool> {
        let mut any = false;
        for id in self.running.iter() {
            if let Some(task) = self.tasks.get_mut(id) {
                let mut n = 0;
                while n < PROCESS_PER_TASK && task.process_next()? {
                    n += 1;
                }
                any |= n > 0;
            }
        }
        self.uncommitted |= any;
        Ok(any)
    }

    fn punctuate_wall_clock(&mut self) -> Result<()> {
        let now = wall_clock_ms();
        for id in self.running.iter() {
            if let Some(task) = self.tasks.get_mut(id) {
                if task.advance_wall_clock(now)? {
                    self.uncommitted = true;
                }
            }
        }
        Ok(())
    }

    /// Pauses partitions that arrived for a task that is not running (see `parked`).
    fn pause_parked(&mut self, consumer: &Consumer_) {
        let parked: Vec<(String, i32)> = self
            .parked
            .keys()
            .filter(|p| !self.paused.contains(*p))
            .cloned()
            .collect();
        self.pause(consumer, parked);
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
        let requested = self
            .running
            .iter()
            .any(|id| self.tasks.get(id).is_some_and(StreamTask::commit_requested));
        (self.uncommitted && self.last_commit.elapsed() >= self.commit_interval) || requested
    }

    /// Flushes every running task, makes the output durable, commits input offsets (in the
    /// transaction under exactly-once), and writes checkpoints.
    pub(crate) fn commit(&mut self, consumer: &Consumer_) -> Result<()> {
        for id in &self.running {
            if let Some(task) = self.tasks.get_mut(id) {
                task.flush()?;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for id in &self.running {
            if let Some(task) = self.tasks.get(id) {
                for ((topic, partition), offset) in task.committable_offsets() {
                    tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                        .map_err(|e| StreamsError::kafka("building offsets to commit", e))?;
                }
            }
        }
        match self.guarantee {
            ProcessingGuarantee::AtLeastOnce => {
                self.producer.flush()?;
                if tpl.count() > 0 {
                    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                        StreamsError::kafka(
                            format!("committing offsets of thread {}", self.name),
                            e,
                        )
                    })?;
                }
            }
            ProcessingGuarantee::ExactlyOnceV2 => {
                let group = consumer.group_metadata().ok_or_else(|| {
                    StreamsError::Fatal("the consumer has no group metadata".into())
                })?;
                self.producer.commit_transaction(&tpl, &group)?;
            }
        }
        if self.guarantee == ProcessingGuarantee::AtLeastOnce {
            for id in &self.running {
                if let (Some(task), Some(ends)) = (self.tasks.get(id), self.changelog_ends.get(id))
                {
                    task.write_checkpoint(&self.next_offsets(task, ends))?;
                }
            }
        }
        self.last_commit = Instant::now();
        self.uncommitted = false;
        self.metrics.commits += 1;
        Ok(())
    }

    /// One round of the loop after polling.
    fn maintain(&mut self, consumer: &Consumer_) -> Result<()> {
        if self.assignment_changed {
            self.create_tasks(consumer)?;
        }
        if !self.reader.is_idle() {
            for (id, ends) in self.reader.step(&mut self.tasks, RESTORE_BATCH)? {
                self.start_running(consumer, id, ends)?;
            }
        }
        self.process()?;
        self.punctuate_wall_clock()?;
        self.pause_parked(consumer);
        if self.commit_due() {
            self.commit(consumer)?;
        }
        self.producer.check_failures()?;
        self.report();
        Ok(())
    }

    fn has_work(&self) -> bool {
        !self.reader.is_idle()
            || self.assignment_changed
            || self
                .running
                .iter()
                .any(|id| self.tasks.get(id).is_some_and(|t| t.buffered() > 0))
    }

    /// Clean shutdown: commit, close every task.
    fn shutdown(&mut self, consumer: &Consumer_) -> Result<()> {
        let mut clean = true;
        if !self.running.is_empty() {
            if let Err(e) = self.commit(consumer) {
                tracing::warn!(thread = %self.name, error = %e, "final commit failed; closing tasks unclean");
                clean = false;
            }
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            self.close_task(id, clean)?;
        }
        Ok(())
    }

    /// After a failure: close every task without committing.
    fn abandon(&mut self) {
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            if let Err(e) = self.producer.abort_transaction() {
                tracing::warn!(error = %e, "aborting the transaction after a failure");
            }
        }
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Err(e) = self.close_task(id, false) {
                tracing::warn!(task = %id, error = %e, "closing a task after a failure");
            }
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn detach(m: &rdkafka::message::BorrowedMessage<'_>) -> ((String, i32), RawRecord) {
    let timestamp = match m.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => -1,
    };
    let headers = match m.headers() {
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect(),
        None => Headers::new(),
    };
    (
        (m.topic().to_owned(), m.partition()),
        RawRecord {
            offset: m.offset(),
            timestamp,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        },
    )
}

/// Everything a stream thread needs to start.
pub(crate) struct ThreadSetup {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) config: ResolvedConfig,
    pub(crate) env: TaskEnv,
    pub(crate) consumer: rdkafka::ClientConfig,
    pub(crate) restore_consumer: rdkafka::ClientConfig,
    pub(crate) producer: Arc<StreamsProducer>,
    pub(crate) state: Arc<StateCell>,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Mutex<ThreadMetrics>>,
    /// Group membership changes by any thread of the instance; see `handoff`.
    pub(crate) membership_changes: Arc<AtomicU64>,
}

/// Runs a stream thread until shutdown or failure.
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
    let core = Arc::new(Mutex::new(ThreadCore {
        name: setup.name.clone(),
        index: setup.index,
        topology: setup.topology.clone(),
        env: setup.env.clone(),
        guarantee: setup.config.guarantee,
        tasks: BTreeMap::new(),
        running: BTreeSet::new(),
        changelog_ends: BTreeMap::new(),
        assigned: BTreeSet::new(),
        paused: BTreeSet::new(),
        parked: HashMap::new(),
        assignment_changed: false,
        waiting_for_lock: BTreeMap::new(),
        reader: ChangelogReader::new(&setup.restore_consumer)?,
        producer: setup.producer.clone(),
        commit_interval: setup.config.commit_interval,
        last_commit: Instant::now(),
        uncommitted: false,
        buffered_limit: setup.config.buffered_records_per_partition,
        topic_subtopology,
        subtopology_sources,
        state: setup.state.clone(),
        metrics: ThreadMetrics::default(),
        shared_metrics: setup.metrics.clone(),
        received_assignment: false,
        rebalance_started: None,
        started: Instant::now(),
        handoffs: Handoffs::new(
            setup.membership_changes.clone(),
            setup.config.consumer_group_protocol(),
        ),
    }));
    let consumer: Consumer_ = setup
        .consumer
        .create_with_context(ThreadContext {
            core: core.clone(),
            resets: setup.topology.offset_resets(&app),
        })
        .map_err(|e| StreamsError::kafka(format!("creating the consumer of {}", setup.name), e))?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| StreamsError::kafka(format!("subscribing to {topics:?}"), e))?;
    lock(&core).handoffs.joined();
    setup.state.thread(setup.index, ThreadState::Rebalancing);
    tracing::info!(thread = %setup.name, topics = ?topics, "stream thread started");

    let poll_idle = setup.config.poll;
    let outcome = (|| -> Result<()> {
        while !setup.shutdown.load(Ordering::Relaxed) {
            let (timeout, wants_records) = {
                let c = lock(&core);
                let timeout = if c.has_work() {
                    Duration::ZERO
                } else {
                    poll_idle
                };
                (timeout, c.wants_records())
            };
            let mut batch = Vec::new();
            let polled = if wants_records {
                consumer.poll(timeout)
            } else {
                None // full buffers: process first (rebalance callbacks wait one round)
            };
            if let Some(first) = polled {
                let mut next = Some(first);
                while let Some(result) = next {
                    match result {
                        Ok(m) => batch.push(detach(&m)),
                        Err(e) => {
                            tracing::warn!(thread = %setup.name, error = %e, "consumer error")
                        }
                    }
                    if batch.len() >= POLL_BATCH {
                        break;
                    }
                    next = consumer.poll(Duration::ZERO);
                }
            }
            let mut c = lock(&core);
            c.route(batch);
            c.maintain(&consumer)?;
            if c.handoffs.nudge_due() {
                tracing::debug!(thread = %setup.name, "this thread or a sibling joined, released partitions or left; asking the group coordinator for this thread's assignment");
                if let Err(e) = consumer.subscribe(&topic_refs) {
                    tracing::warn!(thread = %setup.name, error = %e, "re-subscribing to pick up released partitions");
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
    if let Err(e) = setup.producer.flush() {
        tracing::warn!(thread = %setup.name, error = %e, "final producer flush");
    }
    lock(&core).report();
    setup.state.thread(setup.index, ThreadState::Dead);
    tracing::info!(thread = %setup.name, "stream thread stopped");
    outcome
}
