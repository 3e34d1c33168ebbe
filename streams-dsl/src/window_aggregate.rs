//! Windowed aggregation processors: time windows (tumbling, hopping), sliding windows and session
//! windows, with Kafka Streams' semantics.
//!
//! The contract (stream time, lateness, what is emitted, and where it differs from Kafka
//! Streams) is documented on the public module, [`crate::windowed`].

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use state_stores::typed::{KeyValueStore, SessionStore, WindowStore};
use state_stores::SessionWindow;
use streams_core::processor::{BoxError, Processor, ProcessorContext, ProcessorResult};
use streams_core::record::{Headers, Record};

use crate::aggregate::Adder;
use crate::change::{Change, ValueAndTimestamp};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows, Window, Windowed};
use crate::Data;

/// `(key, aggregate so far or None, a session's aggregate) -> merged aggregate`.
pub(crate) type SessionMerger<K, VA> = Arc<dyn Fn(&K, Option<VA>, VA) -> VA + Send + Sync>;

/// When a windowed aggregation forwards its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// Every update of a window, through the record cache when the store has one (the
    /// default, as Kafka Streams' `EmitStrategy.onWindowUpdate()`).
    #[default]
    OnWindowUpdate,
    /// Each window's final value, once, when stream time closes it (window end plus grace);
    /// Kafka Streams' `EmitStrategy.onWindowClose()`.
    OnWindowClose,
}

/// How a window store's changes leave the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarding {
    /// Each change at once.
    Immediate,
    /// What the cache writes down.
    Cached,
    /// Only final results, through a [`FinalEmitter`].
    Final,
}

fn used_before_init(store: &str) -> BoxError {
    format!("store `{store}` used before init").into()
}

/// The time-window kinds whose windows live in a window store.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeWindowKind {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

impl TimeWindowKind {
    /// A window's end is its start plus this.
    pub(crate) fn length(&self) -> i64 {
        match self {
            TimeWindowKind::Time(w) => w.size_ms(),
            TimeWindowKind::Sliding(w) => w.time_difference_ms(),
        }
    }

    pub(crate) fn grace(&self) -> i64 {
        match self {
            TimeWindowKind::Time(w) => w.grace_ms(),
            TimeWindowKind::Sliding(w) => w.grace_ms(),
        }
    }

    /// Whether a window ending at `end` is closed at close time `close`.
    fn is_closed(&self, end: i64, close: i64) -> bool {
        match self {
            // `end` is exclusive.
            TimeWindowKind::Time(_) => end <= close,
            // `end` is inclusive.
            TimeWindowKind::Sliding(_) => end < close,
        }
    }

    /// The largest window start that is closed at `close`.
    fn last_closed_start(&self, close: i64) -> i64 {
        match self {
            TimeWindowKind::Time(w) => close.saturating_sub(w.size_ms()),
            TimeWindowKind::Sliding(w) => close
                .saturating_sub(w.time_difference_ms())
                .saturating_sub(1),
        }
    }
}

/// A window store holding `ValueAndTimestamp<VA>` per key and window start, and how its
/// changes are forwarded.
pub(crate) struct WindowTable<K, VA> {
    pub(crate) store_name: String,
    length: i64,
    forwarding: Forwarding,
    store: Option<WindowStore<K, ValueAndTimestamp<VA>>>,
}

impl<K: Data, VA: Data> WindowTable<K, VA> {
    pub(crate) fn new(store_name: String, length: i64, forwarding: Forwarding) -> Self {
        WindowTable {
            store_name,
            length,
            forwarding,
            store: None,
        }
    }

    fn init<KO, VO>(&mut self, ctx: &ProcessorContext<'_, KO, VO>) -> ProcessorResult {
        self.store = Some(ctx.window_store(&self.store_name)?);
        Ok(())
    }

