//! Physical topologies: the graph of sources, processors, sinks and state stores that tasks run.
//!
//! A [`TopologyBuilder`] takes nodes one at a time (the Processor API way to write an application,
//! and what the DSL compiles to) and checks each as it comes: names are unique, parents exist, and
//! a child accepts the key and value types its parents forward. [`TopologyBuilder::build`] then
//! splits the graph into sub-topologies: nodes connected by forwarding, or sharing a store, belong
//! together; repartition topics separate them. Each sub-topology runs as one task per partition of
//! its source topics.
//!
//! Internal topics (repartition and changelog) are named without the application id here; the
//! runtime prefixes `<application.id>-`.

mod describe;
mod nodes;
mod stores;

pub use describe::{NodeDescription, SubTopologyDescription, TopologyDescription};
pub use nodes::{OffsetReset, SinkSpec, SinkTopic, SourceSpec, TimestampExtractor, TopicChooser};
pub use stores::{StoreDef, StoreKind, Stores};

pub(crate) use nodes::{DecodeError, SinkFactory, SourceCodec, SourceDecoder};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::dynamic::TypeTag;
use crate::error::{Result, StreamsError};
use crate::processor::{ErasedProcessor, Processor, TypedProcessor};
use crate::serde_slot::DefaultSerdes;

/// Creates a processor for each task.
pub(crate) type ProcessorFactory = Arc<dyn Fn() -> Box<dyn ErasedProcessor> + Send + Sync>;

/// A topic as a source or sink names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicName {
    /// A user topic, by its full name.
    External(String),
    /// An internal topic, without the `<application.id>-` prefix.
    Internal(String),
}

impl TopicName {
    /// The full name for `application_id`.
    pub fn full(&self, application_id: &str) -> String {
        match self {
            TopicName::External(t) => t.clone(),
            TopicName::Internal(t) => format!("{application_id}-{t}"),
        }
    }

    /// The name as written in the topology.
    pub fn name(&self) -> &str {
        match self {
            TopicName::External(t) | TopicName::Internal(t) => t,
        }
    }
}

pub(crate) enum NodeKind {
    Source {
        topics: Vec<TopicName>,
        codec: Arc<dyn SourceCodec>,
        offset_reset: Option<OffsetReset>,
    },
    Processor {
        factory: ProcessorFactory,
    },
    Sink {
        factory: Arc<dyn SinkFactory>,
    },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    /// Key and value types it forwards (none for sinks).
    pub(crate) output: Option<(TypeTag, TypeTag)>,
    /// Stores it may use.
    pub(crate) stores: Vec<String>,
}

/// Builds a [`Topology`] node by node. See the [module docs](self).
///
/// ```
/// use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
/// use streams_core::record::Record;
/// use streams_core::topology::{SinkSpec, SourceSpec, TopologyBuilder};
/// use state_stores::Serdes;
///
/// struct Upper;
/// impl Processor<String, String, String, String> for Upper {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, String>) -> ProcessorResult {
///         let upper = r.value.to_uppercase();
///         ctx.forward(r.with_value(upper))
///     }
/// }
///
/// let mut b = TopologyBuilder::new();
/// b.add_source("in", &["lines"], SourceSpec::new(Serdes::string(), Serdes::string())).unwrap();
/// b.add_processor("upper", || Upper, &["in"]).unwrap();
/// b.add_sink("out", SinkSpec::new("shouted", Serdes::string(), Serdes::string()), &["upper"]).unwrap();
/// let topology = b.build().unwrap();
/// assert_eq!(topology.subtopologies().len(), 1);
/// ```
#[derive(Default)]
pub struct TopologyBuilder {
    nodes: Vec<NodeDef>,
    by_name: HashMap<String, usize>,
    stores: Vec<StoreDef>,
    /// Store name -> processors connected to it.
    store_users: BTreeMap<String, BTreeSet<usize>>,
    /// Partition counts requested for repartition topics.
    repartition_partitions: BTreeMap<String, i32>,
    /// Groups of processors whose inputs must be co-partitioned: `(what, processors)`.
    copartition: Vec<(String, Vec<usize>)>,
    /// Global stores and the topics they are read from.
    globals: Vec<GlobalStore>,
}

