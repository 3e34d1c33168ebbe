//! Errors of the state layer. Every variant names the store, file or directory it is about.

use std::path::PathBuf;

use crate::serdes::SerdeError;

/// A `Result` whose error is [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong in a state store, its changelog, checkpoint or state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("RocksDB error in store `{store}` at {}: {source}", path.display())]
    RocksDb {
        /// The store's name.
        store: String,
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },

    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another owner in this one) holds the task directory's lock.
    #[error(
        "state directory {} is locked by {holder}; another instance with the same \
         application.id and state.dir is running, or one has not released the task yet",
        dir.display()
    )]
    Locked {
        /// The locked task directory.
        dir: PathBuf,
        /// Who holds it, as its lock file records: process id, host and thread.
        holder: String,
    },

    /// A changelog record could not be applied during restoration.
    #[error("store `{store}`: changelog record at offset {offset} cannot be restored: {reason}")]
    CorruptChangelog {
        /// The store being restored.
        store: String,
        /// The record's offset in the changelog partition.
        offset: i64,
        /// What is wrong with it.
        reason: String,
    },

    /// The committed changelog offset a store keeps (its checkpoint) could not be read; the
    /// store must be rebuilt from its changelog.
    #[error("the checkpoint in {} is corrupt: {reason}", path.display())]
    CorruptCheckpoint {
        /// The store's directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A key or value in a typed store could not be (de)serialized.
    #[error("store `{store}`: {source}")]
    Serde {
        /// The store's name.
        store: String,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },

    /// The store was used after it was closed.
    #[error("store `{store}` is closed")]
    Closed {
        /// The store's name.
        store: String,
    },

    /// The store was used again while this thread was already inside it (for example from a
    /// processor that forwarded a record while iterating over the store it reads).
    #[error(
        "store `{store}` is already in use on this thread; finish with an iterator before \
         forwarding records that reach a processor using the same store"
    )]
    Reentrant {
        /// The store's name.
        store: String,
    },

    /// The changelog sink refused a record.
    #[error("store `{store}`: writing to changelog `{topic}` failed: {reason}")]
    Changelog {
        /// The store's name.
        store: String,
        /// The changelog topic.
        topic: String,
        /// The sink's error.
        reason: String,
    },

    /// A store was configured inconsistently.
    #[error("store `{store}` is misconfigured: {reason}")]
    Config {
        /// The store's name.
        store: String,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
