//! Windowed count: records per key in tumbling or hopping windows of event time, with a grace
//! period for late records, emitting each window's final count once it closes (or every update).
//!
//! Without `--bootstrap-servers` it starts the embedded broker, feeds it generated events (some
//! out of order, some too late for their window), counts them, prints the windows and their
//! counts as a table, checks them against a recomputation from the input, and exits. With
//! `--bootstrap-servers` it runs against that cluster until SIGINT or SIGTERM, then shuts down
//! gracefully.
//!
//! Input: key = a UTF-8 string, event time = the record timestamp, value ignored. Output: key =
//! `<key>@<window start in ms>` (UTF-8), value = the count as an 8-byte big-endian signed
//! integer. With `--emit final` (the default), exactly one record per key and window, written
//! after the window closes (stream time passes its end plus the grace period).
//!
//! ```sh
//! cargo run --release --example windowing
//! cargo run --release --example windowing -- --bootstrap-servers 127.0.0.1:9092 --window-ms 60000 --advance-ms 20000 --grace-ms 5000
//! ```

// An example prints its results; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use kstreams::{KafkaStreams, State};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Guarantee {
    #[value(name = "at_least_once")]
    AtLeastOnce,
    #[value(name = "exactly_once_v2")]
    ExactlyOnceV2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EmitArg {
    /// Each window's count once, after the window closes.
    Final,
    /// Every update of a window's count (through the record cache).
    Updates,
}

/// Counts records per key in windows of event time.
#[derive(Debug, Parser)]
#[command(name = "windowing", version)]
struct Args {
    /// Kafka brokers. Without it, an embedded broker is started and fed generated events.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    #[arg(long, default_value = "windowing-input")]
    input_topic: String,
    #[arg(long, default_value = "windowing-output")]
    output_topic: String,
    #[arg(long, default_value = "windowing")]
    application_id: String,
    /// Local state directory (default: a directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Window size in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    window_ms: u64,
    /// How far apart windows start (default: the window size, i.e. tumbling windows).
    #[arg(long)]
    advance_ms: Option<u64>,
    /// How long after a window's end records are still counted in it.
    #[arg(long, default_value_t = 0)]
    grace_ms: u64,
    /// What to emit.
    #[arg(long, value_enum, default_value = "final")]
    emit: EmitArg,
    #[arg(long, value_enum, default_value = "at_least_once")]
    processing_guarantee: Guarantee,
    /// Partitions of the topics this program creates when they are missing.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// commit.interval.ms (default: Kafka Streams' 30000 (100 under exactly_once_v2), or 1000
    /// on the embedded broker).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// How many events the embedded run generates.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Any other setting, as `key=value` (repeatable), e.g.
    /// `--config consumer.session.timeout.ms=6000`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

impl Args {
    fn advance(&self) -> u64 {
        self.advance_ms.unwrap_or(self.window_ms)
    }

