//! `KStream`: a record stream and its operators.
//!
//! Every operator returns a new handle onto the logical graph; handles are cheap to clone and
//! a stream may feed several operators. Nothing runs until the topology is built and started.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use streams_core::processor::Processor;
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{SinkSpec, SinkTopic, SourceSpec, TopologyBuilder};

use crate::global_table::{join_global, GlobalJoiner, GlobalKTable};
use crate::graph::{Graph, NodeKind, RepartitionPlan};
use crate::grouped::KGroupedStream;
use crate::map_filter::{
    Action, Consumer, FlatMapper, FlatValueMapper, KeySelector, KeyValueMapper, Predicate,
    ValueMapper,
};
use crate::map_filter::{
    Branch, Filter, FlatMap, FlatMapValues, Foreach, Map, MapValues, PassThrough, Peek, SelectKey,
    Split,
};
use crate::options::{Grouped, Joined, Named, Produced, Repartitioned, StreamJoined};
use crate::stream_join::{join_streams, JoinKind, StreamJoiner};
use crate::table::KTable;
use crate::table_join::{join_stream_table, StreamTableJoiner};
use crate::windows::JoinWindows;
use crate::Data;

/// A stream of records with keys of type `K` and values of type `V`.
pub struct KStream<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    pub(crate) keys: Option<SerdeSlot<K>>,
    pub(crate) values: Option<SerdeSlot<V>>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            graph: self.graph.clone(),
            node: self.node,
            keys: self.keys.clone(),
            values: self.values.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KStream({})", self.graph.borrow().nodes[self.node].name)
    }
}

/// Adds a processor node for `make`'s processors.
pub(crate) fn processor_add<KIn: Data, VIn: Data, KOut: Data, VOut: Data, P>(
    make: impl Fn() -> P + Send + Sync + 'static,
) -> crate::graph::AddFn
where
    P: Processor<KIn, VIn, KOut, VOut> + 'static,
{
    let make = Arc::new(make);
    Box::new(
        move |b: &mut TopologyBuilder, name: &str, parents: &[&str]| {
            let make = make.clone();
            b.add_processor::<KIn, VIn, KOut, VOut, P>(name, move || make(), parents)?;
            Ok(())
        },
    )
}

