//! The kstreams runtime: physical topologies, the Processor API, tasks and stream threads, the
//! Kafka client layer, commits, restoration and configuration.
//!
//! - [`topology`] builds and describes physical topologies (what the DSL compiles to);
//! - [`processor`] is the Processor API;
//! - [`testing`] has [`TopologyTestDriver`], which runs a topology without Kafka;
//! - [`runtime`] has [`KafkaStreams`], which runs a topology on Kafka;
//! - [`config`] has [`StreamsConfig`]; [`properties`] reads it from Kafka Streams properties files;
//! - [`timestamps`] says where event time comes from;
//! - [`embedded`] is an in-process Kafka cluster for examples and quick tests;
//! - `http` (cargo feature `http`) serves metrics, health and key lookups over HTTP.

pub mod collector;
pub mod config;
pub mod dead_letter;
pub(crate) mod dynamic;
pub mod embedded;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod handlers;
#[cfg(feature = "http")]
pub mod http;
pub mod processor;
pub mod properties;
pub mod record;
pub mod runtime;
pub mod serde_slot;
pub(crate) mod task;
pub mod testing;
pub mod timestamps;
pub mod topology;

pub use config::{ProcessingGuarantee, StreamsConfig};
pub use dynamic::TypeTag;
pub use error::{Result, StreamsError};
pub use processor::{Processor, ProcessorContext, ProcessorResult, PunctuationType};
pub use record::{Headers, Record, RecordMetadata};
pub use runtime::{KafkaStreams, State};
pub use serde_slot::SerdeSlot;
pub use task::{TaskId, TaskMetrics};
pub use testing::TopologyTestDriver;
pub use timestamps::{InvalidTimestampPolicy, RecordTimestamp, WallClockTimestamp};
pub use topology::{Topology, TopologyBuilder};
