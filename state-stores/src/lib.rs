//! State for kstreams: key-value, window and session stores on RocksDB and in memory, with
//! changelogging, caching and metering layers, restoration, checkpoints and state directories.
//!
//! - [`serdes`]: how typed keys and values become bytes.

pub mod error;
pub mod serdes;

pub use error::{Result, StoreError};
pub use serdes::{Serde, SerdeError, Serdes};
