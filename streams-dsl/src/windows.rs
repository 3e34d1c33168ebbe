//! Windows: how records are grouped in time for a windowed aggregation, and the windowed keys
//! the results carry.
//!
//! - [`TimeWindows`]: fixed-size windows `[start, start + size)` that start every `advance`
//!   milliseconds from the epoch: tumbling when `advance == size`, hopping (overlapping) when it
//!   is smaller. A record belongs to every window that contains its timestamp.
//! - [`SlidingWindows`]: windows `[start, start + time difference]` (both ends inclusive) that
//!   slide with the records: one ends at each record, and one starts just after each record that
//!   has a later record within the time difference, so every distinct set of records that lie
//!   within the time difference of each other has one window.
//! - [`SessionWindows`]: per key, records closer than the inactivity gap to each other form one
//!   session `[first, last]`; a record that bridges two sessions merges them.
//!
//! Every kind has a grace period: stream time (the largest timestamp the task has seen) may pass
//! a window's end by that much before the window closes. A record for a closed window is dropped
//! and counted (`dropped_late`). Windows never start before 0.
//!
//! A result's key is a [`Windowed`] key: the record key and its [`Window`]. On a topic it is
//! written as Kafka's windowed serdes write it ([`WindowedSerdes`]), so Java applications can read
//! it: a time window as `key ++ start` (8 bytes big-endian), a session as `key ++ end ++ start`.

use std::fmt;
use std::time::Duration;

use state_stores::serdes::{Serde, SerdeError};

/// Milliseconds of `d`, saturating at `i64::MAX`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A window: from `start` to `end`, in epoch milliseconds. For time windows `end` is exclusive
/// (`start + size`); for sliding and session windows it is inclusive (the last instant that
/// belongs to it), as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The first instant of the window.
    pub start: i64,
    /// The window's end.
    pub end: i64,
}

impl Window {
    /// The window from `start` to `end`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }
}

/// A key together with the window its value belongs to: the key of every windowed result.
///
/// Its [`Display`](fmt::Display) is Kafka's `Windowed.toString()`: `[key@start/end]`.
///
/// ```
/// use streams_dsl::{Window, Windowed};
///
/// let w = Windowed::new("alice".to_string(), Window::new(60_000, 120_000));
/// assert_eq!(w.to_string(), "[alice@60000/120000]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}@{}/{}]",
            self.key, self.window.start, self.window.end
        )
    }
}

/// Fixed-size windows: tumbling, or hopping with an advance smaller than the size.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::TimeWindows;
///
/// let minutes = TimeWindows::of_size_with_no_grace(Duration::from_secs(60));
/// assert_eq!(minutes.windows_for(90_000).len(), 1);
/// let hopping = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10))
///     .advance_by(Duration::from_secs(20));
/// let starts: Vec<i64> = hopping.windows_for(90_000).iter().map(|w| w.start).collect();
/// assert_eq!(starts, vec![40_000, 60_000, 80_000]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that close as soon as stream time reaches their end.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records up to `grace` after their end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = millis(size);
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: millis(grace),
        }
    }

    /// Hopping windows: a new window starts every `advance` (at most the size).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = millis(advance);
        self
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The advance in milliseconds.
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows containing `timestamp`, by ascending start.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let mut out = Vec::new();
        if self.advance_ms <= 0 || self.size_ms <= 0 {
            return out;
        }
        let earliest = timestamp
            .saturating_sub(self.size_ms)
            .saturating_add(self.advance_ms)
            .max(0);
        let mut start = earliest - earliest % self.advance_ms;
        while start <= timestamp {
            out.push(Window::new(start, start.saturating_add(self.size_ms)));
            start = match start.checked_add(self.advance_ms) {
                Some(next) => next,
                None => break,
            };
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.size_ms <= 0 {
            return Err("TimeWindows: the window size must be at least 1 ms".into());
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!(
                "TimeWindows: the advance must be between 1 ms and the window size ({} ms), got {} ms",
                self.size_ms, self.advance_ms
            ));
        }
        Ok(())
    }
}

/// Sliding windows: `[t - time difference, t]` for each record at `t`, and the windows that
/// start just after records, as Kafka Streams' `SlidingWindows`.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SlidingWindows;
///
/// let last_ten_seconds = SlidingWindows::of_time_difference_and_grace(
///     Duration::from_secs(10),
///     Duration::from_secs(2),
/// );
/// assert_eq!(last_ten_seconds.time_difference_ms(), 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    time_difference_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Windows covering `time_difference` that close as soon as stream time passes their end.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Windows covering `time_difference` that accept records up to `grace` after their end.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        SlidingWindows {
            time_difference_ms: millis(time_difference),
            grace_ms: millis(grace),
        }
    }

    /// The largest difference between the timestamps of two records in one window.
    pub fn time_difference_ms(&self) -> i64 {
        self.time_difference_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Session windows: per key, records closer than the inactivity gap form a session.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SessionWindows;
///
/// let visits = SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(30 * 60));
/// assert_eq!(visits.inactivity_gap_ms(), 1_800_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions that end after `gap` without records and close as soon as stream time passes
    /// their end plus the gap.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions that end after `gap` without records and accept records up to `grace` longer.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows {
            gap_ms: millis(gap),
            grace_ms: millis(grace),
        }
    }

    /// The inactivity gap in milliseconds.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.gap_ms <= 0 {
            return Err("SessionWindows: the inactivity gap must be at least 1 ms".into());
        }
        Ok(())
    }
}

