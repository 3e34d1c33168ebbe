//! Every DSL operator, run through the TopologyTestDriver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streams_core::processor::{Processor, ProcessorContext, ProcessorResult, PunctuatorId};
use streams_core::record::{Headers, Record};
use streams_core::PunctuationType;
use streams_dsl::prelude::*;

type R = streams_core::Result<()>;

fn config() -> StreamsConfig {
    StreamsConfig::new("ops")
}

fn strings() -> Consumed<String, String> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn out_strings() -> Produced<String, String> {
    Produced::with(Serdes::string(), Serdes::string())
}

/// Builds `f`'s topology from the `in` topic (String, String) and returns a driver with
/// `in` and the (String, String) output topic `out`.
fn run(
    f: impl FnOnce(&StreamsBuilder, KStream<String, String>),
) -> (TopologyTestDriver, TestIn, TestOut) {
    let builder = StreamsBuilder::new();
    let input = builder.stream::<String, String>("in", strings());
    f(&builder, input);
    let driver =
        TopologyTestDriver::new(builder.build().expect("build"), config()).expect("driver");
    let i = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    let o = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    (driver, i, o)
}

type TestIn = streams_core::testing::TestInputTopic<String, String>;
type TestOut = streams_core::testing::TestOutputTopic<String, String>;

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn filter_and_filter_not() -> R {
    let (_d, i, o) = run(|_, st| {
        st.filter(|_, v| v.len() > 2).to("out", out_strings());
        st.filter_not(|_, v| v.len() > 2).to("short", out_strings());
    });
    i.pipe_key_values([(s("a"), s("xyz")), (s("b"), s("x")), (s("c"), s("long"))])?;
    assert_eq!(
        o.read_key_values_to_list()?,
        vec![(s("a"), s("xyz")), (s("c"), s("long"))]
    );
    Ok(())
}

#[test]
fn map_map_values_and_select_key() -> R {
    let (d, i, o) = run(|_, st| {
        st.map(|k, v| (v, k)).to("out", out_strings());
        st.map_values(|v| v.len() as i64)
            .to("lengths", Produced::with(Serdes::string(), Serdes::i64()));
        st.map_values_with_key(|k, v| format!("{k}={v}"))
            .to("pairs", out_strings());
        st.select_key(|_, v| v.to_uppercase())
            .to("rekeyed", out_strings());
    });
    i.pipe_input(s("k1"), s("v1"))?;
    assert_eq!(o.read_key_value()?, Some((s("v1"), s("k1"))));
    let lengths = d.create_output_topic("lengths", Serdes::string(), Serdes::i64());
    assert_eq!(lengths.read_key_value()?, Some((s("k1"), 2)));
    let pairs = d.create_output_topic("pairs", Serdes::string(), Serdes::string());
    assert_eq!(pairs.read_value()?, Some(s("k1=v1")));
    let rekeyed = d.create_output_topic("rekeyed", Serdes::string(), Serdes::string());
    assert_eq!(rekeyed.read_key_value()?, Some((s("V1"), s("v1"))));
    Ok(())
}

#[test]
fn flat_map_and_flat_map_values_keep_timestamps() -> R {
    let (d, i, o) = run(|_, st| {
        st.flat_map(|k, v| {
            v.split(' ')
                .map(|w| (w.to_string(), k.clone()))
                .collect::<Vec<_>>()
        })
        .to("out", out_strings());
        st.flat_map_values(|v| v.chars().map(|c| c.to_string()).collect::<Vec<_>>())
            .to("chars", out_strings());
    });
    i.pipe_input_at(s("k"), s("a b"), 42)?;
    let records = o.read_records_to_list()?;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect::<Vec<_>>(),
        vec![(s("a"), s("k")), (s("b"), s("k"))]
    );
    assert!(records.iter().all(|r| r.timestamp == 42));
    let chars = d.create_output_topic("chars", Serdes::string(), Serdes::string());
    assert_eq!(chars.read_values_to_list()?, vec![s("a"), s(" "), s("b")]);
    Ok(())
}

