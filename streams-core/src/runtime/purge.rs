//! Purging repartition topics: records of a repartition topic that the application has committed
//! are never read again, so after a commit they are deleted (Kafka's `DeleteRecords`, up to the
//! committed offset), at most every `repartition.purge.interval.ms` (30 s by default), as Kafka
//! Streams does. Repartition topics keep records forever otherwise (`retention.ms=-1`, so that a
//! slow application never loses them to retention).
//!
//! The request runs in the background; its result is checked at the next purge. A failure is
//! logged and the next purge tries again with newer offsets: purging is housekeeping, never a
//! reason to stop processing. The embedded broker has no `DeleteRecords`: there is no purger.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::client_log::TracingContext;
use crate::config::ResolvedConfig;
use crate::error::{Result, StreamsError};
use crate::topology::{InternalTopicKind, Topology};

type Pending = Pin<Box<dyn Future<Output = KafkaResult<TopicPartitionList>> + Send>>;

/// One stream thread's purger of the repartition topics it reads.
pub(crate) struct RepartitionPurger {
    admin: AdminClient<TracingContext>,
    topics: HashSet<String>,
    interval: Duration,
    last: Instant,
    /// Committed offsets of repartition partitions not purged yet.
    due: BTreeMap<(String, i32), i64>,
    pending: Option<Pending>,
}

impl RepartitionPurger {
    /// A purger for the repartition topics of `topology`, or `None` when there are none (or on
    /// the embedded broker).
    pub(crate) fn new(config: &ResolvedConfig, topology: &Topology) -> Result<Option<Self>> {
        if config.embedded.is_some() {
            return Ok(None);
        }
        let topics: HashSet<String> = topology
            .internal_topics()
            .iter()
            .filter(|t| matches!(t.kind, InternalTopicKind::Repartition { .. }))
            .map(|t| format!("{}-{}", config.application_id, t.name))
            .collect();
        if topics.is_empty() {
            return Ok(None);
        }
        let admin = super::topics::client_config(config, &config.admin)?
            .create_with_context(TracingContext)
            .map_err(|e| StreamsError::kafka("creating the admin client for purging", e))?;
        Ok(Some(RepartitionPurger {
            admin,
            topics,
            interval: config.repartition_purge_interval,
            last: Instant::now(),
            due: BTreeMap::new(),
            pending: None,
        }))
    }

    /// After a commit: remembers the committed offsets of repartition partitions and, if the
    /// interval has passed and no request is in flight, deletes the records before them.
    pub(crate) fn committed<'a>(
        &mut self,
        offsets: impl IntoIterator<Item = &'a ((String, i32), i64)>,
    ) {
        for ((topic, partition), offset) in offsets {
            if self.topics.contains(topic) {
                self.due.insert((topic.clone(), *partition), *offset);
            }
        }
        self.poll_pending();
        if self.pending.is_some() || self.due.is_empty() || self.last.elapsed() < self.interval {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in std::mem::take(&mut self.due) {
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
                tracing::warn!(%topic, partition, offset, error = %e, "cannot purge");
            }
        }
        tracing::debug!(
            partitions = tpl.count(),
            "purging committed records of repartition topics"
        );
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        self.pending = Some(Box::pin(self.admin.delete_records(&tpl, &options)));
        self.last = Instant::now();
    }

    /// Checks the request in flight without waiting.
    fn poll_pending(&mut self) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(result) = pending.as_mut().poll(&mut cx) else {
            return;
        };
        self.pending = None;
        match result {
            Ok(tpl) => {
                for e in tpl.elements() {
                    match e.error() {
                        Ok(()) => tracing::debug!(topic = e.topic(), partition = e.partition(),
                            low_watermark = ?e.offset(), "purged a repartition partition"),
                        Err(error) => {
                            tracing::warn!(topic = e.topic(), partition = e.partition(), %error,
                            "purging a repartition partition failed; the next purge retries")
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "purging repartition topics failed; the next purge retries")
            }
        }
    }
}
