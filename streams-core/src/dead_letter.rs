//! The dead-letter queue (Kafka Streams' KIP-1034): where records that could not be read,
//! processed or produced go, with headers saying why and where from.
//!
//! With `errors.deadletterqueue.topic.name` set, every record the deserialization, processing or
//! production handler judges (whether it continues or fails) is also written to that topic: for
//! a record that could not be read or processed, the input record as it was read (raw key and
//! value bytes, original headers and timestamp); for a record the producer refused in `send`
//! (too large, say), the output record as it was serialized. (A delivery the broker fails later
//! is judged by the production handler but not written here: its delivery report no longer
//! knows the input record it came from.) A dead-letter record the producer refuses in turn (it
//! is as large as the record it copies) is logged, not judged again. Kafka Streams' headers are
//! appended:
//!
//! | header | value (UTF-8) |
//! |---|---|
//! | `__streams.errors.exception` | the error's type, e.g. `StreamsError::Serde`, `panic`, `KafkaError::MessageProduction(MessageSizeTooLarge)` |
//! | `__streams.errors.message` | the error's message |
//! | `__streams.errors.stacktrace` | the error's source chain, one cause a line (there is no stack trace) |
//! | `__streams.errors.topic` | the input topic of the record being processed |
//! | `__streams.errors.partition` | its partition |
//! | `__streams.errors.offset` | its offset |
//!
//! The record goes through the task's record collector, so under exactly-once it is part of the
//! same transaction as the outputs and input offsets: it commits with them, or is aborted with
//! them (as happens when the handler fails the task). The dead-letter topic is not created by the
//! application; it must exist (or the brokers auto-create it).

use std::error::Error as StdError;
use std::sync::Arc;

use crate::collector::OutgoingRecord;
use crate::error::{Result, StreamsError};
use crate::record::{Headers, RecordMetadata};

/// Header with the error's type.
pub const HEADER_ERRORS_EXCEPTION: &str = "__streams.errors.exception";
/// Header with the error's message.
pub const HEADER_ERRORS_MESSAGE: &str = "__streams.errors.message";
/// Header with the error's source chain (Kafka Streams puts the Java stack trace there).
pub const HEADER_ERRORS_STACKTRACE: &str = "__streams.errors.stacktrace";
/// Header with the input topic of the record that failed.
pub const HEADER_ERRORS_TOPIC: &str = "__streams.errors.topic";
/// Header with its partition.
pub const HEADER_ERRORS_PARTITION: &str = "__streams.errors.partition";
/// Header with its offset.
pub const HEADER_ERRORS_OFFSET: &str = "__streams.errors.offset";

/// The configured dead-letter topic; see the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterQueue {
    topic: Arc<str>,
}

/// A record that failed, as it is written to the dead-letter topic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailedRecord<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp: i64,
    pub(crate) headers: &'a Headers,
    /// The input record being processed, when there was one.
    pub(crate) origin: Option<&'a RecordMetadata>,
}

impl DeadLetterQueue {
    pub(crate) fn new(topic: &str) -> Self {
        DeadLetterQueue {
            topic: topic.into(),
        }
    }

