//! Resets a kstreams application so that it reprocesses its input from scratch, like Kafka's
//! `kafka-streams-application-reset`.
//!
//! With every instance of the application stopped, it
//! 1. refuses if the application's consumer group still has members (classic or KIP-848
//!    protocol); `--force` does not override this (a running instance would commit over the
//!    reset); members of a crashed instance leave after their session timeout;
//! 2. sets the group's committed offsets of `--input-topics` to the earliest offsets (default),
//!    to the first offset at or after `--to-datetime`, or to `--to-offset` (clamped to each
//!    partition's range), and those of `--intermediate-topics` to their ends;
//! 3. deletes the application's internal topics: `<application.id>-...-changelog`,
//!    `<application.id>-...-repartition`, `<application.id>-kstreams-metadata` and
//!    `<application.id>-kstreams-control` (never a topic named in `--input-topics` or
//!    `--intermediate-topics`);
//! 4. removes the local state, `<state-dir>/<application.id>`, unless a process on this machine
//!    still holds one of its locks.
//!
//! `--dry-run` prints what it would do and changes nothing. Input or intermediate topics that do
//! not exist are an error unless `--force`, which skips them. `--config-file` takes a Kafka
//! Streams properties file (see `streams_core::properties`) for the clients' security settings,
//! `bootstrap.servers` and `state.dir`.
//!
//! ```sh
//! cargo run --example reset -- --application-id wordcount --bootstrap-servers 127.0.0.1:9092 \
//!     --input-topics streams-plaintext-input --state-dir /tmp/kstreams
//! ```

// A command-line tool prints what it does.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use kstreams::StreamsConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Resets a kstreams application: input offsets, internal topics, local state.
#[derive(Debug, Parser)]
#[command(name = "reset", version)]
#[command(group(ArgGroup::new("position").args(["to_earliest", "to_datetime", "to_offset"])))]
struct Args {
    /// The application.id of the application to reset.
    #[arg(long)]
    application_id: String,
    /// Kafka brokers (or bootstrap.servers in --config-file).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Input topics, comma-separated: their committed offsets are reset.
    #[arg(long, value_delimiter = ',')]
    input_topics: Vec<String>,
    /// User topics the application writes and reads back, comma-separated: their committed
    /// offsets move to the end.
    #[arg(long, value_delimiter = ',')]
    intermediate_topics: Vec<String>,
    /// Reset input offsets to the earliest offsets (the default).
    #[arg(long)]
    to_earliest: bool,
    /// Reset input offsets to the first record at or after this time (RFC 3339, e.g.
    /// 2026-01-01T00:00:00Z; without a zone, UTC).
    #[arg(long)]
    to_datetime: Option<String>,
    /// Reset input offsets to this offset (clamped to each partition's range).
    #[arg(long)]
    to_offset: Option<i64>,
    /// The application's state.dir: `<state-dir>/<application-id>` is removed (default:
    /// state.dir in --config-file, else kstreams' default).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Skip input and intermediate topics that do not exist instead of failing. It does not
    /// override the refusal while the group has members.
    #[arg(long)]
    force: bool,
    /// A Kafka Streams properties file with client settings (security, bootstrap.servers,
    /// state.dir).
    #[arg(long)]
    config_file: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reset: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where input offsets go.
#[derive(Debug, Clone, Copy)]
enum Position {
    Earliest,
    Time(i64),
    Offset(i64),
}

fn parse_datetime(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "--to-datetime `{text}` is not a date-time: use RFC 3339, e.g. 2026-01-01T00:00:00Z (without a zone, UTC)"
    ))
}

/// The clients' settings: `bootstrap.servers`, the consumer's and the admin client's
/// properties, and the state directory.
struct Clients {
    bootstrap: String,
    consumer: BTreeMap<String, String>,
    admin: BTreeMap<String, String>,
    state_dir: PathBuf,
}

