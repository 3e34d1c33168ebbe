//! Source topic checks and internal topic creation, done once before stream threads start.
//!
//! Every user source topic must exist. Each sub-topology runs as many tasks as its source topics
//! have partitions, and those counts must agree (co-partitioning); for the inputs of a join
//! (`Topology::copartition_groups`) the error names the join and every input topic with its
//! count. A repartition topic gets the partition count of the user topics it is joined with, else
//! the task count of the sub-topology that writes it (unless the topology asks for a number); a
//! changelog gets the task count of the sub-topology owning its store and is compacted (window and
//! session changelogs are also deleted after their retention: `StoreDef::changelog_config`). Internal
//! topics that exist already are kept if their partition count is right, which is what lets a
//! restarted application carry on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::client_log::{RecordingContext, TracingContext};
use crate::config::ResolvedConfig;
use crate::error::{Result, StreamsError};
use crate::topology::{InternalTopicKind, TopicName, Topology};

const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Partition counts the application runs with.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicPlan {
    /// Tasks per sub-topology (its partition count).
    pub(crate) tasks: Vec<i32>,
}

fn metadata(consumer: &BaseConsumer<RecordingContext>) -> Result<HashMap<String, i32>> {
    let md = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| {
            // A transport failure says nothing of its cause; the client's log does. Its log
            // lines and errors wait in the client's queue: serve them (nothing is subscribed,
            // so no record comes out).
            for _ in 0..100 {
                if consumer.poll(Duration::ZERO).is_none() {
                    break;
                }
            }
            let context = match consumer.context().last_failure() {
                Some(why) => format!("fetching cluster metadata (the client reported: {why})"),
                None => "fetching cluster metadata".to_owned(),
            };
            StreamsError::kafka(context, e)
        })?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

pub(crate) fn client_config(
    config: &ResolvedConfig,
    extra: &BTreeMap<String, String>,
) -> Result<ClientConfig> {
    let bootstrap = config.bootstrap_servers.as_deref().ok_or_else(|| {
        StreamsError::config(
            crate::config::BOOTSTRAP_SERVERS,
            "is required to run on Kafka",
        )
    })?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in config.client_security.iter().chain(extra) {
        c.set(k, v);
    }
    Ok(c)
}

/// The partition count of the user topics co-partitioned with the internal topic `name` (the
/// largest, if they disagree: the co-partitioning check then reports them).
fn copartitioned_count(
    topology: &Topology,
    app: &str,
    name: &str,
    known: &HashMap<String, i32>,
) -> Option<i32> {
    topology
        .copartition_groups()
        .iter()
        .filter(|g| {
            g.topics
                .iter()
                .any(|t| matches!(t, TopicName::Internal(n) if n == name))
        })
        .flat_map(|g| g.topics.iter())
        .filter(|t| matches!(t, TopicName::External(_)))
        .filter_map(|t| known.get(&t.full(app)).copied())
        .max()
}

