//! Restoration: rebuilding a task's stores from their changelogs before the task processes.
//!
//! Each stream thread has one restore consumer, assigned (no group) to the changelog partitions
//! of its restoring tasks. A persistent store restores from the changelog offset it was last
//! committed at (which it keeps in its own files), an in-memory store from the start of the log,
//! and both up to the end offset read when restoration began; under exactly-once the restore
//! consumer reads committed records only. An offset outside the log means the local state cannot
//! be trusted: the task's state is wiped and restored in full. The thread calls
//! [`ChangelogReader::step`] between polls of its main consumer, so a rebalance that arrives
//! mid-restore is handled at once: revoked tasks simply stop restoring. Broker errors while
//! reading are logged and retried on the next step (librdkafka reconnects on its own); progress is
//! logged every few seconds. A restoration that makes no progress for `stall.timeout.ms`, with
//! records left to read, gets new clients (librdkafka can be left stuck after a broker fault;
//! see the stream thread's stall watchdog), which resume every partition where it stood.
//!
//! Progress also comes from the consumer's position, which passes offsets that carry no record
//! (transaction markers). librdkafka resets a released partition's position only once its fetch
//! has stopped, asynchronously; so a partition this reader released is assigned again only
//! [`RELEASE_SETTLE`] later, and a stale position can never skip records of the new assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use state_stores::ChangelogRecord;