#[test]
fn peek_and_foreach_see_every_record() -> R {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let (seen2, done2) = (seen.clone(), done.clone());
    let (_d, i, o) = run(move |_, st| {
        let peeked = st.peek(move |k, v| seen2.lock().unwrap().push((k.clone(), v.clone())));
        peeked.to("out", out_strings());
        peeked.foreach(move |k, v| done2.lock().unwrap().push(format!("{k}:{v}")));
    });
    i.pipe_key_values([(s("a"), s("1")), (s("b"), s("2"))])?;
    assert_eq!(o.queue_size(), 2, "peek passes records on");
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(*done.lock().unwrap(), vec![s("a:1"), s("b:2")]);
    Ok(())
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch() -> R {
    let (d, i, _o) = run(|_, st| {
        let branches = st
            .split(Named::as_("len-"))
            .branch(|_, v| v.len() == 1, Branched::as_("one"))
            .branch(|_, v| v.len() <= 2, Branched::as_("two"))
            .default_branch(Branched::as_("more"));
        assert_eq!(
            branches.keys().cloned().collect::<Vec<_>>(),
            vec![s("len-more"), s("len-one"), s("len-two")]
        );
        for (name, stream) in branches {
            stream.to(&name, out_strings());
        }
    });
    // pipe_values sends null keys, which String keys cannot hold: a clear error, not a panic.
    let err = i
        .pipe_values([s("a")])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("null cannot be read as alloc::string::String"),
        "{err}"
    );
    i.pipe_key_values([
        (s("1"), s("a")),
        (s("2"), s("bb")),
        (s("3"), s("c")),
        (s("4"), s("ddd")),
    ])?;
    let read = |t: &str| {
        d.create_output_topic(t, Serdes::string(), Serdes::string())
            .read_values_to_list()
    };
    assert_eq!(read("len-one")?, vec![s("a"), s("c")]);
    assert_eq!(read("len-two")?, vec![s("bb")]);
    assert_eq!(read("len-more")?, vec![s("ddd")]);
    Ok(())
}

#[test]
fn merge_combines_two_streams() -> R {
    let builder = StreamsBuilder::new();
    let a = builder.stream::<String, String>("a", strings());
    let b = builder.stream::<String, String>("b", strings());
    a.merge(&b).to("out", out_strings());
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    d.create_input_topic("a", Serdes::string(), Serdes::string())
        .pipe_input(s("x"), s("from a"))?;
    d.create_input_topic("b", Serdes::string(), Serdes::string())
        .pipe_input(s("y"), s("from b"))?;
    let out = d.create_output_topic("out", Serdes::string(), Serdes::string());
    assert_eq!(out.read_values_to_list()?, vec![s("from a"), s("from b")]);
    Ok(())
}

#[test]
fn repartition_goes_through_an_internal_topic() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", strings())
        .select_key(|_, v| v.clone())
        .repartition(Repartitioned::with(Serdes::string(), Serdes::string()).with_name("by-value"))
        .to("out", out_strings());
    let topology = builder.build()?;
    assert_eq!(topology.subtopologies().len(), 2);
    let d = TopologyTestDriver::new(topology, config())?;
    d.create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("v"))?;
    assert_eq!(
        d.create_output_topic(
            "ops-by-value-repartition",
            Serdes::string(),
            Serdes::string()
        )
        .read_key_value()?,
        Some((s("v"), s("v")))
    );
    assert_eq!(
        d.create_output_topic("out", Serdes::string(), Serdes::string())
            .read_key_value()?,
        Some((s("v"), s("v")))
    );
    Ok(())
}

