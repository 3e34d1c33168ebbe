//! An in-process Kafka cluster for examples and quick tests, built on librdkafka's mock cluster.
//!
//! [`EmbeddedKafka`] starts a mock cluster that speaks the Kafka protocol on a loopback port, so
//! any Kafka client (ours, or another process's librdkafka) can use its
//! [`bootstrap_servers`](EmbeddedKafka::bootstrap_servers). It is what the examples run on when no
//! bootstrap servers are given. Everything lives in memory and is gone when the handle is dropped.
//!
//! # What the mock cluster lacks
//!
//! librdkafka's mock cluster implements produce, fetch, offsets, classic consumer groups (JoinGroup /
//! SyncGroup with client-side assignors), the KIP-848 consumer protocol (with its own simple range
//! assignment, not the broker's assignors), idempotent and transactional producers,
//! `send_offsets_to_transaction` and metadata. It does **not** implement:
//!
//! - the admin API for topics and configs (CreateTopics, DeleteTopics, CreatePartitions,
//!   DescribeConfigs, DeleteRecords): create topics through [`EmbeddedKafka::create_topic`]; a topic
//!   that a client asks about before it exists is auto-created with 4 partitions;
//! - transaction isolation: the transactional producer API works (init, begin, commit, abort,
//!   `send_offsets_to_transaction`), but fetches ignore `isolation.level`, so a `read_committed`
//!   consumer also sees aborted records, and offsets sent with a transaction are acknowledged but
//!   not stored. Exactly-once runs here execute the transactional code path without its guarantee;
//! - log compaction and retention: a compacted changelog keeps every record, so restoration reads
//!   all of them rather than the latest value per key;
//! - group administration (ListGroups, DescribeGroups, DeleteGroups) and ACLs;
//! - persistence and broker-side configuration: nothing survives the process.
//!
//! Tests that claim Kafka semantics run against a real Apache Kafka broker (`scripts/kafka.sh`).

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
pub use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::error::{Result, StreamsError};

/// A request served by the thread that owns the mock cluster.
enum Request {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<()>>,
    },
    /// Another operation on the cluster (broker state, coordinators), described for errors.
    Operate {
        what: String,
        op: ClusterOp,
        reply: mpsc::Sender<Result<()>>,
    },
}

