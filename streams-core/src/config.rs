//! Application configuration: Kafka Streams' keys, typed defaults, and pass-through properties
//! for the Kafka clients.
//!
//! Every setting is checked by [`StreamsConfig::validate`] before anything connects: a missing
//! or invalid value, or an unknown key, is an error naming the key. Client properties pass
//! through with a prefix: `consumer.`, `producer.`, `admin.` (librdkafka names, for example
//! `producer.linger.ms`).
//!
//! Security settings of the Kafka clients (librdkafka names) may also be given without a
//! prefix, as in Kafka Streams, and then apply to every client (stream threads, restore and
//! global consumers, producers, admin): `security.protocol`, `sasl.*` and `ssl.*`, for example
//! `security.protocol=SASL_SSL`, `sasl.mechanisms=SCRAM-SHA-512`, `sasl.username`,
//! `sasl.password`, `ssl.ca.location`. A prefixed key overrides them for its clients. Values of
//! keys that hold secrets (passwords, keys, JAAS configurations, tokens) never appear in `Debug`
//! output or logs ([`is_secret`]).
//!
//! Client settings the runtime's guarantees rest on cannot be overridden; such a prefixed key is
//! an error: `consumer.group.id`, `consumer.group.instance.id`, `consumer.enable.auto.commit`,
//! `consumer.enable.auto.offset.store`, `consumer.partition.assignment.strategy`,
//! `consumer.group.remote.assignor` (co-partitioning needs the `range` assignors),
//! `producer.transactional.id`, and under exactly-once also `consumer.isolation.level` and
//! `producer.enable.idempotence`.
//!
//! Under exactly-once the producers' `transaction.timeout.ms` is 10000, as in Kafka Streams: a
//! transaction left open by a killed instance blocks `read_committed` readers of its partitions
//! (the application's next owner among them) until the broker aborts it, at most that long. A
//! restarted instance that finds its state directory reuses its transactional ids and aborts
//! its old transactions at once. `producer.transaction.timeout.ms` overrides it; it must exceed
//! `commit.interval.ms`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `application.id` | (required) | consumer group id, prefix of internal topics, state directory name |
//! | `bootstrap.servers` | (required to run on Kafka) | brokers |
//! | `client.id` | the `application.id` | prefix of the clients' ids (`<client.id>-StreamThread-<n>-consumer`, ...) |
//! | `num.stream.threads` | 1 | stream threads (each one consumer, one producer) |
//! | `state.dir` | `$XDG_STATE_HOME/kstreams`, else `~/.local/state/kstreams` | root of local state, private to its owner (`0700` directories, `0600` files) |
//! | `commit.interval.ms` | 30000 (100 under exactly-once) | how often tasks commit |
//! | `processing.guarantee` | `at_least_once` | or `exactly_once_v2` |
//! | `statestore.cache.max.bytes` | 10485760 | record caches of all threads together |
//! | `rocksdb.memory.max.bytes` | 134217728 | block cache and memtables of all RocksDB stores |
//! | `buffered.records.per.partition` | 1000 | a stream thread stops polling while one of its partitions buffers this many records |
//! | `poll.ms` | 100 | longest a thread blocks polling when idle |
//! | `stall.timeout.ms` | 30000 | a stream thread whose consumer has, for this long, fetched nothing from a partition with records waiting, or not found its group coordinator while a new client does, replaces its consumer and resumes from the last commit (librdkafka can be left stuck after a broker fault); 0 turns this off |
//! | `replication.factor` | -1 (broker default) | replication of internal topics |
//! | `auto.offset.reset` | `earliest` | where sources start without committed offsets |
//! | `default.deserialization.exception.handler` | `log-and-fail` | or `log-and-continue` |
//! | `default.production.exception.handler` | `fail` | or `continue` |
//! | `default.timestamp.extractor` | `fail-on-invalid-timestamp` | event time of sources without their own extractor, and the policy for negative timestamps (see [`crate::timestamps`]) |
//! | `processing.exception.handler` | `log-and-fail` | or `log-and-continue`: a record a processor fails on (error or panic) |
//! | `errors.deadletterqueue.topic.name` | (none) | topic that records the three handlers judge are written to, with headers saying why (see [`crate::dead_letter`]) |
//! | `repartition.purge.interval.ms` | 30000 | how often, at most, records of repartition topics that were committed are deleted |
//! | `metrics.recording.level` | `INFO` | `DEBUG` or `TRACE` also time every state store operation (store latencies read 0 at `INFO`, as in Kafka Streams, where they are DEBUG metrics); counts are kept at every level |
//! | `application.server` | (none) | `host:port` where this instance serves interactive queries; advertised to the other instances (see [`KafkaStreams::query_metadata_for_key`](crate::KafkaStreams::query_metadata_for_key)) |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use state_stores::serdes::Serde;

