//! The stream thread's producer, and the only place its lifecycle lives (Kafka's
//! `StreamsProducer`): sending, flushing, delivery tracking, and, under exactly-once, the
//! transaction around each commit.
//!
//! Delivery reports feed two things: the offset of the last record delivered to each partition
//! (changelog offsets become checkpoints) and failed deliveries, which the production handler
//! judges at the next check. A full local queue is backpressure: `send` waits for room rather
//! than dropping the record.

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
/// How long flushes and transaction calls may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

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
        if guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            producer.init_transactions(FLUSH_TIMEOUT).map_err(|e| {
                StreamsError::kafka(format!("initializing transactions of {client_id}"), e)
            })?;
        }
        Ok(StreamsProducer {
            producer,
            deliveries,
            guarantee,
            handler,
            in_transaction: Mutex::new(false),
            client_id,
            skipped: Mutex::new(0),
        })
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
                .map_err(|e| self.fatal_or_migrated("beginning a transaction", e))?;
            *open = true;
        }
        Ok(())
    }

    /// A transactional error that fenced this producer means another instance took over.
    fn fatal_or_migrated(&self, what: &str, e: KafkaError) -> StreamsError {
        if let KafkaError::Transaction(err) = &e {
            if err.is_fatal() || matches!(err.code(), RDKafkaErrorCode::ProducerFenced) {
                return StreamsError::TaskMigrated {
                    task: self.client_id.clone(),
                    reason: format!("{what}: {e}"),
                };
            }
        }
        StreamsError::kafka(format!("{what} ({})", self.client_id), e)
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
                Err((e, _)) => {
                    return Err(StreamsError::kafka(
                        format!("sending to `{}`", record.topic),
                        e,
                    ))
                }
            }
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
                .map_err(|e| self.fatal_or_migrated("beginning a transaction", e))?;
            *open = true;
        }
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(offsets, group, FLUSH_TIMEOUT)
                .map_err(|e| self.fatal_or_migrated("sending offsets to the transaction", e))?;
        }
        self.producer
            .commit_transaction(FLUSH_TIMEOUT)
            .map_err(|e| self.fatal_or_migrated("committing the transaction", e))?;
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
            self.producer
                .abort_transaction(FLUSH_TIMEOUT)
                .map_err(|e| self.fatal_or_migrated("aborting the transaction", e))?;
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