    fn store(&self) -> Result<&WindowStore<K, ValueAndTimestamp<VA>>, BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| used_before_init(&self.store_name))
    }

    fn is_null_key(&self, key: &K) -> bool {
        self.store.as_ref().is_some_and(|s| s.is_null_key(key))
    }

    fn window(&self, start: i64) -> Window {
        Window::new(start, start.saturating_add(self.length))
    }

    /// Folds a record at `t` into `key`'s window at `start` with `adder` (which gets the window's
    /// aggregate so far) in one store operation, forwarding the change at once when uncached;
    /// returns whether the window is new.
    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &self,
        key: &K,
        start: i64,
        t: i64,
        adder: impl FnOnce(Option<VA>) -> VA,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult<bool> {
        let immediate = self.forwarding == Forwarding::Immediate;
        let (created, change) = self.store()?.update(key, start, |old| {
            let created = old.is_none();
            let timestamp = old.as_ref().map_or(t, |o| o.timestamp.max(t));
            let old = old.map(|o| o.value);
            if immediate {
                let new = adder(old.clone());
                let stored = ValueAndTimestamp {
                    value: new.clone(),
                    timestamp,
                };
                (stored, (created, Some((new, old, timestamp))))
            } else {
                let stored = ValueAndTimestamp {
                    value: adder(old),
                    timestamp,
                };
                (stored, (created, None))
            }
        })?;
        if let Some((new, old, timestamp)) = change {
            ctx.forward(Record {
                key: Windowed::new(key.clone(), self.window(start)),
                value: Change::new(Some(new), old),
                timestamp,
                headers: headers.clone(),
            })?;
        }
        Ok(created)
    }

    /// Stores `new` for `key`'s window at `start` and forwards the change at once when uncached.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        key: &K,
        start: i64,
        new: VA,
        old: Option<VA>,
        timestamp: i64,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        let store = self.store()?;
        match self.forwarding {
            Forwarding::Immediate => {
                store.put(
                    key,
                    start,
                    Some(&ValueAndTimestamp {
                        value: new.clone(),
                        timestamp,
                    }),
                )?;
                ctx.forward(Record {
                    key: Windowed::new(key.clone(), self.window(start)),
                    value: Change::new(Some(new), old),
                    timestamp,
                    headers: headers.clone(),
                })
            }
            // Cached: the processor forwards what the cache wrote down once per record.
            Forwarding::Cached | Forwarding::Final => {
                store.put(
                    key,
                    start,
                    Some(&ValueAndTimestamp {
                        value: new,
                        timestamp,
                    }),
                )?;
                Ok(())
            }
        }
    }

    /// Forwards what the cache wrote down since the last call.
    fn forward_emissions(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if self.forwarding != Forwarding::Cached {
            return Ok(());
        }
        for e in self.store()?.drain_emissions()? {
            let (key, start) = e.key;
            let Some(new) = e.new_value else {
                continue; // windows are never deleted by their aggregation
            };
            ctx.forward(Record::new(
                Windowed::new(key, self.window(start)),
                Change::new(Some(new.value), e.old_value.map(|o| o.value)),
                new.timestamp,
            ))?;
        }
        Ok(())
    }
}

/// The times a windowed processor keeps in its small changelogged store next to the windows:
/// the largest stream time it has seen and, with emit-on-close, the close time of its last
/// emission. A restarted task's stream time starts again from its first record; with these, a
/// record for a window that had closed before the restart is still dropped as late, and a window
/// emitted before is never emitted again.
pub(crate) struct WindowClock {
    store_name: String,
    state: Option<KeyValueStore<String, i64>>,
    stream_time: i64,
    last_close: i64,
    /// The stream time last written to the store.
    persisted: i64,
    /// For time windows, `(offset, step)`: lateness only changes when `(stream time - offset)
    /// / step` does (a window end plus grace is passed), so stream time is written then only.
    quantum: Option<(i64, i64)>,
    /// The store keys, allocated once.
    stream_time_key: String,
    last_close_key: String,
}

const LAST_CLOSE_KEY: &str = "last-emitted-close-time";
const STREAM_TIME_KEY: &str = "stream-time";

