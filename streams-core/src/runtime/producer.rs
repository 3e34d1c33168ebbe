//! The stream thread's producer, and the only place its lifecycle lives (Kafka's
//! `StreamsProducer`): sending, flushing, delivery tracking, and, under exactly-once, the
//! transaction around each commit.
//!
//! Delivery reports feed two things: the offset of the last record delivered to each partition
//! (changelog offsets become the offsets stores are committed at) and failed deliveries, which the
//! production handler judges at the next check. A full local queue is backpressure: `send` waits
//! for room rather than dropping the record.
//!
//! Under exactly-once the Kafka commit of a transaction runs on a committer thread
//! ([`StreamsProducer::start_commit`]), so the stream thread goes on processing meanwhile.
//! Records sent while it is in flight are held, in order, and sent once the thread has finished
//! the commit on its side ([`StreamsProducer::release_held`]): they belong to the next
//! transaction, and the changelog offsets that the finished commit records must not count them.
//!
//! Transaction calls that fail with a retriable error (a timeout, a coordinator moving) are
//! retried with backoff for up to [`RETRY_BUDGET`]. Other failures come back classified, for the
//! thread's recovery ([`crate::runtime::recovery`]): [`StreamsError::TaskMigrated`] when the
//! producer was fenced or hit a fatal error (it is unusable; the thread makes a new one), and
//! [`StreamsError::TransactionAborted`] when the transaction must be aborted.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use super::cut::{Cut, EpochAcks, Epochs};
use super::held::HeldRecords;
use super::produce::{Produced, TopicHandles};
use crate::collector::{OutgoingRecord, RecordCollector};
use crate::config::ProcessingGuarantee;
use crate::dead_letter::{DeadLetterQueue, FailedRecord};
use crate::error::{Result, StreamsError};
use crate::handlers::{HandlerResponse, SharedProductionHandler};

/// How long a send waits for room in a full producer queue before failing.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long flushes may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one transaction call may take before it is retried (librdkafka lets a timed-out
/// commit be called again).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long retriable transaction errors are retried before the transaction is given up.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(60);
/// How long past its own timeout a transaction call may go on before the client is taken to be
/// stuck. librdkafka's `send_offsets_to_transaction` can ignore its timeout and block for good
/// when the group coordinator stops answering (librdkafka#5456, #5511); the commit is then
/// given up and the producer replaced, which fences the stuck one.
const STUCK_MARGIN: Duration = Duration::from_secs(15);

/// The hasher of the maps every delivery report updates (the producer's polling thread reads a
/// report per record).
type Fast = foldhash::fast::RandomState;

/// What delivery reports told us.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// The highest offset delivered per topic and partition (by topic first, so that a delivery
    /// report finds its entry without allocating the topic name).
    pub(crate) last_offsets: HashMap<String, HashMap<i32, i64, Fast>, Fast>,
    /// Failed deliveries not yet judged: (topic, error).
    pub(crate) failures: Vec<(String, KafkaError)>,
    /// Records delivered.
    pub(crate) delivered: u64,
    /// Delivery reports (successes and failures) per epoch, for at-least-once commits.
    pub(crate) acks: EpochAcks,
}

pub(crate) struct TrackingContext {
    deliveries: Arc<Mutex<Deliveries>>,
}

impl ClientContext for TrackingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::client_log::forward(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::client_log::forward_error(&error, reason);
    }
}

impl ProducerContext for TrackingContext {
    /// The epoch the record was sent in (see [`super::cut`]).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        let mut d = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        d.acks.record(epoch);
        match result {
            Ok(message) => {
                d.delivered += 1;
                let topic = message.topic();
                let partitions = match d.last_offsets.get_mut(topic) {
                    Some(partitions) => partitions,
                    None => d.last_offsets.entry(topic.to_owned()).or_default(),
                };
                let entry = partitions.entry(message.partition()).or_insert(-1);
                *entry = (*entry).max(message.offset());
            }
            Err((error, message)) => d.failures.push((message.topic().to_owned(), error.clone())),
        }
    }
}

