//! Kafka Streams configuration files: the Java `.properties` syntax
//! (`java.util.Properties.load`) and the mapping of Kafka Streams' and the Java clients' names
//! onto this crate's settings, for [`StreamsConfig::from_properties_file`] and
//! [`StreamsConfig::from_properties_str`].
//!
//! The syntax is Java's: `key=value`, `key: value` or `key value`; `#` and `!` comment lines;
//! a backslash at the end of a line continues it (the next line's leading whitespace dropped);
//! the escapes `\t \n \r \f \\ \uXXXX`, and a backslash before any other character (`\=`, `\:`,
//! `\ `) stands for that character. A key given twice takes its last value, as in Java. A file
//! that is not UTF-8 is read as ISO-8859-1, Java's encoding for properties files.
//!
//! Kafka Streams' names map onto this crate's (which are Kafka Streams' where they exist): the
//! exception handlers' Java class names become `log-and-fail`, `log-and-continue`, `fail`;
//! `cache.max.bytes.buffering` becomes `statestore.cache.max.bytes`; `group.protocol=classic`
//! becomes `consumer.group.protocol=classic`. Client prefixes `consumer.`, `producer.`, `admin.`
//! and `main.consumer.` (as `consumer.`) pass through; client settings without a prefix apply
//! to all three clients, as in Kafka Streams. Java client names become librdkafka's where there is
//! an equivalent: `sasl.mechanism` (`sasl.mechanisms`), `sasl.jaas.config` with the PLAIN or
//! SCRAM login module (`sasl.username`, `sasl.password`), a PEM truststore (`ssl.ca.location`),
//! a PKCS#12 or PEM keystore, `receive.buffer.bytes` and `send.buffer.bytes`
//! (`socket.*.buffer.bytes`), `fetch.max.wait.ms` (`fetch.wait.max.ms`).
//!
//! Everything else is an error naming the file, the line and the key, and saying what to do
//! instead: Kafka Streams settings this crate has no use for (serde class names, RocksDB config
//! setters, standby replicas, ...), Java client settings librdkafka has no equivalent for, and
//! unknown keys. Values are checked as [`StreamsConfig::validate`] checks them, so a bad value is
//! reported with its line too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::ClientConfig;

use crate::config::StreamsConfig;
use crate::error::StreamsError;

/// What can be wrong with a properties file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// The file could not be read.
    #[error("cannot read the properties file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not valid `.properties` syntax (a malformed `\uXXXX` escape).
    #[error("{origin}:{line}: {reason}")]
    Syntax {
        /// The file (or `<properties>` for a string).
        origin: String,
        /// The line (1-based; of the first line of a continued line).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key is unknown or unsupported, or its value is invalid.
    #[error("{origin}:{line}: `{key}`: {reason}")]
    Key {
        /// The file (or `<properties>` for a string).
        origin: String,
        /// The line (1-based; of the first line of a continued line).
        line: usize,
        /// The key as written in the file.
        key: String,
        /// What is wrong and what to do instead.
        reason: String,
    },
}

/// One `key=value` entry of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, unescaped.
    pub key: String,
    /// The value, unescaped.
    pub value: String,
    /// The (first) line it is on, 1-based.
    pub line: usize,
}

/// Parses `.properties` text as `java.util.Properties.load` does, in file order (duplicates
/// kept). `origin` names the text in errors.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Property>, PropertiesError> {
    let mut out = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (raw_key, raw_value) = split_key_value(&logical);
        let syntax = |reason: String| PropertiesError::Syntax {
            origin: origin.to_owned(),
            line,
            reason,
        };
        let key = unescape(&raw_key).map_err(|r| syntax(format!("in the key: {r}")))?;
        let value = unescape(&raw_value).map_err(|r| syntax(format!("in the value: {r}")))?;
        out.push(Property { key, value, line });
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// The logical lines (comments and blank lines dropped, continuations joined), each with the
/// number of its first natural line. Escapes are kept for `unescape`.
fn logical_lines(text: &str) -> Vec<(usize, Vec<char>)> {
    // Natural lines end at \n, \r or \r\n.
    let mut natural: Vec<&str> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                natural.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                natural.push(rest);
                rest = "";
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < natural.len() {
        let first = i + 1;
        let start: Vec<char> = natural[i].chars().skip_while(|c| is_blank(*c)).collect();
        i += 1;
        if start.is_empty() || start[0] == '#' || start[0] == '!' {
            continue;
        }
        let mut logical = start;
        while ends_in_continuation(&logical) {
            logical.pop();
            if i >= natural.len() {
                break;
            }
            logical.extend(natural[i].chars().skip_while(|c| is_blank(*c)));
            i += 1;
        }
        out.push((first, logical));
    }
    out
}

/// Whether the line ends in an odd number of backslashes.
fn ends_in_continuation(line: &[char]) -> bool {
    line.iter().rev().take_while(|c| **c == '\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace, as Java does.
fn split_key_value(line: &[char]) -> (Vec<char>, Vec<char>) {
    let mut key_len = 0;
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut escaped = false;
    while key_len < line.len() {
        let c = line[key_len];
        if (c == '=' || c == ':') && !escaped {
            value_start = key_len + 1;
            has_separator = true;
            break;
        }
        if is_blank(c) && !escaped {
            value_start = key_len + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
        key_len += 1;
    }
    while value_start < line.len() {
        let c = line[value_start];
        if !is_blank(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (
        line[..key_len].to_vec(),
        line[value_start.min(line.len())..].to_vec(),
    )
}

/// Resolves escapes: `\t \n \r \f`, `\uXXXX` (UTF-16, surrogate pairs joined), and `\x` for any
/// other `x`. A lone backslash at the end is dropped.
fn unescape(raw: &[char]) -> Result<String, String> {
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        let Some(&next) = raw.get(i) else {
            break;
        };
        i += 1;
        let plain = match next {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let digits: String = raw.iter().skip(i).take(4).collect();
                let unit = (digits.len() == 4 && digits.chars().all(|d| d.is_ascii_hexdigit()))
                    .then(|| u16::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!("malformed \\uXXXX escape `\\u{digits}`: \\u needs four hex digits")
                    })?;
                units.push(unit);
                i += 4;
                continue;
            }
            other => other,
        };
        let mut buf = [0u16; 2];
        units.extend_from_slice(plain.encode_utf16(&mut buf));
    }
    String::from_utf16(&units).map_err(|_| {
        "a \\uXXXX escape leaves an unpaired UTF-16 surrogate (\\uD800-\\uDFFF need a pair)"
            .to_owned()
    })
}

impl StreamsConfig {
    /// Reads a Kafka Streams properties file (see [`crate::properties`] for the syntax and the
    /// names accepted). Errors name the file, the line and the key.
    pub fn from_properties_file(path: impl AsRef<Path>) -> Result<StreamsConfig, PropertiesError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PropertiesError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            // Java reads properties files as ISO-8859-1: every byte is the code point.
            Err(e) => e.into_bytes().iter().map(|b| char::from(*b)).collect(),
        };
        load(&path.display().to_string(), &text)
    }

    /// Reads Kafka Streams properties from `text` (see [`crate::properties`]). Errors name the
    /// line and the key (the origin is `<properties>`).
    pub fn from_properties_str(text: &str) -> Result<StreamsConfig, PropertiesError> {
        load("<properties>", text)
    }
}