use crate::embedded::EmbeddedAdmin;
use crate::error::{Result, StreamsError};
use crate::handlers::{
    DeserializationHandler, FailOnProductionError, LogAndContinue, LogAndFail,
    LogAndSkipProductionError, ProcessingHandler, ProductionHandler, SharedDeserializationHandler,
    SharedProcessingHandler, SharedProductionHandler,
};
use crate::serde_slot::{DefaultSerdes, ErasedSerde};
use crate::timestamps::{DefaultSource, RawTimestampExtractor, TimestampSettings};

/// `application.id`
pub const APPLICATION_ID: &str = "application.id";
/// `client.id`
pub const CLIENT_ID: &str = "client.id";
/// `application.server`
pub const APPLICATION_SERVER: &str = "application.server";
/// `bootstrap.servers`
pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
/// `num.stream.threads`
pub const NUM_STREAM_THREADS: &str = "num.stream.threads";
/// `state.dir`
pub const STATE_DIR: &str = "state.dir";
/// `commit.interval.ms`
pub const COMMIT_INTERVAL_MS: &str = "commit.interval.ms";
/// `processing.guarantee`
pub const PROCESSING_GUARANTEE: &str = "processing.guarantee";
/// `statestore.cache.max.bytes`
pub const CACHE_MAX_BYTES: &str = "statestore.cache.max.bytes";
/// `rocksdb.memory.max.bytes`
pub const ROCKSDB_MEMORY_BYTES: &str = "rocksdb.memory.max.bytes";
/// `buffered.records.per.partition`
pub const BUFFERED_RECORDS_PER_PARTITION: &str = "buffered.records.per.partition";
/// `poll.ms`
pub const POLL_MS: &str = "poll.ms";
/// `stall.timeout.ms`
pub const STALL_TIMEOUT_MS: &str = "stall.timeout.ms";
/// `replication.factor`
pub const REPLICATION_FACTOR: &str = "replication.factor";
/// `auto.offset.reset`
pub const AUTO_OFFSET_RESET: &str = "auto.offset.reset";
/// `default.deserialization.exception.handler`
pub const DESERIALIZATION_HANDLER: &str = "default.deserialization.exception.handler";
/// `default.production.exception.handler`
pub const PRODUCTION_HANDLER: &str = "default.production.exception.handler";
/// `processing.exception.handler`
pub const PROCESSING_HANDLER: &str = "processing.exception.handler";
/// `errors.deadletterqueue.topic.name`
pub const DEAD_LETTER_QUEUE_TOPIC: &str = "errors.deadletterqueue.topic.name";
/// `repartition.purge.interval.ms`
pub const REPARTITION_PURGE_INTERVAL_MS: &str = "repartition.purge.interval.ms";
/// `metrics.recording.level`
pub const METRICS_RECORDING_LEVEL: &str = "metrics.recording.level";

/// The producers' transaction timeout under exactly-once, as Kafka Streams sets it.
pub const EOS_TRANSACTION_TIMEOUT_MS: i64 = 10_000;

/// Client settings the runtime sets itself and no prefixed setting may replace: `(prefix, key,
/// why)`. Guarantee-dependent ones are checked in [`StreamsConfig::validate`].
const PROTECTED: &[(&str, &str, &str)] = &[
    (
        "consumer.",
        "group.id",
        "the group id is the application.id",
    ),
    (
        "consumer.",
        "group.instance.id",
        "static membership is not supported yet",
    ),
    (
        "consumer.",
        "enable.auto.commit",
        "offsets are committed with the processed records",
    ),
    (
        "consumer.",
        "enable.auto.offset.store",
        "offsets are committed with the processed records",
    ),
    (
        "consumer.",
        "partition.assignment.strategy",
        "co-partitioning needs the range assignor",
    ),
    (
        "consumer.",
        "group.remote.assignor",
        "co-partitioning needs the range assignor",
    ),
    (
        "producer.",
        "transactional.id",
        "transactional ids are derived from the application.id and the stream thread",
    ),
];

