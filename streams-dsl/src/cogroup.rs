//! `cogroup`: several grouped streams, each with values of its own type, folded into one
//! aggregate per key.
//!
//! [`KGroupedStream::cogroup`] starts a [`CogroupedKStream`] with the first stream and its
//! aggregator, [`CogroupedKStream::cogroup`] adds more, and
//! [`aggregate`](CogroupedKStream::aggregate) builds the table: one store, which every input's
//! aggregator updates in turn. A record of any input folds its value into its key's aggregate
//! (starting from `initializer()` for a new key) with that input's aggregator and emits the
//! change, exactly as a single-stream aggregation does (one change per record without a cache;
//! with one, one change per key per commit). Records of the inputs are processed in timestamp
//! order within a task; the aggregate's timestamp is the largest of the records folded in.
//!
//! Each input repartitions first if an operator upstream may have changed its key (a topic per
//! input, named after its `Grouped` name, else after the store); all inputs must be
//! co-partitioned, checked at start. Records with null keys are skipped.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use streams_core::serde_slot::SerdeSlot;

use crate::aggregate::{Adder, Materializer, StreamAggregate};
use crate::change::Change;
use crate::graph::{Graph, NodeKind, RepartitionWhen};
use crate::grouped::KGroupedStream;
use crate::map_filter::PassThrough;
use crate::options::Materialized;
use crate::stream::{plan_repartition, processor_add};
use crate::table::{table_store_def, KTable};
use crate::Data;

/// `(key, value, aggregate) -> new aggregate`.
type Aggregator<K, V, VA> = Arc<dyn Fn(&K, V, VA) -> VA + Send + Sync>;

/// Adds one input's aggregation node: `(graph, store, cached, initializer, input index)`.
type AddInput<VA> =
    Rc<dyn Fn(&mut Graph, &str, bool, &Arc<dyn Fn() -> VA + Send + Sync>, usize) -> usize>;

/// Grouped streams to aggregate together; see the [module docs](self).
pub struct CogroupedKStream<K, VA> {
    graph: Rc<RefCell<Graph>>,
    keys: SerdeSlot<K>,
    inputs: Vec<AddInput<VA>>,
}

