//! `KTable`: a changelog stream read as a table (the latest value per key), and its operators.
//!
//! Between table operators flow [`Change`]s: a key's new value and its old one. `filter` and
//! `map_values` apply to both sides, so a row that stops passing a filter becomes a deletion
//! downstream. `to_stream` turns the changes back into a stream of `(key, Option<value>)`, with
//! `None` for deletions (tombstones when written to a topic).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use state_stores::caching::EmitMode;
use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreDef, StoreKind, Stores};

use crate::aggregate::Materializer;
use crate::change::{Change, TimestampedSerde};
use crate::graph::{Graph, NodeKind};
use crate::grouped::KGroupedTable;
use crate::map_filter::{KeyValueMapper, Predicate, ValueMapper};
use crate::options::{Grouped, Materialized};
use crate::stream::{processor_add, KStream};
use crate::stream_join::JoinKind;
use crate::table_join::{join_tables, TableJoiner};
use crate::Data;

/// A table with keys of type `K` and values of type `V`.
pub struct KTable<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
    /// The store holding this table, when materialized.
    pub(crate) store: Option<String>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            graph: self.graph.clone(),
            node: self.node,
            keys: self.keys.clone(),
            values: self.values.clone(),
            store: self.store.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KTable({})", self.graph.borrow().nodes[self.node].name)
    }
}

/// Materializes a source topic as a table.
pub(crate) struct TableSource<K, V> {
    pub(crate) table: Materializer<K, V>,
}

impl<K: Data, V: Data> Processor<K, Option<V>, K, Change<V>> for TableSource<K, V> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> ProcessorResult {
        self.table.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            tracing::debug!(store = %self.table.store_name, "skipping a table update with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let old = self.table.get(&r.key)?;
        self.table
            .put(r.key, r.value, old, r.timestamp, r.headers, ctx)
    }

