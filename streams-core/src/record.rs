//! Records as processors see them: a typed key and value, a timestamp and headers; and the
//! metadata of the input record being processed.

/// Kafka record headers: an ordered list of `(key, value)` pairs; keys may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<(String, Option<Vec<u8>>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> &mut Self {
        self.0.push((key.into(), value));
        self
    }

    /// The last value of header `key`, if present.
    pub fn last(&self, key: &str) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Removes every header named `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.0.retain(|(k, _)| k != key);
        self
    }

    /// All headers, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K: Into<String>> FromIterator<(K, Option<Vec<u8>>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, Option<Vec<u8>>)>>(iter: I) -> Self {
        Headers(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// A record flowing through a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record with no headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Headers::new(),
        }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// Where the input record being processed came from. Absent during punctuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Source topic (for a repartition topic, its full name).
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
}

/// A record as read from Kafka, before deserialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// The record's timestamp (create or log-append time), epoch milliseconds.
    pub timestamp: i64,
    /// Key bytes; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` for a null value (tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
}