/// A stream thread's producer; see the [module docs](self).
pub(crate) struct StreamsProducer {
    /// Declared before the client, so that the handles are released first.
    topics: TopicHandles,
    producer: ThreadedProducer<TrackingContext>,
    deliveries: Arc<Mutex<Deliveries>>,
    guarantee: ProcessingGuarantee,
    handler: SharedProductionHandler,
    in_transaction: Mutex<bool>,
    /// The commit in flight, and the records held meanwhile.
    commit: Mutex<CommitState>,
    client_id: String,
    /// Records dropped by the production handler.
    skipped: Mutex<u64>,
    /// Where records the client refused are written, if anywhere.
    dead_letter: Option<DeadLetterQueue>,
    /// Records written there.
    dead_lettered: Mutex<u64>,
    /// When the transaction call the committer thread is in began, if it is in one.
    txn_call_since: Mutex<Option<Instant>>,
    /// A transaction call overran its timeout by [`STUCK_MARGIN`]: this producer is not to be
    /// used again.
    stuck: std::sync::atomic::AtomicBool,
    /// The epoch records are sent in, for at-least-once commits (see [`super::cut`]).
    epochs: Epochs,
}

/// Where the producer is in a commit.
enum CommitState {
    /// No commit in flight: records go out at once.
    Idle,
    /// The committer thread is committing; records are held.
    InFlight {
        done: mpsc::Receiver<Result<()>>,
        held: HeldRecords,
    },
    /// The commit ended and its result went to the thread, which has not released the held
    /// records yet.
    Ended { held: HeldRecords },
}