/// Plans a repartition of `(K, V)` records through `<base>-repartition`; names the nodes after
/// the base when the user named it, else with generated names.
pub(crate) fn plan_repartition<K: Data, V: Data>(
    graph: &mut Graph,
    base: Option<String>,
    generated_base: impl FnOnce(&mut Graph) -> String,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
    partitions: Option<i32>,
) -> RepartitionPlan {
    let (topic, sink, source) = match base {
        Some(base) => (
            format!("{base}-repartition"),
            format!("{base}-repartition-sink"),
            format!("{base}-repartition-source"),
        ),
        None => {
            let base = generated_base(graph);
            (
                format!("{base}-repartition"),
                graph.next_name("KSTREAM-SINK-"),
                graph.next_name("KSTREAM-SOURCE-"),
            )
        }
    };
    RepartitionPlan {
        topic,
        sink,
        source,
        partitions,
        add: Box::new(
            move |b: &mut TopologyBuilder, plan: &RepartitionPlan, parents: &[&str]| {
                b.add_sink(
                    &plan.sink,
                    SinkSpec::from_slots(
                        SinkTopic::Internal(plan.topic.clone()),
                        keys.clone(),
                        values.clone(),
                    ),
                    parents,
                )?;
                b.add_internal_source(
                    &plan.source,
                    &plan.topic,
                    SourceSpec::from_slots(keys.clone(), values.clone()),
                )?;
                if let Some(n) = plan.partitions {
                    b.set_internal_topic_partitions(&plan.topic, n)?;
                }
                Ok(())
            },
        ),
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    fn push<K2, V2>(
        &self,
        name: String,
        kind: NodeKind,
        keys: Option<SerdeSlot<K2>>,
        values: Option<SerdeSlot<V2>>,
    ) -> KStream<K2, V2> {
        let node = self.graph.borrow_mut().push(name, vec![self.node], kind);
        KStream {
            graph: self.graph.clone(),
            node,
            keys,
            values,
        }
    }

    fn stateless<K2: Data, V2: Data, P>(
        &self,
        prefix: &str,
        changes_key: bool,
        keys: Option<SerdeSlot<K2>>,
        values: Option<SerdeSlot<V2>>,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2> + 'static,
    {
        let name = self.graph.borrow_mut().next_name(prefix);
        let kind = NodeKind::Processor {
            add: processor_add::<K, V, K2, V2, P>(make),
            changes_key,
            stores: Vec::new(),
        };
        self.push(name, kind, keys, values)
    }

    /// Names the processor that produced this stream (instead of its generated name).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .filter(|_, v| !v.is_empty())
    ///     .named("drop-empty")
    ///     .to("out", Produced::with(Serdes::string(), Serdes::string()));
    /// assert!(builder.build().unwrap().describe().to_string().contains("Processor: drop-empty"));
    /// ```
    pub fn named(self, name: impl Into<String>) -> Self {
        {
            let mut graph = self.graph.borrow_mut();
            let node = &mut graph.nodes[self.node];
            if matches!(
                node.kind,
                NodeKind::Processor { .. } | NodeKind::Stateful { .. }
            ) {
                node.name = name.into();
            }
        }
        self
    }

    /// Keeps the records `predicate` accepts.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let orders = builder.stream::<String, i64>("orders", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let large = orders.filter(|_customer, amount| *amount >= 1000);
    /// ```
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        let predicate: Predicate<K, V> = Arc::new(predicate);
        self.stateless(
            "KSTREAM-FILTER-",
            false,
            self.keys.clone(),
            self.values.clone(),
            move || Filter {
                predicate: predicate.clone(),
                negate: false,
            },
        )
    }

    /// Keeps the records `predicate` rejects.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let lines = builder.stream::<(), String>("lines", Consumed::with(Serdes::unit(), Serdes::string()));
    /// let non_empty = lines.filter_not(|_, line| line.trim().is_empty());
    /// ```
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        let predicate: Predicate<K, V> = Arc::new(predicate);
        self.stateless(
            "KSTREAM-FILTER-",
            false,
            self.keys.clone(),
            self.values.clone(),
            move || Filter {
                predicate: predicate.clone(),
                negate: true,
            },
        )
    }

    /// Replaces key and value. The key may change, so a later aggregation repartitions.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let by_page = clicks.map(|user, page| (page, user));
    /// ```
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f: KeyValueMapper<K, V, K2, V2> = Arc::new(f);
        self.stateless("KSTREAM-MAP-", true, None, None, move || Map {
            f: f.clone(),
        })
    }

    /// Replaces the value.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let lines = builder.stream::<(), String>("lines", Consumed::with(Serdes::unit(), Serdes::string()));
    /// let lengths = lines.map_values(|line| line.len() as i64);
    /// ```
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// Replaces the value, seeing the key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let scores = builder.stream::<String, i64>("scores", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let labelled = scores.map_values_with_key(|player, score| format!("{player}: {score}"));
    /// ```
    pub fn map_values_with_key<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let f: ValueMapper<K, V, V2> = Arc::new(f);
        self.stateless(
            "KSTREAM-MAPVALUES-",
            false,
            self.keys.clone(),
            None,
            move || MapValues { f: f.clone() },
        )
    }

    /// Replaces each record with zero or more records. The key may change.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let orders = builder.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    /// let items = orders.flat_map(|order, items| {
    ///     items.split(',').map(|item| (item.to_string(), order.clone())).collect::<Vec<_>>()
    /// });
    /// ```
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let f: FlatMapper<K, V, K2, V2> = Arc::new(move |k, v| f(k, v).into_iter().collect());
        self.stateless("KSTREAM-FLATMAP-", true, None, None, move || FlatMap {
            f: f.clone(),
        })
    }

    /// Replaces each value with zero or more values, keeping the key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let lines = builder.stream::<(), String>("lines", Consumed::with(Serdes::unit(), Serdes::string()));
    /// let words = lines.flat_map_values(|line| {
    ///     line.split_whitespace().map(str::to_string).collect::<Vec<_>>()
    /// });
    /// ```
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let f: FlatValueMapper<K, V, V2> = Arc::new(move |_, v| f(v).into_iter().collect());
        self.stateless(
            "KSTREAM-FLATMAPVALUES-",
            false,
            self.keys.clone(),
            None,
            move || FlatMapValues { f: f.clone() },
        )
    }

    /// Replaces the key. A later aggregation repartitions.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let words = builder.stream::<(), String>("words", Consumed::with(Serdes::unit(), Serdes::string()));
    /// let keyed = words.select_key(|_, word| word.clone());
    /// ```
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let f: KeySelector<K, V, K2> = Arc::new(f);
        self.stateless(
            "KSTREAM-KEY-SELECT-",
            true,
            None,
            self.values.clone(),
            move || SelectKey { f: f.clone() },
        )
    }

    /// Calls `f` on each record and passes it on unchanged.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let events = builder.stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()));
    /// let logged = events.peek(|k, v| eprintln!("{k} -> {v}"));
    /// ```
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let f: Action<K, V> = Arc::new(f);
        self.stateless(
            "KSTREAM-PEEK-",
            false,
            self.keys.clone(),
            self.values.clone(),
            move || Peek { f: f.clone() },
        )
    }

    /// Calls `f` on each record; the end of this branch of the topology.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let alerts = builder.stream::<String, String>("alerts", Consumed::with(Serdes::string(), Serdes::string()));
    /// alerts.foreach(|host, alert| eprintln!("{host}: {alert}"));
    /// ```
    pub fn foreach(&self, f: impl Fn(K, V) + Send + Sync + 'static) {
        let f: Consumer<K, V> = Arc::new(f);
        let _: KStream<K, V> = self.stateless("KSTREAM-FOREACH-", false, None, None, move || {
            Foreach { f: f.clone() }
        });
    }

    /// Splits the stream into named branches by predicates, first match wins.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let numbers = builder.stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let branches = numbers
    ///     .split(Named::as_("sign-"))
    ///     .branch(|_, n| *n < 0, Branched::as_("negative"))
    ///     .branch(|_, n| *n == 0, Branched::as_("zero"))
    ///     .default_branch(Branched::as_("positive"));
    /// let negative = &branches["sign-negative"];
    /// ```
    pub fn split(&self, named: Named) -> BranchedKStream<K, V> {
        let branches: Rc<RefCell<Vec<Branch<K, V>>>> = Rc::new(RefCell::new(Vec::new()));
        let default: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
        let name = {
            let mut graph = self.graph.borrow_mut();
            graph.name_or(named.0.clone(), "KSTREAM-BRANCH-")
        };
        let (b2, d2) = (branches.clone(), default.clone());
        let add: crate::graph::AddFn = Box::new(
            move |b: &mut TopologyBuilder, name: &str, parents: &[&str]| {
                let list: Arc<Vec<Branch<K, V>>> = Arc::new(b2.borrow().clone());
                let default = d2.borrow().clone();
                b.add_processor::<K, V, K, V, Split<K, V>>(
                    name,
                    move || Split {
                        branches: list.clone(),
                        default: default.clone(),
                    },
                    parents,
                )?;
                Ok(())
            },
        );
        let split: KStream<K, V> = self.push(
            name.clone(),
            NodeKind::Processor {
                add,
                changes_key: false,
                stores: Vec::new(),
            },
            self.keys.clone(),
            self.values.clone(),
        );
        BranchedKStream {
            split,
            prefix: named.0.unwrap_or_else(|| format!("{name}-")),
            branches,
            default,
            result: BTreeMap::new(),
        }
    }

    /// Merges this stream with `other` into one.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// let web = builder.stream::<String, String>("web-clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let app = builder.stream::<String, String>("app-clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let all = web.merge(&app);
    /// ```
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let name = self.graph.borrow_mut().next_name("KSTREAM-MERGE-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, V, K, V, PassThrough<K, V>>(|| PassThrough(PhantomData)),
            changes_key: false,
            stores: Vec::new(),
        };
        let node = self
            .graph
            .borrow_mut()
            .push(name, vec![self.node, other.node], kind);
        KStream {
            graph: self.graph.clone(),
            node,
            keys: self.keys.clone().or_else(|| other.keys.clone()),
            values: self.values.clone().or_else(|| other.values.clone()),
        }
    }

    /// Writes the stream to an internal topic and reads it back, partitioned by the current key.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let by_page = clicks
    ///     .select_key(|_, page| page.clone())
    ///     .repartition(Repartitioned::with(Serdes::string(), Serdes::string()).with_name("by-page").with_partitions(8));
    /// ```
    pub fn repartition(&self, options: Repartitioned<K, V>) -> KStream<K, V> {
        let keys = options
            .keys
            .or_else(|| self.keys.clone())
            .unwrap_or(SerdeSlot::DefaultKey);
        let values = options
            .values
            .or_else(|| self.values.clone())
            .unwrap_or(SerdeSlot::DefaultValue);
        let mut graph = self.graph.borrow_mut();
        let plan = plan_repartition(
            &mut graph,
            options.name,
            |g| g.next_name("KSTREAM-REPARTITION-"),
            keys.clone(),
            values.clone(),
            options.partitions,
        );
        let name = plan.source.clone();
        let node = graph.push(name, vec![self.node], NodeKind::Repartition(plan));
        KStream {
            graph: self.graph.clone(),
            node,
            keys: Some(keys),
            values: Some(values),
        }
    }

    /// Writes the stream to `topic`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let words = builder.stream::<String, String>("words", Consumed::with(Serdes::string(), Serdes::string()));
    /// words.to("words-copy", Produced::with(Serdes::string(), Serdes::string()));
    /// ```
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let keys = produced
            .keys
            .or_else(|| self.keys.clone())
            .unwrap_or(SerdeSlot::DefaultKey);
        let values = produced
            .values
            .or_else(|| self.values.clone())
            .unwrap_or(SerdeSlot::DefaultValue);
        self.sink(
            SinkTopic::Fixed(topic.to_owned()),
            keys,
            values,
            produced.name,
        );
    }

    /// Writes each record to the topic `chooser` picks for it.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let events = builder.stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()));
    /// events.to_dynamic(|r| format!("events-{}", r.key), Produced::with(Serdes::string(), Serdes::string()));
    /// ```
    pub fn to_dynamic(
        &self,
        chooser: impl Fn(&Record<K, V>) -> String + Send + Sync + 'static,
        produced: Produced<K, V>,
    ) {
        let keys = produced
            .keys
            .or_else(|| self.keys.clone())
            .unwrap_or(SerdeSlot::DefaultKey);
        let values = produced
            .values
            .or_else(|| self.values.clone())
            .unwrap_or(SerdeSlot::DefaultValue);
        self.sink(
            SinkTopic::PerRecord(Arc::new(chooser)),
            keys,
            values,
            produced.name,
        );
    }

    fn sink(
        &self,
        topic: SinkTopic<K, V>,
        keys: SerdeSlot<K>,
        values: SerdeSlot<V>,
        name: Option<String>,
    ) {
        let name = self.graph.borrow_mut().name_or(name, "KSTREAM-SINK-");
        let add: crate::graph::AddFn = Box::new(
            move |b: &mut TopologyBuilder, name: &str, parents: &[&str]| {
                b.add_sink(
                    name,
                    SinkSpec::from_slots(topic.clone(), keys.clone(), values.clone()),
                    parents,
                )?;
                Ok(())
            },
        );
        self.graph
            .borrow_mut()
            .push(name, vec![self.node], NodeKind::Sink { add });
    }

    /// Runs a Processor API processor on each record. `stores` names stores added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store) that it uses.
    /// The processor may change keys, so a later aggregation repartitions.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
    /// use streams_core::record::Record;
    ///
    /// struct Dedupe;
    /// impl Processor<String, String, String, String> for Dedupe {
    ///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> ProcessorResult {
    ///         let seen = ctx.key_value_store::<String, i64>("seen")?;
    ///         if seen.put_if_absent(&r.value, &r.timestamp)?.is_none() {
    ///             ctx.forward(r)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.add_state_store(Stores::key_value("seen", Serdes::string(), Serdes::i64())).unwrap();
    /// builder
    ///     .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .process(|| Dedupe, &["seen"])
    ///     .to("unique-events", Produced::with(Serdes::string(), Serdes::string()));
    /// builder.build().unwrap();
    /// ```
    pub fn process<K2: Data, V2: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2> + 'static,
    {
        let name = self.graph.borrow_mut().next_name("KSTREAM-PROCESSOR-");
        let kind = NodeKind::Processor {
            add: processor_add::<K, V, K2, V2, P>(supplier),
            changes_key: true,
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
        };
        self.push(name, kind, None, None)
    }

    /// Groups records by their current key for an aggregation (repartitioning first if an
    /// operator upstream may have changed the key).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let clicks_per_user = clicks.group_by_key(Grouped::default()).count(Materialized::as_("clicks-per-user"));
    /// ```
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream {
            graph: self.graph.clone(),
            node: self.node,
            keys: grouped
                .keys
                .or_else(|| self.keys.clone())
                .unwrap_or(SerdeSlot::DefaultKey),
            values: grouped
                .values
                .or_else(|| self.values.clone())
                .unwrap_or(SerdeSlot::DefaultValue),
            name: grouped.name,
        }
    }

    /// Groups records by a new key that `selector` computes (always followed by a repartition).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// # let builder = StreamsBuilder::new();
    /// # let words = builder.stream::<(), String>("words", Consumed::with(Serdes::unit(), Serdes::string()));
    /// let counts = words
    ///     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
    ///     .count(Materialized::as_("word-counts"));
    /// ```
    pub fn group_by<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(selector).group_by_key(grouped)
    }
}

