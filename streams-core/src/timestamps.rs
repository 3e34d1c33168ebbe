//! Event time: where each input record's timestamp comes from, and what happens when it is
//! negative.
//!
//! Every record that enters a topology (stream and table sources alike) gets its event time from
//! its source's extractor ([`Consumed`-style `with_timestamp_extractor`](crate::topology::SourceSpec::with_timestamp_extractor)),
//! or, for sources without one, from the application's default, `default.timestamp.extractor`:
//!
//! | value (Kafka's class name also accepted) | event time | negative timestamp |
//! |---|---|---|
//! | `fail-on-invalid-timestamp` (`FailOnInvalidTimestamp`, the default) | the record's timestamp | fail |
//! | `log-and-skip-on-invalid-timestamp` (`LogAndSkipOnInvalidTimestamp`) | the record's timestamp | skip and count |
//! | `use-partition-time-on-invalid-timestamp` (`UsePartitionTimeOnInvalidTimestamp`) | the record's timestamp | the partition's time so far (fail if none yet) |
//! | `wall-clock` (`WallclockTimestampExtractor`) | the system clock when the record is read | fail |
//!
//! [`StreamsConfig::with_default_timestamp_extractor`](crate::StreamsConfig::with_default_timestamp_extractor)
//! replaces the default with a function of the raw record; the policy for negative results is
//! still the configured one. A source may set its own policy
//! ([`SourceSpec::with_invalid_timestamp_policy`](crate::topology::SourceSpec::with_invalid_timestamp_policy)).
//! Skipped records count in the task's `skipped` metric; a failure stops the task with
//! [`StreamsError::InvalidTimestamp`].

use std::sync::Arc;

use crate::error::{Result, StreamsError};
use crate::record::{RawRecord, Record};
use crate::topology::TimestampExtractor;

/// `default.timestamp.extractor`
pub const DEFAULT_TIMESTAMP_EXTRACTOR: &str = "default.timestamp.extractor";

/// What happens to a record whose extracted timestamp is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidTimestampPolicy {
    /// Stop the task with [`StreamsError::InvalidTimestamp`] (Kafka's `FailOnInvalidTimestamp`).
    #[default]
    Fail,
    /// Log the record's coordinates at debug level, count it as skipped, and go on
    /// (`LogAndSkipOnInvalidTimestamp`).
    LogAndSkip,
    /// Use the largest timestamp read from the record's partition so far; fail when there is
    /// none yet (`UsePartitionTimeOnInvalidTimestamp`).
    UsePartitionTime,
}

/// The Kafka record's own timestamp (create time or log-append time): the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordTimestamp;

impl<K, V> TimestampExtractor<K, V> for RecordTimestamp {
    fn extract(&self, record: &Record<K, V>, _partition_time: i64) -> i64 {
        record.timestamp
    }
}

/// The system clock when the record is read (processing time), in epoch milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClockTimestamp;

impl<K, V> TimestampExtractor<K, V> for WallClockTimestamp {
    fn extract(&self, _record: &Record<K, V>, _partition_time: i64) -> i64 {
        system_time_ms()
    }
}

pub(crate) fn system_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An application-wide extractor, for sources that have none of their own: a function of the
/// raw record (its key and value are still bytes) and its partition's time so far.
pub trait RawTimestampExtractor: Send + Sync {
    /// The event time of `record`, read from `topic`.
    fn extract(&self, topic: &str, record: &RawRecord, partition_time: i64) -> i64;
}

impl<F> RawTimestampExtractor for F
where
    F: Fn(&str, &RawRecord, i64) -> i64 + Send + Sync,
{
    fn extract(&self, topic: &str, record: &RawRecord, partition_time: i64) -> i64 {
        self(topic, record, partition_time)
    }
}

/// Where sources without an extractor of their own take event time from.
#[derive(Clone, Default)]
pub(crate) enum DefaultSource {
    #[default]
    Record,
    WallClock,
    Custom(Arc<dyn RawTimestampExtractor>),
}

/// The application's timestamp settings: the default extractor and the policy for negative
/// timestamps.
#[derive(Clone, Default)]
pub struct TimestampSettings {
    pub(crate) source: DefaultSource,
    pub(crate) policy: InvalidTimestampPolicy,
}

impl std::fmt::Debug for TimestampSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            DefaultSource::Record => "record",
            DefaultSource::WallClock => "wall-clock",
            DefaultSource::Custom(_) => "custom",
        };
        f.debug_struct("TimestampSettings")
            .field("source", &source)
            .field("policy", &self.policy)
            .finish()
    }
}

impl TimestampSettings {
    /// Parses a `default.timestamp.extractor` value (ours or Kafka's class name, with or without
    /// its package).
    pub(crate) fn parse(value: &str) -> Result<Self> {
        let name = value.trim().rsplit('.').next().unwrap_or_default();
        let (source, policy) = match name {
            "fail-on-invalid-timestamp" | "FailOnInvalidTimestamp" => {
                (DefaultSource::Record, InvalidTimestampPolicy::Fail)
            }
            "log-and-skip-on-invalid-timestamp" | "LogAndSkipOnInvalidTimestamp" => {
                (DefaultSource::Record, InvalidTimestampPolicy::LogAndSkip)
            }
            "use-partition-time-on-invalid-timestamp" | "UsePartitionTimeOnInvalidTimestamp" => (
                DefaultSource::Record,
                InvalidTimestampPolicy::UsePartitionTime,
            ),
            "wall-clock" | "WallclockTimestampExtractor" => {
                (DefaultSource::WallClock, InvalidTimestampPolicy::Fail)
            }
            _ => {
                return Err(StreamsError::config(
                    DEFAULT_TIMESTAMP_EXTRACTOR,
                    format!(
                        "must be fail-on-invalid-timestamp, log-and-skip-on-invalid-timestamp, \
                         use-partition-time-on-invalid-timestamp or wall-clock (or Kafka's class \
                         name for one of them), not `{value}`"
                    ),
                ))
            }
        };
        Ok(TimestampSettings { source, policy })
    }

    /// The default event time of `raw`, read from `topic`.
    pub(crate) fn extract(&self, topic: &str, raw: &RawRecord, partition_time: i64) -> i64 {
        match &self.source {
            DefaultSource::Record => raw.timestamp,
            DefaultSource::WallClock => system_time_ms(),
            DefaultSource::Custom(f) => f.extract(topic, raw, partition_time),
        }
    }

    /// The policy for negative timestamps.
    pub fn policy(&self) -> InvalidTimestampPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_ours_or_kafkas() {
        for (name, policy) in [
            ("fail-on-invalid-timestamp", InvalidTimestampPolicy::Fail),
            (
                "org.apache.kafka.streams.processor.LogAndSkipOnInvalidTimestamp",
                InvalidTimestampPolicy::LogAndSkip,
            ),
            (
                "use-partition-time-on-invalid-timestamp",
                InvalidTimestampPolicy::UsePartitionTime,
            ),
            ("WallclockTimestampExtractor", InvalidTimestampPolicy::Fail),
        ] {
            let parsed = TimestampSettings::parse(name).map(|s| s.policy());
            assert_eq!(parsed.ok(), Some(policy), "{name}");
        }
        let err = TimestampSettings::parse("sometimes")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("default.timestamp.extractor"), "{err}");
    }
}
