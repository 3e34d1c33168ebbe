//! Windowed aggregations through the TopologyTestDriver: time, sliding and session windows,
//! out-of-order and late records, emit-on-close and suppress, windowed serdes, store retention
//! and changelog settings.
//!
//! Expected outputs were worked out from Kafka Streams' processors and checked against Kafka
//! Streams 4.2.1's own TopologyTestDriver on the same input.

use std::time::Duration;

use streams_core::testing::TestOutputTopic;
use streams_core::topology::InternalTopicKind;
use streams_dsl::prelude::*;
use streams_dsl::ValueAndTimestamp;

type R = streams_core::Result<()>;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn no_cache(name: &str) -> Materialized<String, i64> {
    Materialized::as_(name).with_caching(false)
}

/// `(key@start/end, count or None, timestamp)` of every output record.
fn rows(
    out: &TestOutputTopic<String, Option<i64>>,
) -> streams_core::Result<Vec<(String, Option<i64>, i64)>> {
    Ok(out
        .read_records_to_list()?
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect())
}

fn row(key: &str, count: i64, ts: i64) -> (String, Option<i64>, i64) {
    (key.to_owned(), Some(count), ts)
}

/// Builds `windowed(grouped clicks)` -> `out` as `key@start/end` strings, and a driver.
type In = streams_core::testing::TestInputTopic<String, String>;
type Out = TestOutputTopic<String, Option<i64>>;
type CountTable = KTable<Windowed<String>, i64>;

fn run(
    windowed: impl FnOnce(KGroupedStream<String, String>) -> CountTable,
) -> streams_core::Result<(TopologyTestDriver, In, Out)> {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default());
    windowed(grouped)
        .to_stream()
        .map(|w, count| {
            (
                format!("{}@{}/{}", w.key, w.window.start, w.window.end),
                count,
            )
        })
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("windowed"))?;
    let input = driver.create_input_topic("clicks", Serdes::string(), Serdes::string());
    let output = driver.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::i64()));
    Ok((driver, input, output))
}

fn pipe(
    input: &streams_core::testing::TestInputTopic<String, String>,
    records: &[(&str, i64)],
) -> R {
    for (key, ts) in records {
        input.pipe_input_at((*key).to_owned(), "x".to_owned(), *ts)?;
    }
    Ok(())
}

#[test]
fn tumbling_windows_count_out_of_order_records_and_drop_late_ones() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
            .count(no_cache("counts"))
    })?;
    // a@3 arrives when stream time is 12: [0, 10) has closed. a@8 likewise at 25.
    pipe(
        &input,
        &[("a", 1), ("a", 5), ("b", 12), ("a", 3), ("a", 25), ("a", 8)],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@0/10", 1, 1),
            row("a@0/10", 2, 5),
            row("b@10/20", 1, 12),
            row("a@20/30", 1, 25),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 2);
    let store = driver.window_store::<String, ValueAndTimestamp<i64>>("counts")?;
    assert_eq!(
        store.fetch(&"a".to_owned(), 20)?,
        Some(ValueAndTimestamp {
            value: 1,
            timestamp: 25
        })
    );
    assert_eq!(
        store.fetch(&"a".to_owned(), 0)?,
        None,
        "expired: the store keeps windows for their size plus grace"
    );
    Ok(())
}

#[test]
fn hopping_windows_take_every_window_of_a_record_and_grace_keeps_them_open() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)).advance_by(ms(5)))
            .count(no_cache("counts"))
    })?;
    // Stream time 12, close time 7: a@3 still joins [0, 10). At 21 (close 16) a@9 misses both
    // of its windows, a@16 joins [10, 20) and [15, 25), b@2 misses [0, 10).
    pipe(
        &input,
        &[
            ("a", 12),
            ("a", 3),
            ("b", 7),
            ("a", 21),
            ("a", 9),
            ("a", 16),
            ("b", 2),
        ],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@5/15", 1, 12),
            row("a@10/20", 1, 12),
            row("a@0/10", 1, 3),
            row("b@0/10", 1, 7),
            row("b@5/15", 1, 7),
            row("a@15/25", 1, 21),
            row("a@20/30", 1, 21),
            row("a@10/20", 2, 16),
            row("a@15/25", 2, 21),
        ]
    );
    assert_eq!(
        driver.metrics().dropped_late,
        3,
        "counted per window missed"
    );
    Ok(())
}

