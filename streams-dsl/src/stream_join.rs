//! Stream-stream joins: inner, left and outer, within [`JoinWindows`].
//!
//! # Contract
//!
//! A left record at `t` joins every right record with the same key whose timestamp lies in
//! `[t - before, t + after]`, whichever arrives first; each pair is joined once, when its second
//! record arrives, and the result gets the larger of the two timestamps. Each side keeps its
//! records in a window store (`…-this-join-store`, `…-other-join-store`) for `before + after +
//! grace` after their timestamp, so a pair joins however its records are ordered as long as
//! neither is late. Results of one record come in the order of the partners' timestamps, and in
//! arrival order among partners with the same timestamp.
//!
//! Time is the task's stream time, never lower than the join's own persisted stream time (the
//! windowed aggregations' clock, in `…-time`). A record is late when its own window has closed
//! on arrival: `t + after + grace < stream time` for a left record, `t + before + grace < stream
//! time` for a right one. A late record is dropped (counted in `dropped_late`, logged at debug
//! level): it joins nothing and is not stored.
//!
//! Left and outer joins emit a record that found no partner (`joiner(v, None)`) only once its
//! window has closed, never early (the fix Kafka Streams made in 3.1): until then it waits in a
//! shared store (`…-outer-shared-join-store`) and a partner arriving meanwhile takes it out.
//! Closed records are emitted before the record that closed them is joined, in the order of
//! their timestamps (right before left at equal timestamps, then by key bytes), each with its
//! own timestamp.
//!
//! Keys: a record whose key is null (serializes as null) cannot join. An inner join drops it; on
//! the outer side of a left or outer join it is emitted at once with no partner, keeping its null
//! key, as Kafka Streams does since 3.7 (KIP-962).
//!
//! # Where this differs from Kafka Streams
//!
//! - Late records: Kafka Streams has no lateness check in the join itself; its window stores
//!   drop writes to expired segments and stop returning expired ones, at segment granularity, so
//!   whether a late record joins depends on segment boundaries, and an unmatched late record of
//!   a left or outer join is emitted at once. Here lateness is exact, per record, as the
//!   documentation of the grace period describes it.
//! - An unmatched record whose window end (`t + after` for left records) is already behind stream
//!   time but within the grace period waits for the grace period to pass; Kafka Streams emits it
//!   at once, and a partner that arrives within the grace period then yields a second result.
//! - Closed unmatched records are looked for on every record (a range read of the shared store,
//!   skipped while none can have closed), not at most once per second of wall-clock time.

use std::marker::PhantomData;
use std::sync::Arc;

use state_stores::serdes::{Serde, SerdeError};
use state_stores::typed::{KeyValueStore, WindowStore};
use streams_core::processor::{BoxError, Processor, ProcessorContext, ProcessorResult};
use streams_core::record::{Headers, Record};
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreDef, StoreKind, Stores};

use state_stores::caching::EmitMode;
use state_stores::Serdes;

use crate::graph::{Graph, NodeKind};
use crate::options::StreamJoined;
use crate::stream::{plan_repartition, processor_add, KStream};
use crate::window_aggregate::WindowClock;
use crate::windows::JoinWindows;
use crate::Data;

/// Which records produce a result without a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Outer,
}

impl JoinKind {
    /// Whether unmatched left records produce results.
    pub(crate) fn left_outer(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Outer)
    }

    /// Whether unmatched right records produce results.
    pub(crate) fn right_outer(self) -> bool {
        self == JoinKind::Outer
    }
}

/// `(left value, right value) -> result`; either value is `None` only on an outer side, and a
/// joiner returns `None` for a combination its kind of join does not produce.
pub(crate) type StreamJoiner<V1, V2, VR> =
    Arc<dyn Fn(Option<&V1>, Option<&V2>) -> Option<VR> + Send + Sync>;

/// A record of either input on its way into the join processor.
#[derive(Debug, Clone)]
pub(crate) enum Side<V1, V2> {
    Left(V1),
    Right(V2),
}

