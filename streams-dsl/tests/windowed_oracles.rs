//! Windowed aggregations on random, out-of-order input against oracles that recompute every
//! window from the whole input with the same grace rules, through the TopologyTestDriver.
//!
//! - time windows (tumbling and hopping): the oracle walks the input once, tracking stream time,
//!   and counts each record into every window containing it that is still open (end > stream
//!   time - grace); emit-every-update must end with the oracle's count for every window (with
//!   and without the cache), emit-on-close and suppress must emit exactly the windows closed by
//!   the end of the input, once each, with the oracle's count;
//! - sliding windows: the input is on time (within the grace period) or so late that every
//!   window of the record has closed; the oracle defines the windows from the accepted records
//!   (a left window ending at each record, a right window starting just after each record that
//!   has a later one within the time difference) and counts the records in each;
//! - session windows: a plain-list model of the sessions with the same merge, close and
//!   retention rules, and of the suppression buffer.
//!
//! Case counts: `PROPTEST_CASES` (default 64 per property).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use streams_dsl::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn ms(x: i64) -> Duration {
    Duration::from_millis(x as u64)
}

const KEYS: [&str; 3] = ["a", "b", "c"];

/// One output record: the windowed key, the value, the timestamp.
type Out = (Windowed<String>, Option<i64>, i64);

/// Runs `make(grouped input)` over `records` and returns the output and the late drops.
fn run(
    records: &[(usize, i64)],
    make: impl FnOnce(KGroupedStream<String, String>) -> KTable<Windowed<String>, i64>,
) -> Result<(Vec<Out>, u64), TestCaseError> {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default());
    make(grouped)
        .to_stream()
        .process(|| Capture, &[])
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver =
        TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("oracle"))
            .map_err(fail)?;
    let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    for (key, ts) in records {
        input
            .pipe_input_at(KEYS[*key].to_owned(), "x".to_owned(), *ts)
            .map_err(fail)?;
    }
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    let mut got = Vec::new();
    for r in out.read_records_to_list().map_err(fail)? {
        got.push(decode(&r.key, &r.value, r.timestamp)?);
    }
    Ok((got, driver.metrics().dropped_late))
}

/// Writes each windowed result as `key start end` -> `count|-`, so the test reads it back
/// without a windowed serde of its own.
struct Capture;

impl streams_core::Processor<Windowed<String>, Option<i64>, String, String> for Capture {
    fn process(
        &mut self,
        r: streams_core::Record<Windowed<String>, Option<i64>>,
        ctx: &mut streams_core::ProcessorContext<'_, String, String>,
    ) -> streams_core::ProcessorResult {
        let key = format!("{} {} {}", r.key.key, r.key.window.start, r.key.window.end);
        let value = r.value.map_or("-".to_owned(), |v| v.to_string());
        ctx.forward(streams_core::Record::new(key, value, r.timestamp))
    }
}

fn decode(key: &str, value: &str, ts: i64) -> Result<Out, TestCaseError> {
    let parts: Vec<&str> = key.split(' ').collect();
    let (k, s, e) = match parts.as_slice() {
        [k, s, e] => (
            k,
            s.parse::<i64>().map_err(fail)?,
            e.parse::<i64>().map_err(fail)?,
        ),
        _ => return Err(fail(format!("bad key {key}"))),
    };
    let v = if value == "-" {
        None
    } else {
        Some(value.parse::<i64>().map_err(fail)?)
    };
    Ok((Windowed::new((*k).to_owned(), Window::new(s, e)), v, ts))
}

/// The last value of every window in `out`.
fn last_values(out: &[Out]) -> BTreeMap<(String, i64, i64), Option<i64>> {
    out.iter()
        .map(|(w, v, _)| ((w.key.clone(), w.window.start, w.window.end), *v))
        .collect()
}

// ------------------------------------------------------------------ time windows

/// The oracle for time windows: `(key, start) -> (count, max timestamp)`, the drops, and the
/// close time at the end.
struct TimeOracle {
    windows: BTreeMap<(String, i64), (i64, i64)>,
    dropped: u64,
    final_close: i64,
}

