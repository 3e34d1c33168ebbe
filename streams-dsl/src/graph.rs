//! The logical graph the DSL builds, and the one step that compiles it into a physical
//! [`Topology`].
//!
//! DSL calls append nodes (a closed set of kinds) in creation order, so parents always precede
//! children. [`Graph::compile`] walks them once: it tracks whether the key may have changed on
//! the way to each node, inserts a repartition topic in front of a stateful node whose input key
//! changed (or that always needs one, like a table re-grouping), and maps every node kind to its
//! physical processors in one `match`. Names are fixed when the DSL call is made (a counter in
//! call order, or the user's), so building the same code again yields the same topology.

use std::collections::{BTreeMap, BTreeSet};

use streams_core::error::{Result, StreamsError};
use streams_core::topology::{StoreDef, Topology, TopologyBuilder};

/// Adds one node's physical processor(s): `(builder, name, parents)`.
pub(crate) type AddFn = Box<dyn Fn(&mut TopologyBuilder, &str, &[&str]) -> Result<()>>;

/// Adds a repartition's physical nodes: `(builder, plan, parents)`.
pub(crate) type AddRepartitionFn =
    Box<dyn Fn(&mut TopologyBuilder, &RepartitionPlan, &[&str]) -> Result<()>>;

/// A repartition through an internal topic, with its node names reserved.
pub(crate) struct RepartitionPlan {
    /// The internal topic, without the application id: `<base>-repartition`.
    pub(crate) topic: String,
    pub(crate) sink: String,
    pub(crate) source: String,
    pub(crate) partitions: Option<i32>,
    /// Adds sink and source under the names above, the sink fed by the given parents.
    pub(crate) add: AddRepartitionFn,
}

/// When a stateful node needs its input repartitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepartitionWhen {
    /// If an operator upstream may have changed the key.
    KeyChanged,
    /// Always (a table grouped by a new key).
    Always,
}

pub(crate) enum NodeKind {
    Source {
        add: AddFn,
    },
    /// A stateless processor, or one with user stores.
    Processor {
        add: AddFn,
        changes_key: bool,
        stores: Vec<String>,
    },
    /// An aggregation or table materialization.
    Stateful {
        add: AddFn,
        stores: Vec<String>,
        repartition: Option<(RepartitionWhen, RepartitionPlan)>,
    },
    /// An explicit repartition.
    Repartition(RepartitionPlan),
    /// A repartition only if an operator upstream may have changed the key (each input of a
    /// join); otherwise the records pass straight through.
    RepartitionIfKeyChanged(RepartitionPlan),
    Sink {
        add: AddFn,
    },
    /// A global table: its store, read from `topic` by the global thread; no physical node.
    GlobalTable {
        topic: String,
        store: String,
    },
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) parents: Vec<usize>,
    pub(crate) kind: NodeKind,
}

/// The DSL's logical graph.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    counter: usize,
    pub(crate) stores: BTreeMap<String, StoreDef>,
    names: BTreeSet<String>,
    /// Errors found while the DSL was called, reported by `build`.
    deferred: Vec<StreamsError>,
    /// Windowed aggregation nodes, and when their windows close.
    pub(crate) window_closing: BTreeMap<usize, WindowClosing>,
    /// Joins: their name and the nodes reading their inputs, whose source topics must be
    /// co-partitioned.
    pub(crate) copartition: Vec<(String, Vec<usize>)>,
}

/// When the windows of a windowed aggregation close, as `suppress(until_window_closes)`
/// downstream needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowClosing {
    /// How long after a window's end it closes (the grace period; plus the gap, for sessions).
    pub(crate) grace: i64,
    /// Whether window ends are inclusive (sliding and session windows): such a window is still
    /// open when stream time minus the grace equals its end.
    pub(crate) inclusive_end: bool,
}

