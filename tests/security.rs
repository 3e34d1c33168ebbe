//! Secured clusters, on the real broker's secured listeners (`scripts/kafka.sh` opens them:
//! SASL_PLAINTEXT and SASL_SSL, mechanisms PLAIN and SCRAM-SHA-512, one user): an application
//! configured with Kafka Streams' unprefixed security settings counts per key over TLS with
//! SCRAM-SHA-512 (at_least_once) and over PLAIN (exactly_once_v2, so transactions too); the
//! password never reaches its logs or `Debug` output; a wrong password or an untrusted
//! certificate stops it with an error that says so instead of hanging in `Rebalancing`.
//!
//! `scripts/test.sh` hands over the secured addresses and the CA through
//! `KSTREAMS_SASL_BOOTSTRAP_SERVERS`, `KSTREAMS_SASL_SSL_BOOTSTRAP_SERVERS` and
//! `KSTREAMS_SSL_CA_LOCATION`. Ignored by a plain `cargo test`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstreams::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{real_kafka, unique, Cluster};

const USER: &str = "kstreams";
const PASSWORD: &str = "kstreams-secret";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/test.sh, which starts the broker with its secured listeners")
    })
}

/// Client settings for one secured listener, Kafka Streams style (no client prefix).
fn secured(listener: &str, mechanism: &str, password: &str) -> Vec<(&'static str, String)> {
    let (bootstrap, protocol) = match listener {
        "SASL_SSL" => (env("KSTREAMS_SASL_SSL_BOOTSTRAP_SERVERS"), "SASL_SSL"),
        _ => (env("KSTREAMS_SASL_BOOTSTRAP_SERVERS"), "SASL_PLAINTEXT"),
    };
    let mut settings = vec![
        ("bootstrap.servers", bootstrap),
        ("security.protocol", protocol.to_owned()),
        ("sasl.mechanisms", mechanism.to_owned()),
        ("sasl.username", USER.to_owned()),
        ("sasl.password", password.to_owned()),
    ];
    if listener == "SASL_SSL" {
        settings.push(("ssl.ca.location", env("KSTREAMS_SSL_CA_LOCATION")));
    }
    settings
}

