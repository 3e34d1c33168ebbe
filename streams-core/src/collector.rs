//! Where a task's output goes: sink records and changelog records alike are handed to a
//! [`RecordCollector`]. The runtime's collector sends them through the stream thread's producer;
//! the test driver's keeps them in memory.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use state_stores::changelog::ChangelogSink;

use crate::error::StreamsError;
use crate::record::{Headers, RecordMetadata};

/// A record on its way to a topic.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// The full topic name.
    pub topic: &'a str,
    /// The partition, or `None` to let the partitioner choose from the key.
    pub partition: Option<i32>,
    /// Key bytes (`None`: null key).
    pub key: Option<&'a [u8]>,
    /// Value bytes (`None`: tombstone).
    pub value: Option<&'a [u8]>,
    /// Timestamp, epoch milliseconds.
    pub timestamp: i64,
    /// Headers.
    pub headers: &'a Headers,
    /// The input record being processed when this one was sent, if any (none for changelog
    /// records and during punctuation): the origin a dead-letter record names.
    pub source: Option<&'a RecordMetadata>,
}

/// Takes a task's output records.
pub trait RecordCollector: Send + Sync {
    /// Sends (or queues) one record. Errors that are known at once are returned; delivery
    /// failures surface at the next flush or commit.
    fn send(&self, record: OutgoingRecord<'_>) -> Result<(), StreamsError>;
}

/// Writes one store's changelog records to its changelog partition through a collector, stamped
/// with the timestamp of the record the task is processing.
pub(crate) struct CollectorChangelogSink {
    pub(crate) collector: Arc<dyn RecordCollector>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) timestamp: Arc<AtomicI64>,
}

impl ChangelogSink for CollectorChangelogSink {
    fn send(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let headers = Headers::new();
        self.collector
            .send(OutgoingRecord {
                topic: &self.topic,
                partition: Some(self.partition),
                key: Some(key),
                value,
                timestamp: self.timestamp.load(Ordering::Relaxed),
                headers: &headers,
                source: None,
            })
            .map_err(|e| e.to_string())
    }
}
