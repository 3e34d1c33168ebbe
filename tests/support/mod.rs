//! Helpers shared by the integration tests: finding the broker, unique names, topic creation.
#![allow(dead_code)]

pub mod eos;
pub mod semantics;
pub mod system;
pub mod windowing;
pub mod wordcount;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// The environment variable through which `scripts/test.sh` hands the broker to the tests.
pub const BROKER_ENV: &str = "KSTREAMS_BOOTSTRAP_SERVERS";

/// How a test reaches a cluster and creates topics on it.
pub trait Cluster {
    /// `bootstrap.servers`.
    fn bootstrap(&self) -> String;
    /// Creates `name` with `partitions` partitions and waits until it is usable.
    fn create_topic(&self, name: &str, partitions: i32);
    /// Whether this is a real Apache Kafka broker (some checks only hold there).
    fn is_real_kafka(&self) -> bool;
}

/// The real broker that `scripts/test.sh` started.
pub struct RealKafka {
    bootstrap: String,
}

/// The real broker, or a panic that says how to run the broker tests.
pub fn real_kafka() -> RealKafka {
    match std::env::var(BROKER_ENV) {
        Ok(bootstrap) if !bootstrap.trim().is_empty() => RealKafka { bootstrap },
        _ => panic!(
            "{BROKER_ENV} is not set: this test needs a real Apache Kafka broker. Run \
             `scripts/test.sh`, which starts one and runs every test, or start one with \
             `scripts/kafka.sh start` and run `{BROKER_ENV}=127.0.0.1:9092 cargo test -- --include-ignored`"
        ),
    }
}

impl Cluster for RealKafka {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
            .expect("create_topics request");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        wait_for_topic(&self.bootstrap, name, partitions);
    }

    fn is_real_kafka(&self) -> bool {
        true
    }
}

/// Waits until the cluster's metadata shows `name` with `partitions` partitions and leaders.
pub fn wait_for_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata consumer");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            if let Some(t) = md.topics().iter().find(|t| t.name() == name) {
                if t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
                {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {name} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs to the test's output: `RUST_LOG` if set, else warnings.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `condition` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn eventually(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}
