//! Joins with tables: stream-table (inner, left) and table-table (inner, left, outer).
//!
//! # Stream-table joins
//!
//! Only the stream side triggers: each stream record looks its key up in the table's store
//! and, for an inner join, yields `joiner(value, table value)` if the key is in the table; a
//! left join yields `joiner(value, None)` when it is not. A table update yields nothing, and
//! the lookup sees the table as it is when the stream record is processed (records of both
//! inputs are processed in timestamp order within a task, so the table holds what it held at
//! the stream record's time, up to out-of-order input). A result gets the stream record's
//! timestamp and headers.
//!
//! A stream record with a null key (its serde writes null) cannot be looked up: an inner join
//! drops it, a left join yields `joiner(value, None)` with the null key, as Kafka Streams does
//! since 3.7 (KIP-962). Stream values are passed to the joiner as they are: with an `Option`
//! value type a `None` value reaches it, where Kafka Streams drops null values.
//!
//! The table must be readable at the join: a source table or aggregation already has a store;
//! any other table (after `filter` or `map_values`) is materialized first into a store of its
//! own (`KTABLE-MATERIALIZE-STATE-STORE-…`, with the default value serde if the table's value
//! serde is not known). The stream is repartitioned first (`<name>-repartition` with
//! [`Joined::with_name`](crate::Joined::with_name)) if an operator upstream may have changed its
//! key; the table never is. Stream and table topics must be co-partitioned.
//!
//! # Table-table joins
//!
//! Both sides trigger. An update of one side (a [`Change`] of its new and old value) looks the
//! key up in the other side's store and yields a change of the join result: the joiner applied
//! to the new value and to the old value, each with the other side's current value. An inner
//! join yields nothing while the other side lacks the key; a left join yields a result for every
//! left row, with `None` for a missing right row, and a right update yields nothing while the
//! left row is missing; an outer join yields a result while either side has the key. A change
//! whose new and old results are both absent is not forwarded. The result's timestamp is the
//! larger of the update's and the other row's. Old values are always computed (Kafka Streams'
//! `sendOldValues` on), so downstream aggregations and `to_stream` see exactly what changed.
//!
//! With a named [`Materialized`] the result is kept in a store of that name, and the old value of
//! each change is the one stored before (with a cache: one change per key per commit).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use state_stores::typed::KeyValueStore;
use streams_core::processor::{BoxError, Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;

use crate::aggregate::Materializer;
use crate::change::{Change, ValueAndTimestamp};
use crate::graph::{Graph, NodeKind};
use crate::map_filter::PassThrough;
use crate::options::{Joined, Materialized};
use crate::stream::{processor_add, KStream};
use crate::stream_join::{repartition_for_join, JoinKind};
use crate::table::{table_store_def, KTable};
use crate::Data;

/// `(stream value, table value or None) -> result`, `None` for no result.
pub(crate) type StreamTableJoiner<V, VT, VR> =
    Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;

/// `(left value, right value) -> result`; `None` for no result.
pub(crate) type TableJoiner<V1, V2, VR> =
    Arc<dyn Fn(Option<&V1>, Option<&V2>) -> Option<VR> + Send + Sync>;

fn used_before_init(store: &str) -> BoxError {
    format!("store `{store}` used before init").into()
}

/// Reads a table's store: the key's current value and its timestamp.
struct Lookup<K, V> {
    store_name: String,
    store: Option<KeyValueStore<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> Lookup<K, V> {
    fn new(store_name: String) -> Self {
        Lookup {
            store_name,
            store: None,
        }
    }

    fn init<KO, VO>(&mut self, ctx: &ProcessorContext<'_, KO, VO>) -> ProcessorResult {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn store(&self) -> Result<&KeyValueStore<K, ValueAndTimestamp<V>>, BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| used_before_init(&self.store_name))
    }

    fn get(&self, key: &K) -> ProcessorResult<Option<ValueAndTimestamp<V>>> {
        Ok(self.store()?.get(key)?)
    }

    fn is_null_key(&self, key: &K) -> ProcessorResult<bool> {
        Ok(self.store()?.is_null_key(key))
    }
}

/// The stream side of a stream-table join; see the [module docs](self).
struct StreamTableJoin<K, V, VT, VR> {
    table: Lookup<K, VT>,
    joiner: StreamTableJoiner<V, VT, VR>,
    left: bool,
}

impl<K: Data, V: Data, VT: Data, VR: Data> Processor<K, V, K, VR>
    for StreamTableJoin<K, V, VT, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessorResult {
        self.table.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> ProcessorResult {
        let found = if self.table.is_null_key(&r.key)? {
            if !self.left {
                tracing::debug!(store = %self.table.store_name, "skipping a stream-table join record with a null key");
                ctx.record_dropped_null_key();
                return Ok(());
            }
            None
        } else {
            self.table.get(&r.key)?
        };
        if found.is_none() && !self.left {
            return Ok(());
        }
        match (self.joiner)(&r.value, found.as_ref().map(|f| &f.value)) {
            Some(out) => ctx.forward(Record {
                key: r.key,
                value: out,
                timestamp: r.timestamp,
                headers: r.headers,
            }),
            None => Ok(()),
        }
    }
}

/// Keeps a table's rows in a store of its own and forwards its changes: the changes it forwards
/// carry, as old value, what the store held before.
pub(crate) struct TableMaterialize<K, V> {
    table: Materializer<K, V>,
}

impl<K: Data, V: Data> Processor<K, Change<V>, K, Change<V>> for TableMaterialize<K, V> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> ProcessorResult {
        self.table.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            return Ok(());
        }
        let old = self.table.get(&r.key)?;
        self.table
            .put(r.key, r.value.new_value, old, r.timestamp, r.headers, ctx)
    }

    fn flushed(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}

/// Adds a node that materializes the changes of `parent` into a store named `store`.
pub(crate) fn add_materialize<K: Data, V: Data>(
    g: &mut Graph,
    parent: usize,
    store: String,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
    materialized: &Materialized<K, V>,
) -> usize {
    g.add_store_deferred(table_store_def(
        store.clone(),
        keys,
        values,
        materialized.persistent,
        materialized.caching,
        materialized.logging,
    ));
    let name = g.next_name("KTABLE-MATERIALIZE-");
    let (store_name, cached) = (store.clone(), materialized.caching);
    let kind = NodeKind::Stateful {
        add: processor_add::<K, Change<V>, K, Change<V>, TableMaterialize<K, V>>(move || {
            TableMaterialize {
                table: Materializer::new(store_name.clone(), cached),
            }
        }),
        stores: vec![store],
        repartition: None,
    };
    g.push(name, vec![parent], kind)
}

/// The store a join reads `table` from: its own, or a new one a side node materializes it into.
pub(crate) fn readable_store<K: Data, V: Data>(g: &mut Graph, table: &KTable<K, V>) -> String {
    if let Some(store) = &table.store {
        return store.clone();
    }
    let store = g.next_name("KTABLE-MATERIALIZE-STATE-STORE-");
    add_materialize(
        g,
        table.node,
        store.clone(),
        table.keys.clone().unwrap_or(SerdeSlot::DefaultKey),
        table.values.clone().unwrap_or(SerdeSlot::DefaultValue),
        &Materialized::default(),
    );
    store
}

/// Whether two sides come from one builder; if not, records the error `build` returns.
fn same_graph(g: &mut Graph, this: &Rc<RefCell<Graph>>, other: &Rc<RefCell<Graph>>) -> bool {
    let same = Rc::ptr_eq(this, other);
    if !same {
        g.defer_error(streams_core::StreamsError::topology(
            "join",
            "the two sides come from different StreamsBuilders",
        ));
    }
    same
}

/// Adds a stream-table join; see the [module docs](self).
pub(crate) fn join_stream_table<K: Data, V: Data, VT: Data, VR: Data>(
    stream: &KStream<K, V>,
    table: &KTable<K, VT>,
    left: bool,
    joiner: StreamTableJoiner<V, VT, VR>,
    joined: Joined<K, V>,
) -> KStream<K, VR> {
    let graph = stream.graph.clone();
    let mut g = graph.borrow_mut();
    let keys = joined
        .keys
        .clone()
        .or_else(|| stream.keys.clone())
        .or_else(|| table.keys.clone())
        .unwrap_or(SerdeSlot::DefaultKey);
    let values = joined
        .values
        .clone()
        .or_else(|| stream.values.clone())
        .unwrap_or(SerdeSlot::DefaultValue);
    // With a table of another builder (an error `build` reports) nothing indexes its graph.
    let store = if same_graph(&mut g, &stream.graph, &table.graph) {
        readable_store(&mut g, table)
    } else {
        String::new()
    };
    let input = repartition_for_join(
        &mut g,
        stream.node,
        joined.name.clone(),
        keys.clone(),
        values,
    );
    let name = g.name_or(joined.name, "KSTREAM-JOIN-");
    let stores = if store.is_empty() {
        Vec::new()
    } else {
        vec![store.clone()]
    };
    let make = move || StreamTableJoin {
        table: Lookup::new(store.clone()),
        joiner: joiner.clone(),
        left,
    };
    let table_node = table.node;
    let node = g.push(
        name.clone(),
        vec![input],
        NodeKind::Processor {
            add: processor_add::<K, V, K, VR, StreamTableJoin<K, V, VT, VR>>(make),
            changes_key: false,
            stores: stores.clone(),
        },
    );
    if !stores.is_empty() {
        g.copartition.push((name, vec![node, table_node]));
    }
    drop(g);
    KStream {
        graph,
        node,
        keys: Some(keys),
        values: None,
    }
}

/// One side of a table-table join: its changes joined with the other side's current rows.
struct TableTableJoinSide<K, VT, VO, VR> {
    other: Lookup<K, VO>,
    /// `(this value, other value) -> result`.
    joiner: TableJoiner<VT, VO, VR>,
    /// Whether a missing other row still yields results (this side is outer).
    this_outer: bool,
    /// Whether this side's missing row still yields results (the other side is outer).
    other_outer: bool,
    _types: PhantomData<fn(VT)>,
}

impl<K: Data, VT: Data, VO: Data, VR: Data> Processor<K, Change<VT>, K, Change<VR>>
    for TableTableJoinSide<K, VT, VO, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> ProcessorResult {
        self.other.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Change<VT>>,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
    ) -> ProcessorResult {
        if self.other.is_null_key(&r.key)? {
            return Ok(());
        }
        let other = self.other.get(&r.key)?;
        let other_value = other.as_ref().map(|o| &o.value);
        if other_value.is_none() && !self.this_outer {
            return Ok(());
        }
        let result = |this: Option<&VT>| {
            if this.is_none() && !self.other_outer {
                return None;
            }
            if this.is_none() && other_value.is_none() {
                return None;
            }
            (self.joiner)(this, other_value)
        };
        let change = Change::new(
            result(r.value.new_value.as_ref()),
            result(r.value.old_value.as_ref()),
        );
        if change.new_value.is_none() && change.old_value.is_none() {
            return Ok(());
        }
        let timestamp = other
            .as_ref()
            .map_or(r.timestamp, |o| o.timestamp.max(r.timestamp));
        ctx.forward(Record {
            key: r.key,
            value: change,
            timestamp,
            headers: r.headers,
        })
    }
}

