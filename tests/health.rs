//! Health on a real broker: an instance is Running once the group has answered it, also when
//! the answer is "no partitions for you" (more instances than partitions); not on a guess.

mod support;

use std::time::{Duration, Instant};

use kstreams::prelude::*;
use support::{real_kafka, unique, Cluster};

fn instance(bootstrap: &str, app: &str, input: &str, dir: &std::path::Path) -> KafkaStreams {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(input, Consumed::with(Serdes::string(), Serdes::string()))
        .foreach(|_, _| {});
    let config = StreamsConfig::new(app)
        .set("bootstrap.servers", bootstrap)
        .set("state.dir", dir.display());
    KafkaStreams::new(builder.build().expect("topology"), config).expect("config")
}

fn wait_running(streams: &KafkaStreams, timeout: Duration) -> Duration {
    let started = Instant::now();
    while streams.state() != State::Running {
        assert!(
            started.elapsed() < timeout,
            "state {:?} after {timeout:?}; threads: {:?}",
            streams.state(),
            streams.metrics().threads
        );
        assert!(streams.error().is_none(), "{:?}", streams.error());
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn an_instance_without_partitions_is_running_once_the_group_answered() {
    support::init_logs();
    let kafka = real_kafka();
    let input = unique("health-in");
    let app = unique("health");
    kafka.create_topic(&input, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let first = instance(&kafka.bootstrap(), &app, &input, &dir.path().join("a"));
    first.start().expect("start");
    wait_running(&first, Duration::from_secs(60));
    let second = instance(&kafka.bootstrap(), &app, &input, &dir.path().join("b"));
    second.start().expect("start");
    // The group answers within a rebalance (seconds); the bound is for a loaded machine.
    let took = wait_running(&second, Duration::from_secs(60));
    eprintln!("the idle instance was running after {took:?}");
    let tasks = |s: &KafkaStreams| s.metrics().threads.iter().map(|t| t.tasks).sum::<u64>();
    assert_eq!(tasks(&first) + tasks(&second), 1, "one partition, one task");
    assert!(first.close(Duration::from_secs(30)));
    assert!(second.close(Duration::from_secs(30)));
}