use super::client_log::TracingContext;
use crate::error::{Result, StreamsError};
use crate::task::{StreamTask, TaskId};

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a released changelog partition rests before it is assigned again (see the
/// [module docs](self)). A fetch in flight ends within `fetch.wait.max.ms` (500 ms by default).
const RELEASE_SETTLE: Duration = Duration::from_millis(1500);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A pause between two steps longer than this restarts the standstill clock: the thread was
/// busy elsewhere, and the reader's clients cannot be blamed for it.
const STEP_GAP: Duration = Duration::from_secs(2);

/// One changelog partition being restored.
#[derive(Debug)]
struct Restoring {
    task: TaskId,
    store: String,
    /// The end offset to reach.
    end: i64,
    /// The next offset to apply.
    position: i64,
    restored: u64,
}

/// The records one [`ChangelogReader::step`] read from one changelog partition.
struct Batch {
    key: (String, i32),
    /// The topic's handle in the restore consumer ([`super::consumed::topic_handle`]).
    topic: usize,
    /// The partition's end offset and next offset to apply when the step began.
    end: i64,
    position: i64,
    records: Vec<ChangelogRecord>,
}

impl Batch {
    fn is(&self, topic: usize, partition: i32) -> bool {
        self.key.1 == partition && self.topic == topic
    }
}

/// Where a task's changelogs end once restored; checkpoints start from here.
pub(crate) type RestoredOffsets = BTreeMap<(String, i32), i64>;

/// The thread's changelog reader; see the [module docs](self).
pub(crate) struct ChangelogReader {
    consumer: BaseConsumer<TracingContext>,
    /// Looks up changelog offsets; never fetches.
    offsets: BaseConsumer<TracingContext>,
    /// Changelog topics whose metadata the restore consumer has.
    known_topics: BTreeSet<String>,
    active: HashMap<(String, i32), Restoring>,
    /// Tasks still restoring, with the changelog end offsets known so far.
    tasks: BTreeMap<TaskId, RestoredOffsets>,
    /// When each partition was last released.
    released: HashMap<(String, i32), Instant>,
    /// Registered partitions waiting for their release to settle: where to start, and when.
    deferred: Vec<((String, i32), i64, Instant)>,
    last_progress: Instant,
    /// The restore consumer's settings, for new clients.
    config: ClientConfig,
    /// How long restoration may make no progress before the clients are replaced.
    stall_timeout: Duration,
    /// When a partition's position last moved (or nothing was restoring).
    moved_at: Instant,
    /// When [`ChangelogReader::step`] last ran.
    last_step: Instant,
    /// Records restored by this reader, all tasks together.
    pub(crate) restored_records: u64,
    /// Time spent applying restored records.
    pub(crate) restore_time: Duration,
    /// Times the clients were replaced.
    pub(crate) renewals: u64,
}

/// What registering a task found.
pub(crate) enum Registration {
    /// Nothing to restore: the task can run. Holds its changelog end offsets.
    Ready(RestoredOffsets),
    /// Restoration started.
    Restoring,
}

/// The restore consumer and the offsets client, made from the restore consumer's settings.
fn clients(
    config: &ClientConfig,
) -> Result<(BaseConsumer<TracingContext>, BaseConsumer<TracingContext>)> {
    let consumer: BaseConsumer<TracingContext> = config
        .create_with_context(TracingContext)
        .map_err(|e| StreamsError::kafka("creating the restore consumer", e))?;
    // End offsets come from a client that never fetches: the broker answers one request
    // per connection at a time, and the restore consumer's fetches wait on the broker for
    // up to fetch.wait.max.ms, which would delay every lookup by that much.
    let mut lookup = config.clone();
    lookup.remove("group.id");
    if let Some(id) = config.get("client.id") {
        lookup.set("client.id", format!("{id}-offsets"));
    }
    let offsets: BaseConsumer<TracingContext> = lookup
        .create_with_context(TracingContext)
        .map_err(|e| StreamsError::kafka("creating the changelog offsets client", e))?;
    Ok((consumer, offsets))
}

/// The first and end offsets (the last stable one under read_committed) of `parts`, read
/// by `client`: one request per bound (per leader) for them all, each within `timeout`.
pub(crate) fn watermarks(
    client: &BaseConsumer<TracingContext>,
    parts: &BTreeSet<(String, i32)>,
    timeout: Duration,
) -> Result<HashMap<(String, i32), (i64, i64)>> {
    let mut found: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    if parts.is_empty() {
        return Ok(found);
    }
    for (bound, which) in [(Offset::Beginning, 0), (Offset::End, 1)] {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in parts {
            query
                .add_partition_offset(topic, *partition, bound)
                .map_err(|e| StreamsError::kafka(format!("querying {topic}-{partition}"), e))?;
        }
        let answer = client
            .offsets_for_times(query, timeout)
            .map_err(|e| StreamsError::kafka(format!("reading the offsets of {parts:?}"), e))?;
        for e in answer.elements() {
            let what = || format!("reading the offsets of {}-{}", e.topic(), e.partition());
            if let Err(err) = e.error() {
                return Err(StreamsError::kafka(what(), err));
            }
            let Offset::Offset(offset) = e.offset() else {
                return Err(StreamsError::Fatal(format!(
                    "{}: the broker answered {:?}",
                    what(),
                    e.offset()
                )));
            };
            let entry = found
                .entry((e.topic().to_owned(), e.partition()))
                .or_default();
            if which == 0 {
                entry.0 = offset;
            } else {
                entry.1 = offset;
            }
        }
    }
    if let Some(missing) = parts.iter().find(|p| !found.contains_key(*p)) {
        return Err(StreamsError::Fatal(format!(
            "the broker gave no offsets for {}-{}",
            missing.0, missing.1
        )));
    }
    Ok(found)
}

impl ChangelogReader {
    /// A reader whose clients are replaced once restoration has made no progress for
    /// `stall_timeout` (zero: never); see the [module docs](self).
    pub(crate) fn new(config: &ClientConfig, stall_timeout: Duration) -> Result<Self> {
        let (consumer, offsets) = clients(config)?;
        Ok(ChangelogReader {
            consumer,
            offsets,
            config: config.clone(),
            known_topics: BTreeSet::new(),
            active: HashMap::new(),
            tasks: BTreeMap::new(),
            released: HashMap::new(),
            deferred: Vec::new(),
            last_progress: Instant::now(),
            stall_timeout,
            moved_at: Instant::now(),
            last_step: Instant::now(),
            restored_records: 0,
            restore_time: Duration::ZERO,
            renewals: 0,
        })
    }

    /// New clients (the old ones may be stuck, see [`crate::runtime::thread`]'s stall
    /// watchdog), with every partition still restoring assigned again where it stands.
    pub(crate) fn renew_clients(&mut self) -> Result<()> {
        let (consumer, offsets) = clients(&self.config)?;
        self.consumer = consumer;
        self.offsets = offsets;
        self.known_topics.clear();
        self.deferred.clear();
        self.released.clear();
        self.renewals += 1;
        self.moved_at = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), r) in &self.active {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(r.position))
                .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))?;
        }
        self.assign(&tpl)
    }

    /// Starts restoring `tasks`' stores, looking up all their changelogs' offsets together.
    /// Each task's answer is its own: a checkpoint that points outside the log means that
    /// task's local state cannot be trusted ([`StreamsError::TaskCorrupted`]).
    pub(crate) fn register(&mut self, tasks: &[&StreamTask]) -> Result<Vec<Result<Registration>>> {
        let parts: BTreeSet<(String, i32)> = tasks
            .iter()
            .flat_map(|t| {
                t.changelogs()
                    .iter()
                    .map(|c| (c.topic.clone(), c.partition))
            })
            .collect();
        let marks = watermarks(&self.offsets, &parts, WATERMARK_TIMEOUT)?;
        if self.active.is_empty() {
            self.last_progress = Instant::now();
        }
        let mut added = TopicPartitionList::new();
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            let answer = self.register_one(task, &marks, &mut added);
            answers.push(answer);
        }
        self.assign(&added)?;
        Ok(answers)
    }

    fn assign(&mut self, added: &TopicPartitionList) -> Result<()> {
        if added.count() > 0 {
            self.learn_topics(added)?;
            self.consumer
                .incremental_assign(added)
                .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))?;
        }
        Ok(())
    }

    /// Assigns deferred partitions whose release has settled.
    fn assign_settled(&mut self) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut ready = TopicPartitionList::new();
        let mut waiting = Vec::new();
        for (tp, start, at) in std::mem::take(&mut self.deferred) {
            if !self.active.contains_key(&tp) {
                continue; // its task stopped restoring meanwhile
            }
            if at <= now {
                ready
                    .add_partition_offset(&tp.0, tp.1, Offset::Offset(start))
                    .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))?;
            } else {
                waiting.push((tp, start, at));
            }
        }
        self.deferred = waiting;
        self.assign(&ready)
    }

    /// Gives the restore consumer metadata for changelog topics it has not assigned before. On
    /// its own it would learn of them only on its once-a-second refresh of unknown topics,
    /// adding up to a second to every restoration.
    fn learn_topics(&mut self, added: &TopicPartitionList) -> Result<()> {
        let new: BTreeSet<String> = added
            .elements()
            .iter()
            .map(|e| e.topic().to_owned())
            .filter(|t| !self.known_topics.contains(t))
            .collect();
        for topic in new {
            self.consumer
                .fetch_metadata(Some(&topic), WATERMARK_TIMEOUT)
                .map_err(|e| {
                    StreamsError::kafka(format!("reading the metadata of changelog {topic}"), e)
                })?;
            self.known_topics.insert(topic);
        }
        Ok(())
    }

    fn register_one(
        &mut self,
        task: &StreamTask,
        marks: &HashMap<(String, i32), (i64, i64)>,
        added: &mut TopicPartitionList,
    ) -> Result<Registration> {
        let committed = task.committed_changelog_offsets()?;
        let mut ends = RestoredOffsets::new();
        let mut plan = Vec::new();
        for c in task.changelogs() {
            let key = (c.topic.clone(), c.partition);
            let (low, high) = marks.get(&key).copied().unwrap_or_default();
            let start = match committed.get(&key).copied().filter(|_| c.persistent) {
                Some(offset) if offset > high || offset < low => {
                    return Err(StreamsError::TaskCorrupted {
                        task: task.id.to_string(),
                        reason: format!(
                            "store `{}` was committed at offset {offset} of {}-{}, outside the log [{low}, {high}]",
                            c.store, c.topic, c.partition
                        ),
                    });
                }
                Some(offset) => offset,
                None => low,
            };
            ends.insert(key.clone(), high);
            if start < high {
                plan.push((key, c.store.clone(), start, high));
            }
        }
        if plan.is_empty() {
            return Ok(Registration::Ready(ends));
        }
        for ((topic, partition), store, start, high) in plan {
            tracing::info!(task = %task.id, store = %store, changelog = %topic, partition,
                from = start, to = high, "restoring");
            let settled = self
                .released
                .get(&(topic.clone(), partition))
                .map(|at| *at + RELEASE_SETTLE)
                .filter(|at| *at > Instant::now());
            match settled {
                Some(at) => self.deferred.push(((topic.clone(), partition), start, at)),
                None => added
                    .add_partition_offset(&topic, partition, Offset::Offset(start))
                    .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))?,
            }
            self.active.insert(
                (topic, partition),
                Restoring {
                    task: task.id,
                    store,
                    end: high,
                    position: start,
                    restored: 0,
                },
            );
        }
        self.tasks.insert(task.id, ends);
        Ok(Registration::Restoring)
    }

    /// Stops fetching `parts`; records already fetched for them are skipped by [`Self::step`].
    fn unassign(&mut self, parts: &[(String, i32)]) -> Result<()> {
        let assigned = self.consumer.assignment().ok();
        let mut tpl = TopicPartitionList::new();
        let now = Instant::now();
        for (topic, partition) in parts {
            let is_assigned = assigned
                .as_ref()
                .is_none_or(|a| a.find_partition(topic, *partition).is_some());
            if is_assigned {
                tpl.add_partition(topic, *partition);
                self.released.insert((topic.clone(), *partition), now);
            }
        }
        self.released
            .retain(|_, at| now.duration_since(*at) < RELEASE_SETTLE);
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .incremental_unassign(&tpl)
            .map_err(|e| StreamsError::kafka("releasing changelog partitions", e))
    }

    /// Stops restoring `task` (it was revoked or is closing); returns how far each of its
    /// changelogs was applied.
    pub(crate) fn remove(&mut self, task: TaskId) -> Result<RestoredOffsets> {
        let mut positions = self.tasks.remove(&task).unwrap_or_default();
        let keys: Vec<(String, i32)> = self
            .active
            .iter()
            .filter(|(_, r)| r.task == task)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            if let Some(r) = self.active.remove(key) {
                positions.insert(key.clone(), r.position);
            }
        }
        self.unassign(&keys)?;
        Ok(positions)
    }

    /// Changelog records still to restore, per restoring task and store.
    pub(crate) fn remaining(&self) -> BTreeMap<(TaskId, String), i64> {
        let mut out = BTreeMap::new();
        for r in self.active.values() {
            *out.entry((r.task, r.store.clone())).or_insert(0) += (r.end - r.position).max(0);
        }
        out
    }

    pub(crate) fn is_restoring(&self, task: TaskId) -> bool {
        self.tasks.contains_key(&task)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Reads up to `budget` changelog records and applies them to their tasks' stores. Returns
    /// the tasks whose restoration finished, with their changelogs' end offsets.
    pub(crate) fn step(
        &mut self,
        tasks: &mut BTreeMap<TaskId, StreamTask>,
        budget: usize,
    ) -> Result<Vec<(TaskId, RestoredOffsets)>> {
        let since_last = std::mem::replace(&mut self.last_step, Instant::now()).elapsed();
        if self.active.is_empty() || since_last > STEP_GAP {
            // Nothing restoring, or the thread was busy elsewhere: not the reader's standstill.
            self.moved_at = Instant::now();
        }
        if self.active.is_empty() {
            return Ok(Vec::new());
        }
        self.assign_settled()?;
        let started = Instant::now();
        let positions_before: i64 = self.active.values().map(|r| r.position).sum();
        // The partitions read in this step, with their records. Records arrive in runs of one
        // partition, and a thread restores a handful of partitions: a short list searched from
        // the last hit finds each record's partition without reading its topic's name.
        let mut batches: Vec<Batch> = Vec::new();
        let mut last = 0;
        let mut read = 0;
        let mut timeout = Duration::from_millis(10);
        while read < budget {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let (topic, partition) = (super::consumed::topic_handle(&m), m.partition());
                    let found = batches
                        .get(last)
                        .filter(|b| b.is(topic, partition))
                        .map(|_| last)
                        .or_else(|| batches.iter().position(|b| b.is(topic, partition)));
                    last = match found {
                        Some(i) => i,
                        None => {
                            let key = (m.topic().to_owned(), partition);
                            let Some(r) = self.active.get(&key) else {
                                continue; // a partition just removed
                            };
                            let (end, position) = (r.end, r.position);
                            batches.push(Batch {
                                key,
                                topic,
                                end,
                                position,
                                records: Vec::new(),
                            });
                            batches.len() - 1
                        }
                    };
                    let batch = &mut batches[last];
                    if m.offset() >= batch.end {
                        continue; // written after restoration began: the task's own writes
                    }
                    if m.offset() < batch.position {
                        continue; // fetched for an earlier assignment of this partition
                    }
                    batch.records.push(ChangelogRecord {
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                    read += 1;
                    timeout = Duration::ZERO;
                }
                Some(Err(e)) => {
                    // Broker trouble: librdkafka retries on its own; carry on next step.
                    tracing::warn!(error = %e, "reading changelogs; retrying");
                    break;
                }
                None => break,
            }
        }
        for Batch { key, records, .. } in batches {
            let Some(r) = self.active.get_mut(&key) else {
                continue;
            };
            let Some(last) = records.last().map(|l| l.offset) else {
                continue;
            };
            let task = tasks.get_mut(&r.task).ok_or_else(|| {
                StreamsError::Fatal(format!(
                    "restoring changelog {}-{} of a task this thread does not own",
                    key.0, key.1
                ))
            })?;
            task.restore(&r.store, &records)?;
            r.restored += records.len() as u64;
            self.restored_records += records.len() as u64;
            r.position = last + 1;
        }
        // The consumer's position also passes offsets that carry no record (transaction markers).
        if let Ok(positions) = self.consumer.position() {
            for e in positions.elements() {
                if let (Offset::Offset(p), Some(r)) = (
                    e.offset(),
                    self.active.get_mut(&(e.topic().to_owned(), e.partition())),
                ) {
                    r.position = r.position.max(p.min(r.end));
                }
            }
        }
        self.restore_time += started.elapsed();
        if self.active.values().map(|r| r.position).sum::<i64>() != positions_before
            || !self.deferred.is_empty()
        {
            self.moved_at = Instant::now();
        } else if !self.stall_timeout.is_zero() && self.moved_at.elapsed() >= self.stall_timeout {
            // Every partition left has records to read (its position is short of its end).
            tracing::warn!(partitions = ?self.active.keys().collect::<Vec<_>>(), seconds = self.stall_timeout.as_secs(),
                "the restore consumer read nothing from changelogs with records left (stall.timeout.ms); replacing it");
            self.renew_clients()?;
        }

        let finished: Vec<(String, i32)> = self
            .active
            .iter()
            .filter(|(_, r)| r.position >= r.end)
            .map(|(k, _)| k.clone())
            .collect();
        let mut done_tasks = Vec::new();
        if !finished.is_empty() {
            for key in &finished {
                if let Some(r) = self.active.remove(key) {
                    if let Some(task) = tasks.get_mut(&r.task) {
                        task.restore_complete(&r.store)?;
                    }
                    tracing::info!(task = %r.task, store = %r.store, changelog = %key.0, partition = key.1,
                        records = r.restored, "restored");
                }
            }
            let still: BTreeSet<TaskId> = self.active.values().map(|r| r.task).collect();
            let complete: Vec<TaskId> = self
                .tasks
                .keys()
                .filter(|t| !still.contains(t))
                .copied()
                .collect();
            for id in complete {
                if let Some(ends) = self.tasks.remove(&id) {
                    done_tasks.push((id, ends));
                }
            }
            self.unassign(&finished)?;
        }
        if self.last_progress.elapsed() >= PROGRESS_EVERY && !self.active.is_empty() {
            self.last_progress = Instant::now();
            for ((topic, partition), r) in &self.active {
                tracing::info!(task = %r.task, store = %r.store, changelog = %topic, partition,
                    restored = r.restored, remaining = r.end - r.position, "restoring");
            }
        }
        Ok(done_tasks)
    }
}
