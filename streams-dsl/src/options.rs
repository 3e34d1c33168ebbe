//! Operator options, as in Kafka Streams: [`Consumed`] for sources, [`Produced`] for sinks,
//! [`Grouped`] and [`Repartitioned`] for repartition topics, [`Materialized`] for state stores,
//! [`Named`] for processor names.
//!
//! A serde left out falls back to the one the stream already knows for that type, then to the
//! configured `default.key.serde` / `default.value.serde`.

use std::sync::Arc;

use state_stores::serdes::Serde;
use streams_core::serde_slot::SerdeSlot;
use streams_core::timestamps::InvalidTimestampPolicy;
use streams_core::topology::{OffsetReset, TimestampExtractor};

/// How a source reads its topic.
pub struct Consumed<K, V> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) timestamps: Option<Arc<dyn TimestampExtractor<K, V>>>,
    pub(crate) invalid_timestamps: Option<InvalidTimestampPolicy>,
    pub(crate) offset_reset: Option<OffsetReset>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Consumed<K, V> {
    fn default() -> Self {
        Consumed {
            keys: None,
            values: None,
            timestamps: None,
            invalid_timestamps: None,
            offset_reset: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Consumed<K, V> {
    /// Reads keys and values with these serdes.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Consumed {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            ..Self::default()
        }
    }

    /// Takes event time from `extractor` (default: the application's
    /// `default.timestamp.extractor`, which reads the record's own timestamp):
    /// [`RecordTimestamp`](streams_core::RecordTimestamp),
    /// [`WallClockTimestamp`](streams_core::WallClockTimestamp), or any
    /// `Fn(&Record<K, V>, partition_time) -> i64`. For a table, tombstones keep their record
    /// timestamp.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// // The event time is the number at the start of the value, in seconds.
    /// let events = builder.stream::<String, String>(
    ///     "events",
    ///     Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(
    ///         |r: &streams_core::Record<String, String>, _partition_time: i64| {
    ///             r.value.split(' ').next().and_then(|s| s.parse::<i64>().ok()).map_or(-1, |s| s * 1000)
    ///         },
    ///     ),
    /// );
    /// ```
    pub fn with_timestamp_extractor(
        mut self,
        extractor: impl TimestampExtractor<K, V> + 'static,
    ) -> Self {
        self.timestamps = Some(Arc::new(extractor));
        self
    }

    /// What to do with records whose event time is negative (default: the policy of the
    /// application's `default.timestamp.extractor`, which fails).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use streams_core::InvalidTimestampPolicy;
    /// # let builder = StreamsBuilder::new();
    /// let events = builder.stream::<String, String>(
    ///     "events",
    ///     Consumed::with(Serdes::string(), Serdes::string())
    ///         .with_invalid_timestamp_policy(InvalidTimestampPolicy::LogAndSkip),
    /// );
    /// ```
    pub fn with_invalid_timestamp_policy(mut self, policy: InvalidTimestampPolicy) -> Self {
        self.invalid_timestamps = Some(policy);
        self
    }

    /// Where to start without committed offsets.
    pub fn with_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = Some(reset);
        self
    }

    /// Names the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a sink writes its topic.
pub struct Produced<K, V> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Produced<K, V> {
    fn default() -> Self {
        Produced {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Produced<K, V> {
    /// Writes keys and values with these serdes.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Produced {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            name: None,
        }
    }

    /// Names the sink node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How records are grouped: the serdes and name of the repartition topic, if one is needed.
pub struct Grouped<K, V> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Grouped<K, V> {
    /// Repartitions with these serdes.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Grouped {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            name: None,
        }
    }

    /// Names the repartition topic `<application.id>-<name>-repartition`.
    pub fn as_(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K>) -> Self {
        self.keys = Some(SerdeSlot::explicit(keys));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, values: impl Serde<V>) -> Self {
        self.values = Some(SerdeSlot::explicit(values));
        self
    }

    /// Names the repartition topic.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// An explicit repartition: serdes, topic name and partition count.
pub struct Repartitioned<K, V> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            keys: None,
            values: None,
            name: None,
            partitions: None,
        }
    }
}

impl<K: 'static, V: 'static> Repartitioned<K, V> {
    /// Repartitions with these serdes.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Repartitioned {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            ..Self::default()
        }
    }

    /// Names the topic `<application.id>-<name>-repartition`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The topic's partition count (default: as many as the upstream sub-topology has tasks).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// Where and how a table or aggregation keeps its state.
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) persistent: bool,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) retention: Option<std::time::Duration>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            keys: None,
            values: None,
            persistent: true,
            caching: true,
            logging: true,
            retention: None,
        }
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// A store named `name` (also the base of its changelog and repartition topic names).
    pub fn as_(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// A store with these serdes and a generated name.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Materialized {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            ..Self::default()
        }
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K>) -> Self {
        self.keys = Some(SerdeSlot::explicit(keys));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, values: impl Serde<V>) -> Self {
        self.values = Some(SerdeSlot::explicit(values));
        self
    }

    /// Keeps the store in memory (restored from its changelog when a task starts).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Keeps the store in RocksDB (the default).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Turns the record cache on (the default) or off. Without it every update is forwarded
    /// at once; with it, the latest update per key at each commit or eviction.
    pub fn with_caching(mut self, enabled: bool) -> Self {
        self.caching = enabled;
        self
    }

    /// Turns the changelog on (the default) or off.
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// For window and session stores: how long windows are kept (queryable, and in the
    /// changelog, which keeps them a day longer). At least the window size plus the grace period
    /// (the inactivity gap plus the grace period for sessions, twice the time difference plus the
    /// grace period for sliding windows); that minimum is the default.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let per_minute = clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
    ///     .count(Materialized::as_("clicks-per-minute").with_retention(Duration::from_secs(24 * 3600)));
    /// ```
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = Some(retention);
        self
    }
}

