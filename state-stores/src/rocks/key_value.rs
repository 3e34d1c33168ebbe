//! A key-value store in one RocksDB database.

use std::path::PathBuf;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use super::{
    ensure_dir, restore_write_options, rocks_error, write_options, Reservation, RocksDbMemory,
};
use crate::error::{Result, StoreError};
use crate::store::{ChangelogRecord, KeyValueBytesStore, KeyValueIter, StateStore};

/// A persistent key-value store: one RocksDB database in its own directory.
pub struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    _reservation: Option<Reservation>,
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .finish()
    }
}

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store `name` in directory `path`, under `memory`'s budget.
    pub fn open(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        memory: &RocksDbMemory,
    ) -> Result<Self> {
        let name = name.into();
        let path = path.into();
        ensure_dir(&path)?;
        let reservation = memory.reserve();
        let db = DB::open(&memory.options(), &path).map_err(|e| rocks_error(&name, &path, e))?;
        Ok(RocksDbKeyValueStore {
            name,
            path,
            db: Some(db),
            _reservation: Some(reservation),
        })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        rocks_error(&self.name, &self.path, e)
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
        self.db()?.flush_wal(true).map_err(|e| self.err(e))
    }
    fn close(&mut self) -> Result<()> {
        if self.db.is_some() {
            self.flush()?;
            self.db = None;
            self._reservation = None;
        }
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
        self.db()?
            .write_opt(batch, &restore_write_options())
            .map_err(|e| self.err(e))
    }
    fn restore_complete(&mut self) -> Result<()> {
        // Restored writes skipped the WAL: persist them in SST files.
        self.db()?.flush().map_err(|e| self.err(e))
    }
}

impl KeyValueBytesStore for RocksDbKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db()?.get(key).map_err(|e| self.err(e))
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db()?
            .put_opt(key, value, &write_options())
            .map_err(|e| self.err(e))
    }
    fn put_all(&mut self, entries: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
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
        let db = self.db()?;
        let old = db.get(key).map_err(|e| self.err(e))?;
        if old.is_some() {
            db.delete_opt(key, &write_options())
                .map_err(|e| self.err(e))?;
        }
        Ok(old)
    }
    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIter<'_>> {
        let db = self.db()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Ok(Box::new(std::iter::empty()));
            }
        }
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
    fn approximate_num_entries(&self) -> Result<u64> {
        Ok(self
            .db()?
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err(e))?
            .unwrap_or(0))
    }
}