/// Joins; see [`crate::stream_join`] for what a stream-stream join emits and when.
impl<K: Data, V: Data> KStream<K, V> {
    /// Joins this stream with `other`: each pair of records with the same key whose timestamps
    /// lie within `windows` yields `joiner(this value, other value)`, with the larger timestamp.
    /// Records later than their window's grace period are dropped; see
    /// [the contract](crate::stream_join). Repartitions either side first if its key may have
    /// changed.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// let builder = StreamsBuilder::new();
    /// let impressions = builder.stream::<String, String>("impressions", Consumed::with(Serdes::string(), Serdes::string()));
    /// let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// impressions
    ///     .join(
    ///         &clicks,
    ///         |ad, click| format!("{ad} clicked at {click}"),
    ///         JoinWindows::of_time_difference_and_grace(Duration::from_secs(60), Duration::from_secs(10)),
    ///         StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
    ///     )
    ///     .to("clicked-impressions", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let (imp, clk) = (
    ///     driver.create_input_topic("impressions", Serdes::string(), Serdes::string()),
    ///     driver.create_input_topic("clicks", Serdes::string(), Serdes::string()),
    /// );
    /// let out = driver.create_output_topic("clicked-impressions", Serdes::string(), Serdes::string());
    /// imp.pipe_input_at("u1".into(), "ad-7".into(), 1_000).unwrap();
    /// clk.pipe_input_at("u1".into(), "t=30s".into(), 30_000).unwrap();
    /// assert_eq!(out.read_key_value().unwrap(), Some(("u1".into(), "ad-7 clicked at t=30s".into())));
    /// ```
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: StreamJoiner<V, V2, VR> = Arc::new(move |a, b| match (a, b) {
            (Some(a), Some(b)) => Some(joiner(a, b)),
            _ => None,
        });
        join_streams(self, other, windows, JoinKind::Inner, joiner, joined)
    }

    /// Like [`join`](Self::join), and each record of this stream that found no partner by the
    /// time its window closed yields `joiner(value, None)`, once, at that moment (never early).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream::<String, i64>("orders", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let payments = builder.stream::<String, i64>("payments", Consumed::with(Serdes::string(), Serdes::i64()));
    /// orders
    ///     .left_join(
    ///         &payments,
    ///         |order, payment| format!("{order}: {}", payment.map_or("unpaid".into(), |p| format!("paid {p}"))),
    ///         JoinWindows::of_time_difference_without_grace(Duration::from_secs(5)),
    ///         StreamJoined::with(Serdes::string(), Serdes::i64(), Serdes::i64()),
    ///     )
    ///     .to("order-status", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let o = driver.create_input_topic("orders", Serdes::string(), Serdes::i64());
    /// let out = driver.create_output_topic("order-status", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("o1".into(), 30, 0).unwrap();
    /// assert!(out.is_empty(), "not before its window closes");
    /// o.pipe_input_at("o2".into(), 50, 5_001).unwrap(); // stream time passes 0 + 5000
    /// assert_eq!(out.read_key_value().unwrap(), Some(("o1".into(), "30: unpaid".into())));
    /// ```
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: StreamJoiner<V, V2, VR> = Arc::new(move |a, b| a.map(|a| joiner(a, b)));
        join_streams(self, other, windows, JoinKind::Left, joiner, joined)
    }

    /// Like [`left_join`](Self::left_join), for records of either stream: an unmatched record of
    /// `other` yields `joiner(None, other value)` when its window closes.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// let builder = StreamsBuilder::new();
    /// let a = builder.stream::<String, String>("sensor-a", Consumed::with(Serdes::string(), Serdes::string()));
    /// let b = builder.stream::<String, String>("sensor-b", Consumed::with(Serdes::string(), Serdes::string()));
    /// a.outer_join(
    ///     &b,
    ///     |x, y| format!("{}|{}", x.map_or("-", |s| s.as_str()), y.map_or("-", |s| s.as_str())),
    ///     JoinWindows::of_time_difference_without_grace(Duration::from_millis(100)),
    ///     StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
    /// )
    /// .to("readings", Produced::with(Serdes::string(), Serdes::string()));
    /// builder.build().unwrap();
    /// ```
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner: StreamJoiner<V, V2, VR> = Arc::new(move |a, b| Some(joiner(a, b)));
        join_streams(self, other, windows, JoinKind::Outer, joiner, joined)
    }

    /// Enriches each record with the row of `table` under its key: `joiner(value, row)`, with
    /// the record's timestamp; records whose key is not in the table yield nothing. Table updates
    /// yield nothing (see [the contract](crate::table_join)). Repartitions this stream first if
    /// its key may have changed.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream::<String, i64>("orders", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let customers = builder.table::<String, String>(
    ///     "customers",
    ///     Consumed::with(Serdes::string(), Serdes::string()),
    ///     Materialized::as_("customers"),
    /// );
    /// orders
    ///     .join_table(&customers, |amount, name| format!("{name}: {amount}"), Joined::with(Serdes::string(), Serdes::i64()))
    ///     .to("enriched", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let c = driver.create_input_topic("customers", Serdes::string(), Serdes::string());
    /// let o = driver.create_input_topic("orders", Serdes::string(), Serdes::i64());
    /// let out = driver.create_output_topic("enriched", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("c1".into(), 10, 1).unwrap(); // no customer yet: nothing
    /// c.pipe_input_at("c1".into(), "Ada".into(), 2).unwrap();
    /// o.pipe_input_at("c1".into(), 25, 3).unwrap();
    /// assert_eq!(out.read_values_to_list().unwrap(), vec!["Ada: 25".to_string()]);
    /// ```
    pub fn join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        let joiner: StreamTableJoiner<V, VT, VR> = Arc::new(move |v, t| t.map(|t| joiner(v, t)));
        join_stream_table(self, table, false, joiner, joined)
    }

    /// Like [`join_table`](Self::join_table), and a record whose key is not in the table yields
    /// `joiner(value, None)`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream::<String, i64>("orders", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let customers = builder.table::<String, String>("customers", Consumed::with(Serdes::string(), Serdes::string()), Materialized::default());
    /// orders
    ///     .left_join_table(
    ///         &customers,
    ///         |amount, name| format!("{}: {amount}", name.map_or("unknown", |n| n.as_str())),
    ///         Joined::default(),
    ///     )
    ///     .to("enriched", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let o = driver.create_input_topic("orders", Serdes::string(), Serdes::i64());
    /// let out = driver.create_output_topic("enriched", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("c9".into(), 10, 1).unwrap();
    /// assert_eq!(out.read_value().unwrap(), Some("unknown: 10".to_string()));
    /// ```
    pub fn left_join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        let joiner: StreamTableJoiner<V, VT, VR> = Arc::new(move |v, t| Some(joiner(v, t)));
        join_stream_table(self, table, true, joiner, joined)
    }

    /// Enriches each record with the row of the global table `table` under
    /// `key_selector(key, value)`: `joiner(value, row)`, with the record's key and timestamp;
    /// records whose selected key is not in the table yield nothing. Every instance holds the
    /// whole table, so neither co-partitioning nor a repartition is needed (see
    /// [the contract](crate::global_table)).
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table::<String, String>(
    ///     "products",
    ///     Consumed::with(Serdes::string(), Serdes::string()),
    ///     Materialized::as_("products"),
    /// );
    /// // Orders keyed by order id, valued by product id.
    /// builder
    ///     .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .join_global(&products, |_order, product| product.clone(), |product, name| format!("{product}={name}"))
    ///     .to("orders-named", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let p = driver.create_input_topic("products", Serdes::string(), Serdes::string());
    /// let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    /// let out = driver.create_output_topic("orders-named", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("o1".into(), "p1".into(), 1).unwrap(); // no product yet: nothing
    /// p.pipe_input_at("p1".into(), "tea".into(), 2).unwrap();
    /// o.pipe_input_at("o2".into(), "p1".into(), 3).unwrap();
    /// assert_eq!(out.read_key_value().unwrap(), Some(("o2".to_string(), "p1=tea".to_string())));
    /// assert_eq!(out.read_key_value().unwrap(), None);
    /// ```
    pub fn join_global<GK: Data, GV: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, &GV) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner: GlobalJoiner<V, GV, VR> = Arc::new(move |v, t| t.map(|t| joiner(v, t)));
        join_global(self, table, false, Arc::new(key_selector), joiner)
    }

    /// Like [`join_global`](Self::join_global), and a record whose selected key is not in the
    /// table yields `joiner(value, None)`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table::<String, String>(
    ///     "products",
    ///     Consumed::with(Serdes::string(), Serdes::string()),
    ///     Materialized::as_("products").in_memory(),
    /// );
    /// builder
    ///     .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .left_join_global(
    ///         &products,
    ///         |_order, product| product.clone(),
    ///         |product, name| format!("{product}={}", name.map_or("?", |n| n.as_str())),
    ///     )
    ///     .to("orders-named", Produced::with(Serdes::string(), Serdes::string()));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let p = driver.create_input_topic("products", Serdes::string(), Serdes::string());
    /// let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    /// let out = driver.create_output_topic("orders-named", Serdes::string(), Serdes::string());
    /// o.pipe_input_at("o1".into(), "p1".into(), 1).unwrap();
    /// p.pipe_input_at("p1".into(), "tea".into(), 2).unwrap();
    /// o.pipe_input_at("o2".into(), "p1".into(), 3).unwrap();
    /// assert_eq!(out.read_values_to_list().unwrap(), vec!["p1=?".to_string(), "p1=tea".to_string()]);
    /// ```
    pub fn left_join_global<GK: Data, GV: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner: GlobalJoiner<V, GV, VR> = Arc::new(move |v, t| Some(joiner(v, t)));
        join_global(self, table, true, Arc::new(key_selector), joiner)
    }
}

