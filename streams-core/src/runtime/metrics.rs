//! Metrics with Kafka Streams' names and levels, readable in process
//! ([`KafkaStreams::metric_values`](crate::KafkaStreams::metric_values)) and as Prometheus text
//! ([`MetricsSnapshot::to_prometheus`]).
//!
//! | Kafka Streams group (level) | here | labels | metrics |
//! |---|---|---|---|
//! | `stream-thread-metrics` | `stream_thread` | `thread_id` | `process-total/rate`, `process-latency-avg/max` (ms), `commit-total/rate`, `commit-latency-avg` (ms), `poll-total/rate`, `poll-latency-avg` (ms), `punctuate-total`, `restore-total/rate`, `task-count` |
//! | `stream-task-metrics` | `stream_task` | `thread_id`, `task_id` | `process-total`, `dropped-records-total` (every record dropped: unreadable, failed, late), `skipped-records-total`, `late-records-dropped-total`, `processing-skipped-total`, `dead-letter-records-total` |
//! | `stream-state-metrics` | `stream_state` | `thread_id`, `task_id`, `store` | `put/get/delete/range/flush-latency-avg/max` (ns; only at `metrics.recording.level` `DEBUG` or `TRACE`), `put/get-total`, `restore-total`, `restore-rate`, `restore-remaining-records-total` |
//! | `consumer-fetch-manager-metrics` | `consumer_fetch_manager` | `thread_id`, `topic`, `partition` | `records-lag` |
//!
//! A Prometheus name is `kafka_streams_<group>_<name>` with dashes as underscores, e.g.
//! `kafka_streams_stream_thread_process_rate{thread_id="app-StreamThread-1"}`. Rates are per
//! second over the last 30 seconds (Kafka Streams' sample window), measured between reads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use state_stores::metering::OpSnapshot;

/// How far back rates look.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its group (level), e.g. `stream_thread`.
    pub group: &'static str,
    /// Its Kafka Streams name, e.g. `process-rate`.
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Its labels (Kafka's tags), e.g. `thread_id`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Metric {
    /// The Prometheus name: `kafka_streams_<group>_<name>`, dashes as underscores.
    pub fn prometheus_name(&self) -> String {
        format!("kafka_streams_{}_{}", self.group, self.name).replace('-', "_")
    }

    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every metric of an instance at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// The values, grouped by name.
    pub metrics: Vec<Metric>,
}

impl MetricsSnapshot {
    /// The values of metric `name` of `group`.
    pub fn values<'a>(&'a self, group: &'a str, name: &'a str) -> impl Iterator<Item = &'a Metric> {
        self.metrics
            .iter()
            .filter(move |m| m.group == group && m.name == name)
    }

    /// The sum of the values of metric `name` of `group`.
    pub fn sum(&self, group: &str, name: &str) -> f64 {
        self.values(group, name).map(|m| m.value).sum()
    }

    /// The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE` (`counter`
    /// for `*-total`, `gauge` otherwise) and one line per labelled value.
    pub fn to_prometheus(&self) -> String {
        let mut by_name: BTreeMap<String, Vec<&Metric>> = BTreeMap::new();
        for m in &self.metrics {
            by_name.entry(m.prometheus_name()).or_default().push(m);
        }
        let mut out = String::new();
        for (name, metrics) in by_name {
            let first = metrics[0];
            let kind = if first.name.ends_with("-total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(first.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for m in metrics {
                out.push_str(&name);
                if !m.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in m.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(m.value));
            }
        }
        out
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// Counters seen at earlier reads, for rates over the last [`RATE_WINDOW`].
#[derive(Debug)]
pub(crate) struct RateWindow {
    started: Instant,
    samples: VecDeque<(Instant, HashMap<String, f64>)>,
}

impl RateWindow {
    pub(crate) fn new() -> Self {
        RateWindow {
            started: Instant::now(),
            samples: VecDeque::new(),
        }
    }

    /// Records `now`'s counters and returns a function giving each one's rate per second.
    pub(crate) fn observe(&mut self, current: HashMap<String, f64>) -> impl Fn(&str) -> f64 {
        let now = Instant::now();
        while self.samples.len() > 1
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (since, base) = match self.samples.front() {
            Some((at, values)) if now.duration_since(*at) >= Duration::from_millis(500) => {
                (*at, values.clone())
            }
            _ => (self.started, HashMap::new()),
        };
        let elapsed = now.duration_since(since).as_secs_f64().max(1e-3);
        let rates: HashMap<String, f64> = current
            .iter()
            .map(|(k, v)| {
                let before = base.get(k).copied().unwrap_or(0.0);
                (k.clone(), ((v - before) / elapsed).max(0.0))
            })
            .collect();
        self.samples.push_back((now, current));
        move |key: &str| rates.get(key).copied().unwrap_or(0.0)
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mean of `total` over `count`, in milliseconds (0 when nothing ran).
pub(crate) fn mean_ms(total: Duration, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        millis(total) / count as f64
    }
}

/// The latency metrics of one store operation (nanoseconds, as Kafka Streams' store metrics).
pub(crate) fn op_metrics(
    out: &mut Vec<Metric>,
    labels: &[(&'static str, String)],
    op: OpSnapshot,
    names: (&'static str, &'static str),
    help: &'static str,
) {
    out.push(Metric {
        group: "stream_state",
        name: names.0,
        help,
        labels: labels.to_vec(),
        value: op.mean_nanos() as f64,
    });
    out.push(Metric {
        group: "stream_state",
        name: names.1,
        help,
        labels: labels.to_vec(),
        value: op.max_nanos as f64,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parses_as_prometheus_text() {
        let snapshot = MetricsSnapshot {
            metrics: vec![
                Metric {
                    group: "stream_thread",
                    name: "process-total",
                    help: "Records processed.",
                    labels: vec![("thread_id", "app-StreamThread-1".into())],
                    value: 42.0,
                },
                Metric {
                    group: "stream_thread",
                    name: "process-rate",
                    help: "Records processed per second.",
                    labels: vec![("thread_id", "app \"quoted\"\\".into())],
                    value: 1.5,
                },
                Metric {
                    group: "stream_thread",
                    name: "process-total",
                    help: "Records processed.",
                    labels: vec![("thread_id", "app-StreamThread-2".into())],
                    value: 8.0,
                },
            ],
        };
        let text = snapshot.to_prometheus();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        let total: f64 = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "kafka_streams_stream_thread_process_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                ref other => panic!("a counter, got {other:?}"),
            })
            .sum();
        assert_eq!(total, 50.0);
        let rate = scrape
            .samples
            .iter()
            .find(|s| s.metric == "kafka_streams_stream_thread_process_rate")
            .expect("the rate");
        // The parser hands label values back as written, escapes included.
        assert_eq!(rate.labels.get("thread_id"), Some(r#"app \"quoted\"\\"#));
        assert_eq!(
            text.matches("# TYPE kafka_streams_stream_thread_process_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn rates_measure_between_reads() {
        let mut window = RateWindow::new();
        window.started = Instant::now() - Duration::from_secs(10);
        let rate = window.observe(HashMap::from([("x".to_owned(), 100.0)]));
        let r = rate("x");
        assert!((9.0..=10.5).contains(&r), "100 in 10 s, got {r}");
    }
}
