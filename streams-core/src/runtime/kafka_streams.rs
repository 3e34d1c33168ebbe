//! [`KafkaStreams`]: a topology running on Kafka, in as many stream threads as configured.
//!
//! The instance supervises its stream threads. A thread recovers on its own from the faults it
//! expects (see `runtime::recovery`); one that fails with an error no retry can fix is handed to
//! the uncaught exception handler ([`KafkaStreams::set_uncaught_exception_handler`]), whose
//! answer replaces the thread, stops this instance (the default, ending in
//! [`State::Error`]), or stops every instance of the application.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use state_stores::cache::CacheBudget;
use state_stores::state_dir::{ProcessClaim, StateDirectory};
use state_stores::RocksDbMemory;

use crate::config::{
    ProcessingGuarantee, ResolvedConfig, StreamsConfig, EOS_TRANSACTION_TIMEOUT_MS,
};
use crate::error::{Result, StreamsError};
use crate::handlers::{StreamThreadExceptionResponse, UncaughtExceptionHandler};

/// How long librdkafka waits before fetching again for a partition whose local queue was full.
/// Its default (1 s) stalls a thread that drains a full queue, which restoration and catch-up
/// do all the time; a re-check every 10 ms costs nothing measurable.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";
/// How many records a stream thread's consumer keeps fetched ahead (librdkafka's
/// `queued.min.messages`, 100 000 by default). librdkafka counts the consumer's whole queue,
/// which every assigned partition feeds in fetch order, so a deep prefetch of one topic delays
/// the records of all others: with the default, a word count's repartition records waited
/// behind up to 100 000 input lines (a first count after 2.5-3 s instead of 1.2 s), and the
/// queued records held 75-150 MiB more. Ten thousand is one poll round's worth and kept the
/// measured throughput of every benchmark case; `consumer.queued.min.messages` overrides it.
const QUEUED_MIN_MESSAGES: &str = "10000";
/// How often librdkafka reports a stream thread's consumer statistics (lags, group state).
const STATISTICS_INTERVAL_MS: &str = "1000";
use crate::runtime::control;
use crate::runtime::global::{GlobalCounters, GlobalStateUpdater, InstanceLinks};
use crate::runtime::metadata::{
    self, HostInfo, KeyQueryMetadata, SharedDirectory, StreamsMetadata,
};
use crate::runtime::metrics::{mean_ms, millis, op_metrics, Metric, MetricsSnapshot, RateWindow};
use crate::runtime::queries::{NotQueryableReason, QueryableStoreType, SharedView, StoreLocator};
use crate::runtime::state::{State, StateCell, StateListener};
use crate::runtime::thread::{self, SharedCommitted, ThreadMetrics, ThreadSetup};
use crate::runtime::topics;
use crate::topology::Topology;

struct Inner {
    topology: Arc<Topology>,
    config: ResolvedConfig,
    state: Arc<StateCell>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shutdown: Arc<AtomicBool>,
    metrics: Mutex<Vec<Arc<Mutex<ThreadMetrics>>>>,
    /// Per stream thread: the input offsets it last committed.
    committed: Mutex<Vec<SharedCommitted>>,
    /// Group membership changes by this instance's threads; see `handoff`.
    membership_changes: Arc<std::sync::atomic::AtomicU64>,
    handler: Mutex<Option<UncaughtExceptionHandler>>,
    /// What a started instance holds; `None` before `start`.
    running: Mutex<Option<Running>>,
    /// Per stream thread: its tasks and assignment, for queries and metadata.
    views: Mutex<Vec<SharedView>>,
    /// Tasks (partitions) per sub-topology, known once started.
    partitions: Mutex<Vec<i32>>,
    /// Counters at earlier reads of the metrics, for rates.
    rates: Mutex<RateWindow>,
    /// Every instance's `application.server` and assignment.
    directory: SharedDirectory,
    /// The global stores' counters.
    global: Arc<GlobalCounters>,
}

/// What a started instance shares among its threads (and their replacements).
struct Running {
    state_dir: StateDirectory,
    rocksdb: RocksDbMemory,
    /// The process identity (in transactional ids), held for the instance's life.
    claim: ProcessClaim,
    /// Stream threads alive; the last to end settles the final state.
    live: Arc<AtomicUsize>,
    /// The global stores, restored before the stream threads start.
    globals: crate::task::GlobalStores,
}

/// A Kafka Streams application instance: runs a [`Topology`] on Kafka.
///
/// Start as many instances (processes) with the same `application.id` as you like: they share
/// the work through Kafka's consumer group, each task on one instance at a time, and hand tasks
/// (with their state, through the changelogs) over as instances come and go.
///
/// `start`, `close` and `cleanup` block; in async code use [`start_async`](Self::start_async)
/// and [`close_async`](Self::close_async), which run them off the runtime's worker threads. The
/// handle is cheap to clone.
#[derive(Clone)]
pub struct KafkaStreams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.inner.config.application_id)
            .field("state", &self.state())
            .finish()
    }
}