/// `default.timestamp.extractor`
pub const DEFAULT_TIMESTAMP_EXTRACTOR: &str = crate::timestamps::DEFAULT_TIMESTAMP_EXTRACTOR;

const KNOWN: &[&str] = &[
    APPLICATION_ID,
    CLIENT_ID,
    BOOTSTRAP_SERVERS,
    NUM_STREAM_THREADS,
    STATE_DIR,
    COMMIT_INTERVAL_MS,
    PROCESSING_GUARANTEE,
    CACHE_MAX_BYTES,
    ROCKSDB_MEMORY_BYTES,
    BUFFERED_RECORDS_PER_PARTITION,
    POLL_MS,
    STALL_TIMEOUT_MS,
    REPLICATION_FACTOR,
    AUTO_OFFSET_RESET,
    DESERIALIZATION_HANDLER,
    PRODUCTION_HANDLER,
    DEFAULT_TIMESTAMP_EXTRACTOR,
    PROCESSING_HANDLER,
    APPLICATION_SERVER,
    DEAD_LETTER_QUEUE_TOPIC,
    REPARTITION_PURGE_INTERVAL_MS,
    METRICS_RECORDING_LEVEL,
];

const PREFIXES: &[&str] = &["consumer.", "producer.", "admin."];

/// The default `state.dir`: `$XDG_STATE_HOME/kstreams`, else `$HOME/.local/state/kstreams`; in
/// the system's temporary directory (`kstreams-<user>`) only when neither is set. Not a shared
/// place: the state of one user's applications is no one else's business.
pub fn default_state_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(state) = var("XDG_STATE_HOME") {
        return state.join("kstreams");
    }
    if let Some(home) = var("HOME") {
        return home.join(".local").join("state").join("kstreams");
    }
    let user = std::env::var("USER").unwrap_or_default();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    std::env::temp_dir().join(format!(
        "kstreams-{}",
        if user.is_empty() { "state" } else { &user }
    ))
}

/// Whether `key` is a client security setting that applies to every client when given without
/// a prefix: `security.protocol`, `sasl.*` or `ssl.*`.
pub fn is_shared_client_key(key: &str) -> bool {
    key == "security.protocol" || key.starts_with("sasl.") || key.starts_with("ssl.")
}

/// Whether the value of `key` (with or without a client prefix) is a secret: a password, a
/// private key, a JAAS configuration, a token or a client secret. Such values are shown as
/// `[redacted]`.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "token",
        "ssl.key.pem",
        "ssl_key",
        "keystore.key",
        "credentials",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// Settings as `Debug` shows them: secrets redacted.
struct Redacted<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// How records are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Offsets are committed after outputs and changelogs are flushed: a crash can repeat
    /// records, never lose them.
    AtLeastOnce,
    /// Outputs, changelogs and input offsets commit in one Kafka transaction per thread.
    ExactlyOnceV2,
}

impl ProcessingGuarantee {
    /// The configuration value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProcessingGuarantee::AtLeastOnce => "at_least_once",
            ProcessingGuarantee::ExactlyOnceV2 => "exactly_once_v2",
        }
    }
}