    /// The dead-letter topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `failed` to the dead-letter topic through `send`, with the error headers.
    pub(crate) fn send(
        &self,
        send: impl FnOnce(OutgoingRecord<'_>) -> Result<()>,
        failed: FailedRecord<'_>,
        exception: &str,
        error: &(dyn StdError + 'static),
    ) -> Result<()> {
        let headers = error_headers(failed.headers, failed.origin, exception, error);
        send(OutgoingRecord {
            topic: &self.topic,
            partition: None,
            key: failed.key,
            value: failed.value,
            timestamp: failed.timestamp,
            headers: &headers,
            source: failed.origin,
        })
        .inspect(|()| {
            tracing::debug!(topic = %self.topic, exception, "wrote a failed record to the dead-letter queue");
        })
        .inspect_err(|e| {
            tracing::error!(topic = %self.topic, error = %e, "writing a failed record to the dead-letter queue failed");
        })
    }
}

/// The original headers followed by Kafka Streams' error headers.
fn error_headers(
    original: &Headers,
    origin: Option<&RecordMetadata>,
    exception: &str,
    error: &(dyn StdError + 'static),
) -> Headers {
    let mut headers = original.clone();
    let text = |s: String| Some(s.into_bytes());
    headers.add(HEADER_ERRORS_EXCEPTION, text(exception.to_owned()));
    headers.add(HEADER_ERRORS_MESSAGE, text(error.to_string()));
    headers.add(HEADER_ERRORS_STACKTRACE, text(source_chain(error)));
    if let Some(origin) = origin {
        headers.add(HEADER_ERRORS_TOPIC, text(origin.topic.clone()));
        headers.add(HEADER_ERRORS_PARTITION, text(origin.partition.to_string()));
        headers.add(HEADER_ERRORS_OFFSET, text(origin.offset.to_string()));
    }
    headers
}

/// The error and its causes, one a line: `<error>`, then `caused by: <source>` for each.
pub(crate) fn source_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str("\ncaused by: ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// The name of an error's type for the `__streams.errors.exception` header: the variant of
/// [`StreamsError`], or `panic` for a processor that panicked.
pub(crate) fn exception_name(error: &StreamsError) -> &'static str {
    match error {
        StreamsError::Config { .. } => "StreamsError::Config",
        StreamsError::Kafka { .. } => "StreamsError::Kafka",
        StreamsError::MissingSourceTopics { .. } => "StreamsError::MissingSourceTopics",
        StreamsError::Topology { .. } => "StreamsError::Topology",
        StreamsError::Serde { .. } => "StreamsError::Serde",
        StreamsError::InvalidTimestamp { .. } => "StreamsError::InvalidTimestamp",
        StreamsError::Store(_) => "StreamsError::Store",
        StreamsError::Processing { source, .. }
            if source.downcast_ref::<crate::task::Panicked>().is_some() =>
        {
            "panic"
        }
        StreamsError::Processing { .. } => "StreamsError::Processing",
        StreamsError::TaskMigrated { .. } => "StreamsError::TaskMigrated",
        StreamsError::ConsumerStuck { .. } => "StreamsError::ConsumerStuck",
        StreamsError::TransactionAborted { .. } => "StreamsError::TransactionAborted",
        StreamsError::TaskCorrupted { .. } => "StreamsError::TaskCorrupted",
        StreamsError::StoreNotQueryable { .. } => "StreamsError::StoreNotQueryable",
        StreamsError::GlobalStore { .. } => "StreamsError::GlobalStore",
        StreamsError::Embedded(_) => "StreamsError::Embedded",
        StreamsError::Properties(_) => "StreamsError::Properties",
        StreamsError::Fatal(_) => "StreamsError::Fatal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn headers_follow_the_original_ones_and_name_the_origin() {
        let mut original = Headers::new();
        original.add("trace", Some(b"t1".to_vec()));
        let origin = RecordMetadata {
            topic: "in".into(),
            partition: 3,
            offset: 42,
        };
        let h = error_headers(&original, Some(&origin), "X", &Outer(Inner));
        let got: Vec<(&str, Option<&[u8]>)> = h.iter().collect();
        assert_eq!(got[0], ("trace", Some(&b"t1"[..])));
        let text = |k: &str| String::from_utf8(h.last(k).flatten().unwrap().to_vec()).unwrap();
        assert_eq!(text(HEADER_ERRORS_EXCEPTION), "X");
        assert_eq!(text(HEADER_ERRORS_MESSAGE), "outer");
        assert_eq!(text(HEADER_ERRORS_STACKTRACE), "outer\ncaused by: inner");
        assert_eq!(text(HEADER_ERRORS_TOPIC), "in");
        assert_eq!(text(HEADER_ERRORS_PARTITION), "3");
        assert_eq!(text(HEADER_ERRORS_OFFSET), "42");
        assert!(error_headers(&original, None, "X", &Inner)
            .last(HEADER_ERRORS_TOPIC)
            .is_none());
    }
}
