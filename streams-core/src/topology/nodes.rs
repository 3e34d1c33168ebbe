//! Source and sink nodes: how raw Kafka records enter a topology and how results leave it.
//!
//! A source deserializes each input record's key and value with its serdes and gives it a
//! timestamp (its own [`TimestampExtractor`]'s, else the application's default; see
//! [`crate::timestamps`]). A sink serializes records and hands
//! them to the task's record collector, for a fixed topic or one chosen per record.

use std::marker::PhantomData;
use std::sync::Arc;

use state_stores::serdes::{from_payload, to_payload, Serde};

use crate::collector::OutgoingRecord;
use crate::dynamic::{take, RecordSlot};
use crate::error::{Result, StreamsError};
use crate::processor::{ErasedProcessor, ProcessorResult, PunctuatorId};
use crate::record::{RawRecord, Record};
use crate::serde_slot::{DefaultSerdes, SerdeSlot};
use crate::task::runtime::Exec;
use crate::timestamps::InvalidTimestampPolicy;

/// Where a source starts when its consumer group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the oldest record.
    Earliest,
    /// From the end: only new records.
    Latest,
}

impl OffsetReset {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Gives each input record its event time.
pub trait TimestampExtractor<K, V>: Send + Sync {
    /// The event time of `record`, whose `timestamp` is the Kafka record's own timestamp.
    /// `partition_time` is the largest timestamp seen on the partition so far. A negative result
    /// marks the record invalid: the source's [`InvalidTimestampPolicy`] (else the application's)
    /// decides whether to fail, skip it, or use the partition time.
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64;
}

impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: Fn(&Record<K, V>, i64) -> i64 + Send + Sync,
{
    fn extract(&self, record: &Record<K, V>, partition_time: i64) -> i64 {
        self(record, partition_time)
    }
}

/// How a source reads its topics.
pub struct SourceSpec<K, V> {
    pub(crate) keys: SerdeSlot<K>,
    pub(crate) values: SerdeSlot<V>,
    pub(crate) timestamps: Option<Arc<dyn TimestampExtractor<K, V>>>,
    pub(crate) invalid_timestamps: Option<InvalidTimestampPolicy>,
    pub(crate) offset_reset: Option<OffsetReset>,
}

impl<K, V> Clone for SourceSpec<K, V> {
    fn clone(&self) -> Self {
        SourceSpec {
            keys: self.keys.clone(),
            values: self.values.clone(),
            timestamps: self.timestamps.clone(),
            invalid_timestamps: self.invalid_timestamps,
            offset_reset: self.offset_reset,
        }
    }
}

impl<K: 'static, V: 'static> SourceSpec<K, V> {
    /// Reads keys and values with these serdes.
    pub fn new(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Self::from_slots(SerdeSlot::explicit(keys), SerdeSlot::explicit(values))
    }

    /// Reads keys and values with serdes that may be the configured defaults.
    pub fn from_slots(keys: SerdeSlot<K>, values: SerdeSlot<V>) -> Self {
        SourceSpec {
            keys,
            values,
            timestamps: None,
            invalid_timestamps: None,
            offset_reset: None,
        }
    }

    /// Reads keys and values with the configured default serdes.
    pub fn with_default_serdes() -> Self {
        Self::from_slots(SerdeSlot::DefaultKey, SerdeSlot::DefaultValue)
    }

    /// Takes event time from `extractor` instead of the record's timestamp.
    pub fn with_timestamp_extractor(
        mut self,
        extractor: impl TimestampExtractor<K, V> + 'static,
    ) -> Self {
        self.timestamps = Some(Arc::new(extractor));
        self
    }

    /// Takes event time from a shared extractor.
    pub fn with_shared_timestamp_extractor(
        mut self,
        extractor: Arc<dyn TimestampExtractor<K, V>>,
    ) -> Self {
        self.timestamps = Some(extractor);
        self
    }

    /// What to do with records whose timestamp is negative (default: the policy of the
    /// application's `default.timestamp.extractor`).
    pub fn with_invalid_timestamp_policy(mut self, policy: InvalidTimestampPolicy) -> Self {
        self.invalid_timestamps = Some(policy);
        self
    }

    /// Where to start without a committed offset (default: the application's `auto.offset.reset`).
    pub fn with_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = Some(reset);
        self
    }
}

/// Why an input record could not be read.
pub(crate) enum DecodeError {
    Key(state_stores::SerdeError),
    Value(state_stores::SerdeError),
}

