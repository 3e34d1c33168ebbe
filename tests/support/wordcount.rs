//! Word-count runs on Kafka: input generation, the oracle, and waiting for an application to
//! catch up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::Cluster;

#[path = "../../examples/support/mod.rs"]
pub mod example;

#[allow(unused_imports)] // not every test crate uses both
pub use example::{word_count_topology, words};

/// A line of input: words from a vocabulary of a few thousand, in mixed case, with
/// punctuation; every 500th line is null and every 997th is not UTF-8.
pub fn line(i: u64) -> Option<Vec<u8>> {
    if i % 500 == 499 {
        return None;
    }
    if i % 997 == 996 {
        return Some(vec![b'o', b'k', b' ', 0xff, 0xfe, b'!']);
    }
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    let mut out = String::new();
    for j in 0..(3 + i % 9) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = x % 3000;
        let text = match x % 7 {
            0 => format!("Word{word}"),
            1 => format!("WORD{word}"),
            2 => format!("w_{word}"),
            _ => format!("word{word}"),
        };
        out.push_str(&text);
        out.push_str(match (x >> 3) % 5 {
            0 => ", ",
            1 => " - ",
            2 => "! ",
            _ if j % 2 == 0 => " ",
            _ => "\t",
        });
    }
    Some(out.into_bytes())
}

/// The final count of every word in lines `range`.
pub fn oracle(range: std::ops::Range<u64>, counts: &mut HashMap<String, i64>) {
    for i in range {
        if let Some(bytes) = line(i) {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                for w in words(text) {
                    *counts.entry(w).or_default() += 1;
                }
            }
        }
    }
}

/// Lines in `range` that the application must skip as unreadable.
pub fn unreadable(range: std::ops::Range<u64>) -> u64 {
    range
        .filter(|i| line(*i).is_some_and(|b| std::str::from_utf8(&b).is_err()))
        .count() as u64
}

/// Produces lines `range` to `topic` (null keys), and waits until they are acknowledged; every
/// one must be.
pub fn produce_lines(cluster: &dyn Cluster, topic: &str, range: std::ops::Range<u64>) {
    let lost = produce_lines_with(cluster, topic, range, &[], Duration::from_secs(60));
    assert_eq!(
        lost, 0,
        "the test's producer lost {lost} input lines of {topic}"
    );
}

/// Counts deliveries that failed, so a test knows which input really reached the topic.
struct CountingContext(std::sync::atomic::AtomicU64);

impl rdkafka::ClientContext for CountingContext {}

impl rdkafka::producer::ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            eprintln!("test producer: a line was not delivered: {e}");
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// [`produce_lines`] with extra producer settings and a flush deadline. Returns how many lines
/// the producer failed to deliver (its message timeout passed, say): a test that lets that
/// happen takes its oracle from the topic ([`oracle_from_topic`]).
pub fn produce_lines_with(
    cluster: &dyn Cluster,
    topic: &str,
    range: std::ops::Range<u64>,
    settings: &[(&str, &str)],
    flush: Duration,
) -> u64 {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster.bootstrap())
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        // A request retried after a broker fault must not write its lines twice: the tests'
        // oracles assume each line is in the topic once.
        .set("enable.idempotence", "true");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: ThreadedProducer<CountingContext> = config
        .create_with_context(CountingContext(Default::default()))
        .expect("producer");
    for i in range {
        let payload = line(i);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(p) = payload.as_deref() {
            record = record.payload(p);
        }
        example::send_waiting(&producer, record).expect("producing input");
    }
    producer.flush(flush).expect("flush input");
    producer
        .context()
        .0
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The final count of every word in the lines `topic` (with `partitions` partitions) holds: the
/// oracle of what the application was given, whatever a producer failed to deliver.
pub fn oracle_from_topic(
    cluster: &dyn Cluster,
    topic: &str,
    partitions: i32,
) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    read_to_end(cluster, topic, partitions, "read_uncommitted", |m| {
        if let Some(text) = m.payload().and_then(|b| std::str::from_utf8(b).ok()) {
            for w in words(text) {
                *counts.entry(w).or_default() += 1;
            }
        }
    });
    counts
}

/// Waits until group `application_id` has committed everything in `topics` (each with
/// `partitions` partitions), twice in a row, so the caches' final flush is out too.
pub fn wait_caught_up(
    cluster: &dyn Cluster,
    application_id: &str,
    topics: &[String],
    partitions: i32,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let mut streak = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "{application_id} did not catch up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
        let caught_up =
            example::group_caught_up(&cluster.bootstrap(), application_id, topics, partitions)
                .unwrap_or(false);
        streak = if caught_up { streak + 1 } else { 0 };
        if streak >= 2 {
            return;
        }
    }
}

/// The last value of every key in `topic`, as word -> count.
pub fn read_counts(cluster: &dyn Cluster, topic: &str, partitions: i32) -> HashMap<String, i64> {
    read_counts_with(cluster, topic, partitions, "read_uncommitted")
}

/// [`read_counts`] with an isolation level.
pub fn read_counts_with(
    cluster: &dyn Cluster,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    read_to_end(cluster, topic, partitions, isolation, |m| {
        let word = String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("UTF-8 word");
        let count = i64::from_be_bytes(m.payload().expect("count").try_into().expect("8 bytes"));
        counts.insert(word, count);
    });
    counts
}

/// Hands every record of `topic` (with `partitions` partitions), up to the end offsets read
/// when it starts, to `each`, in each partition's order.
fn read_to_end(
    cluster: &dyn Cluster,
    topic: &str,
    partitions: i32,
    isolation: &str,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", "wordcount-reader")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    let mut ends = HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        if high > 0 {
            remaining += 1;
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining > 0 {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            each(&m);
            if m.offset() + 1 == ends[&m.partition()] {
                remaining -= 1;
            }
        } else if isolation == "read_committed" {
            // Transaction markers take offsets that carry no record: done once positions reach the end.
            let positions = consumer.position().expect("position");
            let at_end = positions.elements().iter().all(|e| match e.offset() {
                Offset::Offset(o) => o >= ends[&e.partition()],
                _ => ends[&e.partition()] == 0,
            });
            if at_end {
                break;
            }
        }
    }
}

/// Compares two count maps, naming a few differences.
pub fn assert_counts_equal(got: &HashMap<String, i64>, want: &HashMap<String, i64>) {
    let mut diffs: Vec<String> = want
        .iter()
        .filter(|(w, c)| got.get(*w) != Some(c))
        .map(|(w, c)| format!("{w}: got {:?}, want {c}", got.get(w)))
        .chain(
            got.keys()
                .filter(|w| !want.contains_key(*w))
                .map(|w| format!("{w}: unexpected")),
        )
        .collect();
    diffs.sort();
    assert!(
        diffs.is_empty(),
        "{} words differ, e.g. {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}
