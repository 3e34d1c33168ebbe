//! Application-wide shutdown: the `ShutdownApplication` response of the uncaught exception
//! handler.
//!
//! Kafka Streams passes such a request to the other instances through its group assignor; the
//! group protocols librdkafka speaks carry no such field, so kstreams uses a one-partition control
//! topic, `<application.id>-kstreams-control`, created with the internal topics when an uncaught
//! exception handler is set. Every instance then watches it, from its end, with a consumer of its
//! own (no group). A request stops every instance that sees it: each ends in the Error state with
//! the requester's reason, as in Kafka Streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::client_log::TracingContext;
use super::state::StateCell;
use super::topics::client_config;
use crate::config::ResolvedConfig;
use crate::error::{Result, StreamsError};

/// How often the watcher looks for requests (and for its own shutdown).
const POLL: Duration = Duration::from_millis(250);

/// The control topic of application `app`.
pub(crate) fn topic(app: &str) -> String {
    format!("{app}-kstreams-control")
}

/// Starts watching the control topic; the thread ends when `shutdown` is set.
pub(crate) fn watch(
    config: &ResolvedConfig,
    state: Arc<StateCell>,
    shutdown: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let topic = topic(&config.application_id);
    let mut client = client_config(config, &config.consumer)?;
    // librdkafka wants a group id even for assigned partitions; this one never joins or commits.
    client
        .set("group.id", format!("{}-control", config.application_id))
        .set("client.id", format!("{}-control", config.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer<TracingContext> = client
        .create_with_context(TracingContext)
        .map_err(|e| StreamsError::kafka("creating the control topic's consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::End)
        .map_err(|e| StreamsError::kafka(format!("watching {topic}"), e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| StreamsError::kafka(format!("watching {topic}"), e))?;
    std::thread::Builder::new()
        .name(format!("{}-control", config.application_id))
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                match consumer.poll(POLL) {
                    Some(Ok(m)) => {
                        let from = m
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default();
                        let reason = m
                            .payload()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default();
                        tracing::error!(%from, %reason, "the application is being shut down");
                        state.fail(StreamsError::Fatal(format!(
                            "the application was shut down by instance {from}: {reason}"
                        )));
                        shutdown.store(true, Ordering::Relaxed);
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "control topic"),
                    None => {}
                }
            }
        })
        .map_err(|e| StreamsError::Fatal(format!("spawning the control topic's watcher: {e}")))
}

/// Asks every instance of the application to shut down, for `reason`.
pub(crate) fn request_shutdown(config: &ResolvedConfig, from: &str, reason: &str) -> Result<()> {
    let topic = topic(&config.application_id);
    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(config, &config.producer)?
            .set("client.id", format!("{}-control", config.application_id))
            .create()
            .map_err(|e| StreamsError::kafka("creating the control topic's producer", e))?;
    producer
        .send(
            BaseRecord::to(&topic)
                .partition(0)
                .key(from.as_bytes())
                .payload(reason.as_bytes()),
        )
        .map_err(|(e, _)| StreamsError::kafka(format!("writing to {topic}"), e))?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| StreamsError::kafka(format!("writing to {topic}"), e))
}
