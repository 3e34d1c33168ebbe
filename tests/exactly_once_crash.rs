//! Exactly-once under crashes, on the real broker: instances of the `eos_test_client` example
//! (Kafka's `EosTestClient` topology) are killed with SIGKILL, some losing their state
//! directory, and restarted while input arrives; afterwards every output is checked record by
//! record against the input with a `read_committed` reader: no duplicate, no gap, no transaction
//! left open.
//!
//! - `exactly_once_survives_kill_9_and_lost_state`: kstreams' own verifier
//!   (`tests/support/eos.rs`);
//! - `kafka_streams_eos_verifier_accepts_kstreams_under_kill_9`: Kafka's `StreamsEosTest` (from
//!   the `kafka-streams` test jar on Maven Central) generates the input and verifies the output
//!   (`verify-complex` must print `ALL-RECORDS-DELIVERED`), as Kafka's `streams_eos_test.py` does.
//!
//! Short runs here; `KSTREAMS_EOS_SECONDS` lengthens them (say 600 for a soak with dozens of
//! kills). Ignored by a plain `cargo test`; `scripts/test.sh` runs them.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::eos::{verify, EosTopics, Generator, PARTITIONS};
use support::system::{
    chaos, delete_leftovers, dump, kafka_driver, kafka_tests_classpath, wait_for_exit, Instance,
};
use support::wordcount::wait_caught_up;
use support::{real_kafka, unique, Cluster, RealKafka};

/// How long input flows while instances are killed.
fn run_seconds(default: u64) -> u64 {
    std::env::var("KSTREAMS_EOS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client_args(kafka: &RealKafka, app: &str, prefix: &str) -> Vec<String> {
    [
        "--bootstrap-servers",
        &kafka.bootstrap(),
        "--application-id",
        app,
        "--topic-prefix",
        prefix,
        "--complex",
        "--commit-interval-ms",
        "2000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `java ... StreamsEosTest <props> <command>`.
fn streams_eos_test(classpath: &str, props: &Path, command: &str) -> Command {
    kafka_driver(classpath, "StreamsEosTest", props, command)
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn exactly_once_survives_kill_9_and_lost_state() {
    let kafka = real_kafka();
    let prefix = format!("{}-", unique("eos"));
    let topics = EosTopics {
        prefix: prefix.clone(),
        complex: true,
    };
    topics.create(&kafka);
    let app = unique("eos-app");
    let root = tempfile::tempdir().expect("state root");
    let args = client_args(&kafka, &app, &prefix);
    let mut instances: Vec<Instance> = (1..=3)
        .map(|i| Instance::new(&format!("instance-{i}"), root.path(), args.clone()))
        .collect();
    let started = Instant::now();
    instances[0].start();
    let generator = Generator::start(&kafka, &topics.name("data"), 2_000, 1_000);
    std::thread::sleep(Duration::from_secs(2));
    for i in &mut instances[1..] {
        i.start();
    }
    let seconds = run_seconds(45);
    let done = chaos(&mut instances, seconds, Duration::from_secs(7));
    let produced = generator.stop();

    // Everything must be processed: wait for the group to commit all input, then stop.
    wait_caught_up(
        &kafka,
        &app,
        &topics.inputs(),
        PARTITIONS,
        Duration::from_secs(240),
    );
    for i in &mut instances {
        i.stop();
    }
    let report = verify(&kafka, &topics);
    let starts: u32 = instances.iter().map(|i| i.starts).sum();
    eprintln!(
        "EOS crash run: {:.0} s, {starts} instance runs, {} SIGKILLs ({} with the state directory deleted), {} graceful restarts, {} input records ({produced} produced), {} output records, duplicates = {}, gaps = {}, mismatches = {}",
        started.elapsed().as_secs_f64(),
        done.kills,
        done.wipes,
        done.graceful,
        report.input_records,
        report.output_records,
        report.duplicates,
        report.gaps,
        report.mismatches,
    );
    assert_eq!(
        report.input_records as u64, produced,
        "all input is in `data`"
    );
    assert!(done.kills >= 3, "the schedule killed instances: {done:?}");
    if !report.ok() {
        eprintln!("exactly-once violated: {:#?}", report.problems);
    }
    assert!(
        report.ok(),
        "exactly-once violated: {:#?}\ninstance output:\n{}",
        report.problems,
        dump(&instances)
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn kafka_streams_eos_verifier_accepts_kstreams_under_kill_9() {
    let kafka = real_kafka();
    let classpath = kafka_tests_classpath();
    // Kafka's driver and verifier use these names and this group.
    let topics = EosTopics {
        prefix: String::new(),
        complex: true,
    };
    let app = "EosTest";
    delete_leftovers(&kafka, &topics.all(), app);
    topics.create(&kafka);

    let work = tempfile::tempdir().expect("work dir");
    let props = work.path().join("eos.properties");
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={}\nprocessing.guarantee=exactly_once_v2\n",
            kafka.bootstrap()
        ),
    )
    .expect("properties");
    let driver_log = std::fs::File::create(work.path().join("driver.log")).expect("driver log");
    let mut driver = streams_eos_test(&classpath, &props, "run")
        .stdout(driver_log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start Kafka's EOS driver");

    let args = client_args(&kafka, app, "");
    let mut instances: Vec<Instance> = (1..=3)
        .map(|i| Instance::new(&format!("client-{i}"), work.path(), args.clone()))
        .collect();
    for i in &mut instances {
        i.start();
        std::thread::sleep(Duration::from_secs(2));
    }
    let seconds = run_seconds(40);
    let done = chaos(&mut instances, seconds, Duration::from_secs(8));

    // Stop the driver (its shutdown hook stops producing), let the clients catch up, stop them.
    let _ = Command::new("kill")
        .args(["-TERM", &driver.id().to_string()])
        .status();
    let status = wait_for_exit(&mut driver, Duration::from_secs(120));
    let driver_out = std::fs::read_to_string(work.path().join("driver.log")).unwrap_or_default();
    // A JVM stopped by SIGTERM exits with 143 once its shutdown hooks (here: stop producing,
    // flush, report) have run.
    assert!(
        matches!(status.code(), Some(0 | 143)) && driver_out.contains("Producer closed"),
        "Kafka's EOS driver failed ({status:?}):\n{driver_out}"
    );
    wait_caught_up(
        &kafka,
        app,
        &topics.inputs(),
        PARTITIONS,
        Duration::from_secs(240),
    );
    for i in &mut instances {
        i.stop();
    }

    let verified = streams_eos_test(&classpath, &props, "verify-complex")
        .output()
        .expect("run Kafka's EOS verifier");
    let stdout = String::from_utf8_lossy(&verified.stdout);
    let produced = driver_out
        .lines()
        .filter_map(|l| l.strip_prefix("Producer closed: "))
        .next_back()
        .unwrap_or("?");
    eprintln!(
        "Kafka Streams EOS verifier: {} SIGKILLs ({} with the state directory deleted), {} graceful restarts; driver: {produced}; verdict: {}",
        done.kills,
        done.wipes,
        done.graceful,
        if stdout.contains("ALL-RECORDS-DELIVERED") { "ALL-RECORDS-DELIVERED" } else { "FAILED" },
    );
    assert!(
        stdout.contains("ALL-RECORDS-DELIVERED"),
        "Kafka's verifier did not accept the output:\n{}\n{}\nclients:\n{}",
        &stdout[stdout.len().saturating_sub(4000)..],
        String::from_utf8_lossy(&verified.stderr),
        dump(&instances)
    );
}
