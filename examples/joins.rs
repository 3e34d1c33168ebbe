//! Joins: orders enriched with their customer (a stream-table join) and ad clicks matched to the
//! impressions they follow within a time window (a stream-stream join).
//!
//! Without `--bootstrap-servers` it starts the embedded broker, loads generated customers, waits
//! until the application has read them into its table, then feeds generated orders, impressions
//! and clicks (some clicks outside the window, some for impressions that never happened), prints
//! a summary of both outputs, checks every output record against a recomputation from the input,
//! and exits. With `--bootstrap-servers` it runs against that cluster until SIGINT or SIGTERM.
//!
//! Topics (UTF-8 keys and values, all with the same partition count and partitioner, so that
//! each join's inputs are co-partitioned):
//!
//! - `joins-customers` (table): key customer id, value name;
//! - `joins-orders`: key customer id, value `<order id>:<amount>`;
//! - `joins-enriched-orders`: key customer id, value `<order id>:<amount> by <name>` (`by an
//!   unknown customer` when the customer is not in the table: a left join);
//! - `joins-impressions`: key impression id, value ad name;
//! - `joins-clicks`: key impression id, value click id;
//! - `joins-clicked-impressions`: key impression id, value `<ad> -> <click id>`, for each click
//!   within `--window-ms` of its impression (either side first), an inner join.
//!
//! The grace period (`--grace-ms`, default one hour) is how long after a window's end a record
//! still joins; the embedded run's events span less than that, so no record is late whatever
//! order the partitions are read in, and the output can be checked exactly.
//!
//! ```sh
//! cargo run --release --example joins
//! cargo run --release --example joins -- --bootstrap-servers 127.0.0.1:9092 --window-ms 10000
//! ```

// An example prints its results; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use kstreams::{KafkaStreams, State};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const CUSTOMERS: &str = "joins-customers";
const ORDERS: &str = "joins-orders";
const ENRICHED: &str = "joins-enriched-orders";
const IMPRESSIONS: &str = "joins-impressions";
const CLICKS: &str = "joins-clicks";
const CLICKED: &str = "joins-clicked-impressions";

/// Enriches orders with customers and matches clicks to impressions.
#[derive(Debug, Parser)]
#[command(name = "joins", version)]
struct Args {
    /// Kafka brokers. Without it, an embedded broker is started and fed generated events.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    #[arg(long, default_value = "joins")]
    application_id: String,
    /// Local state directory (default: a directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// How far apart (in event time) a click and its impression may be.
    #[arg(long, default_value_t = 10_000)]
    window_ms: u64,
    /// How long after a window's end records still join.
    #[arg(long, default_value_t = 3_600_000)]
    grace_ms: u64,
    /// Partitions of the topics this program creates when they are missing.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// How many customers, orders and impressions the embedded run generates.
    #[arg(long, default_value_t = 50)]
    customers: u64,
    #[arg(long, default_value_t = 2_000)]
    orders: u64,
    #[arg(long, default_value_t = 2_000)]
    impressions: u64,
    /// Any other setting, as `key=value` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging(if args.bootstrap_servers.is_some() {
        "info"
    } else {
        "warn"
    });
    let result = match args.settings.iter().find(|s| !s.contains('=')) {
        Some(bad) => Err(format!("--config takes key=value, not `{bad}`").into()),
        None => match &args.bootstrap_servers {
            Some(bootstrap) => run_on_cluster(&args, bootstrap),
            None => run_embedded(&args),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joins: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Both joins.
fn topology(args: &Args) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(Serdes::string(), Serdes::string());
    let out = || Produced::with(Serdes::string(), Serdes::string());

    // Stream-table: every order, with its customer's name if the table has the customer.
    let customers =
        builder.table::<String, String>(CUSTOMERS, strings(), Materialized::as_("customers"));
    builder
        .stream::<String, String>(ORDERS, strings())
        .left_join_table(
            &customers,
            |order, name| match name {
                Some(name) => format!("{order} by {name}"),
                None => format!("{order} by an unknown customer"),
            },
            Joined::with(Serdes::string(), Serdes::string()).with_name("enrich-orders"),
        )
        .to(ENRICHED, out());

    // Stream-stream: each click within the window of its impression, whichever came first.
    let impressions = builder.stream::<String, String>(IMPRESSIONS, strings());
    let clicks = builder.stream::<String, String>(CLICKS, strings());
    impressions
        .join(
            &clicks,
            |ad, click| format!("{ad} -> {click}"),
            JoinWindows::of_time_difference_and_grace(
                Duration::from_millis(args.window_ms),
                Duration::from_millis(args.grace_ms),
            ),
            StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string())
                .with_name("clicked-impressions"),
        )
        .to(CLICKED, out());
    builder.build()
}

