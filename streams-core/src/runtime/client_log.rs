//! librdkafka's own log lines and client errors, forwarded to `tracing`.
//!
//! Every Kafka client the runtime creates (consumers, the restore and offset clients, producers,
//! admin clients) reports through here, under the target `librdkafka`, so an application sees
//! broker and client trouble in the same subscriber as its own logs. Turn on librdkafka's debug
//! contexts with the client property `debug` (for example `consumer.debug=fetch,cgrp`) and
//! `RUST_LOG=librdkafka=debug`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// Forwards one librdkafka log line.
pub(crate) fn forward(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Forwards a client-level error (a broker going away, authentication failing, ...).
pub(crate) fn forward_error(error: &KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", %error, "{reason}");
}

/// The context of clients that need nothing else: logs go to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

impl ConsumerContext for TracingContext {}

/// A client context that also keeps the client's last failure (an error-level log line or a
/// client error), so that a request that fails with a generic transport error can say why: a
/// rejected password, an untrusted certificate, an unreachable address.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingContext {
    last: Arc<Mutex<Option<String>>>,
}

impl RecordingContext {
    /// The last failure the client reported, if any.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, what: String) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }
}

impl ClientContext for RecordingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward(level, fac, log_message);
        if fac == "FAIL" || (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            self.record(log_message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
        self.record(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for RecordingContext {}

/// Keeps a recurring error from flooding the log: while the brokers are away a consumer reports
/// the same error on every poll, ten times a second.
#[derive(Debug)]
pub(crate) struct ErrorThrottle {
    every: Duration,
    last: Option<(String, Instant)>,
    repeats: u64,
}

impl ErrorThrottle {
    /// Lets the same error through at most once per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        ErrorThrottle {
            every,
            last: None,
            repeats: 0,
        }
    }

    /// Whether to log `error` now: `Some(n)` with the `n` repeats held back since the last line
    /// logged, or `None` to hold this one back. A different error is always let through.
    pub(crate) fn admit(&mut self, error: &str) -> Option<u64> {
        let now = Instant::now();
        match &self.last {
            Some((text, at)) if text == error && now.duration_since(*at) < self.every => {
                self.repeats += 1;
                None
            }
            _ => {
                self.last = Some((error.to_owned(), now));
                Some(std::mem::take(&mut self.repeats))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_once_per_interval_with_its_repeats() {
        let mut t = ErrorThrottle::new(Duration::from_millis(200));
        assert_eq!(t.admit("down"), Some(0));
        assert_eq!(t.admit("down"), None);
        assert_eq!(t.admit("down"), None);
        assert_eq!(t.admit("other"), Some(2), "a new error goes through");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.admit("other"), Some(0), "again after the interval");
    }
}
