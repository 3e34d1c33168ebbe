//! Restoration, committed offsets and task locks, as the runtime uses them.

use std::collections::BTreeMap;
use std::process::Command;

use state_stores::changelog::{Changelog, MemoryChangelog};
use state_stores::keys;
use state_stores::metering::StoreMetrics;
use state_stores::state_dir::StateDirectory;
use state_stores::{ChangelogRecord, KeyValueBytesStore, RocksDbMemory, StoreBuilder, StoreError};

const TOPIC: &str = "app-counts-changelog";

fn logged(
    dir: &std::path::Path,
    memory: &RocksDbMemory,
    log: &std::sync::Arc<MemoryChangelog>,
) -> Box<dyn KeyValueBytesStore> {
    StoreBuilder::rocksdb("counts", dir, memory)
        .with_logging(Changelog {
            topic: TOPIC.into(),
            partition: 0,
            sink: log.clone(),
        })
        .build_key_value()
        .expect("open store")
}

fn contents(store: &dyn KeyValueBytesStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .all()
        .expect("all")
        .map(|r| r.expect("entry"))
        .collect()
}

/// A restarted task reads the offset its store was committed at and restores only the changelog
/// records after it.
#[test]
fn reopening_after_a_commit_restores_only_the_tail() {
    let root = tempfile::tempdir().expect("tempdir");
    let state = StateDirectory::new(root.path(), "app").expect("state dir");
    let memory = RocksDbMemory::new(32 << 20).expect("budget");
    let log = MemoryChangelog::new();
    let mut oracle = BTreeMap::new();

    // Run 1: write, commit (flush + offset), write more, then stop without committing.
    {
        let task = state.lock_task("0_0").expect("lock");
        let mut store = logged(&task.store_path("counts"), &memory, &log);
        assert_eq!(store.committed_offset().expect("offset"), None);
        for i in 0..1000u32 {
            let (k, v) = (
                format!("k{}", i % 300).into_bytes(),
                i.to_be_bytes().to_vec(),
            );
            store.put(&k, &v).expect("put");
            oracle.insert(k, v);
        }
        store.flush().expect("flush");
        store.prepare_commit().expect("seal");
        store
            .commit(Some(log.records().len() as i64))
            .expect("commit");
        for i in 1000..1250u32 {
            let k = format!("k{}", i % 400).into_bytes();
            if i % 7 == 0 {
                store.delete(&k).expect("delete");
                oracle.remove(&k);
            } else {
                let v = i.to_be_bytes().to_vec();
                store.put(&k, &v).expect("put");
                oracle.insert(k, v);
            }
        }
        // No close and no commit for these writes: what a crash leaves behind.
    }

    // Run 2: open the store again and restore from its offset to the end of the changelog.
    let task = state.lock_task("0_0").expect("lock again");
    let metrics = StoreMetrics::new();
    let mut store = StoreBuilder::rocksdb("counts", task.store_path("counts"), &memory)
        .with_metering(metrics.clone())
        .build_key_value()
        .expect("reopen");
    let from = store
        .committed_offset()
        .expect("offset")
        .expect("committed offset");
    assert_eq!(from, 1000);
    let tail: Vec<ChangelogRecord> = log
        .records()
        .into_iter()
        .filter(|r| r.offset >= from)
        .collect();
    for batch in tail.chunks(64) {
        store.restore_batch(batch).expect("restore");
    }
    store.commit(Some(1250)).expect("commit after restore");
    assert_eq!(
        metrics.restored_records(),
        250,
        "only the tail after the committed offset is restored"
    );
    assert_eq!(contents(store.as_ref()), oracle);
    assert_eq!(store.committed_offset().expect("offset"), Some(1250));
}

