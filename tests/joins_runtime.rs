//! Joins on a broker: the co-partitioning check at start, the repartition topic in front of a
//! join sized like the topics it is joined with, and a foreign-key join of tables with different
//! partition counts through its internal topics (on the embedded broker), and a stream-table
//! join split over two instances on co-partitioned topics (on a real broker; ignored by a plain
//! `cargo test`, `scripts/test.sh` runs it).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{init_logs, real_kafka, unique, Cluster};

fn embedded() -> EmbeddedKafka {
    EmbeddedKafka::start().expect("start the embedded broker")
}

fn config(kafka: &EmbeddedKafka, app: &str, state: &std::path::Path) -> StreamsConfig {
    StreamsConfig::new(app)
        .with_embedded(kafka)
        .set("state.dir", state.display())
}

fn partitions_of(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    md.topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().len())
}

fn orders_with_customers(rekey: bool) -> StreamsBuilder {
    enrich("orders", "customers", "enriched", rekey, false)
}

/// `orders` joined with the `customers` table into `output`, values `order@customer` (`order@?`
/// for an unknown customer with `left`).
fn enrich(orders: &str, customers: &str, output: &str, rekey: bool, left: bool) -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    let mut orders = builder
        .stream::<String, String>(orders, Consumed::with(Serdes::string(), Serdes::string()));
    if rekey {
        orders = orders.select_key(|_, v| v.clone());
    }
    let customers = builder.table::<String, String>(
        customers,
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("customers"),
    );
    let joined = Joined::with(Serdes::string(), Serdes::string()).with_name("enrich");
    let enriched = if left {
        orders.left_join_table(
            &customers,
            |o, c| format!("{o}@{}", c.map_or("?", |c| c.as_str())),
            joined,
        )
    } else {
        orders.join_table(&customers, |o, c| format!("{o}@{c}"), joined)
    };
    enriched.to(output, Produced::with(Serdes::string(), Serdes::string()));
    builder
}

#[test]
fn a_join_of_topics_with_different_partition_counts_does_not_start() {
    let kafka = embedded();
    kafka.create_topic("orders", 4).expect("orders");
    kafka.create_topic("customers", 2).expect("customers");
    let state = tempfile::tempdir().expect("state dir");
    let topology = orders_with_customers(false).build().expect("build");
    let streams =
        KafkaStreams::new(topology, config(&kafka, "copartition", state.path())).expect("instance");
    let err = streams
        .start()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for part in [
        "enrich",
        "co-partitioned",
        "`orders` has 4",
        "`customers` has 2",
    ] {
        assert!(err.contains(part), "`{part}` in: {err}");
    }
    streams.close(Duration::from_secs(10));
}

#[test]
fn a_rekeyed_stream_is_repartitioned_into_as_many_partitions_as_its_table() {
    let kafka = embedded();
    kafka.create_topic("orders", 2).expect("orders");
    kafka.create_topic("customers", 3).expect("customers");
    kafka.create_topic("enriched", 1).expect("enriched");
    let state = tempfile::tempdir().expect("state dir");
    let topology = orders_with_customers(true).build().expect("build");
    let streams =
        KafkaStreams::new(topology, config(&kafka, "rekeyed", state.path())).expect("instance");
    streams.start().expect("start");
    assert_eq!(
        partitions_of(kafka.bootstrap_servers(), "rekeyed-enrich-repartition"),
        Some(3),
        "the repartition topic follows the table, not the stream's 2 partitions"
    );
    streams.close(Duration::from_secs(10));
}

#[test]
fn merging_streams_needs_no_join_check() {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let a = builder.stream::<String, String>("a", c());
    let b = builder.stream::<String, String>("b", c());
    a.merge(&b)
        .to("merged", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().expect("build");
    assert!(topology.copartition_groups().is_empty());
    let joined = orders_with_customers(false).build().expect("build");
    let groups = joined.copartition_groups();
    assert_eq!(groups.len(), 1);
    let mut topics: Vec<&str> = groups[0].topics.iter().map(|t| t.name()).collect();
    topics.sort();
    assert_eq!(topics, vec!["customers", "orders"]);
}

const PARTITIONS: i32 = 4;

/// Keyed records, partitioned as Kafka's Java producer and the applications' own sinks do
/// (murmur2), so topics with the same partition count are co-partitioned with each other and
/// with the applications' repartition topics.
fn produce(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, value) in records {
        producer
            .send(
                BaseRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Whether group `app` has committed everything in `topics`.
fn caught_up(bootstrap: &str, app: &str, topics: &[&str]) -> bool {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", app)
        .create()
        .expect("probe");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions_of(bootstrap, t).unwrap_or(0) as i32 {
            tpl.add_partition(t, p);
        }
    }
    let Ok(committed) = probe.committed_offsets(tpl, Duration::from_secs(10)) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let high = probe
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
            .map_or(i64::MAX, |(_, high)| high);
        match e.offset() {
            Offset::Offset(o) => o >= high,
            _ => high == 0,
        }
    })
}

