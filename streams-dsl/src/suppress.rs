//! `suppress`: holding a windowed table's updates back until each window closes, then emitting
//! the window's final value, once.
//!
//! [`KTable::suppress`] with [`Suppressed::until_window_closes`] buffers the latest update of
//! every window and emits it when stream time passes the window's end plus the grace
//! period of the windowed aggregation upstream (for sessions: plus the inactivity gap), as Kafka
//! Streams' `Suppressed.untilWindowCloses`: for time windows when `end + grace <= stream time`;
//! for sliding and session windows, whose ends are inclusive, when `end + grace < stream time`,
//! which is when their aggregations stop updating them (Kafka Streams' buffer emits those one
//! millisecond of stream time earlier, and can then emit a window a second time when a record
//! on that last millisecond updates it). Emitted records are `Change`s with the final value
//! and no old value, stamped with the timestamp of the update that was buffered; deletions are
//! never emitted (a deleted window has no final result).
//!
//! Stream time here is the buffer's own, as in Kafka Streams: the latest timestamp among the
//! updates that reached it (after a restart, from the first update on), not the task's. An
//! aggregation with a cache forwards its updates at commit, oldest write first, after the task's
//! stream time has moved on; judged by the task's time a window could close before a cached
//! update of it arrived, and be emitted twice.
//!
//! The buffer is a changelogged key-value store, ordered by window end. Emitting a window and
//! removing it from the buffer happen in the same task step, so under `exactly_once_v2` each
//! window's final result is emitted exactly once across commits, restarts and rebalances: the
//! buffer restores to the last commit, and the windowed aggregation upstream, which keeps its
//! stream time with its windows, drops records for windows that had closed, so no update reaches
//! a window emitted before. An update may reach the buffer after its window closed (a cached
//! aggregation forwards at commit time): it is buffered and emitted at once, as Kafka Streams
//! does.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

use state_stores::caching::EmitMode;
use state_stores::keys::{decode_time, encode_time};
use state_stores::serdes::{Serde, SerdeError};
use state_stores::typed::KeyValueStore;
use streams_core::processor::{BoxError, Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::Stores;
use streams_core::StreamsError;

use crate::change::Change;
use crate::graph::{NodeKind, WindowClosing};
use crate::stream::processor_add;
use crate::table::KTable;
use crate::windows::Windowed;
use crate::Data;

/// How much a suppression buffer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    _unbounded: (),
}

impl BufferConfig {
    /// As many windows as are open: the buffer is a store, restored from its changelog, so its
    /// size is bounded by the number of open windows rather than by memory set aside for it.
    pub fn unbounded() -> Self {
        BufferConfig { _unbounded: () }
    }
}

/// What [`KTable::suppress`] holds back, and until when.
#[derive(Debug, Clone)]
pub struct Suppressed<K> {
    name: Option<String>,
    _buffer: BufferConfig,
    _key: PhantomData<fn(K)>,
}

impl<K> Suppressed<K> {
    /// Emits only each window's final result, when the window closes.
    pub fn until_window_closes(buffer: BufferConfig) -> Self {
        Suppressed {
            name: None,
            _buffer: buffer,
            _key: PhantomData,
        }
    }

