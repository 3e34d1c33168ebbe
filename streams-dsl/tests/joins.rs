//! Joins through the TopologyTestDriver: stream-stream joins (inner, left, outer) with
//! out-of-order and late records, asymmetric windows, null keys, and the repartition a key
//! change forces in front of a join; stream-table joins (inner, left) with table updates,
//! deletions, null keys, a re-keyed stream and a filtered table; table-table joins (inner,
//! left, outer) with the old values a downstream aggregation needs.
//!
//! Expected outputs were worked out from the rules in `streams_dsl::stream_join` and
//! `streams_dsl::table_join`, and the inputs of the stream-stream, stream-table and table-table
//! tests with unnamed joins were run through Kafka Streams 4.2.1's own TopologyTestDriver
//! (caches off, the outer join's emit interval at 0): it emits the same records, in the same
//! order, with the same timestamps.

use std::time::Duration;

use streams_core::testing::{TestInputTopic, TestOutputTopic};
use streams_dsl::prelude::*;
use streams_dsl::ValueAndTimestamp;

type R = streams_core::Result<()>;
type In = TestInputTopic<String, String>;
type Out = TestOutputTopic<String, String>;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn strings() -> StreamJoined<String, String, String> {
    StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string())
}

fn or_null(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| s("null"))
}