fn time_oracle(records: &[(usize, i64)], size: i64, advance: i64, grace: i64) -> TimeOracle {
    let mut windows = BTreeMap::new();
    let mut dropped = 0;
    let mut stream_time = i64::MIN;
    for (key, t) in records {
        stream_time = stream_time.max(*t);
        let close = stream_time - grace;
        // Every window containing t: starts that are multiples of advance in (t - size, t].
        let mut start = (t - size + 1).max(0);
        start += (advance - start % advance) % advance;
        while start <= *t {
            if start + size > close {
                let entry = windows
                    .entry((KEYS[*key].to_owned(), start))
                    .or_insert((0, i64::MIN));
                entry.0 += 1;
                entry.1 = entry.1.max(*t);
            } else {
                dropped += 1;
            }
            start += advance;
        }
    }
    TimeOracle {
        windows,
        dropped,
        final_close: stream_time.saturating_sub(grace),
    }
}

/// Records with keys from 0..3, timestamps wandering forward with jumps back.
fn disordered() -> impl Strategy<Value = Vec<(usize, i64)>> {
    proptest::collection::vec((0usize..3, 0i64..10, 0i64..30), 1..40).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .map(|(key, forward, back)| {
                t += forward;
                (key, (t - back).max(0))
            })
            .collect()
    })
}

#[derive(Debug, Clone, Copy)]
enum Emit {
    Updates,
    UpdatesCached,
    OnClose,
    Suppress,
}

fn emit() -> impl Strategy<Value = Emit> {
    prop_oneof![
        Just(Emit::Updates),
        Just(Emit::UpdatesCached),
        Just(Emit::OnClose),
        Just(Emit::Suppress)
    ]
}

fn materialized(emit: Emit) -> Materialized<String, i64> {
    let m = Materialized::as_("windows");
    match emit {
        Emit::Updates => m.with_caching(false),
        _ => m,
    }
}

/// Checks final results: each closed window once, with the oracle's count and timestamp.
fn check_finals(
    got: &[Out],
    want: impl Iterator<Item = ((String, i64, i64), (i64, i64))>,
) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for (w, _, _) in got {
        let id = (w.key.clone(), w.window.start, w.window.end);
        prop_assert!(seen.insert(id.clone()), "emitted twice: {:?}", id);
    }
    let got: BTreeMap<(String, i64, i64), (Option<i64>, i64)> = got
        .iter()
        .map(|(w, v, ts)| ((w.key.clone(), w.window.start, w.window.end), (*v, *ts)))
        .collect();
    let want: BTreeMap<(String, i64, i64), (Option<i64>, i64)> = want
        .map(|(id, (count, ts))| (id, (Some(count), ts)))
        .collect();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn time_windows_match_a_recomputation_from_scratch(
        records in disordered(),
        size in 1i64..25,
        advance_pick in 1i64..25,
        grace in 0i64..15,
        emit in emit(),
    ) {
        let advance = 1 + (advance_pick - 1) % size;
        let windows = TimeWindows::of_size_and_grace(ms(size), ms(grace)).advance_by(ms(advance));
        let (got, dropped) = run(&records, |g| {
            let w = g.windowed_by(windows);
            match emit {
                Emit::OnClose => w.emit_strategy(EmitStrategy::OnWindowClose).count(materialized(emit)),
                Emit::Suppress => w
                    .count(materialized(emit))
                    .suppress(Suppressed::until_window_closes(BufferConfig::unbounded())),
                _ => w.count(materialized(emit)),
            }
        })?;
        let oracle = time_oracle(&records, size, advance, grace);
        prop_assert_eq!(dropped, oracle.dropped);
        match emit {
            Emit::Updates | Emit::UpdatesCached => {
                let want: BTreeMap<(String, i64, i64), Option<i64>> = oracle
                    .windows
                    .iter()
                    .map(|((k, s), (count, _))| ((k.clone(), *s, s + size), Some(*count)))
                    .collect();
                prop_assert_eq!(last_values(&got), want);
            }
            Emit::OnClose | Emit::Suppress => {
                let close = oracle.final_close;
                check_finals(
                    &got,
                    oracle
                        .windows
                        .iter()
                        .filter(|((_, s), _)| s + size <= close)
                        .map(|((k, s), v)| ((k.clone(), *s, s + size), *v)),
                )?;
            }
        }
    }
}

// ------------------------------------------------------------------ sliding windows

