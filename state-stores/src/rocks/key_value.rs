//! A key-value store in one RocksDB database.
//!
//! User entries live in the default column family; the changelog offset the store was last
//! committed at lives in a column family of its own ([`META_FAMILY`]), so no user key can collide
//! with it. In transactional mode, writes wait in an [`Overlay`] until [`StateStore::commit`]
//! (two of them: pending, and sealed for the commit in flight).

use std::ops::Bound;
use std::path::PathBuf;

use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use super::{
    decode_offset, drop_uncommitted, ensure_dir, restore_write_options, rocks_error, start_flush,
    write_options, Reservation, RocksDbMemory, OFFSET_KEY,
};
use crate::error::{Result, StoreError};
use crate::overlay::{MergeIter, Overlay};
use crate::store::{ChangelogRecord, KeyValueBytesStore, KeyValueIter, StateStore};

/// The column family that holds the store's metadata (its committed changelog offset).
const META_FAMILY: &str = "kstreams.meta";

/// A persistent key-value store: one RocksDB database in its own directory.
pub struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    /// Whether writes wait in `pending` until a commit (exactly-once).
    transactional: bool,
    pending: Overlay,
    /// Writes sealed for the commit in flight; the next `commit` applies them.
    sealed: Overlay,
    /// The changelog offset recorded by the last commit.
    offset: Option<i64>,
    /// Restored records were written without the WAL and are not in SST files yet: they must be
    /// before an offset may be recorded after them.
    restored_unflushed: bool,
    _reservation: Option<Reservation>,
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .field("transactional", &self.transactional)
            .field("offset", &self.offset)
            .finish()
    }
}

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store `name` in directory `path`, under `memory`'s budget.
    /// Writes reach the database at once.
    pub fn open(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        memory: &RocksDbMemory,
    ) -> Result<Self> {
        Self::open_with(name.into(), path.into(), memory, false)
    }

    /// Opens the store in transactional mode: writes wait in memory (where reads see them) until
    /// [`StateStore::commit`] applies them together with the changelog offset, and
    /// [`StateStore::close_dirty`] drops them. See [`crate::rocks`].
    pub fn open_transactional(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        memory: &RocksDbMemory,
    ) -> Result<Self> {
        Self::open_with(name.into(), path.into(), memory, true)
    }

    /// Opens it, transactional or not.
    pub(crate) fn open_with(
        name: String,
        path: PathBuf,
        memory: &RocksDbMemory,
        transactional: bool,
    ) -> Result<Self> {
        ensure_dir(&path)?;
        let reservation = memory.reserve();
        let db = DB::open_cf(&memory.options(), &path, ["default", META_FAMILY])
            .map_err(|e| rocks_error(&name, &path, e))?;
        let offset = {
            let meta = db
                .cf_handle(META_FAMILY)
                .ok_or_else(|| StoreError::Config {
                    store: name.clone(),
                    reason: format!(
                        "column family {META_FAMILY} is missing in {}",
                        path.display()
                    ),
                })?;
            let raw = db
                .get_cf(meta, OFFSET_KEY)
                .map_err(|e| rocks_error(&name, &path, e))?;
            decode_offset(&name, &path, raw)?
        };
        Ok(RocksDbKeyValueStore {
            name,
            path,
            db: Some(db),
            transactional,
            pending: Overlay::default(),
            sealed: Overlay::default(),
            offset,
            restored_unflushed: false,
            _reservation: Some(reservation),
        })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })
    }

    fn meta(&self) -> Result<&ColumnFamily> {
        self.db()?
            .cf_handle(META_FAMILY)
            .ok_or_else(|| StoreError::Closed {
                store: self.name.clone(),
            })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        rocks_error(&self.name, &self.path, e)
    }

    fn db_range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        let db = self.db()?;
        let mut options = ReadOptions::default();
        if let Some(to) = to {
            // The upper bound is exclusive; the smallest key after `to` is `to ++ [0]`.
            let mut bound = to.to_vec();
            bound.push(0);
            options.set_iterate_upper_bound(bound);
        }
        let mode = match from {
            Some(from) => IteratorMode::From(from, Direction::Forward),
            None => IteratorMode::Start,
        };
        let name = self.name.clone();
        let path = self.path.clone();
        Ok(Box::new(db.iterator_opt(mode, options).map(move |item| {
            item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                .map_err(|e| rocks_error(&name, &path, e))
        })))
    }
}