/// Counters of a running instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamsMetrics {
    /// One entry per stream thread.
    pub threads: Vec<ThreadMetrics>,
    /// Records the global stores restored when the instance started (only those after the
    /// checkpoint, with persistent global stores).
    pub global_restored: u64,
    /// Records the global thread applied to the global stores since.
    pub global_applied: u64,
}

impl StreamsMetrics {
    /// Records processed by all threads.
    pub fn processed(&self) -> u64 {
        self.threads.iter().map(|t| t.processed).sum()
    }

    /// Records skipped by all threads.
    pub fn skipped(&self) -> u64 {
        self.threads.iter().map(|t| t.skipped).sum()
    }

    /// Records windowed operators dropped as late, by all threads.
    pub fn dropped_late(&self) -> u64 {
        self.threads.iter().map(|t| t.dropped_late).sum()
    }

    /// Changelog records restored by all threads.
    pub fn restored(&self) -> u64 {
        self.threads.iter().map(|t| t.restored).sum()
    }
}

fn process_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

impl KafkaStreams {
    /// Checks the configuration and the topology's serdes; connects to nothing yet.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        let config = config.validate()?;
        if config.bootstrap_servers.is_none() {
            return Err(StreamsError::config(
                crate::config::BOOTSTRAP_SERVERS,
                "is required to run on Kafka (use TopologyTestDriver to run without one)",
            ));
        }
        topology.check_serdes(&config.defaults)?;
        Ok(KafkaStreams {
            inner: Arc::new(Inner {
                topology: Arc::new(topology),
                config,
                state: Arc::new(StateCell::new()),
                global: Arc::default(),
                threads: Mutex::new(Vec::new()),
                shutdown: Arc::new(AtomicBool::new(false)),
                metrics: Mutex::new(Vec::new()),
                committed: Mutex::new(Vec::new()),
                membership_changes: Arc::default(),
                handler: Mutex::new(None),
                running: Mutex::new(None),
                views: Mutex::new(Vec::new()),
                partitions: Mutex::new(Vec::new()),
                rates: Mutex::new(RateWindow::new()),
                directory: SharedDirectory::default(),
            }),
        })
    }

    /// Sets what happens after a stream thread fails with an error it cannot recover from; see
    /// [`StreamThreadExceptionResponse`]. Without one, the instance shuts down (ending in
    /// [`State::Error`]). Set it before [`start`](Self::start): with a handler, instances also
    /// watch the application's control topic, through which
    /// [`ShutdownApplication`](StreamThreadExceptionResponse::ShutdownApplication) reaches them.
    ///
    /// ```
    /// use streams_core::handlers::StreamThreadExceptionResponse;
    /// # use streams_core::{KafkaStreams, StreamsConfig, TopologyBuilder};
    /// # use streams_core::topology::SourceSpec;
    /// # use state_stores::Serdes;
    /// # let mut b = TopologyBuilder::new();
    /// # b.add_source("in", &["t"], SourceSpec::new(Serdes::string(), Serdes::string())).unwrap();
    /// # let config = StreamsConfig::new("app").set("bootstrap.servers", "127.0.0.1:9");
    /// let streams = KafkaStreams::new(b.build().unwrap(), config).unwrap();
    /// streams.set_uncaught_exception_handler(|error| {
    ///     eprintln!("a stream thread failed: {error}");
    ///     StreamThreadExceptionResponse::ReplaceThread
    /// }).unwrap();
    /// ```
    pub fn set_uncaught_exception_handler(
        &self,
        handler: impl Fn(&StreamsError) -> StreamThreadExceptionResponse + Send + Sync + 'static,
    ) -> Result<()> {
        if self.state() != State::Created {
            return Err(StreamsError::Fatal(
                "set the uncaught exception handler before start()".into(),
            ));
        }
        *self.inner.handler.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(handler));
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.state.get()
    }

    /// Calls `listener(new, old)` on every state change.
    pub fn set_state_listener(&self, listener: impl Fn(State, State) + Send + Sync + 'static) {
        let listener: StateListener = Arc::new(listener);
        self.inner.state.set_listener(listener);
    }

    /// A channel that always holds the current state, for async code.
    pub fn state_watch(&self) -> tokio::sync::watch::Receiver<State> {
        self.inner.state.subscribe()
    }

    /// Waits (async) until the state satisfies `until`, and returns it.
    pub async fn wait_for(&self, until: impl Fn(State) -> bool) -> State {
        let mut watch = self.state_watch();
        loop {
            let now = *watch.borrow_and_update();
            if until(now) {
                return now;
            }
            if watch.changed().await.is_err() {
                return self.state();
            }
        }
    }

    /// Why the instance is in [`State::Error`].
    pub fn error(&self) -> Option<Arc<StreamsError>> {
        self.inner.state.error()
    }

    /// The topology it runs.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The configuration in use.
    pub fn config(&self) -> &ResolvedConfig {
        &self.inner.config
    }

    /// Counters of every stream thread.
    pub fn metrics(&self) -> StreamsMetrics {
        StreamsMetrics {
            threads: self
                .inner
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|m| *m.lock().unwrap_or_else(|p| p.into_inner()))
                .collect(),
            global_restored: self.inner.global.restored.load(Ordering::Relaxed),
            global_applied: self.inner.global.applied.load(Ordering::Relaxed),
        }
    }

    /// Every metric of the instance, with Kafka Streams' names and levels (thread, task, store,
    /// consumer); see [`metrics`](crate::runtime::metrics). Rates are measured between calls,
    /// over the last 30 seconds.
    pub fn metric_values(&self) -> MetricsSnapshot {
        let inner = &self.inner;
        let app = &inner.config.application_id;
        let threads = self.metrics().threads;
        let views = inner
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let thread_id = |i: usize| format!("{app}-StreamThread-{}", i + 1);

        // Counters whose rates are asked for.
        let mut counters: std::collections::HashMap<String, f64> = Default::default();
        for (i, t) in threads.iter().enumerate() {
            let id = thread_id(i);
            counters.insert(format!("process/{id}"), t.processed as f64);
            counters.insert(format!("commit/{id}"), t.commits as f64);
            counters.insert(format!("poll/{id}"), t.polls as f64);
            counters.insert(format!("restore/{id}"), t.restored as f64);
        }
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        let mut lags = Vec::new();
        let mut remaining = Vec::new();
        for (i, view) in views.iter().enumerate() {
            let view = view.lock().unwrap_or_else(|p| p.into_inner());
            for (task, published) in &view.tasks {
                for (store, m) in &published.store_metrics {
                    counters.insert(
                        format!("restore/{}/{task}/{store}", thread_id(i)),
                        m.restored_records() as f64,
                    );
                    stores.push((i, *task, store.clone(), m.clone()));
                }
            }
            tasks.extend(view.task_metrics.iter().map(|(id, m)| (i, *id, *m)));
            lags.extend(view.lags.iter().map(|(tp, lag)| (i, tp.clone(), *lag)));
            remaining.extend(
                view.restore_remaining
                    .iter()
                    .map(|((task, store), n)| (i, *task, store.clone(), *n)),
            );
        }
        let rate = inner
            .rates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(counters);

        let mut out = Vec::new();
        let mut push = |group, name, help, labels: Vec<(&'static str, String)>, value: f64| {
            out.push(Metric {
                group,
                name,
                help,
                labels,
                value,
            })
        };
        for (i, t) in threads.iter().enumerate() {
            let id = thread_id(i);
            let l = || vec![("thread_id", id.clone())];
            let th = "stream_thread";
            push(
                th,
                "process-total",
                "Records processed by the thread.",
                l(),
                t.processed as f64,
            );
            push(
                th,
                "process-rate",
                "Records processed per second.",
                l(),
                rate(&format!("process/{id}")),
            );
            push(
                th,
                "process-latency-avg",
                "Mean processing time per record, in ms.",
                l(),
                mean_ms(t.process_time, t.processed),
            );
            push(
                th,
                "process-latency-max",
                "Largest mean processing time per record of one processing round, in ms.",
                l(),
                millis(t.process_latency_max),
            );
            push(th, "commit-total", "Commits.", l(), t.commits as f64);
            push(
                th,
                "commit-rate",
                "Commits per second.",
                l(),
                rate(&format!("commit/{id}")),
            );
            push(
                th,
                "commit-latency-avg",
                "Mean time of a commit, in ms.",
                l(),
                mean_ms(t.commit_time, t.commits),
            );
            push(
                th,
                "poll-total",
                "Polls of the consumer for records.",
                l(),
                t.polls as f64,
            );
            push(
                th,
                "poll-rate",
                "Polls per second.",
                l(),
                rate(&format!("poll/{id}")),
            );
            push(
                th,
                "poll-latency-avg",
                "Mean time of a poll (waiting included), in ms.",
                l(),
                mean_ms(t.poll_time, t.polls),
            );
            push(
                th,
                "punctuate-total",
                "Punctuations run.",
                l(),
                t.punctuations as f64,
            );
            push(
                th,
                "restore-total",
                "Changelog records restored by the thread.",
                l(),
                t.restored as f64,
            );
            push(
                th,
                "restore-rate",
                "Changelog records restored per second.",
                l(),
                rate(&format!("restore/{id}")),
            );
            push(
                th,
                "task-count",
                "Tasks the thread owns.",
                l(),
                t.tasks as f64,
            );
            push(
                th,
                "recovery-total",
                "Recoveries: tasks closed without committing and resumed from the last commit.",
                l(),
                t.recoveries as f64,
            );
        }
        for (i, task, m) in tasks {
            let l = || vec![("thread_id", thread_id(i)), ("task_id", task.to_string())];
            let tk = "stream_task";
            push(
                tk,
                "process-total",
                "Records processed by the task.",
                l(),
                m.processed as f64,
            );
            push(tk, "dropped-records-total", "Records dropped: unreadable or with an invalid timestamp (skipped), failed by a processor under a continue policy, or late for their window.", l(), (m.skipped + m.processing_skipped + m.dropped_late + m.dropped_null_key) as f64);
            push(
                tk,
                "skipped-records-total",
                "Records skipped at the source (unreadable, or an invalid timestamp).",
                l(),
                m.skipped as f64,
            );
            push(
                tk,
                "late-records-dropped-total",
                "Records windowed operators dropped because their window had closed.",
                l(),
                m.dropped_late as f64,
            );
            push(
                tk,
                "processing-skipped-total",
                "Records skipped because a processor failed on them.",
                l(),
                m.processing_skipped as f64,
            );
            push(
                tk,
                "dead-letter-records-total",
                "Input records written to the dead-letter queue (unreadable, or failed by a processor).",
                l(),
                m.dead_lettered as f64,
            );
        }
        for (i, task, store, m) in stores {
            let labels = vec![
                ("thread_id", thread_id(i)),
                ("task_id", task.to_string()),
                ("store", store.clone()),
            ];
            // Timed only at metrics.recording.level DEBUG or TRACE (as Kafka Streams' store
            // latencies): otherwise there is nothing to report.
            if m.latencies() {
                op_metrics(
                    &mut out,
                    &labels,
                    m.puts.snapshot(),
                    ("put-latency-avg", "put-latency-max"),
                    "Latency of puts, in ns.",
                );
                op_metrics(
                    &mut out,
                    &labels,
                    m.gets.snapshot(),
                    ("get-latency-avg", "get-latency-max"),
                    "Latency of gets, in ns.",
                );
                op_metrics(
                    &mut out,
                    &labels,
                    m.deletes.snapshot(),
                    ("delete-latency-avg", "delete-latency-max"),
                    "Latency of deletes, in ns.",
                );
                op_metrics(
                    &mut out,
                    &labels,
                    m.range_scans.snapshot(),
                    ("range-latency-avg", "range-latency-max"),
                    "Latency of opening range scans, in ns.",
                );
                op_metrics(
                    &mut out,
                    &labels,
                    m.flushes.snapshot(),
                    ("flush-latency-avg", "flush-latency-max"),
                    "Latency of flushes, in ns.",
                );
            }
            let st = "stream_state";
            let mut push = |name, help, value: f64| {
                out.push(Metric {
                    group: st,
                    name,
                    help,
                    labels: labels.clone(),
                    value,
                })
            };
            push("put-total", "Puts.", m.puts.snapshot().count as f64);
            push("get-total", "Gets.", m.gets.snapshot().count as f64);
            push(
                "restore-total",
                "Changelog records restored into the store.",
                m.restored_records() as f64,
            );
            push(
                "restore-rate",
                "Changelog records restored into the store per second.",
                rate(&format!("restore/{}/{task}/{store}", thread_id(i))),
            );
            let left = remaining
                .iter()
                .find(|(ri, rt, rs, _)| *ri == i && *rt == task && *rs == store)
                .map_or(0, |r| r.3);
            push(
                "restore-remaining-records-total",
                "Changelog records still to restore.",
                left as f64,
            );
        }
        for (i, (topic, partition), lag) in lags {
            out.push(Metric {
                group: "consumer_fetch_manager",
                name: "records-lag",
                help: "Records between the consumer's position and the partition's end.",
                labels: vec![
                    ("thread_id", thread_id(i)),
                    ("topic", topic),
                    ("partition", partition.to_string()),
                ],
                value: lag as f64,
            });
        }
        MetricsSnapshot { metrics: out }
    }

    /// [`metric_values`](Self::metric_values) in the Prometheus text exposition format.
    pub fn prometheus_text(&self) -> String {
        self.metric_values().to_prometheus()
    }

    /// The input offsets the stream threads of this instance last committed (the next offset
    /// each will read), by topic and partition, for the partitions they own now; what Kafka
    /// Streams reports as the tasks' `committedOffsets()`. Repartition topics carry their full
    /// names (`<application.id>-<name>-repartition`).
    ///
    /// Compared with the partitions' end offsets it tells whether the instance has processed
    /// and committed its input; unlike the consumer group's committed offsets it is also
    /// known on a broker that does not store transactional offset commits (the embedded one).
    pub fn committed_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let threads = self
            .inner
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut all = BTreeMap::new();
        for t in threads {
            all.extend(
                t.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        all
    }

    /// A read-only view of store `name` across this instance's tasks, of the kind and types
    /// `kind` says (see [`QueryableStoreTypes`](crate::runtime::queries::QueryableStoreTypes));
    /// Kafka Streams' `store(StoreQueryParameters)`. The view follows rebalances: each call
    /// looks up the tasks that hold the store now, and answers only from running ones; see
    /// [`queries`](crate::runtime::queries).
    ///
    /// Errors: [`StreamsError::StoreNotQueryable`] (with
    /// [`NotQueryableReason::UnknownStore`]) when the topology has no such store, or while the
    /// instance is not started; [`StreamsError::Topology`] when the store is of another kind or
    /// holds other types.
    pub fn store<T: QueryableStoreType>(&self, name: &str, kind: T) -> Result<T::Store> {
        let inner = &self.inner;
        let unknown = || StreamsError::StoreNotQueryable {
            store: name.to_owned(),
            reason: NotQueryableReason::UnknownStore,
        };
        let def = inner.topology.store(name).ok_or_else(unknown)?;
        if !kind.accepts(def.kind) {
            return Err(StreamsError::topology(
                name,
                format!("the store is not a {} store ({:?})", kind.kind(), def.kind),
            ));
        }
        let (subtopology, partitions) = self.store_partitions(name)?;
        let (keys, values) = def.serdes.resolve(&inner.config.defaults, name)?;
        kind.view(StoreLocator {
            store: name.to_owned(),
            subtopology,
            partitions,
            views: inner
                .views
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            state: inner.state.clone(),
            keys,
            values,
        })
    }

    /// Where the store `store` holds `key` (serialized by `keys`, as the store's key serde
    /// does): its partition, and the instance whose task owns that partition now, from the
    /// group's current assignment as every instance advertises it; see
    /// [`metadata`]. Needs `application.server`.
    pub fn query_metadata_for_key<K: 'static>(
        &self,
        store: &str,
        key: &K,
        keys: &dyn state_stores::Serde<K>,
    ) -> Result<KeyQueryMetadata> {
        let inner = &self.inner;
        if inner.config.application_server.is_none() {
            return Err(StreamsError::config(
                crate::config::APPLICATION_SERVER,
                "is required to locate keys (set it to the host:port this instance serves)",
            ));
        }
        let (sub, partitions) = self.store_partitions(store)?;
        let bytes = keys.serialize(key).map_err(|e| StreamsError::Serde {
            location: format!("locating a key of store `{store}`"),
            source: e,
        })?;
        let partition = crate::runtime::queries::partition_for_key(&bytes, partitions);
        let topic = inner
            .topology
            .subtopologies()
            .get(sub as usize)
            .and_then(|s| s.source_topics().first())
            .map(|t| t.full(&inner.config.application_id))
            .ok_or_else(|| StreamsError::topology(store, "its sub-topology has no source"))?;
        let dir = inner.directory.lock().unwrap_or_else(|p| p.into_inner());
        Ok(KeyQueryMetadata {
            active_host: dir
                .owner(&(topic, partition))
                .map(|(_, m)| m.server.clone()),
            partition,
        })
    }

    /// Every instance of the application that advertises an `application.server`, with the
    /// partitions the group assigned it and the stores of their tasks (this one included,
    /// live; the others as of their latest record). Partitions claimed later by another
    /// instance are left out, and so is an instance left with none of those it claimed.
    pub fn all_metadata(&self) -> Vec<StreamsMetadata> {
        let inner = &self.inner;
        let app = &inner.config.application_id;
        let dir = inner.directory.lock().unwrap_or_else(|p| p.into_inner());
        dir.members
            .iter()
            .filter_map(|(id, m)| {
                // Only what it still owns: a partition a later claim took over has moved (its
                // record may be that of an instance killed without a tombstone).
                let owned: std::collections::BTreeSet<(String, i32)> = m
                    .partitions
                    .iter()
                    .filter(|tp| dir.owner(tp).is_some_and(|(owner, _)| owner == id))
                    .cloned()
                    .collect();
                if owned.is_empty() && !m.partitions.is_empty() {
                    return None; // superseded entirely
                }
                let m = metadata::Member {
                    partitions: owned,
                    ..m.clone()
                };
                let state_stores = inner
                    .topology
                    .subtopologies()
                    .iter()
                    .filter(|s| {
                        s.source_topics().first().is_some_and(|t| {
                            let t = t.full(app);
                            m.partitions.iter().any(|(topic, _)| *topic == t)
                        })
                    })
                    .flat_map(|s| s.stores.iter().cloned())
                    .collect();
                Some(StreamsMetadata {
                    host: m.server.clone(),
                    process_id: id.clone(),
                    state_stores,
                    topic_partitions: m.partitions,
                    since_ms: m.since_ms,
                })
            })
            .collect()
    }

    /// The instances whose tasks hold store `store`; see [`all_metadata`](Self::all_metadata).
    pub fn all_metadata_for_store(&self, store: &str) -> Vec<StreamsMetadata> {
        self.all_metadata()
            .into_iter()
            .filter(|m| m.state_stores.contains(store))
            .collect()
    }

    /// This instance's `application.server`.
    pub fn application_server(&self) -> Option<&HostInfo> {
        self.inner.config.application_server.as_ref()
    }

    /// The sub-topology holding `store` and its partition count.
    fn store_partitions(&self, store: &str) -> Result<(u32, i32)> {
        let inner = &self.inner;
        let unknown = |reason| StreamsError::StoreNotQueryable {
            store: store.to_owned(),
            reason,
        };
        let sub = inner
            .topology
            .subtopologies()
            .iter()
            .find(|s| s.stores.iter().any(|n| n == store))
            .map(|s| s.id())
            .ok_or_else(|| unknown(NotQueryableReason::UnknownStore))?;
        let partitions = inner
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sub as usize)
            .copied()
            .ok_or_else(|| unknown(NotQueryableReason::NotRunning))?;
        Ok((sub, partitions))
    }

    /// Checks that the source topics exist, creates internal topics, and starts the stream
    /// threads. The instance is Rebalancing until every thread runs its tasks. Blocks while it
    /// talks to the brokers (seconds at most).
    pub fn start(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.state.get() != State::Created {
            return Err(StreamsError::Fatal(format!(
                "start() needs a Created instance; this one is {:?}",
                inner.state.get()
            )));
        }
        let started = Instant::now();
        let watch_control = inner
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let plan = match topics::prepare(&inner.topology, &inner.config, watch_control) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return Err(e);
            }
        };
        let state_dir = StateDirectory::new(&inner.config.state_dir, &inner.config.application_id)?;
        let claim = state_dir.claim_process(&process_id())?;
        let rocksdb = RocksDbMemory::new(inner.config.rocksdb_memory_bytes)?;
        let threads = inner.config.num_stream_threads;
        let live = Arc::new(AtomicUsize::new(threads));
        // Global stores: restored in full before any stream thread starts.
        let mut global = GlobalStateUpdater::start(
            &inner.topology,
            &inner.config,
            &state_dir,
            &rocksdb,
            InstanceLinks {
                state: inner.state.clone(),
                shutdown: inner.shutdown.clone(),
                live: live.clone(),
                counters: inner.global.clone(),
            },
        )
        .inspect_err(|e| tracing::error!(error = %e, "cannot restore the global stores"))?;
        if let Some(handle) = global.take_thread() {
            inner
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle);
        }
        *inner.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            state_dir,
            rocksdb,
            claim,
            live: live.clone(),
            globals: global.stores(),
        });
        *inner.metrics.lock().unwrap_or_else(|p| p.into_inner()) = (0..threads)
            .map(|_| Arc::new(Mutex::new(ThreadMetrics::default())))
            .collect();
        *inner.committed.lock().unwrap_or_else(|p| p.into_inner()) = (0..threads)
            .map(|_| Arc::new(Mutex::new(BTreeMap::new())))
            .collect();
        *inner.views.lock().unwrap_or_else(|p| p.into_inner()) =
            (0..threads).map(|_| SharedView::default()).collect();
        *inner.partitions.lock().unwrap_or_else(|p| p.into_inner()) = plan.tasks.clone();
        inner.state.set_threads(threads);
        inner.state.transition(State::Rebalancing);
        if watch_control {
            let watcher =
                control::watch(&inner.config, inner.state.clone(), inner.shutdown.clone())
                    .inspect_err(|_| {
                        // No stream thread will run: let the global thread stop.
                        inner.shutdown.store(true, Ordering::Relaxed);
                        live.store(0, Ordering::Release);
                    })?;
            inner
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(watcher);
        }
        for index in 0..threads {
            if let Err(e) = spawn_thread(inner, index) {
                inner.shutdown.store(true, Ordering::Relaxed);
                // Threads never spawned never end: the global thread must not wait for them.
                live.fetch_sub(threads - index, Ordering::AcqRel);
                return Err(e);
            }
        }
        if let Some(server) = &inner.config.application_server {
            let process = inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|r| r.claim.id().to_owned())
                .unwrap_or_default();
            let views = inner
                .views
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match metadata::start(
                &inner.config,
                server.clone(),
                process,
                views,
                inner.directory.clone(),
                inner.shutdown.clone(),
            ) {
                Ok(handle) => inner
                    .threads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(handle),
                Err(e) => {
                    inner.shutdown.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        tracing::info!(
            application = %inner.config.application_id,
            threads,
            tasks_per_subtopology = ?plan.tasks,
            setup_ms = started.elapsed().as_millis() as u64,
            "started"
        );
        Ok(())
    }

    /// Starts without blocking an async runtime's worker threads.
    pub async fn start_async(&self) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.start())
            .await
            .map_err(|e| StreamsError::Fatal(format!("the start task failed: {e}")))?
    }

    /// Shuts down gracefully: every thread commits, closes its tasks (their stores record the
    /// changelog offsets they reached) and leaves the group. Returns whether all threads stopped within `timeout`.
    pub fn close(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        let state = inner.state.get();
        if state == State::Created {
            inner.state.transition(State::PendingShutdown);
            inner.state.transition(State::NotRunning);
            return true;
        }
        inner.state.transition(State::PendingShutdown);
        inner.shutdown.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut handles = Vec::new();
        loop {
            // A thread being replaced right now adds its successor's handle: take them all.
            handles.append(&mut *inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
            let (done, pending): (Vec<_>, Vec<_>) =
                handles.into_iter().partition(|h| h.is_finished());
            for h in done {
                let _ = h.join();
            }
            handles = pending;
            let others = !inner
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if (handles.is_empty() && !others) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stopped = handles.is_empty();
        if !stopped {
            tracing::warn!(
                threads = handles.len(),
                ?timeout,
                "stream threads did not stop in time"
            );
            *inner.threads.lock().unwrap_or_else(|p| p.into_inner()) = handles;
        } else if inner.state.get() == State::PendingShutdown {
            inner.state.transition(State::NotRunning);
        }
        stopped
    }

    /// [`close`](Self::close) without blocking an async runtime's worker threads.
    pub async fn close_async(&self, timeout: Duration) -> bool {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.close(timeout))
            .await
            .unwrap_or(false)
    }

    /// Deletes this application's local state (every task directory not in use). Only allowed
    /// while the instance is not running.
    pub fn cleanup(&self) -> Result<()> {
        let state = self.state();
        if state.is_running_or_rebalancing() || state == State::PendingShutdown {
            return Err(StreamsError::Fatal(format!(
                "cleanup() needs a stopped instance; this one is {state:?}"
            )));
        }
        let dir = StateDirectory::new(
            &self.inner.config.state_dir,
            &self.inner.config.application_id,
        )?;
        let locked = dir.clean()?;
        if !locked.is_empty() {
            return Err(StreamsError::Fatal(format!(
                "task directories {locked:?} under {} are in use by another instance",
                dir.path().display()
            )));
        }
        tracing::info!(dir = %dir.path().display(), "local state deleted");
        Ok(())
    }
}

