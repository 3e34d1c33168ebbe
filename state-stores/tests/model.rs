//! Model-based tests: random operation sequences on every implementation and layer stack, checked
//! against a `BTreeMap` oracle after every operation. Sequences include close and reopen, restoring
//! a fresh store from the changelog the store itself wrote, time moving past retention, commits,
//! and crashes: a transactional (exactly-once) store comes back exactly as of its last commit, and
//! the changelog loses the aborted transaction's records as a `read_committed` reader would; a
//! non-transactional one comes back with what reached it, once the changelog tail after its
//! committed offset is restored.
//!
//! Case counts: `PROPTEST_CASES` (default 256 per kind).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use state_stores::cache::CacheBudget;
use state_stores::caching::{CachingConfig, EmitMode};
use state_stores::changelog::{Changelog, ChangelogSink};
use state_stores::metering::StoreMetrics;
use state_stores::store::retention_floor;
use state_stores::{
    ChangelogRecord, KeyValueBytesStore, RocksDbMemory, SessionBytesStore, SessionWindow,
    StateStore, StoreBuilder, WindowBytesStore,
};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// One layer stack.
#[derive(Debug, Clone, Copy)]
struct Stack {
    rocksdb: bool,
    /// RocksDB in transactional mode (exactly-once).
    transactional: bool,
    logging: bool,
    /// `None`: no cache; `Some(bytes)`: a cache with that budget (small ones force evictions).
    cache_bytes: Option<usize>,
    metering: bool,
}

impl Stack {
    fn transactional(&self) -> bool {
        self.rocksdb && self.transactional
    }
}

fn stack() -> impl Strategy<Value = Stack> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(400usize)), Just(Some(1 << 20))],
        any::<bool>(),
    )
        .prop_map(
            |(rocksdb, transactional, logging, cache_bytes, metering)| Stack {
                rocksdb,
                transactional,
                logging,
                cache_bytes,
                metering,
            },
        )
}

/// A changelog partition with transactions: records get increasing offsets; an abort removes
/// the records sent since the last commit (their offsets stay used, as in Kafka).
#[derive(Debug, Default)]
struct TxnLog {
    inner: std::sync::Mutex<TxnLogInner>,
}

#[derive(Debug, Default)]
struct TxnLogInner {
    records: Vec<ChangelogRecord>,
    next_offset: i64,
    committed_len: usize,
}

impl ChangelogSink for TxnLog {
    fn send(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let mut log = self.inner.lock().expect("changelog lock");
        let offset = log.next_offset;
        log.next_offset += 1;
        log.records.push(ChangelogRecord {
            offset,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        });
        Ok(())
    }
}

impl TxnLog {
    fn records(&self) -> Vec<ChangelogRecord> {
        self.inner.lock().expect("changelog lock").records.clone()
    }
    /// Commits the open transaction; returns the next offset (what a store records).
    fn commit(&self) -> i64 {
        let mut log = self.inner.lock().expect("changelog lock");
        log.committed_len = log.records.len();
        log.next_offset += 1; // the commit marker
        log.next_offset
    }
    fn abort(&self) {
        let mut log = self.inner.lock().expect("changelog lock");
        let len = log.committed_len;
        log.records.truncate(len);
        log.next_offset += 1; // the abort marker
    }
}

/// Builds stores of one stack, again and again (reopen), writing to one changelog.
struct Harness {
    stack: Stack,
    dir: tempfile::TempDir,
    memory: RocksDbMemory,
    changelog: Arc<TxnLog>,
    generation: usize,
    /// The offset of the last commit.
    committed: Option<i64>,
}

impl Harness {
    fn new(stack: Stack) -> Self {
        Harness {
            stack,
            dir: tempfile::tempdir().expect("tempdir"),
            memory: RocksDbMemory::new(16 << 20).expect("budget"),
            changelog: Arc::default(),
            generation: 0,
            committed: None,
        }
    }

    fn builder(&self) -> StoreBuilder {
        let mut b = if self.stack.rocksdb {
            StoreBuilder::rocksdb("store", self.dir.path().join("store"), &self.memory)
                .transactional(self.stack.transactional)
        } else {
            StoreBuilder::in_memory("store")
        };
        if self.stack.logging {
            b = b.with_logging(Changelog {
                topic: "app-store-changelog".into(),
                partition: 0,
                sink: self.changelog.clone(),
            });
        }
        if let Some(bytes) = self.stack.cache_bytes {
            b = b.with_caching(CachingConfig {
                budget: CacheBudget::new(bytes),
                emit: EmitMode::NewAndOld,
            });
        }
        if self.stack.metering {
            b = b.with_metering(StoreMetrics::new());
        }
        b
    }

