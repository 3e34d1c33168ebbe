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
//!
//! Local state is private: every directory this module creates is `0700` and every file `0600`
//! (on Unix), and the application directory is made `0700` even when it already exists. A lock
//! file records who holds it (process id, thread), so that a [`StoreError::Locked`] names the
//! holder. [`StateDirectory::clean`] deletes only task directories (`<subtopology>_<partition>`
//! and `global`): anything else a user keeps next to them stays.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
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

/// The name of the directory of the global stores.
pub const GLOBAL_TASK_DIR: &str = "global";

/// Whether `name` is a task directory's: `<subtopology>_<partition>` or [`GLOBAL_TASK_DIR`].
pub fn is_task_dir_name(name: &str) -> bool {
    if name == GLOBAL_TASK_DIR {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    name.split_once('_')
        .is_some_and(|(sub, partition)| digits(sub) && digits(partition))
}

/// Creates `path` and its missing parents, each new one private (`0700` on Unix).
pub fn create_private_dir(path: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| StoreError::io(path, e))
}

/// Makes an existing directory of ours private (`0700` on Unix).
fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens (creating, `0600` on Unix) a file for reading and writing, keeping its contents.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `contents` to the file at `path`, private (`0600` on Unix) if it is created.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = open_private(path).map_err(|e| StoreError::io(path, e))?;
    file.set_len(0)
        .and_then(|()| file.write_all(contents.as_bytes()))
        .map_err(|e| StoreError::io(path, e))
}

/// Who this lock holder is, as written into the lock file.
fn holder_description() -> String {
    let thread = std::thread::current();
    format!(
        "process {} (thread {})",
        std::process::id(),
        thread.name().unwrap_or("unnamed")
    )
}

/// Takes the exclusive lock of the file at `path` (created if missing) and records the holder
/// in it; `Err(holder)` with the recorded holder if someone else has it.
fn try_lock(path: &Path) -> Result<std::result::Result<File, String>> {
    let mut file = open_private(path).map_err(|e| StoreError::io(path, e))?;
    match file.try_lock() {
        Ok(()) => {
            // Best effort: the lock, not this note, is what excludes other owners.
            let note = holder_description();
            let _ = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(note.as_bytes()));
            Ok(Ok(file))
        }
        Err(TryLockError::WouldBlock) => {
            let mut note = String::new();
            let _ = file.read_to_string(&mut note);
            let note = note.trim();
            Ok(Err(if note.is_empty() || note.len() > 200 {
                "another owner".to_owned()
            } else {
                note.to_owned()
            }))
        }
        Err(TryLockError::Error(e)) => Err(StoreError::io(path, e)),
    }
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
        create_private_dir(&app_dir)?;
        make_private(&app_dir)?;
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
        create_private_dir(&path)?;
        match try_lock(&path.join(LOCK_FILE))? {
            Ok(lock) => Ok(TaskDirectory {
                task_id: task_id.to_owned(),
                path,
                _lock: lock,
            }),
            Err(holder) => Err(StoreError::Locked { dir: path, holder }),
        }
    }

    /// The identity of the process using this application directory: the one recorded by an
    /// earlier instance, or `fresh` (then recorded). Held until the claim is dropped; while
    /// another live instance holds it, this one gets `fresh` and records nothing.
    pub fn claim_process(&self, fresh: &str) -> Result<ProcessClaim> {
        let Ok(lock) = try_lock(&self.app_dir.join(PROCESS_LOCK_FILE))? else {
            return Ok(ProcessClaim {
                id: fresh.to_owned(),
                _lock: None,
            });
        };
        let id_path = self.app_dir.join(PROCESS_ID_FILE);
        let recorded = std::fs::read_to_string(&id_path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| validate_name("process id", s).is_ok());
        let id = match recorded {
            Some(id) => id,
            None => {
                write_private(&id_path, fresh)?;
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

    /// Deletes every task directory (see [`is_task_dir_name`]) that no one holds; returns the
    /// ids of those it could not delete because they are locked. Other entries stay.
    pub fn clean(&self) -> Result<Vec<String>> {
        let mut locked = Vec::new();
        for id in self.task_ids()? {
            if !is_task_dir_name(&id) {
                tracing::debug!(dir = %self.app_dir.join(&id).display(), "not a task directory; left alone");
                continue;
            }
            match self.lock_task(&id) {
                Ok(task) => task.delete()?,
                Err(StoreError::Locked { .. }) => locked.push(id),
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
    fn a_locked_directory_names_its_holder() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDirectory::new(root.path(), "app").unwrap();
        let held = std::thread::Builder::new()
            .name("holder-thread".into())
            .spawn({
                let dir = dir.clone();
                move || dir.lock_task("0_3").unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        let err = dir.lock_task("0_3").unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id()))
                && err.contains("holder-thread"),
            "{err}"
        );
        drop(held);
    }

    #[test]
    fn clean_deletes_only_task_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDirectory::new(root.path(), "app").unwrap();
        drop(dir.lock_task("0_1").unwrap());
        drop(dir.lock_task("global").unwrap());
        for keep in ["backup", "notes.d", "0_x", "1_2_3"] {
            std::fs::create_dir(dir.path().join(keep)).unwrap();
        }
        std::fs::write(dir.path().join("README"), "mine").unwrap();
        assert!(dir.clean().unwrap().is_empty());
        let mut left = dir.task_ids().unwrap();
        left.sort();
        assert_eq!(left, vec!["0_x", "1_2_3", "backup", "notes.d"]);
        assert!(dir.path().join("README").exists());
    }

    #[cfg(unix)]
    #[test]
    fn state_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("state");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // An application directory left open by someone else is closed again.
        std::fs::create_dir_all(base.join("app")).unwrap();
        std::fs::set_permissions(base.join("app"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let dir = StateDirectory::new(&base, "app").unwrap();
        let task = dir.lock_task("0_0").unwrap();
        let claim = dir.claim_process("p1").unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(task.path()), 0o700);
        assert_eq!(mode(&task.path().join(LOCK_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(PROCESS_LOCK_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(PROCESS_ID_FILE)), 0o600);
        let fresh = StateDirectory::new(root.path().join("new/nested"), "app2").unwrap();
        assert_eq!(mode(&root.path().join("new")), 0o700);
        assert_eq!(mode(fresh.path()), 0o700);
        drop((task, claim));
    }

    #[test]
    fn task_directory_names_are_recognised() {
        for yes in ["0_0", "12_345", "global"] {
            assert!(is_task_dir_name(yes), "{yes}");
        }
        for no in [
            "",
            "_1",
            "1_",
            "a_1",
            "1_2_3",
            "global2",
            "01234567890_1",
            ".lock",
        ] {
            assert!(!is_task_dir_name(no), "{no}");
        }
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
