//! The stall watchdog: notices that a stream thread's consumer is stuck, fetching nothing from
//! partitions that have records waiting or unable to find its group coordinator, and has the
//! thread replace it.
//!
//! librdkafka can be left stuck after a broker fault. A KRaft broker that was paused (a long GC,
//! SIGSTOP) is fenced by its controller and names no leader for its partitions for a moment;
//! librdkafka 2.12 skips such a metadata update and keeps the partition on no leader for good
//! (librdkafka#5430): the consumer never fetches it again and raises no error. After the same
//! fault a consumer was also seen looking for its group coordinator for minutes while other
//! clients found it at once. Only a new client recovers; Kafka Streams' Java client has no such
//! states.
//!
//! The watchdog reads the consumer's own statistics, once a second. A partition the thread
//! wants records from (assigned, not paused, its task running, the thread polling) whose fetch
//! position has not moved, with nothing queued in the client, for `stall.timeout.ms` is
//! suspect; so is a group state other than `up` for that long. A partition that is merely caught
//! up, or a coordinator that is really away, looks the same, so a short-lived client with its
//! own view of the cluster then checks: the suspects' end offsets (at the consumer's isolation
//! level), or the group's committed offsets. If records wait past a suspect's position, or the
//! new client reaches the coordinator, and a second check a timeout later finds the same (a
//! consumer reconnecting after an outage recovers on its own meanwhile), the thread closes its
//! tasks without committing and
//! rejoins the group with a new consumer, producer and restore consumer, resuming from the last
//! commit. Otherwise the suspect is looked at again only after another timeout.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::ThreadCore;
use crate::error::{Result, StreamsError};
use crate::runtime::client_log::TracingContext;
use crate::runtime::restore::watermarks;
use crate::task::TaskId;

/// How long the probe waits for each of its two answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watchdog knows of one partition.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The consumer's fetch position (librdkafka's `next_offset`) last reported.
    position: i64,
    /// Since when the position has not moved while the thread wanted records.
    since: Instant,
    /// A probe already found records waiting past this position: a second finding, a timeout
    /// later, convicts.
    struck: bool,
}

/// The watchdog of one stream thread (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct StallWatch {
    /// How long a wanted partition's position may stand still before it is suspect; zero turns
    /// the watchdog off.
    timeout: Duration,
    seen: HashMap<(String, i32), Seen>,
    /// Since when the consumer's group state has not been `up` (no coordinator).
    group_down_since: Option<Instant>,
    /// A probe already reached the coordinator during this standstill.
    group_struck: bool,
}

impl StallWatch {
    pub(crate) fn new(timeout: Duration) -> Self {
        StallWatch {
            timeout,
            seen: HashMap::new(),
            group_down_since: None,
            group_struck: false,
        }
    }

    /// Feeds one partition of a statistics report: its fetch position, the records the client
    /// holds for it, and whether the thread wants records from it now. A partition not wanted,
    /// or with records queued, starts over.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        partition: (String, i32),
        position: i64,
        queued: i64,
        wanted: bool,
    ) {
        if self.timeout.is_zero() || !wanted || queued > 0 {
            self.seen.remove(&partition);
            return;
        }
        match self.seen.get_mut(&partition) {
            Some(seen) if seen.position == position => {}
            Some(seen) => {
                *seen = Seen {
                    position,
                    since: now,
                    struck: false,
                }
            }
            None => {
                self.seen.insert(
                    partition,
                    Seen {
                        position,
                        since: now,
                        struck: false,
                    },
                );
            }
        }
    }

    /// Feeds the group state of a statistics report: whether the consumer has its coordinator.
    pub(crate) fn observe_group(&mut self, now: Instant, up: bool) {
        if up || self.timeout.is_zero() {
            self.group_down_since = None;
            self.group_struck = false;
        } else {
            self.group_down_since.get_or_insert(now);
        }
    }

    /// How long the consumer has been without its coordinator, once that is the timeout or more.
    pub(crate) fn group_down_for(&self, now: Instant) -> Option<Duration> {
        let down = now.saturating_duration_since(self.group_down_since?);
        (down >= self.timeout).then_some(down)
    }

    /// A new client could not reach the coordinator either: look again after another timeout.
    pub(crate) fn acquit_group(&mut self, now: Instant) {
        if self.group_down_since.is_some() {
            self.group_down_since = Some(now);
        }
        self.group_struck = false;
    }

    /// A new client reached the coordinator while the consumer had none: whether it had already,
    /// a timeout ago (convicted). A first finding waits another timeout, so a consumer that
    /// is merely reconnecting after an outage (librdkafka backs off up to 10 s) recovers on its
    /// own first.
    pub(crate) fn strike_group(&mut self, now: Instant) -> bool {
        if self.group_struck {
            return true;
        }
        self.acquit_group(now);
        self.group_struck = true;
        false
    }

    /// A probe found records waiting past `partition`'s position: whether it had already, a
    /// timeout ago, with the position unmoved since (convicted). A first finding waits another
    /// timeout, for the same reason as [`Self::strike_group`].
    pub(crate) fn strike(&mut self, partition: &(String, i32), now: Instant) -> bool {
        match self.seen.get_mut(partition) {
            Some(seen) if seen.struck => true,
            Some(seen) => {
                seen.struck = true;
                seen.since = now;
                false
            }
            None => false,
        }
    }

    /// Forgets partitions the latest report did not have as wanted (revoked, paused).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&(String, i32)) -> bool) {
        self.seen.retain(|p, _| keep(p));
    }

    /// How long a position may stand still before it is suspect.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Forgets everything: a new consumer starts afresh.
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
        self.group_down_since = None;
        self.group_struck = false;
    }

    /// Partitions whose position has stood still for the timeout, with that position.
    pub(crate) fn suspects(&self, now: Instant) -> Vec<((String, i32), i64)> {
        if self.timeout.is_zero() {
            return Vec::new();
        }
        let mut out: Vec<_> = self
            .seen
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.since) >= self.timeout)
            .map(|(p, s)| (p.clone(), s.position))
            .collect();
        out.sort();
        out
    }

    /// A suspect the probe found nothing waiting for: its clock starts again.
    pub(crate) fn acquit(&mut self, partition: &(String, i32), now: Instant) {
        if let Some(seen) = self.seen.get_mut(partition) {
            seen.since = now;
            seen.struck = false;
        }
    }
}