/// Join windows of a stream-stream join: a record of the left stream at `t` joins the records of
/// the right stream with the same key whose timestamps lie in `[t - before, t + after]` (so a
/// right record at `t` joins left records in `[t - after, t + before]`). Both are the time
/// difference unless [`before`](Self::before) or [`after`](Self::after) set them apart.
///
/// The grace period is how long after a record's window ends (`t + after` for a left record,
/// `t + before` for a right one) stream time may go before the window closes: a record whose
/// window has closed when it arrives is late (dropped and counted), and an unmatched record of
/// the outer side of a left or outer join is emitted with no partner exactly when its window
/// closes.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::JoinWindows;
///
/// let five_minutes = JoinWindows::of_time_difference_and_grace(
///     Duration::from_secs(300),
///     Duration::from_secs(30),
/// );
/// assert_eq!((five_minutes.before_ms(), five_minutes.after_ms()), (300_000, 300_000));
/// // Right records may only follow left ones, by up to a minute.
/// let after_only = JoinWindows::of_time_difference_without_grace(Duration::from_secs(60))
///     .before(Duration::ZERO);
/// assert_eq!(after_only.size_ms(), 60_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
}

impl JoinWindows {
    /// Records join when at most `time_difference` apart; a window closes as soon as stream time
    /// passes its end.
    pub fn of_time_difference_without_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Records join when at most `time_difference` apart; a window accepts records up to
    /// `grace` after its end.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        let d = millis(time_difference);
        JoinWindows {
            before_ms: d,
            after_ms: d,
            grace_ms: millis(grace),
        }
    }

    /// How much earlier than a left record a right record may be.
    pub fn before(mut self, time_difference: Duration) -> Self {
        self.before_ms = millis(time_difference);
        self
    }

    /// How much later than a left record a right record may be.
    pub fn after(mut self, time_difference: Duration) -> Self {
        self.after_ms = millis(time_difference);
        self
    }

    /// See [`before`](Self::before), in milliseconds.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// See [`after`](Self::after), in milliseconds.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The window's length, `before + after`.
    pub fn size_ms(&self) -> i64 {
        self.before_ms.saturating_add(self.after_ms)
    }

    /// How long a join store keeps a record after its timestamp: a record the other side could
    /// still join arrives at most `before + after + grace` later in stream time.
    pub(crate) fn retention_ms(&self) -> i64 {
        self.size_ms()
            .saturating_add(self.grace_ms)
            .saturating_add(1)
    }
}

fn split_tail<'a>(
    bytes: &'a [u8],
    tail: usize,
    type_name: &'static str,
) -> Result<(&'a [u8], &'a [u8]), SerdeError> {
    if bytes.len() < tail {
        return Err(SerdeError::Length {
            type_name,
            expected: tail,
            actual: bytes.len(),
        });
    }
    Ok(bytes.split_at(bytes.len() - tail))
}

fn read_i64(bytes: &[u8]) -> i64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(array)
}

/// A time-windowed key as Kafka's `TimeWindowedSerializer` writes it: the key's bytes, then the
/// window start as 8 bytes big-endian. Reading needs the window size (the end is not written).
#[derive(Debug, Clone)]
pub struct TimeWindowedSerde<S> {
    inner: S,
    window_size_ms: i64,
}

impl<K: 'static, S: Serde<K>> Serde<Windowed<K>> for TimeWindowedSerde<S> {
    fn serialize_into(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize_into(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (key, start) = split_tail(bytes, 8, "Windowed (time window)")?;
        let start = read_i64(start);
        // As Kafka: an end past i64::MAX is i64::MAX.
        let end = start.saturating_add(self.window_size_ms);
        Ok(Windowed::new(
            self.inner.deserialize(key)?,
            Window::new(start, end),
        ))
    }
}

/// A session-windowed key as Kafka's `SessionWindowedSerializer` writes it: the key's bytes,
/// then the session end and the session start, each 8 bytes big-endian.
#[derive(Debug, Clone)]
pub struct SessionWindowedSerde<S> {
    inner: S,
}

impl<K: 'static, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize_into(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize_into(&value.key, out)?;
        out.extend_from_slice(&value.window.end.to_be_bytes());
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (key, times) = split_tail(bytes, 16, "Windowed (session window)")?;
        let end = read_i64(&times[..8]);
        let start = read_i64(&times[8..]);
        Ok(Windowed::new(
            self.inner.deserialize(key)?,
            Window::new(start, end),
        ))
    }
}