#[test]
fn emit_on_window_close_emits_each_final_count_once() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(2)))
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::as_("counts"))
    })?;
    pipe(&input, &[("a", 1), ("b", 4), ("a", 11), ("a", 9)])?;
    assert!(out.is_empty(), "nothing closed yet (close time 9)");
    pipe(&input, &[("b", 13)])?;
    assert_eq!(rows(&out)?, vec![row("a@0/10", 2, 9), row("b@0/10", 1, 4)]);
    pipe(&input, &[("a", 8), ("b", 25), ("a", 14), ("a", 40)])?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@10/20", 1, 11),
            row("b@10/20", 1, 13),
            row("b@20/30", 1, 25)
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 2);
    Ok(())
}

#[test]
fn emit_on_window_close_survives_a_jump_in_stream_time() -> R {
    // With the minimum retention, a record far ahead expires every window before it; they are
    // emitted first.
    let (_driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(5)))
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::as_("counts"))
    })?;
    pipe(
        &input,
        &[("a", 1), ("b", 6), ("a", 12), ("b", 15), ("a", 100)],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@0/10", 1, 1),
            row("b@0/10", 1, 6),
            row("a@5/15", 1, 12),
            row("b@5/15", 1, 6),
            row("a@10/20", 1, 12),
            row("b@10/20", 1, 15),
            row("b@15/25", 1, 15),
        ]
    );
    Ok(())
}

#[test]
fn suppress_emits_the_final_value_of_each_window_once_through_the_cache() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)).advance_by(ms(5)))
            .count(Materialized::as_("counts"))
            .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
    })?;
    pipe(
        &input,
        &[
            ("a", 12),
            ("a", 3),
            ("b", 7),
            ("a", 21),
            ("a", 9),
            ("a", 16),
            ("b", 2),
        ],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@0/10", 1, 3),
            row("b@0/10", 1, 7),
            row("a@5/15", 1, 12),
            row("b@5/15", 1, 7)
        ]
    );
    pipe(&input, &[("a", 100)])?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@10/20", 2, 16),
            row("a@15/25", 2, 21),
            row("a@20/30", 1, 21)
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 3);
    Ok(())
}

#[test]
fn sliding_windows_follow_kafkas_algorithm() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(SlidingWindows::of_time_difference_and_grace(ms(10), ms(5)))
            .count(no_cache("counts"))
    })?;
    // a@1 and a@5 are early (before the time difference): they share [0, 10]; a@5 also starts
    // the right window of a@1. a@22 arrives when stream time is 30: its left window [12, 22]
    // ends before the close time 25, so that window is dropped; it joins [20, 30], and its
    // right window [23, 33] takes a@30.
    pipe(&input, &[("a", 1), ("a", 5), ("a", 30), ("a", 22)])?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@0/10", 1, 1),
            row("a@2/12", 1, 5),
            row("a@0/10", 2, 5),
            row("a@20/30", 1, 30),
            row("a@20/30", 2, 30),
            row("a@23/33", 1, 30),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 1);
    Ok(())
}

#[test]
fn sliding_windows_emit_on_close() -> R {
    let (_driver, input, out) = run(|g| {
        g.windowed_by(SlidingWindows::of_time_difference_with_no_grace(ms(10)))
            .emit_strategy(EmitStrategy::OnWindowClose)
            .count(Materialized::as_("counts"))
    })?;
    pipe(&input, &[("a", 20), ("a", 25), ("a", 50)])?;
    // [10, 20], [15, 25] and [21, 31] closed when stream time reached 50.
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@10/20", 1, 20),
            row("a@15/25", 2, 25),
            row("a@21/31", 1, 25)
        ]
    );
    Ok(())
}

#[test]
fn session_windows_merge_and_drop_late_records() -> R {
    let (driver, input, out) = run(|g| {
        g.windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(ms(5)))
            .count(no_cache("sessions"))
    })?;
    // a@6 merges with [10, 10] (the session [1, 1] has left the store: retention is gap plus
    // grace); the merged-away session is deleted downstream. b@3 and a@2 are late.
    pipe(
        &input,
        &[("a", 1), ("a", 10), ("a", 6), ("b", 3), ("a", 30), ("a", 2)],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@1/1", 1, 1),
            row("a@10/10", 1, 10),
            ("a@10/10".to_owned(), None, 10),
            row("a@6/10", 2, 10),
            row("a@30/30", 1, 30),
        ]
    );
    assert_eq!(driver.metrics().dropped_late, 2);
    Ok(())
}