fn clients(args: &Args) -> Result<Clients, BoxError> {
    let mut config = match &args.config_file {
        Some(path) => StreamsConfig::from_properties_file(path)?,
        None => StreamsConfig::default(),
    };
    if let Some(file_app) = config.get("application.id") {
        if file_app != args.application_id {
            return Err(format!(
                "--application-id `{}` differs from application.id `{file_app}` in the config file",
                args.application_id
            )
            .into());
        }
    }
    config.insert("application.id", &args.application_id);
    if let Some(bootstrap) = &args.bootstrap_servers {
        config.insert("bootstrap.servers", bootstrap);
    }
    if let Some(dir) = &args.state_dir {
        config.insert("state.dir", dir.display());
    }
    // Checks the application id (it names a directory that is removed) and every setting.
    let resolved = config.validate()?;
    let bootstrap = resolved
        .bootstrap_servers
        .clone()
        .ok_or("--bootstrap-servers (or bootstrap.servers in --config-file) is required")?;
    Ok(Clients {
        bootstrap,
        // A plain consumer of the group: the group's membership settings do not apply.
        consumer: resolved
            .consumer
            .iter()
            .filter(|(k, _)| !k.starts_with("group."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        admin: resolved.admin.clone(),
        state_dir: resolved.state_dir.join(&resolved.application_id),
    })
}

fn run(args: &Args) -> Result<(), BoxError> {
    let app = args.application_id.as_str();
    let position = match (args.to_datetime.as_deref(), args.to_offset) {
        (Some(t), _) => Position::Time(parse_datetime(t)?),
        (_, Some(o)) => Position::Offset(o),
        _ => Position::Earliest,
    };
    let clients = clients(args)?;
    let mut consumer_config = ClientConfig::new();
    consumer_config.set("bootstrap.servers", &clients.bootstrap);
    for (k, v) in &clients.consumer {
        consumer_config.set(k, v);
    }
    consumer_config
        .set("group.id", app)
        .set("client.id", format!("{app}-reset"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = consumer_config.create()?;
    let prefix = if args.dry_run { "would " } else { "" };

    // 1. No member may be left: its next commit would undo the reset.
    let members = active_members(&consumer, app)?;
    if !members.is_empty() {
        return Err(format!(
            "the consumer group `{app}` has active members ({}): stop every instance of the application first (a crashed instance's members leave after their session timeout). --force does not override this.",
            members.join(", ")
        )
        .into());
    }

    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let partitions: BTreeMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    let existing = |topics: &[String]| -> Result<Vec<(String, i32)>, BoxError> {
        let mut out = Vec::new();
        for topic in topics.iter().filter(|t| !t.trim().is_empty()) {
            match partitions.get(topic) {
                Some(n) => out.push((topic.clone(), *n)),
                None if args.force => println!("Topic `{topic}` does not exist; skipped (--force)."),
                None => {
                    return Err(format!(
                        "topic `{topic}` does not exist; nothing was changed (--force skips missing topics)"
                    )
                    .into())
                }
            }
        }
        Ok(out)
    };
    let inputs = existing(&args.input_topics)?;
    let intermediates = existing(&args.intermediate_topics)?;

    // 2. Committed offsets.
    let mut reset = TopicPartitionList::new();
    for (topic, count) in &inputs {
        for partition in 0..*count {
            let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            let offset = match position {
                Position::Earliest => low,
                Position::Offset(o) => o.clamp(low, high),
                Position::Time(ts) => {
                    let mut query = TopicPartitionList::new();
                    query.add_partition_offset(topic, partition, Offset::Offset(ts))?;
                    let found = consumer.offsets_for_times(query, TIMEOUT)?;
                    match found.find_partition(topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        // No record at or after the time: the end.
                        _ => high,
                    }
                }
            };
            reset.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
    }
    for (topic, count) in &intermediates {
        for partition in 0..*count {
            let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            reset.add_partition_offset(topic, partition, Offset::Offset(high))?;
        }
    }
    // The classic group listing does not show members of KIP-848 (`consumer` protocol) groups;
    // the broker does refuse a commit from outside the group while it has members, so
    // committing the offsets already committed (a no-op) finds them.
    let mut probe = reset.clone();
    for (topic, count) in &partitions {
        if is_internal(app, topic) && topic.ends_with("-repartition") {
            for partition in 0..*count {
                probe.add_partition(topic, partition);
            }
        }
    }
    let committed = consumer.committed_offsets(probe, TIMEOUT)?;
    let mut unchanged = TopicPartitionList::new();
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            unchanged.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))?;
        }
    }
    if unchanged.count() > 0 {
        commit(&consumer, app, &unchanged)?;
        println!("Consumer group `{app}` accepts commits from outside: no active members.");
    } else if args.dry_run {
        println!("Consumer group `{app}` has no committed offsets; members of a KIP-848 group can only be found by committing, which a dry run does not.");
    }
    for e in reset.elements() {
        let before = committed
            .find_partition(e.topic(), e.partition())
            .map(|c| c.offset());
        println!(
            "{prefix}reset offset of {}-{} to {} (committed: {})",
            e.topic(),
            e.partition(),
            show(e.offset()),
            before.map(show).unwrap_or_else(|| "none".to_owned())
        );
    }
    if !args.dry_run && reset.count() > 0 {
        commit(&consumer, app, &reset)?;
    }

    // 3. Internal topics (never a topic the user named).
    let named: Vec<&String> = args
        .input_topics
        .iter()
        .chain(&args.intermediate_topics)
        .collect();
    let internal: Vec<&String> = partitions
        .keys()
        .filter(|t| is_internal(app, t) && !named.contains(t))
        .collect();
    if internal.is_empty() {
        println!("No internal topics of `{app}` found.");
    }
    for topic in &internal {
        println!("{prefix}delete internal topic {topic}");
    }
    if !args.dry_run && !internal.is_empty() {
        let mut admin_config = ClientConfig::new();
        admin_config.set("bootstrap.servers", &clients.bootstrap);
        for (k, v) in &clients.admin {
            admin_config.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = admin_config.create()?;
        let names: Vec<&str> = internal.iter().map(|t| t.as_str()).collect();
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = futures::executor::block_on(admin.delete_topics(&names, &opts))?;
        for result in results {
            if let Err((topic, code)) = result {
                return Err(format!("deleting internal topic `{topic}` failed: {code}").into());
            }
        }
    }

    // 4. Local state.
    remove_state(&clients.state_dir, args.dry_run)?;
    if args.dry_run {
        println!("Dry run: nothing was changed.");
    } else {
        println!("Reset of `{app}` done.");
    }
    Ok(())
}

/// Commits `offsets` for group `app` from outside the group, which the broker refuses while the
/// group has members (of either protocol).
fn commit(
    consumer: &BaseConsumer,
    app: &str,
    offsets: &TopicPartitionList,
) -> Result<(), BoxError> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;
    match consumer.commit(offsets, CommitMode::Sync) {
        Ok(()) => Ok(()),
        Err(KafkaError::ConsumerCommit(
            code @ (Code::UnknownMemberId
            | Code::IllegalGeneration
            | Code::RebalanceInProgress
            | Code::StaleMemberEpoch
            | Code::FencedMemberEpoch),
        )) => Err(format!(
            "the consumer group `{app}` has active members (the broker refuses commits from outside the group: {code}): stop every instance of the application first (a crashed instance's members leave after their session timeout). --force does not override this."
        )
        .into()),
        Err(e) => Err(format!("committing offsets of group `{app}` failed: {e}").into()),
    }
}

fn show(offset: Offset) -> String {
    match offset {
        Offset::Offset(o) => o.to_string(),
        Offset::Invalid => "none".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether `topic` is one of application `app`'s internal topics.
fn is_internal(app: &str, topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix(app).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    rest == "kstreams-metadata"
        || rest == "kstreams-control"
        || (rest.len() > "-changelog".len() && rest.ends_with("-changelog"))
        || (rest.len() > "-repartition".len() && rest.ends_with("-repartition"))
}

/// The members of group `group`, as `member-id (client-id@host)`. Groups of both protocols
/// (classic and KIP-848's consumer protocol) are listed by the broker.
fn active_members(consumer: &BaseConsumer, group: &str) -> Result<Vec<String>, BoxError> {
    let list = consumer.fetch_group_list(Some(group), TIMEOUT)?;
    let mut members = Vec::new();
    for g in list.groups().iter().filter(|g| g.name() == group) {
        for m in g.members() {
            members.push(format!(
                "{} ({}@{})",
                m.id(),
                m.client_id(),
                m.client_host()
            ));
        }
        if members.is_empty() && !matches!(g.state(), "Empty" | "Dead" | "") {
            members.push(format!("state {}", g.state()));
        }
    }
    Ok(members)
}

/// Removes `dir` (the application's local state) unless a live process holds one of its locks.
fn remove_state(dir: &Path, dry_run: bool) -> Result<(), BoxError> {
    if !dir.exists() {
        println!("No local state at {}.", dir.display());
        return Ok(());
    }
    if let Some(locked) = locked_file(dir)? {
        return Err(format!(
            "{} is locked by a running process (an instance of the application on this machine); stop it first",
            locked.display()
        )
        .into());
    }
    if dry_run {
        println!("would remove local state {}", dir.display());
    } else {
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("removing local state {}: {e}", dir.display()))?;
        println!("removed local state {}", dir.display());
    }
    Ok(())
}

/// The first lock file (`.lock`, `.process.lock`) under `dir` that another process holds.
fn locked_file(dir: &Path) -> Result<Option<PathBuf>, BoxError> {
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n == ".lock" || n == ".process.lock")
            {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
                    return Ok(Some(path));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_topics_are_the_applications_own() {
        assert!(is_internal("app", "app-counts-changelog"));
        assert!(is_internal(
            "app",
            "app-KSTREAM-AGGREGATE-0000000003-repartition"
        ));
        assert!(is_internal("app", "app-kstreams-metadata"));
        assert!(is_internal("app", "app-kstreams-control"));
        assert!(!is_internal("app", "app-changelog"));
        assert!(!is_internal("app", "app2-counts-changelog"));
        assert!(!is_internal("app", "application-counts-changelog"));
        assert!(!is_internal("app", "other-app-counts-changelog"));
        assert!(!is_internal("app", "app-input"));
        assert!(!is_internal("app", "app-kstreams-metadata-x"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_datetime("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert_eq!(parse_datetime("1970-01-01T00:00:01.5"), Ok(1500));
        assert!(parse_datetime("yesterday").is_err());
    }
}
