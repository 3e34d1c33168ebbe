//! Measuring a case: running its process under GNU time (CPU seconds and peak RSS), knowing when
//! it has processed all input, and when its first output arrived.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A process under `/usr/bin/time`.
pub struct Measured {
    pub child: Child,
    pub started_ms: i64,
    time_file: PathBuf,
}

/// What GNU time reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_kb: u64,
}

impl Measured {
    /// Starts `program` under GNU time. Its stderr (logs) goes to `worker.log` next to
    /// `time_file`, so a JVM's chatter does not bury the tables.
    pub fn spawn(program: &str, args: &[String], time_file: &Path, stdout: Stdio) -> Measured {
        let log_path = time_file.with_file_name("worker.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let started_ms = now_ms();
        let child = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%U %S %M")
            .arg("-o")
            .arg(time_file)
            .arg(program)
            .args(args)
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {program}: {e} (is GNU time installed at /usr/bin/time?)")
            });
        Measured {
            child,
            started_ms,
            time_file: time_file.to_path_buf(),
        }
    }

    /// Whether the process has ended on its own.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM and waits for the process; returns its usage.
    pub fn stop(self) -> Usage {
        self.signal("-TERM")
    }

    /// Kills the process with SIGKILL: no shutdown of any kind.
    pub fn kill(self) -> Usage {
        self.signal("-KILL")
    }

    fn signal(mut self, signal: &str) -> Usage {
        // The signal goes to `time`'s child; `time` reports and exits when it ends.
        let pid = self.child.id().to_string();
        let _ = Command::new("pkill").args([signal, "-P", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() && signal != "-KILL" {
                    eprintln!("warning: a measured process exited with {status}");
                }
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.time_file).unwrap_or_default();
        let fields: Vec<&str> = text
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Usage {
            cpu_seconds: num(0) + num(1),
            peak_rss_kb: num(2) as u64,
        }
    }
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Creates `topic`; `log_append` stamps records with the broker's clock on arrival.
/// Deletes every topic named `prefix` or starting with `prefix-` (a case's output, or an
/// application's internal topics), so that a full run does not pile up tens of GB on the broker.
pub fn delete_topics(bootstrap: &str, prefixes: &[&str]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(10)) else {
        eprintln!("listing topics to delete failed; leaving them");
        return;
    };
    let doomed: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| {
            prefixes
                .iter()
                .any(|p| n == p || n.starts_with(&format!("{p}-")))
        })
        .collect();
    if doomed.is_empty() {
        return;
    }
    let names: Vec<&str> = doomed.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    if let Err(e) = futures::executor::block_on(admin(bootstrap).delete_topics(&names, &options)) {
        eprintln!("deleting {names:?}: {e}");
    }
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let new = config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |t, (k, v)| t.set(k, v),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        futures::executor::block_on(admin.create_topics([&new], &options)).expect("create topics");
    for r in results {
        if let Err((t, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                panic!("creating {t}: {code}");
            }
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics()
                    .first()
                    .map(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `count` records made by `make(i)` into `topic`, as fast as the producer goes.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    count: u64,
    make: impl Fn(u64) -> (Option<Vec<u8>>, Option<Vec<u8>>),
) {
    produce_at(bootstrap, topic, count, |i| {
        let (key, value) = make(i);
        (key, value, None)
    })
}

/// Like [`produce`], with a record timestamp (event time) from `make` where it gives one.
pub fn produce_at(
    bootstrap: &str,
    topic: &str,
    count: u64,
    make: impl Fn(u64) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>),
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "50")
        .set("batch.num.messages", "20000")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    for i in 0..count {
        let (key, value, timestamp) = make(i);
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(t) = timestamp {
            record = record.timestamp(t);
        }
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        if let Some(v) = value.as_deref() {
            record = record.payload(v);
        }
        crate::example::send_waiting(&producer, record)
            .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Whether `group` has committed every record of `topics`.
pub fn caught_up(bootstrap: &str, group: &str, topics: &[String], partitions: i32) -> bool {
    crate::example::group_caught_up(bootstrap, group, topics, partitions).unwrap_or(false)
}

/// The broker time at which `topic` received its first record (LogAppendTime topics).
pub fn first_append_ms(bootstrap: &str, topic: &str, partitions: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-first-output")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut wanted = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .ok()?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .ok()?;
            wanted += 1;
        }
    }
    if wanted == 0 {
        return None;
    }
    consumer.assign(&tpl).ok()?;
    let mut first = None::<i64>;
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < wanted && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if seen.insert(m.partition()) {
                if let Timestamp::LogAppendTime(t) | Timestamp::CreateTime(t) = m.timestamp() {
                    first = Some(first.map_or(t, |f| f.min(t)));
                }
            }
        }
    }
    first
}
