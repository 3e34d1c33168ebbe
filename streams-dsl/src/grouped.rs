//! Grouped streams and tables, and their aggregations: count, reduce and aggregate.
//!
//! An aggregation keeps its result in a key-value store (named by [`Materialized`], else
//! generated) and returns it as a [`KTable`]. A grouped stream repartitions first only if an
//! operator upstream may have changed the key; a grouped table always does, and carries each
//! change's old value along so the aggregation can subtract it from the group it left.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use state_stores::caching::EmitMode;
use state_stores::Serdes;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreKind, Stores};

use crate::aggregate::{Adder, Materializer, StreamAggregate, Subtractor, TableAggregate};
use crate::change::{Change, ChangeSerde, TimestampedSerde};
use crate::graph::{Graph, NodeKind, RepartitionPlan, RepartitionWhen};
use crate::options::Materialized;
use crate::stream::{plan_repartition, processor_add};
use crate::table::KTable;
use crate::Data;

/// What an aggregation needs to become a node.
struct Aggregation<K, VA> {
    processor_prefix: &'static str,
    store_prefix: &'static str,
    materialized: Materialized<K, VA>,
    keys: SerdeSlot<K>,
    /// The aggregate's serde when `Materialized` gives none.
    default_values: SerdeSlot<VA>,
}

/// Adds an aggregation node (and its store) whose processor `make` builds from a materializer,
/// repartitioning first as `when` says.
fn add_aggregation<K: Data, VA: Data, RK: Data, RV: Data, P>(
    graph: &Rc<RefCell<Graph>>,
    parent: usize,
    agg: Aggregation<K, VA>,
    repartition: impl FnOnce(&mut Graph, &str) -> (RepartitionWhen, RepartitionPlan),
    make: impl Fn(Materializer<K, VA>) -> P + Send + Sync + 'static,
) -> KTable<K, VA>
where
    P: streams_core::processor::Processor<RK, RV, K, Change<VA>> + 'static,
{
    let mut g = graph.borrow_mut();
    let name = g.next_name(agg.processor_prefix);
    let m = agg.materialized;
    let store = match m.name.clone() {
        Some(n) => n,
        None => g.next_name(agg.store_prefix),
    };
    let keys = m.keys.clone().unwrap_or(agg.keys);
    let values = m.values.clone().unwrap_or(agg.default_values);
    let mut def = Stores::with_slots(
        store.clone(),
        StoreKind::KeyValue,
        keys.clone(),
        values.derive(|s| Arc::new(TimestampedSerde(s))),
    );
    if !m.persistent {
        def = def.in_memory();
    }
    if m.caching {
        def = def.with_caching().with_emit(EmitMode::NewAndOld);
    }
    if !m.logging {
        def = def.without_logging();
    }
    g.add_store_deferred(def);
    let plan = repartition(&mut g, &store);
    let cached = m.caching;
    let store_for_make = store.clone();
    let add = processor_add::<RK, RV, K, Change<VA>, P>(move || {
        make(Materializer::new(store_for_make.clone(), cached))
    });
    let node = g.push(
        name,
        vec![parent],
        NodeKind::Stateful {
            add,
            stores: vec![store.clone()],
            repartition: Some(plan),
        },
    );
    drop(g);
    KTable {
        graph: graph.clone(),
        node,
        keys: Some(keys),
        values: Some(values),
        store: Some(store),
    }
}

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    pub(crate) keys: SerdeSlot<K>,
    pub(crate) values: SerdeSlot<V>,
    /// The repartition topic's base name, from `Grouped`.
    pub(crate) name: Option<String>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: SerdeSlot<VA>,
        adder: Adder<K, V, VA>,
    ) -> KTable<K, VA> {
        let (keys, values, grouped_name) =
            (self.keys.clone(), self.values.clone(), self.name.clone());
        let named_store = materialized.name.is_some();
        add_aggregation::<K, VA, K, V, _>(
            &self.graph,
            self.node,
            Aggregation {
                processor_prefix: "KSTREAM-AGGREGATE-",
                store_prefix: "KSTREAM-AGGREGATE-STATE-STORE-",
                materialized,
                keys: self.keys.clone(),
                default_values,
            },
            move |g: &mut Graph, store: &str| {
                // Name the repartition topic after Grouped, else a named store, else the store.
                let base = grouped_name.or_else(|| named_store.then(|| store.to_owned()));
                let generated = store.to_owned();
                let plan = plan_repartition(g, base, move |_| generated, keys, values, None);
                (RepartitionWhen::KeyChanged, plan)
            },
            move |table| StreamAggregate {
                adder: adder.clone(),
                table,
            },
        )
    }

    /// Cuts the grouped stream into windows for a windowed aggregation: [`TimeWindows`]
    /// (tumbling, hopping) and [`SlidingWindows`] make a
    /// [`TimeWindowedKStream`](crate::TimeWindowedKStream), [`SessionWindows`] a
    /// [`SessionWindowedKStream`](crate::SessionWindowedKStream). See [`crate::windowed`].
    ///
    /// [`TimeWindows`]: crate::TimeWindows
    /// [`SlidingWindows`]: crate::SlidingWindows
    /// [`SessionWindows`]: crate::SessionWindows
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let per_minute: KTable<Windowed<String>, i64> = clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
    ///     .count(Materialized::as_("clicks-per-minute"));
    /// ```
    pub fn windowed_by<W: crate::windowed::WindowedBy<K, V>>(&self, windows: W) -> W::Stream {
        windows.windowed(self)
    }

    /// Counts records per key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let per_user: KTable<String, i64> = clicks.group_by_key(Grouped::default()).count(Materialized::as_("clicks"));
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_with(
            materialized,
            SerdeSlot::explicit(Serdes::i64()),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
        )
    }

    /// Combines the values of each key with `reducer(aggregate, value)`; the first value is
    /// the initial aggregate.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let sales = builder.stream::<String, i64>("sales", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let totals = sales.group_by_key(Grouped::default()).reduce(|total, sale| total + sale, Materialized::as_("totals"));
    /// ```
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let default_values = self.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, value: V, agg: Option<V>| match agg {
                Some(agg) => reducer(agg, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key into an aggregate that starts as `initializer()`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let words = builder.stream::<String, String>("words", Consumed::with(Serdes::string(), Serdes::string()));
    /// let longest = words.group_by_key(Grouped::default()).aggregate(
    ///     || 0i64,
    ///     |_, word, longest| longest.max(word.len() as i64),
    ///     Materialized::with(Serdes::string(), Serdes::i64()),
    /// );
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.aggregate_with(
            materialized,
            SerdeSlot::DefaultValue,
            Arc::new(move |k, v, agg: Option<VA>| {
                aggregator(k, v, agg.unwrap_or_else(&initializer))
            }),
        )
    }
}

