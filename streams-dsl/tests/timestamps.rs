//! Event time as records enter: per-source extractors (stream and table sources), the
//! application's default extractor, and the policy for negative timestamps.

use streams_core::{InvalidTimestampPolicy, Record, StreamsError, WallClockTimestamp};
use streams_dsl::prelude::*;

type R = streams_core::Result<()>;

/// A pass-through of `in` to `out` whose output timestamps show the event time.
fn passthrough(
    consumed: Consumed<String, String>,
    config: StreamsConfig,
) -> streams_core::Result<TopologyTestDriver> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", consumed)
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    TopologyTestDriver::new(builder.build()?, config)
}

fn strings() -> Consumed<String, String> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn timestamps(driver: &TopologyTestDriver) -> streams_core::Result<Vec<i64>> {
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::string());
    Ok(out
        .read_records_to_list()?
        .into_iter()
        .map(|r| r.timestamp)
        .collect())
}

#[test]
fn a_source_extractor_sets_event_time_and_drives_windows() -> R {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(
            "in",
            strings().with_timestamp_extractor(|r: &Record<String, String>, _: i64| {
                r.value.parse::<i64>().unwrap_or(-1)
            }),
        )
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(
            std::time::Duration::from_millis(100),
        ))
        .count(Materialized::as_("counts").with_caching(false))
        .to_stream()
        .map(|w, c| (w.to_string(), c.unwrap_or(0)))
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("ts"))?;
    let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    // The Kafka timestamps (0) are ignored; the values carry event time.
    input.pipe_input_at("k".into(), "150".into(), 0)?;
    input.pipe_input_at("k".into(), "420".into(), 0)?;
    input.pipe_input_at("k".into(), "130".into(), 0)?;
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::i64());
    assert_eq!(
        out.read_key_values_to_list()?,
        vec![("[k@100/200]".to_owned(), 1), ("[k@400/500]".to_owned(), 1)]
    );
    assert_eq!(
        driver.metrics().dropped_late,
        1,
        "130 came after stream time 420"
    );
    Ok(())
}

#[test]
fn table_sources_use_their_extractor_and_keep_tombstone_timestamps() -> R {
    let builder = StreamsBuilder::new();
    builder
        .table::<String, String>(
            "prices",
            strings().with_timestamp_extractor(|r: &Record<String, String>, _: i64| {
                r.value.len() as i64 * 1000
            }),
            Materialized::as_("prices").with_caching(false),
        )
        .to_stream()
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
        );
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("ts"))?;
    let input =
        driver.create_input_topic("prices", Serdes::string(), Serdes::option(Serdes::string()));
    input.pipe_input_at("a".into(), Some("xyz".into()), 5)?;
    input.pipe_input_at("a".into(), None, 7)?;
    let out = driver.create_output_topic("out", Serdes::string(), Serdes::option(Serdes::string()));
    let got: Vec<i64> = out
        .read_records_to_list()?
        .into_iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(got, vec![3000, 7]);
    Ok(())
}

#[test]
fn a_negative_timestamp_fails_by_default_naming_record_and_setting() -> R {
    let driver = passthrough(strings(), StreamsConfig::new("ts"))?;
    let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    let err = input
        .pipe_input_at("k".into(), "v".into(), -5)
        .err()
        .map(|e| {
            (
                matches!(e, StreamsError::InvalidTimestamp { timestamp: -5, .. }),
                e.to_string(),
            )
        });
    let (typed, message) = err.unwrap_or_default();
    assert!(typed, "{message}");
    assert!(
        message.contains("in-0@0") && message.contains("default.timestamp.extractor"),
        "{message}"
    );
    Ok(())
}

#[test]
fn log_and_skip_counts_the_record_and_goes_on() -> R {
    for (consumed, config) in [
        (
            strings().with_invalid_timestamp_policy(InvalidTimestampPolicy::LogAndSkip),
            StreamsConfig::new("ts"),
        ),
        (
            strings(),
            StreamsConfig::new("ts").set(
                "default.timestamp.extractor",
                "LogAndSkipOnInvalidTimestamp",
            ),
        ),
    ] {
        let driver = passthrough(consumed, config)?;
        let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
        input.pipe_input_at("k".into(), "a".into(), -1)?;
        input.pipe_input_at("k".into(), "b".into(), 10)?;
        assert_eq!(timestamps(&driver)?, vec![10]);
        assert_eq!(driver.metrics().skipped, 1);
    }
    Ok(())
}

#[test]
fn use_partition_time_takes_the_largest_timestamp_so_far() -> R {
    let driver = passthrough(
        strings(),
        StreamsConfig::new("ts").set(
            "default.timestamp.extractor",
            "use-partition-time-on-invalid-timestamp",
        ),
    )?;
    let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    let first = input.pipe_input_at("k".into(), "a".into(), -1);
    assert!(
        matches!(first, Err(StreamsError::InvalidTimestamp { .. })),
        "no partition time yet: {first:?}"
    );
    input.pipe_input_at("k".into(), "b".into(), 40)?;
    input.pipe_input_at("k".into(), "c".into(), 25)?;
    input.pipe_input_at("k".into(), "d".into(), -1)?;
    assert_eq!(timestamps(&driver)?, vec![40, 25, 40]);
    Ok(())
}

#[test]
fn the_default_extractor_can_be_a_function_of_the_raw_record() -> R {
    // Event time from the key: "t=<millis>".
    let config = StreamsConfig::new("ts").with_default_timestamp_extractor(
        |_topic: &str, raw: &streams_core::record::RawRecord, _partition_time: i64| {
            raw.key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix("t="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(-1)
        },
    );
    let driver = passthrough(strings(), config)?;
    let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
    input.pipe_input_at("t=1234".into(), "v".into(), 1)?;
    assert_eq!(timestamps(&driver)?, vec![1234]);
    let bad = input.pipe_input_at("x".into(), "v".into(), 1);
    assert!(matches!(
        bad,
        Err(StreamsError::InvalidTimestamp { timestamp: -1, .. })
    ));
    Ok(())
}

#[test]
fn wall_clock_time_by_default_or_per_source() -> R {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (consumed, config) in [
        (
            strings(),
            StreamsConfig::new("ts").set("default.timestamp.extractor", "wall-clock"),
        ),
        (
            strings().with_timestamp_extractor(WallClockTimestamp),
            StreamsConfig::new("ts"),
        ),
    ] {
        let driver = passthrough(consumed, config)?;
        let input = driver.create_input_topic("in", Serdes::string(), Serdes::string());
        input.pipe_input_at("k".into(), "v".into(), 7)?;
        let ts = timestamps(&driver)?;
        assert!(
            ts.len() == 1 && ts[0] >= now && ts[0] < now + 60_000,
            "{ts:?}"
        );
    }
    Ok(())
}

#[test]
fn an_unknown_default_extractor_is_a_config_error() {
    let err = passthrough(
        strings(),
        StreamsConfig::new("ts").set("default.timestamp.extractor", "sometimes"),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("default.timestamp.extractor"), "{err}");
}