    /// A fresh store with no layers, in a new place: the target of a restore.
    fn bare(&mut self) -> StoreBuilder {
        self.generation += 1;
        if self.stack.rocksdb {
            let path = self
                .dir
                .path()
                .join(format!("restored-{}", self.generation));
            StoreBuilder::rocksdb("restored", path, &self.memory)
        } else {
            StoreBuilder::in_memory("restored")
        }
    }

    /// Whether closing and reopening keeps the data (on disk, or rebuilt from the changelog).
    fn reopen_keeps_data(&self) -> bool {
        self.stack.rocksdb || self.stack.logging
    }

    /// Restores `store` from the whole changelog in batches of `batch`.
    fn restore_into(&self, store: &mut dyn StateStore, batch: usize) {
        self.restore_from(store, None, batch);
    }

    /// Restores `store` from the changelog records at or after `from` (all without it).
    fn restore_from(&self, store: &mut dyn StateStore, from: Option<i64>, batch: usize) {
        let records: Vec<ChangelogRecord> = self
            .changelog
            .records()
            .into_iter()
            .filter(|r| from.is_none_or(|f| r.offset >= f))
            .collect();
        for chunk in records.chunks(batch.max(1)) {
            store.restore_batch(chunk).expect("restore batch");
        }
        store.restore_complete().expect("restore complete");
    }

    /// What the runtime does at a commit: flush (caches write down), seal the writes, the
    /// transaction commits, then the store records the changelog offset (with the sealed writes).
    fn commit(&mut self, store: &mut dyn StateStore) {
        let offset = self.start_commit(store);
        self.finish_commit(store, offset);
    }

    /// The first half of a pipelined commit: flush, seal, the Kafka commit.
    fn start_commit(&mut self, store: &mut dyn StateStore) -> i64 {
        store.flush().expect("flush");
        store.prepare_commit().expect("prepare commit");
        self.changelog.commit()
    }

    /// The second half: the store applies what was sealed, with the offset.
    fn finish_commit(&mut self, store: &mut dyn StateStore, offset: i64) {
        store.commit(Some(offset)).expect("commit");
        self.committed = Some(offset);
    }

    /// A clean close: transactional stores commit first (the runtime closes cleanly only after
    /// a commit), then close.
    fn close(&mut self, store: &mut dyn StateStore) {
        if self.stack.transactional() {
            self.commit(store);
        }
        store.close().expect("close");
    }

    /// A crash of a transactional store's process: the open transaction aborts and the store
    /// is dropped without closing. Returns whether the stack supports it.
    fn crash(&mut self, store: &dyn StateStore) -> bool {
        if !self.stack.transactional() {
            return false;
        }
        self.changelog.abort();
        let _ = store;
        true
    }

    /// After reopening a crashed transactional store: its offset is the last commit's and the
    /// changelog after it has nothing committed, so there is nothing to restore.
    fn recover(&self, store: &mut dyn StateStore) -> Result<(), TestCaseError> {
        let offset = store.committed_offset().expect("committed offset");
        prop_assert_eq!(offset, self.committed, "the offset of the last commit");
        self.restore_from(store, offset, 3);
        Ok(())
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, 0..3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

// ---------------------------------------------------------------- key-value

#[derive(Debug, Clone)]
enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    PutIfAbsent(Vec<u8>, Vec<u8>),
    /// Read-and-write in one operation: appends the byte to the value (an absent value reads as
    /// empty), or deletes the key with `None`.
    Update(Vec<u8>, Option<u8>),
    PutAll(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Range(Option<Vec<u8>>, Option<Vec<u8>>),
    Prefix(Vec<u8>),
    Flush,
    Reopen,
    RestoreCopy(usize),
    Commit,
    /// A commit during which processing goes on: this write lands between the seal and the
    /// store's commit, and belongs to the next transaction.
    PipelinedCommit(Vec<u8>, Vec<u8>),
    Crash,
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| KvOp::Put(k, v)),
        2 => (key(), value()).prop_map(|(k, v)| KvOp::PutIfAbsent(k, v)),
        4 => (key(), prop_oneof![4 => any::<u8>().prop_map(Some), 1 => Just(None)]).prop_map(|(k, b)| KvOp::Update(k, b)),
        1 => proptest::collection::vec((key(), proptest::option::of(value())), 0..4).prop_map(KvOp::PutAll),
        3 => key().prop_map(KvOp::Delete),
        3 => key().prop_map(KvOp::Get),
        2 => (proptest::option::of(key()), proptest::option::of(key())).prop_map(|(a, b)| KvOp::Range(a, b)),
        1 => key().prop_map(KvOp::Prefix),
        1 => Just(KvOp::Flush),
        1 => Just(KvOp::Reopen),
        1 => (1usize..5).prop_map(KvOp::RestoreCopy),
        2 => Just(KvOp::Commit),
        2 => (key(), value()).prop_map(|(k, v)| KvOp::PipelinedCommit(k, v)),
        1 => Just(KvOp::Crash),
    ]
}