/// Parses `text`, maps every key, and checks every value.
fn load(origin: &str, text: &str) -> Result<StreamsConfig, PropertiesError> {
    let entries = parse(origin, text)?;
    // Last one wins, as in Java; the line is the winner's.
    let mut raw: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for p in &entries {
        if let Some((_, earlier)) = raw.get(&p.key) {
            tracing::debug!(key = %p.key, line = p.line, earlier, "properties: key given again, the later value wins");
        }
        raw.insert(p.key.clone(), (p.value.clone(), p.line));
    }
    let mut out: BTreeMap<String, Mapped> = BTreeMap::new();
    for (key, (value, line)) in &raw {
        let fail = |reason: String| PropertiesError::Key {
            origin: origin.to_owned(),
            line: *line,
            key: key.clone(),
            reason,
        };
        for (target, value, priority) in map_key(key, value, &raw).map_err(fail)? {
            let replace = out.get(&target).is_none_or(|m| priority >= m.priority);
            if replace {
                out.insert(
                    target,
                    Mapped {
                        value,
                        line: *line,
                        source: key.clone(),
                        priority,
                    },
                );
            }
        }
    }
    let mut config = StreamsConfig::default();
    for (target, m) in &out {
        check_value(target, &m.value).map_err(|reason| PropertiesError::Key {
            origin: origin.to_owned(),
            line: m.line,
            key: m.source.clone(),
            reason,
        })?;
        config.insert(target, &m.value);
    }
    // Settings that depend on each other (only when the file names the application; else the
    // code sets the rest and validation happens when the application starts).
    if config.get(crate::config::APPLICATION_ID).is_some() {
        if let Err(e) = config.validate() {
            let (line, key) = match &e {
                StreamsError::Config { key, .. } => out
                    .get(key)
                    .map(|m| (m.line, m.source.clone()))
                    .unwrap_or((0, key.clone())),
                _ => (0, String::new()),
            };
            return Err(PropertiesError::Key {
                origin: origin.to_owned(),
                line,
                key,
                reason: e.to_string(),
            });
        }
    }
    Ok(config)
}

struct Mapped {
    value: String,
    line: usize,
    source: String,
    priority: u8,
}

/// Priorities when two entries set the same setting: Kafka Streams' precedence
/// (`main.consumer.` over `consumer.` over unprefixed; a current name over a deprecated one).
const UNPREFIXED: u8 = 0;
const PREFIXED: u8 = 1;
const MAIN_CONSUMER: u8 = 2;

/// Keys this crate takes as they are (Kafka Streams' names, and this crate's own).
const DIRECT: &[&str] = &[
    crate::config::APPLICATION_ID,
    crate::config::CLIENT_ID,
    crate::config::APPLICATION_SERVER,
    crate::config::BOOTSTRAP_SERVERS,
    crate::config::NUM_STREAM_THREADS,
    crate::config::STATE_DIR,
    crate::config::COMMIT_INTERVAL_MS,
    crate::config::CACHE_MAX_BYTES,
    crate::config::ROCKSDB_MEMORY_BYTES,
    crate::config::BUFFERED_RECORDS_PER_PARTITION,
    crate::config::POLL_MS,
    crate::config::REPLICATION_FACTOR,
    crate::config::AUTO_OFFSET_RESET,
    crate::config::DEFAULT_TIMESTAMP_EXTRACTOR,
];

const SET_SERDES_IN_CODE: &str = "serdes are Rust values here, not Java classes: set them in code (StreamsConfig::with_default_key_serde / with_default_value_serde, or per operator)";
const JAVA_CLASS: &str = "names a Java class, which cannot run here; remove it";
const ASSIGNMENT: &str = "kstreams assigns tasks with the consumer group's range assignor and has no standby, warm-up or rack-aware task assignment; remove it";
const METRICS: &str = "kstreams has no JMX metrics reporters: its metrics are read with KafkaStreams::metrics or served at /metrics by the `http` feature; remove it";

