//! The life of a stream thread's tasks: created once all their input partitions are assigned,
//! restored, run, and closed, cleanly (after a commit) or dirty (after a failure), and the
//! recovery that closes them all dirty and resumes from the last commit.
//!
//! A task created on this thread resumes the time of its input partitions from the metadata
//! committed with their offsets, and its stores restore from the changelog offsets they were
//! committed at. Recovery ([`ThreadCore::recover`]) aborts the transaction, closes every task
//! dirty, rewinds the input partitions to the last committed offsets (or to where this thread
//! began reading them), replaces the producer if it is unusable, and lets the tasks be created
//! again after a backoff.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::commit::decode_partition_time;
use super::{tpl_of, Consumer_, Polled, ThreadCore};
use crate::config::ProcessingGuarantee;
use crate::error::{Result, StreamsError};
use crate::runtime::producer::{KafkaRecordCollector, StreamsProducer};
use crate::runtime::recovery::{self, Recovery};
use crate::runtime::restore::{Registration, RestoredOffsets};
use crate::task::{StreamTask, TaskId};

/// How long a task directory may stay locked by its previous owner before that is an error.
const LOCK_PATIENCE: Duration = Duration::from_secs(60);
/// How often a thread retries a locked task directory.
const LOCK_RETRY: Duration = Duration::from_millis(100);
/// How long a thread keeps recovering without a successful commit before it gives up.
pub(crate) const RECOVERY_PATIENCE: Duration = Duration::from_secs(300);
/// Timeout for reading committed offsets and for seeking.
const GROUP_TIMEOUT: Duration = Duration::from_secs(30);

