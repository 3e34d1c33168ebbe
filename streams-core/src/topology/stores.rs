//! Store definitions: what a topology declares about each state store up front, so the runtime
//! can create the store in every task, name and create its changelog topic, and restore it.
//!
//! ```
//! use streams_core::topology::Stores;
//! use state_stores::Serdes;
//!
//! let counts = Stores::key_value("counts", Serdes::string(), Serdes::i64()).with_caching();
//! let recent = Stores::window("recent", Serdes::string(), Serdes::i64(), 3_600_000).in_memory();
//! assert_eq!(counts.name(), "counts");
//! assert!(!recent.is_persistent());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use state_stores::caching::EmitMode;
use state_stores::serdes::Serde;

use crate::dynamic::TypeTag;
use crate::error::Result;
use crate::serde_slot::{DefaultSerdes, ErasedSerde, SerdeSlot};

/// The kind of a store, with its time settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A key-value store.
    KeyValue,
    /// A window store.
    Window {
        /// How long windows are kept after their start, in milliseconds.
        retention_ms: i64,
        /// Segment length for RocksDB (default: half the retention, at least a minute).
        segment_interval_ms: Option<i64>,
    },
    /// A session store.
    Session {
        /// How long sessions are kept after they end, in milliseconds.
        retention_ms: i64,
    },
}

/// Resolves a store's serdes against the configured defaults.
pub(crate) trait StoreSerdes: Send + Sync {
    fn resolve(&self, defaults: &DefaultSerdes, store: &str) -> Result<(ErasedSerde, ErasedSerde)>;
    fn types(&self) -> (TypeTag, TypeTag);
}

struct TypedStoreSerdes<K, V> {
    keys: SerdeSlot<K>,
    values: SerdeSlot<V>,
}

impl<K: 'static, V: 'static> StoreSerdes for TypedStoreSerdes<K, V> {
    fn resolve(&self, defaults: &DefaultSerdes, store: &str) -> Result<(ErasedSerde, ErasedSerde)> {
        Ok((
            ErasedSerde::from_arc(self.keys.resolve(defaults, store)?),
            ErasedSerde::from_arc(self.values.resolve(defaults, store)?),
        ))
    }
    fn types(&self) -> (TypeTag, TypeTag) {
        (TypeTag::of::<K>(), TypeTag::of::<V>())
    }
}

/// A state store as a topology declares it.
#[derive(Clone)]
pub struct StoreDef {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) persistent: bool,
    pub(crate) logging: bool,
    pub(crate) topic_config: BTreeMap<String, String>,
    pub(crate) caching: bool,
    pub(crate) emit: EmitMode,
    pub(crate) serdes: Arc<dyn StoreSerdes>,
}

impl std::fmt::Debug for StoreDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (k, v) = self.serdes.types();
        f.debug_struct("StoreDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("persistent", &self.persistent)
            .field("logging", &self.logging)
            .field("caching", &self.caching)
            .field("key", &k.name())
            .field("value", &v.name())
            .finish()
    }
}

/// Constructors for store definitions: persistent (RocksDB), logged, uncached by default.
#[derive(Debug, Clone, Copy)]
pub struct Stores;

impl Stores {
    /// A store of `kind` whose serdes may be the configured defaults.
    pub fn with_slots<K: 'static, V: 'static>(
        name: impl Into<String>,
        kind: StoreKind,
        keys: SerdeSlot<K>,
        values: SerdeSlot<V>,
    ) -> StoreDef {
        StoreDef {
            name: name.into(),
            kind,
            persistent: true,
            logging: true,
            topic_config: BTreeMap::new(),
            caching: false,
            emit: EmitMode::None,
            serdes: Arc::new(TypedStoreSerdes { keys, values }),
        }
    }