/// Marks records of the left input.
struct TagLeft<V2>(PhantomData<fn(V2)>);

impl<K: Data, V1: Data, V2: Data> Processor<K, V1, K, Side<V1, V2>> for TagLeft<V2> {
    fn process(
        &mut self,
        r: Record<K, V1>,
        ctx: &mut ProcessorContext<'_, K, Side<V1, V2>>,
    ) -> ProcessorResult {
        ctx.forward(Record {
            key: r.key,
            value: Side::Left(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

/// Marks records of the right input.
struct TagRight<V1>(PhantomData<fn(V1)>);

impl<K: Data, V1: Data, V2: Data> Processor<K, V2, K, Side<V1, V2>> for TagRight<V1> {
    fn process(
        &mut self,
        r: Record<K, V2>,
        ctx: &mut ProcessorContext<'_, K, Side<V1, V2>>,
    ) -> ProcessorResult {
        ctx.forward(Record {
            key: r.key,
            value: Side::Right(r.value),
            timestamp: r.timestamp,
            headers: r.headers,
        })
    }
}

fn truncated(what: &str, len: usize) -> SerdeError {
    SerdeError::Custom(format!("a truncated {what} ({len} bytes)"))
}

/// Appends `item` as a 4-byte big-endian length and its bytes.
fn write_item<V: 'static>(
    serde: &dyn Serde<V>,
    item: &V,
    out: &mut Vec<u8>,
) -> Result<(), SerdeError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde.serialize_into(item, out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| SerdeError::Custom("a joined value over 4 GiB".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn read_items<V: 'static>(serde: &dyn Serde<V>, mut bytes: &[u8]) -> Result<Vec<V>, SerdeError> {
    let total = bytes.len();
    let mut items = Vec::new();
    while !bytes.is_empty() {
        let len: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| truncated("list of values", total))?;
        let len = u32::from_be_bytes(len) as usize;
        let item = bytes
            .get(4..4 + len)
            .ok_or_else(|| truncated("list of values", total))?;
        items.push(serde.deserialize(item)?);
        bytes = &bytes[4 + len..];
    }
    Ok(items)
}

/// A list of values (the records of one key and timestamp, in arrival order): each value as a
/// 4-byte big-endian length and its bytes.
pub(crate) struct ListSerde<V>(pub(crate) Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Vec<V>> for ListSerde<V> {
    fn serialize_into(&self, items: &Vec<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        for item in items {
            write_item(&*self.0, item, out)?;
        }
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<V>, SerdeError> {
        read_items(&*self.0, bytes)
    }
}

/// Where an unmatched record waits: its timestamp, its side and its key. Serialized so that
/// entries sort by timestamp, then right before left, then key bytes (as Kafka Streams'
/// `TimestampedKeyAndJoinSide`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OuterKey<K> {
    pub(crate) time: i64,
    pub(crate) left: bool,
    pub(crate) key: K,
}

/// The 8 bytes a time sorts by (the sign bit flipped, big-endian).
fn time_bytes(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) struct OuterKeySerde<K>(pub(crate) Arc<dyn Serde<K>>);

impl<K: 'static> Serde<OuterKey<K>> for OuterKeySerde<K> {
    fn serialize_into(&self, k: &OuterKey<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&time_bytes(k.time));
        out.push(u8::from(k.left));
        self.0.serialize_into(&k.key, out)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<OuterKey<K>, SerdeError> {
        if bytes.len() < 9 {
            return Err(truncated("join key", bytes.len()));
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&bytes[..8]);
        let left = match bytes[8] {
            0 => false,
            1 => true,
            side => {
                return Err(SerdeError::Custom(format!(
                    "a join key with side byte {side} (0 or 1 expected; {} bytes)",
                    bytes.len()
                )))
            }
        };
        Ok(OuterKey {
            time: (u64::from_be_bytes(time) ^ (1 << 63)) as i64,
            left,
            key: self.0.deserialize(&bytes[9..])?,
        })
    }
}

/// The unmatched records of one side with the same key and timestamp, in arrival order.
#[derive(Debug, Clone)]
pub(crate) enum Pending<V1, V2> {
    Left(Vec<V1>),
    Right(Vec<V2>),
}

/// A side byte (1: left, 0: right), then the values as [`ListSerde`] writes them.
pub(crate) struct PendingSerde<V1, V2>(
    pub(crate) Arc<dyn Serde<V1>>,
    pub(crate) Arc<dyn Serde<V2>>,
);

impl<V1: 'static, V2: 'static> Serde<Pending<V1, V2>> for PendingSerde<V1, V2> {
    fn serialize_into(&self, p: &Pending<V1, V2>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match p {
            Pending::Left(items) => {
                out.push(1);
                items.iter().try_for_each(|i| write_item(&*self.0, i, out))
            }
            Pending::Right(items) => {
                out.push(0);
                items.iter().try_for_each(|i| write_item(&*self.1, i, out))
            }
        }
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Pending<V1, V2>, SerdeError> {
        match bytes.split_first() {
            Some((1, rest)) => Ok(Pending::Left(read_items(&*self.0, rest)?)),
            Some((0, rest)) => Ok(Pending::Right(read_items(&*self.1, rest)?)),
            _ => Err(SerdeError::Custom(format!(
                "not an unmatched join record ({} bytes)",
                bytes.len()
            ))),
        }
    }
}

fn used_before_init(store: &str) -> BoxError {
    format!("store `{store}` used before init").into()
}

/// The join processor: both inputs come in, tagged with their side; see the
/// [module docs](self).
pub(crate) struct StreamStreamJoin<K, V1, V2, VR> {
    windows: JoinWindows,
    kind: JoinKind,
    joiner: StreamJoiner<V1, V2, VR>,
    left_name: String,
    right_name: String,
    outer_name: Option<String>,
    left: Option<WindowStore<K, Vec<V1>>>,
    right: Option<WindowStore<K, Vec<V2>>>,
    outer: Option<KeyValueStore<OuterKey<K>, Pending<V1, V2>>>,
    clock: WindowClock,
    /// No unmatched record waits with a smaller timestamp; `i64::MIN` when not known.
    pending_floor: i64,
}

impl<K: Data, V1: Data, V2: Data, VR: Data> StreamStreamJoin<K, V1, V2, VR> {
    fn left_store(&self) -> Result<&WindowStore<K, Vec<V1>>, BoxError> {
        self.left
            .as_ref()
            .ok_or_else(|| used_before_init(&self.left_name))
    }

    fn right_store(&self) -> Result<&WindowStore<K, Vec<V2>>, BoxError> {
        self.right
            .as_ref()
            .ok_or_else(|| used_before_init(&self.right_name))
    }

    /// How far past its own timestamp a record's window reaches.
    fn lookahead(&self, left: bool) -> i64 {
        if left {
            self.windows.after_ms()
        } else {
            self.windows.before_ms()
        }
    }

    /// Whether the window of a record at `time` of side `left` has closed at `stream_time`.
    fn closed(&self, left: bool, time: i64, stream_time: i64) -> bool {
        time.saturating_add(self.lookahead(left))
            .saturating_add(self.windows.grace_ms())
            < stream_time
    }

    /// Emits every waiting unmatched record whose window has closed at `stream_time`.
    fn emit_closed(
        &mut self,
        stream_time: i64,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> ProcessorResult {
        let Some(outer) = &self.outer else {
            return Ok(());
        };
        // The latest timestamp a closed record can have, over the sides that wait.
        let shortest = match (self.kind.left_outer(), self.kind.right_outer()) {
            (true, true) => self.windows.after_ms().min(self.windows.before_ms()),
            (true, false) => self.windows.after_ms(),
            _ => self.windows.before_ms(),
        };
        let bound = stream_time
            .saturating_sub(self.windows.grace_ms())
            .saturating_sub(shortest)
            .saturating_sub(1);
        if self.pending_floor > bound {
            return Ok(());
        }
        let upper = time_bytes(bound.saturating_add(1));
        let mut floor = bound.saturating_add(1);
        for (key, pending) in outer.range_bytes(None, Some(&upper))? {
            if !self.closed(key.left, key.time, stream_time) {
                floor = floor.min(key.time);
                continue;
            }
            match pending {
                Pending::Left(values) => {
                    for v in &values {
                        if let Some(out) = (self.joiner)(Some(v), None) {
                            ctx.forward(Record {
                                key: key.key.clone(),
                                value: out,
                                timestamp: key.time,
                                headers: headers.clone(),
                            })?;
                        }
                    }
                }
                Pending::Right(values) => {
                    for v in &values {
                        if let Some(out) = (self.joiner)(None, Some(v)) {
                            ctx.forward(Record {
                                key: key.key.clone(),
                                value: out,
                                timestamp: key.time,
                                headers: headers.clone(),
                            })?;
                        }
                    }
                }
            }
            outer.delete(&key)?;
        }
        self.pending_floor = floor;
        Ok(())
    }

    /// Joins a record of one side with the other side's records in its window; returns how many
    /// partners it had.
    #[allow(clippy::too_many_arguments)]
    fn join_with<VO: Data>(
        &self,
        key: &K,
        time: i64,
        this_left: bool,
        other: &WindowStore<K, Vec<VO>>,
        join: impl Fn(&VO) -> Option<VR>,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> ProcessorResult<usize> {
        let (from, to) = if this_left {
            (
                time.saturating_sub(self.windows.before_ms()),
                time.saturating_add(self.windows.after_ms()),
            )
        } else {
            (
                time.saturating_sub(self.windows.after_ms()),
                time.saturating_add(self.windows.before_ms()),
            )
        };
        let mut partners = 0;
        let other_waits = if this_left {
            self.kind.right_outer()
        } else {
            self.kind.left_outer()
        };
        for (other_time, values) in other.fetch_range(key, from.max(0), to)? {
            partners += values.len();
            if other_waits {
                if let Some(outer) = &self.outer {
                    outer.delete(&OuterKey {
                        time: other_time,
                        left: !this_left,
                        key: key.clone(),
                    })?;
                }
            }
            for v in &values {
                if let Some(out) = join(v) {
                    ctx.forward(Record {
                        key: key.clone(),
                        value: out,
                        timestamp: time.max(other_time),
                        headers: headers.clone(),
                    })?;
                }
            }
        }
        Ok(partners)
    }

    /// Keeps an unmatched record until its window closes.
    fn wait(&mut self, key: &K, time: i64, value: Side<V1, V2>) -> ProcessorResult {
        let Some(outer) = &self.outer else {
            return Ok(());
        };
        let outer_key = OuterKey {
            time,
            left: matches!(value, Side::Left(_)),
            key: key.clone(),
        };
        let pending = match (outer.get(&outer_key)?, value) {
            (Some(Pending::Left(mut values)), Side::Left(v)) => {
                values.push(v);
                Pending::Left(values)
            }
            (Some(Pending::Right(mut values)), Side::Right(v)) => {
                values.push(v);
                Pending::Right(values)
            }
            (_, Side::Left(v)) => Pending::Left(vec![v]),
            (_, Side::Right(v)) => Pending::Right(vec![v]),
        };
        outer.put(&outer_key, &pending)?;
        self.pending_floor = self.pending_floor.min(time);
        Ok(())
    }
}

impl<K: Data, V1: Data, V2: Data, VR: Data> Processor<K, Side<V1, V2>, K, VR>
    for StreamStreamJoin<K, V1, V2, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessorResult {
        self.left = Some(ctx.window_store(&self.left_name)?);
        self.right = Some(ctx.window_store(&self.right_name)?);
        if let Some(name) = &self.outer_name {
            self.outer = Some(ctx.key_value_store(name)?);
        }
        self.clock.init(ctx)?;
        self.pending_floor = i64::MIN;
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Side<V1, V2>>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> ProcessorResult {
        let t = r.timestamp;
        let this_left = matches!(r.value, Side::Left(_));
        let this_outer = if this_left {
            self.kind.left_outer()
        } else {
            self.kind.right_outer()
        };
        if self.left_store()?.is_null_key(&r.key) {
            if this_outer {
                let out = match &r.value {
                    Side::Left(v) => (self.joiner)(Some(v), None),
                    Side::Right(v) => (self.joiner)(None, Some(v)),
                };
                if let Some(out) = out {
                    ctx.forward(Record {
                        key: r.key,
                        value: out,
                        timestamp: t,
                        headers: r.headers,
                    })?;
                }
            } else {
                tracing::debug!(store = %self.left_name, "skipping a join record with a null key");
                ctx.record_dropped_null_key();
            }
            return Ok(());
        }
        let stream_time = self.clock.observe(ctx.stream_time().max(t))?;
        if self.closed(this_left, t, stream_time) {
            ctx.record_dropped_late();
            tracing::debug!(
                store = %if this_left { &self.left_name } else { &self.right_name },
                timestamp = t,
                window_end = t.saturating_add(self.lookahead(this_left)),
                stream_time,
                "dropping a late join record: its join window has closed"
            );
            return Ok(());
        }
        self.emit_closed(stream_time, &r.headers, ctx)?;
        let key = r.key;
        let partners = match &r.value {
            Side::Left(v) => {
                self.left_store()?.update(&key, t, |old| {
                    let mut values = old.unwrap_or_default();
                    values.push(v.clone());
                    (values, ())
                })?;
                let right = self.right_store()?;
                self.join_with(
                    &key,
                    t,
                    true,
                    right,
                    |other| (self.joiner)(Some(v), Some(other)),
                    &r.headers,
                    ctx,
                )?
            }
            Side::Right(v) => {
                self.right_store()?.update(&key, t, |old| {
                    let mut values = old.unwrap_or_default();
                    values.push(v.clone());
                    (values, ())
                })?;
                let left = self.left_store()?;
                self.join_with(
                    &key,
                    t,
                    false,
                    left,
                    |other| (self.joiner)(Some(other), Some(v)),
                    &r.headers,
                    ctx,
                )?
            }
        };
        if partners == 0 && this_outer {
            self.wait(&key, t, r.value)?;
        }
        Ok(())
    }
}

/// The slot of a serde of `Pending` values, from the slots of both sides' value serdes.
fn pending_slot<V1: Data, V2: Data>(
    left: SerdeSlot<V1>,
    right: SerdeSlot<V2>,
) -> SerdeSlot<Pending<V1, V2>> {
    SerdeSlot::Derived(Arc::new(move |defaults, owner| {
        let serde: Arc<dyn Serde<Pending<V1, V2>>> = Arc::new(PendingSerde(
            left.resolve(defaults, owner)?,
            right.resolve(defaults, owner)?,
        ));
        Ok(serde)
    }))
}

fn with_options(mut def: StoreDef, persistent: bool, logging: bool) -> StoreDef {
    if !persistent {
        def = def.in_memory();
    }
    if !logging {
        def = def.without_logging();
    }
    def
}

/// Adds the node that repartitions `stream` in front of a join if its key may have changed,
/// named after `base` (the join's name and side) or, unnamed, after the stream's node.
pub(crate) fn repartition_for_join<K: Data, V: Data>(
    g: &mut Graph,
    node: usize,
    base: Option<String>,
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
) -> usize {
    let stream_name = g.nodes[node].name.clone();
    let plan = plan_repartition(g, base, move |_| stream_name, keys, values, None);
    let name = plan.source.clone();
    g.push(name, vec![node], NodeKind::RepartitionIfKeyChanged(plan))
}

/// Adds a stream-stream join of `left` and `right`; see the [module docs](self).
pub(crate) fn join_streams<K: Data, V1: Data, V2: Data, VR: Data>(
    left: &KStream<K, V1>,
    right: &KStream<K, V2>,
    windows: JoinWindows,
    kind: JoinKind,
    joiner: StreamJoiner<V1, V2, VR>,
    options: StreamJoined<K, V1, V2>,
) -> KStream<K, VR> {
    let graph = left.graph.clone();
    let mut g = graph.borrow_mut();
    // The other stream's node, in this graph: with streams of two builders (an error `build`
    // reports) the left node stands in, so nothing indexes the wrong graph.
    let right_node = if std::rc::Rc::ptr_eq(&left.graph, &right.graph) {
        right.node
    } else {
        g.defer_error(streams_core::StreamsError::topology(
            "join",
            "the two streams come from different StreamsBuilders",
        ));
        left.node
    };
    let keys = options
        .keys
        .clone()
        .or_else(|| left.keys.clone())
        .or_else(|| right.keys.clone())
        .unwrap_or(SerdeSlot::DefaultKey);
    let left_values = options
        .values
        .clone()
        .or_else(|| left.values.clone())
        .unwrap_or(SerdeSlot::DefaultValue);
    let right_values = options
        .other_values
        .clone()
        .or_else(|| right.values.clone())
        .unwrap_or(SerdeSlot::DefaultValue);

    // Inputs, repartitioned if their keys may have changed.
    let left_input = repartition_for_join(
        &mut g,
        left.node,
        options.name.as_ref().map(|n| format!("{n}-left")),
        keys.clone(),
        left_values.clone(),
    );
    let right_input = if left.node == right_node {
        left_input // a self-join reads one repartition topic
    } else {
        repartition_for_join(
            &mut g,
            right_node,
            options.name.as_ref().map(|n| format!("{n}-right")),
            keys.clone(),
            right_values.clone(),
        )
    };

    // Names, as Kafka Streams gives them.
    let this_suffix = if kind.right_outer() {
        "-outer-this-join"
    } else {
        "-this-join"
    };
    let other_suffix = if kind.left_outer() {
        "-outer-other-join"
    } else {
        "-other-join"
    };
    let (this_name, other_name, merge_name) = match &options.name {
        Some(n) => (
            format!("{n}{this_suffix}"),
            format!("{n}{other_suffix}"),
            format!("{n}-merge"),
        ),
        None => (
            g.next_name(if kind.right_outer() {
                "KSTREAM-OUTERTHIS-"
            } else {
                "KSTREAM-JOINTHIS-"
            }),
            g.next_name(if kind.left_outer() {
                "KSTREAM-OUTEROTHER-"
            } else {
                "KSTREAM-JOINOTHER-"
            }),
            g.next_name("KSTREAM-MERGE-"),
        ),
    };
    let outer_suffix = if kind.right_outer() {
        "-outer-shared-join"
    } else {
        "-left-shared-join"
    };
    let (this_store, other_store, outer_store) = match &options.store_name {
        Some(s) => (
            format!("{s}{this_suffix}-store"),
            format!("{s}{other_suffix}-store"),
            format!("{s}{outer_suffix}-store"),
        ),
        None => (
            format!("{this_name}-store"),
            format!("{other_name}-store"),
            match &options.name {
                Some(n) => format!("{n}{outer_suffix}-store"),
                None => format!("{}-store", g.next_name("KSTREAM-OUTERSHARED-")),
            },
        ),
    };
    let time_store = format!("{this_store}-time");

    let window = StoreKind::Window {
        retention_ms: windows.retention_ms(),
        segment_interval_ms: None,
    };
    let (persistent, logging) = (options.persistent, options.logging);
    g.add_store_deferred(with_options(
        Stores::with_slots(
            this_store.clone(),
            window,
            keys.clone(),
            left_values.derive(|s| Arc::new(ListSerde(s))),
        ),
        persistent,
        logging,
    ));
    g.add_store_deferred(with_options(
        Stores::with_slots(
            other_store.clone(),
            window,
            keys.clone(),
            right_values.derive(|s| Arc::new(ListSerde(s))),
        ),
        persistent,
        logging,
    ));
    let mut stores = vec![this_store.clone(), other_store.clone()];
    let outer_name = if kind == JoinKind::Inner {
        None
    } else {
        g.add_store_deferred(with_options(
            Stores::with_slots(
                outer_store.clone(),
                StoreKind::KeyValue,
                keys.derive(|s| Arc::new(OuterKeySerde(s))),
                pending_slot(left_values.clone(), right_values.clone()),
            ),
            persistent,
            logging,
        ));
        stores.push(outer_store.clone());
        Some(outer_store)
    };
    // The join's stream time, as windowed aggregations keep theirs.
    let mut times = Stores::key_value(time_store.clone(), Serdes::string(), Serdes::i64())
        .in_memory()
        .with_caching()
        .with_emit(EmitMode::None);
    if !logging {
        times = times.without_logging();
    }
    g.add_store_deferred(times);
    stores.push(time_store.clone());

    let this_tag = g.push(
        this_name,
        vec![left_input],
        NodeKind::Processor {
            add: processor_add::<K, V1, K, Side<V1, V2>, TagLeft<V2>>(|| TagLeft(PhantomData)),
            changes_key: false,
            stores: Vec::new(),
        },
    );
    let other_tag = g.push(
        other_name,
        vec![right_input],
        NodeKind::Processor {
            add: processor_add::<K, V2, K, Side<V1, V2>, TagRight<V1>>(|| TagRight(PhantomData)),
            changes_key: false,
            stores: Vec::new(),
        },
    );
    let make = move || StreamStreamJoin {
        windows,
        kind,
        joiner: joiner.clone(),
        left_name: this_store.clone(),
        right_name: other_store.clone(),
        outer_name: outer_name.clone(),
        left: None,
        right: None,
        outer: None,
        clock: WindowClock::new(time_store.clone()),
        pending_floor: i64::MIN,
    };
    g.copartition
        .push((merge_name.clone(), vec![this_tag, other_tag]));
    let node = g.push(
        merge_name,
        vec![this_tag, other_tag],
        NodeKind::Processor {
            add: processor_add::<K, Side<V1, V2>, K, VR, StreamStreamJoin<K, V1, V2, VR>>(make),
            changes_key: false,
            stores,
        },
    );
    drop(g);
    KStream {
        graph,
        node,
        keys: Some(keys),
        values: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn outer_keys_sort_by_time_then_side_then_key(
            a in (0i64..1000, any::<bool>(), "[a-c]{0,3}"),
            b in (0i64..1000, any::<bool>(), "[a-c]{0,3}"),
        ) {
            let serde = OuterKeySerde::<String>(Arc::new(Serdes::string()));
            let ka = OuterKey { time: a.0, left: a.1, key: a.2.clone() };
            let kb = OuterKey { time: b.0, left: b.1, key: b.2.clone() };
            let (ba, bb) = (
                serde.serialize(&ka).map_err(|e| TestCaseError::fail(e.to_string()))?,
                serde.serialize(&kb).map_err(|e| TestCaseError::fail(e.to_string()))?,
            );
            prop_assert_eq!(ba.cmp(&bb), (a.0, a.1, a.2.as_bytes()).cmp(&(b.0, b.1, b.2.as_bytes())));
            prop_assert_eq!(serde.deserialize(&ba).map_err(|e| TestCaseError::fail(e.to_string()))?, ka);
        }

        #[test]
        fn lists_and_pending_values_round_trip(items in proptest::collection::vec(".*", 0..5), left in any::<bool>()) {
            let list = ListSerde::<String>(Arc::new(Serdes::string()));
            let bytes = list.serialize(&items).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&list.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, &items);
            let pending = PendingSerde::<String, String>(Arc::new(Serdes::string()), Arc::new(Serdes::string()));
            let p = if left { Pending::Left(items.clone()) } else { Pending::Right(items.clone()) };
            let bytes = pending.serialize(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match pending.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))? {
                Pending::Left(v) => { prop_assert!(left); prop_assert_eq!(v, items); }
                Pending::Right(v) => { prop_assert!(!left); prop_assert_eq!(v, items); }
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let list = ListSerde::<String>(Arc::new(Serdes::string()));
        assert!(list.deserialize(&[0, 0, 0, 9, b'a']).is_err());
        let pending =
            PendingSerde::<String, String>(Arc::new(Serdes::string()), Arc::new(Serdes::string()));
        assert!(pending.deserialize(&[]).is_err());
        assert!(pending.deserialize(&[7]).is_err());
        let keys = OuterKeySerde::<String>(Arc::new(Serdes::string()));
        assert!(keys.deserialize(&[1, 2, 3]).is_err());
    }
}

/// Arbitrary and damaged bytes for the stream-stream join's serdes (`KSTREAMS_FUZZ_CASES`, see
/// `crate::fuzz`): a value, a typed error, never a panic, never garbage read as a value.
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::{apply, bytes, check_canonical, check_round_trip, config, damage};
    use proptest::prelude::*;
    use state_stores::Serdes;

    fn lists() -> ListSerde<String> {
        ListSerde(Arc::new(Serdes::string()))
    }

    fn outer_keys() -> OuterKeySerde<String> {
        OuterKeySerde(Arc::new(Serdes::string()))
    }

    fn pending() -> PendingSerde<String, i64> {
        PendingSerde(Arc::new(Serdes::string()), Arc::new(Serdes::i64()))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn join_serdes_take_arbitrary_bytes(input in bytes(40)) {
            check_canonical("list of values", &lists(), &input)?;
            check_canonical("OuterKey", &outer_keys(), &input)?;
            check_canonical("Pending", &pending(), &input)?;
        }

        #[test]
        fn join_serdes_take_damaged_encodings(
            items in proptest::collection::vec(".{0,6}", 0..4),
            longs in proptest::collection::vec(any::<i64>(), 0..4),
            time in any::<i64>(),
            left in any::<bool>(),
            damage in damage(),
        ) {
            let l = check_round_trip("list of values", &lists(), &items)?;
            check_canonical("list of values", &lists(), &apply(&l, &damage))?;
            let key = OuterKey { time, left, key: items.concat() };
            let k = check_round_trip("OuterKey", &outer_keys(), &key)?;
            check_canonical("OuterKey", &outer_keys(), &apply(&k, &damage))?;
            let p = if left { Pending::Left(items) } else { Pending::Right(longs) };
            let p = check_round_trip("Pending", &pending(), &p)?;
            check_canonical("Pending", &pending(), &apply(&p, &damage))?;
        }
    }

    /// Regression: any non-zero side byte read as "left", so a damaged join key read as a valid
    /// one.
    #[test]
    fn a_side_byte_other_than_0_or_1_is_an_error() {
        let mut bytes = outer_keys()
            .serialize(&OuterKey {
                time: 5,
                left: true,
                key: "k".to_owned(),
            })
            .unwrap();
        bytes[8] = 2;
        let err = outer_keys().deserialize(&bytes).unwrap_err();
        assert!(err.to_string().contains("join key"), "{err}");
    }

    /// A list whose item length points past the end is an error, not an allocation.
    #[test]
    fn an_item_length_past_the_end_is_an_error() {
        let err = lists()
            .deserialize(&[0xff, 0xff, 0xff, 0xff, b'a'])
            .unwrap_err();
        assert!(err.to_string().contains("list of values"), "{err}");
    }
}