impl WindowClock {
    /// A clock for windows whose close decisions can change at any stream time.
    pub(crate) fn new(store_name: String) -> Self {
        WindowClock {
            store_name,
            state: None,
            stream_time: i64::MIN,
            last_close: i64::MIN,
            persisted: i64::MIN,
            quantum: None,
            stream_time_key: STREAM_TIME_KEY.to_owned(),
            last_close_key: LAST_CLOSE_KEY.to_owned(),
        }
    }

    /// A clock for time windows (`size`, `advance`, `grace`): windows close only when stream time
    /// reaches `k * advance + size + grace`, so stream time is written only when it passes one
    /// of those; a restart then judges every record exactly as before.
    pub(crate) fn for_time_windows(store_name: String, windows: &TimeWindows) -> Self {
        let mut clock = Self::new(store_name);
        if windows.advance_ms() > 0 {
            clock.quantum = Some((
                windows.size_ms().saturating_add(windows.grace_ms()),
                windows.advance_ms(),
            ));
        }
        clock
    }

    pub(crate) fn init<KO, VO>(&mut self, ctx: &ProcessorContext<'_, KO, VO>) -> ProcessorResult {
        let state: KeyValueStore<String, i64> = ctx.key_value_store(&self.store_name)?;
        self.last_close = state.get(&self.last_close_key)?.unwrap_or(i64::MIN);
        self.stream_time = state.get(&self.stream_time_key)?.unwrap_or(i64::MIN);
        self.persisted = self.stream_time;
        self.state = Some(state);
        Ok(())
    }

    fn state(&self) -> Result<&KeyValueStore<String, i64>, BoxError> {
        self.state
            .as_ref()
            .ok_or_else(|| used_before_init(&self.store_name))
    }

    /// The stream time to judge lateness by: the task's (`task_stream_time`, this record
    /// included), but never below what this processor saw before a restart.
    pub(crate) fn observe(&mut self, task_stream_time: i64) -> ProcessorResult<i64> {
        if task_stream_time > self.stream_time {
            self.stream_time = task_stream_time;
            // A cached store: one changelog record per commit, in the commit's transaction.
            self.state()?
                .put(&self.stream_time_key, &task_stream_time)?;
        }
        Ok(self.stream_time)
    }

    /// The close time of the last emission; `i64::MIN` before the first.
    fn last_close(&self) -> i64 {
        self.last_close
    }

    fn emitted(&mut self, close: i64) -> ProcessorResult {
        self.last_close = close;
        self.state()?.put(&self.last_close_key, &close)?;
        Ok(())
    }
}

/// Emits each window's final value once, when it closes; see the [module docs](self).
pub(crate) struct FinalEmitter {
    /// Ends of the windows in the store not yet emitted.
    pending_ends: BTreeSet<i64>,
}

impl FinalEmitter {
    pub(crate) fn new() -> Self {
        FinalEmitter {
            pending_ends: BTreeSet::new(),
        }
    }

    /// Finds the windows still to emit.
    fn init<K: Data, VA: Data>(
        &mut self,
        kind: &TimeWindowKind,
        table: &WindowTable<K, VA>,
        clock: &WindowClock,
    ) -> ProcessorResult {
        let lower = Self::lower_start(kind, clock.last_close());
        self.pending_ends = table
            .store()?
            .fetch_all(lower, i64::MAX)?
            .into_iter()
            .map(|(_, start, _)| start.saturating_add(table.length))
            .collect();
        Ok(())
    }

    /// The first window start not emitted at `last_close`.
    fn lower_start(kind: &TimeWindowKind, last_close: i64) -> i64 {
        if last_close == i64::MIN {
            i64::MIN
        } else {
            kind.last_closed_start(last_close).saturating_add(1)
        }
    }

    fn note_window(&mut self, end: i64) {
        self.pending_ends.insert(end);
    }

