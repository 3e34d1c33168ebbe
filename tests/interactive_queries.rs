//! Interactive queries, key metadata and metrics of a running instance, on the embedded broker
//! (no Kafka needed): the store answers what the topology counted, during restoration it
//! answers right or says it cannot (a typed error), never wrong, and the metrics parse as
//! Prometheus text with Kafka Streams' names.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kstreams::prelude::*;
use kstreams::queries::{NotQueryableReason, ReadOnlyKeyValueStore};
use kstreams::streams_dsl::ValueAndTimestamp;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const INPUT: &str = "lines";
const PARTITIONS: i32 = 4;

fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<(), Option<String>>(
            INPUT,
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| {
            line.unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_("counts"));
    builder.build().expect("a valid topology")
}

/// Lines of words `w0..w{distinct}`, word `wi` appearing `i % 7 + 1` times.
fn feed(kafka: &EmbeddedKafka, distinct: usize) -> HashMap<String, i64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut oracle = HashMap::new();
    let mut line = Vec::new();
    for i in 0..distinct {
        for _ in 0..(i % 7 + 1) {
            line.push(format!("w{i}"));
            *oracle.entry(format!("w{i}")).or_insert(0) += 1;
        }
        if line.len() >= 20 || i + 1 == distinct {
            let text = line.join(" ");
            producer
                .send(BaseRecord::<(), str>::to(INPUT).payload(&text))
                .map_err(|(e, _)| e)
                .expect("send");
            line.clear();
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    oracle
}

fn config(kafka: &EmbeddedKafka, app: &str, dir: &std::path::Path) -> StreamsConfig {
    StreamsConfig::new(app)
        .set("state.dir", dir.display())
        .set("commit.interval.ms", 200)
        .set("application.server", "127.0.0.1:18080")
        // Store latencies are DEBUG metrics, as in Kafka Streams.
        .set("metrics.recording.level", "DEBUG")
        .with_embedded(kafka)
}

/// A KTable's store: each value with the timestamp of its last update.
fn table_store() -> kstreams::queries::KeyValueType<String, ValueAndTimestamp<i64>> {
    QueryableStoreTypes::key_value()
}

fn wait_running(streams: &KafkaStreams) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.state() != State::Running {
        assert!(Instant::now() < deadline, "not running after 60 s");
        assert!(streams.error().is_none(), "failed: {:?}", streams.error());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn queries_answer_during_and_after_restoration_and_metrics_parse() {
    support::init_logs();
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    kafka.create_topic(INPUT, PARTITIONS).expect("input topic");
    let oracle = feed(&kafka, 3000);
    let app = "queries";
    let first_dir = tempfile::tempdir().expect("tempdir");

    // Counting: the store's view answers every word, through the record cache.
    let streams =
        KafkaStreams::new(topology(), config(&kafka, app, first_dir.path())).expect("valid config");
    streams.start().expect("start");
    wait_running(&streams);
    let counts = streams
        .store("counts", table_store())
        .expect("the store exists");
    let get = |store: &ReadOnlyKeyValueStore<String, ValueAndTimestamp<i64>>, word: &String| {
        store.get(word).map(|v| v.map(|v| v.value))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: HashMap<String, i64> = counts
            .all()
            .expect("all")
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        if all == oracle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} words counted",
            all.len(),
            oracle.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (word, count) in oracle.iter().take(200) {
        assert_eq!(get(&counts, word).expect("get"), Some(*count), "{word}");
    }
    assert_eq!(get(&counts, &"never-seen".to_owned()).expect("get"), None);
    assert_eq!(
        counts.prefix_scan(b"w29").expect("prefix").len(),
        111,
        "w29, w290..w299, w2900..w2999"
    );
    let range = counts
        .range(Some(&"w10".to_owned()), Some(&"w11".to_owned()))
        .expect("range");
    assert!(range
        .iter()
        .all(|(w, _)| w.as_str() >= "w10" && w.as_str() <= "w11"));
    assert!(
        matches!(
            streams.store("counts", QueryableStoreTypes::key_value::<String, i64>()),
            Err(StreamsError::Topology { .. })
        ),
        "a KTable's store holds values with timestamps"
    );
    assert!(matches!(
        streams.store("nope", table_store()),
        Err(StreamsError::StoreNotQueryable {
            reason: NotQueryableReason::UnknownStore,
            ..
        })
    ));
    assert!(matches!(
        streams.store("counts", QueryableStoreTypes::window::<String, i64>()),
        Err(StreamsError::Topology { .. })
    ));

    // One instance: it owns every key and advertises all partitions.
    let meta = streams
        .query_metadata_for_key("counts", &"w1".to_owned(), &Serdes::string())
        .expect("metadata");
    assert_eq!(
        meta.active_host.map(|h| h.to_string()).as_deref(),
        Some("127.0.0.1:18080")
    );
    let all = streams.all_metadata();
    assert_eq!(all.len(), 1);
    assert!(all[0].state_stores.contains("counts"));
    assert_eq!(streams.all_metadata_for_store("counts").len(), 1);

    // Metrics: Prometheus text with Kafka Streams' names, per thread, task and store.
    std::thread::sleep(Duration::from_millis(1500)); // a statistics interval, for the lags
    let text = streams.prometheus_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("unexpected {other:?}"),
    };
    let sum = |name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(value)
            .sum()
    };
    let records: f64 = oracle.len() as f64 / 20.0;
    assert!(
        sum("kafka_streams_stream_thread_process_total") >= records,
        "{text}"
    );
    assert!(
        sum("kafka_streams_stream_task_process_total") >= records,
        "{text}"
    );
    assert!(
        sum("kafka_streams_stream_thread_commit_total") >= 1.0,
        "{text}"
    );
    assert!(
        sum("kafka_streams_stream_thread_poll_total") >= 1.0,
        "{text}"
    );
    let puts = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "kafka_streams_stream_state_put_total")
        .filter(|s| s.labels.get("store") == Some("counts"))
        .count();
    assert_eq!(
        puts, PARTITIONS as usize,
        "one per task of the counts store"
    );
    assert!(sum("kafka_streams_stream_state_put_total") > 0.0);
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "kafka_streams_stream_state_put_latency_avg"));
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "kafka_streams_consumer_fetch_manager_records_lag"),
        "{text}"
    );
    assert!(streams.close(Duration::from_secs(30)));

    // A second instance with empty local state restores from the changelog. While it does, a
    // lookup answers the right count or says why it cannot; never a wrong count.
    let second_dir = tempfile::tempdir().expect("tempdir");
    let streams = KafkaStreams::new(topology(), config(&kafka, app, second_dir.path()))
        .expect("valid config");
    streams.start().expect("start");
    let counts = streams
        .store("counts", table_store())
        .expect("the store exists");
    let words: Vec<&String> = oracle.keys().take(300).collect();
    let mut not_queryable = 0;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.state() != State::Running {
        assert!(Instant::now() < deadline, "not running after 60 s");
        for word in &words {
            match get(&counts, word) {
                Ok(Some(n)) => {
                    assert_eq!(n, oracle[*word], "{word} while restoring");
                    answered += 1;
                }
                Ok(None) => panic!("{word} missing while restoring: must be an error instead"),
                Err(StreamsError::StoreNotQueryable { store, reason }) => {
                    assert_eq!(store, "counts");
                    // NotLocal too: under KIP-848 the group may hand this instance its
                    // partitions in steps, so while it starts some are nobody's here yet.
                    assert!(
                        matches!(
                            reason,
                            NotQueryableReason::Restoring
                                | NotQueryableReason::Migrating
                                | NotQueryableReason::NotRunning
                                | NotQueryableReason::NotLocal
                        ),
                        "{reason:?}"
                    );
                    not_queryable += 1;
                }
                Err(e) => panic!("unexpected error while restoring: {e}"),
            }
        }
    }
    eprintln!("during restoration: {answered} answers, {not_queryable} typed refusals");
    // Running, every word answers: at once, or (a partition still arriving) within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    for word in &words {
        loop {
            match get(&counts, word) {
                Ok(answer) => {
                    assert_eq!(answer, Some(oracle[*word]), "{word}");
                    break;
                }
                Err(StreamsError::StoreNotQueryable { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{word} after Running: {e}"),
            }
        }
    }
    let restored = streams.metric_values().sum("stream_state", "restore-total");
    assert!(
        restored >= oracle.len() as f64,
        "restored {restored} records"
    );
    assert!(streams.close(Duration::from_secs(30)));
}
