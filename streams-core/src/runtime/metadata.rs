//! Which instance owns which key: every instance's `application.server` and the input
//! partitions the group assigned it, so any instance can say where a key's store lives
//! ([`KafkaStreams::query_metadata_for_key`](crate::KafkaStreams::query_metadata_for_key),
//! [`KafkaStreams::all_metadata`](crate::KafkaStreams::all_metadata)).
//!
//! Kafka Streams passes each member's `application.server` through its group assignor; the group
//! protocols librdkafka speaks carry no user data. So each instance with an
//! `application.server` writes `{server, assigned partitions, time of that assignment}` to a
//! one-partition compacted topic, `<application.id>-kstreams-metadata`, keyed by its process id,
//! whenever its threads' assignment changes, and a tombstone when it closes. Every such instance
//! reads the topic from the beginning and keeps the latest record of each process. A partition
//! claimed by several (an instance killed without its tombstone, or one whose revocation is not
//! written yet) belongs to the latest claim: the group hands a partition to its new owner only
//! after the old one gave it up or was evicted.
//!
//! The answer follows the group's assignment with a delay of one record round trip; a caller
//! that reaches an instance that no longer holds the key gets
//! [`NotQueryableReason::NotLocal`](crate::runtime::queries::NotQueryableReason::NotLocal) or
//! `Migrating` from its store, and asks again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::client_log::TracingContext;
use super::queries::SharedView;
use super::topics::client_config;
use crate::config::ResolvedConfig;
use crate::error::{Result, StreamsError};

/// How often the publisher looks at the threads' assignment and reads the topic.
const TICK: Duration = Duration::from_millis(100);

/// The metadata topic of application `app`.
pub(crate) fn topic(app: &str) -> String {
    format!("{app}-kstreams-metadata")
}

/// A `host:port` where an instance answers interactive queries (`application.server`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostInfo {
    /// The host name or address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostInfo {
    /// Parses `host:port`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (host, port) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: the port is not a number from 0 to 65535"))?;
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(HostInfo {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What an instance advertises: where it answers, and what the group assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// Its `application.server`.
    pub host: HostInfo,
    /// Its process id (unique per run of an instance).
    pub process_id: String,
    /// The stores of the tasks it holds.
    pub state_stores: BTreeSet<String>,
    /// The input partitions (full topic names) the group assigned it.
    pub topic_partitions: BTreeSet<(String, i32)>,
    /// When it took this assignment (epoch milliseconds, its clock).
    pub since_ms: i64,
}

/// Where a key's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The instance whose active task holds the key, if one is known.
    pub active_host: Option<HostInfo>,
    /// The key's partition.
    pub partition: i32,
}

/// One instance as its latest record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) server: HostInfo,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) since_ms: i64,
}

impl Member {
    fn encode(&self) -> String {
        let parts: Vec<String> = self
            .partitions
            .iter()
            .map(|(t, p)| format!("{t}:{p}"))
            .collect();
        format!(
            "v1\nserver {}\nsince {}\npartitions {}\n",
            self.server,
            self.since_ms,
            parts.join(" ")
        )
    }

    fn decode(text: &str) -> Option<Member> {
        let mut lines = text.lines();
        if lines.next()? != "v1" {
            return None;
        }
        let (mut server, mut since_ms, mut partitions) = (None, None, BTreeSet::new());
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "server" => server = HostInfo::parse(value).ok(),
                "since" => since_ms = value.parse().ok(),
                "partitions" => {
                    for tp in value.split_whitespace() {
                        let (t, p) = tp.rsplit_once(':')?;
                        partitions.insert((t.to_owned(), p.parse().ok()?));
                    }
                }
                _ => {}
            }
        }
        Some(Member {
            server: server?,
            partitions,
            since_ms: since_ms?,
        })
    }
}

/// Every instance's latest record, and this instance's own live view.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) members: BTreeMap<String, Member>,
}

/// What one record of the metadata topic did to the [`Directory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// An instance's latest view, now recorded.
    Member,
    /// A tombstone: the instance left.
    Left,
    /// No key, or this instance's own record (its view is live).
    Ignored,
    /// A payload that is not a member record: skipped with a warning, the directory unchanged.
    Skipped,
}