impl StreamsProducer {
    pub(crate) fn new(
        config: &ClientConfig,
        guarantee: ProcessingGuarantee,
        handler: SharedProductionHandler,
        dead_letter: Option<DeadLetterQueue>,
        client_id: String,
    ) -> Result<Self> {
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let producer: ThreadedProducer<TrackingContext> = config
            .create_with_context(TrackingContext {
                deliveries: deliveries.clone(),
            })
            .map_err(|e| StreamsError::kafka(format!("creating producer {client_id}"), e))?;
        let me = StreamsProducer {
            topics: TopicHandles::default(),
            producer,
            deliveries,
            guarantee,
            handler,
            in_transaction: Mutex::new(false),
            commit: Mutex::new(CommitState::Idle),
            client_id,
            skipped: Mutex::new(0),
            dead_letter,
            dead_lettered: Mutex::new(0),
            txn_call_since: Mutex::new(None),
            stuck: std::sync::atomic::AtomicBool::new(false),
            epochs: Epochs::default(),
        };
        if guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            // Fences an earlier producer with the same transactional id and aborts what it left
            // open; retried while the coordinator is still finishing that.
            me.retrying("initializing transactions", || {
                me.producer.init_transactions(TXN_CALL_TIMEOUT)
            })?;
        }
        Ok(me)
    }

    /// Runs a transaction call, retrying retriable errors with backoff for up to
    /// [`RETRY_BUDGET`]; other errors come back classified.
    fn retrying<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut backoff = Duration::from_millis(50);
        loop {
            match call() {
                Ok(v) => return Ok(v),
                Err(KafkaError::Transaction(err))
                    if err.is_retriable() && !err.is_fatal() && Instant::now() < deadline =>
                {
                    tracing::warn!(producer = %self.client_id, error = %err, ?backoff, "{what} failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(self.transaction_error(what, e)),
            }
        }
    }

    /// Whether the producer hit a fatal error (fenced, or its transaction timed out on the
    /// broker): it cannot be used again.
    pub(crate) fn is_fatal(&self) -> bool {
        self.producer.client().fatal_error().is_some()
    }

    /// Drops every record still queued or in flight, before this producer is replaced: records
    /// a stuck connection holds would otherwise keep its flush (and its destruction) waiting.
    /// Processing resumes from the last commit, which produces them again.
    pub(crate) fn discard(&self) {
        let waiting = self.producer.in_flight_count();
        if waiting > 0 {
            tracing::warn!(producer = %self.client_id, waiting, "discarding undelivered records of a producer being replaced");
        }
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    }

    /// The producer's `client.id`.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    fn begin_if_needed(&self) -> Result<()> {
        if self.guarantee != ProcessingGuarantee::ExactlyOnceV2 {
            return Ok(());
        }
        let mut open = self
            .in_transaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !*open {
            self.producer
                .begin_transaction()
                .map_err(|e| self.transaction_error("beginning a transaction", e))?;
            *open = true;
        }
        Ok(())
    }

    /// Classifies a failed transaction call: a fenced or fatally failed producer means its tasks
    /// may have moved on ([`StreamsError::TaskMigrated`]); anything else leaves a transaction
    /// that must be aborted ([`StreamsError::TransactionAborted`]).
    fn transaction_error(&self, what: &str, e: KafkaError) -> StreamsError {
        let fenced = match &e {
            KafkaError::Transaction(err) => {
                err.is_fatal()
                    || matches!(
                        err.code(),
                        RDKafkaErrorCode::ProducerFenced
                            | RDKafkaErrorCode::InvalidProducerEpoch
                            | RDKafkaErrorCode::UnknownMemberId
                            | RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::FencedInstanceId
                            | RDKafkaErrorCode::FencedMemberEpoch
                            | RDKafkaErrorCode::StaleMemberEpoch
                            | RDKafkaErrorCode::UnknownProducerId
                    )
            }
            _ => false,
        };
        if fenced || self.is_fatal() {
            StreamsError::TaskMigrated {
                task: format!("(all tasks of {})", self.client_id),
                reason: format!("{what}: {e}"),
            }
        } else {
            StreamsError::TransactionAborted {
                producer: self.client_id.clone(),
                reason: format!("{what}: {e}"),
            }
        }
    }

    /// Sends one record, waiting while the local queue is full. While a commit is in flight
    /// the record is held for the next transaction.
    pub(crate) fn send(&self, record: OutgoingRecord<'_>) -> Result<()> {
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            let mut state = self.commit.lock().unwrap_or_else(|p| p.into_inner());
            if let CommitState::InFlight { held, .. } | CommitState::Ended { held } = &mut *state {
                held.push(&record);
                return Ok(());
            }
        }
        self.begin_if_needed()?;
        let produced = Produced {
            topic: record.topic,
            partition: record.partition,
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
            headers: record.headers,
            opaque: self.epochs.current(),
        };
        // Read the clock only once the queue is full: this is the per-record path.
        let mut deadline = None;
        loop {
            match self.topics.produce(self.producer.client(), &produced) {
                Ok(()) => {
                    self.epochs.sent();
                    return Ok(());
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + QUEUE_FULL_TIMEOUT);
                    if Instant::now() >= deadline {
                        return Err(StreamsError::Fatal(format!(
                            "producer {} queue stayed full for {QUEUE_FULL_TIMEOUT:?} writing to `{}`; the brokers are not keeping up or are unreachable",
                            self.client_id, record.topic
                        )));
                    }
                    // The background thread drains the queue; give it a moment.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return self.send_error(record, e),
            }
        }
    }

    /// What a refused send means: a record the client rejects outright (too large, say) is
    /// judged by the production handler like a failed delivery (`Ok` when it skips it), and
    /// written to the dead-letter queue if there is one; a fenced producer means the tasks may
    /// have moved on; any other refusal under exactly-once leaves the transaction unable to
    /// commit.
    fn send_error(&self, record: OutgoingRecord<'_>, e: KafkaError) -> Result<()> {
        let topic = record.topic;
        if self.is_fatal() {
            return Err(StreamsError::TaskMigrated {
                task: format!("(all tasks of {})", self.client_id),
                reason: format!("sending to `{topic}`: {e}"),
            });
        }
        let refused_record = matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::BadMessage
            )
        );
        if refused_record {
            let dead_letter = self.dead_letter.as_ref();
            if dead_letter.is_some_and(|d| d.topic() == topic) {
                // A dead-letter record is not judged again, nor written to the queue again:
                // its own record's handling reports the failure.
                return Err(StreamsError::Fatal(format!(
                    "the dead-letter topic `{topic}` refused a record: {e}"
                )));
            }
            let response = self.handler.handle(topic, &e.to_string());
            if let Some(dlq) = dead_letter {
                self.dead_letter_refused(dlq, record, &e);
            }
            return match response {
                HandlerResponse::Continue => {
                    *self.skipped.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    Ok(())
                }
                HandlerResponse::Fail => Err(StreamsError::Fatal(format!(
                    "a record could not be produced to `{topic}`: {e} (set default.production.exception.handler=continue to drop such records)"
                ))),
            };
        }
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            return Err(StreamsError::TransactionAborted {
                producer: self.client_id.clone(),
                reason: format!("sending to `{topic}`: {e}"),
            });
        }
        Err(StreamsError::kafka(format!("sending to `{topic}`"), e))
    }

    /// Writes a record the client refused to the dead-letter queue. The production handler has
    /// already decided about the record; a dead-letter record that cannot be written either
    /// (the same size limit applies to it) is logged, not judged again.
    fn dead_letter_refused(
        &self,
        dlq: &DeadLetterQueue,
        record: OutgoingRecord<'_>,
        e: &KafkaError,
    ) {
        let failed = FailedRecord {
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
            headers: record.headers,
            origin: record.source,
        };
        let exception = format!("KafkaError::{e:?}");
        if dlq.send(|r| self.send(r), failed, &exception, e).is_ok() {
            *self.dead_lettered.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    }

    /// Waits until every record sent so far is delivered or failed, then applies the
    /// production handler to failures.
    pub(crate) fn flush(&self) -> Result<()> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| StreamsError::kafka(format!("flushing producer {}", self.client_id), e))?;
        self.check_failures()
    }

    /// Applies the production handler to deliveries that failed since the last check. Under
    /// exactly-once, a delivery that failed because the producer was fenced, or because the
    /// transaction failed, is that failure instead.
    pub(crate) fn check_failures(&self) -> Result<()> {
        let failures = std::mem::take(
            &mut self
                .deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failures,
        );
        for (topic, error) in failures {
            if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 {
                let code = error.rdkafka_error_code();
                let fenced = matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::ProducerFenced
                            | RDKafkaErrorCode::InvalidProducerEpoch
                            | RDKafkaErrorCode::UnknownProducerId
                    )
                );
                if fenced || self.is_fatal() {
                    return Err(StreamsError::TaskMigrated {
                        task: format!("(all tasks of {})", self.client_id),
                        reason: format!("producing to `{topic}`: {error}"),
                    });
                }
                if matches!(
                    code,
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) {
                    // librdkafka purges the records of a transaction that failed: the
                    // transaction is what failed, not the record.
                    return Err(StreamsError::TransactionAborted {
                        producer: self.client_id.clone(),
                        reason: format!(
                            "the transaction failed and its records to `{topic}` were purged ({error})"
                        ),
                    });
                }
            }
            let error = error.to_string();
            match self.handler.handle(&topic, &error) {
                HandlerResponse::Continue => *self.skipped.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                HandlerResponse::Fail => {
                    return Err(StreamsError::Fatal(format!(
                        "a record could not be produced to `{topic}`: {error} (set default.production.exception.handler=continue to drop such records)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// At-least-once: ends the current epoch; the records sent so far are the cut's.
    pub(crate) fn cut(&self) -> Cut {
        self.epochs.cut()
    }

    /// Whether every record sent before `cut` has a delivery report.
    pub(crate) fn reached(&self, cut: Cut) -> bool {
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acks
            .reached(cut)
    }

    /// The next offset after the last record delivered to `topic`-`partition`, if any was.
    pub(crate) fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_offsets
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .map(|o| o + 1)
    }

    /// Records delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delivered
    }

    /// Records dropped by the production handler.
    pub(crate) fn skipped(&self) -> u64 {
        *self.skipped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records written to the dead-letter queue because the client refused them.
    pub(crate) fn dead_lettered(&self) -> u64 {
        *self.dead_lettered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Exactly-once: starts committing the open transaction together with `offsets` for the
    /// consumer group, on a committer thread; returns whether there was anything to commit.
    /// [`poll_commit`](Self::poll_commit) or [`wait_commit`](Self::wait_commit) give the result.
    /// (At-least-once commits offsets through the consumer instead.)
    pub(crate) fn start_commit(
        self: &Arc<Self>,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<bool> {
        {
            let mut open = self
                .in_transaction
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !*open {
                if offsets.count() == 0 {
                    return Ok(false);
                }
                self.producer
                    .begin_transaction()
                    .map_err(|e| self.transaction_error("beginning a transaction", e))?;
                *open = true;
            }
        }
        let (tx, done) = mpsc::channel();
        *self.commit.lock().unwrap_or_else(|p| p.into_inner()) = CommitState::InFlight {
            done,
            held: HeldRecords::default(),
        };
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-commit", self.client_id))
            .spawn(move || {
                let _ = tx.send(me.commit_now(&offsets, &group));
            });
        if let Err(e) = spawned {
            *self.commit.lock().unwrap_or_else(|p| p.into_inner()) = CommitState::Idle;
            return Err(StreamsError::Fatal(format!(
                "spawning the committer thread of {}: {e}",
                self.client_id
            )));
        }
        Ok(true)
    }

    /// The committer thread's work: offsets into the transaction, then the commit.
    fn commit_now(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        if offsets.count() > 0 {
            self.retrying("sending offsets to the transaction", || {
                self.watched(|| {
                    self.producer
                        .send_offsets_to_transaction(offsets, group, TXN_CALL_TIMEOUT)
                })
            })?;
        }
        self.retrying("committing the transaction", || {
            self.watched(|| self.producer.commit_transaction(TXN_CALL_TIMEOUT))
        })?;
        *self
            .in_transaction
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = false;
        Ok(())
    }

    /// Runs one transaction call of the committer thread under the stuck-call watch.
    fn watched<T>(&self, call: impl FnOnce() -> T) -> T {
        *self
            .txn_call_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let result = call();
        *self
            .txn_call_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        result
    }

    /// Whether the committer thread has been in one transaction call for longer than the call's
    /// timeout plus [`STUCK_MARGIN`]; once it has, the producer stays marked stuck.
    pub(crate) fn is_stuck(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.stuck.load(Ordering::Relaxed) {
            return true;
        }
        let overdue = self
            .txn_call_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|since| since.elapsed() > TXN_CALL_TIMEOUT + STUCK_MARGIN);
        if overdue {
            tracing::warn!(producer = %self.client_id, limit_s = (TXN_CALL_TIMEOUT + STUCK_MARGIN).as_secs(),
                "a transaction call has not returned long past its timeout; giving up the commit and replacing the producer");
            self.stuck.store(true, Ordering::Relaxed);
        }
        overdue
    }

    fn stuck_error(&self) -> StreamsError {
        StreamsError::TransactionAborted {
            producer: self.client_id.clone(),
            reason: format!(
                "a transaction call did not return within {} s (the Kafka client is stuck, \
                 librdkafka#5456); the transaction is given up and the producer replaced",
                (TXN_CALL_TIMEOUT + STUCK_MARGIN).as_secs()
            ),
        }
    }

    /// The result of the commit in flight, if it has ended; `None` while it runs (or when none
    /// was started). Records stay held until [`release_held`](Self::release_held). A commit
    /// whose client call is stuck ends with an error (see [`is_stuck`](Self::is_stuck)).
    pub(crate) fn poll_commit(&self) -> Option<Result<()>> {
        self.end_commit(|done| match done.try_recv() {
            Ok(result) => Some(result),
            Err(mpsc::TryRecvError::Empty) if self.is_stuck() => Some(Err(self.stuck_error())),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(self.committer_died())),
        })
    }

    /// Waits for the commit in flight, if any, and returns its result; a stuck commit ends the
    /// wait with an error.
    pub(crate) fn wait_commit(&self) -> Option<Result<()>> {
        self.end_commit(|done| loop {
            match done.recv_timeout(Duration::from_millis(500)) {
                Ok(result) => return Some(result),
                Err(mpsc::RecvTimeoutError::Timeout) if self.is_stuck() => {
                    return Some(Err(self.stuck_error()))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err(self.committer_died()))
                }
            }
        })
    }

    fn committer_died(&self) -> StreamsError {
        StreamsError::TransactionAborted {
            producer: self.client_id.clone(),
            reason: "the committer thread ended without a result".into(),
        }
    }

    fn end_commit(
        &self,
        outcome: impl FnOnce(&mpsc::Receiver<Result<()>>) -> Option<Result<()>>,
    ) -> Option<Result<()>> {
        let mut state = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let CommitState::InFlight { done, held } = &mut *state else {
            return None;
        };
        let result = outcome(done)?;
        *state = CommitState::Ended {
            held: std::mem::take(held),
        };
        drop(state);
        Some(result.and_then(|()| self.check_failures()))
    }

    /// Records held while a commit was in flight.
    pub(crate) fn held(&self) -> usize {
        match &*self.commit.lock().unwrap_or_else(|p| p.into_inner()) {
            CommitState::InFlight { held, .. } | CommitState::Ended { held } => held.len(),
            CommitState::Idle => 0,
        }
    }

    /// After a successful commit: sends the records held meanwhile, in the next transaction.
    pub(crate) fn release_held(&self) -> Result<()> {
        let held = {
            let mut state = self.commit.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *state, CommitState::Idle) {
                CommitState::Ended { held } => held,
                other => {
                    *state = other;
                    return Ok(());
                }
            }
        };
        held.send_all(|record| self.send(record))
    }

    /// Exactly-once: aborts the open transaction, if any, once a commit in flight has ended
    /// (its result is then moot); held records are dropped.
    pub(crate) fn abort_transaction(&self) -> Result<()> {
        let _ = self.wait_commit();
        *self.commit.lock().unwrap_or_else(|p| p.into_inner()) = CommitState::Idle;
        let mut open = self
            .in_transaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *open {
            // Whatever failed, the records of this transaction are not to be delivered: forget
            // what the delivery reports said about them.
            self.deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failures
                .clear();
            self.retrying("aborting the transaction", || {
                self.producer.abort_transaction(TXN_CALL_TIMEOUT)
            })?;
            *open = false;
        }
        Ok(())
    }
}

/// The record collector of a stream thread's tasks: hands records to the producer.
pub(crate) struct KafkaRecordCollector {
    pub(crate) producer: Arc<StreamsProducer>,
}

impl RecordCollector for KafkaRecordCollector {
    fn send(&self, record: OutgoingRecord<'_>) -> Result<()> {
        self.producer.send(record)
    }
}
