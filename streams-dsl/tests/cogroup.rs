//! `cogroup` through the TopologyTestDriver: streams of different value types folded into one
//! aggregate per key, out-of-order timestamps, repartitioning of a re-keyed input, null keys,
//! and a proptest against a fold of the whole input in arrival order.

use proptest::prelude::*;
use streams_dsl::prelude::*;

type R = streams_core::Result<()>;

fn s(x: &str) -> String {
    x.to_owned()
}

/// Clicks (strings) and purchases (amounts) cogrouped into `clicks/spent` per user.
fn activity(
    builder: &StreamsBuilder,
    rekey_purchases: bool,
    caching: bool,
) -> KTable<String, String> {
    let clicks = builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    let mut purchases =
        builder.stream::<String, i64>("purchases", Consumed::with(Serdes::string(), Serdes::i64()));
    if rekey_purchases {
        purchases = purchases.select_key(|k, _| k.to_uppercase());
    }
    let parse = |agg: &str| -> (i64, i64) {
        let (c, s) = agg.split_once('/').unwrap_or(("0", "0"));
        (c.parse().unwrap_or(0), s.parse().unwrap_or(0))
    };
    clicks
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .cogroup(move |_, _, agg: String| {
            let (c, s) = parse(&agg);
            format!("{}/{s}", c + 1)
        })
        .cogroup(
            &purchases.group_by_key(
                Grouped::with(Serdes::string(), Serdes::i64()).with_name("purchases-by-user"),
            ),
            move |_, amount, agg| {
                let (c, s) = parse(&agg);
                format!("{c}/{}", s + amount)
            },
        )
        .aggregate(
            || s("0/0"),
            Materialized::as_("activity")
                .with_value_serde(Serdes::string())
                .with_caching(caching),
        )
}

#[test]
fn cogrouped_streams_fold_into_one_aggregate_with_the_largest_timestamp() -> R {
    let builder = StreamsBuilder::new();
    activity(&builder, false, false).to_stream().to(
        "out",
        Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
    );
    let topology = builder.build()?;
    assert_eq!(
        topology.subtopologies().len(),
        1,
        "no key change, no repartition"
    );
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("cogroup"))?;
    let clicks = driver.create_input_topic("clicks", Serdes::string(), Serdes::string());
    let purchases = driver.create_input_topic("purchases", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::string()));
    clicks.pipe_input_at(s("u1"), s("home"), 10)?;
    purchases.pipe_input_at(s("u1"), 30, 5)?; // out of order
    purchases.pipe_input_at(s("u2"), 7, 20)?;
    clicks.pipe_input_at(s("u1"), s("cart"), 15)?;
    let rows: Vec<(String, Option<String>, i64)> = out
        .read_records_to_list()?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(
        rows,
        vec![
            (s("u1"), Some(s("1/0")), 10),
            (s("u1"), Some(s("1/30")), 10),
            (s("u2"), Some(s("0/7")), 20),
            (s("u1"), Some(s("2/30")), 15),
        ]
    );
    let store =
        driver.key_value_store::<String, streams_dsl::ValueAndTimestamp<String>>("activity")?;
    assert_eq!(store.get(&s("u1"))?.map(|v| v.value), Some(s("2/30")));
    Ok(())
}

#[test]
fn a_rekeyed_input_repartitions_alone_through_its_grouped_name() -> R {
    let builder = StreamsBuilder::new();
    activity(&builder, true, true).to_stream().to(
        "out",
        Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
    );
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    assert!(text.contains("purchases-by-user-repartition"), "{text}");
    assert_eq!(topology.subtopologies().len(), 2, "{text}");
    assert_eq!(topology.copartition_groups().len(), 1);
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("cogroup"))?;
    let clicks = driver.create_input_topic("clicks", Serdes::string(), Serdes::string());
    let purchases = driver.create_input_topic("purchases", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::string()));
    purchases.pipe_input_at(s("u1"), 30, 1)?; // becomes U1
    clicks.pipe_input_at(s("U1"), s("home"), 2)?;
    let last = out.read_key_values_to_list()?.into_iter().last();
    assert_eq!(last, Some((s("U1"), Some(s("1/30")))));
    Ok(())
}