type ClusterOp = Box<
    dyn FnOnce(&MockCluster<'static, DefaultProducerContext>) -> rdkafka::error::KafkaResult<()>
        + Send,
>;

/// A running in-process Kafka cluster (librdkafka's mock cluster). See the [module docs](self)
/// for what it lacks compared with Apache Kafka.
///
/// ```
/// use streams_core::embedded::EmbeddedKafka;
///
/// let kafka = EmbeddedKafka::start().unwrap();
/// kafka.create_topic("words", 4).unwrap();
/// assert!(kafka.bootstrap_servers().contains(':'), "host:port");
/// ```
pub struct EmbeddedKafka {
    bootstrap_servers: String,
    admin: EmbeddedAdmin,
    owner: Option<JoinHandle<()>>,
}

/// A cloneable, thread-safe handle that creates topics on an [`EmbeddedKafka`] cluster.
///
/// The runtime uses it in place of the Kafka admin API, which the mock cluster does not serve.
#[derive(Clone)]
pub struct EmbeddedAdmin {
    requests: mpsc::Sender<Request>,
    /// Counts live handles, so that dropping the cluster knows whether it can wait for its thread.
    handles: Arc<()>,
}

impl std::fmt::Debug for EmbeddedAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedAdmin")
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self> {
        Self::with_brokers(1)
    }

    /// Starts a mock cluster with `brokers` brokers (1 to 16).
    pub fn with_brokers(brokers: i32) -> Result<Self> {
        if !(1..=16).contains(&brokers) {
            return Err(StreamsError::Embedded(format!(
                "a mock cluster has 1 to 16 brokers, not {brokers}"
            )));
        }
        // The mock cluster is not `Send`, so one thread owns it for its whole life and serves
        // requests from any thread through a channel.
        let (requests, inbox) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let owner = std::thread::Builder::new()
            .name("kstreams-embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StreamsError::Embedded(format!(
                            "librdkafka could not start a mock cluster: {e}"
                        ))));
                        return;
                    }
                };
                if ready_tx.send(Ok(cluster.bootstrap_servers())).is_err() {
                    return;
                }
                // Ends when every sender (the handle and its admins) is dropped.
                for request in inbox {
                    match request {
                        Request::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = cluster.create_topic(&name, partitions, 1).map_err(|e| {
                                StreamsError::Embedded(format!(
                                    "creating topic `{name}` with {partitions} partitions: {e}"
                                ))
                            });
                            let _ = reply.send(result);
                        }
                        Request::Operate { what, op, reply } => {
                            let result = op(&cluster)
                                .map_err(|e| StreamsError::Embedded(format!("{what}: {e}")));
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|e| {
                StreamsError::Embedded(format!("spawning the mock cluster thread: {e}"))
            })?;
        let bootstrap_servers = ready_rx.recv().map_err(|_| {
            StreamsError::Embedded("the mock cluster thread died at start".into())
        })??;
        tracing::info!(%bootstrap_servers, brokers, "embedded Kafka (librdkafka mock cluster) started");
        Ok(EmbeddedKafka {
            bootstrap_servers,
            admin: EmbeddedAdmin {
                requests,
                handles: Arc::new(()),
            },
            owner: Some(owner),
        })
    }

    /// The `bootstrap.servers` value that reaches this cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    ///
    /// Creating a topic that exists already is an error.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.admin.create_topic(name, partitions)
    }

    /// Fault injection for tests: the next requests of kind `api` that reach the cluster fail,
    /// one with each of `errors` in turn (then requests succeed again). For example, failing
    /// `EndTxn` with `RD_KAFKA_RESP_ERR_NOT_COORDINATOR` makes a transaction commit retry, and
    /// with `RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH` fences the producer.
    ///
    /// ```
    /// use streams_core::embedded::{EmbeddedKafka, RDKafkaApiKey, RDKafkaRespErr};
    ///
    /// let kafka = EmbeddedKafka::start().unwrap();
    /// kafka
    ///     .fail_requests(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR])
    ///     .unwrap();
    /// ```
    pub fn fail_requests(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> Result<()> {
        let errors = errors.to_vec();
        self.operate(format!("failing {api:?} requests"), move |c| {
            c.request_errors(api, &errors);
            Ok(())
        })
    }

    /// Fault injection for tests: broker `id` (1-based) drops its connections and refuses new
    /// ones until [`broker_up`](Self::broker_up). Its partitions keep it as their leader, and it
    /// stays the coordinator of whatever it coordinates.
    pub fn broker_down(&self, id: i32) -> Result<()> {
        self.operate(format!("taking broker {id} down"), move |c| {
            c.broker_down(id)
        })
    }

    /// Brings broker `id` back after [`broker_down`](Self::broker_down).
    pub fn broker_up(&self, id: i32) -> Result<()> {
        self.operate(format!("bringing broker {id} up"), move |c| c.broker_up(id))
    }

    /// Fault injection for tests: broker `id` answers every request `delay` late (zero
    /// restores it).
    pub fn set_round_trip_time(&self, id: i32, delay: Duration) -> Result<()> {
        self.operate(
            format!("delaying broker {id}'s answers by {delay:?}"),
            move |c| c.broker_round_trip_time(id, delay),
        )
    }

    /// Makes broker `id` the leader of `topic`'s partition `partition`.
    pub fn set_partition_leader(&self, topic: &str, partition: i32, id: i32) -> Result<()> {
        let name = topic.to_owned();
        self.operate(
            format!("making broker {id} lead `{topic}`-{partition}"),
            move |c| c.partition_leader(&name, partition, Some(id)),
        )
    }

    /// Makes broker `id` the coordinator of consumer group `group` (otherwise a hash of the name
    /// picks it).
    pub fn set_group_coordinator(&self, group: &str, id: i32) -> Result<()> {
        let key = group.to_owned();
        self.operate(
            format!("making broker {id} coordinate group `{group}`"),
            move |c| c.coordinator(MockCoordinator::Group(key), id),
        )
    }

    /// Makes broker `id` the transaction coordinator of `transactional_id`.
    pub fn set_transaction_coordinator(&self, transactional_id: &str, id: i32) -> Result<()> {
        let key = transactional_id.to_owned();
        self.operate(
            format!("making broker {id} coordinate transactions of `{transactional_id}`"),
            move |c| c.coordinator(MockCoordinator::Transaction(key), id),
        )
    }

    fn operate(
        &self,
        what: String,
        op: impl FnOnce(&MockCluster<'static, DefaultProducerContext>) -> rdkafka::error::KafkaResult<()>
            + Send
            + 'static,
    ) -> Result<()> {
        let (reply, done) = mpsc::channel();
        let gone = || StreamsError::Embedded("the embedded cluster is shut down".into());
        self.admin
            .requests
            .send(Request::Operate {
                what,
                op: Box::new(op),
                reply,
            })
            .map_err(|_| gone())?;
        done.recv().map_err(|_| gone())?
    }

    /// A thread-safe handle for creating topics on this cluster from other threads.
    pub fn admin(&self) -> EmbeddedAdmin {
        self.admin.clone()
    }
}

impl EmbeddedAdmin {
    /// Creates `name` with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if partitions < 1 {
            return Err(StreamsError::Embedded(format!(
                "topic `{name}` needs at least one partition, not {partitions}"
            )));
        }
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(Request::CreateTopic {
                name: name.to_owned(),
                partitions,
                reply,
            })
            .map_err(|_| StreamsError::Embedded("the embedded cluster is shut down".into()))?;
        answer
            .recv()
            .map_err(|_| StreamsError::Embedded("the embedded cluster is shut down".into()))?
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // The owner thread ends when every sender is gone. If admin clones live on elsewhere the
        // cluster keeps serving them and shuts down with the last one; otherwise wait for it, so
        // that its listeners are closed when this returns.
        let last_handle = Arc::strong_count(&self.admin.handles) == 1;
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.admin.requests, closed));
        if let Some(owner) = self.owner.take() {
            if last_handle {
                let _ = owner.join();
            }
        }
    }
}