/// Records that are either on time (within the grace period of stream time) or late enough that
/// every window containing them has closed.
fn sliding_input(d: i64, grace: i64) -> impl Strategy<Value = Vec<(usize, i64)>> {
    proptest::collection::vec((0usize..3, 0i64..12, 0i64..100, any::<bool>()), 1..40).prop_map(
        move |steps| {
            let mut stream_time = 0i64;
            let mut out = Vec::new();
            for (key, forward, back, late) in steps {
                let close = stream_time - grace;
                let t = if late && close - d > 0 {
                    // t + 1 + d <= close: even its right window is closed.
                    (close - d - 1 - back % 20).max(0)
                } else {
                    let on_time = (stream_time - back % (grace + 1)).max(0);
                    if forward > 6 {
                        stream_time + forward - 6
                    } else {
                        on_time
                    }
                };
                stream_time = stream_time.max(t);
                out.push((key, t));
            }
            out
        },
    )
}

/// `(key, window start) -> (count, max timestamp)`.
type Counts = BTreeMap<(String, i64), (i64, i64)>;

/// The sliding windows of the accepted records, with their counts, and the drops.
fn sliding_oracle(records: &[(usize, i64)], d: i64, grace: i64) -> (Counts, u64) {
    let mut accepted: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut stream_time = i64::MIN;
    let mut dropped = 0;
    for (key, t) in records {
        stream_time = stream_time.max(*t);
        if t + 1 + d <= stream_time - grace {
            dropped += 1;
        } else {
            accepted.entry(KEYS[*key].to_owned()).or_default().push(*t);
        }
    }
    let mut windows = BTreeMap::new();
    for (key, times) in &accepted {
        let mut starts = BTreeSet::new();
        for t in times {
            starts.insert((t - d).max(0));
            if times.iter().any(|r| t < r && *r <= t + 1 + d) {
                starts.insert(t + 1);
            }
        }
        for start in starts {
            let inside: Vec<i64> = times
                .iter()
                .copied()
                .filter(|r| start <= *r && *r <= start + d)
                .collect();
            if let Some(max) = inside.iter().max() {
                windows.insert((key.clone(), start), (inside.len() as i64, *max));
            }
        }
    }
    (windows, dropped)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn sliding_windows_match_a_recomputation_from_scratch(
        (d, grace, records) in (1i64..15, 0i64..10).prop_flat_map(|(d, g)| (Just(d), Just(g), sliding_input(d, g))),
        emit in emit(),
    ) {
        let windows = SlidingWindows::of_time_difference_and_grace(ms(d), ms(grace));
        let (got, dropped) = run(&records, |g| {
            let w = g.windowed_by(windows);
            match emit {
                Emit::OnClose => w.emit_strategy(EmitStrategy::OnWindowClose).count(materialized(emit)),
                Emit::Suppress => w
                    .count(materialized(emit))
                    .suppress(Suppressed::until_window_closes(BufferConfig::unbounded())),
                _ => w.count(materialized(emit)),
            }
        })?;
        let (want, want_dropped) = sliding_oracle(&records, d, grace);
        prop_assert_eq!(dropped, want_dropped);
        let stream_time = records.iter().map(|(_, t)| *t).max().unwrap_or(0);
        match emit {
            Emit::Updates | Emit::UpdatesCached => {
                let want: BTreeMap<(String, i64, i64), Option<i64>> = want
                    .iter()
                    .map(|((k, s), (count, _))| ((k.clone(), *s, s + d), Some(*count)))
                    .collect();
                prop_assert_eq!(last_values(&got), want);
            }
            Emit::OnClose | Emit::Suppress => {
                // Closed: end < stream time - grace (sliding windows' ends are inclusive).
                check_finals(
                    &got,
                    want.iter()
                        .filter(|((_, s), _)| s + d < stream_time - grace)
                        .map(|((k, s), v)| ((k.clone(), *s, s + d), *v)),
                )?;
            }
        }
    }
}

// ------------------------------------------------------------------ session windows

/// A plain-list model of session aggregation and of a suppression buffer downstream.
struct SessionModel {
    gap: i64,
    grace: i64,
    suppress: bool,
    /// Live sessions in the store: (key, start, end) -> count.
    store: BTreeMap<(String, i64, i64), i64>,
    /// The store's observed time: the largest session end written.
    observed: i64,
    stream_time: i64,
    dropped: u64,
    /// Every update forwarded, in order.
    updates: Vec<((String, i64, i64), Option<i64>)>,
    /// Suppression buffer: (end, key, start) -> count; and what it emitted.
    buffer: BTreeMap<(i64, String, i64), i64>,
    finals: Vec<((String, i64, i64), i64)>,
}