/// Kafka Streams settings (from its `StreamsConfig`) that this crate does not support, with
/// what to do instead.
fn unsupported_streams_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "default.key.serde"
        | "default.value.serde"
        | "key.serde"
        | "value.serde"
        | "default.windowed.key.serde.inner"
        | "default.windowed.value.serde.inner"
        | "windowed.inner.class.serde"
        | "window.size.ms"
        | "default.list.key.serde.inner"
        | "default.list.key.serde.type"
        | "default.list.value.serde.inner"
        | "default.list.value.serde.type" => SET_SERDES_IN_CODE,
        "rocksdb.config.setter" => "RocksDB is not configured by a Java class here: rocksdb.memory.max.bytes bounds the memory of all RocksDB stores; remove it",
        "default.dsl.store" | "dsl.store.suppliers.class" => "store types are chosen in code, per operator (Materialized); remove it",
        "num.standby.replicas" | "acceptable.recovery.lag" | "max.warmup.replicas"
        | "probing.rebalance.interval.ms" | "task.assignor.class"
        | "rack.aware.assignment.tags" | "rack.aware.assignment.strategy"
        | "rack.aware.assignment.traffic_cost" | "rack.aware.assignment.non_overlap_cost" => ASSIGNMENT,
        "built.in.metrics.version" | "metrics.num.samples" | "metrics.recording.level"
        | "metrics.sample.window.ms" | "metric.reporters" | "auto.include.jmx.reporter" => METRICS,
        "topology.optimization" => "kstreams does not rewrite topologies (Kafka Streams' `none`, which is accepted); remove it",
        "upgrade.from" => "there is no older kstreams rebalance protocol to upgrade from; remove it",
        "max.task.idle.ms" => "tasks do not idle waiting for data on their other inputs: they process what is buffered, earliest timestamp first; remove it",
        "task.timeout.ms" => "tasks do not retry timeouts for a bounded time: client errors go to the stream thread's error handling; remove it",
        "state.cleanup.delay.ms" => "the state of tasks that moved away is not cleaned up on a timer here; remove it",
        "repartition.purge.interval.ms" => "repartition topics are not purged by the application here (they have the broker's retention); remove it",
        "log.summary.interval.ms" => "kstreams logs through `tracing` and has no periodic summary; remove it",
        "windowstore.changelog.additional.retention.ms" => "window changelogs are kept for the store's retention (set in code); remove it",
        "default.client.supplier" | "processor.wrapper.class" | "partition.grouper" => JAVA_CLASS,
        "errors.dead.letter.queue.topic.name" => "there is no dead letter queue: use log-and-continue handlers, or a custom handler set in code; remove it",
        "ensure.explicit.internal.resource.naming" => "not supported; remove it",
        "timestamp.extractor" => "the old name of default.timestamp.extractor; use that",
        "zookeeper.connect" => "Kafka Streams no longer uses ZooKeeper; remove it",
        "enable.metrics.push" => "librdkafka pushes client metrics (KIP-714) when the broker asks for them; remove it",
        _ => return None,
    })
}

/// Java client settings that librdkafka has no equivalent for, with what to do instead.
fn java_only_client_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "key.serializer" | "value.serializer" | "key.deserializer" | "value.deserializer" => {
            SET_SERDES_IN_CODE
        }
        "max.poll.records" => "librdkafka has no equivalent: buffered.records.per.partition bounds what a stream thread buffers; remove it",
        "buffer.memory" => "librdkafka's equivalent is producer.queue.buffering.max.kbytes (in KiB)",
        "max.request.size" => "librdkafka's equivalent is producer.message.max.bytes",
        "interceptor.classes" | "partitioner.class" | "metric.reporters"
        | "sasl.login.callback.handler.class" | "sasl.client.callback.handler.class"
        | "sasl.login.class" | "ssl.engine.factory.class" | "config.providers" => JAVA_CLASS,
        "ssl.protocol" | "ssl.enabled.protocols" | "ssl.provider" | "ssl.keymanager.algorithm"
        | "ssl.trustmanager.algorithm" | "ssl.secure.random.implementation" => {
            "a JVM TLS setting with no librdkafka equivalent (OpenSSL negotiates the protocol); remove it"
        }
        "ssl.truststore.password" => "librdkafka reads CA certificates from PEM, which has no password; remove it",
        "auto.commit.interval.ms" => "kstreams commits offsets itself (commit.interval.ms); remove it",
        "default.api.timeout.ms" => "librdkafka has no equivalent; remove it",
        _ => return None,
    })
}

/// Maps one key of the file to this crate's settings: `(key, value, priority)`.
fn map_key(
    key: &str,
    value: &str,
    raw: &BTreeMap<String, (String, usize)>,
) -> Result<Vec<(String, String, u8)>, String> {
    let one = |k: &str, v: &str| Ok(vec![(k.to_owned(), v.to_owned(), PREFIXED)]);
    if DIRECT.contains(&key) {
        return one(key, value);
    }
    match key {
        "cache.max.bytes.buffering" => {
            return Ok(vec![(
                crate::config::CACHE_MAX_BYTES.to_owned(),
                value.to_owned(),
                UNPREFIXED,
            )])
        }
        "processing.guarantee" => {
            return match value.trim() {
                "exactly_once" | "exactly_once_beta" => Err(format!(
                    "`{}` was removed in Kafka Streams 4.0; use exactly_once_v2 (brokers 2.5 or newer)",
                    value.trim()
                )),
                v => one(key, v),
            }
        }
        "default.deserialization.exception.handler" | "deserialization.exception.handler" => {
            let v = handler(value, &[
                ("LogAndContinueExceptionHandler", "log-and-continue"),
                ("LogAndFailExceptionHandler", "log-and-fail"),
            ], "log-and-fail or log-and-continue", "StreamsConfig::with_deserialization_handler")?;
            return one(crate::config::DESERIALIZATION_HANDLER, &v);
        }
        "default.production.exception.handler" | "production.exception.handler" => {
            let v = handler(value, &[("DefaultProductionExceptionHandler", "fail")], "fail or continue", "StreamsConfig::with_production_handler")?;
            return one(crate::config::PRODUCTION_HANDLER, &v);
        }
        "processing.exception.handler" => {
            let v = handler(value, &[
                ("LogAndContinueProcessingExceptionHandler", "log-and-continue"),
                ("LogAndFailProcessingExceptionHandler", "log-and-fail"),
            ], "log-and-fail or log-and-continue", "StreamsConfig::with_processing_handler")?;
            return one(crate::config::PROCESSING_HANDLER, &v);
        }
        "group.protocol" => {
            return match value.trim() {
                "classic" => one("consumer.group.protocol", "classic"),
                "streams" => Err("the streams rebalance protocol (KIP-1071) is not supported: kstreams uses the consumer group protocol of KIP-848 by default, or `classic`".to_owned()),
                other => Err(format!("must be classic (the consumer group protocol of KIP-848 is the default), not `{other}`")),
            }
        }
        "topology.optimization" if value.trim() == "none" => return Ok(Vec::new()),
        "num.standby.replicas" if value.trim() == "0" => return Ok(Vec::new()),
        _ => {}
    }
    if let Some(why) = unsupported_streams_key(key) {
        return Err(format!(
            "a Kafka Streams setting kstreams does not support: {why}"
        ));
    }
    for prefix in ["client.tag.", "topic."] {
        if key.starts_with(prefix) {
            let why = if prefix == "topic." {
                "default configs of internal topics are not supported (changelog configs are set per store in code); remove it"
            } else {
                ASSIGNMENT
            };
            return Err(format!(
                "a Kafka Streams setting kstreams does not support: {why}"
            ));
        }
    }
    for prefix in ["restore.consumer.", "global.consumer."] {
        if let Some(inner) = key.strip_prefix(prefix) {
            return Err(format!(
                "kstreams' restore and global consumers take the `consumer.` settings (all but `group.*`) and have no settings of their own; use `consumer.{inner}`"
            ));
        }
    }
    for (prefix, target, priority) in [
        ("main.consumer.", "consumer.", MAIN_CONSUMER),
        ("consumer.", "consumer.", PREFIXED),
        ("producer.", "producer.", PREFIXED),
        ("admin.", "admin.", PREFIXED),
    ] {
        if let Some(inner) = key.strip_prefix(prefix) {
            let scopes = [prefix, target, ""];
            return Ok(client_key(inner, value, raw, &scopes)?
                .into_iter()
                .map(|(k, v)| (format!("{target}{k}"), v, priority))
                .collect());
        }
    }
    // A client setting without a prefix applies to every client, as in Kafka Streams.
    match client_key(key, value, raw, &[""]) {
        Ok(mapped) => Ok(["consumer.", "producer.", "admin."]
            .iter()
            .flat_map(|p| mapped.iter().map(move |(k, v)| (format!("{p}{k}"), v.clone(), UNPREFIXED)))
            .collect()),
        Err(ClientKeyError::Unknown) => Err(
            "unknown setting: neither a Kafka Streams setting nor a Kafka client property (client properties take librdkafka's names, optionally with a `consumer.`, `producer.` or `admin.` prefix)".to_owned(),
        ),
        Err(ClientKeyError::Reason(r)) => Err(r),
    }
}