/// Under exactly-once the store is transactional: writes of a transaction that never committed
/// are gone after a crash, whatever reached the changelog, and the committed offset is where the
/// last commit left it.
#[test]
fn a_crash_leaves_a_transactional_store_at_its_last_commit() {
    let root = tempfile::tempdir().expect("tempdir");
    let memory = RocksDbMemory::new(32 << 20).expect("budget");
    let path = root.path().join("sums");
    let log = MemoryChangelog::new();
    {
        let mut store = StoreBuilder::rocksdb("sums", &path, &memory)
            .transactional(true)
            .with_logging(Changelog {
                topic: TOPIC.into(),
                partition: 0,
                sink: log.clone(),
            })
            .build_key_value()
            .expect("open");
        store.put(b"old", b"1").expect("put");
        store.flush().expect("flush");
        store.prepare_commit().expect("seal");
        store.commit(Some(1)).expect("commit");
        store.put(b"new", b"7").expect("put");
        store.put(b"old", b"2").expect("put");
        assert_eq!(store.get(b"new").expect("get"), Some(b"7".to_vec()));
        assert!(store.uncommitted_bytes() > 0);
        store.flush().expect("a flush is not a commit");
        // Killed before the transaction committed.
    }
    let store = StoreBuilder::rocksdb("sums", &path, &memory)
        .transactional(true)
        .build_key_value()
        .expect("reopen");
    assert_eq!(store.committed_offset().expect("offset"), Some(1));
    assert_eq!(
        contents(store.as_ref()),
        BTreeMap::from([(b"old".to_vec(), b"1".to_vec())]),
        "nothing of the open transaction"
    );
    assert_eq!(
        log.records().len(),
        3,
        "the changelog saw them (the broker aborts them)"
    );
}

