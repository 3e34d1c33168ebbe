//! Rebalance callbacks: librdkafka calls them inside `poll`, on the stream thread.
//!
//! An assignment only records the new partitions and holds them (paused) until their task runs.
//! A revocation commits first and closes the revoked tasks cleanly, all before the partitions are
//! released, so the next owner resumes exactly where this one stopped. When that commit fails, or
//! the partitions were lost (the member was fenced), nothing is committed: under exactly-once the
//! transaction, which covers every task of the thread, is aborted and every task is closed dirty
//! and resumed from the last commit; under at-least-once only the revoked tasks close dirty. A
//! callback that runs while the thread is unwinding from a panic never commits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{lock, partitions, Consumer_, ThreadCore};
use crate::config::ProcessingGuarantee;
use crate::error::Result;
use crate::runtime::recovery::Recovery;
use crate::task::TaskId;
use crate::topology::OffsetReset;

/// The consumer's context: forwards rebalance callbacks to the thread core.
pub(crate) struct ThreadContext {
    pub(crate) core: std::sync::Arc<std::sync::Mutex<ThreadCore>>,
    /// Topics whose source has its own `auto.offset.reset`.
    pub(crate) resets: HashMap<String, OffsetReset>,
}

impl ClientContext for ThreadContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::runtime::client_log::forward(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::runtime::client_log::forward_error(&error, reason);
    }

    /// librdkafka's statistics (every `statistics.interval.ms`, served by `poll`): the lag of
    /// each assigned partition, and whether the group has answered this member.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = &statistics.cgrp {
            tracing::trace!(thread = %core.name, state = %group.state, join_state = %group.join_state,
                assignment = group.assignment_size, "group statistics");
            // Steady: the coordinator answered (classic protocol, or KIP-848 with partitions).
            // Under KIP-848 a member whose answer is "no partitions" stays in join state `init`
            // (librdkafka 2.12); its first heartbeat, sent on joining, gets the answer at once,
            // so a member that is `up` with no partitions over three reports (3 s) has had it.
            if group.state == "up" && group.assignment_size == 0 {
                core.up_without_partitions += 1;
            } else {
                core.up_without_partitions = 0;
            }
            if group.state == "up"
                && (group.join_state == "steady" || core.up_without_partitions >= 3)
            {
                core.group_answered = true;
            }
        }
        let mut lags = std::collections::BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                let key = (topic.clone(), *partition);
                if *partition >= 0 {
                    tracing::trace!(thread = %core.name, topic, partition, broker = p.broker, leader = p.leader,
                        fetch_state = %p.fetch_state, next = p.next_offset, app = p.app_offset,
                        hi = p.hi_offset, lag = p.consumer_lag, fetchq = p.fetchq_cnt, "partition statistics");
                }
                // -1 is librdkafka's internal unassigned partition; a lag of -1 is unknown.
                if *partition >= 0 && p.consumer_lag >= 0 && core.assigned.contains(&key) {
                    lags.insert(key, p.consumer_lag);
                }
            }
        }
        core.lags = lags;
        core.watch_consumer(&statistics);
    }
}