impl StateStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        true
    }
    fn flush(&mut self) -> Result<()> {
        if self.transactional {
            return Ok(()); // nothing may reach the disk before the commit
        }
        self.db()?.flush_wal(true).map_err(|e| self.err(e))
    }
    fn close(&mut self) -> Result<()> {
        if self.db.is_some() {
            drop_uncommitted(&self.name, [&mut self.pending, &mut self.sealed]);
            self.db()?.flush_wal(true).map_err(|e| self.err(e))?;
            self.db = None;
            self._reservation = None;
        }
        Ok(())
    }
    fn close_dirty(&mut self) -> Result<()> {
        self.pending.clear();
        self.sealed.clear();
        self.db = None;
        self._reservation = None;
        Ok(())
    }
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for record in records {
            match &record.value {
                Some(value) => batch.put(&record.key, value),
                None => batch.delete(&record.key),
            }
        }
        self.restored_unflushed = true;
        self.db()?
            .write_opt(batch, &restore_write_options())
            .map_err(|e| self.err(e))
    }
    fn restore_complete(&mut self) -> Result<()> {
        // Restored writes skipped the WAL: they must be in SST files before a commit records
        // an offset past them. Start writing them now, in the background, and let the task run:
        // the next commit waits for the flush to end.
        start_flush(self.db()?, []).map_err(|e| self.err(e))
    }
    fn prepare_commit(&mut self) -> Result<()> {
        self.sealed.absorb(std::mem::take(&mut self.pending));
        Ok(())
    }
    fn commit(&mut self, changelog_offset: Option<i64>) -> Result<()> {
        if self.restored_unflushed {
            self.db()?.flush().map_err(|e| self.err(e))?;
            self.restored_unflushed = false;
        }
        if self.sealed.is_empty() && (changelog_offset.is_none() || changelog_offset == self.offset)
        {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in self.sealed.iter() {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        if let Some(offset) = changelog_offset {
            batch.put_cf(self.meta()?, OFFSET_KEY, offset.to_be_bytes());
        }
        self.db()?
            .write_opt(batch, &write_options())
            .map_err(|e| self.err(e))?;
        // A commit that returned survives a killed process: the log leaves the process now.
        self.db()?.flush_wal(false).map_err(|e| self.err(e))?;
        self.sealed.clear();
        if changelog_offset.is_some() {
            self.offset = changelog_offset;
        }
        Ok(())
    }
    fn committed_offset(&self) -> Result<Option<i64>> {
        Ok(self.offset)
    }
    fn uncommitted_bytes(&self) -> usize {
        self.pending.bytes() + self.sealed.bytes()
    }
}

impl KeyValueBytesStore for RocksDbKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(pending) = self.pending.get(key).or_else(|| self.sealed.get(key)) {
            return Ok(pending.map(<[u8]>::to_vec));
        }
        self.db()?.get(key).map_err(|e| self.err(e))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.transactional {
            self.db()?; // a closed store refuses writes in both modes
            self.pending.put(key, Some(value));
            return Ok(());
        }
        self.db()?
            .put_opt(key, value, &write_options())
            .map_err(|e| self.err(e))
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        if self.transactional {
            self.db()?;
            for (key, value) in entries {
                self.pending.put(key, value.as_deref());
            }
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (key, value) in entries {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        self.db()?
            .write_opt(batch, &write_options())
            .map_err(|e| self.err(e))
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.get(key)?;
        if old.is_some() {
            if self.transactional {
                self.pending.put(key, None);
            } else {
                self.db()?
                    .delete_opt(key, &write_options())
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(old)
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Ok(Box::new(std::iter::empty()));
            }
        }
        let mut merged = self.db_range(from, to)?;
        let upper = to.map_or(Bound::Unbounded, Bound::Included);
        for layer in [&self.sealed, &self.pending] {
            if !layer.is_empty() {
                merged = Box::new(MergeIter::new(layer.range(from, upper), merged));
            }
        }
        Ok(merged)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        let stored = self
            .db()?
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err(e))?
            .unwrap_or(0);
        Ok(stored + (self.pending.len() + self.sealed.len()) as u64)
    }
}