/// Adds a table-table join; see the [module docs](self).
pub(crate) fn join_tables<K: Data, V1: Data, V2: Data, VR: Data>(
    left: &KTable<K, V1>,
    right: &KTable<K, V2>,
    kind: JoinKind,
    joiner: TableJoiner<V1, V2, VR>,
    materialized: Materialized<K, VR>,
) -> KTable<K, VR> {
    let graph = left.graph.clone();
    let mut g = graph.borrow_mut();
    let keys = materialized
        .keys
        .clone()
        .or_else(|| left.keys.clone())
        .or_else(|| right.keys.clone())
        .unwrap_or(SerdeSlot::DefaultKey);
    // With a table of another builder (an error `build` reports) the left table stands in for
    // the right one, so nothing indexes the wrong graph.
    let (left_store, right_store, right_node) = if same_graph(&mut g, &left.graph, &right.graph) {
        (
            readable_store(&mut g, left),
            readable_store(&mut g, right),
            right.node,
        )
    } else {
        (String::new(), String::new(), left.node)
    };
    let stores_of = |s: &str| {
        if s.is_empty() {
            Vec::new()
        } else {
            vec![s.to_owned()]
        }
    };
    let (this_stores, other_stores) = (stores_of(&right_store), stores_of(&left_store));
    let (this_outer, other_outer) = (kind.left_outer(), kind.right_outer());
    let (this_name, other_name, merge_name) = match &materialized.name {
        Some(n) => (
            format!("{n}-join-this"),
            format!("{n}-join-other"),
            format!("{n}-merge"),
        ),
        None => (
            g.next_name("KTABLE-JOINTHIS-"),
            g.next_name("KTABLE-JOINOTHER-"),
            g.next_name("KTABLE-MERGE-"),
        ),
    };
    let this_joiner = joiner.clone();
    let make_this = move || TableTableJoinSide::<K, V1, V2, VR> {
        other: Lookup::new(right_store.clone()),
        joiner: this_joiner.clone(),
        this_outer,
        other_outer,
        _types: PhantomData,
    };
    let make_other = move || TableTableJoinSide::<K, V2, V1, VR> {
        other: Lookup::new(left_store.clone()),
        joiner: {
            let joiner = joiner.clone();
            Arc::new(move |r: Option<&V2>, l: Option<&V1>| joiner(l, r))
        },
        this_outer: other_outer,
        other_outer: this_outer,
        _types: PhantomData,
    };
    let this = g.push(
        this_name,
        vec![left.node],
        NodeKind::Processor {
            add: processor_add::<K, Change<V1>, K, Change<VR>, TableTableJoinSide<K, V1, V2, VR>>(
                make_this,
            ),
            changes_key: false,
            stores: this_stores,
        },
    );
    let other = g.push(
        other_name,
        vec![right_node],
        NodeKind::Processor {
            add: processor_add::<K, Change<V2>, K, Change<VR>, TableTableJoinSide<K, V2, V1, VR>>(
                make_other,
            ),
            changes_key: false,
            stores: other_stores,
        },
    );
    g.copartition.push((merge_name.clone(), vec![this, other]));
    let merge = g.push(
        merge_name,
        vec![this, other],
        NodeKind::Processor {
            add: processor_add::<K, Change<VR>, K, Change<VR>, PassThrough<K, Change<VR>>>(|| {
                PassThrough(PhantomData)
            }),
            changes_key: false,
            stores: Vec::new(),
        },
    );
    let (node, store) = match materialized.name.clone() {
        Some(store) => {
            let values = materialized
                .values
                .clone()
                .unwrap_or(SerdeSlot::DefaultValue);
            let node = add_materialize(
                &mut g,
                merge,
                store.clone(),
                keys.clone(),
                values,
                &materialized,
            );
            (node, Some(store))
        }
        None => (merge, None),
    };
    drop(g);
    KTable {
        graph,
        node,
        keys: Some(keys),
        values: materialized.values,
        store,
    }
}
