//! Foreign-key table joins (inner, left): each row of this table joins the row of the other table
//! whose key a function extracts from its value, as Kafka Streams does it (KIP-213).
//!
//! # How it runs
//!
//! The two tables need not be co-partitioned: the join goes through two internal topics.
//!
//! 1. A change of a left row sends a *subscription* to the row's foreign key on the subscription
//!    topic (`<name>-subscription-registration-repartition`, keyed by the foreign key): the left
//!    key, a 128-bit hash of the new left value, and an instruction. A changed foreign key first
//!    unsubscribes from the old one; a deleted row unsubscribes and asks for its result to be
//!    deleted.
//! 2. On the other table's side, subscriptions are kept in a store keyed by `(foreign key, left
//!    key)` (`<name>-subscription-store`); each is answered at once with the other table's
//!    current row, and every later change of that row is sent to all its subscribers. Answers go
//!    back on the response topic (`<name>-subscription-response-repartition`, keyed by the left
//!    key).
//! 3. On the left side, an answer is joined with the left row as it is now, but only if the hash
//!    it carries is the hash of the left row's current value: an answer to an older version of
//!    the row (the foreign key or value changed since) is stale and dropped, so results never go
//!    back in time.
//!
//! The result is a table, kept in a store (`Materialized`, else a generated name), whose changes
//! carry old values. An inner join has a row for each left row whose foreign row exists; a left
//! join has one for every left row, with `None` while the foreign row is missing. Results are
//! eventually consistent: between a change and its answer the result shows the state before.
//! Each input's co-partitioning with its internal topic is enforced at start (the response topic
//! gets the left table's partition count, the subscription topic the other table's). As in Kafka
//! Streams, both tables' topics must be partitioned by key with Kafka's default partitioner
//! (murmur2, which this library's sinks use too): an answer routed to a task that does not hold
//! its left row finds no current value and is dropped as stale.
//!
//! Differences from Kafka Streams: the wrappers on the internal topics and the value hash (two
//! 64-bit FNV-1a hashes of the serialized value, not murmur3) are this library's own formats, so
//! the topics cannot be shared with a Kafka Streams application; a foreign key is never null
//! (the extractor returns a value).

use std::marker::PhantomData;
use std::sync::Arc;

use state_stores::serdes::{Serde, SerdeError};
use state_stores::typed::KeyValueStore;
use state_stores::Serdes;
use streams_core::processor::{BoxError, Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreKind, Stores};

use crate::change::{Change, ValueAndTimestamp};
use crate::graph::{NodeKind, RepartitionWhen};
use crate::options::{Materialized, TableJoined};
use crate::stream::{plan_repartition, processor_add};
use crate::table::KTable;
use crate::table_join::{add_materialize, readable_store};
use crate::Data;

/// What the other side does with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// Unsubscribe, answer nothing (the left row moved to another foreign key).
    DeleteKeyNoPropagate = 0,
    /// Unsubscribe and answer with no row (the left row was deleted).
    DeleteKeyAndPropagate = 1,
    /// Subscribe and answer, with no row if the foreign row is missing.
    PropagateNullIfNoFkVal = 2,
    /// Subscribe and answer only if the foreign row exists.
    PropagateOnlyIfFkVal = 3,
}

type Hash = [u8; 16];

/// A subscription on the subscription topic.
#[derive(Debug, Clone)]
pub(crate) struct Subscription<K> {
    hash: Option<Hash>,
    instruction: Instruction,
    key: K,
}

/// An answer on the response topic.
#[derive(Debug, Clone)]
pub(crate) struct Response<VO> {
    hash: Option<Hash>,
    value: Option<VO>,
}

/// A subscription store key: the foreign key, then the left key.
#[derive(Debug, Clone)]
pub(crate) struct CombinedKey<KO, K> {
    foreign: KO,
    key: K,
}

fn corrupt(what: &str, len: usize) -> SerdeError {
    SerdeError::Custom(format!("a damaged {what} ({len} bytes)"))
}

fn write_hash(hash: &Option<Hash>, out: &mut Vec<u8>) {
    match hash {
        Some(h) => {
            out.push(1);
            out.extend_from_slice(h);
        }
        None => out.push(0),
    }
}

