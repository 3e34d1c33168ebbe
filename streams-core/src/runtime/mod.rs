//! The runtime: [`KafkaStreams`] runs a topology on Kafka in stream threads.
//!
//! - [`kafka_streams`] holds the instance: start (topic checks and creation), state, close,
//!   cleanup, metrics;
//! - [`state`] holds the instance's state machine;
//! - `thread` has the stream thread's loop and its rebalance handling;
//! - `restore` rebuilds stores from changelogs;
//! - `producer` owns the producer's lifecycle (the commit path for both guarantees);
//! - `topics` checks source topics and creates internal ones.

pub mod kafka_streams;
pub(crate) mod producer;
pub(crate) mod restore;
pub mod state;
pub(crate) mod thread;
pub(crate) mod topics;

pub use kafka_streams::{KafkaStreams, StreamsMetrics};
pub use state::State;
pub use thread::ThreadMetrics;