    fn flushed(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}

struct TableFilter<K, V> {
    predicate: Predicate<K, V>,
    negate: bool,
}

impl<K: Data, V: Data> Processor<K, Change<V>, K, Change<V>> for TableFilter<K, V> {
    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessorResult {
        let keep = |v: Option<V>| v.filter(|v| (self.predicate)(&r.key, v) != self.negate);
        let change = Change::new(
            keep(r.value.new_value.clone()),
            keep(r.value.old_value.clone()),
        );
        if change.new_value.is_none() && change.old_value.is_none() {
            return Ok(()); // not in the filtered table before or after
        }
        ctx.forward(r.with_value(change))
    }
}

struct TableMapValues<K, V, V2> {
    f: ValueMapper<K, V, V2>,
}

impl<K: Data, V: Data, V2: Data> Processor<K, Change<V>, K, Change<V2>>
    for TableMapValues<K, V, V2>
{
    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<V2>>,
    ) -> ProcessorResult {
        let change = Change::new(
            r.value.new_value.map(|v| (self.f)(&r.key, v)),
            r.value.old_value.map(|v| (self.f)(&r.key, v)),
        );
        ctx.forward(Record {
            key: r.key,
            value: change,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

struct ToStream<K, V>(std::marker::PhantomData<fn(K, V)>);

impl<K: Data, V: Data> Processor<K, Change<V>, K, Option<V>> for ToStream<K, V> {
    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Option<V>>,
    ) -> ProcessorResult {
        let new = r.value.new_value;
        ctx.forward(Record {
            key: r.key,
            value: new,
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Re-keys a table's changes for a group-by: the old value leaves its group (subtract), then
/// the new value joins its group (add).
struct TableRegroup<K, V, K2, V2> {
    selector: KeyValueMapper<K, V, K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Processor<K, Change<V>, K2, Change<V2>>
    for TableRegroup<K, V, K2, V2>
{
    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K2, Change<V2>>,
    ) -> ProcessorResult {
        if let Some(old) = r.value.old_value {
            let (k2, v2) = (self.selector)(r.key.clone(), old);
            ctx.forward(Record {
                key: k2,
                value: Change::new(None, Some(v2)),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        if let Some(new) = r.value.new_value {
            let (k2, v2) = (self.selector)(r.key, new);
            ctx.forward(Record {
                key: k2,
                value: Change::new(Some(v2), None),
                timestamp: r.timestamp,
                headers: r.headers,
            })?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    fn derive<K2, V2>(
        &self,
        name: String,
        kind: NodeKind,
        keys: Option<SerdeSlot<K2>>,
        values: Option<SerdeSlot<V2>>,
    ) -> KTable<K2, V2> {
        let node = self.graph.borrow_mut().push(name, vec![self.node], kind);
        KTable {
            graph: self.graph.clone(),
            node,
            keys,
            values,
            store: None,
        }
    }

    /// The name of the store holding this table, if it is materialized (source tables and
    /// aggregations are).
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// Keeps the rows `predicate` accepts; a row that stops passing becomes a deletion.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let balances = builder.table::<String, i64>("balances", Consumed::with(Serdes::string(), Serdes::i64()), Materialized::default());
    /// let overdrawn = balances.filter(|_, balance| *balance < 0);
    /// ```
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter_with(Arc::new(predicate), false)
    }

    /// Keeps the rows `predicate` rejects.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let balances = builder.table::<String, i64>("balances", Consumed::with(Serdes::string(), Serdes::i64()), Materialized::default());
    /// let in_credit = balances.filter_not(|_, balance| *balance < 0);
    /// ```
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter_with(Arc::new(predicate), true)
    }

    fn filter_with(&self, predicate: Predicate<K, V>, negate: bool) -> KTable<K, V> {
        let name = self.graph.borrow_mut().next_name("KTABLE-FILTER-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, Change<V>, K, Change<V>, TableFilter<K, V>>(move || {
                TableFilter {
                    predicate: predicate.clone(),
                    negate,
                }
            }),
            changes_key: false,
            stores: Vec::new(),
        };
        self.derive(name, kind, self.keys.clone(), self.values.clone())
    }

    /// Replaces each row's value.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let names = builder.table::<String, String>("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// let lengths = names.map_values(|_, name| name.len() as i64);
    /// ```
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let f: ValueMapper<K, V, V2> = Arc::new(f);
        let name = self.graph.borrow_mut().next_name("KTABLE-MAPVALUES-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, Change<V>, K, Change<V2>, TableMapValues<K, V, V2>>(
                move || TableMapValues { f: f.clone() },
            ),
            changes_key: false,
            stores: Vec::new(),
        };
        self.derive(name, kind, self.keys.clone(), None)
    }

    /// The table's changes as a stream: each update's new value, `None` for a deletion.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let words = builder.stream::<(), String>("words", Consumed::with(Serdes::unit(), Serdes::string()));
    /// # let counts = words.group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string())).count(Materialized::as_("counts"));
    /// counts
    ///     .to_stream()
    ///     .to("word-counts", Produced::with(Serdes::string(), Serdes::option(Serdes::i64())));
    /// ```
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let name = self.graph.borrow_mut().next_name("KTABLE-TOSTREAM-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, Change<V>, K, Option<V>, ToStream<K, V>>(|| {
                ToStream(std::marker::PhantomData)
            }),
            changes_key: false,
            stores: Vec::new(),
        };
        let node = self.graph.borrow_mut().push(name, vec![self.node], kind);
        KStream {
            graph: self.graph.clone(),
            node,
            keys: self.keys.clone(),
            values: self.values.as_ref().map(SerdeSlot::optional),
        }
    }

    /// Re-groups the rows by a new key (and value) that `selector` computes, for an aggregation
    /// that follows rows as they move between groups.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let users = builder.table::<String, String>("user-cities", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// let per_city = users
    ///     .group_by(|user, city| (city, user), Grouped::with(Serdes::string(), Serdes::string()))
    ///     .count(Materialized::as_("users-per-city"));
    /// ```
    pub fn group_by<K2: Data, V2: Data>(
        &self,
        selector: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let selector: KeyValueMapper<K, V, K2, V2> = Arc::new(selector);
        let name = self.graph.borrow_mut().next_name("KTABLE-SELECT-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, Change<V>, K2, Change<V2>, TableRegroup<K, V, K2, V2>>(
                move || TableRegroup {
                    selector: selector.clone(),
                },
            ),
            changes_key: true,
            stores: Vec::new(),
        };
        let node = self.graph.borrow_mut().push(name, vec![self.node], kind);
        KGroupedTable {
            graph: self.graph.clone(),
            node,
            keys: grouped.keys.unwrap_or(SerdeSlot::DefaultKey),
            values: grouped.values.unwrap_or(SerdeSlot::DefaultValue),
            name: grouped.name,
        }
    }
}

/// Table-table joins; see [`crate::table_join`] for what they emit and when.
impl<K: Data, V: Data> KTable<K, V> {
    /// Joins this table with `other` on the key: a row wherever both have the key, its value
    /// `joiner(this value, other value)`, updated as either side changes (with old values).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let c = || Consumed::with(Serdes::string(), Serdes::string());
    /// let names = builder.table::<String, String>("names", c(), Materialized::default());
    /// let emails = builder.table::<String, String>("emails", c(), Materialized::default());
    /// names
    ///     .join(&emails, |n, e| format!("{n} <{e}>"), Materialized::with(Serdes::string(), Serdes::string()))
    ///     .to_stream()
    ///     .to("contacts", Produced::with(Serdes::string(), Serdes::option(Serdes::string())));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let (n, e) = (driver.create_input_topic("names", Serdes::string(), Serdes::string()),
    ///               driver.create_input_topic("emails", Serdes::string(), Serdes::string()));
    /// let out = driver.create_output_topic("contacts", Serdes::string(), Serdes::option(Serdes::string()));
    /// n.pipe_input_at("u1".into(), "Ada".into(), 1).unwrap();
    /// assert!(out.is_empty(), "no email yet");
    /// e.pipe_input_at("u1".into(), "ada@example.com".into(), 2).unwrap();
    /// assert_eq!(out.read_value().unwrap(), Some(Some("Ada <ada@example.com>".into())));
    /// ```
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner: TableJoiner<V, VO, VR> = Arc::new(move |a, b| match (a, b) {
            (Some(a), Some(b)) => Some(joiner(a, b)),
            _ => None,
        });
        join_tables(self, other, JoinKind::Inner, joiner, materialized)
    }

    /// Like [`join`](Self::join), with a row for every row of this table: `joiner(value, None)`
    /// while `other` lacks the key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let c = || Consumed::with(Serdes::string(), Serdes::string());
    /// let names = builder.table::<String, String>("names", c(), Materialized::default());
    /// let emails = builder.table::<String, String>("emails", c(), Materialized::default());
    /// let contacts = names.left_join(
    ///     &emails,
    ///     |n, e| format!("{n} <{}>", e.map_or("?", |e| e.as_str())),
    ///     Materialized::as_("contacts"),
    /// );
    /// assert_eq!(contacts.queryable_store_name(), Some("contacts"));
    /// ```
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner: TableJoiner<V, VO, VR> = Arc::new(move |a, b| a.map(|a| joiner(a, b)));
        join_tables(self, other, JoinKind::Left, joiner, materialized)
    }