#[test]
fn to_dynamic_chooses_a_topic_per_record() -> R {
    let (d, i, _o) = run(|_, st| st.to_dynamic(|r| format!("out-{}", r.key), out_strings()));
    i.pipe_key_values([(s("x"), s("1")), (s("y"), s("2")), (s("x"), s("3"))])?;
    assert_eq!(d.output_topics(), vec![s("out-x"), s("out-y")]);
    assert_eq!(
        d.create_output_topic("out-x", Serdes::string(), Serdes::string())
            .read_values_to_list()?,
        vec![s("1"), s("3")]
    );
    Ok(())
}

#[test]
fn group_by_key_count_reduce_aggregate() -> R {
    let builder = StreamsBuilder::new();
    let s_ = builder.stream::<String, i64>("nums", Consumed::with(Serdes::string(), Serdes::i64()));
    let grouped = s_.group_by_key(Grouped::default());
    grouped
        .count(Materialized::as_("count").with_caching(false))
        .to_stream()
        .to(
            "counts",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    grouped
        .reduce(|a, b| a + b, Materialized::as_("sum").with_caching(false))
        .to_stream()
        .to(
            "sums",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    grouped
        .aggregate(
            Vec::<i64>::new,
            |_, v, mut all| {
                all.push(v);
                all
            },
            Materialized::with(Serdes::string(), Serdes::json::<Vec<i64>>()).with_caching(false),
        )
        .to_stream()
        .to(
            "lists",
            Produced::with(Serdes::string(), Serdes::option(Serdes::json())),
        );
    let topology = builder.build()?;
    assert_eq!(
        topology.subtopologies().len(),
        1,
        "no key change, no repartition"
    );
    let d = TopologyTestDriver::new(topology, config())?;
    let input = d.create_input_topic("nums", Serdes::string(), Serdes::i64());
    input.pipe_key_values([(s("a"), 1), (s("b"), 10), (s("a"), 2)])?;
    let counts = d.create_output_topic("counts", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        counts.read_key_values_to_list()?,
        vec![(s("a"), Some(1)), (s("b"), Some(1)), (s("a"), Some(2))]
    );
    let sums = d.create_output_topic("sums", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        sums.read_key_values_to_map()?,
        HashMap::from([(s("a"), Some(3)), (s("b"), Some(10))])
    );
    let lists = d.create_output_topic(
        "lists",
        Serdes::string(),
        Serdes::option(Serdes::json::<Vec<i64>>()),
    );
    assert_eq!(lists.read_key_values_to_map()?[&s("a")], Some(vec![1, 2]));
    assert_eq!(
        d.key_value_store::<String, streams_dsl::ValueAndTimestamp<i64>>("sum")?
            .get(&s("a"))?
            .map(|v| v.value),
        Some(3)
    );
    Ok(())
}

#[test]
fn caching_emits_the_latest_value_per_key_per_commit() -> R {
    // The driver commits after each input record; a record fanning out into several updates of
    // one key shows the cache absorbing them: one output for three updates.
    let make = |caching: bool| -> streams_core::Result<(
        TopologyTestDriver,
        streams_core::testing::TestOutputTopic<String, Option<i64>>,
    )> {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>("in", strings())
            .flat_map(|_, v| {
                v.split(',')
                    .map(|w| (w.to_string(), w.to_string()))
                    .collect::<Vec<_>>()
            })
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("c").with_caching(caching))
            .to_stream()
            .to(
                "out",
                Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
            );
        let d = TopologyTestDriver::new(builder.build()?, config())?;
        let o = d.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::i64()));
        Ok((d, o))
    };
    let (d, o) = make(true)?;
    d.create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("x,x,x,y"))?;
    assert_eq!(
        o.read_key_values_to_map()?,
        HashMap::from([(s("x"), Some(3)), (s("y"), Some(1))])
    );
    assert!(o.is_empty());

    let (d, o) = make(false)?;
    d.create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("x,x,x,y"))?;
    assert_eq!(
        o.read_values_to_list()?,
        vec![Some(1), Some(2), Some(3), Some(1)]
    );
    Ok(())
}

