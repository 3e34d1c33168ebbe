//! Joins on a broker: the co-partitioning check at start (on the embedded broker), and the
//! repartition topic in front of a join sized like the topics it is joined with.

mod support;

use std::time::Duration;

use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

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
    let builder = StreamsBuilder::new();
    let mut orders = builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    if rekey {
        orders = orders.select_key(|_, v| v.clone());
    }
    let customers = builder.table::<String, String>(
        "customers",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("customers"),
    );
    orders
        .join_table(
            &customers,
            |o, c| format!("{o}@{c}"),
            Joined::with(Serdes::string(), Serdes::string()).with_name("enrich"),
        )
        .to(
            "enriched",
            Produced::with(Serdes::string(), Serdes::string()),
        );
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
