//! Broker faults, injected into the real broker while a word count runs: the broker stopped and
//! started again on the same data, and the broker frozen (SIGSTOP) for longer than the group's
//! session timeout and the transaction timeout, then thawed (SIGCONT). Input keeps arriving
//! around each fault. Two scenarios put the fault in the middle of a new instance's restoration
//! of its store from the changelog. The application must ride it out on its own, never
//! reaching Error: under
//! at_least_once no count may end below the oracle's (nothing lost; repeats allowed), under
//! exactly_once_v2 every count must equal it.
//!
//! The broker is the one `scripts/test.sh` started; this binary drives it through
//! `scripts/kafka.sh restart|pid` (`KSTREAMS_KAFKA_DIR` and `KAFKA_PORT` tell it which), so
//! its scenarios run one at a time, and the test command runs test binaries one after another.
//! `KSTREAMS_FAULT_SECONDS` sets how long a fault lasts (default 20); `KSTREAMS_FAULT_DEBUG`
//! sets the applications' `consumer.debug` (librdkafka's debug contexts, with
//! `RUST_LOG=librdkafka=debug`). Ignored by a plain `cargo test`.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kstreams::prelude::*;
use support::wordcount::{
    assert_counts_equal, oracle, oracle_from_topic, produce_lines, produce_lines_with,
    read_counts_with, wait_caught_up, word_count_topology,
};
use support::{real_kafka, unique, Cluster};

const PARTITIONS: i32 = 3;

/// One scenario at a time: they share the broker they break.
static BROKER: Mutex<()> = Mutex::new(());

fn fault_length() -> Duration {
    Duration::from_secs(
        std::env::var("KSTREAMS_FAULT_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    )
}

fn kafka_sh(command: &str) -> String {
    for var in ["KSTREAMS_KAFKA_DIR", "KAFKA_PORT"] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: the broker fault tests drive the broker scripts/test.sh started"
        );
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .arg(command)
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `scripts/kafka.sh restart`, with the broker down for the fault's length.
    StopAndRestart,
    /// SIGSTOP for the fault's length, then SIGCONT.
    Freeze,
}

fn inject(fault: Fault, length: Duration) {
    match fault {
        Fault::StopAndRestart => {
            let stopped = Instant::now();
            kafka_sh("stop");
            std::thread::sleep(length.saturating_sub(stopped.elapsed()));
            // `restart` on a stopped broker only starts it again, on the same data.
            kafka_sh("restart");
        }
        Fault::Freeze => {
            let pid = kafka_sh("pid");
            signal(&pid, "-STOP");
            std::thread::sleep(length);
            signal(&pid, "-CONT");
        }
    }
}

fn config(
    id: &str,
    kafka: &dyn Cluster,
    state: &std::path::Path,
    guarantee: &str,
) -> StreamsConfig {
    let mut c = StreamsConfig::new(id);
    if let Ok(debug) = std::env::var("KSTREAMS_FAULT_DEBUG") {
        c = c.set("consumer.debug", debug);
    }
    c.set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.display())
        .set("processing.guarantee", guarantee)
        .set("commit.interval.ms", 500)
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        )
}

/// A scenario's word count: its application id, input topic, and the topics whose consumption
/// tells it caught up (input and repartition topic). Creates the input and output topics.
fn word_count_topics(kafka: &dyn Cluster, prefix: &str) -> (String, String, Vec<String>) {
    support::init_logs();
    let id = unique(prefix);
    let (input, output) = (format!("{id}-lines"), format!("{id}-counts"));
    kafka.create_topic(&input, PARTITIONS);
    kafka.create_topic(&output, PARTITIONS);
    let topics = vec![input.clone(), format!("{id}-counts-repartition")];
    (id, input, topics)
}

/// Starts an instance of the word count from `{id}-lines` to `{id}-counts`.
fn start(id: &str, config: StreamsConfig) -> KafkaStreams {
    let topology = word_count_topology(&format!("{id}-lines"), &format!("{id}-counts"));
    let streams = KafkaStreams::new(topology.expect("topology"), config).expect("instance");
    streams.start().expect("start");
    streams
}

