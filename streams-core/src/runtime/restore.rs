//! Restoration: rebuilding a task's stores from their changelogs before the task processes.
//!
//! Each stream thread has one restore consumer, assigned (no group) to the changelog partitions
//! of its restoring tasks. A persistent store restores from its checkpoint, an in-memory store
//! from the start of the log, and both up to the end offset read when restoration began. The
//! thread calls [`ChangelogReader::step`] between polls of its main consumer, so a rebalance that
//! arrives mid-restore is handled at once: revoked tasks simply stop restoring. Progress is logged
//! every few seconds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use state_stores::checkpoint::Checkpoint;
use state_stores::ChangelogRecord;

use crate::error::{Result, StreamsError};
use crate::task::{StreamTask, TaskId};

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

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

/// Where a task's changelogs end once restored; checkpoints start from here.
pub(crate) type RestoredOffsets = BTreeMap<(String, i32), i64>;

/// The thread's changelog reader; see the [module docs](self).
pub(crate) struct ChangelogReader {
    consumer: BaseConsumer,
    active: HashMap<(String, i32), Restoring>,
    /// Tasks still restoring, with the changelog end offsets known so far.
    tasks: BTreeMap<TaskId, RestoredOffsets>,
    last_progress: Instant,
    /// Records restored by this reader, all tasks together.
    pub(crate) restored_records: u64,
    /// Time spent applying restored records.
    pub(crate) restore_time: Duration,
}

/// What registering a task found.
pub(crate) enum Registration {
    /// Nothing to restore: the task can run. Holds its changelog end offsets.
    Ready(RestoredOffsets),
    /// Restoration started.
    Restoring,
}

impl ChangelogReader {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self> {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| StreamsError::kafka("creating the restore consumer", e))?;
        Ok(ChangelogReader {
            consumer,
            active: HashMap::new(),
            tasks: BTreeMap::new(),
            last_progress: Instant::now(),
            restored_records: 0,
            restore_time: Duration::ZERO,
        })
    }

    /// Starts restoring `task`'s stores. A checkpoint that points outside the log means the
    /// local state cannot be trusted: [`StreamsError::TaskCorrupted`].
    pub(crate) fn register(&mut self, task: &StreamTask) -> Result<Registration> {
        let checkpoint: Checkpoint = task.read_checkpoint()?;
        let mut ends = RestoredOffsets::new();
        let mut added = false;
        for c in task.changelogs() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&c.topic, c.partition, WATERMARK_TIMEOUT)
                .map_err(|e| {
                    StreamsError::kafka(
                        format!(
                            "reading the end offset of changelog {}-{}",
                            c.topic, c.partition
                        ),
                        e,
                    )
                })?;
            let start = match checkpoint
                .offset(&c.topic, c.partition)
                .filter(|_| c.persistent)
            {
                Some(offset) if offset > high || offset < low => {
                    return Err(StreamsError::TaskCorrupted {
                        task: task.id.to_string(),
                        reason: format!(
                            "store `{}` was checkpointed at offset {offset} of {}-{}, outside the log [{low}, {high}]",
                            c.store, c.topic, c.partition
                        ),
                    });
                }
                Some(offset) => offset,
                None => low,
            };
            ends.insert((c.topic.clone(), c.partition), high);
            if start >= high {
                continue;
            }
            tracing::info!(task = %task.id, store = %c.store, changelog = %c.topic, partition = c.partition,
                from = start, to = high, "restoring");
            self.active.insert(
                (c.topic.clone(), c.partition),
                Restoring {
                    task: task.id,
                    store: c.store.clone(),
                    end: high,
                    position: start,
                    restored: 0,
                },
            );
            added = true;
        }
        if !added {
            return Ok(Registration::Ready(ends));
        }
        self.tasks.insert(task.id, ends);
        self.reassign()?;
        Ok(Registration::Restoring)
    }

    fn reassign(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), r) in &self.active {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(r.position))
                .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| StreamsError::kafka("assigning changelog partitions", e))
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
        if !keys.is_empty() {
            self.reassign()?;
        }
        Ok(positions)
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
        if self.active.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut batches: HashMap<(String, i32), Vec<ChangelogRecord>> = HashMap::new();
        let mut read = 0;
        let mut timeout = Duration::from_millis(10);
        while read < budget {
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_owned(), m.partition());
                    let Some(r) = self.active.get(&key) else {
                        continue; // a partition just removed
                    };
                    if m.offset() >= r.end {
                        continue; // written after restoration began: the task's own writes
                    }
                    batches.entry(key).or_default().push(ChangelogRecord {
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                    read += 1;
                    timeout = Duration::ZERO;
                }
                Some(Err(e)) => {
                    return Err(StreamsError::kafka("reading a changelog", e));
                }
                None => break,
            }
        }
        for (key, batch) in batches {
            let Some(r) = self.active.get_mut(&key) else {
                continue;
            };
            let task = tasks.get_mut(&r.task).ok_or_else(|| {
                StreamsError::Fatal(format!(
                    "restoring changelog {}-{} of a task this thread does not own",
                    key.0, key.1
                ))
            })?;
            task.restore(&r.store, &batch)?;
            r.restored += batch.len() as u64;
            self.restored_records += batch.len() as u64;
            if let Some(last) = batch.last() {
                r.position = last.offset + 1;
            }
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
            let still: std::collections::BTreeSet<TaskId> =
                self.active.values().map(|r| r.task).collect();
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
            self.reassign()?;
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
