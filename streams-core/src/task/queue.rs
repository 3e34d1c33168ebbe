//! A task's input buffers: one queue per input partition, and the choice of the next record.
//!
//! The next record is the head with the lowest timestamp across the task's partitions (ties go to
//! the partition listed first), so a task that joins or aggregates several topics processes them
//! in event-time order as far as the buffered data allows. Ordering uses the Kafka record
//! timestamps; a custom timestamp extractor sets event time after the choice.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::record::RawRecord;

#[derive(Debug)]
pub(crate) struct PartitionQueue {
    /// Shared with every record taken from here (no copy per record).
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    records: VecDeque<RawRecord>,
    /// The largest timestamp taken from this partition so far.
    pub(crate) partition_time: i64,
    /// The offset after the last record taken, once one was.
    consumed: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct PartitionGroup {
    queues: Vec<PartitionQueue>,
    buffered: usize,
}

impl PartitionGroup {
    fn queue_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionQueue {
        let idx = match self
            .queues
            .iter()
            .position(|q| q.partition == partition && &*q.topic == topic)
        {
            Some(i) => i,
            None => {
                self.queues.push(PartitionQueue {
                    topic: Arc::from(topic),
                    partition,
                    records: VecDeque::new(),
                    partition_time: i64::MIN,
                    consumed: None,
                });
                self.queues.len() - 1
            }
        };
        &mut self.queues[idx]
    }

    /// Buffers records of one partition, in offset order.
    pub(crate) fn add(
        &mut self,
        topic: &str,
        partition: i32,
        records: impl IntoIterator<Item = RawRecord>,
    ) {
        let queue = self.queue_mut(topic, partition);
        let before = queue.records.len();
        queue.records.extend(records);
        let added = queue.records.len() - before;
        self.buffered += added;
    }

    /// Takes the next record: the lowest head timestamp across partitions. Returns the queue's
    /// topic, partition and partition time (before this record) with it; the partition's
    /// consumed offset moves past it.
    pub(crate) fn next(&mut self) -> Option<(Arc<str>, i32, i64, RawRecord)> {
        let idx = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.records.front().map(|r| (r.timestamp, i)))
            .min()?
            .1;
        let queue = &mut self.queues[idx];
        let record = queue.records.pop_front()?;
        self.buffered -= 1;
        let partition_time = queue.partition_time;
        queue.partition_time = queue.partition_time.max(record.timestamp);
        queue.consumed = Some(record.offset + 1);
        Some((queue.topic.clone(), queue.partition, partition_time, record))
    }

    /// The next offset of each partition a record was taken from.
    pub(crate) fn consumed(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.queues
            .iter()
            .filter_map(|q| q.consumed.map(|o| (&*q.topic, q.partition, o)))
    }

    /// Sets the time of a partition (from what was committed), creating its queue.
    pub(crate) fn set_partition_time(&mut self, topic: &str, partition: i32, time: i64) {
        let queue = self.queue_mut(topic, partition);
        queue.partition_time = queue.partition_time.max(time);
    }

    /// The time of a partition: the largest timestamp taken from it (`i64::MIN` before any).
    pub(crate) fn partition_time(&self, topic: &str, partition: i32) -> Option<i64> {
        self.queues
            .iter()
            .find(|q| q.partition == partition && &*q.topic == topic)
            .map(|q| q.partition_time)
    }

    /// Records buffered in the partition that holds the most.
    pub(crate) fn fullest(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.records.len())
            .max()
            .unwrap_or(0)
    }

    /// Records buffered in all partitions.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Headers;

    fn raw(offset: i64, timestamp: i64) -> RawRecord {
        RawRecord {
            offset,
            timestamp,
            key: None,
            value: None,
            headers: Headers::new(),
        }
    }

    #[test]
    fn picks_the_lowest_head_timestamp_and_keeps_partition_order() {
        let mut g = PartitionGroup::default();
        g.add("a", 0, vec![raw(0, 5), raw(1, 1)]);
        g.add("b", 0, vec![raw(0, 3), raw(1, 9)]);
        let order: Vec<(String, i64)> =
            std::iter::from_fn(|| g.next().map(|(t, _, _, r)| (t.to_string(), r.offset))).collect();
        // Heads 5 vs 3 -> b0; heads 5 vs 9 -> a0; then a1 (1) before b1 (9).
        assert_eq!(
            order,
            vec![
                ("b".into(), 0),
                ("a".into(), 0),
                ("a".into(), 1),
                ("b".into(), 1)
            ]
        );
        assert_eq!(g.buffered(), 0);
        let mut consumed: Vec<_> = g.consumed().collect();
        consumed.sort();
        assert_eq!(consumed, vec![("a", 0, 2), ("b", 0, 2)]);
    }
}
