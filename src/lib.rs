//! # kstreams: Kafka Streams for Rust
//!
//! A library for processing Kafka topics with plain Rust code: a DSL builds a topology of stream
//! and table operators, local state lives in RocksDB stores backed by changelog topics, and an
//! application scales by starting more copies of itself.
//!
//! ```no_run
//! use kstreams::prelude::*;
//!
//! fn main() -> kstreams::Result<()> {
//!     let builder = StreamsBuilder::new();
//!     builder
//!         .stream::<(), Option<String>>("lines", Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())))
//!         .flat_map_values(|line| line.unwrap_or_default().split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
//!         .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
//!         .count(Materialized::as_("counts"))
//!         .to_stream()
//!         .to("word-counts", Produced::with(Serdes::string(), Serdes::option(Serdes::i64())));
//!
//!     let config = StreamsConfig::new("wordcount").set("bootstrap.servers", "localhost:9092");
//!     let streams = KafkaStreams::new(builder.build()?, config)?;
//!     streams.start()?;
//!     // ... until it is time to stop:
//!     streams.close(std::time::Duration::from_secs(30));
//!     Ok(())
//! }
//! ```
//!
//! The workspace crates, re-exported here:
//!
//! - [`state_stores`]: key-value, window and session stores, serdes;
//! - [`streams_core`]: the runtime, the Processor API, the test driver and the embedded broker;
//! - [`streams_dsl`]: `StreamsBuilder`, `KStream`, `KTable`.

pub use state_stores;
pub use streams_core;
pub use streams_dsl;

pub use state_stores::serdes;
pub use streams_core::dead_letter;
pub use streams_core::embedded;
pub use streams_core::handlers;
/// The HTTP layer: metrics, health and key lookups forwarded to their owner (feature `http`).
#[cfg(feature = "http")]
pub use streams_core::http;
pub use streams_core::processor;
pub use streams_core::runtime::metadata;
pub use streams_core::runtime::metrics;
pub use streams_core::runtime::queries;
pub use streams_core::testing;
pub use streams_core::topology;
pub use streams_core::{
    KafkaStreams, ProcessingGuarantee, Record, Result, State, StreamsConfig, StreamsError,
    Topology, TopologyTestDriver,
};
pub use streams_dsl::{
    Branched, Change, Consumed, GlobalKTable, Grouped, JoinWindows, Joined, KGroupedStream,
    KGroupedTable, KStream, KTable, Materialized, Named, Produced, Repartitioned, StreamJoined,
    StreamsBuilder, TableJoined,
};

/// The names most applications need, in one import.
pub mod prelude {
    pub use state_stores::serdes::{Serde, Serdes};
    pub use streams_core::embedded::EmbeddedKafka;
    pub use streams_core::runtime::queries::QueryableStoreTypes;
    pub use streams_core::topology::Stores;
    pub use streams_core::{
        KafkaStreams, Result, State, StreamsConfig, StreamsError, Topology, TopologyTestDriver,
    };
    pub use streams_dsl::prelude::*;
}