fn wait_caught_up(bootstrap: &str, app: &str, topics: &[&str], streams: &[&KafkaStreams]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streak = 0;
    while streak < 2 {
        for s in streams {
            assert!(s.error().is_none(), "failed: {:?}", s.error());
        }
        assert!(
            Instant::now() < deadline,
            "{app} did not catch up on {topics:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
        streak = if caught_up(bootstrap, app, topics) {
            streak + 1
        } else {
            0
        };
    }
}

/// Every record of `topic`, as `key -> values`.
/// Every value of `topic` by key, sorted (to compare as multisets).
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = read_in_order(bootstrap, topic);
    for values in out.values_mut() {
        values.sort();
    }
    out
}

/// Every value of `topic` by key, in offset order (per partition).
fn read_in_order(bootstrap: &str, topic: &str) -> BTreeMap<String, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions_of(bootstrap, topic).unwrap_or(0) as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let position = consumer.position().expect("position");
        let done = position.elements().iter().all(|e| match e.offset() {
            Offset::Offset(o) => o >= ends[&e.partition()],
            _ => ends[&e.partition()] == 0,
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.entry(text(m.key()))
                .or_default()
                .push(text(m.payload()));
        }
    }
    out
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn two_instances_split_a_stream_table_join_on_co_partitioned_topics() {
    init_logs();
    let kafka = real_kafka();
    let app = unique("joins-two");
    let (orders, customers, output) = (unique("orders"), unique("customers"), unique("enriched"));
    for t in [&orders, &customers, &output] {
        kafka.create_topic(t, PARTITIONS);
    }
    let instance = |dir: &std::path::Path| {
        let config = StreamsConfig::new(&app)
            .set("bootstrap.servers", kafka.bootstrap())
            .set("state.dir", dir.display())
            .set("commit.interval.ms", 200);
        let topology = enrich(&orders, &customers, &output, false, true)
            .build()
            .expect("build");
        KafkaStreams::new(topology, config).expect("instance")
    };
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir a"),
        tempfile::tempdir().expect("dir b"),
    );
    let (a, b) = (instance(dir_a.path()), instance(dir_b.path()));
    a.start().expect("start a");
    b.start().expect("start b");
    // Both run before any input arrives, so no task moves while records are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ta, tb) = (a.metrics().threads[0].tasks, b.metrics().threads[0].tasks);
        if a.state() == State::Running && b.state() == State::Running && ta > 0 && tb > 0 {
            assert_eq!(ta + tb, PARTITIONS as u64, "one task per partition");
            break;
        }
        assert!(
            a.error().is_none() && b.error().is_none(),
            "{:?} / {:?}",
            a.error(),
            b.error()
        );
        assert!(Instant::now() < deadline, "both instances never ran tasks");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The table first, then orders: 40 customers, orders for 44 (4 unknown).
    let names: Vec<(String, String)> = (0..40)
        .map(|c| (format!("c-{c}"), format!("Customer {c}")))
        .collect();
    produce(&kafka.bootstrap(), &customers, &names);
    wait_caught_up(&kafka.bootstrap(), &app, &[&customers], &[&a, &b]);
    let order_records: Vec<(String, String)> = (0..2_000)
        .map(|i| (format!("c-{}", i % 44), format!("o-{i}")))
        .collect();
    produce(&kafka.bootstrap(), &orders, &order_records);
    wait_caught_up(&kafka.bootstrap(), &app, &[&customers, &orders], &[&a, &b]);

    let (pa, pb) = (a.metrics().processed(), b.metrics().processed());
    assert!(a.close(Duration::from_secs(30)) && b.close(Duration::from_secs(30)));
    assert!(
        pa > 0 && pb > 0,
        "both instances joined records: {pa} / {pb}"
    );

    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, order) in &order_records {
        let name = names
            .iter()
            .find(|(c, _)| c == key)
            .map_or("?", |(_, n)| n.as_str());
        want.entry(key.clone())
            .or_default()
            .push(format!("{order}@{name}"));
    }
    for values in want.values_mut() {
        values.sort();
    }
    let got = read_all(&kafka.bootstrap(), &output);
    assert_eq!(got.len(), want.len(), "one output key per customer key");
    assert_eq!(got, want, "every order once, with its customer");
    eprintln!("two instances: {pa} and {pb} records processed");
}