    /// Like [`join`](Self::join), with a row wherever either table has the key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let c = || Consumed::with(Serdes::string(), Serdes::i64());
    /// let a = builder.table::<String, i64>("stock-a", c(), Materialized::default());
    /// let b = builder.table::<String, i64>("stock-b", c(), Materialized::default());
    /// let total = a.outer_join(&b, |x, y| x.copied().unwrap_or(0) + y.copied().unwrap_or(0), Materialized::default());
    /// total.to_stream().to("stock", Produced::with(Serdes::string(), Serdes::option(Serdes::i64())));
    /// builder.build().unwrap();
    /// ```
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner: TableJoiner<V, VO, VR> = Arc::new(move |a, b| Some(joiner(a, b)));
        join_tables(self, other, JoinKind::Outer, joiner, materialized)
    }
}

/// The key-value store of a materialized table: values with their timestamps.
pub(crate) fn table_store_def<K: Data, V: Data>(
    store: String,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
    persistent: bool,
    caching: bool,
    logging: bool,
) -> StoreDef {
    let mut def = Stores::with_slots(
        store,
        StoreKind::KeyValue,
        keys,
        values.derive(|s| Arc::new(TimestampedSerde(s))),
    );
    if !persistent {
        def = def.in_memory();
    }
    if caching {
        def = def.with_caching().with_emit(EmitMode::NewAndOld);
    }
    if !logging {
        def = def.without_logging();
    }
    def
}

/// Adds a materialized source table reading `topic`.
pub(crate) fn source_table<K: Data, V: Data>(
    graph: &Rc<RefCell<Graph>>,
    source: usize,
    store: String,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
    materialized: &crate::options::Materialized<K, V>,
) -> KTable<K, V> {
    let mut g = graph.borrow_mut();
    let name = g.next_name("KTABLE-SOURCE-");
    g.add_store_deferred(table_store_def(
        store.clone(),
        keys.clone(),
        values.clone(),
        materialized.persistent,
        materialized.caching,
        materialized.logging,
    ));
    let (store_name, cached) = (store.clone(), materialized.caching);
    let kind = NodeKind::Stateful {
        add: processor_add::<K, Option<V>, K, Change<V>, TableSource<K, V>>(move || TableSource {
            table: Materializer::new(store_name.clone(), cached),
        }),
        stores: vec![store.clone()],
        repartition: None,
    };
    let node = g.push(name, vec![source], kind);
    drop(g);
    KTable {
        graph: graph.clone(),
        node,
        keys: Some(keys),
        values: Some(values),
        store: Some(store),
    }
}
