//! Repartition topics on a real broker: created with Kafka Streams' settings (`retention.ms=-1`,
//! 50 MB segments, `cleanup.policy=delete`) and purged after commits, so their log start offset
//! follows what the application committed. Ignored by a plain `cargo test`; `scripts/test.sh`
//! runs it.

mod support;

use std::time::{Duration, Instant};

use kstreams::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use support::{real_kafka, unique, Cluster};

const RECORDS: usize = 50;

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn committed_records_of_repartition_topics_are_purged() {
    support::init_logs();
    let kafka = real_kafka();
    let (input, output, app) = (unique("purge-in"), unique("purge-out"), unique("purge-app"));
    kafka.create_topic(&input, 1);
    kafka.create_topic(&output, 1);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("producer");
    for i in 0..RECORDS {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(&input).key(key.as_bytes()).payload("v"))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(
            input.as_str(),
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .repartition(Repartitioned::with(Serdes::string(), Serdes::string()).with_name("purged"))
        .to(&output, Produced::with(Serdes::string(), Serdes::string()));
    let state = tempfile::tempdir().expect("state dir");
    let config = StreamsConfig::new(&app)
        .set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.path().display())
        .set("commit.interval.ms", 100)
        .set("repartition.purge.interval.ms", 0);
    let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
    streams.start().expect("start");

    let repartition = format!("{app}-purged-repartition");
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("watcher");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0, 0);
    loop {
        if let Ok(marks) = watcher.fetch_watermarks(&repartition, 0, Duration::from_secs(5)) {
            last = marks;
            // Everything written was processed and committed, then deleted.
            if marks == (RECORDS as i64, RECORDS as i64) {
                break;
            }
        }
        assert!(streams.error().is_none(), "{:?}", streams.error());
        assert!(
            Instant::now() < deadline,
            "the repartition topic's (log start, end) offsets stayed at {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("admin");
    let described = futures::executor::block_on(admin.describe_configs(
        [&ResourceSpecifier::Topic(&repartition)],
        &AdminOptions::new(),
    ))
    .expect("describe");
    let resource = described
        .into_iter()
        .next()
        .expect("one resource")
        .expect("described");
    let setting = |name: &str| resource.get(name).and_then(|e| e.value.clone());
    assert_eq!(setting("retention.ms").as_deref(), Some("-1"));
    assert_eq!(setting("segment.bytes").as_deref(), Some("52428800"));
    assert_eq!(setting("cleanup.policy").as_deref(), Some("delete"));
    assert!(streams.close(Duration::from_secs(30)));
}