#[test]
fn a_record_bridging_two_sessions_merges_them() -> R {
    let (_driver, input, out) = run(|g| {
        g.windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(20)))
            .count(no_cache("sessions"))
    })?;
    pipe(&input, &[("a", 1), ("a", 10), ("a", 6)])?;
    assert_eq!(
        rows(&out)?,
        vec![
            row("a@1/1", 1, 1),
            row("a@10/10", 1, 10),
            ("a@1/1".to_owned(), None, 1),
            ("a@10/10".to_owned(), None, 10),
            row("a@1/10", 3, 10),
        ]
    );
    Ok(())
}

#[test]
fn suppressed_sessions_wait_for_gap_and_grace() -> R {
    let (_driver, input, out) = run(|g| {
        g.windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(3)))
            .count(Materialized::as_("sessions"))
            .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()).with_name("final"))
    })?;
    pipe(
        &input,
        &[("a", 1), ("a", 10), ("a", 6), ("b", 3), ("a", 30)],
    )?;
    assert_eq!(
        rows(&out)?,
        vec![row("a@1/1", 1, 1), row("b@3/3", 1, 3), row("a@6/10", 2, 10)]
    );
    pipe(&input, &[("a", 2), ("a", 40)])?;
    assert_eq!(rows(&out)?, vec![row("a@30/30", 1, 30)]);
    Ok(())
}

#[test]
fn session_aggregate_merges_with_the_merger() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("pages", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(10), ms(20)))
        .aggregate(
            String::new,
            |_, page, pages| format!("{pages}{page}"),
            |_, a, b| format!("{a}+{b}"),
            Materialized::with(Serdes::string(), Serdes::string()).with_caching(false),
        )
        .to_stream()
        .filter(|_, v| v.is_some())
        .map(|w, v| (w.to_string(), v.unwrap_or_default()))
        .to("visits", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("sessions"))?;
    let input = driver.create_input_topic("pages", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("visits", Serdes::string(), Serdes::string());
    input.pipe_input_at("u".into(), "a".into(), 0)?;
    input.pipe_input_at("u".into(), "b".into(), 20)?;
    input.pipe_input_at("u".into(), "c".into(), 10)?;
    assert_eq!(
        out.read_key_values_to_list()?,
        vec![
            ("[u@0/0]".to_owned(), "a".to_owned()),
            ("[u@20/20]".to_owned(), "b".to_owned()),
            // Merging starts from the initializer's "", then takes each session in end order.
            ("[u@0/20]".to_owned(), "+a+bc".to_owned()),
        ]
    );
    Ok(())
}

#[test]
fn reduce_and_aggregate_on_time_windows() -> R {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, i64>("readings", Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::default());
    let windows = TimeWindows::of_size_with_no_grace(ms(100));
    grouped
        .windowed_by(windows)
        .reduce(
            |a, b| a.max(b),
            Materialized::as_("max").with_caching(false),
        )
        .to_stream()
        .map(|w, v| (w.to_string(), v.unwrap_or(-1)))
        .to("max", Produced::with(Serdes::string(), Serdes::i64()));
    grouped
        .windowed_by(windows)
        .aggregate(
            || 1000i64,
            |_, v, sum| sum + v,
            Materialized::with(Serdes::string(), Serdes::i64()).with_caching(false),
        )
        .to_stream()
        .map(|w, v| (w.to_string(), v.unwrap_or(-1)))
        .to("sum", Produced::with(Serdes::string(), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("reduce"))?;
    let input = driver.create_input_topic("readings", Serdes::string(), Serdes::i64());
    for (v, ts) in [(5, 10), (9, 20), (7, 30), (1, 150)] {
        input.pipe_input_at("s".into(), v, ts)?;
    }
    let max = driver.create_output_topic("max", Serdes::string(), Serdes::i64());
    assert_eq!(
        max.read_values_to_list()?,
        vec![5, 9, 9, 1],
        "reduce starts from the first value"
    );
    let sum = driver.create_output_topic("sum", Serdes::string(), Serdes::i64());
    assert_eq!(
        sum.read_key_values_to_list()?,
        vec![
            ("[s@0/100]".to_owned(), 1005),
            ("[s@0/100]".to_owned(), 1014),
            ("[s@0/100]".to_owned(), 1021),
            ("[s@100/200]".to_owned(), 1001),
        ]
    );
    Ok(())
}

#[test]
fn caching_emits_the_latest_count_per_window_per_commit() -> R {
    // The driver commits after each piped record; a cached store then emits once per window.
    let (_driver, input, out) = run(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(5)))
            .count(Materialized::as_("counts"))
    })?;
    pipe(&input, &[("a", 7)])?;
    let mut got = rows(&out)?;
    got.sort();
    assert_eq!(got, vec![row("a@0/10", 1, 7), row("a@5/15", 1, 7)]);
    Ok(())
}