    /// Forwards the final value of every window that `close` closes and that was not emitted.
    fn emit_closed<K: Data, VA: Data>(
        &mut self,
        close: i64,
        kind: &TimeWindowKind,
        table: &WindowTable<K, VA>,
        clock: &mut WindowClock,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        match self.pending_ends.first() {
            Some(end) if kind.is_closed(*end, close) => {}
            _ => return Ok(()),
        }
        let lower = Self::lower_start(kind, clock.last_close());
        let upper = kind.last_closed_start(close);
        for (key, start, value) in table.store()?.fetch_all(lower, upper)? {
            ctx.forward(Record {
                key: Windowed::new(key, table.window(start)),
                value: Change::new(Some(value.value), None),
                timestamp: value.timestamp,
                headers: headers.clone(),
            })?;
        }
        clock.emitted(close)?;
        self.pending_ends = match kind {
            TimeWindowKind::Time(_) => self.pending_ends.split_off(&close.saturating_add(1)),
            TimeWindowKind::Sliding(_) => self.pending_ends.split_off(&close),
        };
        Ok(())
    }
}

fn log_late(store: &str, timestamp: i64, window: Window, close: i64) {
    tracing::debug!(
        store,
        timestamp,
        window_start = window.start,
        window_end = window.end,
        close_time = close,
        "dropping a late record: its window has closed"
    );
}

/// Aggregates records into time windows (tumbling or hopping).
pub(crate) struct TimeWindowAggregate<K, V, VA> {
    pub(crate) windows: TimeWindows,
    pub(crate) adder: Adder<K, V, VA>,
    pub(crate) table: WindowTable<K, VA>,
    pub(crate) clock: WindowClock,
    pub(crate) emitter: Option<FinalEmitter>,
}

