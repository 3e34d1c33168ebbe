//! Joins on random, out-of-order input against oracles that recompute every result from the
//! whole input, through the TopologyTestDriver.
//!
//! Stream-stream joins (inner, left, outer; random before/after/grace): the oracle first works
//! out, for every record, the task's stream time when it arrives (the largest timestamp so far)
//! and whether it is late (`t + after + grace < stream time` for a left record, `t + before +
//! grace` for a right one). Then each accepted record joins every accepted record of the other
//! side that arrived before it with the same key and a timestamp in its window, in partner
//! timestamp order (arrival order among equal timestamps), the result stamped with the larger
//! timestamp. An accepted record of an outer side is emitted alone at the first accepted record
//! whose arrival moves stream time past its window's close, if no partner arrived before that
//! record; such records come before that record's joins, ordered by timestamp, right before
//! left, key, arrival.
//!
//! Stream-table joins (inner, left; the table read from its source store, or materialized after
//! a `filter`; with and without a cache): the oracle walks the input in order, keeping the
//! table as a map, and looks each stream record up in it.
//!
//! Table-table joins (inner, left, outer): the oracle keeps both tables as maps and, after each
//! update, recomputes the joined row of that key from scratch; the join must emit exactly the
//! rows that changed, with their new values, and the joined table's last value per key must be
//! the join of the final tables.
//!
//! Case counts: `PROPTEST_CASES` (default 64 per property).

use std::collections::BTreeMap;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

/// One input record: left side or not, key index, timestamp.
type Input = (bool, usize, i64);

/// One output record: key, value, timestamp.
type Out = (String, String, i64);

fn value(i: usize, left: bool) -> String {
    format!("{}{i}", if left { "L" } else { "R" })
}

fn or_null(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "null".to_owned())
}

fn run_stream_join(
    kind: Kind,
    windows: JoinWindows,
    records: &[Input],
) -> Result<(Vec<Out>, u64), TestCaseError> {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder.stream::<String, String>("left", c());
    let right = builder.stream::<String, String>("right", c());
    let joined = StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string());
    let out = match kind {
        Kind::Inner => left.join(&right, |l, r| format!("{l}+{r}"), windows, joined),
        Kind::Left => left.left_join(
            &right,
            |l, r| format!("{l}+{}", or_null(r)),
            windows,
            joined,
        ),
        Kind::Outer => left.outer_join(
            &right,
            |l, r| format!("{}+{}", or_null(l), or_null(r)),
            windows,
            joined,
        ),
    };
    out.to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver =
        TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("oracle"))
            .map_err(fail)?;
    let l = driver.create_input_topic("left", Serdes::string(), Serdes::string());
    let r = driver.create_input_topic("right", Serdes::string(), Serdes::string());
    for (i, (is_left, key, ts)) in records.iter().enumerate() {
        let topic = if *is_left { &l } else { &r };
        topic
            .pipe_input_at(KEYS[*key].to_owned(), value(i, *is_left), *ts)
            .map_err(fail)?;
    }
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    let got = out
        .read_records_to_list()
        .map_err(fail)?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    Ok((got, driver.metrics().dropped_late))
}

fn stream_join_oracle(
    kind: Kind,
    before: i64,
    after: i64,
    grace: i64,
    records: &[Input],
) -> (Vec<Out>, u64) {
    let n = records.len();
    let lookahead = |left: bool| if left { after } else { before };
    let closes = |i: usize| {
        let (left, _, t) = records[i];
        t + lookahead(left) + grace
    };
    let mut stream_time = Vec::with_capacity(n);
    let mut st = i64::MIN;
    for (_, _, t) in records {
        st = st.max(*t);
        stream_time.push(st);
    }
    let accepted: Vec<bool> = (0..n).map(|i| closes(i) >= stream_time[i]).collect();
    let partners = |i: usize, j: usize| {
        let ((li, ki, ti), (lj, kj, tj)) = (records[i], records[j]);
        if li == lj || ki != kj || !accepted[i] || !accepted[j] {
            return false;
        }
        let (lt, rt) = if li { (ti, tj) } else { (tj, ti) };
        rt - lt >= -before && rt - lt <= after
    };
    let outer = |left: bool| match kind {
        Kind::Inner => false,
        Kind::Left => left,
        Kind::Outer => true,
    };
    let text = |i: usize| value(i, records[i].0);
    // Where each unmatched outer record is emitted: the index of the record that closes it.
    let mut closed_at: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        if !accepted[i] || !outer(records[i].0) {
            continue;
        }
        let close = (i + 1..n).find(|&k| accepted[k] && stream_time[k] > closes(i));
        if let Some(k) = close {
            if !(0..k).any(|j| j != i && partners(i, j)) {
                closed_at[k].push(i);
            }
        }
    }
    let mut out = Vec::new();
    for k in 0..n {
        let mut closed = closed_at[k].clone();
        closed.sort_by_key(|&i| (records[i].2, records[i].0, KEYS[records[i].1], i));
        for i in closed {
            let (left, key, t) = records[i];
            let v = if left {
                format!("{}+null", text(i))
            } else {
                format!("null+{}", text(i))
            };
            out.push((KEYS[key].to_owned(), v, t));
        }
        if !accepted[k] {
            continue;
        }
        let mut with: Vec<usize> = (0..k).filter(|&j| partners(k, j)).collect();
        with.sort_by_key(|&j| (records[j].2, j));
        let (left, key, t) = records[k];
        for j in with {
            let v = if left {
                format!("{}+{}", text(k), text(j))
            } else {
                format!("{}+{}", text(j), text(k))
            };
            out.push((KEYS[key].to_owned(), v, t.max(records[j].2)));
        }
    }
    let dropped = accepted.iter().filter(|a| !**a).count() as u64;
    (out, dropped)
}