/// Starts stream thread `index`; its body hands a failure to [`thread_failed`].
fn spawn_thread(inner: &Arc<Inner>, index: usize) -> Result<()> {
    let setup = thread_setup(inner, index)?;
    let name = setup.name.clone();
    let weak = Arc::downgrade(inner);
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread::run(setup)));
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(StreamsError::Fatal(format!(
                    "stream thread {name} panicked: {}",
                    crate::task::panic_message(panic.as_ref())
                ))),
            };
            thread_ended(&weak, index, error);
        })
        .map_err(|e| StreamsError::Fatal(format!("spawning a stream thread: {e}")))?;
    inner
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(handle);
    Ok(())
}

/// A stream thread ended, with `error` if it failed: ask the handler, and settle the state when
/// the last thread is gone.
fn thread_ended(weak: &Weak<Inner>, index: usize, error: Option<StreamsError>) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    if let Some(e) = error {
        if thread_failed(&inner, index, e) {
            return; // replaced: the count of live threads is unchanged
        }
    }
    let live = inner
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|r| r.live.clone());
    if live.is_some_and(|live| live.fetch_sub(1, Ordering::AcqRel) == 1) {
        match inner.state.get() {
            State::PendingError => {
                inner.state.transition(State::Error);
            }
            State::PendingShutdown => {
                inner.state.transition(State::NotRunning);
            }
            _ => {}
        }
    }
}

