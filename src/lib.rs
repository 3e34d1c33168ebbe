//! # kstreams: Kafka Streams for Rust
//!
//! A library for processing Kafka topics with plain Rust code: a DSL builds a topology of stream
//! and table operators, local state lives in RocksDB stores backed by changelog topics, and an
//! application scales by starting more copies of itself.
//!
//! This facade re-exports the workspace crates:
//!
//! - [`state_stores`]: key-value, window and session stores, serdes;
//! - [`streams_core`]: the runtime, the Processor API and the embedded broker;
//! - [`streams_dsl`]: `StreamsBuilder`, `KStream`, `KTable`.

pub use state_stores;
pub use streams_core;
pub use streams_dsl;

pub use state_stores::serdes;
pub use streams_core::embedded;
pub use streams_core::{Result, StreamsError};

/// The names most applications need, in one import.
pub mod prelude {
    pub use state_stores::serdes::{Serde, Serdes};
    pub use streams_core::embedded::EmbeddedKafka;
    pub use streams_core::{Result, StreamsError};
}
