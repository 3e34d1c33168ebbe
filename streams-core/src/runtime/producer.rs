//! The stream thread's producer, and the only place its lifecycle lives (Kafka's
//! `StreamsProducer`): sending, flushing, delivery tracking, and, under exactly-once, the
//! transaction around each commit.
//!
//! Delivery reports feed two things: the offset of the last record delivered to each partition
//! (changelog offsets become the offsets stores are committed at) and failed deliveries, which the
//! production handler judges at the next check. A full local queue is backpressure: `send` waits
//! for room rather than dropping the record.
//!
//! Transaction calls that fail with a retriable error (a timeout, a coordinator moving) are
//! retried with backoff for up to [`RETRY_BUDGET`]. Other failures come back classified, for the
//! thread's recovery ([`crate::runtime::recovery`]): [`StreamsError::TaskMigrated`] when the
//! producer was fenced or hit a fatal error (it is unusable; the thread makes a new one), and
//! [`StreamsError::TransactionAborted`] when the transaction must be aborted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use crate::collector::{OutgoingRecord, RecordCollector};
use crate::config::ProcessingGuarantee;
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

/// What delivery reports told us.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// The highest offset delivered per (topic, partition).
    pub(crate) last_offsets: HashMap<(String, i32), i64>,
    /// Failed deliveries not yet judged: (topic, error).
    pub(crate) failures: Vec<(String, String)>,
    /// Records delivered.
    pub(crate) delivered: u64,
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
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let mut d = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(message) => {
                d.delivered += 1;
                let entry = d
                    .last_offsets
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert(-1);
                *entry = (*entry).max(message.offset());
            }
            Err((error, message)) => d
                .failures
                .push((message.topic().to_owned(), error.to_string())),
        }
    }
}

/// A stream thread's producer; see the [module docs](self).
pub(crate) struct StreamsProducer {
    producer: ThreadedProducer<TrackingContext>,
    deliveries: Arc<Mutex<Deliveries>>,
    guarantee: ProcessingGuarantee,
    handler: SharedProductionHandler,
    in_transaction: Mutex<bool>,
    client_id: String,
    /// Records dropped by the production handler.
    skipped: Mutex<u64>,
}

impl StreamsProducer {
    pub(crate) fn new(
        config: &ClientConfig,
        guarantee: ProcessingGuarantee,
        handler: SharedProductionHandler,
        client_id: String,
    ) -> Result<Self> {
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let producer: ThreadedProducer<TrackingContext> = config
            .create_with_context(TrackingContext {
                deliveries: deliveries.clone(),
            })
            .map_err(|e| StreamsError::kafka(format!("creating producer {client_id}"), e))?;
        let me = StreamsProducer {
            producer,
            deliveries,
            guarantee,
            handler,
            in_transaction: Mutex::new(false),
            client_id,
            skipped: Mutex::new(0),
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

    /// Sends one record, waiting while the local queue is full.
    pub(crate) fn send(&self, record: OutgoingRecord<'_>) -> Result<()> {
        self.begin_if_needed()?;
        let mut headers = None;
        if !record.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in record.headers.iter() {
                h = h.insert(Header { key, value });
            }
            headers = Some(h);
        }
        let mut base: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(record.topic);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if record.timestamp >= 0 {
            base = base.timestamp(record.timestamp);
        }
        if let Some(h) = headers {
            base = base.headers(h);
        }
        // Read the clock only once the queue is full: this is the per-record path.
        let mut deadline = None;
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + QUEUE_FULL_TIMEOUT);
                    if Instant::now() >= deadline {
                        return Err(StreamsError::Fatal(format!(
                            "producer {} queue stayed full for {QUEUE_FULL_TIMEOUT:?} writing to `{}`; the brokers are not keeping up or are unreachable",
                            self.client_id, record.topic
                        )));
                    }
                    base = returned;
                    // The background thread drains the queue; give it a moment.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return self.send_error(record.topic, e),
            }
        }
    }

    /// What a refused send means: a record the client rejects outright (too large, say) is
    /// judged by the production handler like a failed delivery (`Ok` when it skips it); a
    /// fenced producer means the tasks may have moved on; any other refusal under exactly-once
    /// leaves the transaction unable to commit.
    fn send_error(&self, topic: &str, e: KafkaError) -> Result<()> {
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
            return match self.handler.handle(topic, &e.to_string()) {
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

    /// Waits until every record sent so far is delivered or failed, then applies the
    /// production handler to failures.
    pub(crate) fn flush(&self) -> Result<()> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| StreamsError::kafka(format!("flushing producer {}", self.client_id), e))?;
        self.check_failures()
    }

    /// Applies the production handler to deliveries that failed since the last check.
    pub(crate) fn check_failures(&self) -> Result<()> {
        let failures = std::mem::take(
            &mut self
                .deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failures,
        );
        for (topic, error) in failures {
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

    /// The next offset after the last record delivered to `topic`-`partition`, if any was.
    pub(crate) fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_offsets
            .get(&(topic.to_owned(), partition))
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

    /// Exactly-once: commits the open transaction together with `offsets` for the consumer
    /// group. (At-least-once commits offsets through the consumer instead.)
    pub(crate) fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let mut open = self
            .in_transaction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !*open {
            if offsets.count() == 0 {
                return Ok(());
            }
            self.producer
                .begin_transaction()
                .map_err(|e| self.transaction_error("beginning a transaction", e))?;
            *open = true;
        }
        if offsets.count() > 0 {
            self.retrying("sending offsets to the transaction", || {
                self.producer
                    .send_offsets_to_transaction(offsets, group, TXN_CALL_TIMEOUT)
            })?;
        }
        self.retrying("committing the transaction", || {
            self.producer.commit_transaction(TXN_CALL_TIMEOUT)
        })?;
        *open = false;
        drop(open);
        self.check_failures()
    }

    /// Exactly-once: aborts the open transaction, if any.
    pub(crate) fn abort_transaction(&self) -> Result<()> {
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