impl ThreadCore {
    /// Feeds a statistics report of the thread's consumer to the watchdog.
    pub(crate) fn watch_consumer(&mut self, statistics: &rdkafka::Statistics) {
        let now = Instant::now();
        if let Some(group) = &statistics.cgrp {
            self.stall.observe_group(now, group.state == "up");
        }
        let polling = self.wants_records();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal unassigned partition.
                if *partition < 0 {
                    continue;
                }
                let key = (topic.clone(), *partition);
                let wanted = polling
                    && self.assigned.contains(&key)
                    && !self.paused.contains(&key)
                    && self.topic_subtopology.get(topic).is_some_and(|s| {
                        self.running.contains(&TaskId {
                            subtopology: *s,
                            partition: *partition,
                        })
                    });
                self.stall
                    .observe(now, key, p.next_offset, p.fetchq_cnt, wanted);
            }
        }
        let assigned = &self.assigned;
        self.stall.retain(|p| assigned.contains(p));
    }

    /// After the consumer was replaced: new changelog reader clients too (they may be as stuck
    /// as the consumer was), and nothing assumed of the group until it answers the new member.
    /// Called with every task closed, so nothing is restoring.
    pub(crate) fn consumer_replaced(&mut self) -> Result<()> {
        self.reader.renew_clients()?;
        self.received_assignment = false;
        self.group_answered = false;
        self.up_without_partitions = 0;
        self.lags.clear();
        self.stall.clear();
        self.handoffs.joined();
        Ok(())
    }

    /// Probes what the watchdog suspects; fails with [`StreamsError::ConsumerStuck`] (and marks
    /// the consumer for replacement) when a new client sees what the consumer does not: records
    /// waiting past a suspect's position, or the group's coordinator.
    pub(crate) fn check_stalls(&mut self) -> Result<()> {
        let now = Instant::now();
        let reason = match self.stuck_partitions(now) {
            Some(reason) => reason,
            None => match self.stuck_group(now) {
                Some(reason) => reason,
                None => return Ok(()),
            },
        };
        self.stall.clear();
        self.replace_consumer = true;
        self.metrics.consumers_replaced += 1;
        Err(StreamsError::ConsumerStuck {
            thread: self.name.clone(),
            reason,
        })
    }

    fn stuck_partitions(&mut self, now: Instant) -> Option<String> {
        let suspects = self.stall.suspects(now);
        if suspects.is_empty() {
            return None;
        }
        let ends = probe_ends(&self.consumer_config, &self.name, &suspects);
        let stalled = stalled(&suspects, &ends);
        let mut convicted = Vec::new();
        for (p, _) in &suspects {
            if !stalled.contains(p) {
                self.stall.acquit(p, now);
            } else if self.stall.strike(p, now) {
                convicted.push(p.clone());
            }
        }
        if convicted.is_empty() {
            tracing::debug!(thread = %self.name, ?suspects, ?ends, ?stalled, "partitions whose fetch position stood still: looking again after another timeout");
            return None;
        }
        let stalled = convicted;
        let detail: Vec<String> = suspects
            .iter()
            .filter(|(p, _)| stalled.contains(p))
            .map(|((t, p), position)| {
                let end = ends.get(&(t.clone(), *p)).map_or(-1, |e| e.1);
                format!("{t}-{p} (position {position}, end {end})")
            })
            .collect();
        Some(format!(
            "it fetched nothing for {} s from {}, where records wait",
            2 * self.stall.timeout().as_secs(),
            detail.join(", ")
        ))
    }

    fn stuck_group(&mut self, now: Instant) -> Option<String> {
        let down = self.stall.group_down_for(now)?;
        let topic = self.topic_subtopology.keys().min()?.clone();
        if !probe_coordinator(&self.consumer_config, &self.name, &topic) {
            self.stall.acquit_group(now);
            return None;
        }
        if !self.stall.strike_group(now) {
            tracing::debug!(thread = %self.name, "a new client reached the group coordinator the consumer has not had; looking again after another timeout");
            return None;
        }
        Some(format!(
            "it has not had its group coordinator for {} s, which new clients found at once",
            down.as_secs() + self.stall.timeout().as_secs()
        ))
    }
}