fn run(fault: Fault, guarantee: &str) {
    let _broker = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let kafka = real_kafka();
    let (id, input, topics) = word_count_topics(&kafka, "faults");
    let state = tempfile::tempdir().expect("state dir");
    let streams = start(&id, config(&id, &kafka, state.path(), guarantee));

    let (before, during, after) = (0..6_000u64, 6_000..9_000u64, 9_000..15_000u64);
    produce_lines(&kafka, &input, before.clone());
    wait_caught_up(&kafka, &id, &topics, PARTITIONS, Duration::from_secs(120));

    // Lines sent while the broker is away wait in the producer and go when it is back. Requests
    // caught by a freeze time out after 10 s and are retried, rather than after a minute.
    let length = fault_length();
    let producer = {
        let bootstrap = kafka.bootstrap();
        let input = input.clone();
        std::thread::spawn(move || -> u64 {
            std::thread::sleep(Duration::from_secs(1));
            produce_lines_with(
                &BootstrapOnly(bootstrap),
                &input,
                during,
                &[
                    ("request.timeout.ms", "10000"),
                    ("message.timeout.ms", "240000"),
                ],
                Duration::from_secs(240),
            )
        })
    };
    let started = Instant::now();
    inject(fault, length);
    let state_during_fault = streams.state();
    // The test's own producer can lose lines to the fault too (librdkafka's requests caught by a
    // freeze can leave it without a connection until its message timeout): the oracle counts
    // what reached the input topic.
    let lost_input = producer.join().expect("producer during the fault");
    produce_lines(&kafka, &input, after.clone());
    let outcome = settle(&kafka, &streams, &id, &topics, guarantee, fault);
    check(
        &kafka,
        &id,
        guarantee,
        fault,
        after.end,
        lost_input,
        &format!(
            "state during the fault {state_during_fault:?}; caught up {:.1} s after it began; {outcome}",
            started.elapsed().as_secs_f64()
        ),
    );
}

/// Waits until the application has caught up with its input (never in Error, at most 180 s),
/// checks it is Running and closes it; returns its recoveries and rebalances, for the log.
fn settle(
    kafka: &dyn Cluster,
    streams: &KafkaStreams,
    id: &str,
    topics: &[String],
    guarantee: &str,
    fault: Fault,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    let topics_done = || {
        support::wordcount::example::group_caught_up(&kafka.bootstrap(), id, topics, PARTITIONS)
            .unwrap_or(false)
    };
    let mut streak = 0;
    while streak < 2 {
        assert!(
            streams.error().is_none(),
            "{fault:?} under {guarantee}: the instance failed: {:?}",
            streams.error()
        );
        assert!(
            Instant::now() < deadline,
            "{fault:?} under {guarantee}: not caught up 180 s after the fault (state {:?}, metrics {:?})",
            streams.state(),
            streams.metrics()
        );
        std::thread::sleep(Duration::from_millis(500));
        streak = if topics_done() { streak + 1 } else { 0 };
    }
    assert_eq!(
        streams.state(),
        State::Running,
        "{fault:?} under {guarantee}"
    );
    let metrics = streams.metrics();
    assert!(streams.close(Duration::from_secs(60)), "clean close");
    assert!(streams.error().is_none(), "{:?}", streams.error());
    format!(
        "recoveries {}, rebalances {}, restored {}",
        metrics.threads.iter().map(|t| t.recoveries).sum::<u64>(),
        metrics.threads.iter().map(|t| t.rebalances).sum::<u64>(),
        metrics.restored(),
    )
}