/// A table re-grouped by a new key, ready to aggregate.
pub struct KGroupedTable<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    pub(crate) keys: SerdeSlot<K>,
    pub(crate) values: SerdeSlot<V>,
    pub(crate) name: Option<String>,
}

impl<K: Data, V: Data> KGroupedTable<K, V> {
    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: SerdeSlot<VA>,
        adder: Adder<K, V, VA>,
        subtractor: Subtractor<K, V, VA>,
    ) -> KTable<K, VA> {
        let keys = self.keys.clone();
        let changes = self.values.derive(|s| Arc::new(ChangeSerde(s)));
        let (grouped_name, named_store) = (self.name.clone(), materialized.name.is_some());
        add_aggregation::<K, VA, K, Change<V>, _>(
            &self.graph,
            self.node,
            Aggregation {
                processor_prefix: "KTABLE-AGGREGATE-",
                store_prefix: "KTABLE-AGGREGATE-STATE-STORE-",
                materialized,
                keys: self.keys.clone(),
                default_values,
            },
            move |g: &mut Graph, store: &str| {
                let base = grouped_name.or_else(|| named_store.then(|| store.to_owned()));
                let generated = store.to_owned();
                let plan = plan_repartition(g, base, move |_| generated, keys, changes, None);
                (RepartitionWhen::Always, plan)
            },
            move |table| TableAggregate {
                adder: adder.clone(),
                subtractor: subtractor.clone(),
                table,
            },
        )
    }

    /// Counts the table's rows per new key, following rows as they move between groups.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// // user -> region; how many users live in each region
    /// let regions = builder.table::<String, String>("user-regions", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// let users_per_region = regions
    ///     .group_by(|_user, region| (region, 1i64), Grouped::with(Serdes::string(), Serdes::i64()))
    ///     .count(Materialized::as_("users-per-region"));
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        self.aggregate_with(
            materialized,
            SerdeSlot::explicit(Serdes::i64()),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
            Arc::new(|_, _, count: Option<i64>| count.map(|c| c - 1)),
        )
    }

    /// Combines values with `adder` as rows join a group and `subtractor` as they leave it.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// // account -> (branch, balance); total balance per branch
    /// let accounts = builder.table::<String, String>("accounts", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// let per_branch = accounts
    ///     .group_by(
    ///         |_, v| { let (b, bal) = v.split_once(':').unwrap_or((&v, "0")); (b.to_string(), bal.parse::<i64>().unwrap_or(0)) },
    ///         Grouped::with(Serdes::string(), Serdes::i64()),
    ///     )
    ///     .reduce(|a, b| a + b, |a, b| a - b, Materialized::as_("balance-per-branch"));
    /// ```
    pub fn reduce(
        &self,
        adder: impl Fn(V, V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let default_values = self.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, v: V, agg: Option<V>| match agg {
                Some(agg) => adder(agg, v),
                None => v,
            }),
            Arc::new(move |_, v: V, agg: Option<V>| agg.map(|agg| subtractor(agg, v))),
        )
    }

    /// Folds values into an aggregate that starts as `initializer()`: `adder` as rows join a
    /// group, `subtractor` as they leave it.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let scores = builder.table::<String, String>("player-teams", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// let roster_sizes = scores
    ///     .group_by(|player, team| (team, player), Grouped::with(Serdes::string(), Serdes::string()))
    ///     .aggregate(|| 0i64, |_, _, n| n + 1, |_, _, n| n - 1, Materialized::with(Serdes::string(), Serdes::i64()));
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let initializer = Arc::new(initializer);
        let init2 = initializer.clone();
        self.aggregate_with(
            materialized,
            SerdeSlot::DefaultValue,
            Arc::new(move |k, v, agg: Option<VA>| {
                adder(k, v, agg.unwrap_or_else(|| initializer()))
            }),
            Arc::new(move |k, v, agg: Option<VA>| {
                Some(subtractor(k, v, agg.unwrap_or_else(|| init2())))
            }),
        )
    }
}