/// Records of both sides over three keys, out of order: each up to 40 ms before or 10 ms after
/// a clock that moves 3 ms per record.
fn disordered() -> impl Strategy<Value = Vec<Input>> {
    proptest::collection::vec((any::<bool>(), 0..KEYS.len(), -40i64..10), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (left, key, jitter))| (left, key, (i as i64 * 3 + jitter).max(0)))
            .collect()
    })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Inner), Just(Kind::Left), Just(Kind::Outer)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn stream_stream_joins_match_a_recomputation_from_scratch(
        kind in kind(),
        before in 0i64..20,
        after in 0i64..20,
        grace in 0i64..20,
        records in disordered(),
    ) {
        let windows = JoinWindows::of_time_difference_and_grace(ms(after), ms(grace))
            .before(ms(before));
        let (got, dropped) = run_stream_join(kind, windows, &records)?;
        let (want, want_dropped) = stream_join_oracle(kind, before, after, grace, &records);
        prop_assert_eq!(got, want);
        prop_assert_eq!(dropped, want_dropped);
    }
}

/// A stream-table input event: a stream record (key, timestamp) or a table update (key, value
/// index or deletion, timestamp).
#[derive(Debug, Clone)]
enum Event {
    Stream(usize, i64),
    Table(usize, Option<u8>, i64),
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        (0..KEYS.len(), 0i64..100).prop_map(|(k, t)| Event::Stream(k, t)),
        (
            0..KEYS.len(),
            proptest::option::weighted(0.8, 0u8..6),
            0i64..100
        )
            .prop_map(|(k, v, t)| Event::Table(k, v, t)),
    ];
    proptest::collection::vec(event, 0..40)
}

/// Table rows the filtered variant keeps.
fn kept(v: &str) -> bool {
    !v.ends_with('3')
}

fn run_stream_table(
    left: bool,
    filtered: bool,
    caching: bool,
    events: &[Event],
) -> Result<Vec<Out>, TestCaseError> {
    let builder = StreamsBuilder::new();
    let stream = builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let mut table = builder.table::<String, String>(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::with(Serdes::string(), Serdes::string()).with_caching(caching),
    );
    if filtered {
        table = table.filter(|_, v| kept(v));
    }
    let joined = Joined::with(Serdes::string(), Serdes::string());
    let out = if left {
        stream.left_join_table(&table, |o, c| format!("{o}@{}", or_null(c)), joined)
    } else {
        stream.join_table(&table, |o, c| format!("{o}@{c}"), joined)
    };
    out.to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver =
        TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("oracle"))
            .map_err(fail)?;
    let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    let c = driver.create_input_topic(
        "customers",
        Serdes::string(),
        Serdes::option(Serdes::string()),
    );
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Stream(k, t) => o.pipe_input_at(KEYS[*k].to_owned(), format!("o{i}"), *t),
            Event::Table(k, v, t) => {
                c.pipe_input_at(KEYS[*k].to_owned(), v.map(|v| format!("c{v}")), *t)
            }
        }
        .map_err(fail)?;
    }
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    Ok(out
        .read_records_to_list()
        .map_err(fail)?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn stream_table_oracle(left: bool, filtered: bool, events: &[Event]) -> Vec<Out> {
    let mut table: BTreeMap<usize, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Table(k, v, _) => match v.map(|v| format!("c{v}")) {
                Some(v) if !filtered || kept(&v) => {
                    table.insert(*k, v);
                }
                _ => {
                    table.remove(k);
                }
            },
            Event::Stream(k, t) => match (table.get(k), left) {
                (Some(c), _) => out.push((KEYS[*k].to_owned(), format!("o{i}@{c}"), *t)),
                (None, true) => out.push((KEYS[*k].to_owned(), format!("o{i}@null"), *t)),
                (None, false) => {}
            },
        }
    }
    out
}