fn kv_contents(store: &dyn KeyValueBytesStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .all()
        .expect("all")
        .collect::<Result<Vec<_>, _>>()
        .expect("iterate")
}

fn run_kv(stack: Stack, ops: Vec<KvOp>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(stack);
    let mut store = h.builder().build_key_value().expect("build");
    let mut oracle: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut committed = oracle.clone();
    for op in ops {
        match op {
            KvOp::Put(k, v) => {
                store.put(&k, &v).expect("put");
                oracle.insert(k, v);
            }
            KvOp::PutIfAbsent(k, v) => {
                let got = store.put_if_absent(&k, &v).expect("put_if_absent");
                prop_assert_eq!(got.as_ref(), oracle.get(&k));
                oracle.entry(k).or_insert(v);
            }
            KvOp::Update(k, byte) => {
                let mut seen = None;
                let mut calls = 0;
                store
                    .update(&k, &mut |old| {
                        calls += 1;
                        seen = Some(old.map(<[u8]>::to_vec));
                        Ok(byte.map(|b| {
                            let mut v = old.unwrap_or_default().to_vec();
                            v.push(b);
                            v
                        }))
                    })
                    .expect("update");
                prop_assert_eq!(calls, 1);
                prop_assert_eq!(seen, Some(oracle.get(&k).cloned()));
                match byte {
                    Some(b) => oracle.entry(k).or_default().push(b),
                    None => {
                        oracle.remove(&k);
                    }
                }
            }
            KvOp::PutAll(entries) => {
                store.put_all(&entries).expect("put_all");
                for (k, v) in entries {
                    match v {
                        Some(v) => oracle.insert(k, v),
                        None => oracle.remove(&k),
                    };
                }
            }
            KvOp::Delete(k) => {
                let got = store.delete(&k).expect("delete");
                prop_assert_eq!(got, oracle.remove(&k));
            }
            KvOp::Get(k) => {
                prop_assert_eq!(store.get(&k).expect("get"), oracle.get(&k).cloned());
            }
            KvOp::Range(from, to) => {
                let got: Vec<_> = store
                    .range(from.as_deref(), to.as_deref())
                    .expect("range")
                    .collect::<Result<_, _>>()
                    .expect("iterate");
                let want: Vec<_> = oracle
                    .iter()
                    .filter(|(k, _)| {
                        from.as_ref().is_none_or(|f| *k >= f) && to.as_ref().is_none_or(|t| *k <= t)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            KvOp::Prefix(p) => {
                let got: Vec<_> = store
                    .prefix_scan(&p)
                    .expect("prefix")
                    .collect::<Result<_, _>>()
                    .expect("iterate");
                let want: Vec<_> = oracle
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            KvOp::Flush => store.flush().expect("flush"),
            KvOp::Reopen => {
                if !h.reopen_keeps_data() {
                    continue;
                }
                h.close(store.as_mut());
                committed = oracle.clone();
                drop(store);
                store = h.builder().build_key_value().expect("reopen");
                if !stack.rocksdb {
                    h.restore_into(store.as_mut(), 3);
                }
            }
            KvOp::Commit => {
                h.commit(store.as_mut());
                committed = oracle.clone();
            }
            KvOp::PipelinedCommit(k, v) => {
                let offset = h.start_commit(store.as_mut());
                committed = oracle.clone();
                store.put(&k, &v).expect("put");
                oracle.insert(k, v);
                prop_assert_eq!(
                    kv_contents(store.as_ref()),
                    oracle
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>(),
                    "reads see the sealed and the newer writes"
                );
                h.finish_commit(store.as_mut(), offset);
            }
            KvOp::Crash => {
                if h.crash(store.as_ref()) {
                    drop(store);
                    store = h.builder().build_key_value().expect("reopen");
                    h.recover(store.as_mut())?;
                    oracle = committed.clone();
                } else if stack.rocksdb && stack.logging {
                    // At-least-once: what reached the store (and so the changelog) survives, and
                    // restoring the tail after the committed offset replays some of it again.
                    drop(store);
                    store = h.builder().build_key_value().expect("reopen");
                    let from = store.committed_offset().expect("committed offset");
                    prop_assert_eq!(from, h.committed);
                    h.restore_from(store.as_mut(), from, 2);
                    let mut replay = h.bare().build_key_value().expect("bare store");
                    h.restore_into(replay.as_mut(), 4);
                    oracle = kv_contents(replay.as_ref()).into_iter().collect();
                    committed = oracle.clone();
                } else {
                    continue;
                }
            }
            KvOp::RestoreCopy(batch) => {
                if !stack.logging {
                    continue;
                }
                store.flush().expect("flush before reading the changelog");
                let mut copy = h.bare().build_key_value().expect("bare store");
                h.restore_into(copy.as_mut(), batch);
                prop_assert_eq!(
                    kv_contents(copy.as_ref()),
                    oracle
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>()
                );
            }
        }
        prop_assert_eq!(
            kv_contents(store.as_ref()),
            oracle
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn key_value_stores_match_a_btreemap(stack in stack(), ops in proptest::collection::vec(kv_op(), 1..60)) {
        run_kv(stack, ops)?;
    }
}

// ---------------------------------------------------------------- window

const RETENTION: i64 = 30;
const SEGMENT: i64 = 10;

#[derive(Debug, Clone)]
enum WinOp {
    Put(Vec<u8>, i64, Option<Vec<u8>>),
    Fetch(Vec<u8>, i64),
    FetchRange(Vec<u8>, i64, i64),
    FetchAll(i64, i64),
    Flush,
    Reopen,
    RestoreCopy(usize),
    Commit,
    /// A commit with a write between the seal and the store's commit (see `KvOp`).
    PipelinedCommit(Vec<u8>, i64, Option<Vec<u8>>),
    Crash,
}

/// Times drift upwards so retention expires data, with some late arrivals.
fn win_ops() -> impl Strategy<Value = Vec<WinOp>> {
    proptest::collection::vec(
        (
            0i64..8,
            any::<u8>(),
            key(),
            proptest::option::of(value()),
            0i64..60,
            0i64..60,
        ),
        1..80,
    )
    .prop_map(|raw| {
        let mut clock = 0;
        raw.into_iter()
            .map(|(step, pick, k, v, a, b)| {
                clock += step;
                let t = clock - (a % 40);
                match pick % 15 {
                    14 => WinOp::PipelinedCommit(k, t, v),
                    0..=4 => WinOp::Put(k, t, v),
                    5 | 6 => WinOp::Fetch(k, t),
                    7 => WinOp::FetchRange(k, clock - a, clock - a + b),
                    8 => WinOp::FetchAll(clock - a, clock - a + b),
                    9 => WinOp::Flush,
                    10 => WinOp::Reopen,
                    11 => WinOp::Commit,
                    12 => WinOp::Crash,
                    _ => WinOp::RestoreCopy((pick % 4) as usize + 1),
                }
            })
            .collect()
    })
}

#[derive(Clone)]
struct WindowOracle {
    entries: BTreeMap<(Vec<u8>, i64), Vec<u8>>,
    observed: i64,
}

impl WindowOracle {
    fn floor(&self) -> i64 {
        retention_floor(self.observed, RETENTION)
    }
    fn put(&mut self, k: Vec<u8>, t: i64, v: Option<Vec<u8>>) {
        self.observed = self.observed.max(t);
        if t < self.floor() {
            return;
        }
        match v {
            Some(v) => self.entries.insert((k, t), v),
            None => self.entries.remove(&(k, t)),
        };
    }
    /// `(start, key, value)` of unexpired windows starting in `[from, to]`, by start then key.
    fn all_between(&self, from: i64, to: i64) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
        let from = from.max(self.floor());
        let mut out: Vec<_> = self
            .entries
            .iter()
            .filter(|((_, t), _)| *t >= from && *t <= to)
            .map(|((k, t), v)| (*t, k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    }
}

fn win_contents(store: &dyn WindowBytesStore) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    store
        .all()
        .expect("all")
        .map(|r| r.map(|(wk, v)| (wk.start, wk.key, v)))
        .collect::<Result<Vec<_>, _>>()
        .expect("iterate")
}

fn run_window(stack: Stack, ops: Vec<WinOp>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(stack);
    let build = |h: &Harness| {
        h.builder()
            .build_window(RETENTION, Some(SEGMENT))
            .expect("build")
    };
    let mut store = build(&h);
    let mut oracle = WindowOracle {
        entries: BTreeMap::new(),
        observed: i64::MIN,
    };
    let mut committed = oracle.clone();
    let keys = all_keys();
    for op in ops {
        match op {
            WinOp::Put(k, t, v) => {
                store.put(&k, t, v.as_deref()).expect("put");
                oracle.put(k, t, v);
            }
            WinOp::Fetch(k, t) => {
                let want = if t >= oracle.floor() {
                    oracle.entries.get(&(k.clone(), t)).cloned()
                } else {
                    None
                };
                prop_assert_eq!(store.fetch(&k, t).expect("fetch"), want);
            }
            WinOp::FetchRange(k, from, to) => {
                let got: Vec<_> = store
                    .fetch_range(&k, from, to)
                    .expect("fetch_range")
                    .collect::<Result<_, _>>()
                    .expect("iterate");
                let want: Vec<_> = oracle
                    .all_between(from, to)
                    .into_iter()
                    .filter(|(_, key, _)| *key == k)
                    .map(|(t, _, v)| (t, v))
                    .collect();
                prop_assert_eq!(got, want);
            }
            WinOp::FetchAll(from, to) => {
                let got: Vec<_> = store
                    .fetch_all(from, to)
                    .expect("fetch_all")
                    .map(|r| r.map(|(wk, v)| (wk.start, wk.key, v)))
                    .collect::<Result<_, _>>()
                    .expect("iterate");
                prop_assert_eq!(got, oracle.all_between(from, to));
            }
            WinOp::Flush => store.flush().expect("flush"),
            WinOp::Commit => {
                h.commit(store.as_mut());
                committed = oracle.clone();
            }
            WinOp::PipelinedCommit(k, t, v) => {
                let offset = h.start_commit(store.as_mut());
                committed = oracle.clone();
                store.put(&k, t, v.as_deref()).expect("put");
                oracle.put(k, t, v);
                h.finish_commit(store.as_mut(), offset);
            }
            WinOp::Crash => {
                if !h.crash(store.as_ref()) {
                    continue;
                }
                drop(store);
                store = build(&h);
                h.recover(store.as_mut())?;
                oracle = committed.clone();
                prop_assert_eq!(
                    store.observed_stream_time(),
                    oracle.observed,
                    "stream time as of the last commit"
                );
            }
            WinOp::Reopen => {
                if !h.reopen_keeps_data() {
                    continue;
                }
                h.close(store.as_mut());
                committed = oracle.clone();
                drop(store);
                store = build(&h);
                if !stack.rocksdb {
                    h.restore_into(store.as_mut(), 2);
                }
                prop_assert_eq!(
                    store.observed_stream_time(),
                    oracle.observed,
                    "stream time survives a reopen"
                );
            }
            WinOp::RestoreCopy(batch) => {
                if !stack.logging {
                    continue;
                }
                store.flush().expect("flush");
                let mut copy = h
                    .bare()
                    .build_window(RETENTION, Some(SEGMENT))
                    .expect("bare");
                h.restore_into(copy.as_mut(), batch);
                prop_assert_eq!(
                    win_contents(copy.as_ref()),
                    oracle.all_between(i64::MIN, i64::MAX)
                );
            }
        }
        prop_assert_eq!(
            win_contents(store.as_ref()),
            oracle.all_between(i64::MIN, i64::MAX)
        );
        for k in &keys {
            let got: Vec<_> = store
                .fetch_range(k, i64::MIN, i64::MAX)
                .expect("fetch_range")
                .collect::<Result<_, _>>()
                .expect("iterate");
            let want: Vec<_> = oracle
                .all_between(i64::MIN, i64::MAX)
                .into_iter()
                .filter(|(_, key, _)| key == k)
                .map(|(t, _, v)| (t, v))
                .collect();
            prop_assert_eq!(got, want, "every window of key {:?}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn window_stores_match_a_btreemap(stack in stack(), ops in win_ops()) {
        run_window(stack, ops)?;
    }
}

// ---------------------------------------------------------------- session

#[derive(Debug, Clone)]
enum SessionOp {
    Put(Vec<u8>, SessionWindow, Vec<u8>),
    Remove(Vec<u8>, SessionWindow),
    Find(Vec<u8>, i64, i64),
    FetchSession(Vec<u8>, SessionWindow),
    Flush,
    Reopen,
    RestoreCopy(usize),
    Commit,
    Crash,
}

fn session_ops() -> impl Strategy<Value = Vec<SessionOp>> {
    proptest::collection::vec(
        (
            0i64..8,
            any::<u8>(),
            key(),
            value(),
            0i64..40,
            0i64..15,
            0i64..60,
        ),
        1..80,
    )
    .prop_map(|raw| {
        let mut clock = 0;
        raw.into_iter()
            .map(|(step, pick, k, v, late, len, span)| {
                clock += step;
                let end = clock - late;
                let w = SessionWindow {
                    start: end - len,
                    end,
                };
                match pick % 13 {
                    0..=3 => SessionOp::Put(k, w, v),
                    4 => SessionOp::Remove(k, w),
                    5 | 6 => SessionOp::Find(k, clock - span, clock - span + late),
                    7 => SessionOp::FetchSession(k, w),
                    8 => SessionOp::Flush,
                    9 => SessionOp::Reopen,
                    10 => SessionOp::Commit,
                    11 => SessionOp::Crash,
                    _ => SessionOp::RestoreCopy((pick % 4) as usize + 1),
                }
            })
            .collect()
    })
}

#[derive(Clone)]
struct SessionOracle {
    entries: BTreeMap<(Vec<u8>, i64, i64), Vec<u8>>, // (key, end, start)
    observed: i64,
}

impl SessionOracle {
    fn floor(&self) -> i64 {
        retention_floor(self.observed, RETENTION)
    }
    fn write(&mut self, k: Vec<u8>, w: SessionWindow, v: Option<Vec<u8>>) {
        self.observed = self.observed.max(w.end);
        if w.end < self.floor() {
            return;
        }
        match v {
            Some(v) => self.entries.insert((k, w.end, w.start), v),
            None => self.entries.remove(&(k, w.end, w.start)),
        };
    }
    fn find(
        &self,
        k: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Vec<(SessionWindow, Vec<u8>)> {
        let from = earliest_end.max(self.floor());
        self.entries
            .iter()
            .filter(|((key, end, start), _)| key == k && *end >= from && *start <= latest_start)
            .map(|((_, end, start), v)| {
                (
                    SessionWindow {
                        start: *start,
                        end: *end,
                    },
                    v.clone(),
                )
            })
            .collect()
    }
    fn all(&self) -> Vec<(Vec<u8>, SessionWindow, Vec<u8>)> {
        self.entries
            .iter()
            .filter(|((_, end, _), _)| *end >= self.floor())
            .map(|((k, end, start), v)| {
                (
                    k.clone(),
                    SessionWindow {
                        start: *start,
                        end: *end,
                    },
                    v.clone(),
                )
            })
            .collect()
    }
}

fn session_contents(
    store: &dyn SessionBytesStore,
    keys: &[Vec<u8>],
) -> Vec<(Vec<u8>, SessionWindow, Vec<u8>)> {
    let mut out = Vec::new();
    for k in keys {
        for item in store.fetch(k).expect("fetch") {
            let (sk, v) = item.expect("iterate");
            out.push((sk.key, sk.window, v));
        }
    }
    out
}

/// Every key the generator can produce, in order (the oracle's order).
fn all_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![vec![]];
    for a in 0u8..3 {
        keys.push(vec![a]);
        for b in 0u8..3 {
            keys.push(vec![a, b]);
        }
    }
    keys.sort();
    keys
}

fn run_session(stack: Stack, ops: Vec<SessionOp>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(stack);
    let build = |h: &Harness| {
        h.builder()
            .build_session(RETENTION, Some(SEGMENT))
            .expect("build")
    };
    let mut store = build(&h);
    let mut oracle = SessionOracle {
        entries: BTreeMap::new(),
        observed: i64::MIN,
    };
    let mut committed = oracle.clone();
    let keys = all_keys();
    for op in ops {
        match op {
            SessionOp::Put(k, w, v) => {
                store.put(&k, w, &v).expect("put");
                oracle.write(k, w, Some(v));
            }
            SessionOp::Remove(k, w) => {
                store.remove(&k, w).expect("remove");
                oracle.write(k, w, None);
            }
            SessionOp::Find(k, earliest_end, latest_start) => {
                let got: Vec<_> = store
                    .find_sessions(&k, earliest_end, latest_start)
                    .expect("find")
                    .map(|r| r.map(|(sk, v)| (sk.window, v)))
                    .collect::<Result<_, _>>()
                    .expect("iterate");
                prop_assert_eq!(got, oracle.find(&k, earliest_end, latest_start));
            }
            SessionOp::FetchSession(k, w) => {
                let want = if w.end >= oracle.floor() {
                    oracle.entries.get(&(k.clone(), w.end, w.start)).cloned()
                } else {
                    None
                };
                prop_assert_eq!(store.fetch_session(&k, w).expect("fetch_session"), want);
            }
            SessionOp::Flush => store.flush().expect("flush"),
            SessionOp::Commit => {
                h.commit(store.as_mut());
                committed = oracle.clone();
            }
            SessionOp::Crash => {
                if !h.crash(store.as_ref()) {
                    continue;
                }
                drop(store);
                store = build(&h);
                h.recover(store.as_mut())?;
                oracle = committed.clone();
            }
            SessionOp::Reopen => {
                if !h.reopen_keeps_data() {
                    continue;
                }
                h.close(store.as_mut());
                committed = oracle.clone();
                drop(store);
                store = build(&h);
                if !stack.rocksdb {
                    h.restore_into(store.as_mut(), 2);
                }
            }
            SessionOp::RestoreCopy(batch) => {
                if !stack.logging {
                    continue;
                }
                store.flush().expect("flush");
                let mut copy = h
                    .bare()
                    .build_session(RETENTION, Some(SEGMENT))
                    .expect("bare");
                h.restore_into(copy.as_mut(), batch);
                prop_assert_eq!(session_contents(copy.as_ref(), &keys), oracle.all());
            }
        }
        prop_assert_eq!(session_contents(store.as_ref(), &keys), oracle.all());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn session_stores_match_a_btreemap(stack in stack(), ops in session_ops()) {
        run_session(stack, ops)?;
    }
}

/// Found by the model: two segments hold `[2]@-1` and `[1]@0`; a pending deletion of `[1]@0`
/// must hide it although the later segment's key sorts before the earlier one's.
#[test]
fn a_pending_deletion_hides_a_window_of_a_later_segment() {
    use WinOp::*;
    let stack = Stack {
        rocksdb: true,
        transactional: true,
        logging: false,
        cache_bytes: None,
        metering: false,
    };
    let ops = vec![
        PipelinedCommit(vec![2], -1, Some(vec![])),
        Commit,
        PipelinedCommit(vec![1], 0, Some(vec![])),
        Commit,
        Put(vec![1], 0, None),
    ];
    run_window(stack, ops).map_err(|e| e.to_string()).unwrap();
}

/// Cached writes reach RocksDB as one batch per eviction or flush: a deletion in such a batch
/// must delete the window written down by an earlier one, in every segment it touches.
#[test]
fn a_batched_write_down_deletes_windows_written_before() {
    use WinOp::*;
    for transactional in [false, true] {
        let stack = Stack {
            rocksdb: true,
            transactional,
            logging: true,
            cache_bytes: Some(1 << 20),
            metering: false,
        };
        let ops = vec![
            Put(vec![1], 0, Some(vec![7])),
            Put(vec![2], 15, Some(vec![8])),
            Flush,
            Commit,
            Put(vec![1], 0, None),
            Put(vec![2], 15, None),
            Put(vec![3], 16, Some(vec![9])),
            Flush,
            Commit,
            Reopen,
            Fetch(vec![1], 0),
            Fetch(vec![2], 15),
            RestoreCopy(2),
        ];
        run_window(stack, ops).map_err(|e| e.to_string()).unwrap();
    }
}