#[test]
fn windowed_keys_read_back_with_kafkas_serdes() -> R {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default());
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(60)))
        .count(no_cache("time"))
        .to_stream()
        .to(
            "time-out",
            Produced::with(
                WindowedSerdes::time_windowed(Serdes::string(), ms(60)),
                Serdes::option(Serdes::i64()),
            ),
        );
    grouped
        .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(ms(60)))
        .count(no_cache("sessions"))
        .to_stream()
        .to(
            "session-out",
            Produced::with(
                WindowedSerdes::session_windowed(Serdes::string()),
                Serdes::option(Serdes::i64()),
            ),
        );
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("serdes"))?;
    let input = driver.create_input_topic("clicks", Serdes::string(), Serdes::string());
    input.pipe_input_at("k".into(), "x".into(), 130)?;
    // The key bytes as Java's TimeWindowedSerializer writes them: "k" then the start (120).
    let raw = driver.create_output_topic("time-out", Serdes::bytes(), Serdes::bytes());
    let mut want = b"k".to_vec();
    want.extend_from_slice(&120i64.to_be_bytes());
    assert_eq!(raw.read_key_value()?.map(|(k, _)| k), Some(want));
    let sessions = driver.create_output_topic(
        "session-out",
        WindowedSerdes::session_windowed(Serdes::string()),
        Serdes::option(Serdes::i64()),
    );
    assert_eq!(
        sessions.read_key_value()?,
        Some((
            Windowed::new("k".to_owned(), Window::new(130, 130)),
            Some(1)
        ))
    );
    Ok(())
}

#[test]
fn a_retention_below_size_plus_grace_is_an_error_naming_the_setting() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_and_grace(ms(60_000), ms(10_000)))
        .count(Materialized::as_("counts").with_retention(ms(30_000)));
    let err = builder
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("Materialized::with_retention")
            && err.contains("counts")
            && err.contains("70000"),
        "{err}"
    );
}

#[test]
fn invalid_windows_are_errors_at_build_time() {
    type Case = Box<dyn Fn(KGroupedStream<String, String>)>;
    let cases: Vec<Case> = vec![
        Box::new(|g| {
            g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(20)))
                .count(Materialized::default());
        }),
        Box::new(|g| {
            g.windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(ms(0)))
                .count(Materialized::default());
        }),
        Box::new(|g| {
            g.windowed_by(SlidingWindows::of_time_difference_with_no_grace(ms(0)))
                .count(Materialized::default());
        }),
    ];
    for case in cases {
        let builder = StreamsBuilder::new();
        case(
            builder
                .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
                .group_by_key(Grouped::default()),
        );
        let err = builder
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Windows"), "{err}");
    }
}

#[test]
fn suppress_needs_a_windowed_aggregation_upstream() {
    let builder = StreamsBuilder::new();
    builder
        .table::<Windowed<String>, i64>(
            "windowed-table",
            Consumed::with(
                WindowedSerdes::time_windowed(Serdes::string(), ms(10)),
                Serdes::i64(),
            ),
            Materialized::default(),
        )
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()));
    let err = builder
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("windowed aggregation"), "{err}");
}

#[test]
fn window_changelogs_are_compacted_and_deleted_after_the_retention() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by(
            |_, v| v.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .windowed_by(TimeWindows::of_size_and_grace(ms(60_000), ms(5_000)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::as_("per-minute"));
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    assert!(
        text.contains("per-minute-repartition"),
        "a key change repartitions: {text}"
    );
    let changelog = |store: &str| {
        topology
            .internal_topics()
            .iter()
            .find_map(|t| match &t.kind {
                InternalTopicKind::Changelog {
                    store: s, config, ..
                } if s == store => Some(config.clone()),
                _ => None,
            })
    };
    let windows = changelog("per-minute").unwrap_or_default();
    assert_eq!(
        windows.get("cleanup.policy").map(String::as_str),
        Some("compact,delete")
    );
    assert_eq!(
        windows.get("retention.ms").map(String::as_str),
        Some("86465000"),
        "size + grace + one day"
    );
    let emit_state = changelog("per-minute-emit-state").unwrap_or_default();
    assert_eq!(
        emit_state.get("cleanup.policy"),
        None,
        "a key-value changelog: compacted"
    );
    Ok(())
}

#[test]
fn windowed_keys_display_as_in_java() {
    let w = Windowed::new("user", Window::new(60_000, 120_000));
    assert_eq!(w.to_string(), "[user@60000/120000]");
}
