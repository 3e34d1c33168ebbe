//! What the examples (and the integration tests and benchmarks that drive them) share: the
//! word-count and windowed-count topologies, the windowing example's event generator and its
//! oracle, topic creation and logging set-up.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

/// Java's `KafkaStreams.State` names, which Kafka's system-test scripts match in client output.
pub fn java_state_name(state: kstreams::State) -> &'static str {
    use kstreams::State;
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

/// Runs `streams` as Kafka's system-test clients do, printing the markers their drivers and
/// scripts wait for: `<name>: SMOKE-TEST-CLIENT-STARTED`, then `...-CLOSED` after a graceful
/// stop, or `...-EXCEPTION` (and the instance shut down) when a stream thread fails.
#[allow(clippy::print_stdout)] // the markers are the clients' interface to the drivers
pub fn run_as_smoke_client(
    streams: &kstreams::KafkaStreams,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let who = name.to_owned();
    streams.set_uncaught_exception_handler(move |error| {
        println!("{who}: SMOKE-TEST-CLIENT-EXCEPTION");
        println!("{who}: FATAL: An unexpected exception is encountered: {error}");
        let _ = std::io::stdout().flush();
        kstreams::handlers::StreamThreadExceptionResponse::ShutdownClient
    })?;
    println!("{name}: SMOKE-TEST-CLIENT-STARTED");
    let _ = std::io::stdout().flush();
    run_until_signal(streams, Duration::from_secs(60))?;
    match streams.error() {
        Some(e) => Err(format!("the application failed: {e}").into()),
        None => {
            println!("{name}: SMOKE-TEST-CLIENT-CLOSED");
            let _ = std::io::stdout().flush();
            Ok(())
        }
    }
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

/// What the windowing example emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Each window's count once, after the window closes (emit on window close).
    Final,
    /// Every update of a window's count, through the record cache.
    Updates,
}

/// Windowed count, as the windowing example runs it: records (key: a UTF-8 string; value
/// ignored; event time: the record timestamp) from `input` are counted per key in windows of
/// `window_ms` starting every `advance_ms`, accepting records up to `grace_ms` late; counts go to
/// `output` with key `<key>@<window start in ms>` (UTF-8) and value the count as an 8-byte
/// big-endian signed integer. A record with a null key cannot be read as a string: the
/// deserialization handler decides (the example skips and counts them).
pub fn windowed_count_topology(
    input: &str,
    output: &str,
    window_ms: u64,
    advance_ms: u64,
    grace_ms: u64,
    emit: Emit,
) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    let windowed = builder
        .stream::<String, ()>(input, Consumed::with(Serdes::string(), Serdes::unit()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::unit()))
        .windowed_by(
            TimeWindows::of_size_and_grace(
                Duration::from_millis(window_ms),
                Duration::from_millis(grace_ms),
            )
            .advance_by(Duration::from_millis(advance_ms)),
        );
    let windowed = match emit {
        Emit::Final => windowed.emit_strategy(EmitStrategy::OnWindowClose),
        Emit::Updates => windowed,
    };
    windowed
        .count(Materialized::as_("windowed-counts"))
        .to_stream()
        .flat_map(|window, count| {
            count.map(|count| (format!("{}@{}", window.key, window.window.start), count))
        })
        .to(output, Produced::with(Serdes::string(), Serdes::i64()));
    builder.build()
}

/// One generated input event of the windowing example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The record key.
    pub key: String,
    /// The partition it is written to (always the same for a key).
    pub partition: i32,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
}

/// The partition the windowing example's generators write `key` to (FNV-1a of its bytes).
pub fn key_partition(key: &str, partitions: i32) -> i32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % partitions.max(1) as u64) as i32
}

/// `n` events for `keys` keys (`sensor-0`, `sensor-1`, ...), starting at `start_ms` and
/// `step_ms` apart on average, each up to `disorder_ms` earlier than its place in the sequence
/// (so some arrive out of order, and some later than a window's grace period). Deterministic
/// for a `seed`.
pub fn windowing_events(
    n: u64,
    keys: u64,
    partitions: i32,
    start_ms: i64,
    step_ms: i64,
    disorder_ms: i64,
    seed: u64,
) -> Vec<Event> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let key = format!("sensor-{}", next() % keys.max(1));
            let back = if disorder_ms > 0 {
                (next() % (disorder_ms as u64 + 1)) as i64
            } else {
                0
            };
            Event {
                partition: key_partition(&key, partitions),
                key,
                timestamp: (start_ms + i as i64 * step_ms - back).max(0),
            }
        })
        .collect()
}

/// Events that close every window of the input: one per partition, `window + grace` after the
/// last event, with a key of its own (`flush-<partition>`), whose own windows stay open.
pub fn flush_events(
    events: &[Event],
    partitions: i32,
    window_ms: u64,
    grace_ms: u64,
) -> Vec<Event> {
    let last = events.iter().map(|e| e.timestamp).max().unwrap_or(0);
    (0..partitions)
        .map(|p| Event {
            key: format!("flush-{p}"),
            partition: p,
            timestamp: last + window_ms as i64 + grace_ms as i64 + 1,
        })
        .collect()
}