/// Builds the branches of a [`KStream::split`].
pub struct BranchedKStream<K, V> {
    split: KStream<K, V>,
    prefix: String,
    branches: Rc<RefCell<Vec<Branch<K, V>>>>,
    default: Rc<RefCell<Option<String>>>,
    result: BTreeMap<String, KStream<K, V>>,
}

/// A branch's name.
#[derive(Debug, Clone, Default)]
pub struct Branched(Option<String>);

impl Branched {
    /// Names the branch (the map key is the split's prefix followed by this name).
    pub fn as_(name: impl Into<String>) -> Self {
        Branched(Some(name.into()))
    }

    /// A branch named by its position.
    pub fn numbered() -> Self {
        Branched(None)
    }
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    fn child(&mut self, branched: Branched) -> String {
        let suffix = branched.0.unwrap_or_else(|| self.result.len().to_string());
        let name = format!("{}{suffix}", self.prefix);
        let kind = NodeKind::Processor {
            add: processor_add::<K, V, K, V, PassThrough<K, V>>(|| PassThrough(PhantomData)),
            changes_key: false,
            stores: Vec::new(),
        };
        let stream: KStream<K, V> = self.split.push(
            name.clone(),
            kind,
            self.split.keys.clone(),
            self.split.values.clone(),
        );
        self.result.insert(name.clone(), stream);
        name
    }

    /// Adds a branch for the records `predicate` accepts (and no earlier branch took).
    pub fn branch(
        mut self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        branched: Branched,
    ) -> Self {
        let child = self.child(branched);
        self.branches
            .borrow_mut()
            .push((Arc::new(predicate), child));
        self
    }

    /// Ends with a branch for every record no predicate took; returns the branches by name.
    pub fn default_branch(mut self, branched: Branched) -> BTreeMap<String, KStream<K, V>> {
        let child = self.child(branched);
        *self.default.borrow_mut() = Some(child);
        self.result
    }

    /// Ends without a default branch (records no predicate takes are dropped).
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        self.result
    }
}