impl ConsumerContext for ThreadContext {
    /// The default assignment handling, plus: a newly assigned partition of a source with its
    /// own offset reset policy and no committed offset starts where that policy says.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.apply_resets(consumer, tpl);
                Rebalance::Assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
                return;
            }
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match (&rebalance, cooperative) {
            (Rebalance::Assign(tpl), true) => consumer.incremental_assign(tpl),
            (Rebalance::Assign(tpl), false) => consumer.assign(tpl),
            (Rebalance::Revoke(tpl), true) => consumer.incremental_unassign(tpl),
            (_, false) => consumer.unassign(),
            (Rebalance::Error(_), true) => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the assignment failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let mut core = lock(&self.core);
            if let Err(e) = core.revoke(consumer, &partitions(tpl), lost) {
                tracing::error!(thread = %core.name, error = %e, "revoking partitions failed");
                core.pending_error.get_or_insert(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut core = lock(&self.core);
                core.assign(consumer, &partitions(tpl));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl ThreadContext {
    fn apply_resets(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        if self.resets.is_empty() {
            return;
        }
        let mut ours = TopicPartitionList::new();
        for e in tpl.elements() {
            if self.resets.contains_key(e.topic()) {
                ours.add_partition(e.topic(), e.partition());
            }
        }
        if ours.count() == 0 {
            return;
        }
        let committed = match consumer.committed_offsets(ours, Duration::from_secs(30)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading committed offsets; the consumer's auto.offset.reset applies");
                return;
            }
        };
        for e in committed.elements() {
            if matches!(e.offset(), Offset::Offset(_)) {
                continue; // a committed position wins
            }
            let start = match self.resets.get(e.topic()) {
                Some(OffsetReset::Earliest) => Offset::Beginning,
                Some(OffsetReset::Latest) => Offset::End,
                None => continue,
            };
            if let Err(err) = tpl.set_partition_offset(e.topic(), e.partition(), start) {
                tracing::warn!(error = %err, topic = e.topic(), "setting the start offset");
            }
        }
    }
}

impl ThreadCore {
    /// Partitions were assigned: remember them, and hold them until their task runs.
    pub(crate) fn assign(&mut self, consumer: &Consumer_, parts: &[(String, i32)]) {
        tracing::info!(thread = %self.name, partitions = ?parts, "partitions assigned");
        self.received_assignment = true;
        self.metrics.rebalances += 1;
        self.rebalance_started.get_or_insert_with(Instant::now);
        self.assigned.extend(parts.iter().cloned());
        self.assignment_changed = true;
        self.pause(consumer, parts.to_vec());
    }

    /// Partitions are being revoked: commit, then close the tasks that read them; see the
    /// [module docs](self) for what happens when that cannot be done cleanly.
    pub(crate) fn revoke(
        &mut self,
        consumer: &Consumer_,
        parts: &[(String, i32)],
        lost: bool,
    ) -> Result<()> {
        tracing::info!(thread = %self.name, partitions = ?parts, lost, "partitions revoked");
        self.metrics.rebalances += 1;
        self.rebalance_started.get_or_insert_with(Instant::now);
        let revoked: std::collections::BTreeSet<&(String, i32)> = parts.iter().collect();
        let reads_revoked = |inputs: Vec<(String, i32)>| inputs.iter().any(|p| revoked.contains(p));
        let affected: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| reads_revoked(t.input_partitions()))
            .map(|(id, _)| *id)
            .collect();
        // Tasks still waiting for their directory's lock are simply forgotten.
        let topic_subtopology = &self.topic_subtopology;
        self.waiting_for_lock.retain(|id, _| {
            !revoked.iter().any(|(t, p)| {
                *p == id.partition && topic_subtopology.get(t) == Some(&id.subtopology)
            })
        });
        let panicking = std::thread::panicking();
        if panicking {
            tracing::error!(thread = %self.name, "revoking partitions while the thread panics: nothing is committed");
        }
        let mut clean = !lost && !panicking;
        if !affected.is_empty() && clean {
            if let Err(e) = self.commit(consumer) {
                tracing::warn!(thread = %self.name, error = %e, "commit before revocation failed; closing without committing");
                clean = false;
            }
        }
        if !affected.is_empty() || !clean {
            if clean {
                for id in affected {
                    self.close_task(id, true)?;
                }
            } else if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 || panicking {
                // The open transaction covers every task of the thread: all of them resume from
                // the last commit.
                let reason = crate::error::StreamsError::TransactionAborted {
                    producer: self.producer.client_id().to_owned(),
                    reason: format!("partitions {parts:?} revoked (lost: {lost}) without a commit"),
                };
                if panicking {
                    self.close_all_dirty();
                } else {
                    self.recover(reason, Recovery::Revive)?;
                }
            } else {
                // A lost member's offsets would be refused: the commit in flight is moot.
                self.give_up_offsets();
                for id in affected {
                    self.close_task(id, false)?;
                }
            }
        }
        let mut shared = self
            .shared_committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for p in parts {
            shared.remove(p);
            self.assigned.remove(p);
            self.paused.remove(p);
            self.parked.remove(p);
            self.rewind_to.remove(p);
        }
        drop(shared);
        if !lost && !parts.is_empty() {
            self.handoffs.changed();
        }
        Ok(())
    }
}