impl std::fmt::Debug for TopologyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .field(
                "stores",
                &self.stores.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TopologyBuilder {
    /// An empty topology.
    pub fn new() -> Self {
        TopologyBuilder::default()
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(StreamsError::topology(name, "node names must not be empty"));
        }
        if self.by_name.contains_key(name) {
            return Err(StreamsError::topology(
                name,
                "a node with this name exists already",
            ));
        }
        Ok(())
    }

    fn parents_of(&self, node: &str, parents: &[&str]) -> Result<Vec<usize>> {
        if parents.is_empty() {
            return Err(StreamsError::topology(node, "needs at least one parent"));
        }
        parents
            .iter()
            .map(|p| {
                let idx = *self.by_name.get(*p).ok_or_else(|| {
                    StreamsError::topology(node, format!("parent `{p}` does not exist"))
                })?;
                if self.nodes[idx].output.is_none() {
                    return Err(StreamsError::topology(
                        node,
                        format!("parent `{p}` is a sink and has no children"),
                    ));
                }
                Ok(idx)
            })
            .collect()
    }

    /// Checks that every parent forwards exactly `(key, value)`.
    fn check_input(
        &self,
        node: &str,
        parents: &[usize],
        key: TypeTag,
        value: TypeTag,
    ) -> Result<()> {
        for p in parents {
            if let Some((pk, pv)) = self.nodes[*p].output {
                if pk != key || pv != value {
                    return Err(StreamsError::topology(
                        node,
                        format!(
                            "accepts records of ({}, {}) but parent `{}` forwards ({}, {})",
                            key.name(),
                            value.name(),
                            self.nodes[*p].name,
                            pk.name(),
                            pv.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        name: &str,
        kind: NodeKind,
        parents: Vec<usize>,
        output: Option<(TypeTag, TypeTag)>,
    ) -> usize {
        let idx = self.nodes.len();
        for p in &parents {
            self.nodes[*p].children.push(idx);
        }
        self.nodes.push(NodeDef {
            name: name.to_owned(),
            kind,
            parents,
            children: Vec::new(),
            output,
            stores: Vec::new(),
        });
        self.by_name.insert(name.to_owned(), idx);
        idx
    }

    fn add_source_node<K, V>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        spec: SourceSpec<K, V>,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.check_new_name(name)?;
        if topics.is_empty() {
            return Err(StreamsError::topology(
                name,
                "a source needs at least one topic",
            ));
        }
        for topic in &topics {
            if topic.name().is_empty() {
                return Err(StreamsError::topology(
                    name,
                    "topic names must not be empty",
                ));
            }
            for other in &self.nodes {
                if let NodeKind::Source { topics: theirs, .. } = &other.kind {
                    if theirs.contains(topic) {
                        return Err(StreamsError::topology(
                            name,
                            format!(
                                "topic `{}` is already read by source `{}`",
                                topic.name(),
                                other.name
                            ),
                        ));
                    }
                }
            }
        }
        let offset_reset = spec.offset_reset;
        let types = (TypeTag::of::<K>(), TypeTag::of::<V>());
        self.push(
            name,
            NodeKind::Source {
                topics,
                codec: Arc::new(spec),
                offset_reset,
            },
            Vec::new(),
            Some(types),
        );
        Ok(self)
    }

    /// Adds a source reading `topics` (user topics, by full name).
    pub fn add_source<K, V>(
        &mut self,
        name: &str,
        topics: &[&str],
        spec: SourceSpec<K, V>,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let topics = topics
            .iter()
            .map(|t| TopicName::External((*t).to_owned()))
            .collect();
        self.add_source_node(name, topics, spec)
    }

    /// Adds a source reading the internal topic `<application.id>-<topic>` (a repartition topic
    /// that a sink of this topology writes).
    pub fn add_internal_source<K, V>(
        &mut self,
        name: &str,
        topic: &str,
        spec: SourceSpec<K, V>,
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.add_source_node(name, vec![TopicName::Internal(topic.to_owned())], spec)
    }

    /// Adds a processor fed by `parents`. `supplier` creates one processor per task.
    pub fn add_processor<KIn, VIn, KOut, VOut, P>(
        &mut self,
        name: &str,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        P: Processor<KIn, VIn, KOut, VOut> + 'static,
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + Send + 'static,
        VOut: Clone + Send + 'static,
    {
        self.check_new_name(name)?;
        let parents = self.parents_of(name, parents)?;
        self.check_input(name, &parents, TypeTag::of::<KIn>(), TypeTag::of::<VIn>())?;
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(TypedProcessor::<P, KIn, VIn, KOut, VOut> {
                inner: supplier(),
                _types: PhantomData,
            })
        });
        self.push(
            name,
            NodeKind::Processor { factory },
            parents,
            Some((TypeTag::of::<KOut>(), TypeTag::of::<VOut>())),
        );
        Ok(self)
    }

    /// Adds a sink fed by `parents`.
    pub fn add_sink<K, V>(
        &mut self,
        name: &str,
        spec: SinkSpec<K, V>,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        K: Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.check_new_name(name)?;
        if let SinkTopic::Fixed(t) | SinkTopic::Internal(t) = &spec.topic {
            if t.is_empty() {
                return Err(StreamsError::topology(
                    name,
                    "topic names must not be empty",
                ));
            }
        }
        let parents = self.parents_of(name, parents)?;
        self.check_input(name, &parents, TypeTag::of::<K>(), TypeTag::of::<V>())?;
        self.push(
            name,
            NodeKind::Sink {
                factory: Arc::new(spec),
            },
            parents,
            None,
        );
        Ok(self)
    }

    /// Asks for `partitions` partitions for the internal topic `topic` (default: as many as the
    /// sub-topology writing to it has tasks).
    pub fn set_internal_topic_partitions(
        &mut self,
        topic: &str,
        partitions: i32,
    ) -> Result<&mut Self> {
        if partitions < 1 {
            return Err(StreamsError::topology(
                topic,
                "an internal topic needs at least one partition",
            ));
        }
        self.repartition_partitions
            .insert(topic.to_owned(), partitions);
        Ok(self)
    }

    /// Adds a state store and connects it to `processors`.
    pub fn add_state_store(&mut self, store: StoreDef, processors: &[&str]) -> Result<&mut Self> {
        state_stores::state_dir::validate_name("store name", &store.name)
            .map_err(|reason| StreamsError::topology(&store.name, reason))?;
        if self.stores.iter().any(|s| s.name == store.name) {
            return Err(StreamsError::topology(
                &store.name,
                "a store with this name exists already",
            ));
        }
        let name = store.name.clone();
        self.stores.push(store);
        self.store_users.entry(name.clone()).or_default();
        self.connect_processor_and_stores_inner(processors, &name)?;
        Ok(self)
    }

    /// Adds a global store: a key-value store holding every partition of `topic` (its key and
    /// value bytes as the topic has them; a null value deletes the key, null keys are skipped),
    /// replicated in full on every instance and kept up to date by the instance's global thread.
    /// The topic is its changelog, so the store is never logged or cached. Processors connected
    /// to it (with [`connect_processor_and_stores`](Self::connect_processor_and_stores)) read it
    /// from any task and must not write it; it joins no sub-topology.
    pub fn add_global_store(&mut self, store: StoreDef, topic: &str) -> Result<&mut Self> {
        state_stores::state_dir::validate_name("store name", &store.name)
            .map_err(|reason| StreamsError::topology(&store.name, reason))?;
        if !matches!(store.kind, StoreKind::KeyValue) {
            return Err(StreamsError::topology(
                &store.name,
                "a global store must be a key-value store",
            ));
        }
        if self.stores.iter().any(|s| s.name == store.name) {
            return Err(StreamsError::topology(
                &store.name,
                "a store with this name exists already",
            ));
        }
        if let Some(other) = self.globals.iter().find(|g| g.topic == topic) {
            return Err(StreamsError::topology(
                &store.name,
                format!(
                    "topic `{topic}` is read by global store `{}` already; share that global table",
                    other.store
                ),
            ));
        }
        let store = store.without_logging().without_caching();
        self.globals.push(GlobalStore {
            store: store.name.clone(),
            topic: topic.to_owned(),
        });
        self.stores.push(store);
        Ok(self)
    }

    fn is_global(&self, store: &str) -> bool {
        self.globals.iter().any(|g| g.store == store)
    }

    /// Lets `processor` use stores added with [`add_state_store`](Self::add_state_store) or
    /// [`add_global_store`](Self::add_global_store).
    pub fn connect_processor_and_stores(
        &mut self,
        processor: &str,
        stores: &[&str],
    ) -> Result<&mut Self> {
        for store in stores {
            if !self.store_users.contains_key(*store) && !self.is_global(store) {
                return Err(StreamsError::topology(
                    *store,
                    format!("no such store (connecting it to `{processor}`)"),
                ));
            }
            self.connect_processor_and_stores_inner(&[processor], store)?;
        }
        Ok(self)
    }

    fn connect_processor_and_stores_inner(
        &mut self,
        processors: &[&str],
        store: &str,
    ) -> Result<()> {
        for p in processors {
            let idx = *self.by_name.get(*p).ok_or_else(|| {
                StreamsError::topology(store, format!("processor `{p}` does not exist"))
            })?;
            if !matches!(self.nodes[idx].kind, NodeKind::Processor { .. }) {
                return Err(StreamsError::topology(
                    *p,
                    format!("only processors can use stores (store `{store}`)"),
                ));
            }
            // A global store belongs to no task: its users stay in their own sub-topologies.
            if !self.is_global(store) {
                self.store_users
                    .entry(store.to_owned())
                    .or_default()
                    .insert(idx);
            }
            if !self.nodes[idx].stores.iter().any(|s| s == store) {
                self.nodes[idx].stores.push(store.to_owned());
            }
        }
        Ok(())
    }

    /// Requires the source topics upstream of `processors` (the inputs of a join, named `what`
    /// in errors) to have the same number of partitions, checked when the application starts.
    /// Repartition topics among them get the partition count of the user topics among them.
    pub fn copartition(&mut self, what: &str, processors: &[&str]) -> Result<&mut Self> {
        let nodes = processors
            .iter()
            .map(|p| {
                self.by_name.get(*p).copied().ok_or_else(|| {
                    StreamsError::topology(what, format!("co-partitions unknown node `{p}`"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.copartition.push((what.to_owned(), nodes));
        Ok(self)
    }

    /// The source topics upstream of `nodes`, in the order found.
    fn upstream_topics(&self, nodes: &[usize]) -> Vec<TopicName> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = nodes.to_vec();
        let mut topics: Vec<TopicName> = Vec::new();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let node = &self.nodes[n];
            if let NodeKind::Source { topics: ts, .. } = &node.kind {
                for t in ts {
                    if !topics.contains(t) {
                        topics.push(t.clone());
                    }
                }
            }
            stack.extend(node.parents.iter().rev());
        }
        topics
    }

    /// Validates the whole graph and splits it into sub-topologies.
    pub fn build(self) -> Result<Topology> {
        if self.nodes.is_empty() {
            return Err(StreamsError::topology(
                "topology",
                "has no nodes; add a source",
            ));
        }
        for (name, users) in &self.store_users {
            if users.is_empty() {
                return Err(StreamsError::topology(name, "no processor uses this store"));
            }
        }

        // Union-find: forwarding edges and shared stores join nodes into sub-topologies.
        let mut group: Vec<usize> = (0..self.nodes.len()).collect();
        fn find(group: &mut [usize], mut i: usize) -> usize {
            while group[i] != i {
                group[i] = group[group[i]];
                i = group[i];
            }
            i
        }
        fn union(group: &mut [usize], a: usize, b: usize) {
            let (ra, rb) = (find(group, a), find(group, b));
            if ra != rb {
                group[ra.max(rb)] = ra.min(rb);
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for p in &node.parents {
                union(&mut group, i, *p);
            }
        }
        for users in self.store_users.values() {
            let mut it = users.iter();
            if let Some(first) = it.next() {
                for other in it {
                    union(&mut group, *first, *other);
                }
            }
        }

        // Number sub-topologies by their first node (creation order), so the same code builds
        // the same numbering every time.
        let mut roots: Vec<usize> = Vec::new();
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            let root = find(&mut group, i);
            if !members.contains_key(&root) {
                roots.push(root);
            }
            members.entry(root).or_default().push(i);
        }
        let mut subtopologies = Vec::new();
        let mut node_subtopology = vec![0u32; self.nodes.len()];
        for (id, root) in roots.iter().enumerate() {
            let nodes = members.remove(root).unwrap_or_default();
            for n in &nodes {
                node_subtopology[*n] = id as u32;
            }
            let mut source_topics = Vec::new();
            let mut sink_topics = Vec::new();
            let mut store_names = BTreeSet::new();
            for n in &nodes {
                let node = &self.nodes[*n];
                match &node.kind {
                    NodeKind::Source { topics, .. } => source_topics.extend(topics.iter().cloned()),
                    NodeKind::Sink { factory } => {
                        if let Some(t) = factory.topic() {
                            sink_topics.push(if factory.is_internal() {
                                TopicName::Internal(t.to_owned())
                            } else {
                                TopicName::External(t.to_owned())
                            });
                        }
                    }
                    NodeKind::Processor { .. } => {}
                }
                store_names.extend(
                    node.stores
                        .iter()
                        .filter(|s| !self.globals.iter().any(|g| &g.store == *s))
                        .cloned(),
                );
            }
            if let Some(global) = self.globals.iter().find(|g| {
                source_topics
                    .iter()
                    .any(|t| matches!(t, TopicName::External(name) if *name == g.topic))
            }) {
                return Err(StreamsError::topology(
                    &global.store,
                    format!(
                        "topic `{}` is read by this global store and by a stream or table source; \
                         a topic can only be one of them",
                        global.topic
                    ),
                ));
            }
            if source_topics.is_empty() {
                return Err(StreamsError::topology(
                    &self.nodes[nodes[0]].name,
                    "belongs to a sub-topology without a source",
                ));
            }
            subtopologies.push(SubTopology {
                id: id as u32,
                nodes,
                source_topics,
                sink_topics,
                stores: store_names.into_iter().collect(),
            });
        }

        // Internal topics: repartition topics (written by a sink, read by a source) and
        // changelogs of logged stores.
        let mut internal_topics = Vec::new();
        for sub in &subtopologies {
            for topic in &sub.source_topics {
                if let TopicName::Internal(name) = topic {
                    let writer = subtopologies
                        .iter()
                        .find(|s| s.sink_topics.contains(topic))
                        .map(|s| s.id)
                        .ok_or_else(|| {
                            StreamsError::topology(
                                name,
                                "an internal topic is read but no sink writes to it",
                            )
                        })?;
                    internal_topics.push(InternalTopic {
                        name: name.clone(),
                        kind: InternalTopicKind::Repartition {
                            writer,
                            reader: sub.id,
                            partitions: self.repartition_partitions.get(name).copied(),
                        },
                    });
                }
            }
        }
        for sub in &subtopologies {
            for topic in &sub.sink_topics {
                if let TopicName::Internal(name) = topic {
                    if !internal_topics.iter().any(|t| &t.name == name) {
                        return Err(StreamsError::topology(
                            name,
                            "an internal topic is written but no source reads it",
                        ));
                    }
                }
            }
        }
        for store in &self.stores {
            if store.logging {
                let users = self
                    .store_users
                    .get(&store.name)
                    .cloned()
                    .unwrap_or_default();
                let sub = users
                    .iter()
                    .next()
                    .map(|n| node_subtopology[*n])
                    .unwrap_or(0);
                internal_topics.push(InternalTopic {
                    name: store.changelog_suffix(),
                    kind: InternalTopicKind::Changelog {
                        store: store.name.clone(),
                        subtopology: sub,
                        config: store.changelog_config(),
                    },
                });
            }
        }

        let copartition_groups = self
            .copartition
            .iter()
            .map(|(what, nodes)| CopartitionGroup {
                what: what.clone(),
                topics: self.upstream_topics(nodes),
            })
            .collect();
        Ok(Topology {
            nodes: self.nodes,
            stores: self.stores,
            subtopologies,
            internal_topics,
            copartition_groups,
            globals: self.globals,
        })
    }
}

/// A sub-topology: nodes that run together in one task per input partition.
#[derive(Debug, Clone)]
pub struct SubTopology {
    pub(crate) id: u32,
    /// Node indices in creation order (parents before children).
    pub(crate) nodes: Vec<usize>,
    pub(crate) source_topics: Vec<TopicName>,
    pub(crate) sink_topics: Vec<TopicName>,
    pub(crate) stores: Vec<String>,
}

impl SubTopology {
    /// The sub-topology's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The topics it reads.
    pub fn source_topics(&self) -> &[TopicName] {
        &self.source_topics
    }

    /// The fixed topics it writes.
    pub fn sink_topics(&self) -> &[TopicName] {
        &self.sink_topics
    }

    /// Its state stores.
    pub fn stores(&self) -> &[String] {
        &self.stores
    }
}

/// What an internal topic is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalTopicKind {
    /// Carries re-keyed records from one sub-topology to another.
    Repartition {
        /// The sub-topology that writes it.
        writer: u32,
        /// The sub-topology that reads it.
        reader: u32,
        /// Requested partition count; by default, the writer's task count.
        partitions: Option<i32>,
    },
    /// A store's changelog (compacted, and for window and session stores also deleted after
    /// their retention; as many partitions as its sub-topology has tasks).
    Changelog {
        /// The store.
        store: String,
        /// The sub-topology whose tasks own the store.
        subtopology: u32,
        /// Extra topic configs.
        config: BTreeMap<String, String>,
    },
}

/// A topic the application creates and owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// The name without the `<application.id>-` prefix.
    pub name: String,
    /// What it is for.
    pub kind: InternalTopicKind,
}

/// Topics that must have the same number of partitions: the inputs of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopartitionGroup {
    /// What needs them co-partitioned (a join's name).
    pub what: String,
    /// The topics.
    pub topics: Vec<TopicName>,
}

/// A validated topology, ready to run in the test driver or on Kafka. Cheap to share (`Arc`).
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: Vec<StoreDef>,
    pub(crate) subtopologies: Vec<SubTopology>,
    pub(crate) internal_topics: Vec<InternalTopic>,
    pub(crate) copartition_groups: Vec<CopartitionGroup>,
    pub(crate) globals: Vec<GlobalStore>,
}

/// A global store and the topic it is read from; see
/// [`TopologyBuilder::add_global_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStore {
    /// The store's name.
    pub store: String,
    /// The (user) topic it holds, every partition of it.
    pub topic: String,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    /// The sub-topologies, numbered from 0.
    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.subtopologies
    }

    /// Groups of topics that must be co-partitioned (join inputs).
    pub fn copartition_groups(&self) -> &[CopartitionGroup] {
        &self.copartition_groups
    }

    /// Internal (repartition and changelog) topics.
    pub fn internal_topics(&self) -> &[InternalTopic] {
        &self.internal_topics
    }

    /// The global stores and their topics.
    pub fn global_stores(&self) -> &[GlobalStore] {
        &self.globals
    }

    /// The user topics the topology reads (those of global stores included).
    pub fn external_source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter())
            .filter_map(|t| match t {
                TopicName::External(t) => Some(t.clone()),
                TopicName::Internal(_) => None,
            })
            .chain(self.globals.iter().map(|g| g.topic.clone()))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The store definitions.
    pub fn stores(&self) -> &[StoreDef] {
        &self.stores
    }

    /// A store's definition.
    pub fn store(&self, name: &str) -> Option<&StoreDef> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// Checks that every serde the topology needs resolves against `defaults` (explicit ones, or
    /// defaults of the right type), naming the first node or store that does not.
    pub fn check_serdes(&self, defaults: &DefaultSerdes) -> Result<()> {
        for node in &self.nodes {
            match &node.kind {
                NodeKind::Source { codec, .. } => {
                    codec.resolve(defaults, &node.name)?;
                }
                NodeKind::Sink { factory } => {
                    factory.create(defaults, "check", &node.name)?;
                }
                NodeKind::Processor { .. } => {}
            }
        }
        for store in &self.stores {
            store.serdes.resolve(defaults, &store.name)?;
        }
        Ok(())
    }

    /// Source topics (full names) whose source sets its own `auto.offset.reset`.
    pub fn offset_resets(
        &self,
        application_id: &str,
    ) -> std::collections::HashMap<String, OffsetReset> {
        let mut resets = std::collections::HashMap::new();
        for node in &self.nodes {
            if let NodeKind::Source {
                topics,
                offset_reset: Some(reset),
                ..
            } = &node.kind
            {
                for t in topics {
                    resets.insert(t.full(application_id), *reset);
                }
            }
        }
        resets
    }

    /// The sub-topology reading `topic` (full name for `application_id`).
    pub fn subtopology_reading(&self, topic: &str, application_id: &str) -> Option<u32> {
        self.subtopologies
            .iter()
            .find(|s| {
                s.source_topics
                    .iter()
                    .any(|t| t.full(application_id) == topic)
            })
            .map(|s| s.id)
    }
}