/// A store whose recorded offset is not 8 bytes is reported as a corrupt checkpoint naming the
/// store, so the runtime can wipe and rebuild it.
#[test]
fn a_malformed_offset_is_a_corrupt_checkpoint() {
    let root = tempfile::tempdir().expect("tempdir");
    let memory = RocksDbMemory::new(16 << 20).expect("budget");
    let path = root.path().join("sums");
    drop(
        StoreBuilder::rocksdb("sums", &path, &memory)
            .build_key_value()
            .expect("create"),
    );
    {
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let db =
            rocksdb::DB::open_cf(&opts, &path, ["default", "kstreams.meta"]).expect("raw open");
        let meta = db.cf_handle("kstreams.meta").expect("meta family");
        db.put_cf(meta, b"kstreams.changelog-offset", b"xyz")
            .expect("put");
    }
    let Err(err) = StoreBuilder::rocksdb("sums", &path, &memory).build_key_value() else {
        panic!("a malformed offset must not open");
    };
    assert!(
        matches!(err, StoreError::CorruptCheckpoint { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`sums`"), "{err}");
}

/// A changelog record that is not a valid windowed key fails restoration with the store's name and
/// the record's offset.
#[test]
fn an_undecodable_changelog_record_names_the_store_and_offset() {
    let root = tempfile::tempdir().expect("tempdir");
    let memory = RocksDbMemory::new(16 << 20).expect("budget");
    let good = ChangelogRecord {
        offset: 41,
        key: keys::window_key(b"user", 1000),
        value: Some(b"1".to_vec()),
    };
    let bad = ChangelogRecord {
        offset: 42,
        key: b"not a window key".to_vec(),
        value: Some(b"2".to_vec()),
    };
    for rocksdb in [false, true] {
        let builder = if rocksdb {
            StoreBuilder::rocksdb("clicks", root.path().join("clicks"), &memory)
        } else {
            StoreBuilder::in_memory("clicks")
        };
        let mut store = builder.build_window(60_000, None).expect("window store");
        let err = store
            .restore_batch(&[good.clone(), bad.clone()])
            .expect_err("corrupt record");
        assert!(
            matches!(err, StoreError::CorruptChangelog { offset: 42, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("`clicks`") && message.contains("offset 42"),
            "{message}"
        );

        let mut sessions = if rocksdb {
            StoreBuilder::rocksdb("sessions", root.path().join("sessions"), &memory)
        } else {
            StoreBuilder::in_memory("sessions")
        }
        .build_session(60_000, None)
        .expect("session store");
        let err = sessions
            .restore_batch(std::slice::from_ref(&bad))
            .expect_err("corrupt record");
        assert!(
            err.to_string().contains("`sessions`") && err.to_string().contains("offset 42"),
            "{err}"
        );
    }
}

const CHILD_ENV: &str = "KSTREAMS_LOCK_PROBE_DIR";

/// Run as a child process by the test below: tries to lock task 0_0 and reports the outcome.
#[test]
fn lock_probe_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of `a_second_process_cannot_open_a_locked_task`
    };
    let state = StateDirectory::new(&dir, "app").expect("state dir");
    match state.lock_task("0_0") {
        Ok(_) => println!("PROBE: locked"),
        Err(e) => println!("PROBE: refused: {e}"),
    }
}

#[test]
fn a_second_process_cannot_open_a_locked_task() {
    let root = tempfile::tempdir().expect("tempdir");
    let state = StateDirectory::new(root.path(), "app").expect("state dir");
    let probe = || {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "lock_probe_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, root.path())
            .output()
            .expect("run child");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let held = state.lock_task("0_0").expect("lock");
    let answer = probe();
    let task_dir = root.path().join("app").join("0_0");
    assert!(answer.contains("PROBE: refused"), "{answer}");
    assert!(
        answer.contains(&task_dir.display().to_string()),
        "the error names the directory: {answer}"
    );
    drop(held);
    assert!(
        probe().contains("PROBE: locked"),
        "the lock is released with its owner"
    );
}

const KILL_ENV: &str = "KSTREAMS_RESTORE_KILL_DIR";
const RESTORED: i64 = 20_000;

/// Writes after the last commit in the `commit-write` kill step.
const AFTER: u32 = 5_000;

fn after_key(i: u32) -> Vec<u8> {
    format!("after-{i:05}").into_bytes()
}

fn restored_record(offset: i64) -> ChangelogRecord {
    ChangelogRecord {
        offset,
        key: format!("key-{}", offset % 7_000).into_bytes(),
        value: (offset % 11 != 0).then(|| offset.to_be_bytes().to_vec()),
    }
}

/// What the changelog of [`RESTORED`] records leaves in a store.
fn restored_oracle() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut oracle = BTreeMap::new();
    for offset in 0..RESTORED {
        let r = restored_record(offset);
        match r.value {
            Some(v) => oracle.insert(r.key, v),
            None => oracle.remove(&r.key),
        };
    }
    oracle
}

/// Runs the test `child` of this binary in its own process with `env`, and checks that it
/// printed `done` and then died (it aborts, as under SIGKILL).
fn run_to_kill(child: &str, env: &[(&str, &std::ffi::OsStr)], done: &str) {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(done) && !out.status.success(),
        "the child {child} ran to its kill: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run as a child process by the test below: restores the changelog into a RocksDB store (whose
/// restored writes skip the WAL), then, as `KSTREAMS_RESTORE_KILL_STEP` says, commits or not,
/// and dies without closing anything, as under SIGKILL.
#[test]
fn restore_kill_child() {
    let Ok(dir) = std::env::var(KILL_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let step = std::env::var("KSTREAMS_RESTORE_KILL_STEP").unwrap_or_default();
    let memory = RocksDbMemory::new(32 << 20).expect("budget");
    let mut store = StoreBuilder::rocksdb("counts", &dir, &memory)
        .build_key_value()
        .expect("open store");
    let records: Vec<ChangelogRecord> = (0..RESTORED).map(restored_record).collect();
    for batch in records.chunks(2_000) {
        store.restore_batch(batch).expect("restore");
    }
    match step.as_str() {
        // Restoration finished (its flush only started), and the process died before any commit.
        "complete" => store.restore_complete().expect("complete"),
        // Restoration finished, and the first commit recorded the offset.
        "complete-commit" => {
            store.restore_complete().expect("complete");
            store.commit(Some(RESTORED)).expect("commit");
        }
        // A revoked task's clean close commits what it restored, without completing.
        "commit" => store.commit(Some(RESTORED)).expect("commit"),
        // Processing went on after the first commit: writes that no commit covers yet, some of
        // them still in the process's WAL buffer when it dies.
        "commit-write" => {
            store.restore_complete().expect("complete");
            store.commit(Some(RESTORED)).expect("commit");
            for i in 0..AFTER {
                store
                    .put(&after_key(i), &i.to_be_bytes())
                    .expect("write after the commit");
            }
        }
        other => panic!("unknown step {other}"),
    }
    println!("CHILD: {step} done");
    std::process::abort();
}

/// A store killed after restoring either recorded no offset (and restores again from the
/// start) or holds every record up to the offset it recorded: a commit never records an offset
/// past restored records that are not on disk yet. Writes after the last commit survive as a
/// prefix, in the order they were made (the WAL is buffered in the process; a prefix is what a
/// store restored from its changelog tail can build on).
#[test]
fn a_kill_after_restoring_never_leaves_an_offset_past_lost_records() {
    let oracle = restored_oracle();
    for step in ["complete", "complete-commit", "commit", "commit-write"] {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("counts");
        run_to_kill(
            "restore_kill_child",
            &[
                (KILL_ENV, path.as_os_str()),
                ("KSTREAMS_RESTORE_KILL_STEP", step.as_ref()),
            ],
            &format!("CHILD: {step} done"),
        );
        let memory = RocksDbMemory::new(32 << 20).expect("budget");
        let mut store = StoreBuilder::rocksdb("counts", &path, &memory)
            .build_key_value()
            .expect("reopen");
        match store.committed_offset().expect("offset") {
            None => {
                assert_eq!(
                    step, "complete",
                    "a commit that returned recorded its offset"
                );
                let records: Vec<ChangelogRecord> = (0..RESTORED).map(restored_record).collect();
                store.restore_batch(&records).expect("restore again");
                store.restore_complete().expect("complete");
            }
            Some(offset) => assert_eq!(offset, RESTORED, "{step}"),
        }
        let mut got = contents(store.as_ref());
        let after: Vec<Vec<u8>> = got
            .keys()
            .filter(|k| k.starts_with(b"after-"))
            .cloned()
            .collect();
        let survived = after.len() as u32;
        assert_eq!(
            after,
            (0..survived).map(after_key).collect::<Vec<_>>(),
            "writes after the commit survive as a prefix ({step})"
        );
        got.retain(|k, _| !k.starts_with(b"after-"));
        assert_eq!(got, oracle, "after {step}");
    }
}

const WINDOW_KILL_ENV: &str = "KSTREAMS_WINDOW_KILL_DIR";

/// Run as a child process by the test below: a window store commits two windows of its first
/// segment, updates one of them, then sees a time that expires the segment, and dies without
/// closing anything, as under SIGKILL.
#[test]
fn window_kill_child() {
    let Ok(dir) = std::env::var(WINDOW_KILL_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let memory = RocksDbMemory::new(32 << 20).expect("budget");
    let mut store = StoreBuilder::rocksdb("windows", &dir, &memory)
        .build_window(100, Some(50))
        .expect("open store");
    store.put(b"v", 20, Some(b"v-committed")).expect("put");
    store.put(b"w", 10, Some(b"w-committed")).expect("put");
    store.commit(Some(1)).expect("commit");
    // Logged at changelog offset 1, after the commit.
    store.put(b"w", 10, Some(b"w-updated")).expect("put");
    // Stream time 500: the retention floor (400) passes the first segment, which is dropped.
    store.put(b"x", 500, Some(b"x")).expect("put");
    println!("CHILD: window done");
    std::process::abort();
}

/// A window store killed after a segment expired, before its next commit, keeps the segment
/// expired: restoring the changelog tail after its offset (an update of one of the segment's
/// windows) must not bring back that window while the segment's other windows stay lost.
#[test]
fn a_kill_after_a_segment_expired_never_brings_part_of_it_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("windows");
    run_to_kill(
        "window_kill_child",
        &[(WINDOW_KILL_ENV, path.as_os_str())],
        "CHILD: window done",
    );
    let memory = RocksDbMemory::new(32 << 20).expect("budget");
    let mut store = StoreBuilder::rocksdb("windows", &path, &memory)
        .build_window(100, Some(50))
        .expect("reopen");
    assert_eq!(store.committed_offset().expect("offset"), Some(1));
    // The changelog after offset 1 holds the update of `w` (the record at time 500 was never
    // delivered, say).
    store
        .restore_batch(&[ChangelogRecord {
            offset: 1,
            key: keys::window_key(b"w", 10),
            value: Some(b"w-updated".to_vec()),
        }])
        .expect("restore");
    store.restore_complete().expect("complete");
    let v = store.fetch(b"v", 20).expect("fetch v");
    let w = store.fetch(b"w", 10).expect("fetch w");
    assert_eq!(
        (v.as_deref(), w.as_deref()),
        (None, None),
        "the expired segment stays expired, not half restored"
    );
}
