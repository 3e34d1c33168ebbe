//! State for kstreams: key-value, window and session stores on RocksDB and in memory, with
//! changelogging, caching and metering layers, restoration, committed offsets and state directories.
//!
//! - [`store`]: the byte-level traits of the three store kinds;
//! - [`memory`] and [`rocks`]: implementations, with [`RocksDbMemory`], the one memory budget all
//!   RocksDB stores of a process share;
//! - [`changelog`], [`caching`] and [`metering`]: layers, assembled by [`StoreBuilder`];
//! - [`typed`]: serdes on top, behind a handle tasks and processors share;
//! - `overlay`: how transactional (exactly-once) stores hold an open transaction's writes (see
//!   [`rocks`]);
//! - [`state_dir`]: task directories, and who may touch them;
//! - [`serdes`]: how typed keys and values become bytes.

pub mod builder;
pub mod cache;
pub mod caching;
pub mod changelog;
pub mod error;
pub mod keys;
pub mod memory;
pub mod metering;
pub(crate) mod overlay;
pub mod rocks;
pub mod serdes;
pub mod state_dir;
pub mod store;
pub mod typed;

pub use builder::{Backend, StoreBuilder};
pub use error::{Result, StoreError};
pub use rocks::{RocksDbMemory, DEFAULT_ROCKSDB_MEMORY_BYTES};
pub use serdes::{Serde, SerdeError, Serdes};
pub use store::{
    CacheEmission, ChangelogRecord, KeyValueBytesStore, SessionBytesStore, SessionKey,
    SessionWindow, StateStore, WindowBytesStore, WindowedKey,
};
pub use typed::{KeyValueStore, SessionStore, StoreCell, WindowStore};
