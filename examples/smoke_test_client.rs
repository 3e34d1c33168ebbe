//! Kafka Streams' smoke system-test application, ported: the topology of Kafka's
//! `SmokeTestClient`, so that Kafka's own `StreamsSmokeTest` driver (`run`: generate into `data`,
//! then verify every output topic record by record) checks kstreams as it checks Kafka Streams.
//!
//! From `data` (String keys, 4-byte big-endian Integer values; a key `flush` with a timestamp two
//! days ahead closes every window at the end):
//! - `echo`: every record but `flush`;
//! - `min-raw` / `min-suppressed`: the minimum per key in 1-day windows with 1 minute of grace,
//!   every update / only the final result (`suppress(untilWindowCloses)`), keys written as Java's
//!   `Windowed.toString()` (`[key@start/end]`); `min`: the same, unwindowed;
//! - `sws-raw` / `sws-suppressed`: the sum in 2-second windows hopping by 1 second, 30 s of grace;
//! - `max`, `sum` (Long), `cnt` (Long): per key in 2-day windows, unwindowed;
//! - `dif` = `max` - `min` and `avg` = `sum` / `cnt` (Double): joins of the tables read back from
//!   those topics;
//! - `tagg`: the `cnt` table re-grouped by its value, counting keys per count (adder and
//!   subtractor), through a repartition topic.
//!
//! Application id `SmokeTest`. It prints what Kafka's scenario scripts wait for
//! (`<name>: SMOKE-TEST-CLIENT-STARTED`, state changes, `SMOKE-TEST-CLIENT-CLOSED`) and runs until
//! SIGINT or SIGTERM.
//!
//! ```sh
//! cargo run --example smoke_test_client -- --bootstrap-servers 127.0.0.1:9092 \
//!     --processing-guarantee exactly_once_v2
//! ```

// A system-test client reports on stdout; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kstreams::prelude::*;
use kstreams::KafkaStreams;

/// Kafka Streams' smoke system-test application on kstreams.
#[derive(Debug, Parser)]
#[command(name = "smoke_test_client", version)]
struct Args {
    #[arg(long)]
    bootstrap_servers: String,
    /// This instance's name in what it prints (Kafka's client prints its name too).
    #[arg(long, default_value = "kstreams-smoke")]
    name: String,
    #[arg(long, default_value = "SmokeTest")]
    application_id: String,
    #[arg(long, default_value = "at_least_once")]
    processing_guarantee: String,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// commit.interval.ms (default: Kafka Streams' own, by guarantee).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging("warn");
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("{}: SMOKE-TEST-CLIENT-EXCEPTION: {e}", args.name);
            eprintln!("smoke_test_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Kafka's `SmokeTestUtil.END`: a value the `data` stream drops before aggregating.
const END: i32 = i32::MAX;

fn ints() -> Produced<String, i32> {
    Produced::with(Serdes::string(), Serdes::i32())
}

fn longs() -> Produced<String, i64> {
    Produced::with(Serdes::string(), Serdes::i64())
}

/// Writes a windowed table's changes to `topic` with the window in the key, as Java prints it.
fn streamify(table: &KTable<Windowed<String>, i32>, topic: &str) {
    table
        .to_stream()
        .filter_not(|k, _| k.key == "flush")
        .flat_map(|k, v| v.map(|v| (k.to_string(), v)))
        .to(topic, ints());
}

/// Writes a windowed table's changes to `topic` under the bare key (Kafka's `Unwindow`).
fn unwindow<V: Clone + Send + 'static>(
    table: &KTable<Windowed<String>, V>,
    topic: &str,
    produced: Produced<String, V>,
) {
    table
        .to_stream()
        .filter_not(|k, _| k.key == "flush")
        .flat_map(|k, v| v.map(|v| (k.key.clone(), v)))
        .to(topic, produced);
}

fn topology() -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    let source = builder.stream::<String, Option<i32>>(
        "data",
        Consumed::with(Serdes::string(), Serdes::option(Serdes::i32())),
    );
    source.filter_not(|k, _| k == "flush").to(
        "echo",
        Produced::with(Serdes::string(), Serdes::option(Serdes::i32())),
    );
    // Java's `value == null || value != END`; a null value then fails nowhere downstream here
    // because the aggregations below read the value, so nulls are dropped instead (the driver
    // never sends one).
    let data = source.flat_map_values(|v| v.filter(|v| *v != END));
    let grouped = data.group_by_key(Grouped::with(Serdes::string(), Serdes::i32()));