#[test]
fn null_keys_are_skipped() -> R {
    let builder = StreamsBuilder::new();
    let keys = || Serdes::option(Serdes::string());
    let a = builder.stream::<Option<String>, i64>("a", Consumed::with(keys(), Serdes::i64()));
    let b = builder.stream::<Option<String>, i64>("b", Consumed::with(keys(), Serdes::i64()));
    a.group_by_key(Grouped::default())
        .cogroup(|_, v, sum: i64| sum + v)
        .cogroup(&b.group_by_key(Grouped::default()), |_, v, sum| sum - v)
        .aggregate(
            || 0,
            Materialized::with(keys(), Serdes::i64()).with_caching(false),
        )
        .to_stream()
        .to("out", Produced::with(keys(), Serdes::option(Serdes::i64())));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("cogroup"))?;
    let a = driver.create_input_topic("a", keys(), Serdes::i64());
    let b = driver.create_input_topic("b", keys(), Serdes::i64());
    let out = driver.create_output_topic("out", keys(), Serdes::option(Serdes::i64()));
    a.pipe_input_at(None, 5, 1)?;
    b.pipe_input_at(Some(s("k")), 3, 2)?;
    assert_eq!(
        out.read_key_values_to_list()?,
        vec![(Some(s("k")), Some(-3))]
    );
    assert_eq!(driver.metrics().dropped_null_key, 1, "the skip is counted");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

const KEYS: [&str; 3] = ["a", "b", "c"];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Three inputs of three value types; every record emits its key's new aggregate (no
    /// cache), which a fold of the input in arrival order recomputes.
    #[test]
    fn cogroup_matches_a_fold_in_arrival_order(
        records in proptest::collection::vec((0usize..3, 0..KEYS.len(), 0i64..100), 0..40),
    ) {
        let builder = StreamsBuilder::new();
        let c = |v| Consumed::with(Serdes::string(), v);
        let x = builder.stream::<String, i64>("x", c(Serdes::i64()));
        let y = builder.stream::<String, String>("y", Consumed::with(Serdes::string(), Serdes::string()));
        let z = builder.stream::<String, f64>("z", Consumed::with(Serdes::string(), Serdes::f64()));
        x.group_by_key(Grouped::default())
            .cogroup(|_, v, agg: String| format!("{agg}x{v}"))
            .cogroup(&y.group_by_key(Grouped::default()), |_, v, agg| format!("{agg}y{v}"))
            .cogroup(&z.group_by_key(Grouped::default()), |_, v, agg| format!("{agg}z{v}"))
            .aggregate(String::new, Materialized::with(Serdes::string(), Serdes::string()).with_caching(false))
            .to_stream()
            .to("out", Produced::with(Serdes::string(), Serdes::option(Serdes::string())));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("oracle")).map_err(fail)?;
        let xi = driver.create_input_topic("x", Serdes::string(), Serdes::i64());
        let yi = driver.create_input_topic("y", Serdes::string(), Serdes::string());
        let zi = driver.create_input_topic("z", Serdes::string(), Serdes::f64());
        let mut want = Vec::new();
        let mut aggs: std::collections::BTreeMap<usize, (String, i64)> = Default::default();
        for (i, (input, key, ts)) in records.iter().enumerate() {
            let k = KEYS[*key].to_owned();
            let tag = match input {
                0 => { xi.pipe_input_at(k.clone(), i as i64, *ts).map_err(fail)?; format!("x{i}") }
                1 => { yi.pipe_input_at(k.clone(), format!("s{i}"), *ts).map_err(fail)?; format!("ys{i}") }
                _ => { zi.pipe_input_at(k.clone(), i as f64 + 0.5, *ts).map_err(fail)?; format!("z{}", i as f64 + 0.5) }
            };
            let entry = aggs.entry(*key).or_insert((String::new(), i64::MIN));
            entry.0.push_str(&tag);
            entry.1 = entry.1.max(*ts);
            want.push((k, Some(entry.0.clone()), entry.1));
        }
        let out = driver.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::string()));
        let got: Vec<(String, Option<String>, i64)> = out
            .read_records_to_list()
            .map_err(fail)?
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        prop_assert_eq!(got, want);
    }
}