#[test]
fn changelogs_get_the_store_writes() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", strings())
        .group_by_key(Grouped::default())
        .count(Materialized::as_("counts"));
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    d.create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_key_values([(s("a"), s("1")), (s("a"), s("2"))])?;
    let changelog =
        d.create_output_topic("ops-counts-changelog", Serdes::string(), Serdes::bytes());
    let values = changelog.read_values_to_list()?;
    assert_eq!(values.len(), 2, "one changelog record per commit");
    assert_eq!(&values[1][8..], &2i64.to_be_bytes(), "timestamp then count");
    Ok(())
}

#[test]
fn table_source_filter_map_values_to_stream_and_tombstones() -> R {
    let builder = StreamsBuilder::new();
    let table = builder.table::<String, i64>(
        "balances",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_("balances").with_caching(false),
    );
    table
        .filter(|_, b| *b < 0)
        .map_values(|_, b| -b)
        .to_stream()
        .to(
            "debts",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    table.filter_not(|_, b| *b < 0).to_stream().to(
        "credits",
        Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
    );
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    let input = d.create_input_topic("balances", Serdes::string(), Serdes::option(Serdes::i64()));
    input.pipe_input(s("ann"), Some(-5))?;
    input.pipe_input(s("bob"), Some(7))?;
    input.pipe_input(s("ann"), Some(3))?; // leaves the debt table: a deletion there
    input.pipe_input(s("bob"), None)?; // tombstone
    let debts = d.create_output_topic("debts", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        debts.read_key_values_to_list()?,
        vec![(s("ann"), Some(5)), (s("ann"), None)]
    );
    let credits = d.create_output_topic("credits", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        credits.read_key_values_to_list()?,
        vec![(s("bob"), Some(7)), (s("ann"), Some(3)), (s("bob"), None)]
    );
    let store = d.key_value_store::<String, streams_dsl::ValueAndTimestamp<i64>>("balances")?;
    assert_eq!(store.get(&s("bob"))?, None, "the tombstone deleted bob");
    assert_eq!(store.get(&s("ann"))?.map(|v| v.value), Some(3));
    Ok(())
}

#[test]
fn table_group_by_moves_rows_between_groups() -> R {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .table::<String, String>("user-city", strings(), Materialized::default())
        .group_by(
            |user, city| (city, user),
            Grouped::with(Serdes::string(), Serdes::string()),
        );
    grouped
        .count(Materialized::as_("per-city").with_caching(false))
        .to_stream()
        .to(
            "counts",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    grouped
        .reduce(
            |a, b| format!("{a}+{b}"),
            |a, b| a.replace(&format!("+{b}"), "").replace(&b, ""),
            Materialized::as_("names").with_caching(false),
        )
        .to_stream()
        .to(
            "names",
            Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
        );
    grouped
        .aggregate(
            || 0i64,
            |_, u, n| n + u.len() as i64,
            |_, u, n| n - u.len() as i64,
            Materialized::with(Serdes::string(), Serdes::i64()).with_caching(false),
        )
        .to_stream()
        .to(
            "letters",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    let topology = builder.build()?;
    // Each aggregation repartitions on its own (no topology optimization): 1 + 3 sub-topologies.
    assert_eq!(
        topology.subtopologies().len(),
        4,
        "a table group-by always repartitions"
    );
    let d = TopologyTestDriver::new(topology, config())?;
    let input = d.create_input_topic(
        "user-city",
        Serdes::string(),
        Serdes::option(Serdes::string()),
    );
    input.pipe_input(s("ann"), Some(s("oslo")))?;
    input.pipe_input(s("bob"), Some(s("oslo")))?;
    input.pipe_input(s("ann"), Some(s("rome")))?; // ann moves: oslo -1, rome +1
    input.pipe_input(s("bob"), None)?; // bob leaves: oslo -1
    let counts = d.create_output_topic("counts", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        counts.read_key_values_to_list()?,
        vec![
            (s("oslo"), Some(1)),
            (s("oslo"), Some(2)),
            (s("oslo"), Some(1)),
            (s("rome"), Some(1)),
            (s("oslo"), Some(0)),
        ]
    );
    let letters = d.create_output_topic("letters", Serdes::string(), Serdes::option(Serdes::i64()));
    assert_eq!(
        letters.read_key_values_to_map()?,
        HashMap::from([(s("oslo"), Some(0)), (s("rome"), Some(3))])
    );
    let names = d.create_output_topic("names", Serdes::string(), Serdes::option(Serdes::string()));
    assert_eq!(
        names.read_key_values_to_map()?.get(&s("rome")),
        Some(&Some(s("ann")))
    );
    Ok(())
}

#[test]
fn default_serdes_come_from_the_config_and_mismatches_name_the_node() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::default())
        .map_values(|v| v.to_uppercase())
        .to("out", Produced::default());
    let with_defaults = config()
        .with_default_key_serde(Serdes::string())
        .with_default_value_serde(Serdes::string());
    let d = TopologyTestDriver::new(builder.build()?, with_defaults)?;
    d.create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("v"))?;
    assert_eq!(
        d.create_output_topic("out", Serdes::string(), Serdes::string())
            .read_value()?,
        Some(s("V"))
    );

    let wrong = config()
        .with_default_key_serde(Serdes::i64())
        .with_default_value_serde(Serdes::string());
    let err = TopologyTestDriver::new(builder.build()?, wrong)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("default.key.serde") && err.contains("KSTREAM-SOURCE-0000000000"),
        "{err}"
    );
    let err = TopologyTestDriver::new(builder.build()?, config())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("default.key.serde"), "{err}");
    Ok(())
}

