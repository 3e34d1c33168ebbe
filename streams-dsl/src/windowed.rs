//! `windowed_by`: a grouped stream cut into time windows, sliding windows or sessions, and its
//! aggregations (`count`, `reduce`, `aggregate`).
//!
//! Each aggregation keeps its windows in a window store (time and sliding windows) or a session
//! store, named by [`Materialized`] or generated, kept at least the window size (the inactivity
//! gap for sessions; twice the time difference for sliding windows) plus the grace period, or
//! longer with [`Materialized::with_retention`]. Their changelogs are compacted and deleted after
//! that retention plus a day. A grouped stream repartitions first if an operator upstream may
//! have changed the key, exactly as for unwindowed aggregations.
//!
//! The result is a table keyed by [`Windowed`] keys: in short, a record later than its window's
//! end plus the grace period is dropped and counted (`dropped_late`), and with
//! [`EmitStrategy::OnWindowClose`] (time and sliding windows) or [`KTable::suppress`] each
//! window's final value is emitted exactly once.
//!
//! # Time, lateness and what is emitted
//!
//! Stream time is the task's: the largest timestamp it has processed, this record included. A
//! window closes when stream time minus the grace period passes its end (time windows: `end <=
//! stream time - grace`; sliding windows: `end < stream time - grace`; sessions: `end < stream
//! time - grace - gap`). A record is never folded into a closed window: it is dropped for that
//! window, counted in the task's `dropped_late` metric (once per window, as Kafka counts it) and
//! logged at debug level.
//!
//! Results are a windowed table (`Windowed<K>` keys, [`Change`]s). With the
//! default emit strategy every update is forwarded: at once without a cache; with one, what the cache writes
//! down (after evictions, and at each commit: one change per window per commit). With
//! [`EmitStrategy::OnWindowClose`] nothing is forwarded until a window closes, and then its
//! final value once: the windows that closed are read from the store when stream time closes
//! them, before the record that closed them is aggregated, so a window never expires from the
//! store before it is emitted. The close time of the last emission and the largest stream time
//! seen are kept in a small changelogged store next to the window store; they survive restarts
//! and rebalances in the same transaction as the output, so each window is emitted exactly once
//! under `exactly_once_v2`, and a record for a window that had closed is dropped as late even if
//! the task's stream time restarted lower.
//!
//! A result's timestamp is the largest timestamp of the records in its window (sessions: the
//! session end).
//!
//! # Where this differs from Kafka Streams 4.2
//!
//! Checked against Kafka Streams' own TopologyTestDriver on random input, results agree record
//! for record except where Kafka Streams loses or repeats results:
//!
//! - emit-on-close emits closed windows before the record that closed them is stored, and on
//!   every record rather than at most once per second of wall-clock time; Kafka Streams stores
//!   first, so a record far ahead in time expires (with the default retention) the windows it
//!   closes before they are emitted;
//! - a sliding window store keeps windows 2 ms longer than its retention, which Kafka Streams
//!   counts from the newest window start (up to 1 ms past stream time): at exactly twice the
//!   time difference plus grace it can expire the window a record copies its left window's
//!   aggregate from, and the record's left window then misses earlier records;
//! - a record cache never returns a window or session the store behind it has expired; Kafka
//!   Streams' caches do, until they evict it, so there merging depends on what is cached;
//! - `suppress` closes sliding and session windows (inclusive ends) when stream time minus the
//!   grace passes their end, as their aggregations do (see [`crate::suppress`]);
//! - stream time is the task's, never lower than the aggregation's persisted one; Kafka Streams
//!   uses the largest timestamp of the records that reached the processor since it started (the
//!   two differ when records are filtered out upstream, and after a restart), and keeps the last
//!   emission's close time in the committed offsets' metadata rather than in a store.
//!
//! Each windowed aggregation has two stores: the windows (`<name>`), and `<name>-time`, an
//! in-memory, cached, changelogged key-value store holding its stream time (and, emitting on
//! close, the last emission's close time).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use state_stores::caching::EmitMode;
use state_stores::serdes::Serde;
use state_stores::Serdes;
use streams_core::processor::Processor;
use streams_core::serde_slot::SerdeSlot;
use streams_core::topology::{StoreKind, Stores};

