//! Windowing runs on Kafka: producing generated events at their partitions and timestamps, and
//! reading the windowing example's output.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::Cluster;

use super::wordcount::example;

#[allow(unused_imports)] // not every test crate uses all of them
pub use example::{expected_window_counts, flush_events, windowing_events, Event, WindowedCounts};

/// An idempotent producer, so each partition keeps the order events are sent in.
pub fn producer(cluster: &dyn Cluster) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Sends `events` (empty values) to their partitions with their timestamps, waiting at the end.
pub fn produce_events(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    events: &[Event],
) {
    for e in events {
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(e.key.as_bytes())
            .payload(&[])
            .partition(e.partition)
            .timestamp(e.timestamp);
        example::send_waiting(producer, record).expect("producing events");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush events");
}

/// Every committed record of the windowing example's output: `(<key>@<start>, count)`.
pub fn read_output(cluster: &dyn Cluster, topic: &str, partitions: i32) -> Vec<(String, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", "windowing-reader")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        let positions = consumer.position().expect("position");
        let at_end = positions.elements().iter().all(|e| match e.offset() {
            Offset::Offset(o) => o >= ends[&e.partition()],
            _ => ends[&e.partition()] == 0,
        });
        if at_end {
            return out;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume output");
            let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("UTF-8 key");
            let count =
                i64::from_be_bytes(m.payload().expect("count").try_into().expect("8 bytes"));
            out.push((key, count));
        }
    }
}
