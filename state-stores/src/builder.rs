//! One builder for every store: pick a backend, add the layers you want, build a kind.
//!
//! Layers stack as `Metered<Caching<Logged<inner>>>`: the cache sits above the changelog so that
//! only written-down values are logged (one changelog record per key per flush, not per write),
//! and metering sees what callers see.
//!
//! ```
//! use state_stores::{StoreBuilder, KeyValueBytesStore, StateStore};
//! use state_stores::changelog::{Changelog, MemoryChangelog};
//! use state_stores::caching::{CachingConfig, EmitMode};
//! use state_stores::cache::CacheBudget;
//!
//! let log = MemoryChangelog::new();
//! let mut store = StoreBuilder::in_memory("counts")
//!     .with_logging(Changelog { topic: "app-counts-changelog".into(), partition: 0, sink: log.clone() })
//!     .with_caching(CachingConfig { budget: CacheBudget::new(1 << 20), emit: EmitMode::None })
//!     .build_key_value()
//!     .unwrap();
//! store.put(b"a", b"1").unwrap();
//! store.put(b"a", b"2").unwrap();
//! assert!(log.records().is_empty(), "the cache absorbs writes until a flush");
//! store.flush().unwrap();
//! assert_eq!(log.records().len(), 1, "one changelog record for the latest value");
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use crate::caching::{
    CachingConfig, CachingKeyValueStore, CachingSessionStore, CachingWindowStore,
};
use crate::changelog::{Changelog, LoggedKeyValueStore, LoggedSessionStore, LoggedWindowStore};
use crate::error::{Result, StoreError};
use crate::memory::{InMemoryKeyValueStore, InMemorySessionStore, InMemoryWindowStore};
use crate::metering::{
    MeteredKeyValueStore, MeteredSessionStore, MeteredWindowStore, StoreMetrics,
};
use crate::rocks::{RocksDbKeyValueStore, RocksDbMemory, RocksDbSessionStore, RocksDbWindowStore};
use crate::state_dir::validate_name;
use crate::store::{KeyValueBytesStore, SessionBytesStore, WindowBytesStore};

/// Where a store keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In memory; rebuilt from the changelog when its task starts.
    InMemory,
    /// RocksDB in `path`, under the process's shared memory budget.
    RocksDb {
        /// The store's directory (`<task dir>/<store>`).
        path: PathBuf,
        /// The shared memory budget.
        memory: RocksDbMemory,
    },
}

/// Builds a store of any kind with the chosen backend and layers.
#[derive(Debug, Clone)]
pub struct StoreBuilder {
    name: String,
    backend: Backend,
    changelog: Option<Changelog>,
    caching: Option<CachingConfig>,
    metrics: Option<Arc<StoreMetrics>>,
    transactional: bool,
}

impl StoreBuilder {
    /// A store named `name` on `backend`, with no layers yet.
    pub fn new(name: impl Into<String>, backend: Backend) -> Self {
        StoreBuilder {
            name: name.into(),
            backend,
            changelog: None,
            caching: None,
            metrics: None,
            transactional: false,
        }
    }

    /// An in-memory store.
    pub fn in_memory(name: impl Into<String>) -> Self {
        Self::new(name, Backend::InMemory)
    }

    /// A RocksDB store in `path`.
    pub fn rocksdb(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        memory: &RocksDbMemory,
    ) -> Self {
        Self::new(
            name,
            Backend::RocksDb {
                path: path.into(),
                memory: memory.clone(),
            },
        )
    }

    /// Logs every write to `changelog`.
    pub fn with_logging(mut self, changelog: Changelog) -> Self {
        self.changelog = Some(changelog);
        self
    }

    /// Puts a record cache in front of the store.
    pub fn with_caching(mut self, config: CachingConfig) -> Self {
        self.caching = Some(config);
        self
    }

    /// Makes a RocksDB store transactional: writes wait in memory, where reads see them, until
    /// [`StateStore::commit`](crate::StateStore::commit) applies them atomically with the
    /// changelog offset (exactly-once; see [`crate::rocks`]). In-memory stores ignore it: the
    /// runtime drops them after a failure and rebuilds them from the changelog.
    pub fn transactional(mut self, on: bool) -> Self {
        self.transactional = on;
        self
    }