impl ThreadCore {
    pub(crate) fn pause(&mut self, consumer: &Consumer_, parts: Vec<(String, i32)>) {
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

    pub(crate) fn resume(&mut self, consumer: &Consumer_, parts: Vec<(String, i32)>) {
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

    /// Takes polled records to their tasks (or parks them until the task exists), and gives
    /// the emptied runs back to `polled`.
    pub(crate) fn route(&mut self, polled: &mut Polled) {
        let mut runs = std::mem::take(&mut polled.runs);
        for (tp, mut records) in runs.drain(..) {
            if self.assigned.contains(&tp) {
                if let Some(first) = records.first() {
                    // Where this thread began reading: the rewind point until a commit.
                    self.rewind_to.entry(tp.clone()).or_insert(first.offset);
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
                    Some(task) => task.add_records(&tp.0, tp.1, records.drain(..)),
                    None => self.parked.entry(tp).or_default().append(&mut records),
                }
            }
            // Otherwise revoked meanwhile: the next owner reads them again.
            polled.recycle(records);
        }
        polled.runs = runs;
    }

    /// Creates tasks whose input partitions are all assigned, and starts their restoration.
    pub(crate) fn create_tasks(&mut self, consumer: &Consumer_) -> Result<()> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        self.retry_at = None;
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
                Err(StreamsError::Store(locked @ state_stores::StoreError::Locked { .. })) => {
                    let since = *self.waiting_for_lock.entry(id).or_insert_with(Instant::now);
                    if since.elapsed() > LOCK_PATIENCE {
                        for task in created {
                            task.close()?;
                        }
                        return Err(StreamsError::Store(locked));
                    }
                    tracing::debug!(task = %id, "task directory still locked by its previous owner; retrying");
                }
                Err(e) => {
                    for task in created {
                        task.close()?;
                    }
                    return Err(e);
                }
            }
        }
        if !self.waiting_for_lock.is_empty() {
            // Try again shortly, without spinning.
            self.assignment_changed = true;
            self.retry_at = Some(Instant::now() + LOCK_RETRY);
        }
        if created.is_empty() {
            return Ok(());
        }
        self.resume_times(consumer, &mut created);
        let registrations = {
            let refs: Vec<&StreamTask> = created.iter().collect();
            self.reader.register(&refs)
        };
        let registrations = match registrations {
            Ok(r) => r,
            Err(e) => {
                for task in created {
                    task.close()?;
                }
                if recovery::classify(&e) == Recovery::Fatal
                    && !matches!(e, StreamsError::Kafka { .. })
                {
                    return Err(e);
                }
                tracing::warn!(thread = %self.name, error = %e, "looking up changelog offsets failed; retrying");
                self.assignment_changed = true;
                self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                return Ok(());
            }
        };
        for (task, registration) in created.into_iter().zip(registrations) {
            let id = task.id;
            let registration = match registration {
                Ok(r) => r,
                Err(e @ (StreamsError::TaskCorrupted { .. } | StreamsError::Store(_))) => {
                    tracing::warn!(task = %id, error = %e, "local state cannot be trusted; wiping it and restoring from the changelog");
                    task.close_and_wipe()?;
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

    /// Reads the offsets committed for the new tasks' input partitions: their metadata resumes
    /// each partition's time, and they are where a recovery rewinds to.
    fn resume_times(&mut self, consumer: &Consumer_, tasks: &mut [StreamTask]) {
        let parts: Vec<(String, i32)> = tasks.iter().flat_map(|t| t.input_partitions()).collect();
        if parts.is_empty() {
            return;
        }
        let committed = match consumer.committed_offsets(tpl_of(&parts), GROUP_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(thread = %self.name, error = %e, "reading committed offsets; stream time starts afresh");
                return;
            }
        };
        let mut times = Vec::new();
        for e in committed.elements() {
            let tp = (e.topic().to_owned(), e.partition());
            if let Offset::Offset(o) = e.offset() {
                self.rewind_to.insert(tp.clone(), o);
            }
            if let Some(time) = decode_partition_time(e.metadata()) {
                times.push((tp, time));
            }
        }
        for task in tasks.iter_mut() {
            task.resume_partition_times(&times);
        }
    }

    /// A task finished restoring (or had nothing to restore): its stores record where their
    /// changelogs are, its processors initialize, and its partitions flow.
    pub(crate) fn start_running(
        &mut self,
        consumer: &Consumer_,
        id: TaskId,
        ends: RestoredOffsets,
    ) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        task.commit_stores(&ends)?;
        task.init()?;
        let inputs = task.input_partitions();
        self.changelog_ends.insert(id, ends);
        self.running.insert(id);
        self.resume(consumer, inputs);
        tracing::info!(thread = %self.name, task = %id, "task running");
        Ok(())
    }

    pub(crate) fn process(&mut self) -> Result<bool> {
        let mut any = false;
        for id in self.running.iter() {
            if let Some(task) = self.tasks.get_mut(id) {
                let mut n = 0;
                while n < super::PROCESS_PER_TASK && task.process_next()? {
                    n += 1;
                }
                any |= n > 0;
            }
        }
        self.uncommitted |= any;
        Ok(any)
    }

    pub(crate) fn punctuate_wall_clock(&mut self) -> Result<()> {
        let now = super::wall_clock_ms();
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
    pub(crate) fn pause_parked(&mut self, consumer: &Consumer_) {
        let parked: Vec<(String, i32)> = self
            .parked
            .keys()
            .filter(|p| !self.paused.contains(*p))
            .cloned()
            .collect();
        self.pause(consumer, parked);
    }

    /// Closes one task. A clean close (after a commit) records the changelog offsets its stores
    /// reached; a dirty one drops what was not committed.
    pub(crate) fn close_task(&mut self, id: TaskId, clean: bool) -> Result<()> {
        self.waiting_for_lock.remove(&id);
        let Some(task) = self.tasks.remove(&id) else {
            return Ok(());
        };
        let was_running = self.running.remove(&id);
        let ends = self.changelog_ends.remove(&id).unwrap_or_default();
        if self.reader.is_restoring(id) {
            let positions = self.reader.remove(id)?;
            if clean {
                task.commit_stores(&positions)?;
            }
        } else if clean && was_running {
            task.commit_stores(&self.next_offsets(&task, &ends))?;
        }
        self.metrics.processed += task.metrics.processed;
        self.metrics.skipped += task.metrics.skipped;
        self.metrics.punctuations += task.metrics.punctuations;
        self.metrics.processing_skipped += task.metrics.processing_skipped;
        self.metrics.dead_lettered += task.metrics.dead_lettered;
        self.metrics.dropped_late += task.metrics.dropped_late;
        self.metrics.dropped_null_key += task.metrics.dropped_null_key;
        if clean {
            task.close()?;
        } else {
            task.close_dirty()?;
        }
        tracing::info!(thread = %self.name, task = %id, clean, "task closed");
        Ok(())
    }

    /// Closes every task dirty and forgets records buffered for them.
    pub(crate) fn close_all_dirty(&mut self) {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Err(e) = self.close_task(id, false) {
                tracing::warn!(thread = %self.name, task = %id, error = %e, "closing a task after a failure");
            }
        }
        self.waiting_for_lock.clear();
        self.parked.clear();
    }

    /// Recovers from `error` as `kind` says (see [`crate::runtime::recovery`]): abort, close every
    /// task dirty, replace the producer if needed, rewind, and create the tasks again after a
    /// backoff. Fails once recovery has gone on for [`RECOVERY_PATIENCE`] without a commit.
    pub(crate) fn recover(&mut self, error: StreamsError, kind: Recovery) -> Result<()> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > RECOVERY_PATIENCE {
            return Err(StreamsError::Fatal(format!(
                "stream thread {} kept failing for {}s without a successful commit; last error: {error}",
                self.name,
                since.elapsed().as_secs()
            )));
        }
        // The transaction in flight, if any, ends first: what it committed is where to resume.
        if let Err(e) = self.end_in_flight_for_recovery() {
            tracing::debug!(thread = %self.name, error = %e, "the commit in flight failed too");
        }
        self.recoveries_in_a_row += 1;
        self.metrics.recoveries += 1;
        tracing::warn!(thread = %self.name, error = %error, ?kind, attempt = self.recoveries_in_a_row,
            "recovering: closing tasks without committing and resuming from the last commit");
        let exactly_once = self.guarantee == ProcessingGuarantee::ExactlyOnceV2;
        // A flush that timed out leaves records the producer may never deliver (requests lost
        // to a frozen broker): a new producer starts clean.
        let stuck = matches!(
            &error,
            StreamsError::Kafka {
                source: rdkafka::error::KafkaError::Flush(_),
                ..
            }
        );
        // A client stuck in a transaction call cannot abort: a new producer fences it.
        let mut new_producer = kind == Recovery::Rejoin
            || self.producer.is_fatal()
            || self.producer.is_stuck()
            || stuck;
        if exactly_once && !new_producer {
            if let Err(e) = self.producer.abort_transaction() {
                tracing::warn!(thread = %self.name, error = %e, "aborting the transaction failed; replacing the producer");
                new_producer = true;
            }
        }
        self.close_all_dirty();
        if new_producer {
            self.replace_producer()?;
        }
        self.rewind_pending = true;
        self.assignment_changed = true;
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << self.recoveries_in_a_row.min(6))
            .min(Duration::from_secs(5));
        self.retry_at = Some(Instant::now() + backoff);
        if kind == Recovery::Rejoin {
            self.nudge_group = true;
        }
        Ok(())
    }

    /// A new producer with the same settings (and transactional id, which fences the old one).
    fn replace_producer(&mut self) -> Result<()> {
        self.producer.discard();
        let producer = Arc::new(StreamsProducer::new(
            &self.producer_config,
            self.guarantee,
            self.production_handler.clone(),
            self.env.dead_letter.clone(),
            self.producer.client_id().to_owned(),
        )?);
        self.env.collector = Arc::new(KafkaRecordCollector {
            producer: producer.clone(),
        });
        self.producer = producer;
        tracing::info!(thread = %self.name, "producer replaced");
        Ok(())
    }

    /// Moves every assigned input partition back to where processing resumes: its last committed
    /// offset, or where this thread began reading it. A partition the consumer cannot seek makes
    /// the thread rejoin the group, which restarts every partition at its committed offset.
    pub(crate) fn rewind(&mut self, consumer: &Consumer_) -> Result<()> {
        self.rewind_pending = false;
        self.parked.clear();
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 && !self.assigned.is_empty() {
            // A commit whose answer was lost may still have committed: the group coordinator
            // knows what did (offsets of pending transactions are not stable until they end).
            match consumer.committed_offsets(tpl_of(&self.assigned), GROUP_TIMEOUT) {
                Ok(committed) => {
                    for e in committed.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            self.rewind_to
                                .insert((e.topic().to_owned(), e.partition()), o);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(thread = %self.name, error = %e, "reading the committed offsets to rewind to; using the last ones this thread committed");
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &self.assigned {
            if let Some(offset) = self.rewind_to.get(tp) {
                tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset))
                    .map_err(|e| StreamsError::kafka("rewinding input partitions", e))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let failed = match consumer.seek_partitions(tpl, GROUP_TIMEOUT) {
            Ok(result) => result
                .elements()
                .iter()
                .filter_map(|e| {
                    e.error()
                        .err()
                        .map(|err| format!("{}-{}: {err}", e.topic(), e.partition()))
                })
                .collect::<Vec<_>>(),
            Err(e) => vec![e.to_string()],
        };
        if !failed.is_empty() {
            tracing::warn!(thread = %self.name, failed = ?failed, "rewinding failed; rejoining the group to restart from the committed offsets");
            self.rejoin_pending = true;
        }
        Ok(())
    }
}
