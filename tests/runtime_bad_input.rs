//! Bad input on the embedded broker: a value that cannot be read, a record a processor fails
//! on, a record too large for the producer (refused in `send`) and a header whose name is not
//! UTF-8. Under continue policies each is skipped and counted (the first two and the refused
//! one written to the dead-letter queue with Kafka Streams' error headers, through the
//! exactly-once producer) and the application keeps running; under the default production
//! policy the refused record stops the instance with an error naming the topic.

#![allow(unsafe_code)] // one call to librdkafka, to produce a header name that is not UTF-8

mod support;

use std::time::{Duration, Instant};

use kstreams::dead_letter::{
    HEADER_ERRORS_EXCEPTION, HEADER_ERRORS_MESSAGE, HEADER_ERRORS_OFFSET, HEADER_ERRORS_TOPIC,
};
use kstreams::embedded::EmbeddedKafka;
use kstreams::prelude::*;
use kstreams::processor::{Processor, ProcessorContext, ProcessorResult};
use kstreams::Record;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedHeaders, Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The largest record the application's producer accepts.
const MAX_BYTES: usize = 10_000;

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

/// Headers with one header whose name is the bytes `name`, which need not be UTF-8 (rdkafka's
/// builder only takes `&str` names).
fn headers_named(name: &[u8], value: &[u8]) -> OwnedHeaders {
    let headers = OwnedHeaders::new();
    let native = headers.as_borrowed() as *const BorrowedHeaders
        as *mut rdkafka::bindings::rd_kafka_headers_t;
    // SAFETY: an `OwnedHeaders` is librdkafka's header list, owned and writable; librdkafka
    // copies the name and value.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(
        err,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    headers
}

fn produce(kafka: &EmbeddedKafka, topic: &str, records: Vec<(Vec<u8>, Option<OwnedHeaders>)>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("producer");
    for (i, (value, headers)) in records.into_iter().enumerate() {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_slice());
        if let Some(h) = headers {
            record = record.headers(h);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back: value and headers (names as rdkafka reads them: UTF-8 here).
struct Read {
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Read {
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
}

/// Records read from partition 0 of `topic` until `count` arrived or `timeout` passed.
fn read(kafka: &EmbeddedKafka, topic: &str, count: usize, timeout: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", support::unique("reader"))
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && out.len() < count {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|Header { key, value }| {
                            (key.to_owned(), value.unwrap_or_default().to_vec())
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

struct App {
    kafka: EmbeddedKafka,
    input: String,
    output: String,
    dead_letters: String,
    _state: tempfile::TempDir,
    streams: KafkaStreams,
}

fn app(configure: impl FnOnce(StreamsConfig, &str) -> StreamsConfig) -> App {
    support::init_logs();
    let kafka = EmbeddedKafka::start().expect("embedded broker");
    let (input, output, dead_letters) = (
        support::unique("in"),
        support::unique("out"),
        support::unique("dlq"),
    );
    for t in [&input, &output, &dead_letters] {
        kafka.create_topic(t, 1).expect("topic");
    }
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
    let config = configure(
        StreamsConfig::new(&support::unique("bad-input"))
            .with_embedded(&kafka)
            .set("state.dir", state.path().display())
            .set("commit.interval.ms", 50)
            .set("producer.message.max.bytes", MAX_BYTES),
        &dead_letters,
    );
    let streams = KafkaStreams::new(builder.build().expect("build"), config).expect("instance");
    App {
        kafka,
        input,
        output,
        dead_letters,
        _state: state,
        streams,
    }
}

#[test]
fn bad_records_are_skipped_counted_and_dead_lettered_and_the_application_keeps_running() {
    let a = app(|c, dlq| {
        c.set("processing.guarantee", "exactly_once_v2")
            .set(
                "default.deserialization.exception.handler",
                "log-and-continue",
            )
            .set("processing.exception.handler", "log-and-continue")
            .set("default.production.exception.handler", "continue")
            .set("errors.deadletterqueue.topic.name", dlq)
    });
    produce(
        &a.kafka,
        &a.input,
        vec![
            (b"first".to_vec(), None),
            (vec![0xff, 0xfe, 0xfd], None),
            (b"poison".to_vec(), None),
            (
                b"odd header".to_vec(),
                Some(headers_named(&[b'h', 0xff, 0xfe], b"v")),
            ),
            (vec![b'x'; 5 * MAX_BYTES], None),
            (b"last".to_vec(), None),
        ],
    );
    a.streams.start().expect("start");

    let out = read(&a.kafka, &a.output, 3, Duration::from_secs(60));
    let values: Vec<String> = out
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert_eq!(values, ["first", "odd header", "last"]);
    assert_eq!(
        out[1].headers,
        [("h\u{fffd}\u{fffd}".to_string(), b"v".to_vec())],
        "the header whose name is not UTF-8 is kept, its name lossy"
    );

    let dead = read(&a.kafka, &a.dead_letters, 2, Duration::from_secs(30));
    assert_eq!(dead.len(), 2, "the unreadable and the failed record");
    assert_eq!(
        dead[0].value,
        [0xff, 0xfe, 0xfd],
        "the record as it was read"
    );
    assert_eq!(
        dead[0].header(HEADER_ERRORS_EXCEPTION),
        "StreamsError::Serde"
    );
    assert_eq!(dead[0].header(HEADER_ERRORS_TOPIC), a.input);
    assert_eq!(dead[0].header(HEADER_ERRORS_OFFSET), "1");
    assert_eq!(dead[1].value, b"poison");
    assert_eq!(
        dead[1].header(HEADER_ERRORS_EXCEPTION),
        "StreamsError::Processing"
    );
    assert!(dead[1]
        .header(HEADER_ERRORS_MESSAGE)
        .contains("`picky`: cannot digest poison"));
    assert_eq!(dead[1].header(HEADER_ERRORS_OFFSET), "2");

    support::eventually(Duration::from_secs(10), "the counts", || {
        let m = a.streams.metrics();
        let sum = |f: fn(&kstreams::streams_core::runtime::ThreadMetrics) -> u64| {
            m.threads.iter().map(f).sum::<u64>()
        };
        (
            sum(|t| t.skipped),
            sum(|t| t.processing_skipped),
            sum(|t| t.production_skipped),
            sum(|t| t.dead_lettered),
            sum(|t| t.lossy_header_names),
        ) == (1, 1, 1, 2, 1)
    });
    assert!(a.streams.error().is_none(), "{:?}", a.streams.error());
    assert_eq!(a.streams.state(), State::Running);
    assert!(a.streams.close(Duration::from_secs(30)));
}

#[test]
fn a_record_the_producer_refuses_stops_the_instance_by_default_naming_the_topic() {
    let a = app(|c, _| c);
    produce(
        &a.kafka,
        &a.input,
        vec![(b"first".to_vec(), None), (vec![b'x'; 5 * MAX_BYTES], None)],
    );
    a.streams.start().expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.streams.state() != State::Error {
        assert!(Instant::now() < deadline, "state {:?}", a.streams.state());
        std::thread::sleep(Duration::from_millis(50));
    }
    let cause = a.streams.error().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        cause.contains(&format!("`{}`", a.output))
            && cause.contains("default.production.exception.handler=continue"),
        "{cause}"
    );
    assert!(a.streams.close(Duration::from_secs(30)));
}
