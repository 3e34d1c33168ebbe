//! Global tables and the stream-global-table join.
//!
//! # Global tables
//!
//! A [`GlobalKTable`] ([`StreamsBuilder::global_table`](crate::StreamsBuilder::global_table))
//! holds every partition of its topic on every instance, in a key-value store (RocksDB, or in
//! memory with [`Materialized::in_memory`](crate::Materialized)): the latest value per key, a
//! null value deleting the key, records with a null key skipped. The store holds the topic's key
//! and value bytes as they are, so its serdes are those of the [`Consumed`](crate::Consumed)
//! (or the `Materialized`, if it names serdes: they must read the topic's bytes). The topic is
//! the store's changelog: the store logs nothing and caches nothing. Each instance restores the
//! store from the whole topic before its stream threads process anything, and one global thread
//! per instance keeps it up to date afterwards (see `streams_core::runtime::global`), so a join
//! sees the table as the global thread has read it so far, not as of the stream record's time.
//!
//! # Stream-global-table joins
//!
//! Only the stream side triggers: each stream record maps to a table key with
//! `key_selector(key, value)` and looks it up. An inner join ([`KStream::join_global`]) yields
//! `joiner(value, row)` if the key is in the table and nothing otherwise; a left join
//! ([`KStream::left_join_global`]) yields `joiner(value, None)` when it is not. A selected key
//! that serializes as null matches nothing (an inner join drops the record, a left join yields
//! `joiner(value, None)`, as Kafka Streams does since 3.7). Stream values reach the selector and
//! the joiner as they are, as in stream-table joins. The result keeps the stream record's key,
//! timestamp and headers. Since every instance has the whole table, the stream needs neither
//! co-partitioning with the table's topic nor a repartition after a key change.

use std::marker::PhantomData;
use std::sync::Arc;

use state_stores::typed::KeyValueStore;
use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreKind, Stores};

use crate::graph::{Graph, NodeKind};
use crate::options::Materialized;
use crate::stream::{processor_add, KStream};
use crate::Data;

/// `(stream key, stream value) -> table key`.
pub(crate) type GlobalKeySelector<K, V, GK> = Arc<dyn Fn(&K, &V) -> GK + Send + Sync>;
/// `(stream value, table value or None) -> result`, `None` for no result.
pub(crate) type GlobalJoiner<V, GV, VR> = Arc<dyn Fn(&V, Option<&GV>) -> Option<VR> + Send + Sync>;

/// A table replicated in full to every instance; see the [module docs](self).
pub struct GlobalKTable<K, V> {
    pub(crate) graph: std::rc::Rc<std::cell::RefCell<Graph>>,
    pub(crate) store: String,
    pub(crate) _types: PhantomData<fn(K, V)>,
}

impl<K, V> Clone for GlobalKTable<K, V> {
    fn clone(&self) -> Self {
        GlobalKTable {
            graph: self.graph.clone(),
            store: self.store.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKTable")
            .field("store", &self.store)
            .finish()
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of the store holding the table.
    pub fn queryable_store_name(&self) -> &str {
        &self.store
    }
}

/// Adds a global table reading `topic` into the store `store`.
pub(crate) fn add_global_table<K: Data, V: Data>(
    graph: &std::rc::Rc<std::cell::RefCell<Graph>>,
    topic: &str,
    name: Option<String>,
    store: Option<String>,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
    materialized: &Materialized<K, V>,
) -> GlobalKTable<K, V> {
    let mut g = graph.borrow_mut();
    let name = g.name_or(name, "KTABLE-SOURCE-");
    let store = store.unwrap_or_else(|| g.next_name("GLOBALKTABLE-STATE-STORE-"));
    let mut def = Stores::with_slots(store.clone(), StoreKind::KeyValue, keys, values)
        .without_logging()
        .without_caching();
    if !materialized.persistent {
        def = def.in_memory();
    }
    g.add_store_deferred(def);
    g.push(
        name,
        Vec::new(),
        NodeKind::GlobalTable {
            topic: topic.to_owned(),
            store: store.clone(),
        },
    );
    GlobalKTable {
        graph: graph.clone(),
        store,
        _types: PhantomData,
    }
}

/// The stream side of a stream-global-table join; see the [module docs](self).
struct GlobalJoin<K, V, GK, GV, VR> {
    store_name: String,
    store: Option<KeyValueStore<GK, GV>>,
    key_selector: GlobalKeySelector<K, V, GK>,
    joiner: GlobalJoiner<V, GV, VR>,
    left: bool,
}

impl<K: Data, V: Data, GK: Data, GV: Data, VR: Data> Processor<K, V, K, VR>
    for GlobalJoin<K, V, GK, GV, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessorResult {
        self.store = Some(ctx.key_value_store(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> ProcessorResult {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| format!("global store `{}` used before init", self.store_name))?;
        let key = (self.key_selector)(&r.key, &r.value);
        let found = if store.is_null_key(&key) {
            None
        } else {
            store.get(&key)?
        };
        if found.is_none() && !self.left {
            return Ok(());
        }
        match (self.joiner)(&r.value, found.as_ref()) {
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

/// Adds a stream-global-table join; see the [module docs](self).
pub(crate) fn join_global<K: Data, V: Data, GK: Data, GV: Data, VR: Data>(
    stream: &KStream<K, V>,
    table: &GlobalKTable<GK, GV>,
    left: bool,
    key_selector: GlobalKeySelector<K, V, GK>,
    joiner: GlobalJoiner<V, GV, VR>,
) -> KStream<K, VR> {
    let graph = stream.graph.clone();
    let mut g = graph.borrow_mut();
    if !std::rc::Rc::ptr_eq(&stream.graph, &table.graph) {
        g.defer_error(streams_core::StreamsError::topology(
            &table.store,
            "the stream and the global table come from different StreamsBuilders",
        ));
    }
    let name = g.next_name(if left {
        "KSTREAM-LEFTJOIN-GLOBAL-"
    } else {
        "KSTREAM-JOIN-GLOBAL-"
    });
    let store = table.store.clone();
    let make = move || GlobalJoin {
        store_name: store.clone(),
        store: None,
        key_selector: key_selector.clone(),
        joiner: joiner.clone(),
        left,
    };
    let node = g.push(
        name,
        vec![stream.node],
        NodeKind::Processor {
            add: processor_add::<K, V, K, VR, GlobalJoin<K, V, GK, GV, VR>>(make),
            changes_key: false,
            stores: vec![table.store.clone()],
        },
    );
    drop(g);
    KStream {
        graph,
        node,
        keys: stream.keys.clone(),
        values: None,
    }
}
