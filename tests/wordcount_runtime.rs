//! The runtime on a real Apache Kafka broker: word count over 100k lines, a second instance
//! joining mid-stream, and restarts with and without local state. Counts must match the oracle
//! exactly in every case. Ignored by a plain `cargo test`; `scripts/test.sh` runs them.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kstreams::prelude::*;
use support::wordcount::{
    assert_counts_equal, oracle, produce_lines, read_counts, unreadable, wait_caught_up,
    word_count_topology,
};
use support::{real_kafka, unique, Cluster, RealKafka};

const PARTITIONS: i32 = 4;

struct App {
    id: String,
    input: String,
    output: String,
}

impl App {
    fn new(kafka: &RealKafka, name: &str) -> App {
        let app = App {
            id: unique(name),
            input: unique("lines"),
            output: unique("counts"),
        };
        kafka.create_topic(&app.input, PARTITIONS);
        kafka.create_topic(&app.output, PARTITIONS);
        app
    }

    fn instance(&self, kafka: &RealKafka, state_dir: &Path, threads: usize) -> KafkaStreams {
        let config = StreamsConfig::new(&self.id)
            .set("bootstrap.servers", kafka.bootstrap())
            .set("state.dir", state_dir.display())
            .set("num.stream.threads", threads)
            .set("commit.interval.ms", 500)
            .set(
                "default.deserialization.exception.handler",
                "log-and-continue",
            );
        let topology = word_count_topology(&self.input, &self.output).expect("topology");
        KafkaStreams::new(topology, config).expect("instance")
    }

    fn topics(&self) -> Vec<String> {
        vec![
            self.input.clone(),
            format!("{}-counts-repartition", self.id),
        ]
    }

    fn wait(&self, kafka: &RealKafka) {
        wait_caught_up(
            kafka,
            &self.id,
            &self.topics(),
            PARTITIONS,
            Duration::from_secs(300),
        );
    }

    fn changelog_records(&self, kafka: &RealKafka) -> i64 {
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap())
            .create()
            .expect("consumer");
        (0..PARTITIONS)
            .map(|p| {
                use rdkafka::consumer::Consumer;
                let (low, high) = consumer
                    .fetch_watermarks(
                        &format!("{}-counts-changelog", self.id),
                        p,
                        Duration::from_secs(10),
                    )
                    .expect("watermarks");
                high - low
            })
            .sum()
    }
}

