//! Word count embedded in an HTTP service: the counts live in the topology's store, and any
//! instance answers for any word, from its own store or by asking the instance that owns it.
//!
//! ```sh
//! cargo run --release --features http --example service                  # embedded broker
//! cargo run --release --features http --example service -- \
//!     --bootstrap-servers 127.0.0.1:9092 --http-addr 127.0.0.1:8080
//! curl 127.0.0.1:8080/count/the
//! ```
//!
//! Endpoints: `GET /count/<word>` (200 and the count in decimal; 404 if the word was never
//! seen; 503 while the owning store restores or moves), `GET /metrics` (Prometheus text),
//! `GET /topology` (Mermaid), `GET /health` (200 once running). Without `--bootstrap-servers`
//! it starts the embedded broker and feeds it the bundled text. Runs until SIGINT or SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kstreams::http::axum::extract::{Path, State as AxumState};
use kstreams::http::axum::http::HeaderMap;
use kstreams::http::axum::response::Response;
use kstreams::http::axum::routing::get;
use kstreams::http::axum::Router;
use kstreams::http::{self, Forwarder};
use kstreams::prelude::*;
use kstreams::streams_dsl::ValueAndTimestamp;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// Counts words and answers for them over HTTP.
#[derive(Debug, Parser)]
#[command(name = "service", version)]
struct Args {
    /// Kafka brokers. Without it, an embedded broker is started and fed the bundled text.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    #[arg(long, default_value = "streams-plaintext-input")]
    input_topic: String,
    #[arg(long, default_value = "wordcount-service")]
    application_id: String,
    /// Local state directory (default: a directory under the system's temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where to serve HTTP; also this instance's `application.server`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Partitions of the input topic if this program creates it.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

const BUNDLED_TEXT: &str = include_str!("data/wordcount.txt");
/// The store the counts live in.
const STORE: &str = "counts";

/// Word count into the store `counts` (word -> count), nothing written out.
fn topology(input: &str) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<(), Option<String>>(
            input,
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| line.as_deref().map(support::words).unwrap_or_default())
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_(STORE));
    builder.build()
}

#[derive(Clone)]
struct Service {
    streams: KafkaStreams,
    forwarder: Forwarder,
}

/// `GET /count/<word>`.
async fn count(
    AxumState(service): AxumState<Service>,
    Path(word): Path<String>,
    headers: HeaderMap,
) -> Response {
    let word = word.to_lowercase();
    if support::words(&word) != [word.clone()] {
        // Not a word the topology would ever count (and not safe to put in a path as is).
        return http::Lookup::<i64>::Missing.into_response(service.streams.application_server());
    }
    let path = format!("/count/{word}");
    // A KTable's store holds each count with the timestamp of its last update.
    http::lookup::<String, ValueAndTimestamp<i64>>(
        &service.streams,
        &service.forwarder,
        STORE,
        word,
        &Serdes::string(),
        &path,
        http::hops(&headers),
    )
    .await
    .map(|count| count.value)
    .into_response(service.streams.application_server())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging("info");
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("service: {e}");
            eprintln!("service: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kstreams-service-{}", args.http_addr.port()))
    });
    let mut config = StreamsConfig::new(&args.application_id)
        .set("num.stream.threads", args.threads)
        .set("state.dir", state_dir.display())
        .set("application.server", args.http_addr)
        .set("commit.interval.ms", 1000)
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        );
    // The embedded broker lives as long as the service.
    let _embedded = match &args.bootstrap_servers {
        Some(bootstrap) => {
            support::create_topics_if_missing(bootstrap, &[&args.input_topic], args.partitions)?;
            config = config.set("bootstrap.servers", bootstrap);
            None
        }
        None => {
            let kafka = EmbeddedKafka::start()?;
            kafka.create_topic(&args.input_topic, args.partitions)?;
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", kafka.bootstrap_servers())
                .set("linger.ms", "5")
                .create()?;
            for line in BUNDLED_TEXT.lines() {
                support::send_waiting(
                    &producer,
                    BaseRecord::to(&args.input_topic).payload(line.as_bytes()),
                )?;
            }
            producer.flush(Duration::from_secs(60))?;
            config = config.with_embedded(&kafka);
            Some(kafka)
        }
    };

    let streams = KafkaStreams::new(topology(&args.input_topic)?, config)?;
    streams.start_async().await?;
    let service = Service {
        streams: streams.clone(),
        forwarder: Forwarder::new(),
    };
    let app = http::router(streams.clone()).merge(
        Router::new()
            .route("/count/{word}", get(count))
            .with_state(service),
    );
    let stopped = {
        let streams = streams.clone();
        async move {
            let mut sigterm =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            let stopped = streams.wait_for(|s| matches!(s, State::Error | State::NotRunning));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
                state = stopped => tracing::error!(?state, "the application stopped by itself"),
            }
        }
    };
    let served = http::serve(args.http_addr, app, stopped).await;
    let closed = streams.close_async(Duration::from_secs(60)).await;
    served?;
    if let Some(e) = streams.error() {
        return Err(format!("the application failed: {e}").into());
    }
    if !closed {
        return Err("the application did not shut down within 60 s".into());
    }
    Ok(())
}