/// A processor's name.
#[derive(Debug, Clone, Default)]
pub struct Named(pub(crate) Option<String>);

impl Named {
    /// The name `name`.
    pub fn as_(name: impl Into<String>) -> Self {
        Named(Some(name.into()))
    }

    /// A generated name.
    pub fn generated() -> Self {
        Named(None)
    }
}

/// Options of a stream-stream join: serdes of the key and of each side's values (for the join
/// stores and any repartition topic), the name its processors, stores and repartition topics are
/// named after, and how its stores are kept.
///
/// Without a name the processors get generated names (`KSTREAM-JOINTHIS-…`, `KSTREAM-MERGE-…`)
/// and so do the stores; with [`with_name`](Self::with_name) they are `<name>-join-this`,
/// `<name>-this-join-store` and so on, and a repartition topic is `<name>-left-repartition` or
/// `<name>-right-repartition`. [`with_store_name`](Self::with_store_name) names the stores alone.
///
/// ```
/// # use streams_dsl::prelude::*;
/// let joined = StreamJoined::with(Serdes::string(), Serdes::i64(), Serdes::string())
///     .with_name("orders-payments")
///     .in_memory();
/// ```
pub struct StreamJoined<K, V1, V2> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V1>>,
    pub(crate) other_values: Option<SerdeSlot<V2>>,
    pub(crate) name: Option<String>,
    pub(crate) store_name: Option<String>,
    pub(crate) persistent: bool,
    pub(crate) logging: bool,
}

impl<K, V1, V2> Default for StreamJoined<K, V1, V2> {
    fn default() -> Self {
        StreamJoined {
            keys: None,
            values: None,
            other_values: None,
            name: None,
            store_name: None,
            persistent: true,
            logging: true,
        }
    }
}

impl<K: 'static, V1: 'static, V2: 'static> StreamJoined<K, V1, V2> {
    /// Joins with these serdes for the key, this stream's values and the other stream's values.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V1>, other_values: impl Serde<V2>) -> Self {
        StreamJoined {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            other_values: Some(SerdeSlot::explicit(other_values)),
            ..Self::default()
        }
    }

    /// Names the join's processors, stores and repartition topics after `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Names the join's stores `<name>-this-join-store`, `<name>-other-join-store` (and
    /// `<name>-outer-shared-join-store` for left and outer joins).
    pub fn with_store_name(mut self, name: impl Into<String>) -> Self {
        self.store_name = Some(name.into());
        self
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K>) -> Self {
        self.keys = Some(SerdeSlot::explicit(keys));
        self
    }

    /// Sets the serde of this stream's values.
    pub fn with_value_serde(mut self, values: impl Serde<V1>) -> Self {
        self.values = Some(SerdeSlot::explicit(values));
        self
    }

    /// Sets the serde of the other stream's values.
    pub fn with_other_value_serde(mut self, values: impl Serde<V2>) -> Self {
        self.other_values = Some(SerdeSlot::explicit(values));
        self
    }

    /// Keeps the join stores in memory (restored from their changelogs when a task starts).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Turns the join stores' changelogs on (the default) or off.
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }
}

/// Options of a stream-table join: the serdes a repartition of the stream uses (when its key
/// changed before the join), and the name of that repartition topic and of the join processor.
/// The table's values need no serde here: the table's store has its own.
///
/// ```
/// # use streams_dsl::prelude::*;
/// let joined = Joined::<String, i64>::with(Serdes::string(), Serdes::i64())
///     .with_name("enrich-orders");
/// ```
pub struct Joined<K, V> {
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Joined<K, V> {
    fn default() -> Self {
        Joined {
            keys: None,
            values: None,
            name: None,
        }
    }
}

impl<K: 'static, V: 'static> Joined<K, V> {
    /// Serdes of the key and of the stream's values.
    pub fn with(keys: impl Serde<K>, values: impl Serde<V>) -> Self {
        Joined {
            keys: Some(SerdeSlot::explicit(keys)),
            values: Some(SerdeSlot::explicit(values)),
            name: None,
        }
    }

    /// Names the join processor `name` and a repartition topic `<name>-repartition`.
    pub fn as_(name: impl Into<String>) -> Self {
        Joined {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Names the join processor and a repartition topic.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, keys: impl Serde<K>) -> Self {
        self.keys = Some(SerdeSlot::explicit(keys));
        self
    }

    /// Sets the serde of the stream's values.
    pub fn with_value_serde(mut self, values: impl Serde<V>) -> Self {
        self.values = Some(SerdeSlot::explicit(values));
        self
    }
}