fn config(args: &Args) -> StreamsConfig {
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kstreams-joins-{}", std::process::id()))
    });
    let mut config = StreamsConfig::new(&args.application_id)
        .set("state.dir", state_dir.display())
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        );
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
        &[CUSTOMERS, ORDERS, ENRICHED, IMPRESSIONS, CLICKS, CLICKED],
        args.partitions,
    )?;
    let topology = topology(args)?;
    tracing::info!("\n{}", topology.describe());
    let streams = KafkaStreams::new(topology, config(args).set("bootstrap.servers", bootstrap))?;
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
        tracing::info!(processed = streams.metrics().processed(), stopped, "closed");
        match streams.error() {
            Some(e) => Err(format!("the application failed: {e}").into()),
            None => Ok(()),
        }
    })
}

/// One generated input record.
struct Event {
    topic: &'static str,
    key: String,
    value: String,
    timestamp: i64,
}

/// A small deterministic generator (64-bit LCG), so runs are reproducible.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn customers(args: &Args) -> Vec<Event> {
    (0..args.customers)
        .map(|c| Event {
            topic: CUSTOMERS,
            key: format!("c-{c}"),
            value: format!("Customer {c}"),
            timestamp: START_MS,
        })
        .collect()
}

/// Orders (a tenth for customers that do not exist), impressions 500 ms apart, and 0 to 2
/// clicks per impression from 2 s before to 20 s after it, plus a few clicks on impressions
/// that never happened; in event-time order.
fn activity(args: &Args) -> Vec<Event> {
    let mut rng = Lcg(7);
    let mut events = Vec::new();
    for i in 0..args.orders {
        let customer = rng.below(args.customers + args.customers / 10 + 1);
        events.push(Event {
            topic: ORDERS,
            key: format!("c-{customer}"),
            value: format!("o-{i}:{}", 5 + rng.below(500)),
            timestamp: START_MS + 1_000 + i as i64 * 300,
        });
    }
    for i in 0..args.impressions {
        let t = START_MS + 1_000 + i as i64 * 500;
        events.push(Event {
            topic: IMPRESSIONS,
            key: format!("imp-{i}"),
            value: format!("ad-{}", rng.below(12)),
            timestamp: t,
        });
        for c in 0..rng.below(3) {
            events.push(Event {
                topic: CLICKS,
                key: format!("imp-{i}"),
                value: format!("click-{i}-{c}"),
                timestamp: t - 2_000 + rng.below(22_000) as i64,
            });
        }
        if i % 50 == 0 {
            events.push(Event {
                topic: CLICKS,
                key: format!("imp-never-{i}"),
                value: format!("click-stray-{i}"),
                timestamp: t,
            });
        }
    }
    events.sort_by_key(|e| e.timestamp);
    events
}