/// Reports the first join whose input topics have different partition counts, naming them all.
fn check_copartitioning(
    topology: &Topology,
    app: &str,
    known: &HashMap<String, i32>,
) -> Result<()> {
    for group in topology.copartition_groups() {
        let counts: Vec<(String, i32)> = group
            .topics
            .iter()
            .filter_map(|t| {
                let full = t.full(app);
                known.get(&full).map(|c| (full, *c))
            })
            .collect();
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let listed: Vec<String> = counts
                .iter()
                .map(|(t, c)| format!("`{t}` has {c}"))
                .collect();
            return Err(StreamsError::topology(
                &group.what,
                format!(
                    "a join needs its input topics co-partitioned (the same number of partitions, keys partitioned alike), but {}; recreate a topic with the other's count, or repartition the stream side with `KStream::repartition` and `Repartitioned::with_partitions`",
                    listed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Checks source topics, computes partition counts, and creates missing internal topics (with
/// the application's control topic when `control`; see `runtime::control`).
pub(crate) fn prepare(
    topology: &Topology,
    config: &ResolvedConfig,
    control: bool,
) -> Result<TopicPlan> {
    let app = &config.application_id;
    let consumer: BaseConsumer<RecordingContext> = client_config(config, &config.consumer)?
        .create_with_context(RecordingContext::default())
        .map_err(|e| StreamsError::kafka("creating the metadata client", e))?;
    let existing = metadata(&consumer)?;

    let missing: Vec<String> = topology
        .external_source_topics()
        .into_iter()
        .filter(|t| !existing.contains_key(t))
        .collect();
    if !missing.is_empty() {
        return Err(StreamsError::MissingSourceTopics { topics: missing });
    }

    // Partition counts: user topics are known; repartition topics follow their writer.
    let mut known: HashMap<String, i32> = HashMap::new();
    for sub in topology.subtopologies() {
        for t in sub.source_topics() {
            if let TopicName::External(name) = t {
                known.insert(name.clone(), existing[name]);
            }
        }
    }
    let mut tasks: Vec<Option<i32>> = vec![None; topology.subtopologies().len()];
    loop {
        let mut progress = false;
        for internal in topology.internal_topics() {
            if let InternalTopicKind::Repartition {
                writer, partitions, ..
            } = &internal.kind
            {
                let full = format!("{app}-{}", internal.name);
                if known.contains_key(&full) {
                    continue;
                }
                // In a join's input, as many partitions as the join's user topics (Kafka
                // Streams' co-partitioning enforcement); else as the writer has tasks.
                let count = partitions
                    .or_else(|| copartitioned_count(topology, app, &internal.name, &known))
                    .or(tasks[*writer as usize]);
                if let Some(count) = count {
                    known.insert(full, count);
                    progress = true;
                }
            }
        }
        for sub in topology.subtopologies() {
            if tasks[sub.id() as usize].is_some() {
                continue;
            }
            let counts: Option<Vec<(String, i32)>> = sub
                .source_topics()
                .iter()
                .map(|t| {
                    let full = t.full(app);
                    known.get(&full).map(|c| (full, *c))
                })
                .collect();
            if let Some(counts) = counts {
                let first = counts[0].1;
                if let Some((topic, count)) = counts.iter().find(|(_, c)| *c != first) {
                    check_copartitioning(topology, app, &known)?;
                    return Err(StreamsError::topology(
                        format!("sub-topology {}", sub.id()),
                        format!(
                            "its source topics must have the same number of partitions (co-partitioning): `{}` has {first}, `{topic}` has {count}",
                            counts[0].0
                        ),
                    ));
                }
                tasks[sub.id() as usize] = Some(first);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let tasks: Vec<i32> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| {
                StreamsError::topology(
                    format!("sub-topology {i}"),
                    "cannot derive its partition count",
                )
            })
        })
        .collect::<Result<_>>()?;

    // Internal topics: check the existing ones, create the others.
    let mut to_create: Vec<(String, i32, BTreeMap<String, String>)> = Vec::new();
    for internal in topology.internal_topics() {
        let full = format!("{app}-{}", internal.name);
        let (count, config) = match &internal.kind {
            InternalTopicKind::Repartition { .. } => {
                let mut c = BTreeMap::new();
                // Kafka Streams' repartition topic settings: records are kept until the
                // application purges what it committed (`runtime::purge`), in 50 MB segments so
                // that purged ones are dropped soon.
                c.insert("cleanup.policy".to_owned(), "delete".to_owned());
                c.insert("segment.bytes".to_owned(), "52428800".to_owned());
                c.insert("retention.ms".to_owned(), "-1".to_owned());
                c.insert("message.timestamp.type".to_owned(), "CreateTime".to_owned());
                (known[&full], c)
            }
            InternalTopicKind::Changelog {
                subtopology,
                config,
                ..
            } => {
                let mut c = BTreeMap::new();
                c.insert("cleanup.policy".to_owned(), "compact".to_owned());
                c.insert("message.timestamp.type".to_owned(), "CreateTime".to_owned());
                c.extend(config.clone());
                (tasks[*subtopology as usize], c)
            }
        };
        match existing.get(&full) {
            Some(actual) if *actual == count => {}
            Some(actual) => {
                return Err(StreamsError::topology(
                    &full,
                    format!(
                        "the internal topic exists with {actual} partitions but the application needs {count}; delete it (and the application's state) or restore the source topics' partition counts"
                    ),
                ))
            }
            None => to_create.push((full, count, config)),
        }
    }
    if control {
        let name = super::control::topic(app);
        if !existing.contains_key(&name) {
            let mut c = BTreeMap::new();
            c.insert("cleanup.policy".to_owned(), "delete".to_owned());
            c.insert("retention.ms".to_owned(), "86400000".to_owned());
            to_create.push((name, 1, c));
        }
    }
    if config.application_server.is_some() {
        let name = super::metadata::topic(app);
        if !existing.contains_key(&name) {
            let mut c = BTreeMap::new();
            c.insert("cleanup.policy".to_owned(), "compact".to_owned());
            to_create.push((name, 1, c));
        }
    }
    if !to_create.is_empty() {
        create(config, &to_create)?;
        wait_for(&consumer, &to_create)?;
    }
    Ok(TopicPlan { tasks })
}

fn create(
    config: &ResolvedConfig,
    topics: &[(String, i32, BTreeMap<String, String>)],
) -> Result<()> {
    if let Some(embedded) = &config.embedded {
        for (name, partitions, _) in topics {
            match embedded.create_topic(name, *partitions) {
                Ok(()) => {
                    tracing::info!(topic = %name, partitions, "created internal topic (embedded)")
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    let admin: AdminClient<TracingContext> = client_config(config, &config.admin)?
        .create_with_context(TracingContext)
        .map_err(|e| StreamsError::kafka("creating the admin client", e))?;
    let replication = config.replication_factor;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, topic_config)| {
            topic_config.iter().fold(
                NewTopic::new(name, *partitions, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics(&new_topics, &options));
    // Dropping an admin client joins its polling thread, which wakes every 100 ms: that wait
    // was half of an instance's start-up. Nothing depends on it, so it happens off this path.
    if let Err(e) = std::thread::Builder::new()
        .name("kstreams-admin-drop".into())
        .spawn(move || drop(admin))
    {
        tracing::debug!(error = %e, "dropping the admin client in place");
    }
    let results = results.map_err(|e| StreamsError::kafka("creating internal topics", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "created internal topic"),
            // Another instance created it first.
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "internal topic exists")
            }
            Err((topic, code)) => {
                return Err(StreamsError::topology(
                    &topic,
                    format!("creating the internal topic failed: {code}"),
                ))
            }
        }
    }
    Ok(())
}

fn wait_for(
    consumer: &BaseConsumer<RecordingContext>,
    topics: &[(String, i32, BTreeMap<String, String>)],
) -> Result<()> {
    let deadline = Instant::now() + METADATA_TIMEOUT;
    // Created topics usually show up within milliseconds: look again soon, then less often
    // (a fixed 100 ms added that much to every start that created a topic).
    let mut pause = Duration::from_millis(5);
    loop {
        let existing = metadata(consumer)?;
        let pending: Vec<&String> = topics
            .iter()
            .filter(|(name, partitions, _)| existing.get(name) != Some(partitions))
            .map(|(name, _, _)| name)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StreamsError::Fatal(format!(
                "internal topics {pending:?} did not appear in the cluster metadata within {METADATA_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
