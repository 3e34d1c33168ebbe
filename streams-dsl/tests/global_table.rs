//! Global tables and stream-global-table joins through the TopologyTestDriver: inner and left
//! joins with a key selector, updates and deletions of the global table, out-of-order stream
//! records, a null selected key, a re-keyed stream (no repartition), several sub-topologies
//! reading one global table, and a proptest against a map oracle.
//!
//! The oracle of the proptest walks the input in order, keeping the global table as a map, and
//! looks each stream record's selected key up in it. Case count: `PROPTEST_CASES` (default 64).

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::testing::{TestInputTopic, TestOutputTopic};
use streams_dsl::prelude::*;

type R = streams_core::Result<()>;

fn s(x: &str) -> String {
    x.to_owned()
}

fn row(key: &str, value: &str, ts: i64) -> (String, String, i64) {
    (s(key), s(value), ts)
}

fn rows(out: &TestOutputTopic<String, String>) -> streams_core::Result<Vec<(String, String, i64)>> {
    Ok(out
        .read_records_to_list()?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

type Orders = TestInputTopic<String, String>;
type Products = TestInputTopic<String, Option<String>>;

/// Orders (key: order id, value: `product/qty`) joined with the `products` global table on the
/// product id, values `qty x name`.
fn run(
    left: bool,
    in_memory: bool,
) -> streams_core::Result<(
    TopologyTestDriver,
    Orders,
    Products,
    TestOutputTopic<String, String>,
)> {
    let builder = StreamsBuilder::new();
    let materialized = Materialized::as_("products");
    let materialized = if in_memory {
        materialized.in_memory()
    } else {
        materialized
    };
    let products = builder.global_table::<String, String>(
        "products",
        Consumed::with(Serdes::string(), Serdes::string()),
        materialized,
    );
    let orders = builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let product_of = |_: &String, v: &String| v.split('/').next().unwrap_or_default().to_owned();
    let qty = |v: &String| v.split('/').nth(1).unwrap_or_default().to_owned();
    let joined = if left {
        orders.left_join_global(&products, product_of, move |v, name| {
            format!("{} x {}", qty(v), name.map_or("null", |n| n.as_str()))
        })
    } else {
        orders.join_global(&products, product_of, move |v, name| {
            format!("{} x {name}", qty(v))
        })
    };
    joined.to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("global"))?;
    let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    let p = driver.create_input_topic(
        "products",
        Serdes::string(),
        Serdes::option(Serdes::string()),
    );
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    Ok((driver, o, p, out))
}

#[test]
fn inner_join_looks_up_the_selected_key_and_keeps_the_stream_key() -> R {
    for in_memory in [false, true] {
        let (driver, o, p, out) = run(false, in_memory)?;
        o.pipe_input_at(s("o1"), s("p1/2"), 10)?;
        assert!(out.is_empty(), "no product yet");
        p.pipe_input_at(s("p1"), Some(s("tea")), 20)?;
        assert!(out.is_empty(), "a global table update triggers nothing");
        o.pipe_input_at(s("o2"), s("p1/3"), 30)?;
        p.pipe_input_at(s("p1"), Some(s("green tea")), 40)?;
        // Out of order: the lookup sees the table as it is now.
        o.pipe_input_at(s("o3"), s("p1/1"), 25)?;
        o.pipe_input_at(s("o4"), s("p2/1"), 50)?;
        p.pipe_input_at(s("p1"), None, 60)?; // deleted
        o.pipe_input_at(s("o5"), s("p1/9"), 70)?;
        assert_eq!(
            rows(&out)?,
            vec![row("o2", "3 x tea", 30), row("o3", "1 x green tea", 25)],
            "results keep the stream key and timestamp"
        );
        let store = driver.key_value_store::<String, String>("products")?;
        assert_eq!(store.get(&s("p1"))?, None, "the deletion reached the store");
    }
    Ok(())
}

#[test]
fn left_join_yields_every_stream_record() -> R {
    let (_driver, o, p, out) = run(true, false)?;
    o.pipe_input_at(s("o1"), s("p1/2"), 10)?;
    p.pipe_input_at(s("p1"), Some(s("tea")), 20)?;
    p.pipe_input_at(s("p2"), Some(s("coffee")), 21)?;
    o.pipe_input_at(s("o2"), s("p1/3"), 30)?;
    p.pipe_input_at(s("p1"), None, 40)?;
    o.pipe_input_at(s("o3"), s("p1/4"), 5)?;
    o.pipe_input_at(s("o4"), s("p2/5"), 6)?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("o1", "2 x null", 10),
            row("o2", "3 x tea", 30),
            row("o3", "4 x null", 5),
            row("o4", "5 x coffee", 6),
        ]
    );
    Ok(())
}