fn client(settings: &[(&str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings {
        c.set(*k, v);
    }
    c
}

/// Counts per key of the input: key = the record's key, value ignored.
fn topology(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(input, Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::default())
        .to_stream()
        .to(
            output,
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    builder.build().expect("topology")
}

fn produce(settings: &[(&str, String)], topic: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = client(settings)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .expect("secured producer");
    for (k, v) in records {
        producer
            .send(
                BaseRecord::to(topic)
                    .key(k.as_bytes())
                    .payload(v.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("flush over the secured listener");
}

/// The latest count per key in `topic`, read over the secured listener.
fn latest_counts(
    settings: &[(&str, String)],
    topic: &str,
    partitions: i32,
) -> BTreeMap<String, i64> {
    let consumer: BaseConsumer = client(settings)
        .set("group.id", unique("security-reader"))
        .set("isolation.level", "read_committed")
        .create()
        .expect("secured consumer");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let position = consumer.position().expect("position");
        let done = position.elements().iter().all(|e| match e.offset() {
            Offset::Offset(o) => o >= ends[&e.partition()],
            _ => ends[&e.partition()] == 0,
        });
        if done || Instant::now() > deadline {
            return out;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m
                .payload()
                .and_then(|p| <[u8; 8]>::try_from(p).ok())
                .map(i64::from_be_bytes);
            if let Some(v) = value {
                out.insert(key, v);
            }
        }
    }
}

/// Everything the library logs, at every level, kept to search for secrets.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Runs the count over the secured listener and checks the result against the input.
fn count_over(listener: &str, mechanism: &str, guarantee: &str) {
    let kafka = real_kafka();
    let (input, output, app) = (unique("secure-in"), unique("secure-out"), unique("secure"));
    kafka.create_topic(&input, 3);
    kafka.create_topic(&output, 3);
    let settings = secured(listener, mechanism, PASSWORD);
    let records: Vec<(String, String)> = (0..3_000)
        .map(|i| (format!("k{}", (i * 7) % 97), format!("v{i}")))
        .collect();
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (k, _) in &records {
        *want.entry(k.clone()).or_default() += 1;
    }

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let state = tempfile::tempdir().expect("state dir");
    let mut config = StreamsConfig::new(&app)
        .set("state.dir", state.path().display())
        .set("processing.guarantee", guarantee)
        .set("commit.interval.ms", 200);
    for (k, v) in &settings {
        config.insert(k, v);
    }
    assert!(
        !format!("{config:?}").contains(PASSWORD),
        "Debug shows the password"
    );
    let streams = KafkaStreams::new(topology(&input, &output), config).expect("instance");
    streams.start().expect("start over the secured listener");
    produce(&settings, &input, &records);

    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        assert!(streams.error().is_none(), "failed: {:?}", streams.error());
        let got = latest_counts(&settings, &output, 3);
        if got == want {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "counts over {listener}/{mechanism} did not match in 90 s: {} of {} keys right",
            want.iter().filter(|(k, v)| got.get(*k) == Some(*v)).count(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(got.values().sum::<i64>(), 3_000);
    assert!(streams.close(Duration::from_secs(30)), "clean close");
    let text = logs.text();
    assert!(
        !text.is_empty(),
        "the library logged nothing at TRACE level"
    );
    assert!(
        !text.contains(PASSWORD),
        "the password appears in the logs:\n{}",
        text.lines()
            .filter(|l| l.contains(PASSWORD))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "needs the real broker's secured listeners: run scripts/test.sh"]
fn counts_over_tls_with_scram_sha_512() {
    count_over("SASL_SSL", "SCRAM-SHA-512", "at_least_once");
}

#[test]
#[ignore = "needs the real broker's secured listeners: run scripts/test.sh"]
fn exactly_once_counts_over_sasl_plain() {
    count_over("SASL_PLAINTEXT", "PLAIN", "exactly_once_v2");
}

/// Starts an instance that cannot get in and returns its error, or panics if it neither fails
/// nor stays out of `Running` within a minute.
fn refused(settings: Vec<(&'static str, String)>) -> String {
    let kafka = real_kafka();
    let input = unique("secure-refused");
    kafka.create_topic(&input, 1);
    let state = tempfile::tempdir().expect("state dir");
    let mut config =
        StreamsConfig::new(&unique("secure-refused")).set("state.dir", state.path().display());
    for (k, v) in &settings {
        config.insert(k, v);
    }
    let streams =
        KafkaStreams::new(topology(&input, &unique("secure-never")), config).expect("instance");
    let started = Instant::now();
    let error = match streams.start() {
        Err(e) => e.to_string(),
        Ok(()) => loop {
            assert_ne!(
                streams.state(),
                State::Running,
                "running without credentials"
            );
            if let Some(e) = streams.error() {
                break e.to_string();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "neither failed nor ran in 60 s (state {:?})",
                streams.state()
            );
            std::thread::sleep(Duration::from_millis(200));
        },
    };
    streams.close(Duration::from_secs(10));
    assert!(
        !error.contains(PASSWORD),
        "the error shows a password: {error}"
    );
    eprintln!("refused: {error}");
    error
}

#[test]
#[ignore = "needs the real broker's secured listeners: run scripts/test.sh"]
fn a_wrong_password_stops_the_instance_with_an_authentication_error() {
    let error = refused(secured(
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "not-the-password",
    ));
    assert!(
        error.to_lowercase().contains("authentication"),
        "the error does not say authentication failed: {error}"
    );
}

#[test]
#[ignore = "needs the real broker's secured listeners: run scripts/test.sh"]
fn an_untrusted_broker_certificate_stops_the_instance_with_a_tls_error() {
    let settings: Vec<_> = secured("SASL_SSL", "SCRAM-SHA-512", PASSWORD)
        .into_iter()
        .filter(|(k, _)| *k != "ssl.ca.location")
        .collect();
    let error = refused(settings);
    let lower = error.to_lowercase();
    assert!(
        lower.contains("ssl") || lower.contains("certificate"),
        "the error does not name the TLS failure: {error}"
    );
}
