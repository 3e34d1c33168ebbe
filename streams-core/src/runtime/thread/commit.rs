//! The commit protocol of a stream thread.
//!
//! A commit, for both guarantees:
//!
//! 1. every running task flushes: caches write down (into the stores and, through the logging
//!    layers, to the changelogs), and processors forward what their caches emitted;
//! 2. the input offsets to commit are gathered, each with the time of its partition as commit
//!    metadata (Kafka Streams' encoding), so that a task created later resumes stream time from
//!    what was committed;
//! 3. at-least-once: the producer is flushed, then the consumer commits the offsets;
//!    exactly-once: the transaction commits outputs, changelog records and offsets together;
//! 4. only then every task's stores record the changelog offsets they have reached; under
//!    exactly-once, that is also when their RocksDB stores apply the writes they held back for
//!    the transaction (see `state_stores::rocks`). A crash at any point leaves the stores at the
//!    previous commit.
//!
//! A failure anywhere is returned to the thread, whose recovery decides what to do
//! (`runtime::recovery`): nothing here has been applied locally that the failed commit covers.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Consumer_, ThreadCore};
use crate::config::ProcessingGuarantee;
use crate::error::{Result, StreamsError};
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

impl ThreadCore {
    /// Flushes every running task, commits (see the [module docs](self)), and records the
    /// changelog offsets in the stores.
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
                    if let (Some(time), Some(mut elem)) = (
                        task.partition_time(topic, *partition),
                        tpl.find_partition(topic, *partition),
                    ) {
                        elem.set_metadata(encode_partition_time(time));
                    }
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
        // Committed: now, and only now, the stores may hold it.
        for id in &self.running {
            if let (Some(task), Some(ends)) = (self.tasks.get(id), self.changelog_ends.get(id)) {
                task.commit_stores(&self.next_offsets(task, ends))?;
            }
        }
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                self.rewind_to
                    .insert((e.topic().to_owned(), e.partition()), o);
            }
        }
        self.last_commit = Instant::now();
        self.uncommitted = false;
        self.failing_since = None;
        self.metrics.commits += 1;
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
