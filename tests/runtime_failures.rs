//! Failures on a real broker: a processing error stops the instance in the Error state with its
//! cause (no hang, no crash loop); the production handler fails or skips records the broker
//! refuses. Ignored by a plain `cargo test`; `scripts/test.sh` runs them.

mod support;

use std::time::{Duration, Instant};

use kstreams::prelude::*;
use kstreams::processor::{Processor, ProcessorContext, ProcessorResult};
use kstreams::Record;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use support::{real_kafka, unique, Cluster, RealKafka};

fn produce(kafka: &RealKafka, topic: &str, values: &[Vec<u8>]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .expect("producer");
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(v.as_slice()),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn wait_for_state(streams: &KafkaStreams, wanted: State, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while streams.state() != wanted {
        assert!(
            Instant::now() < deadline,
            "state {:?} after {timeout:?}, wanted {wanted:?}",
            streams.state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Picky;

impl Processor<String, String, String, String> for Picky {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> ProcessorResult {
        if r.value == "poison" {
            return Err("cannot digest poison".into());
        }
        ctx.forward(r)
    }
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn a_processing_error_moves_the_instance_to_error_with_its_cause() {
    let kafka = real_kafka();
    let (input, output) = (unique("fail-in"), unique("fail-out"));
    kafka.create_topic(&input, 1);
    kafka.create_topic(&output, 1);
    produce(
        &kafka,
        &input,
        &[b"fine".to_vec(), b"poison".to_vec(), b"never".to_vec()],
    );
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(
            input.as_str(),
            Consumed::with(Serdes::string(), Serdes::string()),
        )
        .process(|| Picky, &[])
        .named("picky")
        .to(&output, Produced::with(Serdes::string(), Serdes::string()));
    let state = tempfile::tempdir().expect("state dir");
    let config = StreamsConfig::new(&unique("fail-app"))
        .set("bootstrap.servers", kafka.bootstrap())
        .set("state.dir", state.path().display());
    let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
    let transitions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = transitions.clone();
    streams.set_state_listener(move |new, _old| seen.lock().unwrap().push(new));
    streams.start().expect("start");
    wait_for_state(&streams, State::Error, Duration::from_secs(60));
    let cause = streams.error().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        cause.contains("task 0_0")
            && cause.contains("`picky`")
            && cause.contains("cannot digest poison"),
        "{cause}"
    );
    assert!(transitions.lock().unwrap().contains(&State::PendingError));
    assert!(
        streams.close(Duration::from_secs(30)),
        "a failed instance still closes promptly"
    );
    assert_eq!(streams.state(), State::Error, "and stays in Error");
}

#[test]
#[ignore = "needs a real Kafka broker: run scripts/test.sh"]
fn the_production_handler_fails_by_default_and_can_skip_refused_records() {
    let kafka = real_kafka();
    for skip in [false, true] {
        let (input, output) = (unique("big-in"), unique("small-out"));
        kafka.create_topic(&input, 1);
        // The output topic refuses records over 2 KiB.
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new()
                .set("bootstrap.servers", kafka.bootstrap())
                .create()
                .expect("admin");
        let topic =
            rdkafka::admin::NewTopic::new(&output, 1, rdkafka::admin::TopicReplication::Fixed(1))
                .set("max.message.bytes", "2048");
        futures::executor::block_on(
            admin.create_topics([&topic], &rdkafka::admin::AdminOptions::new()),
        )
        .expect("create")
        .into_iter()
        .for_each(|r| {
            r.expect("created");
        });
        support::wait_for_topic(&kafka.bootstrap(), &output, 1);
        produce(
            &kafka,
            &input,
            &[
                b"small".to_vec(),
                vec![b'x'; 100_000],
                b"small again".to_vec(),
            ],
        );

        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>(
                input.as_str(),
                Consumed::with(Serdes::string(), Serdes::string()),
            )
            .to(&output, Produced::with(Serdes::string(), Serdes::string()));
        let state = tempfile::tempdir().expect("state dir");
        let mut config = StreamsConfig::new(&unique("big-app"))
            .set("bootstrap.servers", kafka.bootstrap())
            .set("state.dir", state.path().display())
            .set("commit.interval.ms", 200)
            // One record per request, so the broker refuses only the large one.
            .set("producer.linger.ms", 0)
            .set("producer.batch.num.messages", 1)
            .set("producer.message.max.bytes", 1_000_000);
        if skip {
            config = config.set("default.production.exception.handler", "continue");
        }
        let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
        streams.start().expect("start");
        if skip {
            let deadline = Instant::now() + Duration::from_secs(60);
            while streams
                .metrics()
                .threads
                .iter()
                .map(|t| t.production_skipped)
                .sum::<u64>()
                == 0
            {
                assert!(
                    Instant::now() < deadline,
                    "the refused record was not skipped: {:?}",
                    streams.metrics()
                );
                assert!(streams.error().is_none(), "{:?}", streams.error());
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(streams.close(Duration::from_secs(30)));
            assert!(streams.error().is_none());
        } else {
            wait_for_state(&streams, State::Error, Duration::from_secs(60));
            let cause = streams.error().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                cause.contains(&output) && cause.contains("continue"),
                "{cause}"
            );
            assert!(streams.close(Duration::from_secs(30)));
        }
    }
}