#[test]
fn a_foreign_key_join_of_differently_partitioned_tables_runs_through_its_topics() {
    let kafka = embedded();
    kafka.create_topic("fk-orders", 2).expect("orders");
    kafka.create_topic("fk-customers", 3).expect("customers");
    kafka.create_topic("fk-out", 1).expect("output");
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let orders = builder.table::<String, String>("fk-orders", c(), Materialized::default());
    let customers = builder.table::<String, String>("fk-customers", c(), Materialized::default());
    orders
        .left_join_on_foreign_key(
            &customers,
            |o| o.split(':').next().unwrap_or_default().to_owned(),
            |o, name| format!("{o} by {}", name.map_or("?", |n| n.as_str())),
            TableJoined::as_("by-customer"),
            Materialized::with(Serdes::string(), Serdes::string()),
        )
        .to_stream()
        .to(
            "fk-out",
            Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
        );
    let state = tempfile::tempdir().expect("state dir");
    let streams = KafkaStreams::new(
        builder.build().expect("build"),
        config(&kafka, "fk", state.path()).set("commit.interval.ms", 100),
    )
    .expect("instance");
    streams.start().expect("start: no co-partitioning needed");
    let bootstrap = kafka.bootstrap_servers().to_owned();
    for (topic, partitions) in [
        ("fk-by-customer-subscription-registration-repartition", 3),
        ("fk-by-customer-subscription-response-repartition", 2),
    ] {
        assert_eq!(
            partitions_of(&bootstrap, topic),
            Some(partitions),
            "{topic}"
        );
    }
    let names: Vec<(String, String)> = (0..20)
        .map(|c| (format!("c{c}"), format!("Customer {c}")))
        .collect();
    produce(&bootstrap, "fk-customers", &names);
    // 200 orders over 25 customer ids (5 unknown), then 50 of them move to another customer.
    let mut orders: BTreeMap<String, String> = (0..200)
        .map(|i| (format!("o{i}"), format!("c{}:{i}", i % 25)))
        .collect();
    let records: Vec<(String, String)> = orders.clone().into_iter().collect();
    produce(&bootstrap, "fk-orders", &records);
    let moved: Vec<(String, String)> = (0..50)
        .map(|i| (format!("o{i}"), format!("c{}:{i}", (i + 7) % 25)))
        .collect();
    produce(&bootstrap, "fk-orders", &moved);
    orders.extend(moved);
    let topics = [
        "fk-orders",
        "fk-customers",
        "fk-by-customer-subscription-registration-repartition",
        "fk-by-customer-subscription-response-repartition",
    ];
    // Alone this settles in about 4 s; the margin is for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let want: BTreeMap<String, String> = orders
        .iter()
        .map(|(k, o)| {
            let customer = o.split(':').next().unwrap_or_default();
            let name = names
                .iter()
                .find(|(c, _)| c == customer)
                .map_or("?", |(_, n)| n.as_str());
            (k.clone(), format!("{o} by {name}"))
        })
        .collect();
    // Answers travel through two topics: wait until the output holds the final join.
    let mut seen = (false, BTreeMap::new());
    let last = loop {
        assert!(streams.error().is_none(), "{:?}", streams.error());
        if Instant::now() >= deadline {
            let (committed, last) = &seen;
            let wrong: Vec<_> = want
                .iter()
                .filter(|(k, v)| last.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", last.get(k)))
                .take(10)
                .collect();
            panic!(
                "the join did not settle: input committed: {committed}; {} of {} orders differ, e.g. {wrong:#?}; metrics: {:?}",
                want.iter().filter(|(k, v)| last.get(*k) != Some(*v)).count(),
                want.len(),
                streams.metrics()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        let committed = caught_up(&bootstrap, "fk", &topics);
        // The latest result per key: an order's results are in offset order (one partition).
        let last: BTreeMap<String, String> = read_in_order(&bootstrap, "fk-out")
            .into_iter()
            .filter_map(|(k, values)| values.last().cloned().map(|v| (k, v)))
            .collect();
        if committed && last == want {
            break last;
        }
        seen = (committed, last);
    };
    assert_eq!(last.len(), 200);
    streams.close(Duration::from_secs(10));
}
