//! The commit protocol of a stream thread.
//!
//! A commit, for both guarantees:
//!
//! 1. every running task flushes: caches write down (into the stores and, through the logging
//!    layers, to the changelogs), and processors forward what their caches emitted;
//! 2. the input offsets to commit are gathered, each with the time of its partition as commit
//!    metadata (Kafka Streams' encoding), so that a task created later resumes stream time from
//!    what was committed;
//! 3. at-least-once: the producer's records are cut (`runtime::cut`), and the consumer commits
//!    the offsets once every record sent before the cut is acknowledged, while this thread goes
//!    on processing (a commit whose records take longer than [`OVERLAP_LIMIT`] stops it until
//!    they are, or until the producer's flush times out);
//!    exactly-once: the stores seal the writes the transaction covers, and the transaction
//!    commits outputs, changelog records and offsets together, on the producer's committer
//!    thread, while this thread goes on processing (its new records are held for the next
//!    transaction, its new store writes wait behind the sealed ones);
//! 4. only once Kafka committed, every task's stores record the changelog offsets they have
//!    reached; under exactly-once, that is also when their RocksDB stores apply the writes they
//!    sealed (see `state_stores::rocks`). Then the held records go out. A crash at any point
//!    leaves the stores at the previous commit.
//!
//! At most one commit is in flight. Revocation and shutdown commit synchronously, after the
//! one in flight. A failure anywhere is returned to the thread, whose recovery decides what to do
//! (`runtime::recovery`): nothing here has been applied locally that the failed commit covers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Consumer_, ThreadCore};
use crate::config::ProcessingGuarantee;
use crate::error::{Result, StreamsError};
use crate::runtime::cut::Cut;
use crate::runtime::restore::RestoredOffsets;
use crate::task::StreamTask;

/// Kafka Streams' first commit-metadata layout: a magic byte, then the partition time.
const METADATA_MAGIC: u8 = 1;