impl Directory {
    /// Applies one record of the metadata topic: keyed by the instance's process id, its payload
    /// the instance's view, or null when it left. A payload that does not decode (damaged, or
    /// from a newer version) is skipped with a warning: the instance's previous view stays.
    pub(crate) fn apply(
        &mut self,
        own_process_id: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Applied {
        let Some(key) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
            return Applied::Ignored;
        };
        if key == own_process_id {
            return Applied::Ignored; // our own view is live
        }
        let Some(payload) = payload else {
            self.members.remove(&key);
            return Applied::Left;
        };
        match std::str::from_utf8(payload).ok().and_then(Member::decode) {
            Some(member) => {
                self.members.insert(key, member);
                Applied::Member
            }
            None => {
                tracing::warn!(
                    instance = %key,
                    bytes = payload.len(),
                    "skipping a record of the metadata topic that is not an instance's view"
                );
                Applied::Skipped
            }
        }
    }

    /// The owner of input partition `tp`: the latest claim.
    pub(crate) fn owner(&self, tp: &(String, i32)) -> Option<(&String, &Member)> {
        self.members
            .iter()
            .filter(|(_, m)| m.partitions.contains(tp))
            .max_by_key(|(id, m)| (m.since_ms, *id))
    }
}

pub(crate) type SharedDirectory = Arc<Mutex<Directory>>;

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Starts publishing this instance's assignment and reading everyone's; the thread ends (after
/// writing a tombstone) when `shutdown` is set.
pub(crate) fn start(
    config: &ResolvedConfig,
    server: HostInfo,
    process_id: String,
    views: Vec<SharedView>,
    directory: SharedDirectory,
    shutdown: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let topic = topic(&config.application_id);
    let mut client = client_config(config, &config.consumer)?;
    client
        .set("group.id", format!("{}-metadata", config.application_id))
        .set("client.id", format!("{}-metadata", config.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<TracingContext> = client
        .create_with_context(TracingContext)
        .map_err(|e| StreamsError::kafka("creating the metadata topic's consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| StreamsError::kafka(format!("reading {topic}"), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| StreamsError::kafka(format!("reading {topic}"), e))?;
    let producer: BaseProducer<DefaultProducerContext> = client_config(config, &config.producer)?
        .set("client.id", format!("{}-metadata", config.application_id))
        .set("linger.ms", "0")
        .create()
        .map_err(|e| StreamsError::kafka("creating the metadata topic's producer", e))?;
    std::thread::Builder::new()
        .name(format!("{}-metadata", config.application_id))
        .spawn(move || {
            let mut published: Option<BTreeSet<(String, i32)>> = None;
            let mut since_ms = wall_clock_ms();
            let mut last_send = Instant::now();
            while !shutdown.load(Ordering::Relaxed) {
                // Everyone's records.
                let mut read = 0;
                while let Some(result) =
                    consumer.poll(if read == 0 { TICK } else { Duration::ZERO })
                {
                    read += 1;
                    match result {
                        Ok(m) => {
                            let mut dir = directory.lock().unwrap_or_else(|p| p.into_inner());
                            dir.apply(&process_id, m.key(), m.payload());
                        }
                        Err(e) => tracing::debug!(error = %e, "metadata topic"),
                    }
                    if read >= 1000 {
                        break;
                    }
                }
                // Ours.
                let assigned: BTreeSet<(String, i32)> = views
                    .iter()
                    .flat_map(|v| {
                        v.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .assigned
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let changed = published.as_ref() != Some(&assigned);
                if changed {
                    since_ms = wall_clock_ms();
                }
                let me = Member {
                    server: server.clone(),
                    partitions: assigned.clone(),
                    since_ms,
                };
                {
                    let mut dir = directory.lock().unwrap_or_else(|p| p.into_inner());
                    dir.members.insert(process_id.clone(), me.clone());
                }
                // Written on change, and again now and then in case a write was lost.
                if changed || last_send.elapsed() > Duration::from_secs(30) {
                    let payload = me.encode();
                    match producer.send(
                        BaseRecord::to(&topic)
                            .partition(0)
                            .key(process_id.as_bytes())
                            .payload(payload.as_bytes()),
                    ) {
                        Ok(()) => {
                            published = Some(assigned);
                            last_send = Instant::now();
                            tracing::debug!(
                                partitions = me.partitions.len(),
                                "advertised this instance's assignment"
                            );
                        }
                        Err((e, _)) => tracing::warn!(error = %e, "writing to the metadata topic"),
                    }
                }
                producer.poll(Duration::ZERO);
            }
            // Leaving: a tombstone, so nobody sends queries here any more.
            if let Err((e, _)) = producer.send(
                BaseRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .key(process_id.as_bytes()),
            ) {
                tracing::warn!(error = %e, "writing this instance's tombstone");
            }
            if let Err(e) = producer.flush(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "flushing the metadata topic's producer");
            }
        })
        .map_err(|e| StreamsError::Fatal(format!("spawning the metadata thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_latest_claim_wins() {
        let a = Member {
            server: HostInfo::parse("127.0.0.1:8080").expect("host:port"),
            partitions: [("in".to_owned(), 0), ("in".to_owned(), 1)].into(),
            since_ms: 10,
        };
        assert_eq!(Member::decode(&a.encode()), Some(a.clone()));
        let b = Member {
            server: HostInfo::parse("localhost:8081").expect("host:port"),
            partitions: [("in".to_owned(), 1)].into(),
            since_ms: 20,
        };
        let mut dir = Directory::default();
        dir.members.insert("a".into(), a);
        dir.members.insert("b".into(), b);
        assert_eq!(
            dir.owner(&("in".into(), 0)).map(|o| o.0.as_str()),
            Some("a")
        );
        assert_eq!(
            dir.owner(&("in".into(), 1)).map(|o| o.0.as_str()),
            Some("b")
        );
        assert_eq!(dir.owner(&("in".into(), 2)), None);
        assert!(HostInfo::parse("nohost").is_err());
        assert!(HostInfo::parse(":80").is_err());
        assert!(HostInfo::parse("h:99999").is_err());
    }
}

/// Randomized decoding of the metadata topic's records: what other instances advertise.
/// Arbitrary and damaged payloads are skipped (never a panic, never a member made of garbage
/// fields); valid ones round-trip. Case counts: `KSTREAMS_FUZZ_CASES` (default 512); millions on
/// demand with `KSTREAMS_FUZZ_CASES=1000000 cargo test --release -p streams-core decoding_tests`.
#[cfg(test)]
mod decoding_tests {
    use super::*;
    use crate::fuzz::config;
    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = Member> {
        (
            "[a-z0-9.-]{1,12}",
            any::<u16>(),
            proptest::collection::btree_set(("[a-zA-Z0-9._-]{1,10}", any::<i32>()), 0..5),
            any::<i64>(),
        )
            .prop_map(|(host, port, partitions, since_ms)| Member {
                server: HostInfo { host, port },
                partitions,
                since_ms,
            })
    }

    /// Applies a record to a directory that knows `before` as instance `peer`: a decodable
    /// payload replaces it, anything else leaves it.
    fn check_apply(payload: &[u8], before: &Member) -> Result<(), TestCaseError> {
        let mut dir = Directory::default();
        dir.members.insert("peer".into(), before.clone());
        let decoded = std::str::from_utf8(payload).ok().and_then(Member::decode);
        let applied = dir.apply("me", Some(b"peer"), Some(payload));
        match decoded {
            Some(member) => {
                prop_assert_eq!(applied, Applied::Member);
                prop_assert_eq!(dir.members.get("peer"), Some(&member));
                // A decoded member's own record reads back as itself.
                prop_assert_eq!(Member::decode(&member.encode()), Some(member.clone()));
                prop_assert!(!member.server.host.is_empty());
            }
            None => {
                prop_assert_eq!(applied, Applied::Skipped);
                prop_assert_eq!(dir.members.get("peer"), Some(before));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_payloads_are_members_or_skipped(
            payload in proptest::collection::vec(any::<u8>(), 0..96),
            before in member(),
        ) {
            check_apply(&payload, &before)?;
        }

        #[test]
        fn damaged_records_are_members_or_skipped(
            record in member(),
            before in member(),
            at in any::<usize>(),
            cut in any::<bool>(),
            junk in "[ -~\n]{0,12}",
        ) {
            let text = record.encode();
            prop_assert_eq!(Member::decode(&text), Some(record.clone()));
            let mut bytes = text.into_bytes();
            let at = at % (bytes.len() + 1);
            if cut {
                bytes.truncate(at);
            }
            bytes.splice(at..at, junk.bytes());
            check_apply(&bytes, &before)?;
        }
    }

    #[test]
    fn tombstones_remove_and_own_or_keyless_records_are_ignored() {
        let mut dir = Directory::default();
        let m = Member {
            server: HostInfo::parse("h:1").expect("host:port"),
            partitions: BTreeSet::new(),
            since_ms: 0,
        };
        dir.members.insert("peer".into(), m.clone());
        assert_eq!(dir.apply("me", None, Some(b"v1")), Applied::Ignored);
        assert_eq!(dir.apply("me", Some(b"me"), None), Applied::Ignored);
        assert_eq!(dir.members.len(), 1);
        // Regression: a damaged record was taken as a tombstone, silently dropping the instance.
        assert_eq!(
            dir.apply("me", Some(b"peer"), Some(&[0xff, 0x00])),
            Applied::Skipped
        );
        assert_eq!(dir.members.get("peer"), Some(&m));
        assert_eq!(dir.apply("me", Some(b"peer"), None), Applied::Left);
        assert!(dir.members.is_empty());
    }
}
