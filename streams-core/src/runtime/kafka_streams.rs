//! [`KafkaStreams`]: a topology running on Kafka, in as many stream threads as configured.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use state_stores::cache::CacheBudget;
use state_stores::state_dir::StateDirectory;
use state_stores::RocksDbMemory;

use crate::config::{ProcessingGuarantee, ResolvedConfig, StreamsConfig};
use crate::error::{Result, StreamsError};

/// How long librdkafka waits before fetching again for a partition whose local queue was full.
/// Its default (1 s) stalls a thread that drains a full queue, which restoration and catch-up
/// do all the time; a re-check every 10 ms costs nothing measurable.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";
use crate::runtime::producer::{KafkaRecordCollector, StreamsProducer};
use crate::runtime::state::{State, StateCell, StateListener};
use crate::runtime::thread::{self, ThreadMetrics, ThreadSetup};
use crate::runtime::topics;
use crate::task::TaskEnv;
use crate::topology::Topology;

struct Inner {
    topology: Arc<Topology>,
    config: ResolvedConfig,
    state: Arc<StateCell>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shutdown: Arc<AtomicBool>,
    metrics: Mutex<Vec<Arc<Mutex<ThreadMetrics>>>>,
    process_id: String,
    /// Group membership changes by this instance's threads; see `handoff`.
    membership_changes: Arc<std::sync::atomic::AtomicU64>,
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
                threads: Mutex::new(Vec::new()),
                shutdown: Arc::new(AtomicBool::new(false)),
                metrics: Mutex::new(Vec::new()),
                process_id: process_id(),
                membership_changes: Arc::default(),
            }),
        })
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
        }
    }

    fn client(&self, extra: &std::collections::BTreeMap<String, String>) -> Result<ClientConfig> {
        topics::client_config(&self.inner.config, extra)
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
        let plan = match topics::prepare(&inner.topology, &inner.config) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return Err(e);
            }
        };
        let state_dir = StateDirectory::new(&inner.config.state_dir, &inner.config.application_id)?;
        let rocksdb = RocksDbMemory::new(inner.config.rocksdb_memory_bytes)?;
        let threads = inner.config.num_stream_threads;
        inner.state.set_threads(threads);
        inner.state.transition(State::Rebalancing);
        let live = Arc::new(AtomicUsize::new(threads));
        let mut handles = Vec::with_capacity(threads);
        let mut metrics = Vec::with_capacity(threads);
        for index in 0..threads {
            let setup = self.thread_setup(index, &state_dir, &rocksdb)?;
            metrics.push(setup.metrics.clone());
            let (state, shutdown, live) =
                (inner.state.clone(), inner.shutdown.clone(), live.clone());
            let name = setup.name.clone();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        thread::run(setup)
                    }));
                    let error = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(panic) => Some(StreamsError::Fatal(format!(
                            "stream thread {name} panicked: {}",
                            panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("(no message)")
                        ))),
                    };
                    if let Some(e) = error {
                        state.fail(e);
                        // One failed thread stops the instance: no silent half-running app.
                        shutdown.store(true, Ordering::Relaxed);
                    }
                    if live.fetch_sub(1, Ordering::AcqRel) == 1 {
                        match state.get() {
                            State::PendingError => {
                                state.transition(State::Error);
                            }
                            State::PendingShutdown => {
                                state.transition(State::NotRunning);
                            }
                            _ => {}
                        }
                    }
                })
                .map_err(|e| StreamsError::Fatal(format!("spawning a stream thread: {e}")))?;
            handles.push(handle);
        }
        *inner.metrics.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
        *inner.threads.lock().unwrap_or_else(|p| p.into_inner()) = handles;
        tracing::info!(
            application = %inner.config.application_id,
            threads,
            tasks_per_subtopology = ?plan.tasks,
            setup_ms = started.elapsed().as_millis() as u64,
            "started"
        );
        Ok(())
    }

    fn thread_setup(
        &self,
        index: usize,
        state_dir: &StateDirectory,
        rocksdb: &RocksDbMemory,
    ) -> Result<ThreadSetup> {
        let inner = &self.inner;
        let c = &inner.config;
        let app = &c.application_id;
        let name = format!("{app}-StreamThread-{}", index + 1);
        let exactly_once = c.guarantee == ProcessingGuarantee::ExactlyOnceV2;

        let mut consumer = self.client(&std::collections::BTreeMap::new())?;
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
        for (k, v) in &c.consumer {
            consumer.set(k, v);
        }

        let mut restore = self.client(&std::collections::BTreeMap::new())?;
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
        for (k, v) in &c.consumer {
            if !k.starts_with("group.") {
                restore.set(k, v);
            }
        }

        let mut producer = self.client(&std::collections::BTreeMap::new())?;
        producer
            .set("client.id", format!("{name}-producer"))
            // Kafka's Java default partitioner, so keys land where JVM producers put them.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "10")
            .set("enable.idempotence", "true");
        if exactly_once {
            producer.set(
                "transactional.id",
                format!("{app}-{}-{}", inner.process_id, index + 1),
            );
        }
        for (k, v) in &c.producer {
            producer.set(k, v);
        }
        let producer = Arc::new(StreamsProducer::new(
            &producer,
            c.guarantee,
            c.production.clone(),
            format!("{name}-producer"),
        )?);

        let env = TaskEnv {
            application_id: app.as_str().into(),
            defaults: c.defaults.clone(),
            collector: Arc::new(KafkaRecordCollector {
                producer: producer.clone(),
            }),
            state_dir: state_dir.clone(),
            rocksdb: rocksdb.clone(),
            // The record cache budget is shared out among the threads.
            cache: CacheBudget::new(c.cache_max_bytes / c.num_stream_threads.max(1)),
            deserialization: c.deserialization.clone(),
            timestamps: c.timestamps.clone(),
            wall_clock_ms: 0,
        };
        Ok(ThreadSetup {
            index,
            name,
            topology: inner.topology.clone(),
            config: c.clone(),
            env,
            consumer,
            restore_consumer: restore,
            producer,
            state: inner.state.clone(),
            shutdown: inner.shutdown.clone(),
            metrics: Arc::new(Mutex::new(ThreadMetrics::default())),
            membership_changes: inner.membership_changes.clone(),
        })
    }

    /// Starts without blocking an async runtime's worker threads.
    pub async fn start_async(&self) -> Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.start())
            .await
            .map_err(|e| StreamsError::Fatal(format!("the start task failed: {e}")))?
    }

    /// Shuts down gracefully: every thread commits, closes its tasks (writing checkpoints) and
    /// leaves the group. Returns whether all threads stopped within `timeout`.
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
        let mut handles =
            std::mem::take(&mut *inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        while !handles.is_empty() && Instant::now() < deadline {
            let (done, pending): (Vec<_>, Vec<_>) =
                handles.into_iter().partition(|h| h.is_finished());
            for h in done {
                let _ = h.join();
            }
            handles = pending;
            if !handles.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
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

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the last handle without close(): ask the threads to stop rather than leave
        // them running unowned.
        self.shutdown.store(true, Ordering::Relaxed);
    }
}