/// Encodes a partition's time as commit metadata (base64 of magic byte + big-endian `i64`).
pub(crate) fn encode_partition_time(time: i64) -> String {
    let mut bytes = [0u8; 9];
    bytes[0] = METADATA_MAGIC;
    bytes[1..].copy_from_slice(&time.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a partition time from commit metadata; `None` for metadata of another layout (or none).
pub(crate) fn decode_partition_time(metadata: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(metadata.trim())
        .ok()?;
    match bytes.split_first() {
        Some((&magic, rest)) if magic >= METADATA_MAGIC && rest.len() >= 8 => {
            Some(i64::from_be_bytes(rest[..8].try_into().ok()?))
        }
        _ => None,
    }
}

/// How long an at-least-once commit's records may take to be acknowledged while the thread
/// goes on processing; past it the thread waits for them (flushing the producer).
pub(crate) const OVERLAP_LIMIT: Duration = Duration::from_secs(1);

/// A commit Kafka has not answered yet.
pub(crate) struct InFlight {
    /// The input offsets it commits: the rewind points once it succeeded.
    offsets: Vec<((String, i32), i64)>,
    started: Instant,
    /// At-least-once: the offsets go to the consumer group once the cut's records are
    /// acknowledged. (Exactly-once: `None`, the producer's committer thread has them.)
    awaiting: Option<(Cut, TopicPartitionList)>,
}

impl ThreadCore {
    /// Commits now and waits for it (after the commit in flight, if any): for revocation and
    /// shutdown.
    pub(crate) fn commit(&mut self, consumer: &Consumer_) -> Result<()> {
        self.wait_in_flight(consumer)?;
        self.start_commit(consumer)?;
        self.wait_in_flight(consumer)
    }

    /// Starts a commit (see the [module docs](self)).
    pub(crate) fn start_commit(&mut self, consumer: &Consumer_) -> Result<()> {
        let started = Instant::now();
        for id in &self.running {
            if let Some(task) = self.tasks.get_mut(id) {
                task.flush()?;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for id in &self.running {
            if let Some(task) = self.tasks.get(id) {
                for (topic, partition, offset) in task.committable_offsets() {
                    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                        .map_err(|e| StreamsError::kafka("building offsets to commit", e))?;
                    if let (Some(time), Some(mut elem)) = (
                        task.partition_time(topic, partition),
                        tpl.find_partition(topic, partition),
                    ) {
                        elem.set_metadata(encode_partition_time(time));
                    }
                }
            }
        }
        let offsets: Vec<((String, i32), i64)> = tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect();
        self.last_commit = Instant::now();
        self.uncommitted = false;
        let waiting = Instant::now();
        match self.guarantee {
            ProcessingGuarantee::AtLeastOnce => {
                let cut = self.producer.cut();
                self.metrics.commit_time += started.elapsed();
                self.in_flight = Some(InFlight {
                    offsets,
                    started: waiting,
                    awaiting: Some((cut, tpl)),
                });
                self.poll_in_flight(consumer)
            }
            ProcessingGuarantee::ExactlyOnceV2 => {
                let group = consumer.group_metadata().ok_or_else(|| {
                    StreamsError::Fatal("the consumer has no group metadata".into())
                })?;
                for id in &self.running {
                    if let Some(task) = self.tasks.get(id) {
                        task.prepare_commit()?;
                    }
                }
                let committing = self.producer.start_commit(tpl, group)?;
                self.metrics.commit_time += started.elapsed();
                if committing {
                    self.in_flight = Some(InFlight {
                        offsets,
                        started: waiting,
                        awaiting: None,
                    });
                    Ok(())
                } else {
                    // Nothing was produced and nothing consumed: nothing to commit.
                    self.finish_commit(InFlight {
                        offsets,
                        started,
                        awaiting: None,
                    })
                }
            }
        }
    }

    /// Finishes the commit in flight if Kafka has answered (at-least-once: if the cut's records
    /// are acknowledged; past [`OVERLAP_LIMIT`] this waits for them).
    pub(crate) fn poll_in_flight(&mut self, consumer: &Consumer_) -> Result<()> {
        match &self.in_flight {
            None => Ok(()),
            Some(InFlight {
                awaiting: Some((cut, _)),
                started,
                ..
            }) => {
                if self.producer.reached(*cut) {
                    self.commit_offsets(consumer)
                } else if started.elapsed() > OVERLAP_LIMIT {
                    self.wait_in_flight(consumer)
                } else {
                    Ok(())
                }
            }
            Some(_) => {
                let outcome = self.producer.poll_commit();
                self.end_in_flight(outcome)
            }
        }
    }

    /// Waits for the commit in flight, if any, and finishes it.
    pub(crate) fn wait_in_flight(&mut self, consumer: &Consumer_) -> Result<()> {
        match &self.in_flight {
            None => Ok(()),
            Some(InFlight {
                awaiting: Some(_), ..
            }) => {
                let blocked = Instant::now();
                // Every record sent so far is delivered: the cut's among them.
                let flushed = self.producer.flush();
                self.metrics.commit_time += blocked.elapsed();
                flushed?;
                self.commit_offsets(consumer)
            }
            Some(_) => self.wait_transaction(),
        }
    }

    /// For a recovery, which has no consumer to commit offsets with: gives up an at-least-once
    /// commit in flight (processing resumes from the one before), and waits for an exactly-once
    /// transaction in flight and finishes it.
    pub(crate) fn end_in_flight_for_recovery(&mut self) -> Result<()> {
        self.give_up_offsets();
        self.wait_transaction()
    }

    /// Exactly-once: waits for the transaction in flight, if any, and finishes it.
    fn wait_transaction(&mut self) -> Result<()> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let blocked = Instant::now();
        let outcome = self.producer.wait_commit();
        self.metrics.commit_time += blocked.elapsed();
        self.end_in_flight(outcome)
    }

    /// At-least-once: drops the commit in flight, if any, without committing its offsets (after
    /// a failure, or when the partitions were lost to the group): processing resumes from the
    /// commit before, as at-least-once allows.
    pub(crate) fn give_up_offsets(&mut self) {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.awaiting.is_some())
        {
            tracing::debug!(thread = %self.name, "giving up the at-least-once commit in flight");
            self.in_flight = None;
        }
    }

    /// At-least-once: the cut's records are acknowledged; the production handler judges those
    /// that failed, then the consumer group gets the offsets.
    fn commit_offsets(&mut self, consumer: &Consumer_) -> Result<()> {
        let Some(mut in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        let committing = Instant::now();
        self.producer.check_failures()?;
        if let Some((_, tpl)) = in_flight.awaiting.take() {
            if tpl.count() > 0 {
                consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                    StreamsError::kafka(format!("committing offsets of thread {}", self.name), e)
                })?;
            }
        }
        self.metrics.commit_time += committing.elapsed();
        self.metrics.commit_wait_time += in_flight.started.elapsed();
        self.finish_commit(in_flight)
    }

    fn end_in_flight(&mut self, outcome: Option<Result<()>>) -> Result<()> {
        let Some(result) = outcome else {
            return Ok(());
        };
        let Some(in_flight) = self.in_flight.take() else {
            return result;
        };
        self.metrics.commit_wait_time += in_flight.started.elapsed();
        result?;
        self.finish_commit(in_flight)?;
        self.producer.release_held()
    }

    /// Kafka committed: the stores record the changelog offsets (and apply their sealed writes),
    /// and the committed offsets become the rewind points.
    fn finish_commit(&mut self, done: InFlight) -> Result<()> {
        let started = Instant::now();
        for id in &self.running {
            if let (Some(task), Some(ends)) = (self.tasks.get(id), self.changelog_ends.get(id)) {
                task.commit_stores(&self.next_offsets(task, ends))?;
            }
        }
        if let Some(purger) = &mut self.purger {
            purger.committed(&done.offsets);
        }
        {
            let mut shared = self
                .shared_committed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (tp, offset) in done.offsets {
                shared.insert(tp.clone(), offset);
                self.rewind_to.insert(tp, offset);
            }
        }
        self.failing_since = None;
        self.recoveries_in_a_row = 0;
        self.metrics.commits += 1;
        self.metrics.commit_time += started.elapsed();
        Ok(())
    }

    /// Where each of `task`'s changelogs ends now: what this thread produced, or what restoration
    /// reached.
    pub(crate) fn next_offsets(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_time_metadata_round_trips_in_kafka_streams_layout() {
        for t in [0, 1, 1_700_000_000_123, i64::MAX, -5] {
            assert_eq!(decode_partition_time(&encode_partition_time(t)), Some(t));
        }
        // Kafka Streams' layout: magic byte 1, the time as a big-endian i64, base64.
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&1_699_999_999_304i64.to_be_bytes());
        let java = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(encode_partition_time(1_699_999_999_304), java);
        assert_eq!(decode_partition_time(""), None);
        assert_eq!(decode_partition_time("not base64!"), None);
        assert_eq!(decode_partition_time("AA=="), None, "another layout");
    }
}

/// Randomized decoding of committed offsets' metadata (the partition time another instance, or
/// Kafka Streams, committed): any string gives a time or `None`, never a panic. Case counts:
/// `KSTREAMS_FUZZ_CASES` (default 512).
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::config;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_metadata_is_a_time_or_none(text in ".{0,40}", raw in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = decode_partition_time(&text);
            // Base64 of arbitrary bytes: a time exactly when the layout is a magic byte >= 1 and
            // at least 8 more bytes, and then the first 8 of them.
            let encoded = base64::engine::general_purpose::STANDARD.encode(&raw);
            let want = match raw.split_first() {
                Some((&magic, rest)) if magic >= METADATA_MAGIC && rest.len() >= 8 => {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&rest[..8]);
                    Some(i64::from_be_bytes(t))
                }
                _ => None,
            };
            prop_assert_eq!(decode_partition_time(&encoded), want);
        }

        #[test]
        fn partition_times_round_trip(t in any::<i64>(), at in any::<usize>()) {
            let encoded = encode_partition_time(t);
            prop_assert_eq!(decode_partition_time(&encoded), Some(t));
            let cut = &encoded[..at % (encoded.len() + 1)];
            let _ = decode_partition_time(cut);
        }
    }
}