/// The configuration of an application, as given. See the [module docs](self) for the keys.
#[derive(Clone, Default)]
pub struct StreamsConfig {
    props: BTreeMap<String, String>,
    default_key_serde: Option<ErasedSerde>,
    default_value_serde: Option<ErasedSerde>,
    deserialization_handler: Option<SharedDeserializationHandler>,
    production_handler: Option<SharedProductionHandler>,
    timestamp_extractor: Option<Arc<dyn RawTimestampExtractor>>,
    processing_handler: Option<SharedProcessingHandler>,
    embedded: Option<EmbeddedAdmin>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("props", &Redacted(&self.props))
            .field("default_key_serde", &self.default_key_serde)
            .field("default_value_serde", &self.default_value_serde)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl StreamsConfig {
    /// A configuration for `application_id`.
    pub fn new(application_id: &str) -> Self {
        StreamsConfig::default().set(APPLICATION_ID, application_id)
    }

    /// Sets `key` to `value` (any key; checked by [`validate`](Self::validate)).
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value` in place.
    pub fn insert(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.props.insert(key.to_owned(), value.to_string());
        self
    }

    /// The value of `key`, as given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    /// The serde for keys that no operator gives one for.
    pub fn with_default_key_serde<T: 'static>(mut self, serde: impl Serde<T>) -> Self {
        self.default_key_serde = Some(ErasedSerde::new(serde));
        self
    }

    /// The serde for values that no operator gives one for.
    pub fn with_default_value_serde<T: 'static>(mut self, serde: impl Serde<T>) -> Self {
        self.default_value_serde = Some(ErasedSerde::new(serde));
        self
    }

    /// A custom deserialization handler (overrides the configured one).
    pub fn with_deserialization_handler(
        mut self,
        handler: impl DeserializationHandler + 'static,
    ) -> Self {
        self.deserialization_handler = Some(Arc::new(handler));
        self
    }

    /// A custom production handler (overrides the configured one).
    pub fn with_production_handler(mut self, handler: impl ProductionHandler + 'static) -> Self {
        self.production_handler = Some(Arc::new(handler));
        self
    }

    /// Takes the event time of records from sources without an extractor of their own from
    /// `extractor` (a function of the topic, the raw record and its partition's time so far)
    /// instead of the record's timestamp. Negative results follow the policy of
    /// `default.timestamp.extractor`.
    pub fn with_default_timestamp_extractor(
        mut self,
        extractor: impl RawTimestampExtractor + 'static,
    ) -> Self {
        self.timestamp_extractor = Some(Arc::new(extractor));
        self
    }

    /// A custom processing handler (overrides the configured one).
    pub fn with_processing_handler(mut self, handler: impl ProcessingHandler + 'static) -> Self {
        self.processing_handler = Some(Arc::new(handler));
        self
    }

    /// Runs on `kafka`, the embedded broker: sets `bootstrap.servers` and creates internal
    /// topics through the embedded cluster (which has no admin API).
    pub fn with_embedded(mut self, kafka: &crate::embedded::EmbeddedKafka) -> Self {
        self.embedded = Some(kafka.admin());
        self.set(BOOTSTRAP_SERVERS, kafka.bootstrap_servers())
    }

    /// Checks every setting and returns them typed.
    pub fn validate(&self) -> Result<ResolvedConfig> {
        for key in self.props.keys() {
            if !KNOWN.contains(&key.as_str())
                && !PREFIXES.iter().any(|p| key.starts_with(p))
                && !is_shared_client_key(key)
            {
                return Err(StreamsError::config(
                    key,
                    "unknown setting; Kafka client properties need a `consumer.`, `producer.` or `admin.` prefix (security settings, `security.protocol`, `sasl.*` and `ssl.*`, may go without one and apply to every client)",
                ));
            }
        }
        let application_id = self
            .get(APPLICATION_ID)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| StreamsError::config(APPLICATION_ID, "is required"))?
            .to_owned();
        state_stores::state_dir::validate_name(APPLICATION_ID, &application_id)
            .map_err(|reason| StreamsError::config(APPLICATION_ID, reason))?;

        let guarantee = match self.get(PROCESSING_GUARANTEE).unwrap_or("at_least_once") {
            "at_least_once" => ProcessingGuarantee::AtLeastOnce,
            "exactly_once_v2" => ProcessingGuarantee::ExactlyOnceV2,
            other => {
                return Err(StreamsError::config(
                    PROCESSING_GUARANTEE,
                    format!("must be at_least_once or exactly_once_v2, not `{other}`"),
                ))
            }
        };
        let default_commit = match guarantee {
            ProcessingGuarantee::AtLeastOnce => 30_000,
            ProcessingGuarantee::ExactlyOnceV2 => 100,
        };
        let deserialization: SharedDeserializationHandler = match &self.deserialization_handler {
            Some(h) => h.clone(),
            None => match self.get(DESERIALIZATION_HANDLER).unwrap_or("log-and-fail") {
                "log-and-fail" => Arc::new(LogAndFail),
                "log-and-continue" => Arc::new(LogAndContinue),
                other => {
                    return Err(StreamsError::config(
                        DESERIALIZATION_HANDLER,
                        format!("must be log-and-fail or log-and-continue, not `{other}`"),
                    ))
                }
            },
        };
        let production: SharedProductionHandler = match &self.production_handler {
            Some(h) => h.clone(),
            None => match self.get(PRODUCTION_HANDLER).unwrap_or("fail") {
                "fail" => Arc::new(FailOnProductionError),
                "continue" => Arc::new(LogAndSkipProductionError),
                other => {
                    return Err(StreamsError::config(
                        PRODUCTION_HANDLER,
                        format!("must be fail or continue, not `{other}`"),
                    ))
                }
            },
        };
        let processing: SharedProcessingHandler = match &self.processing_handler {
            Some(h) => h.clone(),
            None => match self.get(PROCESSING_HANDLER).unwrap_or("log-and-fail") {
                "log-and-fail" => Arc::new(LogAndFail),
                "log-and-continue" => Arc::new(LogAndContinue),
                other => {
                    return Err(StreamsError::config(
                        PROCESSING_HANDLER,
                        format!("must be log-and-fail or log-and-continue, not `{other}`"),
                    ))
                }
            },
        };
        self.check_client_overrides(guarantee)?;
        let auto_offset_reset = match self.get(AUTO_OFFSET_RESET).unwrap_or("earliest") {
            v @ ("earliest" | "latest") => v.to_owned(),
            other => {
                return Err(StreamsError::config(
                    AUTO_OFFSET_RESET,
                    format!("must be earliest or latest, not `{other}`"),
                ))
            }
        };
        let mut timestamps = match self.get(DEFAULT_TIMESTAMP_EXTRACTOR) {
            Some(value) => TimestampSettings::parse(value)?,
            None => TimestampSettings::default(),
        };
        if let Some(extractor) = &self.timestamp_extractor {
            timestamps.source = DefaultSource::Custom(extractor.clone());
        }
        let prefixed = |prefix: &str| -> BTreeMap<String, String> {
            self.props
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_owned(), v.clone())))
                .collect()
        };
        let resolved = ResolvedConfig {
            bootstrap_servers: self.get(BOOTSTRAP_SERVERS).map(str::to_owned),
            num_stream_threads: self.number(NUM_STREAM_THREADS, 1, 1, 1024)? as usize,
            state_dir: self
                .get(STATE_DIR)
                .map(PathBuf::from)
                .unwrap_or_else(default_state_dir),
            commit_interval: Duration::from_millis(self.number(
                COMMIT_INTERVAL_MS,
                default_commit,
                0,
                i64::MAX,
            )? as u64),
            guarantee,
            cache_max_bytes: self.number(CACHE_MAX_BYTES, 10 << 20, 0, i64::MAX)? as usize,
            rocksdb_memory_bytes: self.number(
                ROCKSDB_MEMORY_BYTES,
                state_stores::DEFAULT_ROCKSDB_MEMORY_BYTES as i64,
                state_stores::rocks::MIN_ROCKSDB_MEMORY_BYTES as i64,
                i64::MAX,
            )? as usize,
            buffered_records_per_partition: self.number(
                BUFFERED_RECORDS_PER_PARTITION,
                1000,
                1,
                i64::MAX,
            )? as usize,
            poll: Duration::from_millis(self.number(POLL_MS, 100, 0, 60_000)? as u64),
            stall_timeout: Duration::from_millis(self.number(
                STALL_TIMEOUT_MS,
                30_000,
                0,
                i64::MAX,
            )? as u64),
            replication_factor: self.number(REPLICATION_FACTOR, -1, -1, 32)? as i32,
            auto_offset_reset,
            consumer: prefixed("consumer."),
            producer: prefixed("producer."),
            admin: prefixed("admin."),
            client_security: self
                .props
                .iter()
                .filter(|(k, _)| is_shared_client_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            defaults: DefaultSerdes {
                key: self.default_key_serde.clone(),
                value: self.default_value_serde.clone(),
            },
            deserialization,
            production,
            timestamps,
            processing,
            application_server: self
                .get(APPLICATION_SERVER)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    crate::runtime::metadata::HostInfo::parse(v)
                        .map_err(|reason| StreamsError::config(APPLICATION_SERVER, reason))
                })
                .transpose()?,
            dead_letter_queue: self.dead_letter_topic()?,
            repartition_purge_interval: Duration::from_millis(self.number(
                REPARTITION_PURGE_INTERVAL_MS,
                30_000,
                0,
                i64::MAX,
            )? as u64),
            store_latencies: self.store_latencies()?,
            embedded: self.embedded.clone(),
            client_id: self
                .get(CLIENT_ID)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(&application_id)
                .to_owned(),
            application_id,
        };
        if resolved.replication_factor == 0 {
            return Err(StreamsError::config(
                REPLICATION_FACTOR,
                "must be -1 (broker default) or at least 1",
            ));
        }
        if let Some(raw) = resolved.producer.get("transaction.timeout.ms") {
            let timeout: i64 = raw.trim().parse().map_err(|_| {
                StreamsError::config(
                    "producer.transaction.timeout.ms",
                    format!("must be a whole number, not `{raw}`"),
                )
            })?;
            if guarantee == ProcessingGuarantee::ExactlyOnceV2
                && timeout <= resolved.commit_interval.as_millis() as i64
            {
                return Err(StreamsError::config(
                    "producer.transaction.timeout.ms",
                    format!(
                        "must be larger than {COMMIT_INTERVAL_MS} ({} ms), or transactions time out before they commit",
                        resolved.commit_interval.as_millis()
                    ),
                ));
            }
        }
        Ok(resolved)
    }

    /// Refuses prefixed client settings that would replace what the guarantee depends on.
    fn check_client_overrides(&self, guarantee: ProcessingGuarantee) -> Result<()> {
        for (prefix, key, why) in PROTECTED {
            let full = format!("{prefix}{key}");
            if self.props.contains_key(&full) {
                return Err(StreamsError::config(full, format!("cannot be set: {why}")));
            }
        }
        if guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            if self.props.contains_key("consumer.isolation.level") {
                return Err(StreamsError::config(
                    "consumer.isolation.level",
                    "cannot be set under exactly_once_v2: consumers read committed records only",
                ));
            }
            if self
                .get("producer.enable.idempotence")
                .is_some_and(|v| v.trim() != "true")
            {
                return Err(StreamsError::config(
                    "producer.enable.idempotence",
                    "cannot be disabled under exactly_once_v2: transactions need idempotent producers",
                ));
            }
        }
        Ok(())
    }

    /// `errors.deadletterqueue.topic.name`, if set: a legal Kafka topic name.
    fn dead_letter_topic(&self) -> Result<Option<String>> {
        let Some(topic) = self.get(DEAD_LETTER_QUEUE_TOPIC) else {
            return Ok(None);
        };
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
            return Err(StreamsError::config(
                DEAD_LETTER_QUEUE_TOPIC,
                format!("`{topic}` is not a topic name (1 to 249 characters, not `.` or `..`)"),
            ));
        }
        if let Some(bad) = topic.chars().find(|c| !legal(*c)) {
            return Err(StreamsError::config(
                DEAD_LETTER_QUEUE_TOPIC,
                format!("`{topic}` is not a topic name: `{bad}` is not allowed (only ASCII letters, digits, `.`, `_` and `-`)"),
            ));
        }
        Ok(Some(topic.to_owned()))
    }

    /// Whether `metrics.recording.level` asks for store latencies (`DEBUG`, `TRACE`).
    fn store_latencies(&self) -> Result<bool> {
        match self
            .get(METRICS_RECORDING_LEVEL)
            .map(|v| v.trim().to_ascii_uppercase())
            .as_deref()
        {
            None | Some("INFO") => Ok(false),
            Some("DEBUG" | "TRACE") => Ok(true),
            Some(other) => Err(StreamsError::config(
                METRICS_RECORDING_LEVEL,
                format!("`{other}` is not a recording level: use INFO, DEBUG or TRACE"),
            )),
        }
    }

    fn number(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        let value: i64 = raw.trim().parse().map_err(|_| {
            StreamsError::config(key, format!("must be a whole number, not `{raw}`"))
        })?;
        if value < min || value > max {
            return Err(StreamsError::config(
                key,
                format!("must be between {min} and {max}, not {value}"),
            ));
        }
        Ok(value)
    }
}

/// A checked configuration.
#[derive(Clone)]
pub struct ResolvedConfig {
    /// `application.id`.
    pub application_id: String,
    /// `client.id`: the prefix of the clients' ids.
    pub client_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: Option<String>,
    /// `num.stream.threads`.
    pub num_stream_threads: usize,
    /// `state.dir`.
    pub state_dir: PathBuf,
    /// `commit.interval.ms`.
    pub commit_interval: Duration,
    /// `processing.guarantee`.
    pub guarantee: ProcessingGuarantee,
    /// `statestore.cache.max.bytes`.
    pub cache_max_bytes: usize,
    /// `rocksdb.memory.max.bytes`.
    pub rocksdb_memory_bytes: usize,
    /// `buffered.records.per.partition`.
    pub buffered_records_per_partition: usize,
    /// `poll.ms`.
    pub poll: Duration,
    /// `stall.timeout.ms` (zero: off).
    pub stall_timeout: Duration,
    /// `replication.factor`.
    pub replication_factor: i32,
    /// `auto.offset.reset`.
    pub auto_offset_reset: String,
    /// `consumer.*` properties, without the prefix.
    pub consumer: BTreeMap<String, String>,
    /// `producer.*` properties, without the prefix.
    pub producer: BTreeMap<String, String>,
    /// `admin.*` properties, without the prefix.
    pub admin: BTreeMap<String, String>,
    /// Unprefixed client security settings (`security.protocol`, `sasl.*`, `ssl.*`), for every
    /// client; prefixed settings override them.
    pub client_security: BTreeMap<String, String>,
    /// Default serdes.
    pub defaults: DefaultSerdes,
    /// The deserialization handler.
    pub deserialization: SharedDeserializationHandler,
    /// The production handler.
    pub production: SharedProductionHandler,
    /// `default.timestamp.extractor` (and a custom default extractor).
    pub timestamps: TimestampSettings,
    /// The processing handler.
    pub processing: SharedProcessingHandler,
    /// `application.server`: where this instance answers interactive queries.
    pub application_server: Option<crate::runtime::metadata::HostInfo>,
    /// `errors.deadletterqueue.topic.name`.
    pub dead_letter_queue: Option<String>,
    /// `repartition.purge.interval.ms`.
    pub repartition_purge_interval: Duration,
    /// `metrics.recording.level` is `DEBUG` or `TRACE`: state store operations are timed.
    pub store_latencies: bool,
    pub(crate) embedded: Option<EmbeddedAdmin>,
}

impl ResolvedConfig {
    /// Whether the stream threads' consumers use the consumer group protocol of KIP-848 (the
    /// default; `consumer.group.protocol=classic` opts out).
    pub fn consumer_group_protocol(&self) -> bool {
        self.consumer
            .get("group.protocol")
            .is_none_or(|p| p == "consumer")
    }
}

impl std::fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedConfig")
            .field("application_id", &self.application_id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("num_stream_threads", &self.num_stream_threads)
            .field("state_dir", &self.state_dir)
            .field("commit_interval", &self.commit_interval)
            .field("guarantee", &self.guarantee)
            .field("consumer", &Redacted(&self.consumer))
            .field("producer", &Redacted(&self.producer))
            .field("admin", &Redacted(&self.admin))
            .field("client_security", &Redacted(&self.client_security))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: StreamsConfig) -> String {
        config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = StreamsConfig::new("app")
            .set("bootstrap.servers", "broker:9093")
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", "alice")
            .set("sasl.password", "hunter2-shared")
            .set("producer.sasl.password", "hunter2-producer")
            .set("consumer.ssl.key.password", "hunter2-key")
            .set("admin.sasl.oauthbearer.client.secret", "hunter2-oauth")
            .set("ssl.key.pem", "-----BEGIN PRIVATE KEY-----hunter2-pem");
        let resolved = config.validate().expect("valid");
        for shown in [
            format!("{config:?}"),
            format!("{resolved:?}"),
            format!("{config:#?}"),
        ] {
            assert!(!shown.contains("hunter2"), "a secret leaked: {shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
            assert!(
                shown.contains("alice") && shown.contains("SASL_SSL"),
                "{shown}"
            );
        }
    }

    #[test]
    fn unprefixed_security_settings_reach_every_client_and_prefixed_ones_win() {
        let resolved = StreamsConfig::new("app")
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.username", "alice")
            .set("producer.sasl.username", "bob")
            .validate()
            .expect("valid");
        assert_eq!(
            resolved
                .client_security
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_PLAINTEXT")
        );
        assert_eq!(
            resolved.producer.get("sasl.username").map(String::as_str),
            Some("bob")
        );
        assert!(err(StreamsConfig::new("app").set("linger.ms", "5")).contains("`linger.ms`"));
        assert!(
            err(StreamsConfig::new("app").set("security.protocols", "SSL"))
                .contains("`security.protocols`")
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err(StreamsConfig::default()).contains("`application.id`"));
        assert!(
            err(StreamsConfig::new("app").set("num.stream.threads", "two"))
                .contains("`num.stream.threads`")
        );
        assert!(
            err(StreamsConfig::new("app").set("commit.interval.ms", "-5"))
                .contains("`commit.interval.ms`")
        );
        assert!(
            err(StreamsConfig::new("app").set("processing.guarantee", "exactly_once"))
                .contains("`processing.guarantee`")
        );
        assert!(err(StreamsConfig::new("app").set("linger.ms", "5")).contains("`linger.ms`"));
        assert!(err(StreamsConfig::new("bad/app")).contains("`application.id`"));
    }

    #[test]
    fn client_id_prefixes_the_clients_and_defaults_to_the_application_id() {
        let named = StreamsConfig::new("app")
            .set("client.id", "SmokeTest-p1")
            .validate()
            .unwrap();
        assert_eq!(named.client_id, "SmokeTest-p1");
        assert_eq!(
            StreamsConfig::new("app").validate().unwrap().client_id,
            "app"
        );
    }

    #[test]
    fn settings_the_guarantee_rests_on_cannot_be_overridden() {
        for key in [
            "consumer.enable.auto.commit",
            "consumer.group.id",
            "consumer.enable.auto.offset.store",
            "producer.transactional.id",
            "consumer.partition.assignment.strategy",
        ] {
            let message = err(StreamsConfig::new("app").set(key, "x"));
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
        let eos = || StreamsConfig::new("app").set(PROCESSING_GUARANTEE, "exactly_once_v2");
        assert!(
            err(eos().set("consumer.isolation.level", "read_uncommitted"))
                .contains("`consumer.isolation.level`")
        );
        assert!(err(eos().set("producer.enable.idempotence", "false"))
            .contains("`producer.enable.idempotence`"));
        assert!(err(eos().set("producer.transaction.timeout.ms", "50"))
            .contains("`producer.transaction.timeout.ms`"));
        assert!(eos()
            .set("producer.transaction.timeout.ms", "30000")
            .validate()
            .is_ok());
        assert!(
            StreamsConfig::new("app")
                .set("consumer.isolation.level", "read_committed")
                .set("producer.enable.idempotence", "false")
                .validate()
                .is_ok(),
            "at-least-once does not depend on them"
        );
        assert!(
            err(StreamsConfig::new("app").set(PROCESSING_HANDLER, "ignore"))
                .contains("`processing.exception.handler`")
        );
    }

    #[test]
    fn the_dead_letter_topic_must_be_a_topic_name() {
        for bad in ["", "..", "dead letters", "dlq/1", &"x".repeat(250)] {
            let message = err(StreamsConfig::new("app").set(DEAD_LETTER_QUEUE_TOPIC, bad));
            assert!(
                message.contains("`errors.deadletterqueue.topic.name`"),
                "{bad}: {message}"
            );
        }
        let ok = StreamsConfig::new("app")
            .set(DEAD_LETTER_QUEUE_TOPIC, "app.dead-letters_1")
            .validate()
            .unwrap();
        assert_eq!(ok.dead_letter_queue.as_deref(), Some("app.dead-letters_1"));
        assert_eq!(
            StreamsConfig::new("app")
                .validate()
                .unwrap()
                .dead_letter_queue,
            None
        );
    }

    #[test]
    fn defaults_and_prefixes() {
        let c = StreamsConfig::new("app")
            .set("producer.linger.ms", "20")
            .set("processing.guarantee", "exactly_once_v2")
            .validate()
            .map_err(|e| e.to_string());
        let c = c.as_ref().map_err(String::as_str);
        assert_eq!(
            c.map(|c| c.producer.get("linger.ms").cloned()),
            Ok(Some("20".into()))
        );
        assert_eq!(
            c.map(|c| c.commit_interval),
            Ok(Duration::from_millis(100)),
            "exactly-once commits every 100 ms"
        );
        assert_eq!(c.map(|c| c.num_stream_threads), Ok(1));
    }
}
