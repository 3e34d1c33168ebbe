//! Per-task checkpoint files: the changelog offset up to which each store's local state is known
//! to be durable.
//!
//! The offset recorded for a changelog partition is the *next* offset to restore from: the offset
//! of the last record reflected in the store, plus one. A task that opens its stores with a
//! checkpoint restores only from there to the end of the changelog.
//!
//! The file is text, in Kafka Streams' layout (version, count, then one `topic partition offset`
//! line per entry), written to a temporary file, synced, and renamed over the old one, so a crash
//! leaves either the old checkpoint or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

const VERSION: u32 = 0;

/// Changelog offsets of a task's stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    offsets: BTreeMap<(String, i32), i64>,
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Checkpoint::default()
    }

    /// Reads `path`; a missing file is an empty checkpoint.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::new()),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let corrupt = |reason: String| StoreError::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let mut lines = text.lines();
        let version: u32 = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| corrupt("missing version line".into()))?;
        if version != VERSION {
            return Err(corrupt(format!("unknown version {version}")));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| corrupt("missing entry count".into()))?;
        let mut offsets = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [topic, partition, offset] = fields.as_slice() else {
                return Err(corrupt(format!(
                    "line {} is not `topic partition offset`",
                    i + 3
                )));
            };
            let partition = partition
                .parse()
                .map_err(|_| corrupt(format!("bad partition on line {}", i + 3)))?;
            let offset = offset
                .parse()
                .map_err(|_| corrupt(format!("bad offset on line {}", i + 3)))?;
            offsets.insert(((*topic).to_owned(), partition), offset);
        }
        if offsets.len() != count {
            return Err(corrupt(format!(
                "expected {count} entries, found {}",
                offsets.len()
            )));
        }
        Ok(Checkpoint { offsets })
    }

    /// Writes the checkpoint to `path` atomically and durably.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = format!("{VERSION}\n{}\n", self.offsets.len());
        for ((topic, partition), offset) in &self.offsets {
            text.push_str(&format!("{topic} {partition} {offset}\n"));
        }
        let tmp = tmp_path(path);
        let mut file = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable.
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// Removes the file at `path`, if any.
    pub fn delete(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// The next offset to restore `topic`-`partition` from.
    pub fn offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_owned(), partition)).copied()
    }

    /// Records the next offset to restore `topic`-`partition` from.
    pub fn set(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.offsets
            .insert((topic.to_owned(), partition), next_offset);
    }

    /// Forgets `topic`-`partition`.
    pub fn remove(&mut self, topic: &str, partition: i32) {
        self.offsets.remove(&(topic.to_owned(), partition));
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Every entry: `((topic, partition), next offset)`.
    pub fn entries(&self) -> impl Iterator<Item = (&(String, i32), &i64)> {
        self.offsets.iter()
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".checkpoint");
        assert!(Checkpoint::read(&path).unwrap().is_empty());
        let mut cp = Checkpoint::new();
        cp.set("app-counts-changelog", 3, 1234);
        cp.set("app-other-changelog", 0, 0);
        cp.write(&path).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap(), cp);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\n2\napp-counts-changelog 3 1234\napp-other-changelog 0 0\n"
        );
        Checkpoint::delete(&path).unwrap();
        assert!(Checkpoint::read(&path).unwrap().is_empty());
    }

    #[test]
    fn corruption_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".checkpoint");
        std::fs::write(&path, "0\n2\ntopic 1 5\n").unwrap();
        let err = Checkpoint::read(&path).unwrap_err().to_string();
        assert!(
            err.contains(".checkpoint") && err.contains("expected 2 entries"),
            "{err}"
        );
        std::fs::write(&path, "0\n1\ntopic x 5\n").unwrap();
        assert!(Checkpoint::read(&path).is_err());
    }
}
