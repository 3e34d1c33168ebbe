//! The Kafka semantics kstreams relies on, checked against the real Apache Kafka broker that
//! `scripts/test.sh` starts. Ignored by a plain `cargo test`; `scripts/test.sh` runs them.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use support::{real_kafka, semantics, Cluster};

const IGNORE: &str = "needs a real Kafka broker: run scripts/test.sh";

/// The broker is Apache Kafka 4.x in KRaft mode, serving the KIP-848 consumer protocol: a mock or
/// an older broker fails here.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn broker_is_apache_kafka_4_in_kraft_mode() {
    let _ = IGNORE;
    let kafka = real_kafka();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results =
        futures::executor::block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &opts))
            .expect("DescribeConfigs (the mock cluster does not serve it)");
    let config = results
        .into_iter()
        .next()
        .expect("one resource")
        .expect("broker 1 config");
    let get = |key: &str| config.get(key).and_then(|e| e.value.clone());
    let roles = get("process.roles").expect("process.roles: KRaft mode");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "combined KRaft node, got {roles}"
    );
    let protocols = get("group.coordinator.rebalance.protocols").expect("Kafka >= 3.7 config");
    assert!(
        protocols.contains("consumer"),
        "KIP-848 enabled, got {protocols}"
    );
    assert!(
        config.get("zookeeper.connect").is_none(),
        "ZooKeeper support is gone in Kafka 4"
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn keyed_records_round_trip_over_partitions() {
    semantics::keyed_round_trip(&real_kafka());
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn consumer_group_splits_and_takes_over_kip848() {
    semantics::group_split_and_takeover(&real_kafka(), "consumer");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn consumer_group_splits_and_takes_over_classic() {
    semantics::group_split_and_takeover(&real_kafka(), "classic");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn read_committed_never_sees_aborted_records() {
    semantics::transactions_hide_aborted_records(&real_kafka());
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn consumer_offsets_commit_atomically_with_the_transaction() {
    semantics::offsets_commit_with_the_transaction(&real_kafka());
}