    /// Names the processor `name` and its buffer store `<name>-store`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A buffer key: a window's entry, ordered by window end.
struct BufferKey<K> {
    time: i64,
    key: Windowed<K>,
}

/// The first byte of every entry key (room for other kinds of entries later).
const ENTRY: u8 = 1;

struct BufferKeySerde<K>(Arc<dyn Serde<Windowed<K>>>);

impl<K: 'static> Serde<BufferKey<K>> for BufferKeySerde<K> {
    fn serialize_into(&self, value: &BufferKey<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(ENTRY);
        out.extend_from_slice(&encode_time(value.time));
        self.0.serialize_into(&value.key, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<BufferKey<K>, SerdeError> {
        match bytes.split_first() {
            Some((&ENTRY, rest)) if rest.len() >= 8 => {
                let (time, key) = rest.split_at(8);
                let mut array = [0u8; 8];
                array.copy_from_slice(time);
                Ok(BufferKey {
                    time: decode_time(array),
                    key: self.0.deserialize(key)?,
                })
            }
            _ => Err(SerdeError::Custom(format!(
                "not a suppression buffer key ({} bytes)",
                bytes.len()
            ))),
        }
    }
}

/// A buffer value: a window's latest update and its timestamp.
struct BufferValue<V> {
    timestamp: i64,
    value: V,
}

struct BufferValueSerde<V>(Arc<dyn Serde<V>>);

impl<V: 'static> Serde<BufferValue<V>> for BufferValueSerde<V> {
    fn serialize_into(&self, value: &BufferValue<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(ENTRY);
        out.extend_from_slice(&value.timestamp.to_be_bytes());
        self.0.serialize_into(&value.value, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<BufferValue<V>, SerdeError> {
        let bad = || {
            SerdeError::Custom(format!(
                "not a suppression buffer value ({} bytes)",
                bytes.len()
            ))
        };
        let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
        if rest.len() < 8 {
            return Err(bad());
        }
        let (time, value) = rest.split_at(8);
        let mut array = [0u8; 8];
        array.copy_from_slice(time);
        let time = i64::from_be_bytes(array);
        match tag {
            ENTRY => Ok(BufferValue {
                timestamp: time,
                value: self.0.deserialize(value)?,
            }),
            _ => Err(bad()),
        }
    }
}

/// Buffers windowed updates and emits each window's final value when it closes.
struct SuppressProcessor<K, V> {
    store_name: String,
    /// How long after a window's end it closes.
    grace: i64,
    /// Whether window ends are inclusive (sliding and session windows).
    inclusive_end: bool,
    store: Option<KeyValueStore<BufferKey<K>, BufferValue<V>>>,
    /// Window ends present in the buffer (a superset: deletions leave theirs).
    ends: BTreeSet<i64>,
    /// The latest timestamp among the updates that reached the buffer: its clock.
    observed: i64,
}

impl<K: Data, V: Data> SuppressProcessor<K, V> {
    fn store(&self) -> Result<&KeyValueStore<BufferKey<K>, BufferValue<V>>, BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| format!("store `{}` used before init", self.store_name).into())
    }

    /// Whether a window ending at `end` is closed when stream time minus the grace is `at`: its
    /// end has passed (`end < at` for inclusive ends, `end <= at` for exclusive ones), which is
    /// when the aggregation upstream stops updating it.
    fn is_closed(&self, end: i64, at: i64) -> bool {
        if self.inclusive_end {
            end < at
        } else {
            end <= at
        }
    }

    /// Emits and removes every buffered window that is closed at `expiry`.
    fn evict(
        &mut self,
        expiry: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>,
    ) -> ProcessorResult {
        if self
            .ends
            .first()
            .is_none_or(|end| !self.is_closed(*end, expiry))
        {
            return Ok(());
        }
        // The first window end that is still open.
        let first_open = if self.inclusive_end {
            Some(expiry)
        } else {
            expiry.checked_add(1)
        };
        let lower = [ENTRY];
        let upper = match first_open {
            // No entry key equals this bound: entry keys continue with the windowed key.
            Some(open) => [&[ENTRY][..], &encode_time(open)].concat(),
            None => vec![ENTRY + 1],
        };
        let store = self.store()?;
        for (key, value) in store.range_bytes(Some(&lower), Some(&upper))? {
            ctx.forward(Record::new(
                key.key.clone(),
                Change::new(Some(value.value), None),
                value.timestamp,
            ))?;
            store.delete(&key)?;
        }
        self.ends = match first_open {
            Some(open) => self.ends.split_off(&open),
            None => BTreeSet::new(),
        };
        Ok(())
    }
}

impl<K: Data, V: Data> Processor<Windowed<K>, Change<V>, Windowed<K>, Change<V>>
    for SuppressProcessor<K, V>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>) -> ProcessorResult {
        let store: KeyValueStore<BufferKey<K>, BufferValue<V>> =
            ctx.key_value_store(&self.store_name)?;
        self.ends = store
            .range_bytes(Some(&[ENTRY]), Some(&[ENTRY + 1]))?
            .into_iter()
            .map(|(key, _)| key.time)
            .collect();
        self.store = Some(store);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<Windowed<K>, Change<V>>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<V>>,
    ) -> ProcessorResult {
        let end = r.key.window.end;
        let key = BufferKey {
            time: end,
            key: r.key,
        };
        match r.value.new_value {
            Some(value) => {
                self.store()?.put(
                    &key,
                    &BufferValue {
                        timestamp: r.timestamp,
                        value,
                    },
                )?;
                self.ends.insert(end);
            }
            None => {
                self.store()?.delete(&key)?;
            }
        }
        // The buffer's own clock, not the task's: a cached aggregation upstream forwards its
        // updates at commit, in write order, after the task's stream time has moved on. Judged
        // by the task's time, a window could be emitted before an update of it that was still
        // in the cache, and then emitted again with it (Kafka's smoke test caught this).
        self.observed = self.observed.max(r.timestamp);
        let expiry = self.observed.saturating_sub(self.grace);
        self.evict(expiry, ctx)
    }
}

