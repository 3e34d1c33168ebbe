//! The kstreams runtime: physical topologies, the Processor API, tasks and stream threads, the
//! Kafka client layer, commits, restoration and configuration.

pub mod embedded;
pub mod error;

pub use error::{Result, StreamsError};
