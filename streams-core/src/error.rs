//! The runtime's error type: one enum whose variants say what failed and how to recover.
//!
//! Every variant names what it is about (config key, topic, task, node or store), so a message read
//! in a log is enough to act on. Recoverable conditions that the runtime handles itself (a task that
//! migrated during a rebalance, a transaction that must abort, a corrupted task that must be
//! restored again) have their own variants so callers can match on them rather than on message
//! text; `runtime::recovery` maps every error to what the stream thread does about it.

use state_stores::StoreError;

/// A `Result` whose error is [`StreamsError`].
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

/// What can go wrong in the streams runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// A configuration value is missing or invalid. Nothing has connected yet.
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The configuration key, as the user spells it.
        key: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },

    /// The Kafka client reported an error.
    #[error("Kafka client error while {context}: {source}")]
    Kafka {
        /// What the runtime was doing (names the topic, group or task).
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// Source topics that the topology reads do not exist.
    #[error(
        "source topic(s) {topics:?} do not exist; create them (with the partition counts the \
         application needs) before starting it"
    )]
    MissingSourceTopics {
        /// The missing topics.
        topics: Vec<String>,
    },

    /// The topology is invalid; the message names the offending node.
    #[error("invalid topology at `{node}`: {reason}")]
    Topology {
        /// The processor, source, sink or store at fault.
        node: String,
        /// What is wrong.
        reason: String,
    },

    /// A record could not be serialized or deserialized.
    #[error("serialization error at {location}: {source}")]
    Serde {
        /// Where: node name, topic-partition and offset as known.
        location: String,
        /// The serde's error.
        #[source]
        source: state_stores::SerdeError,
    },

    /// An input record's event time is negative and the timestamp policy says to fail
    /// (`default.timestamp.extractor`, or the source's own policy).
    #[error(
        "record {topic}-{partition}@{offset} has the invalid (negative) timestamp {timestamp} \
         (source `{node}`); set default.timestamp.extractor to log-and-skip-on-invalid-timestamp \
         or use-partition-time-on-invalid-timestamp to go on past such records"
    )]
    InvalidTimestamp {
        /// The source node.
        node: String,
        /// The input topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// The timestamp the extractor returned.
        timestamp: i64,
    },

    /// A state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A processor failed while processing a record, punctuating or flushing.
    #[error("processing failed in task {task} at processor `{node}`: {source}")]
    Processing {
        /// The task id (`<sub-topology>_<partition>`).
        task: String,
        /// The processor that failed.
        node: String,
        /// What the processor reported.
        #[source]
        source: crate::processor::BoxError,
    },

    /// The task is no longer owned by this thread (it moved in a rebalance); close it without
    /// committing and carry on.
    #[error("task {task} migrated to another member: {reason}")]
    TaskMigrated {
        /// The task id.
        task: String,
        /// Why the runtime concluded it moved.
        reason: String,
    },

    /// The stream thread's open transaction failed (an abortable producer error, or an error
    /// that left it unusable): the thread aborts it, closes its tasks without committing, rewinds
    /// its input to the last commit and carries on.
    #[error("the transaction of {producer} must be aborted: {reason}")]
    TransactionAborted {
        /// The producer (its `client.id`).
        producer: String,
        /// What went wrong.
        reason: String,
    },

    /// A stream thread's consumer is stuck (see `stall.timeout.ms`): it fetched nothing from
    /// partitions that have records waiting, or it could not find its group coordinator while
    /// a new client could. The thread closes its tasks without committing and rejoins the group
    /// with a new consumer and producer, resuming from the last commit.
    #[error("the consumer of stream thread {thread} is stuck: {reason} (stall.timeout.ms)")]
    ConsumerStuck {
        /// The thread's name.
        thread: String,
        /// What it was stuck on, for how long.
        reason: String,
    },

    /// The task's local state cannot be trusted (for example its changelog was truncated); wipe
    /// it and restore from the changelog.
    #[error("task {task} has corrupted state: {reason}")]
    TaskCorrupted {
        /// The task id.
        task: String,
        /// What was found.
        reason: String,
    },

    /// An interactive query cannot be answered from this instance now (see
    /// [`KafkaStreams::store`](crate::KafkaStreams::store)); the reason says whether to retry
    /// here, later, or to ask another instance.
    #[error("state store `{store}` cannot be queried now: {reason}")]
    StoreNotQueryable {
        /// The store.
        store: String,
        /// Why.
        reason: crate::runtime::queries::NotQueryableReason,
    },
    /// A global store could not be restored or kept up to date.
    #[error("global store `{store}` (topic `{topic}`): {reason}")]
    GlobalStore {
        /// The store.
        store: String,
        /// The topic it is read from.
        topic: String,
        /// What went wrong.
        reason: String,
    },

    /// A Kafka Streams properties file could not be read, or an entry of it is unknown,
    /// unsupported or invalid (the error names the file, the line and the key).
    #[error(transparent)]
    Properties(#[from] crate::properties::PropertiesError),

    /// The embedded (mock) Kafka cluster failed.
    #[error("embedded Kafka: {0}")]
    Embedded(String),

    /// An unrecoverable condition; the application must stop.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl StreamsError {
    /// A [`StreamsError::Kafka`] with the given context.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        StreamsError::Kafka {
            context: context.into(),
            source,
        }
    }

    /// A [`StreamsError::Config`] for `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        StreamsError::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A [`StreamsError::Topology`] for `node`.
    pub fn topology(node: impl Into<String>, reason: impl Into<String>) -> Self {
        StreamsError::Topology {
            node: node.into(),
            reason: reason.into(),
        }
    }
}