/// Maps a handler value: ours as they are, Kafka's class names (with or without their package)
/// to ours, other classes refused.
fn handler(
    value: &str,
    classes: &[(&str, &'static str)],
    ours: &str,
    in_code: &str,
) -> Result<String, String> {
    let v = value.trim();
    let simple = v
        .strip_prefix("org.apache.kafka.streams.errors.")
        .unwrap_or(v);
    if let Some((_, mapped)) = classes.iter().find(|(class, _)| *class == simple) {
        return Ok((*mapped).to_owned());
    }
    if v.contains('.') || v.chars().next().is_some_and(char::is_uppercase) {
        return Err(format!(
            "the Java class `{v}` cannot run here: use {ours}, or set a custom handler in code ({in_code})"
        ));
    }
    Ok(v.to_owned())
}

enum ClientKeyError {
    Unknown,
    Reason(String),
}

impl From<String> for ClientKeyError {
    fn from(s: String) -> Self {
        ClientKeyError::Reason(s)
    }
}

impl From<ClientKeyError> for String {
    fn from(e: ClientKeyError) -> Self {
        match e {
            ClientKeyError::Unknown => {
                "not a librdkafka client property (client properties take librdkafka's names: see librdkafka's CONFIGURATION.md)".to_owned()
            }
            ClientKeyError::Reason(r) => r,
        }
    }
}

/// Maps a Java client property (without its prefix) to librdkafka's. `scopes` are the prefixes
/// under which related settings (`ssl.truststore.type`, ...) are looked up, most specific first.
fn client_key(
    key: &str,
    value: &str,
    raw: &BTreeMap<String, (String, usize)>,
    scopes: &[&str],
) -> Result<Vec<(String, String)>, ClientKeyError> {
    let related = |name: &str| -> Option<String> {
        scopes
            .iter()
            .find_map(|s| raw.get(&format!("{s}{name}")))
            .map(|(v, _)| v.trim().to_ascii_uppercase())
    };
    let one = |k: &str, v: &str| Ok(vec![(k.to_owned(), v.to_owned())]);
    match key {
        "sasl.mechanism" => return one("sasl.mechanisms", value),
        "sasl.jaas.config" => return jaas(value).map_err(ClientKeyError::Reason),
        "receive.buffer.bytes" => return one("socket.receive.buffer.bytes", value),
        "send.buffer.bytes" => return one("socket.send.buffer.bytes", value),
        "fetch.max.wait.ms" => return one("fetch.wait.max.ms", value),
        "ssl.truststore.type" | "ssl.keystore.type" => return Ok(Vec::new()),
        "ssl.truststore.certificates" => return one("ssl.ca.pem", value),
        "ssl.keystore.key" => return one("ssl.key.pem", value),
        "ssl.keystore.certificate.chain" => return one("ssl.certificate.pem", value),
        "ssl.endpoint.identification.algorithm" => {
            let v = if value.trim().is_empty() { "none" } else { value.trim() };
            return one(key, v);
        }
        "ssl.truststore.location" => {
            return match related("ssl.truststore.type").as_deref() {
                Some("PEM") => one("ssl.ca.location", value),
                other => Err(format!(
                    "librdkafka cannot read {} truststores: convert it to PEM (keytool -exportcert -rfc) and set ssl.truststore.type=PEM, or set ssl.ca.location",
                    other.unwrap_or("JKS (the default type)")
                )
                .into()),
            }
        }
        "ssl.keystore.location" => {
            return match related("ssl.keystore.type").as_deref() {
                Some("PKCS12") => one("ssl.keystore.location", value),
                Some("PEM") => Ok(vec![
                    ("ssl.certificate.location".to_owned(), value.to_owned()),
                    ("ssl.key.location".to_owned(), value.to_owned()),
                ]),
                other => Err(format!(
                    "librdkafka cannot read {} keystores: convert it to PKCS#12 and set ssl.keystore.type=PKCS12, or to PEM (ssl.keystore.type=PEM, or ssl.certificate.location and ssl.key.location)",
                    other.unwrap_or("JKS (the default type)")
                )
                .into()),
            }
        }
        "ssl.keystore.password" => {
            return match related("ssl.keystore.type").as_deref() {
                Some("PKCS12") => one(key, value),
                _ => Err("librdkafka takes a keystore password for PKCS#12 keystores only (ssl.keystore.type=PKCS12); a PEM key's password is ssl.key.password".to_owned().into()),
            }
        }
        _ => {}
    }
    if let Some(why) = java_only_client_key(key) {
        return Err(
            format!("a Java client setting librdkafka has no equivalent for: {why}").into(),
        );
    }
    if !librdkafka_knows(key, value) {
        return Err(ClientKeyError::Unknown);
    }
    one(key, value)
}

/// Whether librdkafka has a property `key` (its value is not judged here: that happens when the
/// clients are created, and a build without TLS refuses TLS values).
fn librdkafka_knows(key: &str, value: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    match ClientConfig::new().set(key, value).create_native_config() {
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => false,
        Ok(_) | Err(_) => true,
    }
}

/// Maps a `sasl.jaas.config` with the PLAIN or SCRAM login module to `sasl.username` and
/// `sasl.password`. Errors never repeat the value (it holds a password).
fn jaas(value: &str) -> Result<Vec<(String, String)>, String> {
    let text = value.trim();
    let (module, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let supported = [
        "org.apache.kafka.common.security.plain.PlainLoginModule",
        "org.apache.kafka.common.security.scram.ScramLoginModule",
    ];
    if !supported.contains(&module) {
        let hint = match module.rsplit('.').next() {
            Some("OAuthBearerLoginModule") => "for OAUTHBEARER set librdkafka's sasl.oauthbearer.method=oidc, sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret and sasl.oauthbearer.token.endpoint.url instead",
            Some("Krb5LoginModule") => "for GSSAPI set librdkafka's sasl.kerberos.principal and sasl.kerberos.keytab instead",
            _ => "only the PLAIN and SCRAM login modules (org.apache.kafka.common.security.plain.PlainLoginModule, org.apache.kafka.common.security.scram.ScramLoginModule) map to librdkafka (sasl.username, sasl.password)",
        };
        return Err(format!("unsupported login module `{module}`: {hint}"));
    }
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("required") else {
        return Err(format!(
            "expected `{module} required username=\"...\" password=\"...\";`: the control flag must be `required`"
        ));
    };
    let options = jaas_options(rest)?;
    let mut username = None;
    let mut password = None;
    for (name, v) in options {
        match name.as_str() {
            "username" => username = Some(v),
            "password" => password = Some(v),
            "tokenauth" if v == "false" => {}
            other => {
                return Err(format!(
                    "the login module option `{other}` has no librdkafka equivalent (username and password are mapped)"
                ))
            }
        }
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok(vec![
            ("sasl.username".to_owned(), u),
            ("sasl.password".to_owned(), p),
        ]),
        _ => Err("the login module needs both username=\"...\" and password=\"...\"".to_owned()),
    }
}

/// Parses JAAS options: `name=value` or `name="quoted \" value"`, up to a final `;`.
fn jaas_options(text: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return Err("the JAAS entry must end with `;`".to_owned());
        }
        if chars[i] == ';' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() {
                return Err(
                    "only one JAAS login module entry is supported (text after `;`)".to_owned(),
                );
            }
            return Ok(out);
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || "_-.".contains(chars[i])) {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() || chars.get(i) != Some(&'=') {
            return Err(
                "malformed JAAS options: expected name=\"value\" pairs ending with `;`".to_owned(),
            );
        }
        i += 1;
        let mut v = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "unterminated quoted value of the JAAS option `{name}`"
                        ))
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if i + 1 < chars.len() => {
                        v.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ';' {
                v.push(chars[i]);
                i += 1;
            }
        }
        out.push((name, v));
    }
}

