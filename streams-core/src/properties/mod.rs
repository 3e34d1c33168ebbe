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

mod syntax;

pub use syntax::{parse, Property};

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
    crate::config::REPARTITION_PURGE_INTERVAL_MS,
    crate::config::METRICS_RECORDING_LEVEL,
    crate::config::DEAD_LETTER_QUEUE_TOPIC,
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
        "built.in.metrics.version" | "metrics.num.samples" | "metrics.sample.window.ms" | "metric.reporters" | "auto.include.jmx.reporter" => METRICS,
        "topology.optimization" => "kstreams does not rewrite topologies (Kafka Streams' `none`, which is accepted); remove it",
        "upgrade.from" => "there is no older kstreams rebalance protocol to upgrade from; remove it",
        "max.task.idle.ms" => "tasks do not idle waiting for data on their other inputs: they process what is buffered, earliest timestamp first; remove it",
        "task.timeout.ms" => "tasks do not retry timeouts for a bounded time: client errors go to the stream thread's error handling; remove it",
        "state.cleanup.delay.ms" => "the state of tasks that moved away is not cleaned up on a timer here; remove it",
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
mod tests;
