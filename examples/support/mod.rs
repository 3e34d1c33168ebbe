//! What the examples (and the integration tests that drive them) share: the word-count
//! topology and logging set-up.
#![allow(dead_code)]

use kstreams::prelude::*;

/// Kafka's WordCountDemo rule: lowercase the line, split it on runs of characters that are not
/// ASCII letters, digits or underscore, drop empty words.
pub fn words(line: &str) -> Vec<String> {
    line.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word count: lines (value; key ignored) from `input`, running counts per word to `output`
/// (key: the word as UTF-8; value: the count as an 8-byte big-endian signed integer, Kafka's
/// `LongSerializer` format). A null line yields no words.
pub fn word_count_topology(input: &str, output: &str) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<(), Option<String>>(
            input,
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| line.as_deref().map(words).unwrap_or_default())
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_("counts"))
        .to_stream()
        .to(
            output,
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    builder.build()
}

/// Starts `streams` and runs it until SIGINT or SIGTERM, or until it stops by itself, then
/// closes it gracefully (waiting up to `timeout`). Returns whether it closed in time.
pub fn run_until_signal(
    streams: &kstreams::KafkaStreams,
    timeout: std::time::Duration,
) -> Result<bool, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        streams.start_async().await?;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stopped =
            streams.wait_for(|s| matches!(s, kstreams::State::Error | kstreams::State::NotRunning));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            state = stopped => tracing::error!(?state, "the application stopped by itself"),
        }
        Ok(streams.close_async(timeout).await)
    })
}

/// Logs to stderr: `RUST_LOG` if set, else `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Sends `record`, waiting while the producer's local queue is full (backpressure rather than
/// an error).
pub fn send_waiting<C: rdkafka::producer::ProducerContext>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> rdkafka::error::KafkaResult<()> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Whether consumer group `group` has committed everything in `topics` (each with `partitions`
/// partitions). Under exactly-once, transaction markers occupy offsets after the last record, so a
/// committed offset short of the end still counts when nothing readable lies beyond it.
pub fn group_caught_up(
    bootstrap: &str,
    group: &str,
    topics: &[String],
    partitions: i32,
) -> rdkafka::error::KafkaResult<bool> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::Duration;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition(t, p);
        }
    }
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10))?;
    for e in committed.elements() {
        let (_, high) =
            probe.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))?;
        let caught_up = match e.offset() {
            Offset::Offset(o) if o >= high => true,
            Offset::Offset(o) => {
                high - o <= 64 && !readable_between(bootstrap, e.topic(), e.partition(), o, high)?
            }
            _ => high == 0,
        };
        if !caught_up {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `topic`-`partition` holds a committed record in `[from, to)`.
fn readable_between(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
) -> rdkafka::error::KafkaResult<bool> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kstreams-caught-up-probe")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    reader.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
            return Ok(m.offset() < to);
        }
        let at_end = reader
            .position()?
            .elements()
            .first()
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= to));
        if at_end {
            return Ok(false);
        }
    }
    Ok(true)
}