/// Applies the uncaught exception handler to a failed thread; returns whether it was replaced.
fn thread_failed(inner: &Arc<Inner>, index: usize, error: StreamsError) -> bool {
    let handler = inner
        .handler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let response = match handler {
        Some(h) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&error)))
            .unwrap_or_else(|_| {
                tracing::error!(
                    "the uncaught exception handler panicked; shutting down the client"
                );
                StreamThreadExceptionResponse::ShutdownClient
            }),
        None => StreamThreadExceptionResponse::ShutdownClient,
    };
    let stopping = inner.shutdown.load(Ordering::Relaxed);
    tracing::error!(thread = index + 1, %error, ?response, "stream thread failed");
    match response {
        StreamThreadExceptionResponse::ReplaceThread if !stopping => {
            match spawn_thread(inner, index) {
                Ok(()) => {
                    tracing::warn!(thread = index + 1, "stream thread replaced");
                    return true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "replacing the stream thread failed");
                }
            }
        }
        StreamThreadExceptionResponse::ShutdownApplication => {
            let from = inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|r| r.claim.id().to_owned())
                .unwrap_or_default();
            if let Err(e) = control::request_shutdown(&inner.config, &from, &error.to_string()) {
                tracing::error!(error = %e, "asking the other instances to shut down failed");
            }
        }
        _ => {}
    }
    inner.state.fail(error);
    // One failed thread stops the instance: no silent half-running app.
    inner.shutdown.store(true, Ordering::Relaxed);
    false
}