/// A source's decoding, with serdes resolved.
pub(crate) trait SourceDecoder: Send {
    /// The typed record; its timestamp is the source extractor's result, else the raw record's
    /// (the task then applies the application's default extractor). Not checked for sign.
    fn decode(
        &self,
        raw: &RawRecord,
        partition_time: i64,
    ) -> std::result::Result<Box<dyn RecordSlot>, DecodeError>;
    /// Whether the source has its own extractor.
    fn has_extractor(&self) -> bool;
    /// The source's own policy for negative timestamps.
    fn invalid_timestamps(&self) -> Option<InvalidTimestampPolicy>;
}

/// A source's decoding before its serdes are resolved; kept in the topology.
pub(crate) trait SourceCodec: Send + Sync {
    fn resolve(&self, defaults: &DefaultSerdes, node: &str) -> Result<Box<dyn SourceDecoder>>;
}

struct ResolvedSource<K, V> {
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
    timestamps: Option<Arc<dyn TimestampExtractor<K, V>>>,
    invalid_timestamps: Option<InvalidTimestampPolicy>,
}

impl<K, V> SourceDecoder for ResolvedSource<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn decode(
        &self,
        raw: &RawRecord,
        partition_time: i64,
    ) -> std::result::Result<Box<dyn RecordSlot>, DecodeError> {
        let key = from_payload(&*self.keys, raw.key.as_deref()).map_err(DecodeError::Key)?;
        let value =
            from_payload(&*self.values, raw.value.as_deref()).map_err(DecodeError::Value)?;
        let mut record = Record {
            key,
            value,
            timestamp: raw.timestamp,
            headers: raw.headers.clone(),
        };
        if let Some(extractor) = &self.timestamps {
            record.timestamp = extractor.extract(&record, partition_time);
        }
        Ok(Box::new(Some(record)))
    }

    fn has_extractor(&self) -> bool {
        self.timestamps.is_some()
    }

    fn invalid_timestamps(&self) -> Option<InvalidTimestampPolicy> {
        self.invalid_timestamps
    }
}

impl<K, V> SourceCodec for SourceSpec<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn resolve(&self, defaults: &DefaultSerdes, node: &str) -> Result<Box<dyn SourceDecoder>> {
        Ok(Box::new(ResolvedSource {
            keys: self.keys.resolve(defaults, node)?,
            values: self.values.resolve(defaults, node)?,
            timestamps: self.timestamps.clone(),
            invalid_timestamps: self.invalid_timestamps,
        }))
    }
}

/// Picks a record's output topic.
pub type TopicChooser<K, V> = Arc<dyn Fn(&Record<K, V>) -> String + Send + Sync>;

/// Where a sink writes.
pub enum SinkTopic<K, V> {
    /// Always this topic.
    Fixed(String),
    /// An internal (repartition) topic: the application id is prepended at run time.
    Internal(String),
    /// A topic chosen for each record.
    PerRecord(TopicChooser<K, V>),
}

impl<K, V> Clone for SinkTopic<K, V> {
    fn clone(&self) -> Self {
        match self {
            SinkTopic::Fixed(t) => SinkTopic::Fixed(t.clone()),
            SinkTopic::Internal(t) => SinkTopic::Internal(t.clone()),
            SinkTopic::PerRecord(f) => SinkTopic::PerRecord(f.clone()),
        }
    }
}

/// How a sink writes.
pub struct SinkSpec<K, V> {
    pub(crate) topic: SinkTopic<K, V>,
    pub(crate) keys: SerdeSlot<K>,
    pub(crate) values: SerdeSlot<V>,
}

impl<K: 'static, V: 'static> SinkSpec<K, V> {
    /// Writes to `topic` with these serdes.
    pub fn new(topic: impl Into<String>, keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Self::from_slots(
            SinkTopic::Fixed(topic.into()),
            SerdeSlot::explicit(keys),
            SerdeSlot::explicit(values),
        )
    }

    /// Writes to `topic` with serdes that may be the configured defaults.
    pub fn from_slots(topic: SinkTopic<K, V>, keys: SerdeSlot<K>, values: SerdeSlot<V>) -> Self {
        SinkSpec {
            topic,
            keys,
            values,
        }
    }