    /// A key-value store.
    pub fn key_value<K: 'static, V: 'static>(
        name: impl Into<String>,
        keys: impl Serde<K>,
        values: impl Serde<V>,
    ) -> StoreDef {
        Self::with_slots(
            name,
            StoreKind::KeyValue,
            SerdeSlot::explicit(keys),
            SerdeSlot::explicit(values),
        )
    }

    /// A window store keeping windows `retention_ms` after their start.
    pub fn window<K: 'static, V: 'static>(
        name: impl Into<String>,
        keys: impl Serde<K>,
        values: impl Serde<V>,
        retention_ms: i64,
    ) -> StoreDef {
        Self::with_slots(
            name,
            StoreKind::Window {
                retention_ms,
                segment_interval_ms: None,
            },
            SerdeSlot::explicit(keys),
            SerdeSlot::explicit(values),
        )
    }

    /// A session store keeping sessions `retention_ms` after they end.
    pub fn session<K: 'static, V: 'static>(
        name: impl Into<String>,
        keys: impl Serde<K>,
        values: impl Serde<V>,
        retention_ms: i64,
    ) -> StoreDef {
        Self::with_slots(
            name,
            StoreKind::Session { retention_ms },
            SerdeSlot::explicit(keys),
            SerdeSlot::explicit(values),
        )
    }
}

impl StoreDef {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store's kind.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Whether it lives in RocksDB (rather than memory).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Whether writes go to a changelog topic.
    pub fn is_logged(&self) -> bool {
        self.logging
    }

    /// Whether a record cache sits in front.
    pub fn is_cached(&self) -> bool {
        self.caching
    }

    /// Keeps the store in memory (rebuilt from its changelog when a task starts).
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Keeps the store in RocksDB (the default).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Puts a record cache in front of the store.
    pub fn with_caching(mut self) -> Self {
        self.caching = true;
        self
    }

    /// Removes the record cache.
    pub fn without_caching(mut self) -> Self {
        self.caching = false;
        self
    }

    /// Turns the changelog off: the store cannot be restored and starts empty when its task moves.
    pub fn without_logging(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Turns the changelog on with extra topic configs (for example `retention.ms`).
    pub fn with_logging(mut self, topic_config: BTreeMap<String, String>) -> Self {
        self.logging = true;
        self.topic_config = topic_config;
        self
    }

    /// What the cache reports about entries it writes down (for processors that forward them).
    pub fn with_emit(mut self, emit: EmitMode) -> Self {
        self.emit = emit;
        self
    }

    /// For window stores: the RocksDB segment length.
    pub fn with_segment_interval(mut self, interval_ms: i64) -> Self {
        if let StoreKind::Window {
            segment_interval_ms,
            ..
        } = &mut self.kind
        {
            *segment_interval_ms = Some(interval_ms);
        }
        self
    }

    /// The changelog topic's name, without the application id prefix.
    pub fn changelog_suffix(&self) -> String {
        format!("{}-changelog", self.name)
    }

    /// The changelog topic's configs. Key-value changelogs are compacted (the runtime sets
    /// `cleanup.policy=compact`). Window and session changelogs are compacted *and* deleted after
    /// the store's retention plus one day (Kafka Streams' default
    /// `windowstore.changelog.additional.retention.ms`), so windows the store no longer keeps
    /// leave the log too. Configs given with [`with_logging`](Self::with_logging) win.
    pub fn changelog_config(&self) -> BTreeMap<String, String> {
        const ADDITIONAL_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
        let mut config = BTreeMap::new();
        let retention = match self.kind {
            StoreKind::KeyValue => None,
            StoreKind::Window { retention_ms, .. } | StoreKind::Session { retention_ms } => {
                Some(retention_ms)
            }
        };
        if let Some(retention) = retention {
            config.insert("cleanup.policy".to_owned(), "compact,delete".to_owned());
            config.insert(
                "retention.ms".to_owned(),
                retention
                    .saturating_add(ADDITIONAL_RETENTION_MS)
                    .to_string(),
            );
        }
        config.extend(self.topic_config.clone());
        config
    }
}