fn input<K: Data, V: Data, VA: Data>(
    grouped: &KGroupedStream<K, V>,
    aggregator: Aggregator<K, V, VA>,
) -> AddInput<VA> {
    let (node, keys, values, name) = (
        grouped.node,
        grouped.keys.clone(),
        grouped.values.clone(),
        grouped.name.clone(),
    );
    Rc::new(move |g, store, cached, initializer, index| {
        let generated = format!("{store}-cogroup-{index}");
        let plan = plan_repartition(
            g,
            name.clone(),
            move |_| generated,
            keys.clone(),
            values.clone(),
            None,
        );
        let (aggregator, initializer) = (aggregator.clone(), initializer.clone());
        let adder: Adder<K, V, VA> = Arc::new(move |k, v, agg: Option<VA>| {
            aggregator(k, v, agg.unwrap_or_else(|| initializer()))
        });
        let store_name = store.to_owned();
        let add = processor_add::<K, V, K, Change<VA>, StreamAggregate<K, V, VA>>(move || {
            StreamAggregate {
                adder: adder.clone(),
                table: Materializer::new(store_name.clone(), cached),
            }
        });
        let processor = g.next_name("COGROUPKSTREAM-AGGREGATE-");
        g.push(
            processor,
            vec![node],
            NodeKind::Stateful {
                add,
                stores: vec![store.to_owned()],
                repartition: Some((RepartitionWhen::KeyChanged, plan)),
            },
        )
    })
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Starts a co-grouped aggregation with this stream, whose values `aggregator(key, value,
    /// aggregate)` folds in; add more streams with [`CogroupedKStream::cogroup`]. See
    /// [`crate::cogroup`].
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let buys = builder.stream::<String, i64>("purchases", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let activity = clicks
    ///     .group_by_key(Grouped::default())
    ///     .cogroup(|_, _click, (clicks, spent): (i64, i64)| (clicks + 1, spent))
    ///     .cogroup(&buys.group_by_key(Grouped::default()), |_, amount, (clicks, spent)| (clicks, spent + amount))
    ///     .aggregate(|| (0, 0), Materialized::as_("activity").with_value_serde(Serdes::json::<(i64, i64)>()));
    /// activity.to_stream().to("activity", Produced::with(Serdes::string(), Serdes::option(Serdes::json())));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let c = driver.create_input_topic("clicks", Serdes::string(), Serdes::string());
    /// let p = driver.create_input_topic("purchases", Serdes::string(), Serdes::i64());
    /// let out = driver.create_output_topic("activity", Serdes::string(), Serdes::option(Serdes::json::<(i64, i64)>()));
    /// c.pipe_input_at("u1".into(), "home".into(), 1).unwrap();
    /// p.pipe_input_at("u1".into(), 30, 2).unwrap();
    /// assert_eq!(out.read_values_to_list().unwrap().last(), Some(&Some((1, 30))));
    /// ```
    pub fn cogroup<VA: Data>(
        &self,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> CogroupedKStream<K, VA> {
        CogroupedKStream {
            graph: self.graph.clone(),
            keys: self.keys.clone(),
            inputs: vec![input(self, Arc::new(aggregator))],
        }
    }
}

impl<K: Data, VA: Data> CogroupedKStream<K, VA> {
    /// Adds `grouped`, whose values `aggregator(key, value, aggregate)` folds into the same
    /// aggregate. `grouped` must come from the same [`StreamsBuilder`](crate::StreamsBuilder).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let a = builder.stream::<String, i64>("a", Consumed::with(Serdes::string(), Serdes::i64()));
    /// # let b = builder.stream::<String, String>("b", Consumed::with(Serdes::string(), Serdes::string()));
    /// let totals = a
    ///     .group_by_key(Grouped::default())
    ///     .cogroup(|_, n, total: i64| total + n)
    ///     .cogroup(&b.group_by_key(Grouped::default()), |_, s, total| total + s.len() as i64)
    ///     .aggregate(|| 0, Materialized::with(Serdes::string(), Serdes::i64()));
    /// ```
    pub fn cogroup<V: Data>(
        mut self,
        grouped: &KGroupedStream<K, V>,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> CogroupedKStream<K, VA> {
        if !Rc::ptr_eq(&self.graph, &grouped.graph) {
            self.graph
                .borrow_mut()
                .defer_error(streams_core::StreamsError::topology(
                    "cogroup",
                    "the grouped streams come from different StreamsBuilders",
                ));
            return self;
        }
        self.inputs.push(input(grouped, Arc::new(aggregator)));
        self
    }

    /// Builds the aggregation: one table, each key's aggregate starting as `initializer()`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let a = builder.stream::<String, i64>("a", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let counts = a
    ///     .group_by_key(Grouped::default())
    ///     .cogroup(|_, _, n: i64| n + 1)
    ///     .aggregate(|| 0, Materialized::as_("counts").with_value_serde(Serdes::i64()));
    /// assert_eq!(counts.queryable_store_name(), Some("counts"));
    /// ```
    pub fn aggregate(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let initializer: Arc<dyn Fn() -> VA + Send + Sync> = Arc::new(initializer);
        let mut g = self.graph.borrow_mut();
        let store = match materialized.name.clone() {
            Some(n) => n,
            None => g.next_name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-"),
        };
        let keys = materialized.keys.clone().unwrap_or(self.keys.clone());
        let values = materialized
            .values
            .clone()
            .unwrap_or(SerdeSlot::DefaultValue);
        g.add_store_deferred(table_store_def(
            store.clone(),
            keys.clone(),
            values.clone(),
            materialized.persistent,
            materialized.caching,
            materialized.logging,
        ));
        let nodes: Vec<usize> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, add)| add(&mut g, &store, materialized.caching, &initializer, i))
            .collect();
        let merge = g.next_name("COGROUPKSTREAM-MERGE-");
        g.copartition.push((merge.clone(), nodes.clone()));
        let node = g.push(
            merge,
            nodes,
            NodeKind::Processor {
                add: processor_add::<K, Change<VA>, K, Change<VA>, PassThrough<K, Change<VA>>>(
                    || PassThrough(std::marker::PhantomData),
                ),
                changes_key: false,
                stores: Vec::new(),
            },
        );
        drop(g);
        KTable {
            graph: self.graph.clone(),
            node,
            keys: Some(keys),
            values: Some(values),
            store: Some(store),
        }
    }
}
