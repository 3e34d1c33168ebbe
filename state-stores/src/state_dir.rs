//! The state directory: `<state.dir>/<application.id>/<task-id>/<store>`, one lock per task.
//!
//! A task directory is owned through a [`TaskDirectory`], which holds an exclusive lock on its
//! `.lock` file for as long as it lives. The lock is per open file, so a second owner, whether
//! another process or another thread of this one, gets [`StoreError::Locked`] naming the directory
//! instead of two writers corrupting one store. Dropping the `TaskDirectory` (or the process dying)
//! releases it.
//!
//! The application directory also holds the identity of the process that uses it
//! ([`StateDirectory::claim_process`]): an instance restarted on the same state directory takes
//! the same identity (and so, under exactly-once, the same transactional ids, which aborts what
//! its previous incarnation left open at once). The claim is a lock too, so two live instances
//! never share an identity.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

const LOCK_FILE: &str = ".lock";
const PROCESS_LOCK_FILE: &str = ".process.lock";
const PROCESS_ID_FILE: &str = "kstreams-process-id";

/// Checks that `name` can be used as a directory and inside topic names: ASCII letters, digits,
/// `.`, `_` and `-`, at most 200 characters, not `.` or `..`.
pub fn validate_name(kind: &str, name: &str) -> std::result::Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 200
        || name == "."
        || name == ".."
        || !name.chars().all(legal)
    {
        return Err(format!(
            "{kind} `{name}` must be 1 to 200 characters of ASCII letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// The state directory of one application.
#[derive(Debug, Clone)]
pub struct StateDirectory {
    app_dir: PathBuf,
}

impl StateDirectory {
    /// `<state_dir>/<application_id>`, created if missing.
    pub fn new(state_dir: impl AsRef<Path>, application_id: &str) -> Result<Self> {
        validate_name("application.id", application_id).map_err(|reason| StoreError::Config {
            store: "*".into(),
            reason,
        })?;
        let app_dir = state_dir.as_ref().join(application_id);
        std::fs::create_dir_all(&app_dir).map_err(|e| StoreError::io(&app_dir, e))?;
        Ok(StateDirectory { app_dir })
    }

    /// The application's directory.
    pub fn path(&self) -> &Path {
        &self.app_dir
    }

    /// Takes the lock of task `task_id`'s directory, creating it if needed.
    pub fn lock_task(&self, task_id: &str) -> Result<TaskDirectory> {
        validate_name("task id", task_id).map_err(|reason| StoreError::Config {
            store: "*".into(),
            reason,
        })?;
        let path = self.app_dir.join(task_id);
        std::fs::create_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => Ok(TaskDirectory {
                task_id: task_id.to_owned(),
                path,
                _lock: lock,
            }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked { dir: path }),
            Err(TryLockError::Error(e)) => Err(StoreError::io(&lock_path, e)),
        }
    }

    /// The identity of the process using this application directory: the one recorded by an
    /// earlier instance, or `fresh` (then recorded). Held until the claim is dropped; while
    /// another live instance holds it, this one gets `fresh` and records nothing.
    pub fn claim_process(&self, fresh: &str) -> Result<ProcessClaim> {
        let lock_path = self.app_dir.join(PROCESS_LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Ok(ProcessClaim {
                    id: fresh.to_owned(),
                    _lock: None,
                })
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let id_path = self.app_dir.join(PROCESS_ID_FILE);
        let recorded = std::fs::read_to_string(&id_path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| validate_name("process id", s).is_ok());
        let id = match recorded {
            Some(id) => id,
            None => {
                std::fs::write(&id_path, fresh).map_err(|e| StoreError::io(&id_path, e))?;
                fresh.to_owned()
            }
        };
        Ok(ProcessClaim {
            id,
            _lock: Some(lock),
        })
    }

    /// Ids of the tasks that have a directory here.
    pub fn task_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries =
            std::fs::read_dir(&self.app_dir).map_err(|e| StoreError::io(&self.app_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.app_dir, e))?;
            if entry.path().is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Deletes every task directory that no one holds; returns the ids of those it could not
    /// delete because they are locked.
    pub fn clean(&self) -> Result<Vec<String>> {
        let mut locked = Vec::new();
        for id in self.task_ids()? {
            match self.lock_task(&id) {
                Ok(task) => task.delete()?,
                Err(StoreError::Locked { .. }) => locked.push(id),
                Err(StoreError::Config { .. }) => {
                    // Not a task directory of ours; leave it alone.
                }
                Err(e) => return Err(e),
            }
        }
        Ok(locked)
    }
}

/// A process's claim on an application directory; see [`StateDirectory::claim_process`].
#[derive(Debug)]
pub struct ProcessClaim {
    id: String,
    _lock: Option<File>,
}

impl ProcessClaim {
    /// The process identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this claim holds the directory (and so reuses and records the identity).
    pub fn is_held(&self) -> bool {
        self._lock.is_some()
    }
}

/// An owned (locked) task directory. The lock is released on drop.
#[derive(Debug)]
pub struct TaskDirectory {
    task_id: String,
    path: PathBuf,
    _lock: File,
}

impl TaskDirectory {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of store `store`.
    pub fn store_path(&self, store: &str) -> PathBuf {
        self.path.join(store)
    }

    /// Deletes the task's stores (with the offsets they were committed at), keeping the
    /// directory and the lock: for state that must be rebuilt from the changelog.
    pub fn wipe(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.path, e))?;
            let path = entry.path();
            if entry.file_name() == LOCK_FILE {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(())
    }

    /// Deletes the whole directory and releases the lock.
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path).map_err(|e| StoreError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_with_the_directory_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDirectory::new(root.path(), "app").unwrap();
        let first = dir.lock_task("0_1").unwrap();
        let err = dir.lock_task("0_1").unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(
            err.to_string()
                .contains(&root.path().join("app").join("0_1").display().to_string()),
            "{err}"
        );
        drop(first);
        let again = dir.lock_task("0_1").unwrap();
        assert_eq!(
            again.store_path("counts"),
            root.path().join("app/0_1/counts")
        );
    }

    #[test]
    fn clean_skips_locked_tasks() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDirectory::new(root.path(), "app").unwrap();
        let held = dir.lock_task("0_0").unwrap();
        drop(dir.lock_task("0_1").unwrap());
        assert_eq!(dir.clean().unwrap(), vec!["0_0".to_owned()]);
        assert_eq!(dir.task_ids().unwrap(), vec!["0_0".to_owned()]);
        drop(held);
    }

    #[test]
    fn the_process_identity_survives_restarts_and_is_never_shared() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDirectory::new(root.path(), "app").unwrap();
        let first = dir.claim_process("p1").unwrap();
        assert_eq!(first.id(), "p1");
        assert!(first.is_held());
        let concurrent = dir.claim_process("p2").unwrap();
        assert_eq!(
            concurrent.id(),
            "p2",
            "a second live instance gets its own identity"
        );
        assert!(!concurrent.is_held());
        drop((first, concurrent));
        let restarted = dir.claim_process("p3").unwrap();
        assert_eq!(
            restarted.id(),
            "p1",
            "a restart takes the recorded identity"
        );
        assert_eq!(
            dir.task_ids().unwrap(),
            Vec::<String>::new(),
            "not a task directory"
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("store", "counts-store.v2_x").is_ok());
        assert!(validate_name("store", "../etc").is_err());
        assert!(validate_name("store", "a b").is_err());
        assert!(validate_name("store", "").is_err());
    }
}