impl SessionModel {
    fn new(gap: i64, grace: i64, suppress: bool) -> Self {
        SessionModel {
            gap,
            grace,
            suppress,
            store: BTreeMap::new(),
            observed: i64::MIN,
            stream_time: i64::MIN,
            dropped: 0,
            updates: Vec::new(),
            buffer: BTreeMap::new(),
            finals: Vec::new(),
        }
    }

    fn floor(&self) -> i64 {
        if self.observed == i64::MIN {
            i64::MIN
        } else {
            self.observed - (self.gap + self.grace) + 1
        }
    }

    fn forward(&mut self, id: (String, i64, i64), value: Option<i64>) {
        self.updates.push((id.clone(), value));
        if !self.suppress {
            return;
        }
        // The suppression buffer downstream.
        let (key, start, end) = id;
        match value {
            Some(count) => {
                self.buffer.insert((end, key, start), count);
            }
            None => {
                self.buffer.remove(&(end, key, start));
            }
        }
        let expiry = self.stream_time - self.grace - self.gap;
        let closed: Vec<(i64, String, i64)> = self
            .buffer
            .keys()
            .filter(|(end, _, _)| *end < expiry)
            .cloned()
            .collect();
        for k in closed {
            if let Some(count) = self.buffer.remove(&k) {
                self.finals.push(((k.1, k.2, k.0), count));
            }
        }
    }

    fn process(&mut self, key: &str, t: i64) {
        self.stream_time = self.stream_time.max(t);
        let close = self.stream_time - self.grace - self.gap;
        let from_end = (t - self.gap).max(self.floor());
        let found: Vec<((String, i64, i64), i64)> = self
            .store
            .iter()
            .filter(|((k, s, e), _)| k == key && *e >= from_end && *s <= t + self.gap)
            .map(|(id, c)| (id.clone(), *c))
            .collect();
        let start = found
            .iter()
            .map(|((_, s, _), _)| *s)
            .min()
            .unwrap_or(t)
            .min(t);
        let end = found
            .iter()
            .map(|((_, _, e), _)| *e)
            .max()
            .unwrap_or(t)
            .max(t);
        if end < close {
            self.dropped += 1;
            return;
        }
        let count = found.iter().map(|(_, c)| c).sum::<i64>() + 1;
        let merged = (key.to_owned(), start, end);
        if merged != (key.to_owned(), t, t) {
            // Sessions go in end order, then start order, as the store returns them.
            let mut found = found;
            found.sort_by_key(|((_, s, e), _)| (*e, *s));
            for (id, _) in found {
                self.store.remove(&id);
                self.observed = self.observed.max(id.2);
                self.forward(id, None);
            }
        }
        // The store drops a write whose session has already expired.
        self.observed = self.observed.max(end);
        if end >= self.floor() {
            self.store.insert(merged.clone(), count);
        }
        self.forward(merged, Some(count));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn session_windows_match_a_model_with_the_same_rules(
        records in disordered(),
        gap in 1i64..15,
        grace in 0i64..15,
        suppress in any::<bool>(),
    ) {
        let windows = SessionWindows::of_inactivity_gap_and_grace(ms(gap), ms(grace));
        let (got, dropped) = run(&records, |g| {
            let table = g.windowed_by(windows).count(Materialized::as_("sessions").with_caching(false));
            if suppress {
                table.suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
            } else {
                table
            }
        })?;
        let mut model = SessionModel::new(gap, grace, suppress);
        for (key, t) in &records {
            model.process(KEYS[*key], *t);
        }
        let got: Vec<((String, i64, i64), Option<i64>)> = got
            .into_iter()
            .map(|(w, v, _)| ((w.key, w.window.start, w.window.end), v))
            .collect();
        if suppress {
            let want: Vec<((String, i64, i64), Option<i64>)> =
                model.finals.iter().map(|(id, c)| (id.clone(), Some(*c))).collect();
            prop_assert_eq!(got, want);
        } else {
            prop_assert_eq!(got, model.updates.clone());
        }
        prop_assert_eq!(dropped, model.dropped);
    }
}