impl<K: Data, V: Data> KTable<Windowed<K>, V> {
    /// Holds the windowed table's updates back and emits each window's final value once, when
    /// the window closes (see [`crate::suppress`]).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10)))
    ///     .count(Materialized::as_("clicks-per-minute"))
    ///     .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
    ///     .to_stream()
    ///     .map(|w, count| (format!("{}@{}", w.key, w.window.start), count.unwrap_or(0)))
    ///     .to("final-clicks-per-minute", Produced::with(Serdes::string(), Serdes::i64()));
    /// builder.build().unwrap();
    /// ```
    pub fn suppress(&self, suppressed: Suppressed<Windowed<K>>) -> KTable<Windowed<K>, V> {
        let mut g = self.graph.borrow_mut();
        let (name, store) = match suppressed.name {
            Some(name) => {
                g.name_or(Some(name.clone()), "");
                let store = format!("{name}-store");
                (name, store)
            }
            None => (
                g.next_name("KTABLE-SUPPRESS-"),
                g.next_name("KTABLE-SUPPRESS-STATE-STORE-"),
            ),
        };
        let closing = match g.window_closing_of(self.node) {
            Some(closing) => closing,
            None => {
                g.defer_error(StreamsError::topology(
                    &name,
                    "suppress(until_window_closes) needs a table that comes from a windowed aggregation",
                ));
                WindowClosing {
                    grace: 0,
                    inclusive_end: false,
                }
            }
        };
        let keys = match &self.keys {
            Some(keys) => keys.derive(|s| Arc::new(BufferKeySerde(s))),
            None => {
                g.defer_error(StreamsError::topology(
                    &name,
                    "suppress needs the windowed key serde, which this table lost; suppress right after the aggregation",
                ));
                SerdeSlot::DefaultKey
            }
        };
        let values = self
            .values
            .clone()
            .unwrap_or(SerdeSlot::DefaultValue)
            .derive(|s| Arc::new(BufferValueSerde(s)));
        // In memory (restored from the changelog), cached so updates of a window between commits
        // cost one changelog record.
        let def = Stores::with_slots(
            store.clone(),
            streams_core::topology::StoreKind::KeyValue,
            keys,
            values,
        )
        .in_memory()
        .with_caching()
        .with_emit(EmitMode::None);
        g.add_store_deferred(def);
        let store_name = store.clone();
        let kind = NodeKind::Processor {
            add: processor_add::<
                Windowed<K>,
                Change<V>,
                Windowed<K>,
                Change<V>,
                SuppressProcessor<K, V>,
            >(move || SuppressProcessor {
                store_name: store_name.clone(),
                grace: closing.grace,
                inclusive_end: closing.inclusive_end,
                store: None,
                ends: BTreeSet::new(),
                observed: i64::MIN,
            }),
            changes_key: false,
            stores: vec![store],
        };
        let node = g.push(name, vec![self.node], kind);
        g.window_closing.insert(node, closing);
        drop(g);
        KTable {
            graph: self.graph.clone(),
            node,
            keys: self.keys.clone(),
            values: self.values.clone(),
            store: None,
        }
    }
}

/// Arbitrary and damaged bytes for the suppression buffer's serdes (`KSTREAMS_FUZZ_CASES`, see
/// `crate::fuzz`): a value, a typed error, never a panic, never garbage read as a value.
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::{apply, bytes, check_canonical, check_round_trip, config, damage};
    use crate::windows::{Window, WindowedSerdes};
    use proptest::prelude::*;
    use state_stores::Serdes;

    fn keys() -> BufferKeySerde<String> {
        BufferKeySerde(Arc::new(WindowedSerdes::time_windowed_ms(
            Serdes::string(),
            10_000,
        )))
    }

    fn values() -> BufferValueSerde<String> {
        BufferValueSerde(Arc::new(Serdes::string()))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn buffer_serdes_take_arbitrary_bytes(input in bytes(40)) {
            check_canonical("BufferKey", &keys(), &input)?;
            check_canonical("BufferValue", &values(), &input)?;
        }

        #[test]
        fn buffer_serdes_take_damaged_encodings(
            time in any::<i64>(),
            start in any::<i64>(),
            key in ".{0,8}",
            damage in damage(),
        ) {
            let window = Window::new(start, start.saturating_add(10_000));
            let k = BufferKey { time, key: Windowed::new(key.clone(), window) };
            let k = check_round_trip("BufferKey", &keys(), &k)?;
            check_canonical("BufferKey", &keys(), &apply(&k, &damage))?;
            let v = check_round_trip("BufferValue", &values(), &BufferValue { timestamp: time, value: key })?;
            check_canonical("BufferValue", &values(), &apply(&v, &damage))?;
        }
    }
}