    // min
    let min_aggregation = grouped
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(24 * 3600),
            Duration::from_secs(60),
        ))
        .aggregate(
            || i32::MAX,
            |_, value, min| value.min(min),
            Materialized::as_("uwin-min")
                .with_value_serde(Serdes::i32())
                .with_retention(Duration::from_secs(25 * 3600)),
        );
    streamify(&min_aggregation, "min-raw");
    streamify(
        &min_aggregation.suppress(Suppressed::until_window_closes(BufferConfig::unbounded())),
        "min-suppressed",
    );
    unwindow(&min_aggregation, "min", ints());

    let small_window_sum = grouped
        .windowed_by(
            TimeWindows::of_size_and_grace(Duration::from_secs(2), Duration::from_secs(30))
                .advance_by(Duration::from_secs(1)),
        )
        .reduce(|l, r| l + r, Materialized::default());
    streamify(&small_window_sum, "sws-raw");
    streamify(
        &small_window_sum.suppress(Suppressed::until_window_closes(BufferConfig::unbounded())),
        "sws-suppressed",
    );

    let min_table = builder.table::<String, i32>(
        "min",
        Consumed::with(Serdes::string(), Serdes::i32()),
        Materialized::as_("minStoreName"),
    );

    // max
    let two_days = || TimeWindows::of_size_with_no_grace(Duration::from_secs(2 * 24 * 3600));
    let max = grouped.windowed_by(two_days()).aggregate(
        || i32::MIN,
        |_, value, max| value.max(max),
        Materialized::as_("uwin-max").with_value_serde(Serdes::i32()),
    );
    unwindow(&max, "max", ints());
    let max_table = builder.table::<String, i32>(
        "max",
        Consumed::with(Serdes::string(), Serdes::i32()),
        Materialized::as_("maxStoreName"),
    );

    // sum
    let sum = grouped.windowed_by(two_days()).aggregate(
        || 0i64,
        |_, value, sum| sum + i64::from(value),
        Materialized::as_("win-sum").with_value_serde(Serdes::i64()),
    );
    unwindow(&sum, "sum", longs());
    let sum_table = builder.table::<String, i64>(
        "sum",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::default(),
    );

    // cnt
    let cnt = grouped
        .windowed_by(two_days())
        .count(Materialized::as_("uwin-cnt"));
    unwindow(&cnt, "cnt", longs());
    let cnt_table = builder.table::<String, i64>(
        "cnt",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_("cntStoreName"),
    );

    // dif
    max_table
        .join(&min_table, |max, min| max - min, Materialized::default())
        .to_stream()
        .filter_not(|k, _| k == "flush")
        .flat_map_values(|v| v)
        .to("dif", ints());

    // avg
    sum_table
        .join(
            &cnt_table,
            |sum, cnt| *sum as f64 / *cnt as f64,
            Materialized::default(),
        )
        .to_stream()
        .filter_not(|k, _| k == "flush")
        .flat_map_values(|v| v)
        .to("avg", Produced::with(Serdes::string(), Serdes::f64()));

    // tagg: keys per count, through a repartition
    cnt_table
        .group_by(
            |_, cnt| (cnt.to_string(), 1i64),
            Grouped::with(Serdes::string(), Serdes::i64()),
        )
        .aggregate(
            || 0i64,
            |_, value, agg| agg + value,
            |_, value, agg| agg - value,
            Materialized::as_("cntByCnt")
                .in_memory()
                .with_key_serde(Serdes::string())
                .with_value_serde(Serdes::i64()),
        )
        .to_stream()
        .flat_map_values(|v| v)
        .to("tagg", longs());

    builder.build()
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kstreams-smoke-{}", args.name)));
    let mut config = StreamsConfig::new(&args.application_id)
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("client.id", format!("SmokeTest-{}", args.name))
        .set("processing.guarantee", &args.processing_guarantee)
        .set("num.stream.threads", args.threads)
        .set("state.dir", state_dir.display());
    if let Some(ms) = args.commit_interval_ms {
        config = config.set("commit.interval.ms", ms);
    }
    let streams = KafkaStreams::new(topology()?, config)?;
    let name = args.name.clone();
    streams.set_state_listener(move |new, old| {
        println!(
            "{name} {}: {} -> {}",
            chrono::Utc::now().to_rfc3339(),
            support::java_state_name(old),
            support::java_state_name(new)
        );
        let _ = std::io::stdout().flush();
    });
    support::run_as_smoke_client(&streams, &args.name)
}