    /// Records operation counts and latencies into `metrics`.
    pub fn with_metering(mut self, metrics: Arc<StoreMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn check_name(&self) -> Result<()> {
        validate_name("store name", &self.name).map_err(|reason| StoreError::Config {
            store: self.name.clone(),
            reason,
        })
    }

    /// Builds a key-value store.
    pub fn build_key_value(self) -> Result<Box<dyn KeyValueBytesStore>> {
        self.check_name()?;
        let mut store: Box<dyn KeyValueBytesStore> = match &self.backend {
            Backend::InMemory => Box::new(InMemoryKeyValueStore::new(&self.name)),
            Backend::RocksDb { path, memory } if self.transactional => Box::new(
                RocksDbKeyValueStore::open_transactional(&self.name, path, memory)?,
            ),
            Backend::RocksDb { path, memory } => {
                Box::new(RocksDbKeyValueStore::open(&self.name, path, memory)?)
            }
        };
        if let Some(changelog) = self.changelog {
            store = Box::new(LoggedKeyValueStore::new(store, changelog));
        }
        if let Some(caching) = self.caching {
            store = Box::new(CachingKeyValueStore::new(store, caching));
        }
        if let Some(metrics) = self.metrics {
            store = Box::new(MeteredKeyValueStore::new(store, metrics));
        }
        Ok(store)
    }

    /// Builds a window store keeping windows `retention_ms` after their start. RocksDB stores
    /// segment time by `segment_interval_ms` (default: half the retention, at least a minute).
    pub fn build_window(
        self,
        retention_ms: i64,
        segment_interval_ms: Option<i64>,
    ) -> Result<Box<dyn WindowBytesStore>> {
        self.check_name()?;
        check_retention(&self.name, retention_ms)?;
        let interval = segment_interval_ms
            .unwrap_or_else(|| crate::rocks::default_segment_interval(retention_ms));
        let mut store: Box<dyn WindowBytesStore> = match &self.backend {
            Backend::InMemory => Box::new(InMemoryWindowStore::new(&self.name, retention_ms)),
            Backend::RocksDb { path, memory } if self.transactional => {
                Box::new(RocksDbWindowStore::open_transactional(
                    &self.name,
                    path,
                    memory,
                    retention_ms,
                    interval,
                )?)
            }
            Backend::RocksDb { path, memory } => Box::new(RocksDbWindowStore::open(
                &self.name,
                path,
                memory,
                retention_ms,
                interval,
            )?),
        };
        if let Some(changelog) = self.changelog {
            store = Box::new(LoggedWindowStore::new(store, changelog));
        }
        if let Some(caching) = self.caching {
            store = Box::new(CachingWindowStore::new(store, caching));
        }
        if let Some(metrics) = self.metrics {
            store = Box::new(MeteredWindowStore::new(store, metrics));
        }
        Ok(store)
    }

    /// Builds a session store keeping sessions `retention_ms` after they end.
    pub fn build_session(
        self,
        retention_ms: i64,
        segment_interval_ms: Option<i64>,
    ) -> Result<Box<dyn SessionBytesStore>> {
        self.check_name()?;
        check_retention(&self.name, retention_ms)?;
        let interval = segment_interval_ms
            .unwrap_or_else(|| crate::rocks::default_segment_interval(retention_ms));
        let mut store: Box<dyn SessionBytesStore> = match &self.backend {
            Backend::InMemory => Box::new(InMemorySessionStore::new(&self.name, retention_ms)),
            Backend::RocksDb { path, memory } if self.transactional => {
                Box::new(RocksDbSessionStore::open_transactional(
                    &self.name,
                    path,
                    memory,
                    retention_ms,
                    interval,
                )?)
            }
            Backend::RocksDb { path, memory } => Box::new(RocksDbSessionStore::open(
                &self.name,
                path,
                memory,
                retention_ms,
                interval,
            )?),
        };
        if let Some(changelog) = self.changelog {
            store = Box::new(LoggedSessionStore::new(store, changelog));
        }
        if let Some(caching) = self.caching {
            store = Box::new(CachingSessionStore::new(store, caching));
        }
        if let Some(metrics) = self.metrics {
            store = Box::new(MeteredSessionStore::new(store, metrics));
        }
        Ok(store)
    }
}

fn check_retention(store: &str, retention_ms: i64) -> Result<()> {
    if retention_ms < 0 {
        return Err(StoreError::Config {
            store: store.to_owned(),
            reason: format!("retention must not be negative, got {retention_ms} ms"),
        });
    }
    Ok(())
}
