//! The same round-trip and transaction checks as `kafka_semantics.rs`, against the embedded
//! broker (librdkafka's mock cluster) that examples and quick tests use. No broker needed.

mod support;

use kstreams::embedded::EmbeddedKafka;
use support::{semantics, Cluster};

struct Embedded(EmbeddedKafka);

impl Cluster for Embedded {
    fn bootstrap(&self) -> String {
        self.0.bootstrap_servers().to_owned()
    }
    fn create_topic(&self, name: &str, partitions: i32) {
        self.0
            .create_topic(name, partitions)
            .expect("create topic on the mock cluster");
    }
    fn is_real_kafka(&self) -> bool {
        false
    }
}

fn embedded() -> Embedded {
    Embedded(EmbeddedKafka::start().expect("start the embedded broker"))
}

#[test]
fn keyed_records_round_trip_over_partitions() {
    semantics::keyed_round_trip(&embedded());
}

#[test]
fn consumer_group_splits_and_takes_over_kip848() {
    semantics::group_split_and_takeover(&embedded(), "consumer");
}

#[test]
fn read_committed_never_sees_aborted_records() {
    semantics::transactions_hide_aborted_records(&embedded());
}

#[test]
fn consumer_offsets_commit_atomically_with_the_transaction() {
    semantics::offsets_commit_with_the_transaction(&embedded());
}