#[test]
fn global_table_records_with_a_null_key_are_skipped_and_null_selected_keys_match_nothing() -> R {
    let builder = StreamsBuilder::new();
    let names = builder.global_table::<Option<String>, String>(
        "names",
        Consumed::with(Serdes::option(Serdes::string()), Serdes::string()),
        Materialized::as_("names"),
    );
    let stream =
        builder.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()));
    stream
        .left_join_global(
            &names,
            |_, v| (!v.is_empty()).then(|| v.clone()),
            |v, n| format!("{v}:{}", n.map_or("null", |n| n.as_str())),
        )
        .to("left", Produced::with(Serdes::string(), Serdes::string()));
    stream
        .join_global(
            &names,
            |_, v| (!v.is_empty()).then(|| v.clone()),
            |v, n| format!("{v}:{n}"),
        )
        .to("inner", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("global-null"))?;
    let t = driver.create_input_topic("names", Serdes::option(Serdes::string()), Serdes::string());
    let i = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    let left = driver.create_output_topic("left", Serdes::string(), Serdes::string());
    let inner = driver.create_output_topic("inner", Serdes::string(), Serdes::string());
    t.pipe_input_at(None, s("nobody"), 1)?; // skipped
    t.pipe_input_at(Some(s("a")), s("Ada"), 2)?;
    i.pipe_input_at(s("k1"), s(""), 3)?;
    i.pipe_input_at(s("k2"), s("a"), 4)?;
    assert_eq!(left.read_values_to_list()?, vec![s(":null"), s("a:Ada")]);
    assert_eq!(inner.read_values_to_list()?, vec![s("a:Ada")]);
    Ok(())
}

#[test]
fn a_rekeyed_stream_joins_without_a_repartition_and_other_subtopologies_read_the_table() -> R {
    let builder = StreamsBuilder::new();
    let rates = builder.global_table::<String, i64>(
        "rates",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_("rates"),
    );
    let payments =
        builder.stream::<String, i64>("payments", Consumed::with(Serdes::string(), Serdes::i64()));
    // A key change, then the join: no repartition topic.
    payments
        .select_key(|k, _| format!("{k}!"))
        .join_global(
            &rates,
            |k, _| k.trim_end_matches('!').to_owned(),
            |v, r| v * r,
        )
        .to("converted", Produced::with(Serdes::string(), Serdes::i64()));
    // A second sub-topology (behind an aggregation's repartition) reads the same table.
    payments
        .group_by(
            |_, v| v.to_string(),
            Grouped::with(Serdes::string(), Serdes::i64()),
        )
        .count(Materialized::as_("counts"))
        .to_stream()
        .left_join_global(&rates, |k, _| k.clone(), |n, r| format!("{n:?}/{r:?}"))
        .to(
            "counted",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    let topology = builder.build()?;
    assert_eq!(topology.subtopologies().len(), 2);
    assert!(
        topology
            .internal_topics()
            .iter()
            .all(|t| !t.name.contains("JOIN")),
        "no repartition for the global join: {:?}",
        topology.internal_topics()
    );
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("global-rekey"))?;
    let r = driver.create_input_topic("rates", Serdes::string(), Serdes::i64());
    let p = driver.create_input_topic("payments", Serdes::string(), Serdes::i64());
    let converted = driver.create_output_topic("converted", Serdes::string(), Serdes::i64());
    let counted = driver.create_output_topic("counted", Serdes::string(), Serdes::string());
    r.pipe_input_at(s("eur"), 2, 1)?;
    r.pipe_input_at(s("7"), 100, 1)?;
    p.pipe_input_at(s("eur"), 7, 2)?;
    assert_eq!(converted.read_key_value()?, Some((s("eur!"), 14)));
    assert_eq!(
        counted.read_key_value()?,
        Some((s("7"), s("Some(1)/Some(100)")))
    );
    Ok(())
}