    /// Writes each record to the topic `chooser` picks.
    pub fn per_record(
        chooser: impl Fn(&Record<K, V>) -> String + Send + Sync + 'static,
        keys: impl Serde<K>,
        values: impl Serde<V>,
    ) -> Self {
        SinkSpec {
            topic: SinkTopic::PerRecord(Arc::new(chooser)),
            keys: SerdeSlot::explicit(keys),
            values: SerdeSlot::explicit(values),
        }
    }

    /// Writes to the internal topic `<application.id>-<name>`, dropping records whose key
    /// serializes as null (they cannot be partitioned by key).
    pub fn internal(name: impl Into<String>, keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        SinkSpec {
            topic: SinkTopic::Internal(name.into()),
            keys: SerdeSlot::explicit(keys),
            values: SerdeSlot::explicit(values),
        }
    }
}

/// A sink's processor before its serdes are resolved; kept in the topology.
pub(crate) trait SinkFactory: Send + Sync {
    fn create(
        &self,
        defaults: &DefaultSerdes,
        application_id: &str,
        node: &str,
    ) -> Result<Box<dyn ErasedProcessor>>;
    /// `Some(name)` for a fixed topic (internal topics without the application id), `None` when
    /// chosen per record.
    fn topic(&self) -> Option<&str>;
    fn is_internal(&self) -> bool;
}

enum ResolvedTopic<K, V> {
    Fixed(String),
    PerRecord(TopicChooser<K, V>),
}

struct SinkProcessor<K, V> {
    topic: ResolvedTopic<K, V>,
    /// Repartition sinks drop records with null keys: they cannot be partitioned by key.
    drop_null_keys: bool,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
    node: String,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> SinkFactory for SinkSpec<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn create(
        &self,
        defaults: &DefaultSerdes,
        application_id: &str,
        node: &str,
    ) -> Result<Box<dyn ErasedProcessor>> {
        let topic = match &self.topic {
            SinkTopic::Fixed(t) => ResolvedTopic::Fixed(t.clone()),
            SinkTopic::Internal(t) => ResolvedTopic::Fixed(format!("{application_id}-{t}")),
            SinkTopic::PerRecord(f) => ResolvedTopic::PerRecord(f.clone()),
        };
        Ok(Box::new(SinkProcessor {
            drop_null_keys: matches!(self.topic, SinkTopic::Internal(_)),
            topic,
            keys: self.keys.resolve(defaults, node)?,
            values: self.values.resolve(defaults, node)?,
            node: node.to_owned(),
            _types: PhantomData,
        }))
    }
    fn topic(&self) -> Option<&str> {
        match &self.topic {
            SinkTopic::Fixed(t) | SinkTopic::Internal(t) => Some(t),
            SinkTopic::PerRecord(_) => None,
        }
    }
    fn is_internal(&self) -> bool {
        matches!(self.topic, SinkTopic::Internal(_))
    }
}

impl<K, V> ErasedProcessor for SinkProcessor<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn init(&mut self, _exec: Exec<'_>) -> ProcessorResult {
        Ok(())
    }

    fn process(&mut self, record: &mut dyn RecordSlot, exec: Exec<'_>) -> ProcessorResult {
        let record = take::<K, V>(record)?;
        if self.drop_null_keys && self.keys.is_null(&record.key) {
            tracing::debug!(sink = %self.node, "dropping a record with a null key before repartitioning");
            return Ok(());
        }
        let chosen;
        let topic = match &self.topic {
            ResolvedTopic::Fixed(t) => t.as_str(),
            ResolvedTopic::PerRecord(f) => {
                chosen = f(&record);
                chosen.as_str()
            }
        };
        let serde_error = |source| StreamsError::Serde {
            location: format!("sink `{}` writing to `{topic}`", self.node),
            source,
        };
        let key = to_payload(&*self.keys, &record.key).map_err(serde_error)?;
        let value = to_payload(&*self.values, &record.value).map_err(serde_error)?;
        exec.rt.shared.collector.send(OutgoingRecord {
            topic,
            partition: None,
            key: key.as_deref(),
            value: value.as_deref(),
            timestamp: record.timestamp,
            headers: &record.headers,
            source: exec.rt.shared.current(),
        })?;
        Ok(())
    }

    fn punctuate(
        &mut self,
        _id: PunctuatorId,
        _timestamp: i64,
        _exec: Exec<'_>,
    ) -> ProcessorResult {
        Ok(())
    }

    fn flushed(&mut self, _exec: Exec<'_>) -> ProcessorResult {
        Ok(())
    }

    fn close(&mut self) -> ProcessorResult {
        Ok(())
    }
}
