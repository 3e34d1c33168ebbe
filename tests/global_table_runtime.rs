//! Global tables on a broker: the global store holds every partition of its topic on each
//! instance before processing starts, the global thread keeps it up to date, a restart with a
//! persistent global store restores only the records after its checkpoint (all of them when the
//! checkpoint lies outside the log), and a missing global topic stops the start with an error
//! naming it (on the embedded broker); two exactly-once instances each join their share of a
//! stream against the whole global table, reading committed records only, then one restarts
//! and restores only the tail (on a real broker; ignored by a plain `cargo test`,
//! `scripts/test.sh` runs it).

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

/// `orders` (key: order id, value: product id) joined with the `products` global table into
/// `output`, values `order:name` (`order:?` for an unknown product).
fn topology(orders: &str, products: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    let products = builder.global_table::<String, String>(
        products,
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("products"),
    );
    builder
        .stream::<String, String>(orders, Consumed::with(Serdes::string(), Serdes::string()))
        .left_join_global(
            &products,
            |_, product| product.clone(),
            |product, name| format!("{product}:{}", name.map_or("?", |n| n.as_str())),
        )
        .to(output, Produced::with(Serdes::string(), Serdes::string()));
    builder.build().expect("build")
}

fn produce(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
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

/// Writes `records` in a transaction that is then aborted: a read_committed reader never sees
/// them.
fn produce_aborted(bootstrap: &str, topic: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("transactional.id", unique("global-aborter"))
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer.begin_transaction().expect("begin");
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
    producer
        .flush(Duration::from_secs(30))
        .expect("aborted records reach the log");
    producer
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");
}

fn partitions_of(bootstrap: &str, topic: &str) -> i32 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata consumer");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|md| md.topics().first().map(|t| t.partitions().len() as i32))
        .unwrap_or(0)
}

/// Reads `topic` from the start until it holds `count` records (or 60 s pass): key -> values.
fn read_output(bootstrap: &str, topic: &str, count: usize) -> BTreeMap<String, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions_of(bootstrap, topic) {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.entry(text(m.key()))
                .or_default()
                .push(text(m.payload()));
            read += 1;
        }
    }
    for values in out.values_mut() {
        values.sort();
    }
    out
}

