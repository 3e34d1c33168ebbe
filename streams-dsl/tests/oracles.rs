//! DSL operators on random input against naive oracles, through the TopologyTestDriver.
//!
//! Case counts: `PROPTEST_CASES` (default 64 per property; each case builds and runs a topology).

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use streams_dsl::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn config() -> StreamsConfig {
    StreamsConfig::new("oracle")
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

// ------------------------------------------------------------------ stateless chains

#[derive(Debug, Clone)]
enum Op {
    FilterValue(i64, i64),
    FilterNotKey(i64, i64),
    AddToValue(i64),
    RepeatValue(usize),
    KeyFromValue(i64),
    Swap,
    Echo,
    Peek,
    Repartition,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..5, 0i64..5).prop_map(|(m, r)| Op::FilterValue(m, r % m)),
        (1i64..5, 0i64..5).prop_map(|(m, r)| Op::FilterNotKey(m, r % m)),
        (-20i64..20).prop_map(Op::AddToValue),
        (0usize..3).prop_map(Op::RepeatValue),
        (1i64..6).prop_map(Op::KeyFromValue),
        Just(Op::Swap),
        Just(Op::Echo),
        Just(Op::Peek),
        Just(Op::Repartition),
    ]
}

fn apply(op: &Op, records: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    match *op {
        Op::FilterValue(m, r) => records
            .into_iter()
            .filter(|(_, v)| v.rem_euclid(m) == r)
            .collect(),
        Op::FilterNotKey(m, r) => records
            .into_iter()
            .filter(|(k, _)| k.rem_euclid(m) != r)
            .collect(),
        Op::AddToValue(c) => records.into_iter().map(|(k, v)| (k, v + c)).collect(),
        Op::RepeatValue(n) => records
            .into_iter()
            .flat_map(|(k, v)| (0..n as i64).map(move |i| (k, v + i)))
            .collect(),
        Op::KeyFromValue(m) => records
            .into_iter()
            .map(|(_, v)| (v.rem_euclid(m), v))
            .collect(),
        Op::Swap => records.into_iter().map(|(k, v)| (v, k)).collect(),
        Op::Echo => records
            .into_iter()
            .flat_map(|(k, v)| [(k, v), (v, k)])
            .collect(),
        Op::Peek | Op::Repartition => records,
    }
}

