//! The dead-letter queue (`errors.deadletterqueue.topic.name`) in the test driver: records the
//! deserialization and processing handlers judge reach it as they were read, with Kafka Streams'
//! error headers; the handlers' decisions and counts are unchanged.

use streams_core::dead_letter::{
    HEADER_ERRORS_EXCEPTION, HEADER_ERRORS_MESSAGE, HEADER_ERRORS_OFFSET, HEADER_ERRORS_PARTITION,
    HEADER_ERRORS_STACKTRACE, HEADER_ERRORS_TOPIC,
};
use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::{Headers, Record};
use streams_core::testing::TestRecord;
use streams_dsl::prelude::*;

type R = streams_core::Result<()>;

fn header(r: &TestRecord<Vec<u8>, Vec<u8>>, key: &str) -> String {
    let value = r.headers.last(key).flatten().unwrap_or_default();
    String::from_utf8_lossy(value).into_owned()
}

struct Digest;

impl Processor<String, String, String, String> for Digest {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> ProcessorResult {
        match r.value.as_str() {
            "poison" => Err("cannot digest poison".into()),
            "panic" => panic!("lost my head"),
            _ => {
                let upper = r.value.to_uppercase();
                ctx.forward(r.with_value(upper))
            }
        }
    }
}

/// `in` (String, String) mapped to `out`, failing on `"poison"` and panicking on `"panic"`.
fn topology() -> streams_core::Result<streams_core::topology::Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .process(|| Digest, &[])
        .named("digest")
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build()
}

fn config(handler_key: &str, handler: &str) -> StreamsConfig {
    StreamsConfig::new("dlq")
        .set(handler_key, handler)
        .set("errors.deadletterqueue.topic.name", "dead-letters")
}

#[test]
fn unreadable_records_reach_the_dead_letter_queue_as_read() -> R {
    let d = TopologyTestDriver::new(
        topology()?,
        config(
            "default.deserialization.exception.handler",
            "log-and-continue",
        ),
    )?;
    d.pipe_raw("in", Some(b"k1".to_vec()), Some(vec![0xff, 0xfe]), 7)?;
    d.pipe_raw("in", Some(b"k2".to_vec()), Some(b"fine".to_vec()), 8)?;
    let out = d.create_output_topic("out", Serdes::string(), Serdes::string());
    assert_eq!(out.read_values_to_list()?, vec!["FINE".to_string()]);
    let dlq = d.create_output_topic("dead-letters", Serdes::bytes(), Serdes::bytes());
    let records = dlq.read_records_to_list()?;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (r.key.as_slice(), r.value.as_slice()),
        (&b"k1"[..], &[0xff, 0xfe][..])
    );
    assert_eq!(r.timestamp, 7);
    assert_eq!(header(r, HEADER_ERRORS_EXCEPTION), "StreamsError::Serde");
    assert!(header(r, HEADER_ERRORS_MESSAGE).contains("the value of in-0@0"));
    assert!(header(r, HEADER_ERRORS_STACKTRACE).contains("caused by:"));
    assert_eq!(header(r, HEADER_ERRORS_TOPIC), "in");
    assert_eq!(header(r, HEADER_ERRORS_PARTITION), "0");
    assert_eq!(header(r, HEADER_ERRORS_OFFSET), "0");
    let m = d.metrics();
    assert_eq!((m.skipped, m.dead_lettered), (1, 1));
    Ok(())
}

#[test]
fn records_a_processor_failed_or_panicked_on_reach_it_with_their_headers() -> R {
    let d = TopologyTestDriver::new(
        topology()?,
        config("processing.exception.handler", "log-and-continue"),
    )?;
    let input = d.create_input_topic("in", Serdes::string(), Serdes::string());
    let mut traced = Headers::new();
    traced.add("trace-id", Some(b"abc".to_vec()));
    input.pipe_record(Record::new("a".into(), "poison".into(), 5).with_headers(traced))?;
    input.pipe_record(Record::new("b".into(), "panic".into(), 6))?;
    input.pipe_record(Record::new("c".into(), "fine".into(), 7))?;
    let out = d.create_output_topic("out", Serdes::string(), Serdes::string());
    assert_eq!(out.read_values_to_list()?, vec!["FINE".to_string()]);
    let records = d
        .create_output_topic("dead-letters", Serdes::bytes(), Serdes::bytes())
        .read_records_to_list()?;
    assert_eq!(records.len(), 2, "{records:?}");
    let (poison, panicked) = (&records[0], &records[1]);
    assert_eq!(
        (poison.key.as_slice(), poison.value.as_slice()),
        (&b"a"[..], &b"poison"[..])
    );
    assert_eq!(
        header(poison, "trace-id"),
        "abc",
        "original headers are kept"
    );
    assert_eq!(
        header(poison, HEADER_ERRORS_EXCEPTION),
        "StreamsError::Processing"
    );
    let message = header(poison, HEADER_ERRORS_MESSAGE);
    assert!(
        message.contains("`digest`") && message.contains("cannot digest poison"),
        "{message}"
    );
    assert_eq!(header(poison, HEADER_ERRORS_OFFSET), "0");
    assert_eq!(header(panicked, HEADER_ERRORS_EXCEPTION), "panic");
    assert!(header(panicked, HEADER_ERRORS_MESSAGE).contains("lost my head"));
    assert_eq!(header(panicked, HEADER_ERRORS_OFFSET), "1");
    let m = d.metrics();
    assert_eq!(
        (m.processing_skipped, m.dead_lettered, m.processed),
        (2, 2, 1)
    );
    Ok(())
}

#[test]
fn a_failing_handler_still_writes_the_record() -> R {
    let d = TopologyTestDriver::new(
        topology()?,
        config("processing.exception.handler", "log-and-fail"),
    )?;
    let input = d.create_input_topic("in", Serdes::string(), Serdes::string());
    let err = input
        .pipe_record(Record::new("a".into(), "poison".into(), 5))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cannot digest poison"), "{err}");
    // The driver routes no output of a failed pipe; the write is counted (the embedded-broker
    // test reads such a record back).
    assert_eq!(d.metrics().dead_lettered, 1);
    Ok(())
}

#[test]
fn without_the_setting_nothing_is_written() -> R {
    let d = TopologyTestDriver::new(
        topology()?,
        StreamsConfig::new("dlq").set("processing.exception.handler", "log-and-continue"),
    )?;
    let input = d.create_input_topic("in", Serdes::string(), Serdes::string());
    input.pipe_record(Record::new("a".into(), "poison".into(), 5))?;
    assert_eq!(d.output_topics(), Vec::<String>::new());
    assert_eq!(d.metrics().processing_skipped, 1);
    Ok(())
}