/// Serdes for [`Windowed`] keys, byte-compatible with Kafka's `WindowedSerdes`, for reading and
/// writing the output of windowed aggregations.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{Window, Windowed, WindowedSerdes};
///
/// let serde = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_secs(60));
/// let key = Windowed::new("a".to_string(), Window::new(60_000, 120_000));
/// let bytes = serde.serialize(&key).unwrap();
/// assert_eq!(bytes, [b"a".as_slice(), &60_000i64.to_be_bytes()].concat());
/// assert_eq!(serde.deserialize(&bytes).unwrap(), key);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WindowedSerdes;

impl WindowedSerdes {
    /// Time-windowed keys (tumbling, hopping and sliding windows) whose windows are
    /// `window_size` long (the time difference, for sliding windows).
    pub fn time_windowed<S>(inner: S, window_size: Duration) -> TimeWindowedSerde<S> {
        TimeWindowedSerde {
            inner,
            window_size_ms: millis(window_size),
        }
    }

    /// Session-windowed keys.
    pub fn session_windowed<S>(inner: S) -> SessionWindowedSerde<S> {
        SessionWindowedSerde { inner }
    }

    pub(crate) fn time_windowed_ms<S>(inner: S, window_size_ms: i64) -> TimeWindowedSerde<S> {
        TimeWindowedSerde {
            inner,
            window_size_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use state_stores::Serdes;

    #[test]
    fn time_windowed_bytes_are_kafkas() {
        // Kafka: WindowKeySchema.toBinary = serialized key ++ putLong(start).
        let serde = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_millis(100));
        let key = Windowed::new("key".to_string(), Window::new(1_000, 1_100));
        let want: Vec<u8> = vec![b'k', b'e', b'y', 0, 0, 0, 0, 0, 0, 0x03, 0xe8];
        assert_eq!(serde.serialize(&key).ok(), Some(want.clone()));
        assert_eq!(serde.deserialize(&want).ok(), Some(key));
    }

    #[test]
    fn session_windowed_bytes_are_kafkas() {
        // Kafka: SessionKeySchema.toBinary = serialized key ++ putLong(end) ++ putLong(start).
        let serde = WindowedSerdes::session_windowed(Serdes::i32());
        let key = Windowed::new(7, Window::new(5, 258));
        let want: Vec<u8> = vec![
            0, 0, 0, 7, // the key
            0, 0, 0, 0, 0, 0, 1, 2, // end 258
            0, 0, 0, 0, 0, 0, 0, 5, // start 5
        ];
        assert_eq!(serde.serialize(&key).ok(), Some(want.clone()));
        assert_eq!(serde.deserialize(&want).ok(), Some(key));
    }

    #[test]
    fn short_input_is_an_error_and_a_huge_end_saturates() {
        let serde = WindowedSerdes::time_windowed(Serdes::string(), Duration::from_millis(10));
        assert!(serde.deserialize(&[1, 2, 3]).is_err());
        let session = WindowedSerdes::session_windowed(Serdes::string());
        assert!(session.deserialize(&[0; 15]).is_err());
        let big = WindowedSerdes::time_windowed_ms(Serdes::string(), i64::MAX);
        let w = big.deserialize(&[b'a', 0, 0, 0, 0, 0, 0, 0, 9]).ok();
        assert_eq!(w.map(|w| w.window), Some(Window::new(9, i64::MAX)));
    }

    #[test]
    fn display_is_javas() {
        let w = Windowed::new(42, Window::new(0, 10));
        assert_eq!(w.to_string(), "[42@0/10]");
    }

    #[test]
    fn validation_names_the_problem() {
        let zero = TimeWindows::of_size_with_no_grace(Duration::ZERO);
        assert!(zero.validate().is_err());
        let too_far = TimeWindows::of_size_with_no_grace(Duration::from_millis(10))
            .advance_by(Duration::from_millis(11));
        assert!(too_far.validate().is_err());
        assert!(
            SessionWindows::of_inactivity_gap_with_no_grace(Duration::ZERO)
                .validate()
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn windows_for_are_exactly_the_windows_containing_the_timestamp(
            size in 1i64..50, advance_pick in 1i64..50, ts in 0i64..500,
        ) {
            let advance = 1 + (advance_pick - 1) % size;
            let windows = TimeWindows::of_size_with_no_grace(Duration::from_millis(size as u64))
                .advance_by(Duration::from_millis(advance as u64));
            let got = windows.windows_for(ts);
            let want: Vec<Window> = (0..=ts)
                .filter(|s| s % advance == 0 && *s <= ts && ts < s + size)
                .map(|s| Window::new(s, s + size))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn windowed_keys_round_trip(key in ".*", start in any::<i64>(), end in any::<i64>()) {
            let session = WindowedSerdes::session_windowed(Serdes::string());
            let w = Windowed::new(key.clone(), Window::new(start, end));
            let bytes = session.serialize(&w).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(session.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, w);
            let time = WindowedSerdes::time_windowed_ms(Serdes::string(), 10);
            let w = Windowed::new(key, Window::new(start, start.saturating_add(10)));
            let bytes = time.serialize(&w).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(time.deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?, w);
        }
    }
}