/// Reads a hash flag (and hash) from the front of `bytes`; returns it and the rest.
fn read_hash<'a>(
    bytes: &'a [u8],
    what: &str,
    len: usize,
) -> Result<(Option<Hash>, &'a [u8]), SerdeError> {
    match bytes.split_first() {
        Some((0, rest)) => Ok((None, rest)),
        Some((1, rest)) if rest.len() >= 16 => {
            let mut h = [0u8; 16];
            h.copy_from_slice(&rest[..16]);
            Ok((Some(h), &rest[16..]))
        }
        _ => Err(corrupt(what, len)),
    }
}

/// Version byte, instruction byte, hash, left key.
pub(crate) struct SubscriptionSerde<K>(Arc<dyn Serde<K>>);

impl<K: 'static> Serde<Subscription<K>> for SubscriptionSerde<K> {
    fn serialize_into(&self, s: &Subscription<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(0);
        out.push(s.instruction as u8);
        write_hash(&s.hash, out);
        self.0.serialize_into(&s.key, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Subscription<K>, SerdeError> {
        let what = "foreign-key join subscription";
        let (instruction, rest) = match bytes {
            [0, i, rest @ ..] => (*i, rest),
            _ => return Err(corrupt(what, bytes.len())),
        };
        let instruction = match instruction {
            0 => Instruction::DeleteKeyNoPropagate,
            1 => Instruction::DeleteKeyAndPropagate,
            2 => Instruction::PropagateNullIfNoFkVal,
            3 => Instruction::PropagateOnlyIfFkVal,
            _ => return Err(corrupt(what, bytes.len())),
        };
        let (hash, rest) = read_hash(rest, what, bytes.len())?;
        Ok(Subscription {
            hash,
            instruction,
            key: self.0.deserialize(rest)?,
        })
    }
}

/// Version byte, hash, value flag, value.
pub(crate) struct ResponseSerde<VO>(Arc<dyn Serde<VO>>);

impl<VO: 'static> Serde<Response<VO>> for ResponseSerde<VO> {
    fn serialize_into(&self, r: &Response<VO>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.push(0);
        write_hash(&r.hash, out);
        match &r.value {
            Some(v) => {
                out.push(1);
                self.0.serialize_into(v, out)
            }
            None => {
                out.push(0);
                Ok(())
            }
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Response<VO>, SerdeError> {
        let what = "foreign-key join response";
        let rest = match bytes.split_first() {
            Some((0, rest)) => rest,
            _ => return Err(corrupt(what, bytes.len())),
        };
        let (hash, rest) = read_hash(rest, what, bytes.len())?;
        let value = match rest.split_first() {
            Some((0, [])) => None,
            Some((1, v)) => Some(self.0.deserialize(v)?),
            _ => return Err(corrupt(what, bytes.len())),
        };
        Ok(Response { hash, value })
    }
}

/// The foreign key's length (4 bytes, big-endian), the foreign key, the left key: all
/// subscriptions to one foreign key share a prefix.
pub(crate) struct CombinedKeySerde<KO, K>(Arc<dyn Serde<KO>>, Arc<dyn Serde<K>>);

fn prefix_of(foreign: &[u8]) -> Result<Vec<u8>, SerdeError> {
    let len = u32::try_from(foreign.len())
        .map_err(|_| SerdeError::Custom("a foreign key over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(4 + foreign.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(foreign);
    Ok(out)
}

impl<KO: 'static, K: 'static> Serde<CombinedKey<KO, K>> for CombinedKeySerde<KO, K> {
    fn serialize_into(&self, k: &CombinedKey<KO, K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&prefix_of(&self.0.serialize(&k.foreign)?)?);
        self.1.serialize_into(&k.key, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<CombinedKey<KO, K>, SerdeError> {
        let len: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("subscription key", bytes.len()))?;
        let len = u32::from_be_bytes(len) as usize;
        let foreign = bytes
            .get(4..4 + len)
            .ok_or_else(|| corrupt("subscription key", bytes.len()))?;
        Ok(CombinedKey {
            foreign: self.0.deserialize(foreign)?,
            key: self.1.deserialize(&bytes[4 + len..])?,
        })
    }
}

/// Two FNV-1a 64-bit hashes of `bytes` with different offset bases.
fn hash128(bytes: &[u8]) -> Hash {
    let fnv = |basis: u64| {
        bytes.iter().fold(basis, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    out[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    out
}

fn used_before_init(store: &str) -> BoxError {
    format!("store `{store}` used before init").into()
}

/// A table store, typed, opened at init.
struct TableStore<K, V> {
    name: String,
    store: Option<KeyValueStore<K, ValueAndTimestamp<V>>>,
}

impl<K: Data, V: Data> TableStore<K, V> {
    fn new(name: String) -> Self {
        TableStore { name, store: None }
    }

    fn init<KO, VO>(&mut self, ctx: &ProcessorContext<'_, KO, VO>) -> ProcessorResult {
        self.store = Some(ctx.key_value_store(&self.name)?);
        Ok(())
    }

    fn get(&self) -> Result<&KeyValueStore<K, ValueAndTimestamp<V>>, BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| used_before_init(&self.name))
    }

    /// The hash of `value` as the store serializes it.
    fn hash(&self, value: &V) -> ProcessorResult<Hash> {
        let bytes = self.get()?.value_bytes(&ValueAndTimestamp {
            value: value.clone(),
            timestamp: 0,
        })?;
        Ok(hash128(&bytes))
    }
}

/// Left side: turns left-row changes into subscriptions.
struct SubscriptionSend<K, V, KO> {
    left: TableStore<K, V>,
    foreign_key: Arc<dyn Fn(&V) -> KO + Send + Sync>,
    left_join: bool,
}

impl<K: Data, V: Data, KO: Data + PartialEq> Processor<K, Change<V>, KO, Subscription<K>>
    for SubscriptionSend<K, V, KO>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KO, Subscription<K>>) -> ProcessorResult {
        self.left.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Change<V>>,
        ctx: &mut ProcessorContext<'_, KO, Subscription<K>>,
    ) -> ProcessorResult {
        let new_fk = r.value.new_value.as_ref().map(|v| (self.foreign_key)(v));
        let old_fk = r.value.old_value.as_ref().map(|v| (self.foreign_key)(v));
        let mut send = |foreign: KO, hash: Option<Hash>, instruction: Instruction| {
            ctx.forward(Record {
                key: foreign,
                value: Subscription {
                    hash,
                    instruction,
                    key: r.key.clone(),
                },
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })
        };
        match (&r.value.new_value, new_fk) {
            (Some(v), Some(new_fk)) => {
                let hash = Some(self.left.hash(v)?);
                let moved = old_fk.as_ref().is_some_and(|old| *old != new_fk);
                if let Some(old) = old_fk.filter(|_| moved) {
                    send(old, hash, Instruction::DeleteKeyNoPropagate)?;
                }
                let instruction = if moved || self.left_join {
                    Instruction::PropagateNullIfNoFkVal
                } else {
                    Instruction::PropagateOnlyIfFkVal
                };
                send(new_fk, hash, instruction)
            }
            _ => match old_fk {
                Some(old) => send(old, None, Instruction::DeleteKeyAndPropagate),
                None => Ok(()),
            },
        }
    }
}

/// Other side: keeps subscriptions and answers them with the foreign row.
struct SubscriptionJoin<KO, K, VO> {
    subscriptions_name: String,
    subscriptions: Option<KeyValueStore<CombinedKey<KO, K>, Vec<u8>>>,
    foreign: TableStore<KO, VO>,
}

impl<KO: Data, K: Data, VO: Data> Processor<KO, Subscription<K>, K, Response<VO>>
    for SubscriptionJoin<KO, K, VO>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>) -> ProcessorResult {
        self.subscriptions = Some(ctx.key_value_store(&self.subscriptions_name)?);
        self.foreign.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<KO, Subscription<K>>,
        ctx: &mut ProcessorContext<'_, K, Response<VO>>,
    ) -> ProcessorResult {
        let subscriptions = self
            .subscriptions
            .as_ref()
            .ok_or_else(|| used_before_init(&self.subscriptions_name))?;
        let s = r.value;
        let combined = CombinedKey {
            foreign: r.key.clone(),
            key: s.key.clone(),
        };
        match s.instruction {
            Instruction::DeleteKeyNoPropagate | Instruction::DeleteKeyAndPropagate => {
                subscriptions.delete(&combined)?;
            }
            _ => subscriptions.put(&combined, &s.hash.map(|h| h.to_vec()).unwrap_or_default())?,
        }
        let foreign = self.foreign.get()?.get(&r.key)?;
        let timestamp = foreign
            .as_ref()
            .map_or(r.timestamp, |f| f.timestamp.max(r.timestamp));
        let value = match s.instruction {
            Instruction::DeleteKeyNoPropagate => return Ok(()),
            Instruction::DeleteKeyAndPropagate => None,
            Instruction::PropagateNullIfNoFkVal => foreign.map(|f| f.value),
            Instruction::PropagateOnlyIfFkVal => match foreign {
                Some(f) => Some(f.value),
                None => return Ok(()),
            },
        };
        ctx.forward(Record {
            key: s.key,
            value: Response {
                hash: s.hash,
                value,
            },
            timestamp,
            headers: r.headers,
        })
    }
}

/// Other side: sends each change of a foreign row to its subscribers.
struct ForeignChange<KO, K, VO> {
    subscriptions_name: String,
    subscriptions: Option<KeyValueStore<CombinedKey<KO, K>, Vec<u8>>>,
    foreign: TableStore<KO, VO>,
}

impl<KO: Data, K: Data, VO: Data> Processor<KO, Change<VO>, K, Response<VO>>
    for ForeignChange<KO, K, VO>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>) -> ProcessorResult {
        self.subscriptions = Some(ctx.key_value_store(&self.subscriptions_name)?);
        self.foreign.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<KO, Change<VO>>,
        ctx: &mut ProcessorContext<'_, K, Response<VO>>,
    ) -> ProcessorResult {
        if r.value.new_value.is_none() && r.value.old_value.is_none() {
            return Ok(());
        }
        let subscriptions = self
            .subscriptions
            .as_ref()
            .ok_or_else(|| used_before_init(&self.subscriptions_name))?;
        let prefix = prefix_of(&self.foreign.get()?.key_bytes(&r.key)?)?;
        for (combined, hash) in subscriptions.prefix_scan(&prefix)? {
            let hash = <Hash>::try_from(hash.as_slice()).ok();
            ctx.forward(Record {
                key: combined.key,
                value: Response {
                    hash,
                    value: r.value.new_value.clone(),
                },
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })?;
        }
        Ok(())
    }
}