impl<K: Data, V: Data, VA: Data> Processor<K, V, Windowed<K>, Change<VA>>
    for TimeWindowAggregate<K, V, VA>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> ProcessorResult {
        self.table.init(ctx)?;
        self.clock.init(ctx)?;
        if let Some(emitter) = &mut self.emitter {
            emitter.init(
                &TimeWindowKind::Time(self.windows),
                &self.table,
                &self.clock,
            )?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            tracing::debug!(store = %self.table.store_name, "skipping a record with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let t = r.timestamp;
        let stream_time = self.clock.observe(ctx.stream_time().max(t))?;
        let mut close = stream_time.saturating_sub(self.windows.grace_ms());
        let kind = TimeWindowKind::Time(self.windows);
        if let Some(emitter) = &mut self.emitter {
            close = close.max(self.clock.last_close());
            emitter.emit_closed(close, &kind, &self.table, &mut self.clock, &r.headers, ctx)?;
        }
        for window in self.windows.windows_for(t) {
            if window.end <= close {
                ctx.record_dropped_late();
                log_late(&self.table.store_name, t, window, close);
                continue;
            }
            let (adder, key, value) = (&self.adder, &r.key, &r.value);
            let created = self.table.aggregate(
                key,
                window.start,
                t,
                |old| adder(key, value.clone(), old),
                &r.headers,
                ctx,
            )?;
            if created {
                if let Some(emitter) = &mut self.emitter {
                    emitter.note_window(window.end);
                }
            }
        }
        self.table.forward_emissions(ctx)
    }

    fn flushed(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}

/// A sliding window's aggregate while the algorithm works on it: the value (absent for a window
/// about to be created empty) and the largest timestamp in it.
#[derive(Clone)]
struct Slot<VA> {
    value: Option<VA>,
    timestamp: i64,
}

impl<VA> From<ValueAndTimestamp<VA>> for Slot<VA> {
    fn from(v: ValueAndTimestamp<VA>) -> Self {
        Slot {
            value: Some(v.value),
            timestamp: v.timestamp,
        }
    }
}

/// Aggregates records into sliding windows with Kafka Streams' algorithm: each record has a
/// left window `[t - d, t]` and, when later records fall within `d` of it, a right window
/// `[t + 1, t + 1 + d]`; records before `d` share the window `[0, d]`.
pub(crate) struct SlidingWindowAggregate<K, V, VA> {
    pub(crate) windows: SlidingWindows,
    pub(crate) adder: Adder<K, V, VA>,
    pub(crate) table: WindowTable<K, VA>,
    pub(crate) clock: WindowClock,
    pub(crate) emitter: Option<FinalEmitter>,
}

/// The record being aggregated and the close time it meets.
struct Step<'a, K, V> {
    key: &'a K,
    value: &'a V,
    timestamp: i64,
    headers: &'a Headers,
    close: i64,
}

impl<K: Data, V: Data, VA: Data> SlidingWindowAggregate<K, V, VA> {
    fn d(&self) -> i64 {
        self.windows.time_difference_ms()
    }

    /// Folds the record into the window starting at `start` (holding `slot`), if it is open.
    fn update_window(
        &mut self,
        start: i64,
        slot: Slot<VA>,
        step: &Step<'_, K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        let end = start.saturating_add(self.d());
        if end < step.close {
            ctx.record_dropped_late();
            log_late(
                &self.table.store_name,
                step.timestamp,
                Window::new(start, end),
                step.close,
            );
            return Ok(());
        }
        let timestamp = match slot.value {
            None => step.timestamp,
            Some(_) => step.timestamp.max(slot.timestamp),
        };
        let new = (self.adder)(step.key, step.value.clone(), slot.value.clone());
        self.table.put(
            step.key,
            start,
            new,
            slot.value,
            timestamp,
            step.headers,
            ctx,
        )?;
        if let Some(emitter) = &mut self.emitter {
            emitter.note_window(end);
        }
        Ok(())
    }

    /// Creates the record's right window `[t + 1, t + 1 + d]` holding `right` (the aggregate of
    /// the later records it contains); the record itself is not in it.
    fn create_right_window(
        &mut self,
        right: Slot<VA>,
        step: &Step<'_, K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        let Some(value) = right.value else {
            return Ok(());
        };
        let start = step.timestamp.saturating_add(1);
        self.table.put(
            step.key,
            start,
            value,
            None,
            right.timestamp,
            step.headers,
            ctx,
        )?;
        let end = start.saturating_add(self.d());
        if let Some(emitter) = &mut self.emitter {
            emitter.note_window(end);
        }
        Ok(())
    }

    fn unexpected(&self, start: i64, t: i64) -> BoxError {
        format!(
            "sliding window store `{}`: unexpected window starting at {start} while processing a record at {t}",
            self.table.store_name
        )
        .into()
    }

    /// A record at `t >= d`. Walks the key's windows from the newest start down (as Kafka
    /// Streams does where the store iterates backwards, which fixes the order of the updates).
    fn process_in_order(
        &mut self,
        step: &Step<'_, K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        let (t, d) = (step.timestamp, self.d());
        let found = self.table.store()?.fetch_range(
            step.key,
            t.saturating_sub(d.saturating_mul(2)).max(0),
            t.saturating_add(1),
        )?;
        let mut starts = HashSet::new();
        let mut left: Option<Slot<VA>> = None;
        let mut right: Option<Slot<VA>> = None;
        let (mut left_exists, mut right_exists) = (false, false);
        let mut previous: Option<i64> = None;
        for (start, value) in found.into_iter().rev() {
            starts.insert(start);
            let end = start.saturating_add(d);
            let max_timestamp = value.timestamp;
            if start == t.saturating_add(1) {
                right_exists = true;
            } else if end > t {
                let slot: Slot<VA> = value.into();
                if right.is_none() {
                    right = Some(slot.clone());
                }
                self.update_window(start, slot, step, ctx)?;
            } else if end == t {
                left_exists = true;
                self.update_window(start, value.into(), step, ctx)?;
                if max_timestamp < t {
                    previous = Some(max_timestamp);
                } else {
                    // A record at `t` came before: its windows exist already.
                    return Ok(());
                }
            } else {
                left = Some(value.into());
                previous = Some(max_timestamp);
                break;
            }
        }

        // The previous record's right window, if the record falls in it.
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) && start.saturating_add(d) >= t {
                let empty = Slot {
                    value: None,
                    timestamp: t,
                };
                self.update_window(start, empty, step, ctx)?;
            }
        }
        // The record's left window.
        if !left_exists {
            let slot = match (previous, left) {
                (Some(p), Some(left)) if t.saturating_sub(d) <= p => Slot {
                    value: left.value,
                    timestamp: t,
                },
                _ => Slot {
                    value: None,
                    timestamp: t,
                },
            };
            self.update_window(t.saturating_sub(d), slot, step, ctx)?;
        }
        // The record's right window, if later records fall in it.
        if !right_exists {
            if let Some(right) = right.filter(|r| r.timestamp > t) {
                self.create_right_window(right, step, ctx)?;
            }
        }
        Ok(())
    }

    /// A record before `d`: its left window would start before 0, so it goes into `[0, d]`.
    fn process_early(
        &mut self,
        step: &Step<'_, K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        let t = step.timestamp;
        let found = self
            .table
            .store()?
            .fetch_range(step.key, 0, t.saturating_add(1))?;
        let mut combined: Option<Slot<VA>> = None;
        let mut right: Option<Slot<VA>> = None;
        let mut right_exists = false;
        let mut starts = HashSet::new();
        let mut previous: Option<i64> = None;
        for (start, value) in found {
            starts.insert(start);
            if start == 0 {
                if value.timestamp < t {
                    previous = Some(value.timestamp);
                }
                combined = Some(value.into());
            } else if start <= t {
                let slot: Slot<VA> = value.into();
                right = Some(slot.clone());
                self.update_window(start, slot, step, ctx)?;
            } else if start == t.saturating_add(1) {
                right_exists = true;
            } else {
                return Err(self.unexpected(start, t));
            }
        }
        // Without a right window found, the combined window's later records make up the right
        // window (it holds only records after this one when its newest is later).
        if right.is_none() {
            right = combined.clone().filter(|c| c.timestamp > t);
        }
        if !right_exists {
            if let Some(right) = right.filter(|r| r.timestamp > t) {
                self.create_right_window(right, step, ctx)?;
            }
        }
        if let Some(p) = previous {
            let start = p.saturating_add(1);
            if !starts.contains(&start) {
                let empty = Slot {
                    value: None,
                    timestamp: t,
                };
                self.update_window(start, empty, step, ctx)?;
            }
        }
        let slot = combined.unwrap_or(Slot {
            value: None,
            timestamp: t,
        });
        self.update_window(0, slot, step, ctx)
    }
}

