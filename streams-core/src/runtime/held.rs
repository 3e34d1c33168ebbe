//! Records a stream thread sends while its exactly-once commit is in flight, held for the next
//! transaction (see [`super::producer`]). Under exactly_once_v2 a commit is in flight much of
//! the time, so most output passes through here: the records are packed, their bytes in one
//! growing buffer and their topics named once, so that holding a record costs a copy of its
//! bytes and no allocation of its own.

use std::ops::Range;

use crate::collector::OutgoingRecord;
use crate::record::{Headers, RecordMetadata};

/// The held records, in the order they were sent.
#[derive(Default)]
pub(crate) struct HeldRecords {
    bytes: Vec<u8>,
    /// Topic names (of outputs and of sources), each once.
    topics: Vec<String>,
    records: Vec<Held>,
}

struct Held {
    topic: usize,
    partition: Option<i32>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    timestamp: i64,
    headers: Headers,
    /// The input record's topic (an index into `topics`), partition and offset.
    source: Option<(usize, i32, i64)>,
}

impl HeldRecords {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Holds a copy of `record`.
    pub(crate) fn push(&mut self, record: &OutgoingRecord<'_>) {
        let topic = self.topic(record.topic);
        let source = record
            .source
            .map(|s| (self.topic(&s.topic), s.partition, s.offset));
        let key = record.key.map(|k| self.copy(k));
        let value = record.value.map(|v| self.copy(v));
        self.records.push(Held {
            topic,
            partition: record.partition,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers.clone(),
            source,
        });
    }

    /// Hands each held record, in order, to `send`; stops at the first error.
    pub(crate) fn send_all<E>(
        self,
        mut send: impl FnMut(OutgoingRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        // One metadata value serves every record: its topic is copied only when it changes,
        // not once per record.
        let mut metadata: Option<RecordMetadata> = None;
        for r in &self.records {
            let source = r.source.map(|(topic, partition, offset)| {
                let name = &self.topics[topic];
                let m = metadata.get_or_insert_with(|| RecordMetadata {
                    topic: name.clone(),
                    partition,
                    offset,
                });
                if m.topic != *name {
                    m.topic.clone_from(name);
                }
                m.partition = partition;
                m.offset = offset;
                &*m
            });
            send(OutgoingRecord {
                topic: &self.topics[r.topic],
                partition: r.partition,
                key: r.key.clone().map(|k| &self.bytes[k]),
                value: r.value.clone().map(|v| &self.bytes[v]),
                timestamp: r.timestamp,
                headers: &r.headers,
                source,
            })?;
        }
        Ok(())
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    /// The index of `name` in `topics`, added if new. Output goes to a handful of topics, most
    /// often the one of the record before.
    fn topic(&mut self, name: &str) -> usize {
        if let Some(i) = self.topics.iter().rposition(|t| t == name) {
            return i;
        }
        self.topics.push(name.to_owned());
        self.topics.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_records_come_back_unchanged_and_in_order() {
        let mut headers = Headers::new();
        headers.add("h".to_owned(), Some(b"v".to_vec()));
        let source = RecordMetadata {
            topic: "input".into(),
            partition: 3,
            offset: 17,
        };
        let empty = Headers::new();
        // topic, partition, key, value, timestamp, with headers, with a source
        type Sent = (
            String,
            Option<i32>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            i64,
            bool,
            bool,
        );
        let sent: Vec<Sent> = vec![
            (
                "out".into(),
                None,
                Some(b"k1".to_vec()),
                Some(b"v1".to_vec()),
                5,
                false,
                true,
            ),
            (
                "other".into(),
                Some(2),
                None,
                Some(Vec::new()),
                6,
                true,
                false,
            ),
            (
                "out".into(),
                None,
                Some(b"k3".to_vec()),
                None,
                7,
                false,
                true,
            ),
        ];
        let mut held = HeldRecords::default();
        for (topic, partition, key, value, timestamp, with_headers, with_source) in &sent {
            held.push(&OutgoingRecord {
                topic,
                partition: *partition,
                key: key.as_deref(),
                value: value.as_deref(),
                timestamp: *timestamp,
                headers: if *with_headers { &headers } else { &empty },
                source: with_source.then_some(&source),
            });
        }
        assert_eq!(held.len(), 3);
        let mut back = Vec::new();
        held.send_all(|r| -> Result<(), ()> {
            back.push((
                r.topic.to_owned(),
                r.partition,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                r.timestamp,
                !r.headers.is_empty(),
                r.source.cloned(),
            ));
            Ok(())
        })
        .expect("send");
        for (b, s) in back.iter().zip(&sent) {
            assert_eq!(
                (&b.0, b.1, &b.2, &b.3, b.4, b.5),
                (&s.0, s.1, &s.2, &s.3, s.4, s.5)
            );
            assert_eq!(b.6.as_ref(), s.6.then_some(&source));
        }
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn sending_stops_at_the_first_error() {
        let mut held = HeldRecords::default();
        let empty = Headers::new();
        for i in 0..3i64 {
            held.push(&OutgoingRecord {
                topic: "out",
                partition: None,
                key: None,
                value: None,
                timestamp: i,
                headers: &empty,
                source: None,
            });
        }
        let mut seen = Vec::new();
        let result = held.send_all(|r| {
            seen.push(r.timestamp);
            if r.timestamp == 1 {
                Err("refused")
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err("refused"));
        assert_eq!(seen, vec![0, 1]);
    }

    /// Sources from several topics and partitions come back as they were held (the metadata
    /// reused between records must follow each one).
    #[test]
    fn each_record_keeps_its_own_source() {
        let empty = Headers::new();
        let sources =
            [("a", 0, 5), ("a", 1, 6), ("bb", 1, 7), ("a", 0, 8)].map(|(t, p, o)| RecordMetadata {
                topic: t.into(),
                partition: p,
                offset: o,
            });
        let mut held = HeldRecords::default();
        for (i, source) in sources.iter().enumerate() {
            held.push(&OutgoingRecord {
                topic: "out",
                partition: None,
                key: None,
                value: None,
                timestamp: i as i64,
                headers: &empty,
                source: (i != 1).then_some(source),
            });
        }
        let mut back = Vec::new();
        held.send_all(|r| -> Result<(), ()> {
            back.push(r.source.cloned());
            Ok(())
        })
        .unwrap();
        let want: Vec<Option<RecordMetadata>> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (i != 1).then(|| s.clone()))
            .collect();
        assert_eq!(back, want);
    }
}