#[test]
fn unreadable_records_fail_by_default_or_are_skipped_and_counted() -> R {
    let build = || {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>("in", strings())
            .to("out", out_strings());
        builder.build()
    };
    let d = TopologyTestDriver::new(build()?, config())?;
    let err = d
        .pipe_raw("in", Some(b"k".to_vec()), Some(vec![0xff, 0xfe]), 1)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("in-0@0") && err.contains("UTF-8"), "{err}");

    let lenient = config().set(
        "default.deserialization.exception.handler",
        "log-and-continue",
    );
    let d = TopologyTestDriver::new(build()?, lenient)?;
    d.pipe_raw("in", Some(b"k".to_vec()), Some(vec![0xff]), 1)?;
    d.pipe_raw("in", Some(b"k".to_vec()), Some(b"ok".to_vec()), 2)?;
    assert_eq!(d.metrics().skipped, 1);
    assert_eq!(
        d.create_output_topic("out", Serdes::string(), Serdes::string())
            .read_values_to_list()?,
        vec![s("ok")]
    );
    Ok(())
}

/// A Processor API processor exercising the context: stores by name, punctuation of both
/// kinds, record metadata, headers, and forwarding to a named child.
struct Auditor {
    wall: Option<PunctuatorId>,
}

impl Processor<String, String, String, String> for Auditor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> ProcessorResult {
        ctx.schedule(Duration::from_millis(100), PunctuationType::StreamTime)?;
        self.wall = Some(ctx.schedule(Duration::from_secs(10), PunctuationType::WallClockTime)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> ProcessorResult {
        let meta = ctx
            .record_metadata()
            .ok_or("no metadata while processing")?;
        let tag = format!("{}-{}@{}", meta.topic, meta.partition, meta.offset);
        let seen = ctx.key_value_store::<String, i64>("seen")?;
        let n = seen.get(&r.key)?.unwrap_or(0) + 1;
        seen.put(&r.key, &n)?;
        let mut headers = r.headers.clone();
        headers.add("origin", Some(tag.clone().into_bytes()));
        let child = if n == 1 { "first-seen" } else { "seen-again" };
        ctx.forward_to(
            child,
            Record::new(r.key, tag, r.timestamp).with_headers(headers),
        )
    }

    fn punctuate(
        &mut self,
        id: PunctuatorId,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> ProcessorResult {
        let kind = if Some(id) == self.wall {
            "wall"
        } else {
            "stream"
        };
        let record = Record::new(
            kind.to_string(),
            timestamp.to_string(),
            ctx.stream_time().max(0),
        );
        ctx.forward_to("first-seen", record)
    }
}

#[test]
fn processor_api_context_features() -> R {
    let builder = StreamsBuilder::new();
    builder
        .add_state_store(Stores::key_value("seen", Serdes::string(), Serdes::i64()).in_memory())?;
    let audited = builder
        .stream::<String, String>("in", strings())
        .process(|| Auditor { wall: None }, &["seen"]);
    // The children are named so the processor can pick one.
    let first = audited.filter(|_, _| true).named("first-seen");
    let again = audited.filter(|_, _| true).named("seen-again");
    first.to("first", out_strings());
    again.to("again", out_strings());
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    let input = d.create_input_topic("in", Serdes::string(), Serdes::string());
    input.pipe_input_at(s("a"), s("x"), 1000)?;
    input.pipe_input_at(s("a"), s("y"), 1050)?;
    input.pipe_input_at(s("b"), s("z"), 1150)?; // stream time passes 1000 + 100: one stream punctuation
    let first = d.create_output_topic("first", Serdes::string(), Serdes::string());
    let records = first.read_records_to_list()?;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "b", "stream"]);
    assert_eq!(records[0].value, "in-0@0");
    assert_eq!(
        records[0].headers.last("origin"),
        Some(Some(&b"in-0@0"[..]))
    );
    let again = d.create_output_topic("again", Serdes::string(), Serdes::string());
    assert_eq!(again.read_values_to_list()?, vec![s("in-0@1")]);