/// A table-table input event: side (left or not), key, value index or deletion, timestamp.
type TableEvent = (bool, usize, Option<u8>, i64);

fn table_events() -> impl Strategy<Value = Vec<TableEvent>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            0..KEYS.len(),
            proptest::option::weighted(0.7, 0u8..4),
            0i64..100,
        ),
        0..40,
    )
}

fn run_table_table(
    kind: Kind,
    events: &[TableEvent],
) -> Result<Vec<(String, Option<String>, i64)>, TestCaseError> {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let no_cache = || Materialized::with(Serdes::string(), Serdes::string()).with_caching(false);
    let left = builder.table::<String, String>("left", c(), no_cache());
    let right = builder.table::<String, String>("right", c(), no_cache());
    let joined = match kind {
        Kind::Inner => left.join(&right, |l, r| format!("{l}+{r}"), no_cache()),
        Kind::Left => left.left_join(&right, |l, r| format!("{l}+{}", or_null(r)), no_cache()),
        Kind::Outer => left.outer_join(
            &right,
            |l, r| format!("{}+{}", or_null(l), or_null(r)),
            no_cache(),
        ),
    };
    joined.to_stream().to(
        "out",
        Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
    );
    let driver =
        TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("oracle"))
            .map_err(fail)?;
    let option = || Serdes::option(Serdes::string());
    let l = driver.create_input_topic("left", Serdes::string(), option());
    let r = driver.create_input_topic("right", Serdes::string(), option());
    for (is_left, k, v, t) in events {
        let (topic, prefix) = if *is_left { (&l, "l") } else { (&r, "r") };
        topic
            .pipe_input_at(KEYS[*k].to_owned(), v.map(|v| format!("{prefix}{v}")), *t)
            .map_err(fail)?;
    }
    let out = driver.create_output_topic("out", Serdes::string(), option());
    Ok(out
        .read_records_to_list()
        .map_err(fail)?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

/// The joined row of one key from the two tables' rows (with their timestamps).
fn joined_row(kind: Kind, l: Option<&(String, i64)>, r: Option<&(String, i64)>) -> Option<String> {
    let text = |x: Option<&(String, i64)>| x.map_or("null".to_owned(), |(v, _)| v.clone());
    match (kind, l, r) {
        (_, Some(_), Some(_)) => Some(format!("{}+{}", text(l), text(r))),
        (Kind::Left | Kind::Outer, Some(_), None) => Some(format!("{}+null", text(l))),
        (Kind::Outer, None, Some(_)) => Some(format!("null+{}", text(r))),
        _ => None,
    }
}

/// What the join emits: after each update, the key's joined row if the join emits a change for
/// it (a row before or after), stamped with the larger timestamp of the rows it read.
fn table_table_oracle(kind: Kind, events: &[TableEvent]) -> Vec<(String, Option<String>, i64)> {
    let mut tables: [BTreeMap<usize, (String, i64)>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut out = Vec::new();
    for (is_left, k, v, t) in events {
        let side = usize::from(!*is_left);
        let prefix = if *is_left { "l" } else { "r" };
        if v.is_none() && !tables[side].contains_key(k) {
            continue; // a table forwards no change for deleting an absent key
        }
        let before = joined_row(kind, tables[0].get(k), tables[1].get(k));
        match v {
            Some(v) => {
                tables[side].insert(*k, (format!("{prefix}{v}"), *t));
            }
            None => {
                tables[side].remove(k);
            }
        }
        let after = joined_row(kind, tables[0].get(k), tables[1].get(k));
        // Whether this side's processor reads a row of the other side that lets it emit.
        let other = tables[1 - side].get(k);
        let this_outer = match kind {
            Kind::Inner => false,
            Kind::Left => *is_left,
            Kind::Outer => true,
        };
        if other.is_none() && !this_outer {
            continue;
        }
        if before.is_none() && after.is_none() {
            continue;
        }
        let ts = other.map_or(*t, |(_, ot)| (*ot).max(*t));
        out.push((KEYS[*k].to_owned(), after, ts));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn stream_table_joins_match_a_lookup_in_a_map(
        left in any::<bool>(),
        filtered in any::<bool>(),
        caching in any::<bool>(),
        events in events(),
    ) {
        let got = run_stream_table(left, filtered, caching, &events)?;
        prop_assert_eq!(got, stream_table_oracle(left, filtered, &events));
    }

    #[test]
    fn table_table_joins_match_a_recomputation_per_update(
        kind in kind(),
        events in table_events(),
    ) {
        let got = run_table_table(kind, &events)?;
        let want = table_table_oracle(kind, &events);
        prop_assert_eq!(got, want);
    }
}
