//! Exactly-once crash runs of the `eos_test_client` example (Kafka's `EosTestClient` topology):
//! input generation, instances started and killed as processes, and a verifier that checks every
//! output record against the input, as Kafka's `EosTestDriver` does: partition p of `echo` and
//! `repartition` equals partition p of `data` record for record; `min`, `sum` (and `max`, `cnt`
//! of `repartition`) are the running aggregates per key, one per input record; and no
//! transaction is left open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Cluster, RealKafka};

/// Partitions of every topic, as in Kafka's `streams_eos_test.py`.
pub const PARTITIONS: i32 = 5;

/// Topic names of one run.
#[derive(Debug, Clone)]
pub struct EosTopics {
    pub prefix: String,
    pub complex: bool,
}

impl EosTopics {
    pub fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// Every topic the client reads or writes.
    pub fn all(&self) -> Vec<String> {
        let mut names = vec!["data", "echo", "min", "sum"];
        if self.complex {
            names.extend(["repartition", "max", "cnt"]);
        }
        names.into_iter().map(|n| self.name(n)).collect()
    }

    pub fn create(&self, kafka: &RealKafka) {
        for topic in self.all() {
            kafka.create_topic(&topic, PARTITIONS);
        }
    }

    /// The topics the application's group consumes.
    pub fn inputs(&self) -> Vec<String> {
        let mut names = vec![self.name("data")];
        if self.complex {
            names.push(self.name("repartition"));
        }
        names
    }
}

/// Produces `key -> value` records (keys `0..keys` as strings, values 4-byte big-endian ints
/// in `0..10000`) to `topic` at about `per_second` until stopped; returns how many.
pub struct Generator {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Generator {
    pub fn start(kafka: &RealKafka, topic: &str, keys: u32, per_second: u32) -> Generator {
        let stop = Arc::new(AtomicBool::new(false));
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // Java's partitioner, as Kafka's driver uses: the outputs are checked partition by
            // partition against the input.
            .set("partitioner", "murmur2_random")
            .create()
            .expect("generator producer");
        let (topic, flag) = (topic.to_owned(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let started = Instant::now();
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let key = (next() % u64::from(keys)).to_string();
                let value = ((next() % 10_000) as i32).to_be_bytes();
                let mut record = BaseRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(&value[..]);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, returned)) => {
                            record = returned;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                sent += 1;
                let due = Duration::from_secs_f64(sent as f64 / f64::from(per_second));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            producer
                .flush(Duration::from_secs(60))
                .expect("flush input");
            sent
        });
        Generator {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops producing; returns how many records were produced.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("generator thread")
    }
}

type Records = HashMap<i32, Vec<(String, Vec<u8>)>>;

/// Every committed record of `topic`, per partition, in offset order. Waits (up to `patience`)
/// until no transaction is open on it: a `read_committed` reader must reach the high watermark.
fn read_committed(kafka: &RealKafka, topic: &str, patience: Duration) -> Result<Records, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", "eos-verifier")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        ends.insert(p, high);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut records: Records = HashMap::new();
    let deadline = Instant::now() + patience;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => records.entry(m.partition()).or_default().push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => {
                let positions = consumer.position().map_err(|e| e.to_string())?;
                let at_end = positions.elements().iter().all(|e| match e.offset() {
                    Offset::Offset(o) => o >= ends[&e.partition()],
                    _ => ends[&e.partition()] == 0,
                });
                if at_end {
                    return Ok(records);
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{topic}: a read_committed reader stays short of the high watermarks {ends:?} (positions {positions:?}): a transaction was left open"
                    ));
                }
            }
        }
    }
}

/// What the verifier found.
#[derive(Debug, Default)]
pub struct Report {
    pub input_records: usize,
    pub output_records: usize,
    /// Output records beyond the expected count (summed over output partitions).
    pub duplicates: usize,
    /// Expected output records that are missing (summed over output partitions).
    pub gaps: usize,
    /// Output records that differ from the expected one at their position.
    pub mismatches: usize,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.duplicates == 0 && self.gaps == 0 && self.mismatches == 0 && self.problems.is_empty()
    }
}