use crate::aggregate::Adder;
use crate::change::{Change, TimestampedSerde};
use crate::graph::{Graph, NodeKind, RepartitionWhen, WindowClosing};
use crate::grouped::KGroupedStream;
use crate::options::Materialized;
use crate::stream::{plan_repartition, processor_add};
use crate::table::KTable;
use crate::window_aggregate::{
    EmitStrategy, FinalEmitter, Forwarding, SessionMerger, SessionWindowAggregate,
    SlidingWindowAggregate, TimeWindowAggregate, TimeWindowKind, WindowClock, WindowTable,
};
use crate::windows::{
    millis, SessionWindows, SlidingWindows, TimeWindows, Windowed, WindowedSerdes,
};
use crate::Data;

/// Window definitions a grouped stream can be cut into: [`TimeWindows`], [`SlidingWindows`]
/// and [`SessionWindows`]. See [`KGroupedStream::windowed_by`].
pub trait WindowedBy<K, V> {
    /// The windowed stream these windows make.
    type Stream;

    /// Cuts `grouped` into these windows.
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Stream;
}

fn parts<K: Data, V: Data>(g: &KGroupedStream<K, V>) -> KGroupedStream<K, V> {
    KGroupedStream {
        graph: g.graph.clone(),
        node: g.node,
        keys: g.keys.clone(),
        values: g.values.clone(),
        name: g.name.clone(),
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for TimeWindows {
    type Stream = TimeWindowedKStream<K, V>;

    fn windowed(self, grouped: &KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: parts(grouped),
            kind: TimeWindowKind::Time(self),
            emit: EmitStrategy::OnWindowUpdate,
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SlidingWindows {
    type Stream = TimeWindowedKStream<K, V>;

    fn windowed(self, grouped: &KGroupedStream<K, V>) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: parts(grouped),
            kind: TimeWindowKind::Sliding(self),
            emit: EmitStrategy::OnWindowUpdate,
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SessionWindows {
    type Stream = SessionWindowedKStream<K, V>;

    fn windowed(self, grouped: &KGroupedStream<K, V>) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped: parts(grouped),
            windows: self,
        }
    }
}

/// Builds the serde of a windowed key from the serde of the key.
type WindowedKeys<K> = Arc<dyn Fn(Arc<dyn Serde<K>>) -> Arc<dyn Serde<Windowed<K>>> + Send + Sync>;

/// Which store an aggregation keeps its windows in.
enum WindowStoreKind {
    Window { retention: i64 },
    Session { retention: i64 },
}

/// What a windowed aggregation needs to become a node.
struct WindowedAggregation<K, VA> {
    processor_prefix: &'static str,
    store_prefix: &'static str,
    materialized: Materialized<K, VA>,
    /// The aggregate's serde when `Materialized` gives none.
    default_values: SerdeSlot<VA>,
    /// What `Materialized::with_retention` must at least be, and what the store keeps by default.
    min_retention: i64,
    /// Milliseconds the store keeps beyond the retention (see the sliding windows' use).
    retention_slack: i64,
    session: bool,
    /// The result key's serde, from the record key's.
    windowed_keys: WindowedKeys<K>,
    /// The grace `suppress(until_window_closes)` downstream waits for.
    suppress_grace: i64,
    /// Whether window ends are inclusive (sliding and session windows).
    inclusive_end: bool,
    emit: EmitStrategy,
    /// A description of the windows, for errors.
    what: String,
}

/// Adds a windowed aggregation node (and its stores), whose processor `make` builds from the
/// window store's name, whether it is cached, the name of its time store, and whether it emits
/// on window close.
fn add_windowed<K: Data, V: Data, VA: Data, P>(
    grouped: &KGroupedStream<K, V>,
    agg: WindowedAggregation<K, VA>,
    make: impl Fn(String, bool, String, bool) -> P + Send + Sync + 'static,
) -> KTable<Windowed<K>, VA>
where
    P: Processor<K, V, Windowed<K>, Change<VA>> + 'static,
{
    let graph: &Rc<RefCell<Graph>> = &grouped.graph;
    let mut g = graph.borrow_mut();
    let name = g.next_name(agg.processor_prefix);
    let m = agg.materialized;
    let store = match m.name.clone() {
        Some(n) => n,
        None => g.next_name(agg.store_prefix),
    };
    let retention = match m.retention {
        Some(r) => {
            let r = millis(r);
            if r < agg.min_retention {
                g.defer_error(streams_core::StreamsError::config(
                    "Materialized::with_retention",
                    format!(
                        "the retention of window store `{store}` is {r} ms but must be at least {} ms ({})",
                        agg.min_retention, agg.what
                    ),
                ));
            }
            r
        }
        None => agg.min_retention,
    };
    let store_retention = retention.saturating_add(agg.retention_slack);
    let keys = m.keys.clone().unwrap_or_else(|| grouped.keys.clone());
    let values = m.values.clone().unwrap_or(agg.default_values);
    let kind = if agg.session {
        WindowStoreKind::Session {
            retention: store_retention,
        }
    } else {
        WindowStoreKind::Window {
            retention: store_retention,
        }
    };
    let mut def = match kind {
        WindowStoreKind::Window { retention } => Stores::with_slots(
            store.clone(),
            StoreKind::Window {
                retention_ms: retention,
                segment_interval_ms: None,
            },
            keys.clone(),
            values.derive(|s| Arc::new(TimestampedSerde(s))),
        ),
        WindowStoreKind::Session { retention } => Stores::with_slots(
            store.clone(),
            StoreKind::Session {
                retention_ms: retention,
            },
            keys.clone(),
            values.clone(),
        ),
    };
    if !m.persistent {
        def = def.in_memory();
    }
    let on_close = agg.emit == EmitStrategy::OnWindowClose;
    if m.caching {
        // Sessions are deleted when they merge: the cache must report the old value so the
        // deletion of a session it wrote down before reaches downstream.
        def = def.with_caching().with_emit(match (on_close, agg.session) {
            (true, _) => EmitMode::None,
            (false, true) => EmitMode::NewAndOld,
            (false, false) => EmitMode::New,
        });
    }
    if !m.logging {
        def = def.without_logging();
    }
    g.add_store_deferred(def);
    // The processor's times (stream time seen; with emit-on-close, the last emission's close
    // time): logged with the windows, so they commit in the same transaction, and cached, so
    // stream time costs one changelog record per commit.
    let time_store = format!("{store}-time");
    let mut times = Stores::key_value(time_store.clone(), Serdes::string(), Serdes::i64())
        .in_memory()
        .with_caching()
        .with_emit(EmitMode::None);
    if !m.logging {
        times = times.without_logging();
    }
    g.add_store_deferred(times);
    let stores = vec![store.clone(), time_store.clone()];

    // Repartition as a plain aggregation does: named after Grouped, else a named store.
    let (rkeys, rvalues, grouped_name, named_store) = (
        grouped.keys.clone(),
        grouped.values.clone(),
        grouped.name.clone(),
        m.name.is_some(),
    );
    let base = grouped_name.or_else(|| named_store.then(|| store.clone()));
    let generated = store.clone();
    let plan = plan_repartition(&mut g, base, move |_| generated, rkeys, rvalues, None);

    let cached = m.caching && !on_close;
    let store_for_make = store.clone();
    let add = processor_add::<K, V, Windowed<K>, Change<VA>, P>(move || {
        make(store_for_make.clone(), cached, time_store.clone(), on_close)
    });
    let node = g.push(
        name,
        vec![grouped.node],
        NodeKind::Stateful {
            add,
            stores,
            repartition: Some((RepartitionWhen::KeyChanged, plan)),
        },
    );
    g.window_closing.insert(
        node,
        WindowClosing {
            grace: agg.suppress_grace,
            inclusive_end: agg.inclusive_end,
        },
    );
    drop(g);
    let windowed_keys = agg.windowed_keys;
    KTable {
        graph: graph.clone(),
        node,
        keys: Some(keys.derive(move |s| windowed_keys(s))),
        values: Some(values),
        store: Some(store),
    }
}

/// A grouped stream cut into time windows (tumbling, hopping) or sliding windows, ready to
/// aggregate. Made by [`KGroupedStream::windowed_by`].
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    kind: TimeWindowKind,
    emit: EmitStrategy,
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// Emits every update (the default) or only each window's final value when it closes.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// let final_counts = clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(5)))
    ///     .emit_strategy(EmitStrategy::OnWindowClose)
    ///     .count(Materialized::as_("clicks-per-minute"));
    /// ```
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: SerdeSlot<VA>,
        adder: Adder<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let kind = self.kind;
        let length = kind.length();
        let problem = match kind {
            TimeWindowKind::Time(w) => w.validate().err().map(|e| ("TimeWindows", e)),
            TimeWindowKind::Sliding(w) if w.time_difference_ms() < 1 => Some((
                "SlidingWindows",
                "the time difference must be at least 1 ms".to_owned(),
            )),
            TimeWindowKind::Sliding(_) => None,
        };
        if let Some((what, reason)) = problem {
            self.grouped
                .graph
                .borrow_mut()
                .defer_error(streams_core::StreamsError::config(what, reason));
        }
        let (min_retention, what) = match kind {
            TimeWindowKind::Time(w) => (
                w.size_ms().saturating_add(w.grace_ms()),
                "the window size plus the grace period",
            ),
            TimeWindowKind::Sliding(w) => (
                w.time_difference_ms()
                    .saturating_mul(2)
                    .saturating_add(w.grace_ms()),
                "twice the time difference plus the grace period",
            ),
        };
        let emit = self.emit;
        add_windowed(
            &self.grouped,
            WindowedAggregation {
                processor_prefix: "KSTREAM-AGGREGATE-",
                store_prefix: "KSTREAM-AGGREGATE-STATE-STORE-",
                materialized,
                default_values,
                min_retention,
                // A sliding window store's retention counts from its newest window start, which
                // can be a millisecond past stream time (a right window). With exactly twice the
                // time difference plus grace, the window a record copies its left window's
                // aggregate from can expire a millisecond or two early (it does in Kafka
                // Streams); 2 ms more keep every window a record can still reach.
                retention_slack: if matches!(kind, TimeWindowKind::Sliding(_)) {
                    2
                } else {
                    0
                },
                session: false,
                windowed_keys: Arc::new(move |s| {
                    Arc::new(WindowedSerdes::time_windowed_ms(s, length))
                }),
                suppress_grace: kind.grace(),
                inclusive_end: matches!(kind, TimeWindowKind::Sliding(_)),
                emit,
                what: what.to_owned(),
            },
            move |store: String, cached: bool, time_store: String, on_close: bool| {
                let forwarding = match (on_close, cached) {
                    (true, _) => Forwarding::Final,
                    (false, true) => Forwarding::Cached,
                    (false, false) => Forwarding::Immediate,
                };
                let table = WindowTable::new(store, length, forwarding);
                let clock = match kind {
                    TimeWindowKind::Time(windows) => {
                        WindowClock::for_time_windows(time_store, &windows)
                    }
                    TimeWindowKind::Sliding(_) => WindowClock::new(time_store),
                };
                let emitter = on_close.then(FinalEmitter::new);
                match kind {
                    TimeWindowKind::Time(windows) => TimeOrSliding::Time(TimeWindowAggregate {
                        windows,
                        adder: adder.clone(),
                        table,
                        clock,
                        emitter,
                    }),
                    TimeWindowKind::Sliding(windows) => {
                        TimeOrSliding::Sliding(SlidingWindowAggregate {
                            windows,
                            adder: adder.clone(),
                            table,
                            clock,
                            emitter,
                        })
                    }
                }
            },
        )
    }

    /// Counts records per key and window.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// // Clicks per user in 5-minute windows that start every minute.
    /// let counts: KTable<Windowed<String>, i64> = clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(300)).advance_by(Duration::from_secs(60)))
    ///     .count(Materialized::as_("clicks-5m"));
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            materialized,
            SerdeSlot::explicit(Serdes::i64()),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
        )
    }

    /// Combines the values of each key and window with `reducer(aggregate, value)`; the first
    /// value is the initial aggregate.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let readings = builder.stream::<String, i64>("readings", Consumed::with(Serdes::string(), Serdes::i64()));
    /// // The highest reading per sensor over the last 10 seconds, for every reading.
    /// let peaks = readings
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::of_time_difference_with_no_grace(Duration::from_secs(10)))
    ///     .reduce(|a, b| a.max(b), Materialized::as_("peaks"));
    /// ```
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let default_values = self.grouped.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, value: V, agg: Option<V>| match agg {
                Some(agg) => reducer(agg, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key and window into an aggregate that starts as
    /// `initializer()`.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let orders = builder.stream::<String, i64>("orders", Consumed::with(Serdes::string(), Serdes::i64()));
    /// // Order volume per customer per hour.
    /// let hourly = orders
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(3600)))
    ///     .aggregate(|| 0i64, |_, amount, total| total + amount, Materialized::with(Serdes::string(), Serdes::i64()));
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.aggregate_with(
            materialized,
            SerdeSlot::DefaultValue,
            Arc::new(move |k, v, agg: Option<VA>| {
                aggregator(k, v, agg.unwrap_or_else(&initializer))
            }),
        )
    }
}

