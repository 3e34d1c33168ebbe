//! What the examples (and the integration tests that drive them) share: the word-count
//! topology and logging set-up.
#![allow(dead_code)]

use kstreams::prelude::*;

/// Kafka's WordCountDemo rule: lowercase the line, split it on runs of characters that are not
/// ASCII letters, digits or underscore, drop empty words.
pub fn words(line: &str) -> Vec<String> {
    line.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word count: lines (value; key ignored) from `input`, running counts per word to `output`
/// (key: the word as UTF-8; value: the count as an 8-byte big-endian signed integer, Kafka's
/// `LongSerializer` format). A null line yields no words.
pub fn word_count_topology(input: &str, output: &str) -> kstreams::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<(), Option<String>>(
            input,
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| line.as_deref().map(words).unwrap_or_default())
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(Materialized::as_("counts"))
        .to_stream()
        .to(
            output,
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    builder.build()
}

/// Logs to stderr: `RUST_LOG` if set, else `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
