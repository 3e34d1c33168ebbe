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
//! Case counts: `PROPTEST_CASES` (default 64 per property).

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