/// The processor of a time-windowed aggregation: one type, so a factory can build either.
enum TimeOrSliding<K, V, VA> {
    Time(TimeWindowAggregate<K, V, VA>),
    Sliding(SlidingWindowAggregate<K, V, VA>),
}

impl<K: Data, V: Data, VA: Data> Processor<K, V, Windowed<K>, Change<VA>>
    for TimeOrSliding<K, V, VA>
{
    fn init(
        &mut self,
        ctx: &mut streams_core::ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> streams_core::ProcessorResult {
        match self {
            TimeOrSliding::Time(p) => p.init(ctx),
            TimeOrSliding::Sliding(p) => p.init(ctx),
        }
    }

    fn process(
        &mut self,
        record: streams_core::Record<K, V>,
        ctx: &mut streams_core::ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> streams_core::ProcessorResult {
        match self {
            TimeOrSliding::Time(p) => p.process(record, ctx),
            TimeOrSliding::Sliding(p) => p.process(record, ctx),
        }
    }

    fn flushed(
        &mut self,
        ctx: &mut streams_core::ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> streams_core::ProcessorResult {
        match self {
            TimeOrSliding::Time(p) => p.flushed(ctx),
            TimeOrSliding::Sliding(p) => p.flushed(ctx),
        }
    }
}

/// A grouped stream cut into sessions, ready to aggregate. Made by
/// [`KGroupedStream::windowed_by`] with [`SessionWindows`]. For final results only, follow the
/// aggregation with [`KTable::suppress`].
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: SerdeSlot<VA>,
        initial: Arc<dyn Fn() -> Option<VA> + Send + Sync>,
        adder: Adder<K, V, VA>,
        merger: SessionMerger<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        if let Err(e) = windows.validate() {
            self.grouped
                .graph
                .borrow_mut()
                .defer_error(streams_core::StreamsError::config("SessionWindows", e));
        }
        add_windowed(
            &self.grouped,
            WindowedAggregation {
                processor_prefix: "KSTREAM-AGGREGATE-",
                store_prefix: "KSTREAM-AGGREGATE-STATE-STORE-",
                materialized,
                default_values,
                min_retention: windows
                    .inactivity_gap_ms()
                    .saturating_add(windows.grace_ms()),
                retention_slack: 0,
                session: true,
                windowed_keys: Arc::new(|s| Arc::new(WindowedSerdes::session_windowed(s))),
                suppress_grace: windows
                    .grace_ms()
                    .saturating_add(windows.inactivity_gap_ms()),
                inclusive_end: true,
                emit: EmitStrategy::OnWindowUpdate,
                what: "the inactivity gap plus the grace period".to_owned(),
            },
            move |store: String, cached: bool, time_store: String, _on_close: bool| {
                SessionWindowAggregate {
                    windows,
                    adder: adder.clone(),
                    merger: merger.clone(),
                    initial: initial.clone(),
                    store_name: store,
                    cached,
                    store: None,
                    clock: WindowClock::new(time_store),
                }
            },
        )
    }

    /// Counts records per key and session.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let clicks = builder.stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// // Clicks per visit: a visit ends after 30 minutes without clicks.
    /// let per_visit = clicks
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(1800)))
    ///     .count(Materialized::as_("clicks-per-visit"));
    /// ```
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            materialized,
            SerdeSlot::explicit(Serdes::i64()),
            Arc::new(|| None),
            Arc::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
            Arc::new(|_, a: Option<i64>, b: i64| a.unwrap_or(0) + b),
        )
    }

    /// Combines the values of each key and session with `reducer(aggregate, value)`; merging
    /// sessions combines their aggregates with it too.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let spend = builder.stream::<String, i64>("spend", Consumed::with(Serdes::string(), Serdes::i64()));
    /// let per_session = spend
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(600)))
    ///     .reduce(|a, b| a + b, Materialized::as_("spend-per-session"));
    /// ```
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let reducer = Arc::new(reducer);
        let merge = reducer.clone();
        let default_values = self.grouped.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(|| None),
            Arc::new(move |_, value: V, agg: Option<V>| match agg {
                Some(agg) => reducer(agg, value),
                None => value,
            }),
            Arc::new(move |_, a: Option<V>, b: V| match a {
                Some(a) => merge(a, b),
                None => b,
            }),
        )
    }

    /// Folds the values of each key and session into an aggregate that starts as
    /// `initializer()`; when a record bridges two sessions, `merger` combines their aggregates.
    ///
    /// ```
    /// # use streams_dsl::prelude::*;
    /// use std::time::Duration;
    /// # let builder = StreamsBuilder::new();
    /// # let pages = builder.stream::<String, String>("page-views", Consumed::with(Serdes::string(), Serdes::string()));
    /// // The pages of each visit, in arrival order.
    /// let visits = pages
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(1800)))
    ///     .aggregate(
    ///         String::new,
    ///         |_, page, pages| if pages.is_empty() { page } else { format!("{pages},{page}") },
    ///         |_, a, b| [a, b].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(","),
    ///         Materialized::with(Serdes::string(), Serdes::string()),
    ///     );
    /// ```
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let initializer = Arc::new(initializer);
        let (init_agg, init_merge) = (initializer.clone(), initializer.clone());
        self.aggregate_with(
            materialized,
            SerdeSlot::DefaultValue,
            Arc::new(move || Some(initializer())),
            Arc::new(move |k, v, agg: Option<VA>| {
                aggregator(k, v, agg.unwrap_or_else(|| init_agg()))
            }),
            Arc::new(move |k, a: Option<VA>, b: VA| {
                merger(k, a.unwrap_or_else(|| init_merge()), b)
            }),
        )
    }
}