/// `(key, value, timestamp)` of every output record so far.
fn rows(out: &Out) -> streams_core::Result<Vec<(String, String, i64)>> {
    Ok(out
        .read_records_to_list()?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn row(key: &str, value: &str, ts: i64) -> (String, String, i64) {
    (s(key), s(value), ts)
}

#[derive(Clone, Copy)]
enum Kind {
    Inner,
    Left,
    Outer,
}

/// `left` joined with `right` into `out`, values written `left+right` (`null` for no partner).
fn run(
    kind: Kind,
    windows: JoinWindows,
) -> streams_core::Result<(TopologyTestDriver, In, In, Out)> {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder.stream::<String, String>("left", c());
    let right = builder.stream::<String, String>("right", c());
    let joined = match kind {
        Kind::Inner => left.join(&right, |l, r| format!("{l}+{r}"), windows, strings()),
        Kind::Left => left.left_join(
            &right,
            |l, r| format!("{l}+{}", or_null(r)),
            windows,
            strings(),
        ),
        Kind::Outer => left.outer_join(
            &right,
            |l, r| format!("{}+{}", or_null(l), or_null(r)),
            windows,
            strings(),
        ),
    };
    joined.to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("joins"))?;
    let l = driver.create_input_topic("left", Serdes::string(), Serdes::string());
    let r = driver.create_input_topic("right", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    Ok((driver, l, r, out))
}

#[test]
fn inner_join_pairs_records_in_either_order_and_drops_late_ones() -> R {
    let windows = JoinWindows::of_time_difference_and_grace(ms(10), ms(5));
    let (driver, l, r, out) = run(Kind::Inner, windows)?;
    l.pipe_input_at(s("a"), s("l1"), 100)?;
    assert!(out.is_empty(), "an inner join waits for a partner");
    r.pipe_input_at(s("a"), s("r1"), 105)?;
    // Out of order, within the grace period: a right record at 95 joins left records in
    // [85, 105].
    r.pipe_input_at(s("a"), s("r0"), 95)?;
    // A left record at 92 joins right records in [82, 102].
    l.pipe_input_at(s("a"), s("l2"), 92)?;
    r.pipe_input_at(s("b"), s("rb"), 100)?;
    // Late: 80 + 10 + 5 < 105, dropped and counted.
    l.pipe_input_at(s("a"), s("late"), 80)?;
    // 111 - 10 > 100: l1 is outside this record's window.
    r.pipe_input_at(s("a"), s("r2"), 111)?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a", "l1+r1", 105),
            row("a", "l1+r0", 100),
            row("a", "l2+r0", 95),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn a_record_joins_every_partner_in_timestamp_order_with_the_larger_timestamp() -> R {
    let windows = JoinWindows::of_time_difference_without_grace(ms(10));
    let (_driver, l, r, out) = run(Kind::Inner, windows)?;
    r.pipe_input_at(s("k"), s("r8"), 8)?;
    r.pipe_input_at(s("k"), s("r3"), 3)?;
    r.pipe_input_at(s("k"), s("r3b"), 3)?;
    r.pipe_input_at(s("k"), s("r30"), 30)?;
    // Stream time 30: a left record at 20 is on time (20 + 10 >= 30) and joins [10, 30].
    l.pipe_input_at(s("k"), s("l20"), 20)?;
    assert_eq!(rows(&out)?, vec![row("k", "l20+r30", 30)]);
    Ok(())
}

#[test]
fn asymmetric_windows_join_only_later_right_records() -> R {
    let windows = JoinWindows::of_time_difference_and_grace(ms(10), ms(100)).before(ms(0));
    let (_driver, l, r, out) = run(Kind::Inner, windows)?;
    l.pipe_input_at(s("a"), s("l"), 100)?;
    r.pipe_input_at(s("a"), s("early"), 95)?;
    r.pipe_input_at(s("a"), s("r"), 105)?;
    r.pipe_input_at(s("a"), s("too-late"), 111)?;
    assert_eq!(rows(&out)?, vec![row("a", "l+r", 105)]);
    Ok(())
}

#[test]
fn left_join_emits_an_unmatched_record_once_its_window_has_closed() -> R {
    let windows = JoinWindows::of_time_difference_and_grace(ms(10), ms(5));
    let (driver, l, r, out) = run(Kind::Left, windows)?;
    l.pipe_input_at(s("a"), s("l1"), 100)?; // closes when stream time passes 115
    l.pipe_input_at(s("b"), s("l2"), 103)?; // closes when stream time passes 118
    assert!(out.is_empty(), "no early null results");
    r.pipe_input_at(s("a"), s("r1"), 108)?;
    assert_eq!(rows(&out)?, vec![row("a", "l1+r1", 108)]);
    r.pipe_input_at(s("c"), s("rc"), 116)?; // right records alone yield nothing
    r.pipe_input_at(s("b"), s("rb-late"), 90)?; // 90 + 10 + 5 < 116: late
    assert!(out.is_empty(), "l2 is within its grace period until 118");
    l.pipe_input_at(s("c"), s("l3"), 119)?;
    assert_eq!(
        rows(&out)?,
        vec![row("b", "l2+null", 103), row("c", "l3+rc", 119)],
        "the closed record comes first, with its own timestamp"
    );
    assert_eq!(driver.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn left_join_unmatched_records_close_in_timestamp_order() -> R {
    let windows = JoinWindows::of_time_difference_without_grace(ms(5));
    let (_driver, l, _r, out) = run(Kind::Left, windows)?;
    l.pipe_input_at(s("b"), s("b1"), 10)?;
    l.pipe_input_at(s("a"), s("a1"), 10)?;
    l.pipe_input_at(s("c"), s("c1"), 6)?; // out of order, on time (6 + 5 >= 10)
    l.pipe_input_at(s("a"), s("a2"), 10)?;
    l.pipe_input_at(s("z"), s("z"), 100)?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("c", "c1+null", 6),
            row("a", "a1+null", 10),
            row("a", "a2+null", 10),
            row("b", "b1+null", 10),
        ],
        "by timestamp, then key, then arrival"
    );
    Ok(())
}

#[test]
fn outer_join_emits_unmatched_records_of_both_sides_after_their_windows() -> R {
    let windows = JoinWindows::of_time_difference_without_grace(ms(10));
    let (_driver, l, r, out) = run(Kind::Outer, windows)?;
    l.pipe_input_at(s("a"), s("l1"), 0)?; // closes after 10
    r.pipe_input_at(s("b"), s("r1"), 5)?; // closes after 15
    assert!(out.is_empty());
    r.pipe_input_at(s("a"), s("r2"), 20)?;
    assert_eq!(
        rows(&out)?,
        vec![row("a", "l1+null", 0), row("b", "null+r1", 5)]
    );
    // Out of order: a left record at 15 joins right records in [5, 25], taking r2 off the
    // waiting list.
    l.pipe_input_at(s("a"), s("l2"), 15)?;
    assert_eq!(rows(&out)?, vec![row("a", "l2+r2", 20)]);
    l.pipe_input_at(s("c"), s("l4"), 40)?;
    assert!(out.is_empty(), "r2 found a partner and l2 joined at once");
    r.pipe_input_at(s("d"), s("r5"), 60)?;
    assert_eq!(rows(&out)?, vec![row("c", "l4+null", 40)]);
    Ok(())
}

#[test]
fn null_keys_never_join_and_outer_sides_emit_them_at_once() -> R {
    let builder = StreamsBuilder::new();
    let keys = || Serdes::option(Serdes::string());
    let c = || Consumed::with(keys(), Serdes::string());
    let left = builder.stream::<Option<String>, String>("left", c());
    let right = builder.stream::<Option<String>, String>("right", c());
    let windows = JoinWindows::of_time_difference_without_grace(ms(10));
    let joined = || StreamJoined::with(keys(), Serdes::string(), Serdes::string());
    let p = || Produced::with(keys(), Serdes::string());
    left.join(&right, |l, r| format!("{l}+{r}"), windows, joined())
        .to("inner", p());
    left.left_join(
        &right,
        |l, r| format!("{l}+{}", or_null(r)),
        windows,
        joined().with_name("left"),
    )
    .to("left-out", p());
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("joins"))?;
    let l = driver.create_input_topic("left", keys(), Serdes::string());
    let r = driver.create_input_topic("right", keys(), Serdes::string());
    let inner = driver.create_output_topic("inner", keys(), Serdes::string());
    let left_out = driver.create_output_topic("left-out", keys(), Serdes::string());
    r.pipe_input_at(None, s("r"), 5)?;
    l.pipe_input_at(None, s("l"), 5)?;
    assert!(inner.is_empty(), "null keys do not join");
    assert_eq!(
        left_out.read_key_values_to_list()?,
        vec![(None, s("l+null"))],
        "emitted at once, with its null key"
    );
    Ok(())
}

#[test]
fn a_key_change_before_a_join_repartitions_that_side_only() -> R {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder
        .stream::<String, String>("left", c())
        .map(|k, v| (v, k));
    let right = builder.stream::<String, String>("right", c());
    left.join(
        &right,
        |l, r| format!("{l}+{r}"),
        JoinWindows::of_time_difference_without_grace(ms(10)),
        strings().with_name("j"),
    )
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    assert!(text.contains("j-left-repartition"), "{text}");
    assert!(!text.contains("j-right-repartition"), "{text}");
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("joins"))?;
    let l = driver.create_input_topic("left", Serdes::string(), Serdes::string());
    let r = driver.create_input_topic("right", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    l.pipe_input_at(s("ignored"), s("k"), 1)?;
    r.pipe_input_at(s("k"), s("r"), 2)?;
    assert_eq!(rows(&out)?, vec![row("k", "ignored+r", 2)]);

    let unchanged = StreamsBuilder::new();
    let left = unchanged
        .stream::<String, String>("left", c())
        .map_values(|v| v.to_uppercase());
    let right = unchanged.stream::<String, String>("right", c());
    left.join(
        &right,
        |l, r| format!("{l}+{r}"),
        JoinWindows::of_time_difference_without_grace(ms(10)),
        strings(),
    )
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    assert_eq!(
        unchanged.build()?.subtopologies().len(),
        1,
        "map_values keeps the key: no repartition"
    );
    Ok(())
}

#[test]
fn join_stores_are_named_after_the_store_name() -> R {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder.stream::<String, String>("left", c());
    let right = builder.stream::<String, String>("right", c());
    left.left_join(
        &right,
        |l, r| format!("{l}+{}", or_null(r)),
        JoinWindows::of_time_difference_without_grace(ms(10)),
        strings().with_store_name("clicks"),
    )
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    for store in [
        "clicks-this-join-store",
        "clicks-outer-other-join-store",
        "clicks-left-shared-join-store",
    ] {
        assert!(text.contains(store), "{store} in {text}");
    }
    Ok(())
}

#[test]
fn joining_streams_of_two_builders_is_an_error() {
    let a = StreamsBuilder::new();
    let b = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = a.stream::<String, String>("left", c());
    let right = b.stream::<String, String>("right", c());
    left.join(
        &right,
        |l, r| format!("{l}+{r}"),
        JoinWindows::of_time_difference_without_grace(ms(10)),
        strings(),
    )
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let err = a.build().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("different StreamsBuilders"), "{err}");
}

// ---- Stream-table joins ----

type Tables = TestInputTopic<String, Option<String>>;
type TableOut = TestOutputTopic<String, Option<String>>;

/// `orders` joined with the `customers` table into `out`, values `order@customer`.
fn run_stream_table(left: bool) -> streams_core::Result<(TopologyTestDriver, In, Tables, Out)> {
    let builder = StreamsBuilder::new();
    let orders = builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let customers = builder.table::<String, String>(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("customers"),
    );
    let joined = Joined::with(Serdes::string(), Serdes::string());
    let enriched = if left {
        orders.left_join_table(&customers, |o, c| format!("{o}@{}", or_null(c)), joined)
    } else {
        orders.join_table(&customers, |o, c| format!("{o}@{c}"), joined)
    };
    enriched.to("out", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("joins"))?;
    let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    let c = driver.create_input_topic(
        "customers",
        Serdes::string(),
        Serdes::option(Serdes::string()),
    );
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    Ok((driver, o, c, out))
}

#[test]
fn stream_table_inner_join_looks_up_the_table_and_only_the_stream_triggers() -> R {
    let (_driver, o, c, out) = run_stream_table(false)?;
    o.pipe_input_at(s("c1"), s("o1"), 10)?;
    assert!(out.is_empty(), "no customer yet");
    c.pipe_input_at(s("c1"), Some(s("Ada")), 20)?;
    assert!(out.is_empty(), "a table update triggers nothing");
    o.pipe_input_at(s("c1"), s("o2"), 30)?;
    c.pipe_input_at(s("c1"), Some(s("Ada L.")), 40)?;
    // Out of order: the lookup sees the table as it is now.
    o.pipe_input_at(s("c1"), s("o3"), 25)?;
    o.pipe_input_at(s("c2"), s("o4"), 50)?;
    c.pipe_input_at(s("c1"), None, 60)?; // deleted
    o.pipe_input_at(s("c1"), s("o5"), 70)?;
    assert_eq!(
        rows(&out)?,
        vec![row("c1", "o2@Ada", 30), row("c1", "o3@Ada L.", 25)],
        "results carry the stream record's timestamp"
    );
    Ok(())
}

#[test]
fn stream_table_left_join_yields_every_stream_record() -> R {
    let (_driver, o, c, out) = run_stream_table(true)?;
    o.pipe_input_at(s("c1"), s("o1"), 10)?;
    c.pipe_input_at(s("c1"), Some(s("Ada")), 20)?;
    o.pipe_input_at(s("c1"), s("o2"), 30)?;
    c.pipe_input_at(s("c1"), None, 40)?;
    o.pipe_input_at(s("c1"), s("o3"), 5)?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("c1", "o1@null", 10),
            row("c1", "o2@Ada", 30),
            row("c1", "o3@null", 5)
        ]
    );
    Ok(())
}

