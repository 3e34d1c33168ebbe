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
use crate::runtime::control;
use crate::runtime::global::{GlobalCounters, GlobalStateUpdater, InstanceLinks};
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
    let name = format!("{app}-StreamThread-{}", index + 1);
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

    let mut consumer = topics::client_config(c, &none)?;
    consumer
        .set("group.id", app)
        .set("client.id", format!("{name}-consumer"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &c.auto_offset_reset)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set(
            "isolation.level",
            if exactly_once {
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
    // Settings the guarantee rests on are refused by the configuration's validation, so
    // these cannot replace any of the above.
    for (k, v) in &c.consumer {
        consumer.set(k, v);
    }

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
        globals,
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the last handle without close(): ask the threads to stop rather than leave
        // them running unowned.
        self.shutdown.store(true, Ordering::Relaxed);
    }
}