#[test]
fn the_topology_lists_the_global_store_without_a_changelog_or_a_task() -> R {
    let builder = StreamsBuilder::new();
    let t = builder.global_table::<String, String>(
        "g-topic",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::default(),
    );
    builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .join_global(&t, |k, _| k.clone(), |v, g| format!("{v}{g}"))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build()?;
    let globals = topology.global_stores();
    assert_eq!(globals.len(), 1);
    assert_eq!(globals[0].topic, "g-topic");
    assert_eq!(globals[0].store, t.queryable_store_name());
    let def = topology
        .store(t.queryable_store_name())
        .expect("the global store is defined");
    assert!(!def.is_logged(), "the topic is the changelog");
    assert!(
        topology.subtopologies()[0].stores().is_empty(),
        "a global store belongs to no task"
    );
    assert!(topology.external_source_topics().contains(&s("g-topic")));
    Ok(())
}

// ---- Proptest against a map oracle ----

#[derive(Debug, Clone)]
enum Step {
    /// A global table update of key index (None: a deletion).
    Table(usize, Option<u8>),
    /// A stream record: stream key index, selected table key index, timestamp.
    Stream(usize, usize, i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4usize, proptest::option::of(0..10u8)).prop_map(|(k, v)| Step::Table(k, v)),
        (0..3usize, 0..4usize, 0..100i64).prop_map(|(k, t, ts)| Step::Stream(k, t, ts)),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn stream_global_table_joins_match_a_map_oracle(
        steps in proptest::collection::vec(step(), 0..40),
        left in any::<bool>(),
    ) {
        let fail = |e: streams_core::StreamsError| TestCaseError::fail(e.to_string());
        let builder = StreamsBuilder::new();
        let table = builder.global_table::<String, String>(
            "table",
            Consumed::with(Serdes::string(), Serdes::string()),
            Materialized::as_("table"),
        );
        let stream = builder
            .stream::<String, String>("stream", Consumed::with(Serdes::string(), Serdes::string()));
        let joined = if left {
            stream.left_join_global(&table, |_, v| v.clone(), |v, t| format!("{v}+{}", t.map_or("null", |t| t.as_str())))
        } else {
            stream.join_global(&table, |_, v| v.clone(), |v, t| format!("{v}+{t}"))
        };
        joined.to("out", Produced::with(Serdes::string(), Serdes::string()));
        let driver = TopologyTestDriver::new(builder.build().map_err(fail)?, StreamsConfig::new("global-prop")).map_err(fail)?;
        let t = driver.create_input_topic("table", Serdes::string(), Serdes::option(Serdes::string()));
        let st = driver.create_input_topic("stream", Serdes::string(), Serdes::string());
        let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());

        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let mut expected = Vec::new();
        for step in &steps {
            match step {
                Step::Table(k, v) => {
                    let key = format!("t{k}");
                    let value = v.map(|v| format!("v{v}"));
                    match &value {
                        Some(value) => { map.insert(key.clone(), value.clone()); }
                        None => { map.remove(&key); }
                    }
                    t.pipe_input_at(key, value, 0).map_err(fail)?;
                }
                Step::Stream(k, tk, ts) => {
                    let (key, value) = (format!("s{k}"), format!("t{tk}"));
                    match (map.get(&value), left) {
                        (Some(found), _) => expected.push((key.clone(), format!("{value}+{found}"), *ts)),
                        (None, true) => expected.push((key.clone(), format!("{value}+null"), *ts)),
                        (None, false) => {}
                    }
                    st.pipe_input_at(key, value, *ts).map_err(fail)?;
                }
            }
        }
        let got: Vec<(String, String, i64)> = out
            .read_records_to_list()
            .map_err(fail)?
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        prop_assert_eq!(got, expected);
    }
}