/// Checks the counts in `{id}-counts` against the input topic `{id}-lines` (which holds lines
/// `0..lines` unless the test's producer lost `lost_input` of them): equal under
/// exactly_once_v2, none below under at_least_once.
fn check(
    kafka: &dyn Cluster,
    id: &str,
    guarantee: &str,
    fault: Fault,
    lines: u64,
    lost_input: u64,
    log: &str,
) {
    let want = oracle_from_topic(kafka, &format!("{id}-lines"), PARTITIONS);
    let mut generated = HashMap::new();
    oracle(0..lines, &mut generated);
    if lost_input == 0 {
        // Every line produced is in the input topic, once.
        assert_counts_equal(&want, &generated);
    } else {
        eprintln!(
            "{fault:?}: the test's producer lost {lost_input} of the lines sent during the fault"
        );
    }
    let isolation = if guarantee == "exactly_once_v2" {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let got = read_counts_with(kafka, &format!("{id}-counts"), PARTITIONS, isolation);
    if guarantee == "exactly_once_v2" {
        assert_counts_equal(&got, &want);
    } else {
        let lost: Vec<String> = want
            .iter()
            .filter(|(w, c)| got.get(*w).is_none_or(|g| g < *c))
            .map(|(w, c)| format!("{w}: got {:?}, want at least {c}", got.get(w)))
            .take(10)
            .collect();
        assert!(lost.is_empty(), "{fault:?}: counts lost records: {lost:?}");
    }
    let extra: i64 = got.values().sum::<i64>() - want.values().sum::<i64>();
    eprintln!(
        "{fault:?} for {:?} under {guarantee}: {} words, {extra} counts repeated; {log}",
        fault_length(),
        want.len(),
    );
}

/// A broker fault while a second instance, on an empty state directory, restores the counts
/// store from its changelog: the restoration must resume where the fault left it (or start
/// over) and the counts must come out as the oracle's. Without a cache every count update is a
/// changelog record; small changelog batches and small fetches make the restoration take long
/// enough to be caught.
fn run_during_restore(fault: Fault, guarantee: &str) {
    let _broker = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let kafka = real_kafka();
    let (id, input, topics) = word_count_topics(&kafka, "restore-faults");
    let (first, second) = (0..20_000u64, 20_000..22_000u64);

    let state = tempfile::tempdir().expect("state dir");
    let builder = start(
        &id,
        config(&id, &kafka, state.path(), guarantee)
            .set("statestore.cache.max.bytes", 0)
            .set("producer.batch.num.messages", 20),
    );
    produce_lines(&kafka, &input, first.clone());
    wait_caught_up(&kafka, &id, &topics, PARTITIONS, Duration::from_secs(120));
    assert!(builder.close(Duration::from_secs(60)), "clean close");
    assert!(builder.error().is_none(), "{:?}", builder.error());

    let empty = tempfile::tempdir().expect("state dir");
    let streams = start(
        &id,
        config(&id, &kafka, empty.path(), guarantee)
            .set("statestore.cache.max.bytes", 0)
            .set("consumer.max.partition.fetch.bytes", 1024),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.metrics().restored() == 0 {
        assert!(streams.error().is_none(), "{:?}", streams.error());
        assert!(
            Instant::now() < deadline,
            "the restoration did not start in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let restored_before = streams.metrics().restored();
    // The restoration is still going when the fault begins, else this test tests nothing.
    assert_ne!(
        streams.state(),
        State::Running,
        "the restoration finished before the fault ({restored_before} records restored)"
    );
    let started = Instant::now();
    inject(fault, fault_length());
    produce_lines(&kafka, &input, second.clone());
    let outcome = settle(&kafka, &streams, &id, &topics, guarantee, fault);
    check(
        &kafka,
        &id,
        guarantee,
        fault,
        second.end,
        0,
        &format!(
            "{restored_before} records restored when the fault began; caught up {:.1} s after it began; {outcome}",
            started.elapsed().as_secs_f64()
        ),
    );
}

/// A cluster known by its address only (for the producer thread).
struct BootstrapOnly(String);

impl Cluster for BootstrapOnly {
    fn bootstrap(&self) -> String {
        self.0.clone()
    }
    fn create_topic(&self, name: &str, _: i32) {
        panic!("the fault tests create their topics before the fault, not {name}")
    }
    fn is_real_kafka(&self) -> bool {
        true
    }
}

#[test]
#[ignore = "stops and restarts the real broker: run scripts/test.sh"]
fn a_broker_restart_loses_nothing_under_at_least_once() {
    run(Fault::StopAndRestart, "at_least_once");
}

#[test]
#[ignore = "stops and restarts the real broker: run scripts/test.sh"]
fn a_broker_restart_keeps_exactly_once_counts_exact() {
    run(Fault::StopAndRestart, "exactly_once_v2");
}

#[test]
#[ignore = "freezes the real broker: run scripts/test.sh"]
fn a_frozen_broker_loses_nothing_under_at_least_once() {
    run(Fault::Freeze, "at_least_once");
}

/// This scenario once stalled (1 run in 4): librdkafka's `send_offsets_to_transaction` stayed
/// blocked after the thaw, past its timeout (librdkafka#5456). The commit is now given up once
/// the call overruns and the producer replaced; `runtime_recovery.rs` drives that path directly.
#[test]
#[ignore = "freezes the real broker: run scripts/test.sh"]
fn a_frozen_broker_keeps_exactly_once_counts_exact() {
    run(Fault::Freeze, "exactly_once_v2");
}

#[test]
#[ignore = "stops and restarts the real broker: run scripts/test.sh"]
fn a_broker_restart_during_a_restore_keeps_exactly_once_counts_exact() {
    run_during_restore(Fault::StopAndRestart, "exactly_once_v2");
}

#[test]
#[ignore = "freezes the real broker: run scripts/test.sh"]
fn a_frozen_broker_during_a_restore_loses_nothing_under_at_least_once() {
    run_during_restore(Fault::Freeze, "at_least_once");
}