/// `(left value, foreign value or None) -> result`, `None` for no row.
type FkJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync>;

/// Left side: joins answers that are still current with the left row.
struct ResponseJoin<K, V, VO, VR> {
    left: TableStore<K, V>,
    joiner: FkJoiner<V, VO, VR>,
    _types: PhantomData<fn(VO)>,
}

impl<K: Data, V: Data, VO: Data, VR: Data> Processor<K, Response<VO>, K, Change<VR>>
    for ResponseJoin<K, V, VO, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> ProcessorResult {
        self.left.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, Response<VO>>,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
    ) -> ProcessorResult {
        let current = self.left.get()?.get(&r.key)?;
        let current_hash = match &current {
            Some(c) => Some(self.left.hash(&c.value)?),
            None => None,
        };
        if current_hash != r.value.hash {
            tracing::debug!(store = %self.left.name, "dropping a stale foreign-key join response");
            return Ok(());
        }
        let result = current
            .as_ref()
            .and_then(|c| (self.joiner)(&c.value, r.value.value.as_ref()));
        ctx.forward(Record {
            key: r.key,
            value: Change::new(result, None),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Adds a foreign-key join; see the [module docs](self).
pub(crate) fn join_on_foreign_key<K: Data, V: Data, KO: Data + PartialEq, VO: Data, VR: Data>(
    left: &KTable<K, V>,
    right: &KTable<KO, VO>,
    foreign_key: Arc<dyn Fn(&V) -> KO + Send + Sync>,
    joiner: FkJoiner<V, VO, VR>,
    left_join: bool,
    options: TableJoined<KO>,
    materialized: Materialized<K, VR>,
) -> KTable<K, VR> {
    let graph = left.graph.clone();
    let mut g = graph.borrow_mut();
    if !std::rc::Rc::ptr_eq(&left.graph, &right.graph) {
        g.defer_error(streams_core::StreamsError::topology(
            "join_on_foreign_key",
            "the two tables come from different StreamsBuilders",
        ));
        drop(g);
        return KTable {
            graph,
            node: left.node,
            keys: None,
            values: None,
            store: None,
        };
    }
    let keys = left.keys.clone().unwrap_or(SerdeSlot::DefaultKey);
    let foreign_keys = options
        .foreign_keys
        .clone()
        .or_else(|| right.keys.clone())
        .unwrap_or(SerdeSlot::DefaultKey);
    let foreign_values = right.values.clone().unwrap_or(SerdeSlot::DefaultValue);
    let left_store = readable_store(&mut g, left);
    let right_store = readable_store(&mut g, right);
    let base = match &options.name {
        Some(n) => n.clone(),
        None => g.next_name("KTABLE-FK-JOIN-"),
    };
    let subscriptions = format!("{base}-subscription-store");
    g.add_store_deferred(Stores::with_slots(
        subscriptions.clone(),
        StoreKind::KeyValue,
        {
            let (fk, k) = (foreign_keys.clone(), keys.clone());
            SerdeSlot::Derived(Arc::new(move |defaults, owner| {
                let serde: Arc<dyn Serde<CombinedKey<KO, K>>> = Arc::new(CombinedKeySerde(
                    fk.resolve(defaults, owner)?,
                    k.resolve(defaults, owner)?,
                ));
                Ok(serde)
            }))
        },
        SerdeSlot::explicit(Serdes::bytes()),
    ));

    // Left side: subscriptions out.
    let send = {
        let (store, fk) = (left_store.clone(), foreign_key.clone());
        g.push(
            format!("{base}-subscription-send"),
            vec![left.node],
            NodeKind::Processor {
                add: processor_add::<K, Change<V>, KO, Subscription<K>, SubscriptionSend<K, V, KO>>(
                    move || SubscriptionSend {
                        left: TableStore::new(store.clone()),
                        foreign_key: fk.clone(),
                        left_join,
                    },
                ),
                changes_key: true,
                stores: vec![left_store.clone()],
            },
        )
    };

    // Other side: subscriptions in, answers out.
    let subscription_plan = plan_repartition(
        &mut g,
        Some(format!("{base}-subscription-registration")),
        |_| String::new(),
        foreign_keys.clone(),
        keys.derive(|k| Arc::new(SubscriptionSerde(k))),
        None,
    );
    let join = {
        let (subs, store) = (subscriptions.clone(), right_store.clone());
        g.push(
            format!("{base}-subscription-join"),
            vec![send],
            NodeKind::Stateful {
                add: processor_add::<
                    KO,
                    Subscription<K>,
                    K,
                    Response<VO>,
                    SubscriptionJoin<KO, K, VO>,
                >(move || SubscriptionJoin {
                    subscriptions_name: subs.clone(),
                    subscriptions: None,
                    foreign: TableStore::new(store.clone()),
                }),
                stores: vec![subscriptions.clone(), right_store.clone()],
                repartition: Some((RepartitionWhen::Always, subscription_plan)),
            },
        )
    };
    let changes = {
        let (subs, store) = (subscriptions.clone(), right_store.clone());
        g.push(
            format!("{base}-foreign-changes"),
            vec![right.node],
            NodeKind::Processor {
                add: processor_add::<KO, Change<VO>, K, Response<VO>, ForeignChange<KO, K, VO>>(
                    move || ForeignChange {
                        subscriptions_name: subs.clone(),
                        subscriptions: None,
                        foreign: TableStore::new(store.clone()),
                    },
                ),
                changes_key: true,
                stores: vec![subscriptions.clone(), right_store.clone()],
            },
        )
    };
    g.copartition
        .push((format!("{base}-subscription-join"), vec![join, right.node]));

    // Left side: answers in, results out.
    let response_plan = plan_repartition(
        &mut g,
        Some(format!("{base}-subscription-response")),
        |_| String::new(),
        keys.clone(),
        foreign_values.derive(|v| Arc::new(ResponseSerde(v))),
        None,
    );
    let respond = {
        let store = left_store.clone();
        g.push(
            format!("{base}-response-join"),
            vec![join, changes],
            NodeKind::Stateful {
                add: processor_add::<K, Response<VO>, K, Change<VR>, ResponseJoin<K, V, VO, VR>>(
                    move || ResponseJoin {
                        left: TableStore::new(store.clone()),
                        joiner: joiner.clone(),
                        _types: PhantomData,
                    },
                ),
                stores: vec![left_store.clone()],
                repartition: Some((RepartitionWhen::Always, response_plan)),
            },
        )
    };
    g.copartition
        .push((format!("{base}-response-join"), vec![respond, left.node]));

    // The result table, materialized so its changes carry old values.
    let store = materialized
        .name
        .clone()
        .unwrap_or_else(|| format!("{base}-output-store"));
    let values = materialized
        .values
        .clone()
        .unwrap_or(SerdeSlot::DefaultValue);
    let node = add_materialize(
        &mut g,
        respond,
        store.clone(),
        keys.clone(),
        values.clone(),
        &materialized,
    );
    drop(g);
    KTable {
        graph,
        node,
        keys: Some(keys),
        values: Some(values),
        store: Some(store),
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// Joins each row with the row of `other` under the foreign key `foreign_key(value)`
    /// extracts: a result row `joiner(value, other value)` wherever that row exists, kept up to
    /// date as either side changes. The tables need not be co-partitioned; see
    /// [`crate::foreign_key_join`].
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let c = || Consumed::with(Serdes::string(), Serdes::string());
    /// // order id -> "customer id:amount"; customer id -> name
    /// let orders = builder.table::<String, String>("orders", c(), Materialized::default());
    /// let customers = builder.table::<String, String>("customers", c(), Materialized::default());
    /// orders
    ///     .join_on_foreign_key(
    ///         &customers,
    ///         |order| order.split(':').next().unwrap_or_default().to_owned(),
    ///         |order, name| format!("{order} by {name}"),
    ///         TableJoined::as_("orders-by-customer"),
    ///         Materialized::with(Serdes::string(), Serdes::string()),
    ///     )
    ///     .to_stream()
    ///     .to("named-orders", Produced::with(Serdes::string(), Serdes::option(Serdes::string())));
    /// let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("doc")).unwrap();
    /// let (o, cu) = (driver.create_input_topic("orders", Serdes::string(), Serdes::string()),
    ///                driver.create_input_topic("customers", Serdes::string(), Serdes::string()));
    /// let out = driver.create_output_topic("named-orders", Serdes::string(), Serdes::option(Serdes::string()));
    /// cu.pipe_input_at("c1".into(), "Ada".into(), 1).unwrap();
    /// o.pipe_input_at("o1".into(), "c1:30".into(), 2).unwrap();
    /// assert_eq!(out.read_key_value().unwrap(), Some(("o1".into(), Some("c1:30 by Ada".into()))));
    /// ```
    pub fn join_on_foreign_key<KO: Data + PartialEq, VO: Data, VR: Data>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        options: TableJoined<KO>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner: FkJoiner<V, VO, VR> = Arc::new(move |v, o| o.map(|o| joiner(v, o)));
        join_on_foreign_key(
            self,
            other,
            Arc::new(foreign_key),
            joiner,
            false,
            options,
            materialized,
        )
    }

    /// Like [`join_on_foreign_key`](Self::join_on_foreign_key), with a result row for every row
    /// of this table: `joiner(value, None)` while the foreign row is missing.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// let builder = StreamsBuilder::new();
    /// let c = || Consumed::with(Serdes::string(), Serdes::string());
    /// let orders = builder.table::<String, String>("orders", c(), Materialized::default());
    /// let customers = builder.table::<String, String>("customers", c(), Materialized::default());
    /// let named = orders.left_join_on_foreign_key(
    ///     &customers,
    ///     |order| order.split(':').next().unwrap_or_default().to_owned(),
    ///     |order, name| format!("{order} by {}", name.map_or("?", |n| n.as_str())),
    ///     TableJoined::default(),
    ///     Materialized::as_("named-orders").with_value_serde(Serdes::string()),
    /// );
    /// assert_eq!(named.queryable_store_name(), Some("named-orders"));
    /// ```
    pub fn left_join_on_foreign_key<KO: Data + PartialEq, VO: Data, VR: Data>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        options: TableJoined<KO>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner: FkJoiner<V, VO, VR> = Arc::new(move |v, o| Some(joiner(v, o)));
        join_on_foreign_key(
            self,
            other,
            Arc::new(foreign_key),
            joiner,
            true,
            options,
            materialized,
        )
    }
}

/// Arbitrary and damaged bytes for the foreign-key join's serdes (`KSTREAMS_FUZZ_CASES`, see
/// `crate::fuzz`): a value, a typed error, never a panic, never garbage read as a value.
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::{apply, bytes, check_canonical, check_round_trip, config, damage};
    use proptest::prelude::*;
    use state_stores::Serdes;

    fn subscriptions() -> SubscriptionSerde<String> {
        SubscriptionSerde(Arc::new(Serdes::string()))
    }

    fn responses() -> ResponseSerde<String> {
        ResponseSerde(Arc::new(Serdes::string()))
    }

    fn combined() -> CombinedKeySerde<String, String> {
        CombinedKeySerde(Arc::new(Serdes::string()), Arc::new(Serdes::string()))
    }

    fn instruction() -> impl Strategy<Value = Instruction> {
        prop_oneof![
            Just(Instruction::DeleteKeyNoPropagate),
            Just(Instruction::DeleteKeyAndPropagate),
            Just(Instruction::PropagateNullIfNoFkVal),
            Just(Instruction::PropagateOnlyIfFkVal),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn join_serdes_take_arbitrary_bytes(input in bytes(40)) {
            check_canonical("Subscription", &subscriptions(), &input)?;
            check_canonical("Response", &responses(), &input)?;
            check_canonical("CombinedKey", &combined(), &input)?;
        }

        #[test]
        fn join_serdes_take_damaged_encodings(
            hash in proptest::option::of(any::<[u8; 16]>()),
            instruction in instruction(),
            key in ".{0,8}",
            foreign in ".{0,8}",
            value in proptest::option::of(".{0,8}"),
            damage in damage(),
        ) {
            let s = Subscription { hash, instruction, key: key.clone() };
            let s = check_round_trip("Subscription", &subscriptions(), &s)?;
            check_canonical("Subscription", &subscriptions(), &apply(&s, &damage))?;
            let r = check_round_trip("Response", &responses(), &Response { hash, value })?;
            check_canonical("Response", &responses(), &apply(&r, &damage))?;
            let c = check_round_trip("CombinedKey", &combined(), &CombinedKey { foreign, key })?;
            check_canonical("CombinedKey", &combined(), &apply(&c, &damage))?;
        }
    }

    /// Regression: a response without a value ignored whatever followed its value flag, so a
    /// damaged response read as a valid "no row".
    #[test]
    fn bytes_after_an_empty_response_are_an_error() {
        let good = responses()
            .serialize(&Response {
                hash: None,
                value: None,
            })
            .unwrap();
        let mut bad = good.clone();
        bad.extend_from_slice(b"junk");
        assert!(responses().deserialize(&good).is_ok());
        let err = responses().deserialize(&bad).unwrap_err();
        assert!(
            err.to_string().contains("foreign-key join response"),
            "{err}"
        );
    }

    /// A subscription key whose foreign-key length points past the end is an error.
    #[test]
    fn a_foreign_key_length_past_the_end_is_an_error() {
        let err = combined()
            .deserialize(&[0xff, 0xff, 0xff, 0xff, b'a'])
            .unwrap_err();
        assert!(err.to_string().contains("subscription key"), "{err}");
    }
}
