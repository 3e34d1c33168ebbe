//! `StreamsBuilder`: where a DSL application starts (sources, tables, user stores) and what
//! turns it into a [`Topology`].

use std::cell::RefCell;
use std::rc::Rc;

use streams_core::error::Result;
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{SourceSpec, StoreDef, TimestampExtractor, Topology, TopologyBuilder};

use crate::global_table::{add_global_table, GlobalKTable};
use crate::graph::{Graph, NodeKind};
use crate::options::{Consumed, Materialized};
use crate::stream::KStream;
use crate::table::{source_table, KTable};
use crate::Data;

/// One or more topic names.
pub trait Topics {
    /// The names.
    fn topics(self) -> Vec<String>;
}

impl Topics for &str {
    fn topics(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl Topics for String {
    fn topics(self) -> Vec<String> {
        vec![self]
    }
}

impl Topics for &[&str] {
    fn topics(self) -> Vec<String> {
        self.iter().map(|t| (*t).to_owned()).collect()
    }
}

impl<const N: usize> Topics for [&str; N] {
    fn topics(self) -> Vec<String> {
        self.iter().map(|t| (*t).to_owned()).collect()
    }
}

impl Topics for Vec<String> {
    fn topics(self) -> Vec<String> {
        self
    }
}

/// A stream extractor applied to a table's updates; tombstones keep their record timestamp.
struct TableTimestamps<K, V>(std::sync::Arc<dyn TimestampExtractor<K, V>>);

impl<K: Clone, V: Clone> TimestampExtractor<K, Option<V>> for TableTimestamps<K, V> {
    fn extract(&self, record: &Record<K, Option<V>>, partition_time: i64) -> i64 {
        match &record.value {
            Some(value) => self.0.extract(
                &Record {
                    key: record.key.clone(),
                    value: value.clone(),
                    timestamp: record.timestamp,
                    headers: record.headers.clone(),
                },
                partition_time,
            ),
            None => record.timestamp,
        }
    }
}

/// Builds a topology with the DSL.
///
/// ```
/// use streams_dsl::prelude::*;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("input", Consumed::with(Serdes::string(), Serdes::string()))
///     .map_values(|v| v.to_uppercase())
///     .to("output", Produced::with(Serdes::string(), Serdes::string()));
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.subtopologies().len(), 1);
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder")
            .field("nodes", &self.graph.borrow().nodes.len())
            .finish()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder::default()
    }

    fn source<K: Data, V: Data>(
        &self,
        topics: Vec<String>,
        spec: SourceSpec<K, V>,
        name: Option<String>,
    ) -> usize {
        let mut g = self.graph.borrow_mut();
        let name = g.name_or(name, "KSTREAM-SOURCE-");
        let add: crate::graph::AddFn = Box::new(
            move |b: &mut TopologyBuilder, name: &str, _parents: &[&str]| {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                b.add_source(name, &topics, spec.clone())?;
                Ok(())
            },
        );
        g.push(name, Vec::new(), NodeKind::Source { add })
    }

    /// A stream reading `topics` (one name or several).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let lines = builder.stream::<(), Option<String>>(
    ///     "text",
    ///     Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
    /// );
    /// let both = builder.stream::<String, String>(["a", "b"], Consumed::with(Serdes::string(), Serdes::string()));
    /// ```
    pub fn stream<K: Data, V: Data>(
        &self,
        topics: impl Topics,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let keys = consumed.keys.unwrap_or(SerdeSlot::DefaultKey);
        let values = consumed.values.unwrap_or(SerdeSlot::DefaultValue);
        let mut spec = SourceSpec::from_slots(keys.clone(), values.clone());
        if let Some(extractor) = consumed.timestamps {
            spec = spec.with_shared_timestamp_extractor(extractor);
        }
        if let Some(policy) = consumed.invalid_timestamps {
            spec = spec.with_invalid_timestamp_policy(policy);
        }
        if let Some(reset) = consumed.offset_reset {
            spec = spec.with_offset_reset(reset);
        }
        let node = self.source(topics.topics(), spec, consumed.name);
        KStream {
            graph: self.graph.clone(),
            node,
            keys: Some(keys),
            values: Some(values),
        }
    }

    /// A table reading `topic` as a changelog (the latest value per key; a null value deletes
    /// the key), kept in a store.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let prices = builder.table::<String, f64>(
    ///     "prices",
    ///     Consumed::with(Serdes::string(), Serdes::f64()),
    ///     Materialized::as_("prices-store"),
    /// );
    /// assert_eq!(prices.queryable_store_name(), Some("prices-store"));
    /// ```
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let keys = materialized
            .keys
            .clone()
            .or(consumed.keys)
            .unwrap_or(SerdeSlot::DefaultKey);
        let values = materialized
            .values
            .clone()
            .or(consumed.values)
            .unwrap_or(SerdeSlot::DefaultValue);
        let mut spec = SourceSpec::from_slots(keys.clone(), values.optional());
        if let Some(extractor) = consumed.timestamps {
            spec = spec.with_timestamp_extractor(TableTimestamps(extractor));
        }
        if let Some(policy) = consumed.invalid_timestamps {
            spec = spec.with_invalid_timestamp_policy(policy);
        }
        if let Some(reset) = consumed.offset_reset {
            spec = spec.with_offset_reset(reset);
        }
        let source = self.source(vec![topic.to_owned()], spec, consumed.name);
        let store = match materialized.name.clone() {
            Some(name) => name,
            None => self
                .graph
                .borrow_mut()
                .next_name("KTABLE-SOURCE-STATE-STORE-"),
        };
        source_table(&self.graph, source, store, keys, values, &materialized)
    }

    /// A global table reading every partition of `topic` on every instance, restored in full
    /// before processing starts and kept up to date by the instance's global thread (see
    /// [`global_table`](crate::global_table)). Stream records join it with
    /// [`KStream::join_global`] or [`KStream::left_join_global`].
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let countries = builder.global_table::<String, String>(
    ///     "countries",
    ///     Consumed::with(Serdes::string(), Serdes::string()),
    ///     Materialized::as_("countries-store"),
    /// );
    /// assert_eq!(countries.queryable_store_name(), "countries-store");
    /// builder
    ///     .stream::<String, String>("visits", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .join_global(&countries, |_, code| code.clone(), |_, country| country.clone())
    ///     .to("visits-by-country", Produced::with(Serdes::string(), Serdes::string()));
    /// let topology = builder.build().unwrap();
    /// assert_eq!(topology.global_stores()[0].topic, "countries");
    /// ```
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        let keys = materialized
            .keys
            .clone()
            .or(consumed.keys)
            .unwrap_or(SerdeSlot::DefaultKey);
        let values = materialized
            .values
            .clone()
            .or(consumed.values)
            .unwrap_or(SerdeSlot::DefaultValue);
        add_global_table(
            &self.graph,
            topic,
            consumed.name,
            materialized.name.clone(),
            keys,
            values,
            &materialized,
        )
    }

    /// Adds a store for Processor API processors ([`KStream::process`]) to use.
    pub fn add_state_store(&self, store: StoreDef) -> Result<&Self> {
        self.graph.borrow_mut().add_store(store)?;
        Ok(self)
    }

    /// Validates the application and compiles it into a topology: repartition topics where a
    /// key change precedes an aggregation, sub-topologies split at them, every name fixed.
    pub fn build(&self) -> Result<Topology> {
        self.graph.borrow().compile()
    }
}