/// What the two joins must write, recomputed from the input: `(topic, key, value)` sorted.
fn expected(args: &Args, customers: &[Event], activity: &[Event]) -> Vec<Output> {
    let names: BTreeMap<&str, &str> = customers
        .iter()
        .map(|c| (c.key.as_str(), c.value.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut impressions: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for e in activity.iter().filter(|e| e.topic == IMPRESSIONS) {
        impressions
            .entry(&e.key)
            .or_default()
            .push((&e.value, e.timestamp));
    }
    let window = args.window_ms as i64;
    for e in activity {
        match e.topic {
            ORDERS => {
                let value = match names.get(e.key.as_str()) {
                    Some(name) => format!("{} by {name}", e.value),
                    None => format!("{} by an unknown customer", e.value),
                };
                out.push((ENRICHED.to_owned(), e.key.clone(), value));
            }
            CLICKS => {
                for (ad, t) in impressions.get(e.key.as_str()).into_iter().flatten() {
                    if (e.timestamp - t).abs() <= window {
                        out.push((
                            CLICKED.to_owned(),
                            e.key.clone(),
                            format!("{ad} -> {}", e.value),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

fn produce(
    producer: &ThreadedProducer<DefaultProducerContext>,
    events: &[Event],
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    for e in events {
        let record = BaseRecord::to(e.topic)
            .key(e.key.as_bytes())
            .payload(e.value.as_bytes())
            .partition(support::key_partition(&e.key, partitions))
            .timestamp(e.timestamp);
        support::send_waiting(producer, record)?;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Runs on the embedded broker: load the customers, then the activity, and check the output.
fn run_embedded(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let kafka = EmbeddedKafka::start()?;
    for topic in [CUSTOMERS, ORDERS, ENRICHED, IMPRESSIONS, CLICKS, CLICKED] {
        kafka.create_topic(topic, args.partitions)?;
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "5")
        .create()?;
    let customers = customers(args);
    let activity = activity(args);
    produce(&producer, &customers, args.partitions)?;

    let config = config(args)
        .set("commit.interval.ms", 200)
        .with_embedded(&kafka);
    let state_dir = config.get("state.dir").map(PathBuf::from);
    let streams = KafkaStreams::new(topology(args)?, config)?;
    streams.start()?;
    // The table first: an order is looked up in the table as it is when the order is processed.
    let outcome = wait_until_done(&streams, &kafka, args, &[CUSTOMERS])
        .and_then(|()| produce(&producer, &activity, args.partitions))
        .and_then(|()| {
            wait_until_done(
                &streams,
                &kafka,
                args,
                &[CUSTOMERS, ORDERS, IMPRESSIONS, CLICKS],
            )
        });
    let closed = streams.close(Duration::from_secs(60));
    if args.state_dir.is_none() {
        if let Some(dir) = state_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    outcome?;
    if !closed {
        return Err("the application did not shut down within 60 s".into());
    }

    let mut got = read_output(&kafka, ENRICHED)?;
    got.extend(read_output(&kafka, CLICKED)?);
    got.sort();
    let want = expected(args, &customers, &activity);

    let enriched: Vec<_> = got.iter().filter(|(t, _, _)| t == ENRICHED).collect();
    let unknown = enriched
        .iter()
        .filter(|(_, _, v)| v.ends_with("an unknown customer"))
        .count();
    println!("| output | records | |");
    println!("|---|---:|---|");
    println!(
        "| {ENRICHED} | {} | {unknown} by unknown customers |",
        enriched.len()
    );
    let clicked = got.iter().filter(|(t, _, _)| t == CLICKED).count();
    let clicks = activity.iter().filter(|e| e.topic == CLICKS).count();
    println!(
        "| {CLICKED} | {clicked} | of {clicks} clicks, within {} ms of their impression |",
        args.window_ms
    );
    println!();
    for (_, key, value) in enriched.iter().take(3) {
        println!("{ENRICHED}: {key} -> {value}");
    }
    for (_, key, value) in got.iter().filter(|(t, _, _)| t == CLICKED).take(3) {
        println!("{CLICKED}: {key} -> {value}");
    }
    println!(
        "{} customers, {} activity events; {:.1} s",
        customers.len(),
        activity.len(),
        started.elapsed().as_secs_f64()
    );
    if got != want {
        let missing = want.iter().filter(|w| !got.contains(w)).count();
        let extra = got.iter().filter(|g| !want.contains(g)).count();
        return Err(format!(
            "the output differs from a recomputation from the input: {} records expected, {} written ({missing} missing, {extra} unexpected)",
            want.len(),
            got.len()
        )
        .into());
    }
    println!(
        "checked: every enriched order and every matched click, once, as recomputed from the input"
    );
    Ok(())
}

/// Waits until the application has committed everything in `topics`.
fn wait_until_done(
    streams: &KafkaStreams,
    kafka: &EmbeddedKafka,
    args: &Args,
    topics: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    support::wait_until_processed(streams, kafka.bootstrap_servers(), &topics, args.partitions)
}

/// An output record: `(topic, key, value)`.
type Output = (String, String, String);

/// Every record of `topic`.
fn read_output(
    kafka: &EmbeddedKafka,
    topic: &str,
) -> Result<Vec<Output>, Box<dyn std::error::Error>> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(support::read_topic(kafka.bootstrap_servers(), topic)?
        .into_iter()
        .map(|(k, v)| (topic.to_owned(), text(&k), text(&v)))
        .collect())
}