fn int(bytes: &[u8]) -> Option<i64> {
    match bytes.len() {
        4 => Some(i64::from(i32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// Compares `got` with `want`, record by record, per partition.
fn compare(
    report: &mut Report,
    topic: &str,
    got: &Records,
    want: &HashMap<i32, Vec<(String, i64)>>,
) {
    for p in 0..PARTITIONS {
        let got: Vec<(String, Option<i64>)> = got
            .get(&p)
            .map(|rs| rs.iter().map(|(k, v)| (k.clone(), int(v))).collect())
            .unwrap_or_default();
        let want: Vec<(String, Option<i64>)> = want
            .get(&p)
            .map(|rs| rs.iter().map(|(k, v)| (k.clone(), Some(*v))).collect())
            .unwrap_or_default();
        report.output_records += got.len();
        report.duplicates += got.len().saturating_sub(want.len());
        report.gaps += want.len().saturating_sub(got.len());
        let differ = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        report.mismatches += differ;
        if differ > 0 || got.len() != want.len() {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            report.problems.push(format!(
                "{topic}-{p}: {} records, {} expected; first difference at {first:?}: got {:?}, want {:?}",
                got.len(),
                want.len(),
                first.map(|i| &got[i]),
                first.map(|i| &want[i]),
            ));
        }
    }
}

/// Running aggregates per key over each partition of `input`, one output per input record.
fn running(
    input: &Records,
    step: impl Fn(Option<i64>, i64) -> i64,
) -> HashMap<i32, Vec<(String, i64)>> {
    input
        .iter()
        .map(|(p, records)| {
            let mut per_key: HashMap<&str, i64> = HashMap::new();
            let out = records
                .iter()
                .map(|(k, v)| {
                    let value = int(v).unwrap_or(i64::MIN);
                    let next = step(per_key.get(k.as_str()).copied(), value);
                    per_key.insert(k, next);
                    (k.clone(), next)
                })
                .collect();
            (*p, out)
        })
        .collect()
}

/// Checks every output against the whole of `data` (the application must have processed all of
/// it), as described in the [module docs](self).
pub fn verify(kafka: &RealKafka, topics: &EosTopics) -> Report {
    let mut report = Report::default();
    let patience = Duration::from_secs(30);
    let read =
        |name: &str, report: &mut Report| match read_committed(kafka, &topics.name(name), patience)
        {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(e);
                HashMap::new()
            }
        };
    let data = read("data", &mut report);
    report.input_records = data.values().map(Vec::len).sum();
    let identity: HashMap<i32, Vec<(String, i64)>> = data
        .iter()
        .map(|(p, rs)| {
            (
                *p,
                rs.iter()
                    .map(|(k, v)| (k.clone(), int(v).unwrap_or(i64::MIN)))
                    .collect(),
            )
        })
        .collect();
    let echo = read("echo", &mut report);
    compare(&mut report, "echo", &echo, &identity);
    let min = read("min", &mut report);
    compare(
        &mut report,
        "min",
        &min,
        &running(&data, |a, v| a.map_or(v, |a| a.min(v))),
    );
    let sum = read("sum", &mut report);
    compare(
        &mut report,
        "sum",
        &sum,
        &running(&data, |a, v| a.unwrap_or(0) + v),
    );
    if topics.complex {
        let repartition = read("repartition", &mut report);
        compare(&mut report, "repartition", &repartition, &identity);
        let max = read("max", &mut report);
        compare(
            &mut report,
            "max",
            &max,
            &running(&repartition, |a, v| a.map_or(v, |a| a.max(v))),
        );
        let cnt = read("cnt", &mut report);
        compare(
            &mut report,
            "cnt",
            &cnt,
            &running(&repartition, |a, _| a.unwrap_or(0) + 1),
        );
    }
    report
}

/// Counts for a scenario's summary.
#[derive(Debug, Default)]
pub struct Tally {
    pub kills: AtomicU64,
    pub wipes: AtomicU64,
    pub restarts: AtomicU64,
}
