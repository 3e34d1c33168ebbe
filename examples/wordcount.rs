//! Word count, as in Kafka's WordCountDemo.
//!
//! Without `--bootstrap-servers` it starts the embedded broker, feeds it `--input-file` (by
//! default a text bundled with the project), processes everything, prints the top words as a
//! table and exits. With `--bootstrap-servers` it runs against that cluster until SIGINT or
//! SIGTERM, then shuts down gracefully.
//!
//! ```sh
//! cargo run --release --example wordcount
//! cargo run --release --example wordcount -- --bootstrap-servers 127.0.0.1:9092 --threads 2
//! ```

// An example prints its results; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use kstreams::KafkaStreams;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Guarantee {
    #[value(name = "at_least_once")]
    AtLeastOnce,
    #[value(name = "exactly_once_v2")]
    ExactlyOnceV2,
}

/// Counts words in a stream of text lines.
#[derive(Debug, Parser)]
#[command(name = "wordcount", version)]
struct Args {
    /// Kafka brokers. Without it, an embedded broker is started and fed --input-file.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Text to count on the embedded broker (default: a text bundled with the project).
    #[arg(long)]
    input_file: Option<PathBuf>,
    #[arg(long, default_value = "streams-plaintext-input")]
    input_topic: String,
    #[arg(long, default_value = "streams-wordcount-output")]
    output_topic: String,
    #[arg(long, default_value = "wordcount")]
    application_id: String,
    /// Local state directory (default: a directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "at_least_once")]
    processing_guarantee: Guarantee,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Partitions of the topics this program creates when they are missing.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// How many words the embedded run prints.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// commit.interval.ms (default: Kafka Streams' 30000, or 1000 on the embedded broker).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// A Kafka Streams properties file (client security, tuning); the options above override
    /// its settings.
    #[arg(long)]
    config_file: Option<PathBuf>,
}

const BUNDLED_TEXT: &str = include_str!("data/wordcount.txt");

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging(if args.bootstrap_servers.is_some() {
        "info"
    } else {
        "warn"
    });
    let result = match &args.bootstrap_servers {
        Some(bootstrap) => run_on_cluster(&args, bootstrap),
        None => run_embedded(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wordcount: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn config(args: &Args, default_commit_ms: u64) -> StreamsConfig {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kstreams-wordcount"));
    let base = match &args.config_file {
        Some(path) => StreamsConfig::from_properties_file(path).unwrap_or_else(|e| {
            eprintln!("wordcount: {e}");
            std::process::exit(2)
        }),
        None => StreamsConfig::default(),
    };
    base.set("application.id", &args.application_id)
        .set("num.stream.threads", args.threads)
        .set("state.dir", state_dir.display())
        .set(
            "processing.guarantee",
            match args.processing_guarantee {
                Guarantee::AtLeastOnce => "at_least_once",
                Guarantee::ExactlyOnceV2 => "exactly_once_v2",
            },
        )
        .set(
            "commit.interval.ms",
            args.commit_interval_ms.unwrap_or(default_commit_ms),
        )
        // A line that is not UTF-8 is skipped and counted, and the application goes on.
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        )
}

/// Runs against a real cluster until SIGINT or SIGTERM.
fn run_on_cluster(args: &Args, bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    support::create_topics_if_missing(
        bootstrap,
        &[&args.input_topic, &args.output_topic],
        args.partitions,
    )?;
    let topology = support::word_count_topology(&args.input_topic, &args.output_topic)?;
    tracing::info!("\n{}", topology.describe());
    let streams = KafkaStreams::new(
        topology,
        config(args, 30_000).set("bootstrap.servers", bootstrap),
    )?;
    let stopped = support::run_until_signal(&streams, Duration::from_secs(60))?;
    let metrics = streams.metrics();
    let commits: u64 = metrics.threads.iter().map(|t| t.commits).sum();
    let (commit, wait) = metrics.threads.iter().fold((0.0, 0.0), |(c, w), t| {
        (
            c + t.commit_time.as_secs_f64(),
            w + t.commit_wait_time.as_secs_f64(),
        )
    });
    tracing::info!(
        processed = metrics.processed(),
        skipped = metrics.skipped(),
        commits,
        commit_s = format!("{commit:.2}"),
        commit_wait_s = format!("{wait:.2}"),
        stopped,
        "closed"
    );
    match streams.error() {
        Some(e) => Err(format!("the application failed: {e}").into()),
        None => Ok(()),
    }
}

/// Runs on the embedded broker: feed the text, process it all, print the top words.
fn run_embedded(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let text = match &args.input_file {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
        None => BUNDLED_TEXT.as_bytes().to_vec(),
    };
    let kafka = EmbeddedKafka::start()?;
    kafka.create_topic(&args.input_topic, args.partitions)?;
    kafka.create_topic(&args.output_topic, args.partitions)?;

    // Feed the lines. Lines that are not UTF-8 go in as they are: the application skips them.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "5")
        .create()?;
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    for line in &lines {
        let record = BaseRecord::to(&args.input_topic).payload(*line);
        support::send_waiting(&producer, record)?;
    }
    producer.flush(Duration::from_secs(60))?;

    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kstreams-wordcount-{}", std::process::id()))
    });
    let topology = support::word_count_topology(&args.input_topic, &args.output_topic)?;
    let config = config(args, 1_000)
        .set("state.dir", state_dir.display())
        .with_embedded(&kafka);
    let streams = KafkaStreams::new(topology, config)?;
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

    let counts = read_counts(&kafka, &args.output_topic)?;
    let mut ranked: Vec<(&String, &i64)> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let total: i64 = counts.values().sum();
    println!("| rank | word | count |");
    println!("|---:|---|---:|");
    for (i, (word, count)) in ranked.iter().take(args.top).enumerate() {
        println!("| {} | {} | {} |", i + 1, word, count);
    }
    println!();
    println!(
        "{} lines, {} words, {} distinct; {} records processed, {} skipped as unreadable; {:.1} s",
        lines.len(),
        total,
        counts.len(),
        metrics.processed(),
        metrics.skipped(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until the application has committed every input and repartition record.
fn wait_until_done(
    streams: &KafkaStreams,
    kafka: &EmbeddedKafka,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let topics = [
        args.input_topic.clone(),
        format!("{}-counts-repartition", args.application_id),
    ];
    support::wait_until_processed(streams, kafka.bootstrap_servers(), &topics, args.partitions)
}

/// The last count of every word in the output topic.
fn read_counts(
    kafka: &EmbeddedKafka,
    topic: &str,
) -> Result<HashMap<String, i64>, Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "wordcount-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        ends.insert(
            p,
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1,
        );
    }
    consumer.assign(&tpl)?;
    let mut counts = HashMap::new();
    let mut done: HashMap<i32, bool> = ends.iter().map(|(p, end)| (*p, *end == 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.values().any(|d| !d) && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            let word = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let count = m
                .payload()
                .and_then(|p| <[u8; 8]>::try_from(p).ok())
                .map(i64::from_be_bytes)
                .ok_or("a count that is not 8 bytes")?;
            counts.insert(word, count);
            if m.offset() + 1 >= ends[&m.partition()] {
                done.insert(m.partition(), true);
            }
        }
    }
    Ok(counts)
}