/// What the windowing example must output for `events` (each partition read in order): the
/// count of every window (by `(key, window start)`), and which of them have closed by the end of
/// the input (those are emitted with `--emit final`), and how many record-windows were late.
pub struct WindowedCounts {
    /// `(key, window start) -> count`, every window that got a record.
    pub counts: BTreeMap<(String, i64), i64>,
    /// The windows closed at the end of the input.
    pub closed: BTreeSet<(String, i64)>,
    /// Records dropped as late, counted once per window they missed.
    pub dropped: u64,
}

/// Recomputes every window from the whole input with the grace rule: stream time is per
/// partition (one task each); a record counts in each of its windows whose end is after stream
/// time minus grace.
pub fn expected_window_counts(
    events: &[Event],
    window_ms: u64,
    advance_ms: u64,
    grace_ms: u64,
) -> WindowedCounts {
    let (size, advance, grace) = (window_ms as i64, advance_ms as i64, grace_ms as i64);
    let mut stream_time: BTreeMap<i32, i64> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut dropped = 0;
    let mut partition_of = BTreeMap::new();
    for e in events {
        let time = stream_time.entry(e.partition).or_insert(i64::MIN);
        *time = (*time).max(e.timestamp);
        let close = *time - grace;
        let mut start = (e.timestamp - size + 1).max(0);
        start += (advance - start % advance) % advance;
        while start <= e.timestamp {
            if start + size > close {
                *counts.entry((e.key.clone(), start)).or_insert(0) += 1;
                partition_of.insert(e.key.clone(), e.partition);
            } else {
                dropped += 1;
            }
            start += advance;
        }
    }
    let closed = counts
        .keys()
        .filter(|(key, start)| {
            let time = partition_of
                .get(key)
                .and_then(|p| stream_time.get(p))
                .copied()
                .unwrap_or(i64::MIN);
            start + size <= time - grace
        })
        .cloned()
        .collect();
    WindowedCounts {
        counts,
        closed,
        dropped,
    }
}

/// Creates `topics` with `partitions` partitions where they do not exist yet.
pub fn create_topics_if_missing(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))?;
    let missing: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !metadata.topics().iter().any(|m| m.name() == **t))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics(&missing, &options))? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "created topic"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "topic exists")
            }
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}").into()),
        }
    }
    Ok(())
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
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        if !partition_caught_up(&probe, bootstrap, e.topic(), e.partition(), offset)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Like [`group_caught_up`], from the offsets an instance reports it committed
/// ([`KafkaStreams::committed_offsets`](kstreams::KafkaStreams::committed_offsets)) rather than
/// the group's: the embedded broker does not keep transactional offset commits.
pub fn instance_caught_up(
    bootstrap: &str,
    committed: &std::collections::BTreeMap<(String, i32), i64>,
    topics: &[String],
    partitions: i32,
) -> rdkafka::error::KafkaResult<bool> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::ClientConfig;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for t in topics {
        for p in 0..partitions {
            let offset = committed.get(&(t.clone(), p)).copied();
            if !partition_caught_up(&probe, bootstrap, t, p, offset)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether a committed `offset` (none: nothing committed) covers every readable record of
/// `topic`-`partition`.
fn partition_caught_up(
    probe: &rdkafka::consumer::BaseConsumer,
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Option<i64>,
) -> rdkafka::error::KafkaResult<bool> {
    use rdkafka::consumer::Consumer;
    let (_, high) = probe.fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))?;
    Ok(match offset {
        Some(o) if o >= high => true,
        Some(o) => high - o <= 64 && !readable_between(bootstrap, topic, partition, o, high)?,
        None => high == 0,
    })
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

/// Waits (at most 5 minutes) until `streams`, running on the embedded broker at `bootstrap`, has
/// processed and committed everything in `topics` (each with `partitions` partitions), judged by
/// the offsets it reports committing: the embedded broker keeps no transactional offset
/// commits. Twice in a row, so that the commit that flushed the caches into the output is in.
pub fn wait_until_processed(
    streams: &kstreams::KafkaStreams,
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Instant;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut streak = 0;
    loop {
        if let Some(e) = streams.error() {
            return Err(format!("the application failed: {e}").into());
        }
        if Instant::now() > deadline {
            return Err("the input was not processed within 5 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(250));
        if streams.state() != kstreams::State::Running {
            continue;
        }
        let caught_up =
            instance_caught_up(bootstrap, &streams.committed_offsets(), topics, partitions)?;
        streak = if caught_up { streak + 1 } else { 0 };
        if streak == 2 {
            return Ok(());
        }
    }
}

/// A record's key and value bytes.
pub type RawRecord = (Vec<u8>, Vec<u8>);

/// Every committed record of `topic` on the broker at `bootstrap`, in partition order, read to
/// the end offsets it has when called (at most a minute): `(key, value)` bytes.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<RawRecord>, Box<dyn std::error::Error>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::Instant;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
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
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let at_end = consumer
            .position()?
            .elements()
            .iter()
            .all(|e| match e.offset() {
                Offset::Offset(o) => o >= ends[&e.partition()],
                _ => ends[&e.partition()] == 0,
            });
        if at_end || Instant::now() > deadline {
            break;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    Ok(out)
}