/// The suspects that have records waiting past their position, given each one's `(low, high)`
/// offsets as a fresh client read them. A position librdkafka does not know yet (negative) is
/// stalled if the partition holds any record at all.
pub(crate) fn stalled(
    suspects: &[((String, i32), i64)],
    ends: &HashMap<(String, i32), (i64, i64)>,
) -> Vec<(String, i32)> {
    suspects
        .iter()
        .filter(|(p, position)| {
            ends.get(p).is_some_and(|(low, high)| {
                if *position < 0 {
                    high > low
                } else {
                    high > position
                }
            })
        })
        .map(|(p, _)| p.clone())
        .collect()
}

/// A short-lived client made from the thread's consumer settings (its brokers, security and
/// isolation level), in no group unless `group` says so, with its own view of the cluster.
fn probe_client(
    consumer_config: &ClientConfig,
    thread: &str,
    group: bool,
) -> Option<BaseConsumer<TracingContext>> {
    let mut config = consumer_config.clone();
    for key in [
        "group.protocol",
        "group.remote.assignor",
        "partition.assignment.strategy",
        "statistics.interval.ms",
    ] {
        config.remove(key);
    }
    if !group {
        config.remove("group.id");
    }
    config.set("client.id", format!("{thread}-stall-probe"));
    match config.create_with_context(TracingContext) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(thread, error = %e, "creating the client that checks a stuck consumer");
            None
        }
    }
}

/// Reads the `(first, end)` offsets of `suspects` with a [`probe_client`]
/// ([`watermarks`]: two requests in all, each bounded by [`PROBE_TIMEOUT`]). Nothing when they
/// cannot all be read: an unreachable cluster is not a stuck consumer.
pub(crate) fn probe_ends(
    consumer_config: &ClientConfig,
    thread: &str,
    suspects: &[((String, i32), i64)],
) -> HashMap<(String, i32), (i64, i64)> {
    let Some(client) = probe_client(consumer_config, thread, false) else {
        return HashMap::new();
    };
    let parts: BTreeSet<(String, i32)> = suspects.iter().map(|(p, _)| p.clone()).collect();
    watermarks(&client, &parts, PROBE_TIMEOUT).unwrap_or_else(|e| {
        tracing::debug!(thread, error = %e, "reading the offsets of stalled partitions");
        HashMap::new()
    })
}

