//! RocksDB implementations of the three store kinds, and the one memory budget they share.
//!
//! Every RocksDB instance in a process draws on one [`RocksDbMemory`]: a shared LRU block cache,
//! and a write-buffer manager that charges memtables to that same cache and stalls writers when
//! they would exceed it. Each open store also reserves [`PER_STORE_RESERVE`] of the budget for
//! what RocksDB allocates outside its cache (the database's own structures, file buffers, flush
//! and compaction work), and the cache shrinks by that much (down to a quarter of the budget).
//! So 64 stores (say, 16 tasks x 4 stores) fit the same budget as one, which is what Kafka
//! Streams' per-store defaults cannot promise.
//!
//! # Durability and the committed offset
//!
//! Each store records, inside its own database, the changelog offset it was last committed at
//! ([`StateStore::commit`](crate::StateStore::commit)): a restart restores only the changelog from
//! there. Writes go to the write-ahead log, which is buffered in the process (up to 64 KiB) and
//! written to its file when the buffer fills or a [`commit`](crate::StateStore::commit) returns;
//! [`flush`](crate::StateStore::flush) also syncs it. A killed process loses at most the writes
//! after its last commit that were still buffered, and a power loss what the kernel had not
//! written; either way RocksDB recovers a prefix of the log, and an offset is written after the
//! data it describes, so the offset never runs ahead of the data: the store restores the rest
//! from its changelog.
//!
//! A store opened *transactional* (exactly-once) keeps the writes of the open transaction in
//! memory (an overlay that reads see) and applies them at the commit, in one write batch with the offset:
//! the database never holds writes of a transaction that did not commit.
//!
//! Restoration writes through the bulk path with the WAL off and flushes memtables at the end
//! ([`restore_complete`](crate::StateStore::restore_complete)), and before any offset is recorded
//! after restored records.
//!
//! Window and session stores keep one column family per time segment, so expiring a segment is
//! dropping a column family: its files are deleted without reading a record.

mod key_value;
mod segmented;

pub use key_value::RocksDbKeyValueStore;
pub use segmented::{default_segment_interval, RocksDbSessionStore, RocksDbWindowStore};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager, WriteOptions,
};

use crate::error::{Result, StoreError};

/// The default memory budget for all RocksDB stores of a process: 128 MiB.
pub const DEFAULT_ROCKSDB_MEMORY_BYTES: usize = 128 << 20;

/// The smallest budget accepted: below this RocksDB stalls writers nearly all the time.
pub const MIN_ROCKSDB_MEMORY_BYTES: usize = 8 << 20;

/// Memory a memtable holds as soon as it has one entry (its first arena blocks).
const MIN_MEMTABLE_BYTES: usize = 256 << 10;

/// What each open RocksDB store reserves of the budget for memory RocksDB keeps outside its cache
/// (measured with `benches/state_memory.rs`: about 190 KiB to open a database and as much again in
/// flush and compaction work under load). The cache never shrinks below a quarter of the budget,
/// so a budget holds while it is at least about two thirds of a MiB per open store; below that
/// the stores' fixed cost exceeds it.
pub const PER_STORE_RESERVE: usize = 512 << 10;

/// One memory budget shared by every RocksDB store of a process: a block cache with memtables
/// (up to half of it) charged against it, sized to what is left of the budget after each open
/// store's reserve. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct RocksDbMemory {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    cache: Cache,
    write_buffers: WriteBufferManager,
    total_bytes: usize,
    open_stores: AtomicUsize,
    resizing: Mutex<()>,
}

impl std::fmt::Debug for RocksDbMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbMemory")
            .field("total_bytes", &self.inner.total_bytes)
            .field("open_stores", &self.open_stores())
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

/// A store's claim on the budget; released when the store closes.
pub(crate) struct Reservation {
    memory: RocksDbMemory,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.inner.open_stores.fetch_sub(1, Ordering::AcqRel);
        self.memory.resize();
    }
}

