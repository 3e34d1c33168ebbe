//! The stream thread's failure paths, driven on the embedded broker (no Kafka needed) with
//! faults injected: a panic in user code (failing the record, never committing it; or skipped
//! by the processing handler), a thread replaced by the uncaught exception handler, retriable and
//! fatal transaction errors (a fenced producer is replaced and processing resumes), a consumer
//! that stops fetching (replaced by the stall watchdog; a caught-up one is left alone), a
//! restoration that stops fetching (its restore consumer replaced), and an
//! at-least-once commit overlapping with processing while the broker leading the output is slow
//! (its offsets wait for the outputs they cover).
//!
//! The embedded cluster has no transaction isolation, so these check that the application keeps
//! going and loses nothing; exactness under exactly-once is checked on the real broker
//! (`exactly_once_crash.rs`).

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstreams::embedded::{EmbeddedKafka, RDKafkaApiKey, RDKafkaRespErr};
use kstreams::handlers::StreamThreadExceptionResponse;
use kstreams::prelude::*;
use kstreams::processor::{Processor, ProcessorContext, ProcessorResult};
use kstreams::Record;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn produce(kafka: &EmbeddedKafka, topic: &str, values: &[&str]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("producer");
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(v.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Values read from `topic` (one partition) until `enough` holds or `timeout` passes.
fn read_values(
    kafka: &EmbeddedKafka,
    topic: &str,
    timeout: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", support::unique("reader"))
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !enough(&values) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    values
}

fn committed_offset(kafka: &EmbeddedKafka, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", group)
        .create()
        .expect("offsets client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed.elements()[0].offset();
    match offset {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// A thread metric summed over the instance's stream threads.
fn thread_total(
    streams: &KafkaStreams,
    metric: impl Fn(&kstreams::streams_core::runtime::ThreadMetrics) -> u64,
) -> u64 {
    streams.metrics().threads.iter().map(metric).sum()
}

/// Waits (at most `timeout`) until every value of [`INPUT`] is in `a`'s output, and checks that
/// nothing else is.
fn assert_all_input_out(a: &App, timeout: Duration) {
    let out = read_values(&a.kafka, &a.output, timeout, |v| {
        INPUT.iter().all(|x| v.iter().any(|y| y == x))
    });
    let got: BTreeSet<&str> = out.iter().map(String::as_str).collect();
    assert_eq!(got, INPUT.iter().copied().collect::<BTreeSet<_>>());
}

/// Closes `streams` and checks that it ended NotRunning (the error, if any, in the message).
fn close_cleanly(streams: &KafkaStreams) {
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(streams.state(), State::NotRunning, "{:?}", streams.error());
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forwards values; panics (or, with `error`, fails) on "poison" while `armed`.
struct Picky {
    armed: Arc<AtomicBool>,
    error: bool,
}

impl Processor<String, String, String, String> for Picky {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> ProcessorResult {
        if r.value == "poison" && self.armed.load(Ordering::SeqCst) {
            if self.error {
                self.armed.store(false, Ordering::SeqCst);
                return Err("cannot digest poison".into());
            }
            panic!("choked on poison");
        }
        ctx.forward(r)
    }
}

struct App {
    kafka: EmbeddedKafka,
    input: String,
    output: String,
    id: String,
    _state: tempfile::TempDir,
    streams: KafkaStreams,
}

fn app(
    guarantee: &str,
    error: bool,
    armed: Arc<AtomicBool>,
    configure: impl FnOnce(StreamsConfig) -> StreamsConfig,
) -> App {
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    app_on(kafka, guarantee, error, armed, configure)
}

fn app_on(
    kafka: EmbeddedKafka,
    guarantee: &str,
    error: bool,
    armed: Arc<AtomicBool>,
    configure: impl FnOnce(StreamsConfig) -> StreamsConfig,
) -> App {
    support::init_logs();
    let (input, output, id) = (
        support::unique("in"),
        support::unique("out"),
        support::unique("app"),
    );
    kafka.create_topic(&input, 1).expect("topic");
    kafka.create_topic(&output, 1).expect("topic");
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(
            input.as_str(),
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .process(
            move || Picky {
                armed: armed.clone(),
                error,
            },
            &[],
        )
        .named("picky")
        .to(&output, Produced::with(Serdes::string(), Serdes::string()));
    let state = tempfile::tempdir().expect("state dir");
    let config = configure(
        StreamsConfig::new(&id)
            .with_embedded(&kafka)
            .set("state.dir", state.path().display())
            .set("processing.guarantee", guarantee)
            .set("commit.interval.ms", 50),
    );
    let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
    App {
        kafka,
        input,
        output,
        id,
        _state: state,
        streams,
    }
}

const INPUT: [&str; 10] = ["a", "b", "c", "d", "e", "poison", "f", "g", "h", "i"];

#[test]
fn a_panic_in_user_code_fails_its_record_and_nothing_of_it_is_committed() {
    let a = app(
        "at_least_once",
        false,
        Arc::new(AtomicBool::new(true)),
        |c| c,
    );
    produce(&a.kafka, &a.input, &INPUT);
    a.streams.start().expect("start");
    wait_for("the Error state", Duration::from_secs(60), || {
        a.streams.state() == State::Error
    });
    let cause = a.streams.error().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        cause.contains("`picky`") && cause.contains("panicked: choked on poison"),
        "{cause}"
    );
    assert!(a.streams.close(Duration::from_secs(30)));
    let committed = committed_offset(&a.kafka, &a.id, &a.input);
    assert!(
        committed.is_none_or(|o| o <= 5),
        "the offset of the record that panicked (5) must not be committed past: {committed:?}"
    );
    let out = read_values(&a.kafka, &a.output, Duration::from_secs(3), |_| false);
    assert!(
        !out.iter()
            .any(|v| ["f", "g", "h", "i"].contains(&v.as_str())),
        "nothing after the poison is processed: {out:?}"
    );
}

#[test]
fn the_processing_handler_can_skip_a_record_whose_processor_panicked() {
    let a = app(
        "exactly_once_v2",
        false,
        Arc::new(AtomicBool::new(true)),
        |c| c.set("processing.exception.handler", "log-and-continue"),
    );
    produce(&a.kafka, &a.input, &INPUT);
    a.streams.start().expect("start");
    let out = read_values(&a.kafka, &a.output, Duration::from_secs(60), |v| {
        v.len() >= 9
    });
    assert_eq!(
        out,
        INPUT
            .iter()
            .filter(|v| **v != "poison")
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
    );
    wait_for("the skip to be counted", Duration::from_secs(10), || {
        thread_total(&a.streams, |t| t.processing_skipped) == 1
    });
    assert!(a.streams.error().is_none());
    assert!(a.streams.close(Duration::from_secs(30)));
}

#[test]
fn a_replaced_thread_resumes_from_the_last_commit_and_the_instance_keeps_running() {
    let armed = Arc::new(AtomicBool::new(true));
    let a = app("at_least_once", true, armed.clone(), |c| c);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let states = seen.clone();
    a.streams
        .set_state_listener(move |new, _| states.lock().expect("states").push(new));
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    a.streams
        .set_uncaught_exception_handler(move |error| {
            assert!(
                error.to_string().contains("cannot digest poison"),
                "{error}"
            );
            counted.fetch_add(1, Ordering::SeqCst);
            StreamThreadExceptionResponse::ReplaceThread
        })
        .expect("handler");
    produce(&a.kafka, &a.input, &INPUT);
    a.streams.start().expect("start");
    let out = read_values(&a.kafka, &a.output, Duration::from_secs(60), |v| {
        v.iter().any(|x| x == "i")
    });
    let got: BTreeSet<&str> = out.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = INPUT.iter().copied().collect();
    assert_eq!(
        got, want,
        "every record, the failed one included, once the thread is replaced"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!armed.load(Ordering::SeqCst));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    assert!(
        !seen.lock().expect("states").contains(&State::Error),
        "a replaced thread does not stop the instance"
    );
    assert!(a.streams.close(Duration::from_secs(30)));
    assert_eq!(a.streams.state(), State::NotRunning);
}

/// Runs an exactly-once pass-through after `inject` made the cluster fail its next requests;
/// checks that every input comes out and the instance never fails, and returns the recoveries
/// it counted.
fn survives(inject: impl FnOnce(&EmbeddedKafka)) -> u64 {
    let a = app(
        "exactly_once_v2",
        false,
        Arc::new(AtomicBool::new(false)),
        |c| c,
    );
    // The cluster fails the next requests of any client: the input goes in first.
    produce(&a.kafka, &a.input, &INPUT);
    inject(&a.kafka);
    a.streams.start().expect("start");
    assert_all_input_out(&a, Duration::from_secs(90));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    let recoveries = thread_total(&a.streams, |t| t.recoveries);
    close_cleanly(&a.streams);
    recoveries
}

#[test]
fn retriable_transaction_errors_are_retried_without_failing() {
    survives(|kafka| {
        kafka
            .fail_requests(
                RDKafkaApiKey::EndTxn,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS,
                ],
            )
            .expect("inject");
    });
}

#[test]
fn a_fenced_producer_is_replaced_and_processing_resumes() {
    let recoveries = survives(|kafka| {
        kafka
            .fail_requests(
                RDKafkaApiKey::Produce,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
            )
            .expect("inject");
    });
    assert!(recoveries >= 1, "the fenced producer was replaced");
}

#[test]
fn an_abortable_transaction_error_rewinds_and_processing_resumes() {
    let recoveries = survives(|kafka| {
        kafka
            .fail_requests(
                RDKafkaApiKey::AddPartitionsToTxn,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
            )
            .expect("inject");
    });
    assert!(
        recoveries >= 1,
        "the transaction was aborted and the task revived"
    );
}

/// librdkafka's `send_offsets_to_transaction` can block far past its timeout while the group
/// coordinator is unreachable (librdkafka#5456); against a real broker, a frozen broker left it
/// blocked for good. The thread gives such a commit up once the call has overrun its timeout by
/// a margin, replaces the producer (which fences the stuck one) and carries on; once the
/// coordinator is back, every record comes out and the instance never failed.
#[test]
fn a_commit_stuck_in_the_kafka_client_is_given_up_and_the_producer_replaced() {
    // Two brokers: the one-partition topics live on broker 1, which also coordinates the
    // transactions; broker 2 coordinates the group and is the one taken down.
    let kafka = EmbeddedKafka::with_brokers(2).expect("embedded cluster");
    let a = app_on(
        kafka,
        "exactly_once_v2",
        false,
        Arc::new(AtomicBool::new(false)),
        |c| c,
    );
    // A known process id makes the producer's transactional id known in advance.
    let app_dir = a._state.path().join(&a.id);
    std::fs::create_dir_all(&app_dir).expect("app dir");
    std::fs::write(app_dir.join("kstreams-process-id"), "stuck-test").expect("process id");
    a.kafka
        .set_group_coordinator(&a.id, 2)
        .expect("group coordinator");
    a.kafka
        .set_transaction_coordinator(&format!("{}-stuck-test-1", a.id), 1)
        .expect("transaction coordinator");
    let (first, rest) = INPUT.split_at(4);
    let (second, third) = rest.split_at(3);
    produce(&a.kafka, &a.input, first);
    a.streams.start().expect("start");
    read_values(&a.kafka, &a.output, Duration::from_secs(60), |v| {
        first.iter().all(|x| v.iter().any(|y| y == x))
    });

    a.kafka.broker_down(2).expect("group coordinator down");
    produce(&a.kafka, &a.input, second);
    // The commit of the second half starts within a second or so and sticks; it is given up
    // 15 s past the call's own 15 s timeout. Without that, the call would only return once the
    // coordinator is back, and no recovery would be counted.
    std::thread::sleep(Duration::from_secs(45));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    a.kafka.broker_up(2).expect("group coordinator up");
    // The new producer carries on: records sent after the outage come out too.
    produce(&a.kafka, &a.input, third);

    assert_all_input_out(&a, Duration::from_secs(90));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    wait_for(
        "the given-up commit to be counted as a recovery",
        Duration::from_secs(60),
        || thread_total(&a.streams, |t| t.recoveries) >= 1,
    );
    // The consumer had no coordinator for longer than `stall.timeout.ms`, but a new client could
    // not reach it either: an outage, not a stuck consumer.
    assert_eq!(thread_total(&a.streams, |t| t.consumers_replaced), 0);
    close_cleanly(&a.streams);
}

/// A consumer that stops fetching a partition with records waiting (after a broker fault,
/// librdkafka can leave a partition with no leader for good: librdkafka#5430) is replaced: the
/// thread rejoins with a new consumer and resumes from the last commit. Here the cluster fails
/// every fetch for a while; its end offsets stay readable, so the watchdog sees records waiting.
#[test]
fn a_consumer_that_stops_fetching_is_replaced_and_nothing_is_lost() {
    let a = app(
        "at_least_once",
        false,
        Arc::new(AtomicBool::new(false)),
        |c| c.set("stall.timeout.ms", 2000),
    );
    let (first, second) = INPUT.split_at(5);
    produce(&a.kafka, &a.input, first);
    a.streams.start().expect("start");
    read_values(&a.kafka, &a.output, Duration::from_secs(60), |v| {
        first.iter().all(|x| v.iter().any(|y| y == x))
    });
    // Each fetch takes one error, and a failed fetch backs off 500 ms: about 20 s of failures.
    a.kafka
        .fail_requests(
            RDKafkaApiKey::Fetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 40],
        )
        .expect("inject");
    produce(&a.kafka, &a.input, second);
    wait_for(
        "the stalled consumer to be replaced",
        Duration::from_secs(60),
        || thread_total(&a.streams, |t| t.consumers_replaced) >= 1,
    );
    assert_all_input_out(&a, Duration::from_secs(90));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    close_cleanly(&a.streams);
}

/// A restoration whose restore consumer reads nothing for `stall.timeout.ms`, with records left
/// to read, gets new clients and completes, each partition resuming where it stood: the
/// restored counts are the first instance's. Here the cluster fails every fetch for a while as
/// the second instance starts restoring.
#[test]
fn a_restoration_that_stops_fetching_gets_a_new_restore_consumer() {
    support::init_logs();
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    let (input, output, id) = (
        support::unique("in"),
        support::unique("out"),
        support::unique("app"),
    );
    kafka.create_topic(&input, 1).expect("topic");
    kafka.create_topic(&output, 1).expect("topic");
    let instance = |state: &std::path::Path| {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>(
                input.as_str(),
                Consumed::with(Serdes::string(), Serdes::string()),
            )
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("counts"))
            .to_stream()
            .map_values(|c: Option<i64>| c.map_or_else(String::new, |c| c.to_string()))
            .to(&output, Produced::with(Serdes::string(), Serdes::string()));
        let config = StreamsConfig::new(&id)
            .with_embedded(&kafka)
            .set("state.dir", state.display())
            .set("commit.interval.ms", 50)
            .set("statestore.cache.max.bytes", 0)
            .set("stall.timeout.ms", 2000);
        KafkaStreams::new(builder.build().expect("build"), config).expect("instance")
    };
    // Keys k0..k499, once each: 500 changelog records.
    let values: Vec<String> = (0..500).map(|i| format!("v{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    produce(&kafka, &input, &refs);
    let first_state = tempfile::tempdir().expect("state dir");
    let first = instance(first_state.path());
    first.start().expect("start");
    read_values(&kafka, &output, Duration::from_secs(60), |v| v.len() >= 500);
    close_cleanly(&first);

    kafka
        .fail_requests(
            RDKafkaApiKey::Fetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 40],
        )
        .expect("inject");
    let second_state = tempfile::tempdir().expect("state dir");
    let second = instance(second_state.path());
    second.start().expect("start");
    wait_for("the restoration to finish", Duration::from_secs(90), || {
        second.state() == State::Running && second.metrics().restored() >= 500
    });
    assert!(
        thread_total(&second, |t| t.restore_consumers_replaced) >= 1,
        "the stalled restoration got a new restore consumer"
    );
    // k0 again: counted on top of the restored count.
    produce(&kafka, &input, &["again"]);
    let out = read_values(&kafka, &output, Duration::from_secs(60), |v| {
        v.iter().any(|x| x == "2")
    });
    assert!(out.iter().any(|x| x == "2"), "k0 counted twice: {out:?}");
    assert!(second.error().is_none(), "{:?}", second.error());
    close_cleanly(&second);
}

/// The watchdog leaves a caught-up consumer alone: an idle partition's position stands still
/// too, but nothing waits past it.
#[test]
fn a_caught_up_consumer_is_not_replaced() {
    let a = app(
        "at_least_once",
        false,
        Arc::new(AtomicBool::new(false)),
        |c| c.set("stall.timeout.ms", 1000),
    );
    let (first, _) = INPUT.split_at(5);
    produce(&a.kafka, &a.input, first);
    a.streams.start().expect("start");
    read_values(&a.kafka, &a.output, Duration::from_secs(60), |v| {
        first.iter().all(|x| v.iter().any(|y| y == x))
    });
    // Several timeouts of standing still, each one probed.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(thread_total(&a.streams, |t| t.consumers_replaced), 0);
    assert_eq!(thread_total(&a.streams, |t| t.recoveries), 0);
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    close_cleanly(&a.streams);
}

#[test]
fn an_at_least_once_commit_waits_for_its_outputs_to_be_acknowledged() {
    // Two brokers: broker 2 leads the output topic and answers slowly; broker 1 leads the input
    // topic and coordinates the group, so offsets could be committed at once. The commit goes
    // on in the background while the thread keeps processing, but its input offsets must not
    // reach Kafka before the outputs of the records they cover are acknowledged.
    let kafka = EmbeddedKafka::with_brokers(2).expect("embedded cluster");
    let a = app_on(
        kafka,
        "at_least_once",
        false,
        Arc::new(AtomicBool::new(false)),
        |c| c,
    );
    a.kafka
        .set_partition_leader(&a.input, 0, 1)
        .expect("input leader");
    a.kafka
        .set_partition_leader(&a.output, 0, 2)
        .expect("output leader");
    a.kafka
        .set_group_coordinator(&a.id, 1)
        .expect("group coordinator");
    let (first, second) = INPUT.split_at(4);
    produce(&a.kafka, &a.input, first);
    a.streams.start().expect("start");
    wait_for(
        "the first records' offsets",
        Duration::from_secs(60),
        || committed_offset(&a.kafka, &a.id, &a.input) == Some(first.len() as i64),
    );

    let slow = Duration::from_secs(6);
    a.kafka.set_round_trip_time(2, slow).expect("slow broker");
    let delayed = Instant::now();
    produce(&a.kafka, &a.input, second);
    // Commits are due every 50 ms; none may cover the second records before their outputs
    // are acknowledged, which takes at least the round trip.
    while delayed.elapsed() < slow - Duration::from_secs(2) {
        let committed = committed_offset(&a.kafka, &a.id, &a.input);
        assert_eq!(
            committed,
            Some(first.len() as i64),
            "offsets committed before the outputs they cover were acknowledged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kafka
        .set_round_trip_time(2, Duration::ZERO)
        .expect("broker back to speed");
    wait_for(
        "the second records' offsets",
        Duration::from_secs(60),
        || committed_offset(&a.kafka, &a.id, &a.input) == Some(INPUT.len() as i64),
    );
    assert_all_input_out(&a, Duration::from_secs(30));
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    close_cleanly(&a.streams);
}

#[test]
fn shutdown_application_stops_every_instance() {
    support::init_logs();
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    let (input, output, id) = (
        support::unique("in"),
        support::unique("out"),
        support::unique("app"),
    );
    kafka.create_topic(&input, 2).expect("topic");
    kafka.create_topic(&output, 2).expect("topic");
    let instance = |state: &std::path::Path| {
        let builder = StreamsBuilder::new();
        let armed = Arc::new(AtomicBool::new(true));
        builder
            .stream::<String, String>(
                input.as_str(),
                Consumed::with(Serdes::string(), Serdes::string()),
            )
            .process(
                move || Picky {
                    armed: armed.clone(),
                    error: true,
                },
                &[],
            )
            .named("picky")
            .to(&output, Produced::with(Serdes::string(), Serdes::string()));
        let config = StreamsConfig::new(&id)
            .with_embedded(&kafka)
            .set("state.dir", state.display())
            .set("commit.interval.ms", 50);
        let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
        streams
            .set_uncaught_exception_handler(|_| StreamThreadExceptionResponse::ShutdownApplication)
            .expect("handler");
        streams
    };
    let (state_a, state_b) = (
        tempfile::tempdir().expect("state"),
        tempfile::tempdir().expect("state"),
    );
    let (a, b) = (instance(state_a.path()), instance(state_b.path()));
    a.start().expect("start a");
    b.start().expect("start b");
    wait_for("both running", Duration::from_secs(60), || {
        a.state() == State::Running && b.state() == State::Running
    });
    produce(&kafka, &input, &INPUT);
    wait_for("both instances to stop", Duration::from_secs(60), || {
        a.state() == State::Error && b.state() == State::Error
    });
    let causes: Vec<String> = [&a, &b]
        .iter()
        .map(|s| s.error().map(|e| e.to_string()).unwrap_or_default())
        .collect();
    assert!(
        causes.iter().any(|c| c.contains("cannot digest poison")),
        "{causes:?}"
    );
    assert!(
        causes
            .iter()
            .any(|c| c.contains("the application was shut down by instance")),
        "the other instance was told: {causes:?}"
    );
    assert!(a.close(Duration::from_secs(30)) && b.close(Duration::from_secs(30)));
}
