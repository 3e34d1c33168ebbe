//! Kafka Streams' exactly-once system-test application, ported: the topology of Kafka's
//! `EosTestClient`, so that Kafka's own `StreamsEosTest` driver (`run` to generate, then
//! `verify` / `verify-complex`) can check kstreams record by record, and so that kstreams' crash
//! tests can kill it at any instant.
//!
//! From `data` (String keys, 4-byte big-endian Integer values): `echo` (every record as read),
//! `min` and `sum` per key (every update; no record cache). With `--complex` also `repartition`
//! (every record again, read back by a second sub-topology), then `max` and `cnt` per key of it.
//! `min`/`max` are Integers, `sum`/`cnt` 8-byte big-endian Longs. Application id `EosTest`,
//! exactly_once_v2, a 5 s commit interval (so a kill usually hits an open transaction), as in
//! Kafka's client.
//!
//! It prints what Kafka's scenario scripts wait for: `StateChange: OLD -> NEW` and
//! `processed <n> records from topic=<topic>`. It runs until SIGINT or SIGTERM, then closes
//! gracefully and prints `EOS-TEST-CLIENT-CLOSED`.
//!
//! ```sh
//! cargo run --example eos_test_client -- --bootstrap-servers 127.0.0.1:9092 --complex
//! ```

// A system-test client reports on stdout; library crates log instead.
#![allow(clippy::print_stdout)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kstreams::prelude::*;
use kstreams::{KafkaStreams, State};

/// Kafka Streams' EOS system-test application on kstreams.
#[derive(Debug, Parser)]
#[command(name = "eos_test_client", version)]
struct Args {
    #[arg(long)]
    bootstrap_servers: String,
    #[arg(long, default_value = "EosTest")]
    application_id: String,
    /// Prefix of every topic name (`<prefix>data`, `<prefix>echo`, ...); Kafka's driver uses none.
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Also `repartition`, `max` and `cnt` (Kafka's `process-complex`).
    #[arg(long)]
    complex: bool,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 5000)]
    commit_interval_ms: u64,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging("warn");
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eos_test_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints `processed <n> records from topic=<topic>` every 100 records, like Kafka's
/// `SmokeTestUtil.printProcessorSupplier`.
fn printer(topic: &str) -> impl Fn(String, i32) + Send + Sync + 'static {
    let topic = topic.to_owned();
    let seen = Arc::new(AtomicU64::new(0));
    move |_, _| {
        let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(100) {
            println!("processed {n} records from topic={topic}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn topology(prefix: &str, complex: bool) -> kstreams::Result<Topology> {
    let t = |name: &str| format!("{prefix}{name}");
    let ints = || Produced::with(Serdes::string(), Serdes::i32());
    let builder = StreamsBuilder::new();
    let data = builder.stream::<String, i32>(
        t("data").as_str(),
        Consumed::with(Serdes::string(), Serdes::i32()),
    );
    data.to(&t("echo"), ints());
    data.foreach(printer(&t("data")));
    let grouped = data.group_by_key(Grouped::with(Serdes::string(), Serdes::i32()));
    grouped
        .aggregate(
            || i32::MAX,
            |_, value, min| value.min(min),
            Materialized::with(Serdes::string(), Serdes::i32()),
        )
        .to_stream()
        .to(
            &t("min"),
            Produced::with(Serdes::string(), Serdes::option(Serdes::i32())),
        );
    grouped
        .aggregate(
            || 0i64,
            |_, value, sum| sum + i64::from(value),
            Materialized::with(Serdes::string(), Serdes::i64()),
        )
        .to_stream()
        .to(
            &t("sum"),
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    if complex {
        data.to(&t("repartition"), ints());
        let again = builder.stream::<String, i32>(
            t("repartition").as_str(),
            Consumed::with(Serdes::string(), Serdes::i32()),
        );
        again.foreach(printer(&t("repartition")));
        let regrouped = again.group_by_key(Grouped::with(Serdes::string(), Serdes::i32()));
        regrouped
            .aggregate(
                || i32::MIN,
                |_, value, max| value.max(max),
                Materialized::with(Serdes::string(), Serdes::i32()),
            )
            .to_stream()
            .to(
                &t("max"),
                Produced::with(Serdes::string(), Serdes::option(Serdes::i32())),
            );
        regrouped.count(Materialized::default()).to_stream().to(
            &t("cnt"),
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    }
    builder.build()
}

/// Java's `KafkaStreams.State` names, which the scenario scripts match.
fn java_name(state: State) -> &'static str {
    match state {
        State::Created => "CREATED",
        State::Rebalancing => "REBALANCING",
        State::Running => "RUNNING",
        State::PendingShutdown => "PENDING_SHUTDOWN",
        State::NotRunning => "NOT_RUNNING",
        State::PendingError => "PENDING_ERROR",
        State::Error => "ERROR",
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kstreams-eos-test"));
    let config = StreamsConfig::new(&args.application_id)
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("processing.guarantee", "exactly_once_v2")
        .set("num.stream.threads", args.threads)
        .set("statestore.cache.max.bytes", 0)
        .set("commit.interval.ms", args.commit_interval_ms)
        .set("state.dir", state_dir.display());
    let streams = KafkaStreams::new(topology(&args.topic_prefix, args.complex)?, config)?;
    streams.set_state_listener(|new, old| {
        println!("StateChange: {} -> {}", java_name(old), java_name(new));
        let _ = std::io::stdout().flush();
    });
    streams.set_uncaught_exception_handler(|error| {
        println!("EOS-TEST-CLIENT-EXCEPTION: {error}");
        let _ = std::io::stdout().flush();
        kstreams::handlers::StreamThreadExceptionResponse::ShutdownClient
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        streams.start_async().await?;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let failed = streams.wait_for(|s| matches!(s, State::Error | State::NotRunning));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
            _ = failed => {}
        }
        streams.close_async(Duration::from_secs(300)).await;
        match streams.error() {
            Some(e) => Err(format!("the application failed: {e}").into()),
            None => {
                println!("EOS-TEST-CLIENT-CLOSED");
                Ok(())
            }
        }
    })
}