#[test]
fn stream_table_null_keys_are_dropped_by_inner_and_kept_by_left_joins() -> R {
    let builder = StreamsBuilder::new();
    let keys = || Serdes::option(Serdes::string());
    let orders = builder
        .stream::<Option<String>, String>("orders", Consumed::with(keys(), Serdes::string()));
    let customers = builder.table::<Option<String>, String>(
        "customers",
        Consumed::with(keys(), Serdes::string()),
        Materialized::default(),
    );
    let p = || Produced::with(keys(), Serdes::string());
    orders
        .join_table(&customers, |o, c| format!("{o}@{c}"), Joined::default())
        .to("inner", p());
    orders
        .left_join_table(
            &customers,
            |o, c| format!("{o}@{}", or_null(c)),
            Joined::default(),
        )
        .to("left", p());
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("joins"))?;
    let o = driver.create_input_topic("orders", keys(), Serdes::string());
    let inner = driver.create_output_topic("inner", keys(), Serdes::string());
    let left = driver.create_output_topic("left", keys(), Serdes::string());
    o.pipe_input_at(None, s("o1"), 1)?;
    assert!(inner.is_empty());
    assert_eq!(left.read_key_values_to_list()?, vec![(None, s("o1@null"))]);
    Ok(())
}

#[test]
fn stream_table_join_repartitions_a_rekeyed_stream_and_reads_an_unmaterialized_table() -> R {
    let builder = StreamsBuilder::new();
    let orders = builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .select_key(|_, v| v.split(':').next().unwrap_or_default().to_owned());
    let vip = builder
        .table::<String, String>(
            "customers",
            Consumed::with(Serdes::string(), Serdes::string()),
            Materialized::default(),
        )
        .filter(|_, name| name.starts_with('V'));
    orders
        .join_table(
            &vip,
            |o, c| format!("{o}@{c}"),
            Joined::with(Serdes::string(), Serdes::string()).with_name("vip-orders"),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    assert!(text.contains("vip-orders-repartition"), "{text}");
    assert!(text.contains("KTABLE-MATERIALIZE-STATE-STORE-"), "{text}");
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("joins"))?;
    let o = driver.create_input_topic("orders", Serdes::string(), Serdes::string());
    let c = driver.create_input_topic("customers", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    c.pipe_input_at(s("c1"), s("Vera"), 1)?;
    c.pipe_input_at(s("c2"), s("Bob"), 1)?;
    o.pipe_input_at(s("x"), s("c1:o1"), 2)?;
    o.pipe_input_at(s("y"), s("c2:o2"), 3)?;
    c.pipe_input_at(s("c1"), s("Anna"), 4)?; // no longer passes the filter
    o.pipe_input_at(s("z"), s("c1:o3"), 5)?;
    assert_eq!(rows(&out)?, vec![row("c1", "c1:o1@Vera", 2)]);
    Ok(())
}

// ---- Table-table joins ----

/// Tables `left` and `right` joined into `out` (new values), with a count of rows per joined
/// value in `counts` (which only stays right if old values are propagated).
fn run_tables(kind: Kind) -> streams_core::Result<(TopologyTestDriver, Tables, Tables, TableOut)> {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder.table::<String, String>("left", c(), Materialized::default());
    let right = builder.table::<String, String>("right", c(), Materialized::default());
    let m = || Materialized::with(Serdes::string(), Serdes::string());
    let joined = match kind {
        Kind::Inner => left.join(&right, |l, r| format!("{l}+{r}"), m()),
        Kind::Left => left.left_join(&right, |l, r| format!("{l}+{}", or_null(r)), m()),
        Kind::Outer => left.outer_join(
            &right,
            |l, r| format!("{}+{}", or_null(l), or_null(r)),
            Materialized::as_("joined").with_value_serde(Serdes::string()),
        ),
    };
    joined.to_stream().to(
        "out",
        Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
    );
    joined
        .group_by(
            |_, v| (v, s("row")),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_("counts"));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("joins"))?;
    let option = || Serdes::option(Serdes::string());
    let l = driver.create_input_topic("left", Serdes::string(), option());
    let r = driver.create_input_topic("right", Serdes::string(), option());
    let out = driver.create_output_topic("out", Serdes::string(), option());
    Ok((driver, l, r, out))
}