/// The settings of stream thread `index`: its clients and its tasks' environment.
fn thread_setup(inner: &Arc<Inner>, index: usize) -> Result<ThreadSetup> {
    let c = &inner.config;
    let app = &c.application_id;
    let name = format!("{}-StreamThread-{}", c.client_id, index + 1);
    let exactly_once = c.guarantee == ProcessingGuarantee::ExactlyOnceV2;
    let none = std::collections::BTreeMap::new();
    let (state_dir, rocksdb, process, globals) = {
        let running = inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let r = running
            .as_ref()
            .ok_or_else(|| StreamsError::Fatal("the instance is not started".into()))?;
        (
            r.state_dir.clone(),
            r.rocksdb.clone(),
            r.claim.id().to_owned(),
            r.globals.clone(),
        )
    };

    let consumer = main_consumer_config(c, &name)?;

    let mut restore = topics::client_config(c, &none)?;
    for (k, v) in &c.consumer {
        if !k.starts_with("group.") {
            restore.set(k, v);
        }
    }
    restore
        .set("group.id", format!("{app}-restore"))
        .set("client.id", format!("{name}-restore-consumer"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set(
            "isolation.level",
            if exactly_once {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );

    let mut producer = topics::client_config(c, &none)?;
    producer
        .set("client.id", format!("{name}-producer"))
        // Kafka's Java default partitioner, so keys land where JVM producers put them.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "10");
    if exactly_once {
        producer.set(
            "transaction.timeout.ms",
            EOS_TRANSACTION_TIMEOUT_MS.to_string(),
        );
    }
    for (k, v) in &c.producer {
        producer.set(k, v);
    }
    producer.set("enable.idempotence", "true");
    if exactly_once {
        producer.set("transactional.id", format!("{app}-{process}-{}", index + 1));
    }

    let metrics = inner
        .metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(index)
        .cloned()
        .unwrap_or_default();
    let committed = inner
        .committed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(index)
        .cloned()
        .unwrap_or_default();
    let view = inner
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(index)
        .cloned()
        .unwrap_or_default();
    Ok(ThreadSetup {
        index,
        name,
        topology: inner.topology.clone(),
        config: c.clone(),
        state_dir,
        rocksdb,
        // The record cache budget is shared out among the threads.
        cache: CacheBudget::new(c.cache_max_bytes / c.num_stream_threads.max(1)),
        consumer,
        restore_consumer: restore,
        producer,
        state: inner.state.clone(),
        shutdown: inner.shutdown.clone(),
        metrics,
        committed,
        membership_changes: inner.membership_changes.clone(),
        view,
        globals,
    })
}

/// The configuration of a stream thread's consumer (its group member): the application's
/// client settings, the group, read isolation by guarantee, a prefetch held to
/// [`QUEUED_MIN_MESSAGES`], then the user's `consumer.*` settings.
fn main_consumer_config(c: &ResolvedConfig, name: &str) -> Result<rdkafka::ClientConfig> {
    let app = &c.application_id;
    let mut consumer = topics::client_config(c, &std::collections::BTreeMap::new())?;
    consumer
        .set("group.id", app)
        .set("client.id", format!("{name}-consumer"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &c.auto_offset_reset)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("queued.min.messages", QUEUED_MIN_MESSAGES)
        // Consumer lag per partition and the group's answer (see `thread::rebalance`).
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .set(
            "isolation.level",
            if c.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    if c.consumer_group_protocol() {
        consumer
            .set("group.protocol", "consumer")
            .set("group.remote.assignor", "range");
    } else {
        consumer.set("partition.assignment.strategy", "range");
    }
    // Settings the guarantee rests on (the group, isolation, offset commits) are refused by the
    // configuration's validation; the rest, the prefetch among them, the user may tune.
    for (k, v) in &c.consumer {
        consumer.set(k, v);
    }
    Ok(consumer)
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the last handle without close(): ask the threads to stop rather than leave
        // them running unowned.
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream thread's consumer prefetches one poll round's worth, not librdkafka's 100 000
    /// (which let one topic's backlog hold back a repartition topic's records), and the user's
    /// `consumer.queued.min.messages` still decides.
    #[test]
    fn the_thread_consumer_prefetch_is_bounded_and_tunable() {
        let config = |extra: &[(&str, &str)]| {
            let mut c = StreamsConfig::new("app").set("bootstrap.servers", "127.0.0.1:9");
            for (k, v) in extra {
                c = c.set(k, *v);
            }
            main_consumer_config(&c.validate().unwrap(), "app-StreamThread-1").unwrap()
        };
        let default = config(&[]);
        assert_eq!(
            default.get("queued.min.messages"),
            Some(QUEUED_MIN_MESSAGES)
        );
        assert_eq!(default.get("isolation.level"), Some("read_uncommitted"));
        assert_eq!(default.get("group.id"), Some("app"));
        let tuned = config(&[("consumer.queued.min.messages", "50000")]);
        assert_eq!(tuned.get("queued.min.messages"), Some("50000"));
        let eos = config(&[("processing.guarantee", "exactly_once_v2")]);
        assert_eq!(eos.get("isolation.level"), Some("read_committed"));
    }
}
