//! RocksDB implementations of the three store kinds, and the one memory budget they share.
//!
//! Every RocksDB instance in a process draws on one [`RocksDbMemory`]: a shared LRU block cache,
//! and a write-buffer manager that charges memtables to that same cache and stalls writers when
//! they would exceed it. So 64 stores (say, 16 tasks x 4 stores) fit the same budget as one,
//! which is what Kafka Streams' per-store defaults cannot promise.
//!
//! # Durability
//!
//! Writes go to the write-ahead log without syncing it; [`flush`](crate::StateStore::flush) syncs
//! the WAL, so once it returns every write before it survives a crash and a checkpoint written
//! afterwards is safe. Restoration writes through the bulk path with the WAL off and flushes
//! memtables once at the end ([`restore_complete`](crate::StateStore::restore_complete)).
//!
//! Window and session stores keep one column family per time segment, so expiring a segment is
//! dropping a column family: its files are deleted without reading a record.

mod key_value;
mod segmented;

pub use key_value::RocksDbKeyValueStore;
pub use segmented::{default_segment_interval, RocksDbSessionStore, RocksDbWindowStore};

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager, WriteOptions,
};

use crate::error::{Result, StoreError};

/// The default memory budget for all RocksDB stores of a process: 128 MiB, of which at most half
/// holds memtables.
pub const DEFAULT_ROCKSDB_MEMORY_BYTES: usize = 128 << 20;

/// The smallest budget accepted: below this RocksDB stalls writers nearly all the time.
pub const MIN_ROCKSDB_MEMORY_BYTES: usize = 8 << 20;

/// One memory budget shared by every RocksDB store of a process: a block cache of `total_bytes`,
/// with memtables (up to `write_buffer_bytes`) charged against it. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct RocksDbMemory {
    cache: Cache,
    write_buffers: WriteBufferManager,
    total_bytes: usize,
    write_buffer_bytes: usize,
}

impl std::fmt::Debug for RocksDbMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbMemory")
            .field("total_bytes", &self.total_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("usage", &self.usage())
            .finish()
    }
}

impl Default for RocksDbMemory {
    fn default() -> Self {
        // The default is above the minimum, so this cannot fail.
        Self::build(DEFAULT_ROCKSDB_MEMORY_BYTES)
    }
}

impl RocksDbMemory {
    /// A budget of `total_bytes` for block cache and memtables together; memtables may use up to
    /// half of it.
    pub fn new(total_bytes: usize) -> Result<Self> {
        if total_bytes < MIN_ROCKSDB_MEMORY_BYTES {
            return Err(StoreError::Config {
                store: "*".into(),
                reason: format!(
                    "the RocksDB memory budget must be at least {MIN_ROCKSDB_MEMORY_BYTES} bytes, not {total_bytes}"
                ),
            });
        }
        Ok(Self::build(total_bytes))
    }

    fn build(total_bytes: usize) -> Self {
        let write_buffer_bytes = total_bytes / 2;
        let cache = Cache::new_lru_cache(total_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes,
            true,
            cache.clone(),
        );
        RocksDbMemory {
            cache,
            write_buffers,
            total_bytes,
            write_buffer_bytes,
        }
    }

    /// The budget in bytes.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The part of the budget memtables may hold.
    pub fn write_buffer_bytes(&self) -> usize {
        self.write_buffer_bytes
    }

    /// Bytes in use now: cached blocks, index and filter blocks, and memtables.
    pub fn usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes held by memtables now.
    pub fn write_buffer_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    /// Options for one store's database under this budget.
    pub(crate) fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Index and filter blocks live in the cache too, so they count against the budget.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        table.set_block_size(16 << 10);

        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.write_buffers);
        // Each memtable may grow to an eighth of the memtable budget (1 to 16 MiB); the manager
        // flushes the largest ones when their sum nears the budget.
        options.set_write_buffer_size((self.write_buffer_bytes / 8).clamp(1 << 20, 16 << 20));
        options.set_max_write_buffer_number(3);
        // Like Kafka Streams: the changelog is the source of truth; CPU goes to processing.
        options.set_compression_type(DBCompressionType::None);
        options.set_max_background_jobs(2);
        options.set_max_total_wal_size(64 << 20);
        options
    }
}

/// Write options for normal writes: through the WAL, not synced (flush syncs it).
pub(crate) fn write_options() -> WriteOptions {
    WriteOptions::default()
}

/// Write options for restoration: the bulk path, WAL off.
pub(crate) fn restore_write_options() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    options
}

/// Wraps a RocksDB error with the store and its directory.
pub(crate) fn rocks_error(store: &str, path: &Path, source: rocksdb::Error) -> StoreError {
    StoreError::RocksDb {
        store: store.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the store's directory (and parents).
pub(crate) fn ensure_dir(path: &PathBuf) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| StoreError::io(path, e))
}