fn table_rows(
    out: &TestOutputTopic<String, Option<String>>,
) -> streams_core::Result<Vec<(String, Option<String>, i64)>> {
    Ok(out
        .read_records_to_list()?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn change(key: &str, value: Option<&str>, ts: i64) -> (String, Option<String>, i64) {
    (s(key), value.map(s), ts)
}

fn count_of(driver: &TopologyTestDriver, value: &str) -> streams_core::Result<Option<i64>> {
    let store = driver.key_value_store::<String, ValueAndTimestamp<i64>>("counts")?;
    Ok(store.get(&s(value))?.map(|v| v.value))
}

#[test]
fn table_inner_join_follows_both_sides_with_old_values() -> R {
    let (driver, l, r, out) = run_tables(Kind::Inner)?;
    l.pipe_input_at(s("a"), Some(s("l1")), 1)?;
    assert!(out.is_empty(), "no right row yet");
    r.pipe_input_at(s("a"), Some(s("r1")), 5)?;
    l.pipe_input_at(s("a"), Some(s("l2")), 3)?;
    r.pipe_input_at(s("b"), Some(s("rb")), 6)?;
    assert_eq!(
        count_of(&driver, "l1+r1")?,
        Some(0),
        "the old row left its group"
    );
    assert_eq!(count_of(&driver, "l2+r1")?, Some(1));
    l.pipe_input_at(s("a"), None, 7)?;
    r.pipe_input_at(s("a"), None, 8)?;
    assert_eq!(
        table_rows(&out)?,
        vec![
            change("a", Some("l1+r1"), 5),
            change("a", Some("l2+r1"), 5),
            change("a", None, 7),
        ],
        "timestamps are the larger of the two rows'"
    );
    assert_eq!(count_of(&driver, "l2+r1")?, Some(0));
    Ok(())
}

#[test]
fn table_left_join_keeps_every_left_row() -> R {
    let (driver, l, r, out) = run_tables(Kind::Left)?;
    l.pipe_input_at(s("a"), Some(s("l1")), 1)?;
    r.pipe_input_at(s("a"), Some(s("r1")), 5)?;
    r.pipe_input_at(s("b"), Some(s("rb")), 6)?;
    r.pipe_input_at(s("a"), None, 7)?;
    l.pipe_input_at(s("a"), None, 8)?;
    assert_eq!(
        table_rows(&out)?,
        vec![
            change("a", Some("l1+null"), 1),
            change("a", Some("l1+r1"), 5),
            change("a", Some("l1+null"), 7),
            change("a", None, 8),
        ]
    );
    for value in ["l1+null", "l1+r1"] {
        assert_eq!(count_of(&driver, value)?, Some(0), "{value}");
    }
    Ok(())
}

#[test]
fn table_outer_join_has_a_row_while_either_side_does() -> R {
    let (driver, l, r, out) = run_tables(Kind::Outer)?;
    l.pipe_input_at(s("a"), Some(s("l1")), 1)?;
    r.pipe_input_at(s("b"), Some(s("rb")), 2)?;
    r.pipe_input_at(s("a"), Some(s("r1")), 3)?;
    l.pipe_input_at(s("a"), None, 4)?;
    r.pipe_input_at(s("a"), None, 5)?;
    assert_eq!(
        table_rows(&out)?,
        vec![
            change("a", Some("l1+null"), 1),
            change("b", Some("null+rb"), 2),
            change("a", Some("l1+r1"), 3),
            change("a", Some("null+r1"), 4),
            change("a", None, 5),
        ]
    );
    assert_eq!(count_of(&driver, "null+rb")?, Some(1));
    assert_eq!(count_of(&driver, "null+r1")?, Some(0));
    let joined = driver.key_value_store::<String, ValueAndTimestamp<String>>("joined")?;
    assert_eq!(joined.get(&s("a"))?, None);
    assert_eq!(
        joined.get(&s("b"))?.map(|v| v.value),
        Some(s("null+rb")),
        "a named Materialized keeps the result"
    );
    Ok(())
}
