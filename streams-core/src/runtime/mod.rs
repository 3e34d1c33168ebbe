//! The runtime: [`KafkaStreams`] runs a topology on Kafka in stream threads.
//!
//! - [`kafka_streams`] holds the instance: start (topic checks and creation), state, close,
//!   cleanup, metrics;
//! - [`state`] holds the instance's state machine;
//! - `thread` has the stream thread: its loop, rebalance handling, task lifecycle and commit
//!   protocol;
//! - `handoff` lets a thread's siblings pick up partitions it released;
//! - `restore` rebuilds stores from changelogs;
//! - `global` restores the global stores and runs the global thread keeping them up to date;
//! - `client_log` forwards librdkafka's logs to `tracing`;
//! - `control` carries application-wide shutdown requests between instances;
//! - `producer` owns the producer's lifecycle (the transaction of each commit), and `held` the
//!   records sent while a commit is in flight;
//! - `consumed` reads consumed records' headers and topics out of librdkafka;
//! - `recovery` decides which failures a thread recovers from and which end it;
//! - `topics` checks source topics and creates internal ones;
//! - [`queries`] has the read-only store views of interactive queries;
//! - [`metrics`] names the metrics and writes them as Prometheus text;
//! - [`metadata`] tells which instance owns which key (`application.server`).

pub(crate) mod client_log;
pub(crate) mod consumed;
pub(crate) mod control;
pub(crate) mod cut;
pub(crate) mod global;
pub(crate) mod handoff;
pub(crate) mod held;
pub mod kafka_streams;
pub mod metadata;
pub mod metrics;
pub(crate) mod produce;
pub(crate) mod producer;
pub(crate) mod purge;
pub mod queries;
pub(crate) mod recovery;
pub(crate) mod restore;
pub mod state;
pub(crate) mod thread;
pub(crate) mod topics;

pub use kafka_streams::{KafkaStreams, StreamsMetrics};
pub use state::State;
pub use thread::ThreadMetrics;