impl RocksDbMemory {
    /// A budget of `total_bytes` for all RocksDB memory of the process.
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
        let cache = Cache::new_lru_cache(total_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            total_bytes / 2,
            true,
            cache.clone(),
        );
        RocksDbMemory {
            inner: Arc::new(MemoryInner {
                cache,
                write_buffers,
                total_bytes,
                open_stores: AtomicUsize::new(0),
                resizing: Mutex::new(()),
            }),
        }
    }

    /// The budget in bytes.
    pub fn total_bytes(&self) -> usize {
        self.inner.total_bytes
    }

    /// The block cache's capacity now: the budget less the open stores' reserves.
    pub fn cache_bytes(&self) -> usize {
        let total = self.inner.total_bytes;
        total
            .saturating_sub(self.open_stores() * PER_STORE_RESERVE)
            .max(total / 4)
    }

    /// The part of the cache memtables may hold now: half of it, and at least room for every
    /// open store's smallest memtable.
    pub fn write_buffer_bytes(&self) -> usize {
        let cache = self.cache_bytes();
        (cache / 2).max((self.open_stores() * MIN_MEMTABLE_BYTES).min(cache))
    }

    /// Stores open under this budget.
    pub fn open_stores(&self) -> usize {
        self.inner.open_stores.load(Ordering::Acquire)
    }

    /// Bytes in use now: cached blocks, index and filter blocks, and memtables.
    pub fn usage(&self) -> usize {
        self.inner.cache.get_usage()
    }

    /// Bytes held by memtables now.
    pub fn write_buffer_usage(&self) -> usize {
        self.inner.write_buffers.get_usage()
    }

    fn resize(&self) {
        let _serial = self
            .inner
            .resizing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let cache_bytes = self.cache_bytes();
        let mut cache = self.inner.cache.clone();
        cache.set_capacity(cache_bytes);
        self.inner
            .write_buffers
            .set_buffer_size(self.write_buffer_bytes());
    }

    /// Claims a store's reserve; the cache shrinks accordingly until the reservation drops.
    pub(crate) fn reserve(&self) -> Reservation {
        self.inner.open_stores.fetch_add(1, Ordering::AcqRel);
        self.resize();
        Reservation {
            memory: self.clone(),
        }
    }

    /// Options for one store's database under this budget.
    pub(crate) fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        // Index and filter blocks live in the cache too, so they count against the budget.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        table.set_block_size(16 << 10);

        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.inner.write_buffers);
        // Each memtable may grow to an eighth of the memtable budget (1 to 16 MiB); the manager
        // flushes the largest ones when their sum nears the budget.
        options.set_write_buffer_size((self.inner.total_bytes / 16).clamp(1 << 20, 16 << 20));
        options.set_max_write_buffer_number(3);
        // Memtables grow in arena blocks; RocksDB's default (an eighth of the memtable) makes
        // 64 stores reserve their whole share of the budget before holding any data, and the
        // write-buffer manager then flushes and stalls without end. Small blocks keep
        // reservation close to use.
        options.set_arena_block_size(64 << 10);
        // Each file being written (the WAL, a flush, a compaction) buffers up to this much;
        // RocksDB's 1 MiB default is 64 MiB outside the budget for 64 stores' WALs alone.
        options.set_writable_file_max_buffer_size(64 << 10);
        // The WAL is written to its file when that buffer fills or a flush asks, not once per
        // write: a window cache evicting entry by entry made a `write` system call per record
        // (a sixth of the hopping-window thread). See the module docs on what a kill loses.
        options.set_manual_wal_flush(true);
        // Every database keeps an info log; at the default level it dumps all options on open
        // and statistics every few minutes. Warnings and errors are what an operator needs.
        options.set_log_level(rocksdb::LogLevel::Warn);
        options.set_keep_log_file_num(2);
        options.set_stats_dump_period_sec(0);
        options.set_stats_persist_period_sec(0);
        // Like Kafka Streams: the changelog is the source of truth; CPU goes to processing.
        options.set_compression_type(DBCompressionType::None);
        options.set_max_background_jobs(2);
        options.set_max_total_wal_size(64 << 20);
        options
    }
}

/// Where a store keeps its committed changelog offset (8 bytes, big-endian).
pub(crate) const OFFSET_KEY: &[u8] = b"kstreams.changelog-offset";

/// Reads a stored changelog offset; anything but 8 bytes is a corrupt store.
pub(crate) fn decode_offset(store: &str, path: &Path, raw: Option<Vec<u8>>) -> Result<Option<i64>> {
    match raw {
        None => Ok(None),
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(b) => Ok(Some(i64::from_be_bytes(b))),
            Err(_) => Err(StoreError::CorruptCheckpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "store `{store}` holds a committed changelog offset of {} bytes, not 8",
                    bytes.len()
                ),
            }),
        },
    }
}

/// A clean close with writes still held back: they were never committed, so they are dropped
/// (the runtime closes cleanly only after a commit; this is for other callers).
pub(crate) fn drop_uncommitted(store: &str, layers: [&mut crate::overlay::Overlay; 2]) {
    let uncommitted: usize = layers.iter().map(|l| l.len()).sum();
    if uncommitted > 0 {
        tracing::warn!(
            store,
            writes = uncommitted,
            "closing with uncommitted writes; they are dropped"
        );
        for layer in layers {
            layer.clear();
        }
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

/// Starts flushing `db`'s memtables (the default column family and `families`) to SST files in
/// the background, without waiting. A later [`rocksdb::DB::flush`] (or `flush_cf`) waits for these too:
/// RocksDB flushes a column family's memtables in order.
pub(crate) fn start_flush<'a>(
    db: &rocksdb::DB,
    families: impl IntoIterator<Item = &'a rocksdb::ColumnFamily>,
) -> std::result::Result<(), rocksdb::Error> {
    let mut options = rocksdb::FlushOptions::default();
    options.set_wait(false);
    db.flush_opt(&options)?;
    for cf in families {
        db.flush_cf_opt(cf, &options)?;
    }
    Ok(())
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