impl<K: Data, V: Data, VA: Data> Processor<K, V, Windowed<K>, Change<VA>>
    for SlidingWindowAggregate<K, V, VA>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> ProcessorResult {
        self.table.init(ctx)?;
        self.clock.init(ctx)?;
        if let Some(emitter) = &mut self.emitter {
            emitter.init(
                &TimeWindowKind::Sliding(self.windows),
                &self.table,
                &self.clock,
            )?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if self.table.is_null_key(&r.key) {
            tracing::debug!(store = %self.table.store_name, "skipping a record with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let (t, d) = (r.timestamp, self.d());
        let stream_time = self.clock.observe(ctx.stream_time().max(t))?;
        let mut close = stream_time.saturating_sub(self.windows.grace_ms());
        let kind = TimeWindowKind::Sliding(self.windows);
        if let Some(emitter) = &mut self.emitter {
            close = close.max(self.clock.last_close());
            emitter.emit_closed(close, &kind, &self.table, &mut self.clock, &r.headers, ctx)?;
        }
        if t.saturating_add(1).saturating_add(d) <= close {
            // Even the record's right window would be closed.
            ctx.record_dropped_late();
            log_late(
                &self.table.store_name,
                t,
                Window::new(t.saturating_sub(d), t),
                close,
            );
            return Ok(());
        }
        let step = Step {
            key: &r.key,
            value: &r.value,
            timestamp: t,
            headers: &r.headers,
            close,
        };
        if t < d {
            self.process_early(&step, ctx)?;
        } else {
            self.process_in_order(&step, ctx)?;
        }
        self.table.forward_emissions(ctx)
    }

    fn flushed(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        self.table.forward_emissions(ctx)
    }
}

/// Aggregates records into session windows: a record merges every session of its key that
/// ends no more than the gap before it or starts no more than the gap after it.
pub(crate) struct SessionWindowAggregate<K, V, VA> {
    pub(crate) windows: SessionWindows,
    pub(crate) adder: Adder<K, V, VA>,
    pub(crate) merger: SessionMerger<K, VA>,
    /// The aggregate merging starts from (Kafka's initializer; absent for count and reduce).
    pub(crate) initial: Arc<dyn Fn() -> Option<VA> + Send + Sync>,
    pub(crate) store_name: String,
    pub(crate) cached: bool,
    pub(crate) store: Option<SessionStore<K, VA>>,
    pub(crate) clock: WindowClock,
}

impl<K: Data, V: Data, VA: Data> SessionWindowAggregate<K, V, VA> {
    fn store(&self) -> Result<&SessionStore<K, VA>, BoxError> {
        self.store
            .as_ref()
            .ok_or_else(|| used_before_init(&self.store_name))
    }

    fn forward(
        &self,
        key: &K,
        window: SessionWindow,
        change: Change<VA>,
        headers: &Headers,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if self.cached {
            return Ok(()); // forwarded once per record, from what the cache writes down
        }
        ctx.forward(Record {
            key: Windowed::new(key.clone(), Window::new(window.start, window.end)),
            value: change,
            timestamp: window.end,
            headers: headers.clone(),
        })
    }

    fn forward_emissions(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if !self.cached {
            return Ok(());
        }
        for e in self.store()?.drain_emissions()? {
            let (key, window) = e.key;
            if e.new_value.is_none() && e.old_value.is_none() {
                continue;
            }
            ctx.forward(Record::new(
                Windowed::new(key, Window::new(window.start, window.end)),
                Change::new(e.new_value, e.old_value),
                window.end,
            ))?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data, VA: Data> Processor<K, V, Windowed<K>, Change<VA>>
    for SessionWindowAggregate<K, V, VA>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>) -> ProcessorResult {
        self.store = Some(ctx.session_store(&self.store_name)?);
        self.clock.init(ctx)
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        if self.store()?.is_null_key(&r.key) {
            tracing::debug!(store = %self.store_name, "skipping a record with a null key");
            ctx.record_dropped_null_key();
            return Ok(());
        }
        let t = r.timestamp;
        let gap = self.windows.inactivity_gap_ms();
        let close = self
            .clock
            .observe(ctx.stream_time().max(t))?
            .saturating_sub(self.windows.grace_ms())
            .saturating_sub(gap);
        let found =
            self.store()?
                .find_sessions(&r.key, t.saturating_sub(gap), t.saturating_add(gap))?;
        let single = SessionWindow { start: t, end: t };
        let mut merged_window = single;
        let mut agg = (self.initial)();
        for (window, value) in &found {
            agg = Some((self.merger)(&r.key, agg, value.clone()));
            merged_window = SessionWindow {
                start: merged_window.start.min(window.start),
                end: merged_window.end.max(window.end),
            };
        }
        if merged_window.end < close {
            ctx.record_dropped_late();
            log_late(
                &self.store_name,
                t,
                Window::new(merged_window.start, merged_window.end),
                close,
            );
            return Ok(());
        }
        if merged_window != single {
            for (window, value) in found {
                self.store()?.remove(&r.key, window)?;
                self.forward(
                    &r.key,
                    window,
                    Change::new(None, Some(value)),
                    &r.headers,
                    ctx,
                )?;
            }
        }
        let new = (self.adder)(&r.key, r.value, agg);
        self.store()?.put(&r.key, merged_window, &new)?;
        self.forward(
            &r.key,
            merged_window,
            Change::new(Some(new), None),
            &r.headers,
            ctx,
        )?;
        self.forward_emissions(ctx)
    }

    fn flushed(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    ) -> ProcessorResult {
        self.forward_emissions(ctx)
    }
}