    fn emit(&self) -> support::Emit {
        match self.emit {
            EmitArg::Final => support::Emit::Final,
            EmitArg::Updates => support::Emit::Updates,
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(bad) = self.settings.iter().find(|s| !s.contains('=')) {
            return Err(format!("--config takes key=value, not `{bad}`"));
        }
        if self.window_ms == 0 {
            return Err("--window-ms must be at least 1".into());
        }
        if self.advance() == 0 || self.advance() > self.window_ms {
            return Err(format!(
                "--advance-ms must be between 1 and --window-ms ({})",
                self.window_ms
            ));
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging(if args.bootstrap_servers.is_some() {
        "info"
    } else {
        "warn"
    });
    let result = args
        .check()
        .map_err(Into::into)
        .and_then(|()| match &args.bootstrap_servers {
            Some(bootstrap) => run_on_cluster(&args, bootstrap),
            None => run_embedded(&args),
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("windowing: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn topology(args: &Args) -> kstreams::Result<Topology> {
    support::windowed_count_topology(
        &args.input_topic,
        &args.output_topic,
        args.window_ms,
        args.advance(),
        args.grace_ms,
        args.emit(),
    )
}

fn config(args: &Args, default_commit_ms: u64) -> StreamsConfig {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kstreams-windowing"));
    let guarantee = match args.processing_guarantee {
        Guarantee::AtLeastOnce => "at_least_once",
        Guarantee::ExactlyOnceV2 => "exactly_once_v2",
    };
    let mut config = StreamsConfig::new(&args.application_id)
        .set("num.stream.threads", args.threads)
        .set("state.dir", state_dir.display())
        .set("processing.guarantee", guarantee)
        // A record with a null key (not a string) is skipped and counted, and the
        // application goes on.
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        );
    if let Some(ms) = args.commit_interval_ms.or(match args.processing_guarantee {
        // Kafka Streams' defaults, unless the embedded run asks for a shorter one.
        Guarantee::AtLeastOnce => Some(default_commit_ms),
        Guarantee::ExactlyOnceV2 => None,
    }) {
        config = config.set("commit.interval.ms", ms);
    }
    for setting in &args.settings {
        if let Some((key, value)) = setting.split_once('=') {
            config = config.set(key.trim(), value.trim());
        }
    }
    config
}

/// Runs against a real cluster until SIGINT or SIGTERM.
fn run_on_cluster(args: &Args, bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    support::create_topics_if_missing(
        bootstrap,
        &[&args.input_topic, &args.output_topic],
        args.partitions,
    )?;
    let topology = topology(args)?;
    tracing::info!("\n{}", topology.describe());
    let streams = KafkaStreams::new(
        topology,
        config(args, 30_000).set("bootstrap.servers", bootstrap),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        streams.start_async().await?;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let failed = streams.wait_for(|s| matches!(s, State::Error | State::NotRunning));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            state = failed => tracing::error!(?state, "the application stopped by itself"),
        }
        let stopped = streams.close_async(Duration::from_secs(60)).await;
        let metrics = streams.metrics();
        tracing::info!(
            processed = metrics.processed(),
            skipped = metrics.skipped(),
            dropped_late = metrics.dropped_late(),
            stopped,
            "closed"
        );
        match streams.error() {
            Some(e) => Err(format!("the application failed: {e}").into()),
            None => Ok(()),
        }
    })
}

/// Runs on the embedded broker: feed generated events, process them all, print the windows.
fn run_embedded(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic(&args.input_topic, args.partitions)?;
    kafka.create_topic(&args.output_topic, args.partitions)?;

    // 8 sensors, events 10 ms apart on average over the run, each up to 5 seconds early: some
    // arrive out of order, and with a small grace period some miss their window.
    let start_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let step_ms = (args.window_ms as i64 * 10 / args.events.max(1) as i64).max(1);
    let mut events = support::windowing_events(
        args.events,
        8,
        args.partitions,
        start_ms,
        step_ms,
        (args.window_ms as i64 / 12).max(1),
        7,
    );
    events.extend(support::flush_events(
        &events,
        args.partitions,
        args.window_ms,
        args.grace_ms,
    ));
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "5")
        .create()?;
    for e in &events {
        let record = BaseRecord::to(&args.input_topic)
            .key(e.key.as_bytes())
            .payload(&[][..])
            .partition(e.partition)
            .timestamp(e.timestamp);
        support::send_waiting(&producer, record)?;
    }
    producer.flush(Duration::from_secs(60))?;

    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kstreams-windowing-{}", std::process::id()))
    });
    let config = config(args, 1_000)
        .set("state.dir", state_dir.display())
        .with_embedded(&kafka);
    let streams = KafkaStreams::new(topology(args)?, config)?;
    streams.start()?;
    let outcome = wait_until_done(&streams, &kafka, args);
    let closed = streams.close(Duration::from_secs(60));
    let metrics = streams.metrics();
    if args.state_dir.is_none() {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    outcome?;
    if !closed {
        return Err("the application did not shut down within 60 s".into());
    }

    let output = read_output(&kafka, &args.output_topic)?;
    let expected =
        support::expected_window_counts(&events, args.window_ms, args.advance(), args.grace_ms);
    // The last count of each window (the only one, with --emit final).
    let mut last: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut records_per_window: BTreeMap<(i64, String), u32> = BTreeMap::new();
    for (key, count) in &output {
        let (name, start) = key
            .rsplit_once('@')
            .and_then(|(name, start)| Some((name.to_owned(), start.parse::<i64>().ok()?)))
            .ok_or_else(|| format!("an output key that is not <key>@<start>: {key}"))?;
        last.insert((start, name.clone()), *count);
        *records_per_window.entry((start, name)).or_default() += 1;
    }

    println!("| window start (UTC) | key | count |");
    println!("|---|---|---:|");
    for ((start, key), count) in &last {
        println!("| {} | {key} | {count} |", utc(*start));
    }
    println!();
    let want: BTreeMap<(i64, String), i64> = expected
        .counts
        .iter()
        .filter(|(w, _)| !matches!(args.emit, EmitArg::Final) || expected.closed.contains(*w))
        .map(|((key, start), count)| ((*start, key.clone()), *count))
        .collect();
    let once = records_per_window.values().all(|n| *n == 1);
    let verdict = match (last == want, args.emit, once) {
        (true, EmitArg::Final, true) => {
            "every window's final count, once, as recomputed from the input"
        }
        (true, EmitArg::Updates, _) => "every window's latest count as recomputed from the input",
        _ => "",
    };
    println!(
        "{} events, {} windows ({} output records), {} late record-windows dropped; {:.1} s",
        events.len(),
        last.len(),
        output.len(),
        metrics.dropped_late(),
        started.elapsed().as_secs_f64()
    );
    if verdict.is_empty() {
        return Err(format!(
            "the output differs from a recomputation from the input: {} windows expected, {} emitted{}",
            want.len(),
            last.len(),
            if once { "" } else { ", some more than once" }
        )
        .into());
    }
    println!("checked: {verdict}");
    Ok(())
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Waits until the application has committed every input record.
fn wait_until_done(
    streams: &KafkaStreams,
    kafka: &EmbeddedKafka,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let topics = [args.input_topic.clone()];
    support::wait_until_processed(streams, kafka.bootstrap_servers(), &topics, args.partitions)
}

/// Every output record, in partition order: `(key, count)`.
fn read_output(
    kafka: &EmbeddedKafka,
    topic: &str,
) -> Result<Vec<(String, i64)>, Box<dyn std::error::Error>> {
    support::read_topic(kafka.bootstrap_servers(), topic)?
        .into_iter()
        .map(|(k, v)| {
            let count = <[u8; 8]>::try_from(v.as_slice())
                .map(i64::from_be_bytes)
                .map_err(|_| "a count that is not 8 bytes")?;
            Ok((String::from_utf8_lossy(&k).into_owned(), count))
        })
        .collect()
}