// ---- Processor API access ----

struct Lookup {
    write: bool,
}

impl streams_core::processor::Processor<String, String, String, String> for Lookup {
    fn process(
        &mut self,
        r: streams_core::record::Record<String, String>,
        ctx: &mut streams_core::processor::ProcessorContext<'_, String, String>,
    ) -> streams_core::processor::ProcessorResult {
        let store = ctx.key_value_store::<String, String>("lookup")?;
        if self.write {
            store.put(&r.key, &r.value)?;
        }
        let found = store.get(&r.key)?.unwrap_or_default();
        ctx.forward(r.with_value(found))
    }
}

fn run_lookup(write: bool) -> streams_core::Result<(TopologyTestDriver, Orders, Products)> {
    let builder = StreamsBuilder::new();
    let table = builder.global_table::<String, String>(
        "lookup-topic",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("lookup"),
    );
    assert_eq!(table.queryable_store_name(), "lookup");
    builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .process(move || Lookup { write }, &["lookup"])
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("global-papi"))?;
    let i = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    let t = driver.create_input_topic(
        "lookup-topic",
        Serdes::string(),
        Serdes::option(Serdes::string()),
    );
    Ok((driver, i, t))
}

#[test]
fn processors_read_a_global_store_by_name_but_cannot_write_it() -> R {
    let (driver, i, t) = run_lookup(false)?;
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    t.pipe_input_at(s("k"), Some(s("found")), 1)?;
    i.pipe_input_at(s("k"), s("x"), 2)?;
    assert_eq!(out.read_value()?, Some(s("found")));

    let (_driver, i, _t) = run_lookup(true)?;
    let err = i
        .pipe_input_at(s("k"), s("x"), 2)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("lookup") && err.contains("read-only"), "{err}");
    Ok(())
}

#[test]
fn a_topic_is_either_a_global_table_or_a_stream_source() {
    let builder = StreamsBuilder::new();
    let table = builder.global_table::<String, String>(
        "shared",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("shared-store"),
    );
    builder
        .stream::<String, String>("shared", Consumed::with(Serdes::string(), Serdes::string()))
        .join_global(&table, |k, _| k.clone(), |v, g| format!("{v}{g}"))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let err = builder
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("shared-store") && err.contains("`shared`"),
        "{err}"
    );
}

#[test]
fn a_topology_writing_the_global_topic_updates_the_global_store_and_describes_it() -> R {
    let builder = StreamsBuilder::new();
    let names = builder.global_table::<String, String>(
        "names",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("names"),
    );
    builder
        .stream::<String, String>(
            "renames",
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .to("names", Produced::with(Serdes::string(), Serdes::string()));
    builder
        .stream::<String, String>("greet", Consumed::with(Serdes::string(), Serdes::string()))
        .join_global(&names, |k, _| k.clone(), |v, n| format!("{v} {n}"))
        .to(
            "greetings",
            Produced::with(Serdes::string(), Serdes::string()),
        );
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    assert!(
        text.contains("Global store: names (topic: names;"),
        "{text}"
    );
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("global-write"))?;
    let renames = driver.create_input_topic("renames", Serdes::string(), Serdes::string());
    let greet = driver.create_input_topic("greet", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("greetings", Serdes::string(), Serdes::string());
    renames.pipe_input_at(s("k"), s("Ada"), 1)?;
    greet.pipe_input_at(s("k"), s("hello"), 2)?;
    assert_eq!(out.read_value()?, Some(s("hello Ada")));
    Ok(())
}
