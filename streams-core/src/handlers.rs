//! What happens when a record cannot be read, processed or written, and when a stream thread
//! fails.
//!
//! A [`DeserializationHandler`] decides for each input record whose key, value or timestamp cannot
//! be read: skip it (log, count, go on) or fail the task. A [`ProcessingHandler`] decides the same
//! for a record a processor failed on (an error or a panic). A [`ProductionHandler`] decides for
//! each record the producer could not deliver. The built-ins are the Kafka Streams ones; the
//! defaults fail, so that nothing is lost silently unless the application says so. Once a thread
//! has failed, the [`UncaughtExceptionHandler`] chooses between replacing it, stopping the
//! instance and stopping the whole application.

use std::sync::Arc;

use crate::error::StreamsError;

/// The decision for a record that could not be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerResponse {
    /// Skip the record (it is counted) and go on.
    Continue,
    /// Stop: the task fails with the error.
    Fail,
}

/// Where an unreadable input record came from.
#[derive(Debug, Clone)]
pub struct ErrorContext<'a> {
    /// The task id.
    pub task: &'a str,
    /// The source node.
    pub node: &'a str,
    /// Topic, partition and offset.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Decides what to do with an input record that cannot be deserialized (or timestamped).
pub trait DeserializationHandler: Send + Sync {
    /// Called with the record's origin and the error.
    fn handle(&self, context: &ErrorContext<'_>, error: &StreamsError) -> HandlerResponse;
}

/// Log the record's coordinates and the error, count it, and go on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinue;

impl DeserializationHandler for LogAndContinue {
    fn handle(&self, context: &ErrorContext<'_>, error: &StreamsError) -> HandlerResponse {
        tracing::warn!(
            task = context.task,
            topic = context.topic,
            partition = context.partition,
            offset = context.offset,
            %error,
            "skipping a record that cannot be deserialized"
        );
        HandlerResponse::Continue
    }
}

/// Fail the task (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFail;

impl DeserializationHandler for LogAndFail {
    fn handle(&self, context: &ErrorContext<'_>, error: &StreamsError) -> HandlerResponse {
        tracing::error!(
            task = context.task,
            topic = context.topic,
            partition = context.partition,
            offset = context.offset,
            %error,
            "a record cannot be deserialized; failing (set default.deserialization.exception.handler=log-and-continue to skip such records)"
        );
        HandlerResponse::Fail
    }
}

/// Decides what to do with an output record the producer could not deliver.
pub trait ProductionHandler: Send + Sync {
    /// Called with the topic and the producer's error.
    fn handle(&self, topic: &str, error: &str) -> HandlerResponse;
}

/// Fail the application (the default): an output that was not written is data lost.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnProductionError;

impl ProductionHandler for FailOnProductionError {
    fn handle(&self, topic: &str, error: &str) -> HandlerResponse {
        tracing::error!(topic, error, "a record could not be produced; failing");
        HandlerResponse::Fail
    }
}

/// Log and go on: the record is dropped and counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndSkipProductionError;

impl ProductionHandler for LogAndSkipProductionError {
    fn handle(&self, topic: &str, error: &str) -> HandlerResponse {
        tracing::warn!(topic, error, "dropping a record that could not be produced");
        HandlerResponse::Continue
    }
}

/// A shared deserialization handler.
pub type SharedDeserializationHandler = Arc<dyn DeserializationHandler>;
/// A shared production handler.
pub type SharedProductionHandler = Arc<dyn ProductionHandler>;

/// Where a record was when a processor failed on it (or panicked).
#[derive(Debug, Clone)]
pub struct ProcessingContext<'a> {
    /// The task id.
    pub task: &'a str,
    /// The processor that failed.
    pub node: &'a str,
    /// The input topic of the record being processed.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Decides what to do when a processor fails on a record, by returning an error or by
/// panicking (Kafka Streams' KIP-1033 processing exception handler). A panic in user code is
/// such a failure too: it never unwinds through the runtime.
pub trait ProcessingHandler: Send + Sync {
    /// Called with the record's origin and the error (a panic's message for a panic).
    fn handle(&self, context: &ProcessingContext<'_>, error: &StreamsError) -> HandlerResponse;
}

/// Fail (the default): the stream thread stops and the uncaught exception handler decides what
/// happens next. Nothing of the failed record is committed.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFailProcessing;

impl ProcessingHandler for LogAndFailProcessing {
    fn handle(&self, context: &ProcessingContext<'_>, error: &StreamsError) -> HandlerResponse {
        tracing::error!(
            task = context.task,
            node = context.node,
            topic = context.topic,
            partition = context.partition,
            offset = context.offset,
            %error,
            "processing a record failed (set processing.exception.handler=log-and-continue to skip such records)"
        );
        HandlerResponse::Fail
    }
}

/// Log, count and skip the record. Outputs the processors forwarded before the failure stay.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinueProcessing;

impl ProcessingHandler for LogAndContinueProcessing {
    fn handle(&self, context: &ProcessingContext<'_>, error: &StreamsError) -> HandlerResponse {
        tracing::warn!(
            task = context.task,
            node = context.node,
            topic = context.topic,
            partition = context.partition,
            offset = context.offset,
            %error,
            "skipping a record whose processing failed"
        );
        HandlerResponse::Continue
    }
}

/// A shared processing handler.
pub type SharedProcessingHandler = Arc<dyn ProcessingHandler>;

/// What to do after a stream thread failed with an error no retry can fix (Kafka Streams'
/// `StreamsUncaughtExceptionHandler` responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamThreadExceptionResponse {
    /// Start a new stream thread in place of the failed one; the instance keeps running. The new
    /// thread resumes from the last commit.
    ReplaceThread,
    /// Stop this instance: its other threads shut down and it ends in the Error state (the
    /// default).
    ShutdownClient,
    /// Stop every instance of the application: this one ends in Error, and the others, told
    /// through the application's control topic, stop too.
    ShutdownApplication,
}

/// Decides what happens after a stream thread failed; see [`StreamThreadExceptionResponse`].
pub type UncaughtExceptionHandler =
    Arc<dyn Fn(&StreamsError) -> StreamThreadExceptionResponse + Send + Sync>;