    d.advance_wall_clock_time(Duration::from_secs(10))?;
    let wall = first.read_records_to_list()?;
    assert_eq!(
        wall.iter()
            .map(|r| (r.key.as_str(), r.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("wall", "10000")]
    );
    assert_eq!(
        d.key_value_store::<String, i64>("seen")?.get(&s("a"))?,
        Some(2)
    );
    let _ = Headers::new();
    Ok(())
}

#[test]
fn a_processor_failure_names_the_task_and_processor() -> R {
    struct Fails;
    impl Processor<String, String, String, String> for Fails {
        fn process(
            &mut self,
            r: Record<String, String>,
            _: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessorResult {
            Err(format!("cannot handle {}", r.value).into())
        }
    }
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", strings())
        .process(|| Fails, &[])
        .named("picky")
        .to("out", out_strings());
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    let err = d
        .create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("boom"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("task 0_0") && err.contains("`picky`") && err.contains("cannot handle boom"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_processor_reaching_an_unconnected_store_gets_a_clear_error() -> R {
    struct Sneaky;
    impl Processor<String, String, String, String> for Sneaky {
        fn process(
            &mut self,
            _: Record<String, String>,
            ctx: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessorResult {
            ctx.key_value_store::<String, i64>("private")?;
            Ok(())
        }
    }
    let builder = StreamsBuilder::new();
    builder.add_state_store(Stores::key_value(
        "private",
        Serdes::string(),
        Serdes::i64(),
    ))?;
    let s_ = builder.stream::<String, String>("in", strings());
    s_.process(|| Sneaky, &[]).to("out", out_strings());
    s_.process(|| Sneaky, &["private"])
        .to("out2", out_strings());
    let d = TopologyTestDriver::new(builder.build()?, config())?;
    let err = d
        .create_input_topic("in", Serdes::string(), Serdes::string())
        .pipe_input(s("k"), s("v"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("is not connected to store `private`"), "{err}");
    Ok(())
}