fn wait_running(streams: &KafkaStreams, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while streams.state() != State::Running {
        assert!(streams.error().is_none(), "failed: {:?}", streams.error());
        assert!(
            Instant::now() < deadline,
            "not running after {timeout:?}: {:?}",
            streams.state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn word_count_of_100k_lines_matches_the_oracle() {
    init_logs();
    let kafka = real_kafka();
    let app = App::new(&kafka, "wc-100k");
    let lines = 100_000;
    produce_lines(&kafka, &app.input, 0..lines);
    let state = tempfile::tempdir().expect("state dir");
    let streams = app.instance(&kafka, state.path(), 2);
    let started = Instant::now();
    streams.start().expect("start");
    app.wait(&kafka);
    let elapsed = started.elapsed();
    let metrics = streams.metrics();
    assert!(streams.close(Duration::from_secs(60)), "closed in time");
    assert_eq!(streams.state(), State::NotRunning);

    let mut want = HashMap::new();
    oracle(0..lines, &mut want);
    assert_counts_equal(&read_counts(&kafka, &app.output, PARTITIONS), &want);
    assert_eq!(
        metrics.skipped(),
        unreadable(0..lines),
        "every line that is not UTF-8 is skipped and counted"
    );
    eprintln!(
        "word count: {lines} lines, {} records processed in {:.2} s ({:.0} records/s, 2 threads, 4 partitions)",
        metrics.processed(),
        elapsed.as_secs_f64(),
        metrics.processed() as f64 / elapsed.as_secs_f64()
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn a_second_instance_joining_mid_stream_takes_over_tasks_and_counts_stay_exact() {
    init_logs();
    let kafka = real_kafka();
    let app = App::new(&kafka, "wc-join");
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir a"),
        tempfile::tempdir().expect("dir b"),
    );
    let a = app.instance(&kafka, dir_a.path(), 1);
    a.start().expect("start a");
    produce_lines(&kafka, &app.input, 0..40_000);
    app.wait(&kafka);
    wait_running(&a, Duration::from_secs(60));
    assert_eq!(
        a.metrics().threads[0].tasks,
        8,
        "one instance owns all 8 tasks"
    );

    // The second instance joins while input keeps arriving.
    let b = app.instance(&kafka, dir_b.path(), 1);
    let joined = Instant::now();
    b.start().expect("start b");
    produce_lines(&kafka, &app.input, 40_000..60_000);
    wait_running(&b, Duration::from_secs(120));
    let handover = joined.elapsed();
    produce_lines(&kafka, &app.input, 60_000..80_000);
    app.wait(&kafka);
    wait_running(&a, Duration::from_secs(60));

    let (ma, mb) = (a.metrics(), b.metrics());
    assert!(
        mb.threads[0].tasks > 0 && ma.threads[0].tasks > 0,
        "both own tasks: {ma:?} / {mb:?}"
    );
    assert_eq!(ma.threads[0].tasks + mb.threads[0].tasks, 8);
    assert!(
        mb.restored() > 0,
        "the newcomer restored the state of the tasks it took over"
    );
    assert!(mb.processed() > 0, "and processed records");
    assert!(a.close(Duration::from_secs(60)) && b.close(Duration::from_secs(60)));

    let mut want = HashMap::new();
    oracle(0..80_000, &mut want);
    assert_counts_equal(&read_counts(&kafka, &app.output, PARTITIONS), &want);
    eprintln!(
        "join: the second instance ran its tasks {:.2} s after it started; it restored {} changelog records",
        handover.as_secs_f64(),
        mb.restored()
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn restarts_restore_from_checkpoint_and_tail_or_from_scratch() {
    init_logs();
    let kafka = real_kafka();
    let app = App::new(&kafka, "wc-restart");
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir a"),
        tempfile::tempdir().expect("dir b"),
    );

    // Instance A counts the first part and stops cleanly: its checkpoints cover its stores.
    let a = app.instance(&kafka, dir_a.path(), 1);
    a.start().expect("start a");
    produce_lines(&kafka, &app.input, 0..20_000);
    app.wait(&kafka);
    assert!(a.close(Duration::from_secs(60)));
    let checkpointed = app.changelog_records(&kafka);

    // Instance B (other state) counts more: the changelogs grow past A's checkpoints.
    let b = app.instance(&kafka, dir_b.path(), 1);
    b.start().expect("start b");
    produce_lines(&kafka, &app.input, 20_000..30_000);
    app.wait(&kafka);
    assert!(b.close(Duration::from_secs(60)));
    let total = app.changelog_records(&kafka);
    assert!(total > checkpointed);

    // A comes back with its state directory: checkpoint plus the changelog tail.
    let a = app.instance(&kafka, dir_a.path(), 1);
    let started = Instant::now();
    a.start().expect("restart a");
    wait_running(&a, Duration::from_secs(120));
    let tail_restore = started.elapsed();
    let restored = a.metrics().restored();
    assert!(
        restored > 0,
        "A restored the tail written while it was away"
    );
    assert!(
        restored as i64 <= total - checkpointed,
        "A restored only the tail: {restored} records of {total} (checkpoint at {checkpointed})"
    );
    produce_lines(&kafka, &app.input, 30_000..40_000);
    app.wait(&kafka);
    assert!(a.close(Duration::from_secs(60)));

    // A again, without its state directory: everything is restored from the changelogs.
    a.cleanup().expect("cleanup");
    let a = app.instance(&kafka, dir_a.path(), 1);
    let total = app.changelog_records(&kafka);
    let started = Instant::now();
    a.start().expect("restart a without state");
    wait_running(&a, Duration::from_secs(120));
    let full_restore = started.elapsed();
    let restored_fully = a.metrics().restored();
    assert_eq!(
        restored_fully as i64, total,
        "a full restore reads every changelog record"
    );
    produce_lines(&kafka, &app.input, 40_000..50_000);
    app.wait(&kafka);
    assert!(a.close(Duration::from_secs(60)));

    let mut want = HashMap::new();
    oracle(0..50_000, &mut want);
    assert_counts_equal(&read_counts(&kafka, &app.output, PARTITIONS), &want);
    eprintln!(
        "restart: tail restore of {restored} records in {:.2} s; full restore of {restored_fully} records in {:.2} s ({:.0} records/s, start-up included)",
        tail_restore.as_secs_f64(),
        full_restore.as_secs_f64(),
        restored_fully as f64 / full_restore.as_secs_f64()
    );
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn a_missing_source_topic_is_a_clear_error_before_anything_runs() {
    let kafka = real_kafka();
    let missing = unique("no-such-topic");
    let topology = word_count_topology(&missing, "whatever").expect("topology");
    let state = tempfile::tempdir().expect("state dir");
    let config = StreamsConfig::new(&unique("wc-missing"))
        .set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.path().display());
    let streams = KafkaStreams::new(topology, config).expect("instance");
    let err = streams.start().expect_err("a missing topic fails start()");
    assert!(err.to_string().contains(&missing), "{err}");
    assert_eq!(streams.state(), State::Created);
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn exactly_once_v2_word_count_matches_the_oracle() {
    init_logs();
    let kafka = real_kafka();
    let app = App::new(&kafka, "wc-eos");
    let lines = 30_000;
    produce_lines(&kafka, &app.input, 0..lines);
    let state = tempfile::tempdir().expect("state dir");
    let config = StreamsConfig::new(&app.id)
        .set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.path().display())
        .set("num.stream.threads", 2)
        .set("processing.guarantee", "exactly_once_v2")
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        );
    let streams = KafkaStreams::new(
        word_count_topology(&app.input, &app.output).expect("topology"),
        config,
    )
    .expect("instance");
    let started = Instant::now();
    streams.start().expect("start");
    app.wait(&kafka);
    let elapsed = started.elapsed();
    let processed = streams.metrics().processed();
    assert!(streams.close(Duration::from_secs(60)));
    assert!(streams.error().is_none(), "{:?}", streams.error());

    let mut want = HashMap::new();
    oracle(0..lines, &mut want);
    let got =
        support::wordcount::read_counts_with(&kafka, &app.output, PARTITIONS, "read_committed");
    assert_counts_equal(&got, &want);
    eprintln!(
        "exactly-once: {processed} records in {:.2} s ({:.0} records/s, 2 threads, commit every 100 ms)",
        elapsed.as_secs_f64(),
        processed as f64 / elapsed.as_secs_f64()
    );
}

/// Another producer takes over a running instance's transactional id mid-run (what a zombie or
/// a misconfigured twin would do): the instance's producer is fenced. The thread replaces it
/// (fencing the intruder back), resumes from the last commit, and the counts stay exact.
#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn a_fenced_producer_is_replaced_and_exactly_once_counts_stay_exact() {
    use rdkafka::producer::{BaseProducer, Producer};
    init_logs();
    let kafka = real_kafka();
    let app = App::new(&kafka, "wc-fenced");
    produce_lines(&kafka, &app.input, 0..10_000);
    let state = tempfile::tempdir().expect("state dir");
    let config = StreamsConfig::new(&app.id)
        .set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.path().display())
        .set("processing.guarantee", "exactly_once_v2")
        .set("commit.interval.ms", 200)
        .set(
            "default.deserialization.exception.handler",
            "log-and-continue",
        );
    let streams = KafkaStreams::new(
        word_count_topology(&app.input, &app.output).expect("topology"),
        config,
    )
    .expect("instance");
    streams.start().expect("start");
    wait_running(&streams, Duration::from_secs(60));
    // The instance's identity is recorded in its state directory; its only thread's
    // transactional id ends in -1.
    let process = std::fs::read_to_string(state.path().join(&app.id).join("kstreams-process-id"))
        .expect("process id");
    let intruder: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set(
            "transactional.id",
            format!("{}-{}-1", app.id, process.trim()),
        )
        .create()
        .expect("intruder");
    intruder
        .init_transactions(Duration::from_secs(30))
        .expect("the intruder fences the instance's producer");
    produce_lines(&kafka, &app.input, 10_000..20_000);
    app.wait(&kafka);
    let recoveries: u64 = streams.metrics().threads.iter().map(|t| t.recoveries).sum();
    assert!(streams.close(Duration::from_secs(60)));
    assert!(streams.error().is_none(), "{:?}", streams.error());
    assert!(
        recoveries >= 1,
        "the fenced producer was noticed and replaced"
    );

    let mut want = HashMap::new();
    oracle(0..20_000, &mut want);
    let got =
        support::wordcount::read_counts_with(&kafka, &app.output, PARTITIONS, "read_committed");
    assert_counts_equal(&got, &want);
    drop(intruder);
}