/// Whether a [`probe_client`] in the thread's group reaches the group's coordinator: it reads
/// the committed offset of `topic`'s partition 0 (without joining), within [`PROBE_TIMEOUT`].
pub(crate) fn probe_coordinator(consumer_config: &ClientConfig, thread: &str, topic: &str) -> bool {
    let Some(client) = probe_client(consumer_config, thread, true) else {
        return false;
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    match client.committed_offsets(tpl, PROBE_TIMEOUT) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(thread, error = %e, "a new client could not reach the group coordinator either");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> (String, i32) {
        ("in".to_owned(), n)
    }

    #[test]
    fn a_position_standing_still_while_wanted_becomes_suspect_after_the_timeout() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::from_secs(30));
        w.observe(t0, p(0), 10, 0, true);
        w.observe(t0 + Duration::from_secs(29), p(0), 10, 0, true);
        assert!(w.suspects(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(w.suspects(t0 + Duration::from_secs(30)), vec![(p(0), 10)]);
    }

    #[test]
    fn movement_queued_records_or_not_wanting_records_start_the_clock_again() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = StallWatch::new(Duration::from_secs(30));
        w.observe(at(0), p(0), 10, 0, true);
        w.observe(at(20), p(0), 11, 0, true); // moved
        assert!(w.suspects(at(45)).is_empty());
        assert_eq!(w.suspects(at(50)).len(), 1);

        w.observe(at(51), p(0), 11, 5, true); // records queued in the client
        w.observe(at(52), p(0), 11, 0, true);
        assert!(w.suspects(at(81)).is_empty());

        w.observe(at(83), p(0), 11, 0, false); // paused, or the thread not polling
        w.observe(at(84), p(0), 11, 0, true);
        assert!(w.suspects(at(113)).is_empty());
        assert_eq!(w.suspects(at(114)).len(), 1);
    }

    #[test]
    fn an_acquitted_suspect_waits_another_timeout_and_retain_forgets_revoked_partitions() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = StallWatch::new(Duration::from_secs(30));
        w.observe(at(0), p(0), 10, 0, true);
        w.observe(at(0), p(1), 10, 0, true);
        assert_eq!(w.suspects(at(30)).len(), 2);
        w.acquit(&p(0), at(30));
        assert_eq!(w.suspects(at(59)), vec![(p(1), 10)]);
        w.retain(|q| *q != p(1));
        assert!(w.suspects(at(59)).is_empty());
        assert_eq!(w.suspects(at(60)), vec![(p(0), 10)]);
        w.clear();
        assert!(w.suspects(at(1000)).is_empty());
    }

    #[test]
    fn a_suspect_is_convicted_by_a_second_finding_a_timeout_later_unless_it_moved() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = StallWatch::new(Duration::from_secs(30));
        w.observe(at(0), p(0), 10, 0, true);
        assert!(!w.strike(&p(0), at(30)), "a first finding only waits");
        assert!(w.suspects(at(59)).is_empty());
        assert_eq!(w.suspects(at(60)).len(), 1);
        assert!(w.strike(&p(0), at(60)), "the second convicts");

        w.observe(at(61), p(1), 10, 0, true);
        assert!(!w.strike(&p(1), at(91)));
        w.observe(at(92), p(1), 11, 0, true); // it moved: the first finding is forgotten
        assert!(!w.strike(&p(1), at(122)));
        w.acquit(&p(1), at(123));
        assert!(
            !w.strike(&p(1), at(153)),
            "an acquittal forgets the finding too"
        );

        w.observe_group(at(0), false);
        assert!(!w.strike_group(at(30)));
        assert_eq!(w.group_down_for(at(59)), None);
        assert!(w.strike_group(at(60)));
        w.observe_group(at(61), true);
        w.observe_group(at(62), false);
        assert!(!w.strike_group(at(92)), "up in between: start over");
    }

    #[test]
    fn a_zero_timeout_turns_the_watchdog_off() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::ZERO);
        w.observe(t0, p(0), 10, 0, true);
        w.observe_group(t0, false);
        assert!(w.suspects(t0 + Duration::from_secs(3600)).is_empty());
        assert_eq!(w.group_down_for(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_group_without_its_coordinator_for_the_timeout_is_suspect_until_it_is_up() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut w = StallWatch::new(Duration::from_secs(30));
        w.observe_group(at(0), true);
        w.observe_group(at(5), false);
        w.observe_group(at(20), false); // still down: the clock keeps its start
        assert_eq!(w.group_down_for(at(34)), None);
        assert_eq!(w.group_down_for(at(35)), Some(Duration::from_secs(30)));
        w.acquit_group(at(35));
        assert_eq!(w.group_down_for(at(64)), None);
        assert!(w.group_down_for(at(65)).is_some());
        w.observe_group(at(66), true);
        assert_eq!(w.group_down_for(at(1000)), None);
        w.observe_group(at(1000), false);
        w.clear();
        assert_eq!(w.group_down_for(at(2000)), None);
    }

    #[test]
    fn only_suspects_with_records_past_their_position_are_stalled() {
        let suspects = vec![
            (p(0), 10),
            (p(1), 10),
            (p(2), -1001),
            (p(3), -1001),
            (p(4), 5),
        ];
        let ends = HashMap::from([
            (p(0), (0, 10)), // caught up
            (p(1), (0, 12)), // records waiting
            (p(2), (7, 7)),  // empty, position unknown
            (p(3), (0, 3)),  // records, position unknown
                             // p(4): the probe could not read it
        ]);
        assert_eq!(stalled(&suspects, &ends), vec![p(1), p(3)]);
    }
}