/// Checks a mapped value as [`StreamsConfig::validate`] would, on its own.
fn check_value(key: &str, value: &str) -> Result<(), String> {
    let config = if key == crate::config::APPLICATION_ID {
        StreamsConfig::default().set(key, value)
    } else {
        StreamsConfig::new("app").set(key, value)
    };
    config.validate().map(|_| ()).map_err(|e| match e {
        StreamsError::Config { reason, .. } => reason,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse("t", text)
            .expect("parses")
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    fn load_err(text: &str) -> String {
        match StreamsConfig::from_properties_str(text) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn loaded(text: &str) -> StreamsConfig {
        StreamsConfig::from_properties_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn separators_and_whitespace() {
        assert_eq!(
            pairs("a=1\nb: 2\nc 3\n  d  =  4  \ne\t:\tx\nf\x0c=\x0cy\ng\n h = \n"),
            vec![
                pair("a", "1"),
                pair("b", "2"),
                pair("c", "3"),
                pair("d", "4  "),
                pair("e", "x"),
                pair("f", "y"),
                pair("g", ""),
                pair("h", ""),
            ]
        );
        // Only the first separator splits; later ones belong to the value.
        assert_eq!(
            pairs("url=http://h:1/a=b\nk = = v\nk2 :=v"),
            vec![
                pair("url", "http://h:1/a=b"),
                pair("k", "= v"),
                pair("k2", "=v")
            ]
        );
    }

    #[test]
    fn comments_blank_lines_and_line_endings() {
        assert_eq!(
            pairs("# c\n! c\n   # indented\n\n \t \r\na=1\r\nb=2\rc=3\n#d=4"),
            vec![pair("a", "1"), pair("b", "2"), pair("c", "3")]
        );
        // `#` after the start of a line is text.
        assert_eq!(
            pairs("a=1 # not a comment"),
            vec![pair("a", "1 # not a comment")]
        );
        // A comment ending in a backslash does not continue.
        assert_eq!(pairs("# c \\\na=1"), vec![pair("a", "1")]);
    }

    #[test]
    fn continuation_lines() {
        assert_eq!(
            pairs("a=one, \\\n     two, \\\n\tthree\nb=x"),
            vec![pair("a", "one, two, three"), pair("b", "x")]
        );
        // An even number of backslashes is escaped backslashes, not a continuation.
        assert_eq!(
            pairs("a=x\\\\\nb=y"),
            vec![pair("a", "x\\"), pair("b", "y")]
        );
        // A continued line starting with `#` is not a comment; a key can continue too.
        assert_eq!(pairs("a=1\\\n#2"), vec![pair("a", "1#2")]);
        assert_eq!(pairs("ke\\\n  y=v"), vec![pair("key", "v")]);
        // A continuation at the end of the text ends the line.
        assert_eq!(pairs("a=1\\"), vec![pair("a", "1")]);
        assert_eq!(pairs("a=1\\\n"), vec![pair("a", "1")]);
        // The line number is the first line's.
        let p = parse("t", "\n\na=1\\\n2\nb=3").expect("parses");
        assert_eq!((p[0].line, p[1].line), (3, 5));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            pairs(r"a=t\tn\nr\rf\fb\\q\q\=\:\ x"),
            vec![pair("a", "t\tn\nr\rf\x0cb\\qq=: x")]
        );
        assert_eq!(
            pairs(r"k\=ey\:with\ spaces=v"),
            vec![pair("k=ey:with spaces", "v")]
        );
        assert_eq!(pairs(r"\ lead=v"), vec![pair(" lead", "v")]);
        assert_eq!(
            pairs(r"u=\u00e9\u0041\uD83D\uDE00"),
            vec![pair("u", "éA😀")]
        );
        assert_eq!(pairs("raw=é😀"), vec![pair("raw", "é😀")]);
    }

    #[test]
    fn malformed_unicode_escapes_name_the_line() {
        for text in [
            "a=1\nb=\\u12",
            "a=1\nb=\\u12g4",
            "a=1\nb\\uZZZZ=1",
            "a=1\nb=\\uD800",
        ] {
            let e = parse("file.properties", text).expect_err(text).to_string();
            assert!(e.starts_with("file.properties:2: "), "{e}");
        }
        let e = load_err("a=1\nb=\\u12");
        assert!(e.contains("<properties>:2") && e.contains("\\uXXXX"), "{e}");
    }

    #[test]
    fn kafka_streams_names_and_values_map_onto_ours() {
        let c = loaded(
            "application.id=app\n\
             default.deserialization.exception.handler=org.apache.kafka.streams.errors.LogAndContinueExceptionHandler\n\
             default.production.exception.handler=org.apache.kafka.streams.errors.DefaultProductionExceptionHandler\n\
             processing.exception.handler=LogAndContinueProcessingExceptionHandler\n\
             processing.guarantee=exactly_once_v2\n\
             cache.max.bytes.buffering=1234\n",
        );
        assert_eq!(
            c.get("default.deserialization.exception.handler"),
            Some("log-and-continue")
        );
        assert_eq!(c.get("default.production.exception.handler"), Some("fail"));
        assert_eq!(
            c.get("processing.exception.handler"),
            Some("log-and-continue")
        );
        assert_eq!(c.get("processing.guarantee"), Some("exactly_once_v2"));
        assert_eq!(c.get("statestore.cache.max.bytes"), Some("1234"));
        assert_eq!(c.get("cache.max.bytes.buffering"), None);
        let c = loaded(
            "deserialization.exception.handler=org.apache.kafka.streams.errors.LogAndFailExceptionHandler\n\
             processing.exception.handler=org.apache.kafka.streams.errors.LogAndFailProcessingExceptionHandler\n\
             default.deserialization.exception.handler=log-and-continue",
        );
        // Both names set the one setting; the later line wins.
        assert!(c.get("default.deserialization.exception.handler").is_some());
        assert_eq!(c.get("processing.exception.handler"), Some("log-and-fail"));
        // The current name wins over the deprecated one, whatever the order.
        for text in [
            "statestore.cache.max.bytes=1\ncache.max.bytes.buffering=2",
            "cache.max.bytes.buffering=2\nstatestore.cache.max.bytes=1",
        ] {
            assert_eq!(loaded(text).get("statestore.cache.max.bytes"), Some("1"));
        }
    }

    #[test]
    fn removed_and_foreign_values_are_refused() {
        for old in ["exactly_once", "exactly_once_beta"] {
            let e = load_err(&format!("processing.guarantee={old}"));
            assert!(
                e.contains("removed") && e.contains("exactly_once_v2"),
                "{e}"
            );
        }
        let e = load_err(
            "client.id=x\n default.deserialization.exception.handler = com.acme.MyHandler",
        );
        assert!(
            e.contains(":2:")
                && e.contains("com.acme.MyHandler")
                && e.contains("with_deserialization_handler"),
            "{e}"
        );
        let e = load_err("num.stream.threads=two");
        assert!(
            e.contains(":1:") && e.contains("`num.stream.threads`") && e.contains("whole number"),
            "{e}"
        );
        let e = load_err("\n\ndefault.timestamp.extractor=com.acme.Extractor");
        assert!(e.contains(":3:"), "{e}");
    }

    #[test]
    fn client_prefixes_pass_through() {
        let c = loaded(
            "consumer.fetch.min.bytes=1\nproducer.linger.ms=5\nadmin.socket.timeout.ms=9000\n\
             consumer.fetch.max.wait.ms=200\nmain.consumer.fetch.max.wait.ms=300\n\
             main.consumer.session.timeout.ms=45000",
        );
        assert_eq!(c.get("consumer.fetch.min.bytes"), Some("1"));
        assert_eq!(c.get("producer.linger.ms"), Some("5"));
        assert_eq!(c.get("admin.socket.timeout.ms"), Some("9000"));
        // main.consumer. outranks consumer.; Java's name becomes librdkafka's.
        assert_eq!(c.get("consumer.fetch.wait.max.ms"), Some("300"));
        assert_eq!(c.get("consumer.session.timeout.ms"), Some("45000"));
        for prefix in ["restore.consumer.", "global.consumer."] {
            let e = load_err(&format!("{prefix}fetch.min.bytes=1"));
            assert!(e.contains("use `consumer.fetch.min.bytes`"), "{e}");
        }
        let e = load_err("consumer.max.poll.records=10");
        assert!(e.contains("buffered.records.per.partition"), "{e}");
        let e = load_err("producer.no.such.thing=1");
        assert!(
            e.contains("`producer.no.such.thing`") && e.contains("librdkafka"),
            "{e}"
        );
        // Protected settings are refused with the line.
        let e = load_err(
            "x.y=1\n"
                .replace("x.y=1\n", "\nconsumer.group.id=other")
                .as_str(),
        );
        assert!(e.contains(":2:") && e.contains("application.id"), "{e}");
    }

    #[test]
    fn unprefixed_client_settings_apply_to_every_client() {
        let c = loaded("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nreceive.buffer.bytes=65536\nmetadata.max.age.ms=1000");
        for p in ["consumer.", "producer.", "admin."] {
            assert_eq!(c.get(&format!("{p}security.protocol")), Some("SASL_SSL"));
            assert_eq!(c.get(&format!("{p}sasl.mechanisms")), Some("PLAIN"));
            assert_eq!(
                c.get(&format!("{p}socket.receive.buffer.bytes")),
                Some("65536")
            );
            assert_eq!(c.get(&format!("{p}metadata.max.age.ms")), Some("1000"));
        }
        assert_eq!(c.get("security.protocol"), None);
        // A prefixed setting outranks the unprefixed one, whatever the order.
        let c = loaded("producer.security.protocol=SSL\nsecurity.protocol=PLAINTEXT");
        assert_eq!(c.get("producer.security.protocol"), Some("SSL"));
        assert_eq!(c.get("consumer.security.protocol"), Some("PLAINTEXT"));
        // group.protocol is Kafka Streams' (4.1) and maps to the consumer's.
        assert_eq!(
            loaded("group.protocol=classic").get("consumer.group.protocol"),
            Some("classic")
        );
        assert!(load_err("group.protocol=streams").contains("KIP-1071"));
    }

    #[test]
    fn jaas_and_stores_map_to_librdkafka() {
        let c = loaded(
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"p@ss \\\\\"word\\\\\"\";",
            // (two backslashes in the file are one for JAAS, which escapes the quote)
        );
        for p in ["consumer.", "producer.", "admin."] {
            assert_eq!(c.get(&format!("{p}sasl.username")), Some("alice"));
            assert_eq!(c.get(&format!("{p}sasl.password")), Some("p@ss \"word\""));
        }
        let c = loaded("consumer.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username=bob \\\n  password=\"x\";");
        assert_eq!(c.get("consumer.sasl.username"), Some("bob"));
        assert_eq!(c.get("producer.sasl.username"), None);
        for bad in [
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\" password=\"hunter2\"",
            "org.apache.kafka.common.security.plain.PlainLoginModule optional username=\"a\" password=\"hunter2\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\";",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\" password=\"hunter2;",
            "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;",
        ] {
            let e = load_err(&format!("sasl.jaas.config={bad}"));
            assert!(e.contains("`sasl.jaas.config`"), "{e}");
            assert!(!e.contains("hunter2"), "the password must not be in the error: {e}");
        }
        let c = loaded("ssl.truststore.location=/ca.pem\nssl.truststore.type=PEM");
        assert_eq!(c.get("admin.ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("consumer.ssl.truststore.type"), None);
        // The type may be given for all clients and the location for one.
        let c = loaded("ssl.truststore.type=PEM\nproducer.ssl.truststore.location=/ca.pem");
        assert_eq!(c.get("producer.ssl.ca.location"), Some("/ca.pem"));
        let e = load_err("ssl.truststore.location=/ts.jks\nssl.truststore.password=x");
        assert!(e.contains("JKS") && e.contains("PEM"), "{e}");
        let e = load_err("ssl.truststore.location=/ts.p12\nssl.truststore.type=PKCS12");
        assert!(e.contains("PKCS12 truststores"), "{e}");
        let c = loaded("ssl.keystore.type=PKCS12\nssl.keystore.location=/k.p12\nssl.keystore.password=pw\nssl.key.password=kp");
        assert_eq!(c.get("consumer.ssl.keystore.location"), Some("/k.p12"));
        assert_eq!(c.get("consumer.ssl.keystore.password"), Some("pw"));
        assert_eq!(c.get("consumer.ssl.key.password"), Some("kp"));
        let c = loaded("ssl.keystore.type=PEM\nssl.keystore.location=/both.pem\nssl.endpoint.identification.algorithm=");
        assert_eq!(
            c.get("producer.ssl.certificate.location"),
            Some("/both.pem")
        );
        assert_eq!(c.get("producer.ssl.key.location"), Some("/both.pem"));
        assert_eq!(
            c.get("producer.ssl.endpoint.identification.algorithm"),
            Some("none")
        );
        assert!(load_err("ssl.keystore.location=/k.jks").contains("JKS"));
        assert!(load_err("ssl.enabled.protocols=TLSv1.3").contains("JVM TLS"));
    }

    #[test]
    fn unsupported_and_unknown_keys_are_told_apart() {
        let e = load_err("application.id=a\ndefault.key.serde=org.apache.kafka.common.serialization.Serdes$StringSerde");
        assert!(
            e.contains(":2:")
                && e.contains("`default.key.serde`")
                && e.contains("does not support")
                && e.contains("in code"),
            "{e}"
        );
        for key in [
            "default.value.serde",
            "rocksdb.config.setter",
            "default.dsl.store",
            "num.standby.replicas",
            "upgrade.from",
            "max.task.idle.ms",
            "metrics.recording.level",
            "client.tag.zone",
            "topic.segment.bytes",
        ] {
            let e = load_err(&format!("{key}=1"));
            assert!(
                e.contains(&format!("`{key}`")) && e.contains("kstreams does not support"),
                "{e}"
            );
        }
        // Kafka's defaults for these are no-ops here.
        assert!(StreamsConfig::from_properties_str(
            "topology.optimization=none\nnum.standby.replicas=0"
        )
        .is_ok());
        assert!(load_err("topology.optimization=all").contains("does not rewrite"));
        let e = load_err("\n\napplicaton.id=typo");
        assert!(
            e.contains(":3:") && e.contains("`applicaton.id`") && e.contains("unknown setting"),
            "{e}"
        );
        assert!(!e.contains("does not support"), "{e}");
        // Java client names with no equivalent.
        assert!(load_err("key.serializer=x").contains("in code"));
    }

    #[test]
    fn settings_that_depend_on_each_other_are_checked_when_the_file_names_the_application() {
        let e = load_err(
            "application.id=a\nprocessing.guarantee=exactly_once_v2\nproducer.transaction.timeout.ms=50",
        );
        assert!(
            e.contains(":3:") && e.contains("producer.transaction.timeout.ms"),
            "{e}"
        );
    }

    #[test]
    fn a_realistic_kafka_streams_file_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("streams.properties");
        std::fs::write(
            &path,
            include_str!("../tests/data/kafka-streams.properties"),
        )
        .expect("write");
        let c = StreamsConfig::from_properties_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let r = c.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.application_id, "orders-enrichment");
        assert_eq!(
            r.bootstrap_servers.as_deref(),
            Some("broker-1.example.com:9093,broker-2.example.com:9093")
        );
        assert_eq!(r.num_stream_threads, 4);
        assert_eq!(r.guarantee, crate::ProcessingGuarantee::ExactlyOnceV2);
        assert_eq!(r.commit_interval, std::time::Duration::from_millis(200));
        assert_eq!(r.cache_max_bytes, 52_428_800);
        assert_eq!(r.replication_factor, 3);
        assert_eq!(r.state_dir, PathBuf::from("/var/lib/kafka-streams"));
        assert_eq!(
            c.get("default.deserialization.exception.handler"),
            Some("log-and-continue")
        );
        assert_eq!(
            c.get("default.timestamp.extractor"),
            Some("org.apache.kafka.streams.processor.WallclockTimestampExtractor")
        );
        for client in [&r.consumer, &r.producer, &r.admin] {
            assert_eq!(
                client.get("security.protocol").map(String::as_str),
                Some("SASL_SSL")
            );
            assert_eq!(
                client.get("sasl.mechanisms").map(String::as_str),
                Some("SCRAM-SHA-512")
            );
            assert_eq!(
                client.get("sasl.username").map(String::as_str),
                Some("orders-app")
            );
            assert_eq!(
                client.get("sasl.password").map(String::as_str),
                Some("s3cr3t")
            );
            assert_eq!(
                client.get("ssl.ca.location").map(String::as_str),
                Some("/etc/kafka/ca.pem")
            );
        }
        assert_eq!(
            r.consumer.get("fetch.wait.max.ms").map(String::as_str),
            Some("250")
        );
        assert_eq!(
            r.consumer.get("session.timeout.ms").map(String::as_str),
            Some("45000")
        );
        assert_eq!(r.producer.get("linger.ms").map(String::as_str), Some("20"));
        assert_eq!(r.producer.get("session.timeout.ms"), None);
        assert_eq!(
            r.admin.get("request.timeout.ms").map(String::as_str),
            Some("60000")
        );

        let missing = StreamsConfig::from_properties_file(dir.path().join("nope.properties"))
            .expect_err("no file");
        assert!(missing.to_string().contains("nope.properties"), "{missing}");
    }

    #[test]
    fn latin1_files_are_read_as_java_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latin1.properties");
        std::fs::write(&path, b"application.id=caf\xe9\nclient.id=x\n").expect("write");
        let e = StreamsConfig::from_properties_file(&path)
            .expect_err("é is not a valid application.id");
        assert!(e.to_string().contains("latin1.properties:1"), "{e}");
        std::fs::write(&path, b"client.id=caf\xe9\n").expect("write");
        let c = StreamsConfig::from_properties_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.get("client.id"), Some("café"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC*") {
            let _ = parse("p", &text);
            let _ = StreamsConfig::from_properties_str(&text);
        }

        #[test]
        fn parsing_never_panics_on_properties_like_text(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("\\".to_owned()),
                    proptest::strategy::Just("\\u".to_owned()),
                    proptest::strategy::Just("\n".to_owned()),
                    proptest::strategy::Just("\r\n".to_owned()),
                    proptest::strategy::Just("=".to_owned()),
                    proptest::strategy::Just(":".to_owned()),
                    proptest::strategy::Just(" ".to_owned()),
                    proptest::strategy::Just("#".to_owned()),
                    proptest::strategy::Just("sasl.jaas.config=".to_owned()),
                    proptest::strategy::Just("consumer.".to_owned()),
                    "[a-z.\"; ]{0,8}",
                    "\\PC{0,3}",
                ],
                0..40,
            ).prop_map(|parts| parts.concat())
        ) {
            let _ = parse("p", &text);
            let _ = StreamsConfig::from_properties_str(&text);
        }

        #[test]
        fn escaped_keys_and_values_round_trip(key in "[^\r\n]{1,12}", value in "[^\r\n]{0,12}") {
            let escape = |s: &str, is_key: bool| -> String {
                let mut out = String::new();
                for (i, c) in s.chars().enumerate() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\x0c' => out.push_str("\\f"),
                        '=' | ':' | '#' | '!' => { out.push('\\'); out.push(c) }
                        ' ' if is_key || i == 0 => out.push_str("\\ "),
                        c => out.push(c),
                    }
                }
                out
            };
            let text = format!("{}={}", escape(&key, true), escape(&value, false));
            let parsed = parse("p", &text).expect("escaped text parses");
            proptest::prop_assert_eq!(parsed.len(), 1);
            proptest::prop_assert_eq!(&parsed[0].key, &key);
            proptest::prop_assert_eq!(&parsed[0].value, &value);
        }
    }
}