fn wait_running(streams: &[&KafkaStreams]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !streams.iter().all(|s| s.state() == State::Running) {
        for s in streams {
            assert!(s.error().is_none(), "failed: {:?}", s.error());
        }
        assert!(Instant::now() < deadline, "never running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn products(range: std::ops::Range<u32>, version: &str) -> Vec<(String, String)> {
    range
        .map(|p| (format!("p{p}"), format!("{version}{p}")))
        .collect()
}

/// Orders `o<i>` for products `p<i % modulo>`.
fn orders(range: std::ops::Range<u32>, modulo: u32) -> Vec<(String, String)> {
    range
        .map(|i| (format!("o{i}"), format!("p{}", i % modulo)))
        .collect()
}

/// What the join yields for `orders` against `table`.
fn expected(
    orders: &[(String, String)],
    table: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    orders
        .iter()
        .map(|(o, p)| {
            let name = table.get(p).map_or("?", |n| n.as_str());
            (o.clone(), vec![format!("{p}:{name}")])
        })
        .collect()
}

#[test]
fn a_global_table_holds_every_partition_stays_current_and_restores_only_its_tail() {
    init_logs();
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    let bootstrap = kafka.bootstrap_servers().to_owned();
    kafka.create_topic("g-products", 3).expect("products");
    kafka.create_topic("g-orders", 2).expect("orders");
    kafka.create_topic("g-out", 1).expect("out");
    let state = tempfile::tempdir().expect("state dir");
    let config = || {
        StreamsConfig::new("global-embedded")
            .with_embedded(&kafka)
            .set("state.dir", state.path().display())
            .set("commit.interval.ms", 100)
    };

    // 30 products over 3 partitions, all there before the first order is processed.
    let mut table: BTreeMap<String, String> = products(0..30, "v1-").into_iter().collect();
    produce(&bootstrap, "g-products", &products(0..30, "v1-"));
    let streams =
        KafkaStreams::new(topology("g-orders", "g-products", "g-out"), config()).expect("instance");
    streams.start().expect("start");
    assert_eq!(
        streams.metrics().global_restored,
        30,
        "every partition restored"
    );
    wait_running(&[&streams]);
    let first = orders(0..40, 32); // p30, p31 unknown
    produce(&bootstrap, "g-orders", &first);
    let mut want = expected(&first, &table);
    assert_eq!(read_output(&bootstrap, "g-out", 40), want);

    // Updates and a deletion reach the running instance through the global thread.
    let update = products(0..10, "v2-");
    produce(&bootstrap, "g-products", &update);
    table.extend(update);
    let deadline = Instant::now() + Duration::from_secs(30);
    while streams.metrics().global_applied < 10 {
        assert!(
            Instant::now() < deadline,
            "the global thread applied nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = orders(40..80, 32);
    produce(&bootstrap, "g-orders", &second);
    want.extend(expected(&second, &table));
    assert_eq!(read_output(&bootstrap, "g-out", 80), want);
    assert!(streams.close(Duration::from_secs(30)));
    drop(streams);

    // Closed: 5 more updates. The restart restores only those.
    let tail = products(30..35, "v3-");
    produce(&bootstrap, "g-products", &tail);
    table.extend(tail);
    let streams =
        KafkaStreams::new(topology("g-orders", "g-products", "g-out"), config()).expect("instance");
    streams.start().expect("restart");
    assert_eq!(
        streams.metrics().global_restored,
        5,
        "only the records after the checkpoint are restored"
    );
    wait_running(&[&streams]);
    let third = orders(80..120, 36);
    produce(&bootstrap, "g-orders", &third);
    want.extend(expected(&third, &table));
    assert_eq!(read_output(&bootstrap, "g-out", 120), want);
    assert!(streams.close(Duration::from_secs(30)));
    drop(streams);

    // A checkpoint beyond the log (as after the topic was recreated): restored in full.
    let checkpoint = state.path().join("global-embedded/global/.checkpoint");
    let text = std::fs::read_to_string(&checkpoint).expect("a checkpoint was written");
    assert_eq!(text.lines().count(), 3, "one line per partition: {text}");
    std::fs::write(&checkpoint, "g-products 0 1000000\n").expect("overwrite the checkpoint");
    let streams =
        KafkaStreams::new(topology("g-orders", "g-products", "g-out"), config()).expect("instance");
    streams.start().expect("restart");
    assert_eq!(streams.metrics().global_restored, 45, "every record again");
    wait_running(&[&streams]);
    let fourth = orders(120..130, 36);
    produce(&bootstrap, "g-orders", &fourth);
    want.extend(expected(&fourth, &table));
    assert_eq!(read_output(&bootstrap, "g-out", 130), want);
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn a_missing_global_topic_stops_the_start_with_its_name() {
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    kafka.create_topic("gm-orders", 1).expect("orders");
    kafka.create_topic("gm-out", 1).expect("out");
    let state = tempfile::tempdir().expect("state dir");
    let streams = KafkaStreams::new(
        topology("gm-orders", "gm-missing-products", "gm-out"),
        StreamsConfig::new("global-missing")
            .with_embedded(&kafka)
            .set("state.dir", state.path().display()),
    )
    .expect("instance");
    let err = streams
        .start()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("gm-missing-products"), "{err}");
    streams.close(Duration::from_secs(10));
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn two_instances_each_join_against_the_whole_global_table_and_a_restart_restores_the_tail() {
    init_logs();
    let kafka = real_kafka();
    let bootstrap = kafka.bootstrap();
    let app = unique("global-two");
    let (orders_topic, products_topic, output) =
        (unique("orders"), unique("products"), unique("out"));
    kafka.create_topic(&orders_topic, 4);
    kafka.create_topic(&products_topic, 3);
    kafka.create_topic(&output, 4);
    let instance = |dir: &std::path::Path| {
        let config = StreamsConfig::new(&app)
            .set("bootstrap.servers", &bootstrap)
            .set("state.dir", dir.display())
            .set("processing.guarantee", "exactly_once_v2")
            .set("commit.interval.ms", 200);
        KafkaStreams::new(topology(&orders_topic, &products_topic, &output), config)
            .expect("instance")
    };
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir a"),
        tempfile::tempdir().expect("dir b"),
    );
    let mut table: BTreeMap<String, String> = products(0..60, "v1-").into_iter().collect();
    produce(&bootstrap, &products_topic, &products(0..60, "v1-"));
    // Exactly-once: the global consumer reads committed records only.
    produce_aborted(&bootstrap, &products_topic, &products(0..60, "aborted-"));
    let (a, b) = (instance(dir_a.path()), instance(dir_b.path()));
    a.start().expect("start a");
    b.start().expect("start b");
    assert_eq!(
        a.metrics().global_restored,
        60,
        "a holds all 3 partitions, without the aborted records"
    );
    assert_eq!(b.metrics().global_restored, 60, "b holds all 3 partitions");
    wait_running(&[&a, &b]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.metrics().threads[0].tasks == 0 || b.metrics().threads[0].tasks == 0 {
        assert!(Instant::now() < deadline, "both instances never ran tasks");
        std::thread::sleep(Duration::from_millis(100));
    }

    let first = orders(0..1_000, 64); // p60..p63 unknown
    produce(&bootstrap, &orders_topic, &first);
    let mut want = expected(&first, &table);
    assert_eq!(read_output(&bootstrap, &output, 1_000), want);
    let (pa, pb) = (a.metrics().processed(), b.metrics().processed());
    assert!(
        pa > 0 && pb > 0,
        "both instances joined records: {pa} / {pb}"
    );

    // b leaves; more products arrive; b comes back and restores only those.
    assert!(b.close(Duration::from_secs(30)));
    drop(b);
    let tail = products(60..64, "v2-");
    produce(&bootstrap, &products_topic, &tail);
    table.extend(tail);
    let b = instance(dir_b.path());
    b.start().expect("restart b");
    assert_eq!(b.metrics().global_restored, 4, "b restored only the tail");
    wait_running(&[&a, &b]);
    // a saw the tail through its global thread.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.metrics().global_applied < 4 {
        assert!(
            Instant::now() < deadline,
            "a's global thread applied nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = orders(1_000..2_000, 64);
    produce(&bootstrap, &orders_topic, &second);
    want.extend(expected(&second, &table));
    assert_eq!(read_output(&bootstrap, &output, 2_000), want);
    assert!(a.close(Duration::from_secs(30)) && b.close(Duration::from_secs(30)));
    eprintln!("two instances: {pa} and {pb} records processed before the restart");
}