impl Graph {
    /// The next generated name with `prefix` (`KSTREAM-FILTER-0000000003`).
    pub(crate) fn next_name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}{:010}", self.counter);
        self.counter += 1;
        name
    }

    /// `named`, or the next generated name with `prefix`.
    pub(crate) fn name_or(&mut self, named: Option<String>, prefix: &str) -> String {
        match named {
            Some(name) => {
                self.counter += 1;
                name
            }
            None => self.next_name(prefix),
        }
    }

    pub(crate) fn push(&mut self, name: String, parents: Vec<usize>, kind: NodeKind) -> usize {
        self.names.insert(name.clone());
        self.nodes.push(Node {
            name,
            parents,
            kind,
        });
        self.nodes.len() - 1
    }

    /// Registers a store definition (from `Materialized` or `add_state_store`).
    pub(crate) fn add_store(&mut self, store: StoreDef) -> Result<()> {
        if self.stores.contains_key(store.name()) {
            return Err(StreamsError::topology(
                store.name(),
                "a store with this name exists already",
            ));
        }
        self.stores.insert(store.name().to_owned(), store);
        Ok(())
    }

    /// Records a problem found while the DSL was called; `build` reports it.
    pub(crate) fn defer_error(&mut self, error: StreamsError) {
        self.deferred.push(error);
    }

    /// How the windows of the windowed aggregation `node` descends from close, following first
    /// parents up the graph.
    pub(crate) fn window_closing_of(&self, mut node: usize) -> Option<WindowClosing> {
        loop {
            if let Some(closing) = self.window_closing.get(&node) {
                return Some(*closing);
            }
            node = *self.nodes.get(node)?.parents.first()?;
        }
    }

    /// Registers a store an operator creates; a clash is reported when the topology is built.
    pub(crate) fn add_store_deferred(&mut self, store: StoreDef) {
        if let Err(e) = self.add_store(store) {
            self.deferred.push(e);
        }
    }

    /// Compiles the logical graph into a physical topology.
    pub(crate) fn compile(&self) -> Result<Topology> {
        if let Some(e) = self.deferred.first() {
            if self.deferred.len() == 1 {
                return Err(StreamsError::topology("StreamsBuilder", e.to_string()));
            }
            return Err(StreamsError::topology(
                "StreamsBuilder",
                format!("{e} (and {} more problems)", self.deferred.len() - 1),
            ));
        }
        let mut b = TopologyBuilder::new();
        let mut key_changed = vec![false; self.nodes.len()];
        // The physical node a logical node's children attach to.
        let mut attach: Vec<String> = Vec::with_capacity(self.nodes.len());
        let mut added_stores: BTreeSet<String> = BTreeSet::new();
        // Global stores first: processors of any sub-topology connect to them.
        for node in &self.nodes {
            if let NodeKind::GlobalTable { topic, store } = &node.kind {
                let def = self.stores.get(store).ok_or_else(|| {
                    StreamsError::topology(
                        &node.name,
                        format!("global store `{store}` was never added"),
                    )
                })?;
                b.add_global_store(def.clone(), topic)?;
                added_stores.insert(store.clone());
            }
        }

        let mut connect =
            |b: &mut TopologyBuilder, processor: &str, stores: &[String]| -> Result<()> {
                for store in stores {
                    if added_stores.insert(store.clone()) {
                        let def = self.stores.get(store).ok_or_else(|| {
                            StreamsError::topology(
                                processor,
                                format!("uses store `{store}`, which was never added"),
                            )
                        })?;
                        b.add_state_store(def.clone(), &[processor])?;
                    } else {
                        b.connect_processor_and_stores(processor, &[store.as_str()])?;
                    }
                }
                Ok(())
            };

        for (i, node) in self.nodes.iter().enumerate() {
            let parents: Vec<&str> = node.parents.iter().map(|p| attach[*p].as_str()).collect();
            let upstream_changed = node.parents.iter().any(|p| key_changed[*p]);
            match &node.kind {
                NodeKind::Source { add } => {
                    add(&mut b, &node.name, &[])?;
                    attach.push(node.name.clone());
                }
                NodeKind::Processor {
                    add,
                    changes_key,
                    stores,
                } => {
                    add(&mut b, &node.name, &parents)?;
                    connect(&mut b, &node.name, stores)?;
                    key_changed[i] = upstream_changed || *changes_key;
                    attach.push(node.name.clone());
                }
                NodeKind::Stateful {
                    add,
                    stores,
                    repartition,
                } => {
                    let plan = match repartition {
                        Some((RepartitionWhen::Always, plan)) => Some(plan),
                        Some((RepartitionWhen::KeyChanged, plan)) if upstream_changed => Some(plan),
                        _ => None,
                    };
                    match plan {
                        Some(plan) => {
                            (plan.add)(&mut b, plan, &parents)?;
                            add(&mut b, &node.name, &[plan.source.as_str()])?;
                        }
                        None => add(&mut b, &node.name, &parents)?,
                    }
                    connect(&mut b, &node.name, stores)?;
                    attach.push(node.name.clone());
                }
                NodeKind::Repartition(plan) => {
                    (plan.add)(&mut b, plan, &parents)?;
                    attach.push(plan.source.clone());
                }
                NodeKind::RepartitionIfKeyChanged(plan) => {
                    if upstream_changed {
                        (plan.add)(&mut b, plan, &parents)?;
                        attach.push(plan.source.clone());
                    } else {
                        let parent = parents.first().copied().unwrap_or_default().to_owned();
                        attach.push(parent);
                    }
                }
                NodeKind::Sink { add } => {
                    add(&mut b, &node.name, &parents)?;
                    attach.push(node.name.clone());
                }
                NodeKind::GlobalTable { .. } => {
                    attach.push(node.name.clone());
                }
            }
        }
        for (what, nodes) in &self.copartition {
            let names: Vec<&str> = nodes.iter().map(|n| attach[*n].as_str()).collect();
            b.copartition(what, &names)?;
        }
        for store in self.stores.keys() {
            if !added_stores.contains(store) {
                return Err(StreamsError::topology(
                    store,
                    "the store was added but no processor uses it; name it in `process`",
                ));
            }
        }
        b.build()
    }
}