fn chain(stream: KStream<i64, i64>, op: &Op) -> KStream<i64, i64> {
    match *op {
        Op::FilterValue(m, r) => stream.filter(move |_, v| v.rem_euclid(m) == r),
        Op::FilterNotKey(m, r) => stream.filter_not(move |k, _| k.rem_euclid(m) == r),
        Op::AddToValue(c) => stream.map_values(move |v| v + c),
        Op::RepeatValue(n) => stream.flat_map_values(move |v| (0..n as i64).map(move |i| v + i)),
        Op::KeyFromValue(m) => stream.select_key(move |_, v| v.rem_euclid(m)),
        Op::Swap => stream.map(|k, v| (v, k)),
        Op::Echo => stream.flat_map(|k, v| [(k, v), (v, k)]),
        Op::Peek => stream.peek(|_, _| {}),
        Op::Repartition => stream.repartition(Repartitioned::with(Serdes::i64(), Serdes::i64())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn stateless_chains_match_an_iterator_oracle(
        ops in proptest::collection::vec(op(), 0..7),
        input in proptest::collection::vec((-10i64..10, -10i64..10), 0..40),
    ) {
        let builder = StreamsBuilder::new();
        let mut stream = builder.stream::<i64, i64>("in", Consumed::with(Serdes::i64(), Serdes::i64()));
        for op in &ops {
            stream = chain(stream, op);
        }
        stream.to("out", Produced::with(Serdes::i64(), Serdes::i64()));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, config()).map_err(fail)?;
        let i = driver.create_input_topic("in", Serdes::i64(), Serdes::i64());
        let o = driver.create_output_topic("out", Serdes::i64(), Serdes::i64());
        i.pipe_key_values(input.clone()).map_err(fail)?;
        let want = ops.iter().fold(input, |records, op| apply(op, records));
        prop_assert_eq!(o.read_key_values_to_list().map_err(fail)?, want);
    }
}

// ------------------------------------------------------------------ stream aggregations

#[derive(Debug, Clone, Copy)]
struct StoreChoice {
    caching: bool,
    in_memory: bool,
}

fn store_choice() -> impl Strategy<Value = StoreChoice> {
    (any::<bool>(), any::<bool>())
        .prop_map(|(caching, in_memory)| StoreChoice { caching, in_memory })
}

fn materialized<V: 'static>(name: &str, c: StoreChoice) -> Materialized<i64, V> {
    let m = Materialized::as_(name).with_caching(c.caching);
    if c.in_memory {
        m.in_memory()
    } else {
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// group_by (a key change, so a repartition) then count, sum and max, against a HashMap.
    #[test]
    fn grouped_aggregations_match_a_hashmap(
        choice in store_choice(),
        input in proptest::collection::vec((0i64..6, -50i64..50), 0..60),
    ) {
        let builder = StreamsBuilder::new();
        let grouped = builder
            .stream::<i64, i64>("in", Consumed::with(Serdes::i64(), Serdes::i64()))
            .group_by(|_, v| v.rem_euclid(4), Grouped::with(Serdes::i64(), Serdes::i64()));
        grouped.count(materialized("count", choice)).to_stream()
            .to("count", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        grouped.aggregate(|| 0i64, |_, v, sum| sum + v, materialized("sum", choice).with_value_serde(Serdes::i64()))
            .to_stream()
            .to("sum", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        grouped.reduce(|a, b| a.max(b), materialized("max", choice)).to_stream()
            .to("max", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, config()).map_err(fail)?;
        driver.create_input_topic("in", Serdes::i64(), Serdes::i64()).pipe_key_values(input.clone()).map_err(fail)?;

        let (mut count, mut sum, mut max) = (HashMap::new(), HashMap::new(), HashMap::new());
        let mut count_updates = Vec::new();
        for (_, v) in &input {
            let g = v.rem_euclid(4);
            *count.entry(g).or_insert(0i64) += 1;
            *sum.entry(g).or_insert(0i64) += v;
            let m = max.entry(g).or_insert(*v);
            *m = (*m).max(*v);
            count_updates.push((g, Some(count[&g])));
        }
        let read = |topic: &str| -> Result<Vec<(i64, Option<i64>)>, TestCaseError> {
            driver.create_output_topic(topic, Serdes::i64(), Serdes::option(Serdes::i64())).read_key_values_to_list().map_err(fail)
        };
        let counts = read("count")?;
        if choice.caching {
            // One input record, one commit: the cache changes nothing here but must not lose updates.
            prop_assert_eq!(counts.iter().cloned().collect::<HashMap<_, _>>(), count.iter().map(|(k, v)| (*k, Some(*v))).collect::<HashMap<_, _>>());
        } else {
            prop_assert_eq!(counts, count_updates, "every update, in order");
        }
        prop_assert_eq!(read("sum")?.into_iter().collect::<HashMap<_, _>>(), sum.iter().map(|(k, v)| (*k, Some(*v))).collect::<HashMap<_, _>>());
        prop_assert_eq!(read("max")?.into_iter().collect::<HashMap<_, _>>(), max.iter().map(|(k, v)| (*k, Some(*v))).collect::<HashMap<_, _>>());
        let store = driver.key_value_store::<i64, streams_dsl::ValueAndTimestamp<i64>>("count").map_err(fail)?;
        let stored: HashMap<i64, i64> = store.all().map_err(fail)?.into_iter().map(|(k, v)| (k, v.value)).collect();
        prop_assert_eq!(stored, count);
    }
}

// ------------------------------------------------------------------ table re-grouping

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A table of user -> city re-grouped by city: counts and sums follow users as they move
    /// and leave, which needs the subtractor.
    #[test]
    fn table_group_by_with_subtractor_matches_an_oracle(
        choice in store_choice(),
        updates in proptest::collection::vec((0i64..8, proptest::option::of(0i64..4)), 0..60),
    ) {
        let builder = StreamsBuilder::new();
        let grouped = builder
            .table::<i64, i64>("user-city", Consumed::with(Serdes::i64(), Serdes::i64()), materialized("users", choice))
            .group_by(|user, city| (city, user), Grouped::with(Serdes::i64(), Serdes::i64()));
        grouped.count(materialized("per-city", choice)).to_stream()
            .to("count", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        grouped.reduce(|a, b| a + b, |a, b| a - b, materialized("id-sum", choice)).to_stream()
            .to("sum", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, config()).map_err(fail)?;
        let input = driver.create_input_topic("user-city", Serdes::i64(), Serdes::option(Serdes::i64()));
        for (user, city) in &updates {
            input.pipe_input(*user, *city).map_err(fail)?;
        }

        // Oracle: the final table, then group it. A city stays in the result once it has had
        // a user (count 0 when empty), as Kafka Streams keeps the aggregate.
        let mut table: BTreeMap<i64, i64> = BTreeMap::new();
        let mut cities_seen = std::collections::BTreeSet::new();
        for (user, city) in &updates {
            match city {
                Some(c) => {
                    table.insert(*user, *c);
                    cities_seen.insert(*c);
                }
                None => {
                    table.remove(user);
                }
            }
        }
        let mut count: BTreeMap<i64, i64> = cities_seen.iter().map(|c| (*c, 0)).collect();
        let mut sum: BTreeMap<i64, i64> = BTreeMap::new();
        for (user, city) in &table {
            *count.entry(*city).or_default() += 1;
            *sum.entry(*city).or_default() += user;
        }
        let last = |topic: &str| -> Result<BTreeMap<i64, Option<i64>>, TestCaseError> {
            Ok(driver.create_output_topic(topic, Serdes::i64(), Serdes::option(Serdes::i64()))
                .read_key_values_to_list().map_err(fail)?.into_iter().collect())
        };
        prop_assert_eq!(last("count")?, count.iter().map(|(k, v)| (*k, Some(*v))).collect::<BTreeMap<_, _>>());
        // The reduce keeps a city's last sum; cities emptied by subtraction hold 0.
        let sums = last("sum")?;
        for (city, total) in &sums {
            prop_assert_eq!(*total, Some(*sum.get(city).unwrap_or(&0)), "city {}", city);
        }
        prop_assert_eq!(sums.keys().collect::<Vec<_>>(), cities_seen.iter().collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// A stream count re-grouped as a table (how many keys have each count, modulo 3): the
    /// re-grouping subtracts each key's old count, so the stream aggregate's changes must carry
    /// the old values, with and without a cache.
    #[test]
    fn a_stream_aggregate_feeds_old_values_to_a_table_regrouping(
        choice in store_choice(),
        input in proptest::collection::vec(0i64..6, 0..60),
    ) {
        let builder = StreamsBuilder::new();
        builder
            .stream::<i64, i64>("in", Consumed::with(Serdes::i64(), Serdes::i64()))
            .group_by_key(Grouped::with(Serdes::i64(), Serdes::i64()))
            .count(materialized("counts", choice))
            .group_by(|key, count| (count % 3, key), Grouped::with(Serdes::i64(), Serdes::i64()))
            .count(materialized("per-class", choice))
            .to_stream()
            .to("classes", Produced::with(Serdes::i64(), Serdes::option(Serdes::i64())));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, config()).map_err(fail)?;
        let records: Vec<(i64, i64)> = input.iter().map(|k| (*k, 0)).collect();
        driver.create_input_topic("in", Serdes::i64(), Serdes::i64()).pipe_key_values(records).map_err(fail)?;

        let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
        let mut classes_seen = std::collections::BTreeSet::new();
        for k in &input {
            let c = counts.entry(*k).or_default();
            *c += 1;
            classes_seen.insert(*c % 3);
        }
        let mut want: BTreeMap<i64, Option<i64>> = classes_seen.iter().map(|c| (*c, Some(0))).collect();
        for c in counts.values() {
            *want.get_mut(&(c % 3)).and_then(Option::as_mut).expect("seen") += 1;
        }
        let got: BTreeMap<i64, Option<i64>> = driver
            .create_output_topic("classes", Serdes::i64(), Serdes::option(Serdes::i64()))
            .read_key_values_to_list().map_err(fail)?.into_iter().collect();
        prop_assert_eq!(got, want);
    }
}

// ------------------------------------------------------------------ word count

/// Kafka's WordCountDemo semantics: lowercase, split on runs of characters that are not ASCII
/// letters, digits or underscore, drop empty words.
fn words(line: &str) -> Vec<String> {
    line.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn word_count(builder: &StreamsBuilder, caching: bool) {
    builder
        .stream::<(), Option<String>>(
            "streams-plaintext-input",
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| line.as_deref().map(words).unwrap_or_default())
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_("counts").with_caching(caching))
        .to_stream()
        .to(
            "streams-wordcount-output",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
}

fn line() -> impl Strategy<Value = Option<String>> {
    let word = prop_oneof![
        Just("Kafka"),
        Just("kafka"),
        Just("streams"),
        Just("STREAMS"),
        Just("rust"),
        Just("a_b"),
        Just("x1"),
        Just("é"),
        Just("ünïcode"),
        Just("42"),
    ];
    let sep = prop_oneof![
        Just(" "),
        Just(", "),
        Just("-"),
        Just("!!"),
        Just("\t"),
        Just("…")
    ];
    prop_oneof![
        1 => Just(None),
        9 => proptest::collection::vec((word, sep), 0..8)
            .prop_map(|parts| Some(parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect::<String>())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn word_count_matches_the_oracle(caching in any::<bool>(), lines in proptest::collection::vec(line(), 0..40)) {
        let builder = StreamsBuilder::new();
        word_count(&builder, caching);
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("wordcount")).map_err(fail)?;
        let input = driver.create_input_topic("streams-plaintext-input", Serdes::unit(), Serdes::option(Serdes::string()));
        for line in &lines {
            input.pipe_input((), line.clone()).map_err(fail)?;
        }
        let mut oracle: HashMap<String, i64> = HashMap::new();
        for line in lines.iter().flatten() {
            for word in words(line) {
                *oracle.entry(word).or_default() += 1;
            }
        }
        let output = driver.create_output_topic("streams-wordcount-output", Serdes::string(), Serdes::i64());
        prop_assert_eq!(output.read_key_values_to_map().map_err(fail)?, oracle.clone());
        let store = driver.key_value_store::<String, streams_dsl::ValueAndTimestamp<i64>>("counts").map_err(fail)?;
        let stored: HashMap<String, i64> = store.all().map_err(fail)?.into_iter().map(|(k, v)| (k, v.value)).collect();
        prop_assert_eq!(stored, oracle);
    }
}

#[test]
fn word_splitting_follows_the_demo() {
    // Non-ASCII letters separate words, as in the demo: "Ünï" leaves "n".
    assert_eq!(
        words("Hello, World! hello_world x1 Ünï"),
        vec!["hello", "world", "hello_world", "x1", "n"]
    );
    assert!(words("...").is_empty());
}
